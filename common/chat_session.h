// chat_session.h — one conversation with the model: its messages, the ids already in the KV cache (a turn
// prefills only what the cache lacks: the longest common prefix of the new prompt and the cache stays),
// streaming generation with the sampler, tool calls and results, /regen, timings, /save and /load, the
// oldest turns dropped when the conversation outgrows the context, and the prompt cache (a file with the
// KV cache of the first prompt, images included, reused by the next run).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "chat_template.h"
#include "chat_timings.h"
#include "context.h"
#include "image.h"
#include "ngram_draft.h"
#include "prompt_cache.h"
#include "sampling.h"
#include "tokenizer.h"

namespace common {

// The conversation does not fit the context.
struct ContextOverflow : std::runtime_error {
    using std::runtime_error::runtime_error;
};

enum class StopReason { Eos, Limit, ContextFull, Interrupted };

struct Reply {
    std::string text;             // the answer without its tool calls
    std::vector<ToolCall> calls;  // ids invented here (9 alphanumerics)
    int64_t n_tokens = 0;         // generated, </s> excluded
    StopReason stop = StopReason::Eos;
    bool malformed_calls = false;  // a [TOOL_CALLS] the parser could not read (kept as text)
    Timings timings;
};

// What a conversation that outgrows the context does (--context-full).
enum class ContextFull {
    Stop,        // the next message is refused
    DropOldest,  // its oldest turns go, and the prompt after them is read again: the shorter prompt, exactly
    Shift,       // its oldest turns go, and the cache after them moves down (Context::drop_positions)
};

struct SessionOptions {
    int n_predict = -1;              // tokens per answer, < 0: until </s> or a full context
    int n_batch = 512;               // prefill chunk
    bool reserve_n_predict = false;  // refuse a prompt that leaves fewer than n_predict tokens of context
    // Unless Stop, a conversation that leaves less than a quarter of the context (or -n) for the answer
    // loses its oldest turns (a user message and what answered it; the system prompt and the last user
    // message stay), down to half the context where it can; what was dropped is said on stderr.
    ContextFull context_full = ContextFull::Stop;
    std::string tools;               // [AVAILABLE_TOOLS] JSON text, "" for none (see tools_json)
    std::string dump_ids;            // debug: append {"pos": p, "ids": [...]} per prefill to this file
    std::string prompt_cache;        // --prompt-cache: the first prefill reuses this file's KV, then saves its own
    bool prompt_cache_ro = false;    // --prompt-cache-ro: reuse the file, never write it
    DraftParams draft;               // --draft: prompt-lookup speculation (n_draft 0: off)
    mistral::ImageOptions image;
    uint64_t seed = 0;               // for tool-call ids
};

class ChatSession {
public:
    using OnText = std::function<void(const std::string&)>;  // streamed answer text
    using ShouldStop = std::function<bool()>;                // polled between passes

    ChatSession(mistral::Context& ctx, const mistral::Tokenizer& tok, const ChatTemplate& tmpl,
                const SamplingParams& sampling, SessionOptions opt);

    const std::vector<Message>& messages() const { return msgs_; }
    void set_system(const std::string& text);  // "" removes it
    void clear();                              // a new conversation, same system prompt

    // Loads and checks an image now; it goes with the next user message. Throws on a bad file.
    const ImageRef& attach_image(const std::string& path);
    const std::vector<ImageRef>& pending_images() const { return pending_; }

    // A user message (with the pending images) and the answer to it. On an error (e.g. the context cannot
    // hold the conversation) the message is taken back and the exception passed on.
    Reply ask(const std::string& text, const OnText& on_text = {}, const ShouldStop& stop = {});
    // Drops the last answer and generates it again. Throws when the conversation does not end with one.
    Reply regenerate(const OnText& on_text = {}, const ShouldStop& stop = {});
    // Answers the oldest tool call still waiting; once none waits, returns the model's next reply.
    std::optional<Reply> tool_result(const std::string& content, const OnText& on_text = {},
                                     const ShouldStop& stop = {});
    size_t waiting_tool_calls() const;

    void save(const std::string& path) const;  // {"messages": [...]} as JSON
    void load(const std::string& path);        // replaces the conversation (images are loaded again)

    const Timings& totals() const { return totals_; }
    int n_ctx() const { return ctx_.n_ctx(); }
    size_t n_cached() const { return cached_.size(); }  // tokens in the KV cache

private:
    Reply generate(const OnText& on_text, const ShouldStop& stop);
    Prompt render_fitting();
    bool shift_cache(const Prompt& before, const Prompt& after);
    std::vector<int32_t> next_draft(int32_t id, int64_t n_generated);
    bool prefill(const Prompt& p, Timings& t, const ShouldStop& stop, mistral::BatchResult& last);
    void restore_prompt_cache(const Prompt& p, const std::vector<CachedImage>& spans);
    void save_prompt_cache(const Prompt& p, std::vector<CachedImage> spans);
    const mistral::Image& pixels(const std::string& path);
    void dump(int64_t pos, const std::vector<int32_t>& ids) const;
    std::string new_call_id();

    mistral::Context& ctx_;
    const mistral::Tokenizer& tok_;
    const ChatTemplate& tmpl_;
    Sampler sampler_;
    SessionOptions opt_;

    std::vector<Message> msgs_;
    std::vector<ImageRef> pending_;
    std::map<std::string, mistral::Image> loaded_;  // pixels of images not yet in the cache
    std::vector<int32_t> cached_;                   // ids at KV positions 0..n-1
    std::vector<Prompt::Image> cached_images_;      // images whose tokens are in the cache
    uint64_t call_rng_;
    Timings totals_;
    bool prompt_cache_read_ = false, prompt_cache_written_ = false;
    PromptCache prompt_cache_;  // what the prompt-cache file holds (without its KV bytes), once read and usable
};

}  // namespace common
