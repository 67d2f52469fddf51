// chat_template.h — Mistral's instruct layout for tokenizer versions v7, v11 and v13 (as mistral-common
// encodes it): a conversation becomes token ids, with images expanded to their [IMG] grids, the tool list,
// tool calls and tool results; and the parser of tool calls in generated ids. Also the JSON formatting
// Mistral's prompts use (Python's json.dumps) and the normalisation of an OpenAI-style tool list.
#pragma once

#include <cstdint>
#include <ctime>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "tokenizer.h"

namespace common {

enum class Role { System, User, Assistant, Tool };
const char* role_name(Role r);         // "system", "user", "assistant", "tool"
Role parse_role(const std::string& s);  // throws for other names

// An image of a user message: its file and its grid of [IMG] cells.
struct ImageRef {
    std::string path;
    int rows = 0, cols = 0;
};

struct ToolCall {
    std::string id;         // 9 alphanumerics; "" when unknown
    std::string name;
    std::string arguments;  // JSON text as the model or the user wrote it
};

struct Message {
    Role role = Role::User;
    std::string text;
    std::vector<ImageRef> images;      // user: placed before the text
    std::vector<ToolCall> tool_calls;  // assistant
    std::string tool_call_id;          // tool: the call this result answers
    // assistant: the tokens as generated (without </s>); when set and there are no tool calls they are used
    // instead of re-encoding `text`, so the KV cache of a conversation stays a prefix of its next prompt.
    std::vector<int32_t> ids;
};

enum class TemplateVersion { V7, V11, V13 };
TemplateVersion parse_template_version(const std::string& v);  // "v7", "v11", "v13"; throws otherwise

// A rendered conversation: ids from <s> to the generation point, and where each image's tokens sit.
struct Prompt {
    struct Image {
        size_t first = 0, count = 0;  // token span of the image's layout
        std::string path;
    };
    std::vector<int32_t> ids;
    std::vector<Image> images;
};

// Where `after` is `before` without one span of tokens, that span [at, at + count): it starts at their
// first difference, or earlier at an image of `after` that is not the same file at the same place in
// `before` ([IMG] tokens alike do not make pictures alike), and the rest of `after` must be the rest of
// `before`, its images the same files `count` tokens earlier. nullopt where no such span exists.
struct TokenSpan {
    size_t at = 0, count = 0;
};
std::optional<TokenSpan> dropped_span(const Prompt& before, const Prompt& after);

class ChatTemplate {
public:
    ChatTemplate(const mistral::Tokenizer& tok, TemplateVersion v);
    explicit ChatTemplate(const mistral::Tokenizer& tok);  // the version of tekken.json

    TemplateVersion version() const { return version_; }

    // `tools`: the JSON text of [AVAILABLE_TOOLS] ("" for none), see tools_json(). Consecutive user (or
    // assistant) messages are merged with "\n\n" as mistral-common's normaliser does.
    Prompt render(const std::vector<Message>& msgs, const std::string& tools = "") const;

    // Splits the ids of a reply (without </s>) into its text and its tool calls. Calls that cannot be
    // parsed leave everything as text (`malformed` set).
    struct Reply {
        std::vector<int32_t> content;
        std::vector<ToolCall> calls;
        bool malformed = false;
    };
    Reply parse_reply(const std::vector<int32_t>& ids) const;

    int32_t tool_calls_token() const { return tool_calls_; }

private:
    void render_user(const std::vector<const Message*>& group, Prompt& p) const;
    void render_assistant(const std::vector<const Message*>& group, std::vector<int32_t>& out) const;
    void render_tool(const Message& m, std::vector<int32_t>& out) const;

    const mistral::Tokenizer& tok_;
    TemplateVersion version_;
    int32_t inst_, inst_end_, tools_, tools_end_, results_, results_end_, tool_calls_, content_, sys_, sys_end_;
    int32_t img_, img_break_, img_end_;
    int32_t args_ = -1, call_id_ = -1;  // [ARGS], [CALL_ID]: v11+ only, absent from some tokenizers
};

// Python json.dumps(v, ensure_ascii=False): ", " and ": " separators, key order kept, UTF-8 as is.
std::string py_json(const nlohmann::ordered_json& v);

// An OpenAI-style function list — an array (or {"tools": array}) of {"type": "function", "function": {...}}
// or of bare {"name", "description", "parameters"} — as the canonical [AVAILABLE_TOOLS] text. Throws on
// malformed input (missing or invalid name, parameters that are not an object).
// JSON parsed with its nesting bounded (deeper input throws std::runtime_error): everything parsed from a
// user's file or the model's output is later printed recursively, so depth must not be unbounded.
constexpr int kMaxJsonDepth = 64;
template <class Input>
nlohmann::ordered_json parse_json(Input&& in) {
    return nlohmann::ordered_json::parse(std::forward<Input>(in), [](int depth, nlohmann::ordered_json::parse_event_t,
                                                                      nlohmann::ordered_json&) {
        if (depth > kMaxJsonDepth)
            throw std::runtime_error("JSON nested deeper than " + std::to_string(kMaxJsonDepth) + " levels");
        return true;
    });
}

std::string tools_json(const nlohmann::ordered_json& tools);

// SYSTEM_PROMPT.txt as Mistral's model cards fill it in (Python str.format): {name}, {today} and {yesterday}
// (YYYY-MM-DD, local time of `now`); "{{" and "}}" are literal braces; other fields are left as they are.
std::string fill_system_prompt(const std::string& text, const std::string& name, std::time_t now);

}  // namespace common
