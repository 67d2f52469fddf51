// chat_session.cpp — turns of a conversation: render (dropping the oldest turns where the context is
// full), reuse the cached prefix, prefill the rest (images encoded on the way), sample and stream the
// answer, record it; /save and /load through conversation_file.h; the prompt cache's restore (checked
// against this model) and save.
#include "chat_session.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <optional>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <utility>

#include "conversation_file.h"
#include "log.h"
#include "ngram_draft.h"
#include "prompt_cache.h"

namespace common {

using clock_type = std::chrono::steady_clock;

static double ms_since(clock_type::time_point t0) {
    return std::chrono::duration<double, std::milli>(clock_type::now() - t0).count();
}

ChatSession::ChatSession(mistral::Context& ctx, const mistral::Tokenizer& tok, const ChatTemplate& tmpl,
                         const SamplingParams& sampling, SessionOptions opt)
    : ctx_(ctx), tok_(tok), tmpl_(tmpl), sampler_(sampling), opt_(std::move(opt)), call_rng_(opt_.seed) {}

void ChatSession::set_system(const std::string& text) {
    const bool has = !msgs_.empty() && msgs_.front().role == Role::System;
    if (text.empty()) {
        if (has) msgs_.erase(msgs_.begin());
        return;
    }
    Message m;
    m.role = Role::System;
    m.text = text;
    if (has)
        msgs_.front() = m;
    else
        msgs_.insert(msgs_.begin(), m);
}

void ChatSession::clear() {
    std::vector<Message> keep;
    if (!msgs_.empty() && msgs_.front().role == Role::System) keep.push_back(msgs_.front());
    msgs_ = std::move(keep);
}

// An image file's preprocessed pixels, each file read once (a photo stored sideways says so on stderr).
static mistral::Image load_noting_orientation(const std::string& path, const mistral::ImageOptions& opt) {
    mistral::Image im = mistral::load_image(path, opt);
    if (im.orientation != 1) log_info("%s: turned upright by its EXIF orientation (%d)", path.c_str(), im.orientation);
    return im;
}

const mistral::Image& ChatSession::pixels(const std::string& path) {
    auto it = loaded_.find(path);
    if (it == loaded_.end()) it = loaded_.emplace(path, load_noting_orientation(path, opt_.image)).first;
    return it->second;
}

const ImageRef& ChatSession::attach_image(const std::string& path) {
    if (!ctx_.model().config().has_vision) throw std::runtime_error("this model has no vision tower");
    loaded_.erase(path);  // read the file again: it may have changed
    const mistral::Image& im = pixels(path);
    pending_.push_back({path, im.rows(), im.cols()});
    return pending_.back();
}

size_t ChatSession::waiting_tool_calls() const {
    size_t results = 0;
    for (size_t i = msgs_.size(); i-- > 0;) {
        if (msgs_[i].role == Role::Tool) {
            ++results;
            continue;
        }
        if (msgs_[i].role != Role::Assistant) return 0;
        const size_t calls = msgs_[i].tool_calls.size();
        return calls > results ? calls - results : 0;
    }
    return 0;
}

Reply ChatSession::ask(const std::string& text, const OnText& on_text, const ShouldStop& stop) {
    if (text.empty() && pending_.empty()) throw std::runtime_error("empty message");
    Message m;
    m.role = Role::User;
    m.text = text;
    m.images = pending_;
    msgs_.push_back(m);
    Reply r;
    try {
        r = generate(on_text, stop);
    } catch (...) {
        msgs_.pop_back();
        throw;
    }
    pending_.clear();
    if (r.n_tokens == 0 && r.stop == StopReason::Interrupted) msgs_.pop_back();  // stopped before any answer
    return r;
}

Reply ChatSession::regenerate(const OnText& on_text, const ShouldStop& stop) {
    if (msgs_.empty() || msgs_.back().role != Role::Assistant)
        throw std::runtime_error("there is no answer to regenerate");
    const Message last = msgs_.back();
    msgs_.pop_back();
    try {
        return generate(on_text, stop);
    } catch (...) {
        msgs_.push_back(last);
        throw;
    }
}

std::optional<Reply> ChatSession::tool_result(const std::string& content, const OnText& on_text,
                                              const ShouldStop& stop) {
    const size_t waiting = waiting_tool_calls();
    if (waiting == 0) throw std::runtime_error("no tool call is waiting for a result");
    const Message* caller = nullptr;
    for (size_t i = msgs_.size(); i-- > 0 && !caller;)
        if (msgs_[i].role == Role::Assistant) caller = &msgs_[i];
    Message m;
    m.role = Role::Tool;
    m.text = content;
    m.tool_call_id = caller->tool_calls[caller->tool_calls.size() - waiting].id;
    msgs_.push_back(m);
    if (waiting > 1) return std::nullopt;
    try {
        return generate(on_text, stop);
    } catch (...) {
        msgs_.pop_back();
        throw;
    }
}

std::string ChatSession::new_call_id() {
    static const char kAlnum[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    std::string id;
    for (int i = 0; i < 9; ++i) {
        call_rng_ = call_rng_ * 6364136223846793005ull + 1442695040888963407ull;
        id += kAlnum[(call_rng_ >> 33) % 62];
    }
    return id;
}

void ChatSession::dump(int64_t pos, const std::vector<int32_t>& ids) const {
    if (opt_.dump_ids.empty()) return;
    std::ofstream f(opt_.dump_ids, std::ios::app);
    if (!f) throw std::runtime_error("cannot write " + opt_.dump_ids);
    f << nlohmann::json{{"pos", pos}, {"ids", ids}}.dump() << '\n';
}

bool ChatSession::prefill(const Prompt& p, Timings& t, const ShouldStop& stop, mistral::BatchResult& last) {
    std::vector<CachedImage> spans;  // the prompt's images as the prompt cache names them
    if (!opt_.prompt_cache.empty() && !prompt_cache_written_)
        for (const Prompt::Image& im : p.images)
            spans.push_back({uint32_t(im.first), uint32_t(im.count), image_digest(pixels(im.path))});
    if (!opt_.prompt_cache.empty() && !prompt_cache_read_ && cached_.empty()) restore_prompt_cache(p, spans);
    // Longest prefix the cache already holds: same ids, and the same image files behind [IMG] runs.
    size_t n = 0;
    while (n < p.ids.size() && n < cached_.size() && p.ids[n] == cached_[n]) ++n;
    for (const Prompt::Image& im : p.images) {
        if (im.first >= n) break;
        const bool same = std::any_of(cached_images_.begin(), cached_images_.end(), [&](const Prompt::Image& c) {
            return c.first == im.first && c.count == im.count && c.path == im.path;
        });
        if (!same || im.first + im.count > n) n = im.first;
    }
    n = std::min(n, p.ids.size() - 1);  // the last prompt token runs again for its logits
    cached_.resize(n);
    cached_images_.erase(std::remove_if(cached_images_.begin(), cached_images_.end(),
                                        [&](const Prompt::Image& c) { return c.first + c.count > n; }),
                         cached_images_.end());

    std::vector<mistral::Image> images;
    for (const Prompt::Image& im : p.images)
        if (im.first >= n) images.push_back(pixels(im.path));
    std::vector<float> rows;
    if (!images.empty()) {
        const auto t0 = clock_type::now();
        rows = ctx_.encode_images(images);
        t.image_ms += ms_since(t0);
        t.images += int64_t(images.size());
    }

    dump(int64_t(n), std::vector<int32_t>(p.ids.begin() + long(n), p.ids.end()));
    const int32_t img = ctx_.model().config().image_token;
    const size_t width = size_t(ctx_.model().config().text.hidden);
    size_t row = 0;
    const auto t0 = clock_type::now();
    for (size_t at = n; at < p.ids.size();) {
        if (stop && stop()) return false;
        const size_t len = std::min(p.ids.size() - at, size_t(std::max(opt_.n_batch, 1)));
        std::vector<int32_t> chunk(p.ids.begin() + long(at), p.ids.begin() + long(at + len));
        mistral::Batch b = mistral::Batch::sequence(chunk, int32_t(at), 0, at + len == p.ids.size() ? 1 : 0);
        b.argmax_only = sampler_.greedy();
        const size_t k = size_t(std::count(chunk.begin(), chunk.end(), img));
        b.image_rows.assign(rows.begin() + long(row * width), rows.begin() + long((row + k) * width));
        row += k;
        last = ctx_.eval(b);
        cached_.insert(cached_.end(), chunk.begin(), chunk.end());
        at += len;
    }
    t.prompt_ms += ms_since(t0);
    t.prompt_tokens += int64_t(p.ids.size() - n);
    cached_images_ = p.images;
    loaded_.clear();
    if (!opt_.prompt_cache.empty() && !prompt_cache_written_) save_prompt_cache(p, std::move(spans));
    return true;
}

// The file's positions are reused only after this model, run on position 0 now, gives the same keys and
// values there as the file holds (to rounding): a file from another model, or another cache type, is
// named in a warning and replaced after the prefill.
void ChatSession::restore_prompt_cache(const Prompt& p, const std::vector<CachedImage>& spans) {
    prompt_cache_read_ = true;
    const std::string& path = opt_.prompt_cache;
    PromptCacheFile f = read_prompt_cache(path, !opt_.prompt_cache_ro);
    if (f.state == PromptCacheFile::kMissing) return;
    const PromptCache& c = f.cache;
    const mistral::Config& cfg = ctx_.model().config();
    std::string why = f.why;
    if (f.state == PromptCacheFile::kUsable) {
        if (c.kv_type != ctx_.kv_type())
            why = std::string("it holds a ") + fp4::type_name(c.kv_type) + " KV cache, this run keeps " +
                  fp4::type_name(ctx_.kv_type()) + " (--kv-type)";
        else if (c.n_layer != cfg.text.n_layer || c.row_bytes != ctx_.cache_row_bytes())
            why = "it was made by a model of another shape";
        else if (c.ids[0] != p.ids[0])
            why = "its prompt starts with another token";
    }
    if (why.empty()) {
        ctx_.eval(mistral::Batch::sequence({p.ids[0]}, 0, 0, 0));
        const double d = first_position_difference(c, ctx_.read_cache(1));
        // Measured on tiny-kjv: the CPU and the CUDA backend differ by 2.6e-3 with BF16 caches, 1.1e-2 with
        // FP8 ones; the same model's NVFP4 and BF16 checkpoints by 0.1, unrelated models by ~1.
        log_debug("prompt cache: keys and values at position 0 differ by %.2e (relative)", d);
        if (!(d <= (c.kv_type == fp4::Type::F8_E4M3 ? 4e-2 : 2e-2)))
            why = "it was made by another model (its keys and values at position 0 differ from this one's)";
    }
    if (!why.empty()) {
        log_warn("prompt cache %s: %s; prefilling the whole prompt, then replacing the file", path.c_str(), why.c_str());
        return;
    }
    const size_t m = cached_prefix(c, p.ids, spans);
    ctx_.write_cache(int(m), c.kv, int(c.ids.size()));
    cached_.assign(p.ids.begin(), p.ids.begin() + long(m));
    size_t images = 0;
    for (const Prompt::Image& im : p.images)
        if (im.first + im.count <= m) cached_images_.push_back(im), ++images;
    prompt_cache_ = std::move(f.cache);
    prompt_cache_.kv.clear();
    prompt_cache_.kv.shrink_to_fit();
    log_info("prompt cache: %zu of the prompt's %zu tokens%s from %s", m, p.ids.size(),
             images ? (" (" + std::to_string(images) + (images == 1 ? " image)" : " images)")).c_str() : "",
             path.c_str());
}

// The whole prompt, images named by their pixels' digests, unless the file already holds it (or
// --prompt-cache-ro).
void ChatSession::save_prompt_cache(const Prompt& p, std::vector<CachedImage> spans) {
    prompt_cache_written_ = true;
    if (opt_.prompt_cache_ro || p.ids.size() < 2 || cached_prefix(prompt_cache_, p.ids, spans) == p.ids.size())
        return;
    PromptCache c{ctx_.kv_type(), ctx_.model().config().text.n_layer, ctx_.cache_row_bytes(), p.ids,
                  std::move(spans), ctx_.read_cache(int(p.ids.size()))};
    try {
        write_prompt_cache(opt_.prompt_cache, c);
    } catch (const std::runtime_error& e) {  // the answer does not depend on it: say so and go on
        log_warn("%s; answering without saving", e.what());
        return;
    }
    log_info("prompt cache: saved %zu tokens (%.1f MB) to %s", c.ids.size(), double(c.kv.size()) / 1e6,
             opt_.prompt_cache.c_str());
}

// The prompt-lookup draft to send after `id` (see ngram_draft.h), cut before an [IMG] token and to what the
// context and -n leave.
// On a backend whose decode pass takes a few more rows for free (a GPU) it is always sent at full length,
// padded with `id`: every pass then has the same shape, and the backend replays one captured graph.
std::vector<int32_t> ChatSession::next_draft(int32_t id, int64_t n_generated) {
    int64_t room = std::min<int64_t>(opt_.draft.n_draft, int64_t(ctx_.n_ctx()) - int64_t(cached_.size()) - 1);
    if (opt_.n_predict > 0) room = std::min<int64_t>(room, opt_.n_predict - n_generated - 1);
    if (room <= 0) return {};
    cached_.push_back(id);  // the context the draft continues
    std::vector<int32_t> d = ngram_draft(cached_, opt_.draft);
    cached_.pop_back();
    // Never an image's place: a pass has no image rows to fill it (an answer that ends like an earlier one,
    // before a message with a picture, would look up that [IMG]).
    d.erase(std::find(d.begin(), d.end(), ctx_.model().config().image_token), d.end());
    if (opt_.draft.n_draft < ctx_.model().backend().decode_rows_free()) d.resize(size_t(opt_.draft.n_draft), id);
    if (int64_t(d.size()) > room) d.resize(size_t(room));
    return d;
}

// The prompt of msgs_; unless ContextFull::Stop, where it leaves too little room for an answer, that of
// msgs_ without its oldest turns (each from a user message to the next), which are then dropped from msgs_.
Prompt ChatSession::render_fitting() {
    Prompt p = tmpl_.render(msgs_, opt_.tools);
    const int64_t n_ctx = ctx_.n_ctx();
    const int64_t room = opt_.n_predict > 0 ? opt_.n_predict : n_ctx / 4;
    if (opt_.context_full == ContextFull::Stop || int64_t(p.ids.size()) + room <= n_ctx) return p;
    const int64_t target = std::min(n_ctx - room, n_ctx / 2);
    const size_t first = !msgs_.empty() && msgs_.front().role == Role::System ? 1 : 0;
    size_t last_user = msgs_.size();
    while (last_user > first && msgs_[last_user - 1].role != Role::User) --last_user;
    if (last_user-- <= first) return p;  // no user message: nothing is a turn
    size_t cut = first, turns = 0;  // msgs_[first, cut) go: that many turns
    std::optional<Prompt> best;
    while (cut < last_user && (!best || int64_t(best->ids.size()) > target)) {
        ++turns;
        do ++cut;
        while (cut < last_user && msgs_[cut].role != Role::User);
        std::vector<Message> kept(msgs_.begin(), msgs_.begin() + long(first));
        kept.insert(kept.end(), msgs_.begin() + long(cut), msgs_.end());
        best = tmpl_.render(kept, opt_.tools);
    }
    // Not even the newest message fits: the shortest prompt, for the error that names its size.
    if (!best || int64_t(best->ids.size()) >= n_ctx) return best ? std::move(*best) : p;
    size_t images = 0;
    for (size_t i = first; i < cut; ++i) images += msgs_[i].images.size();
    const bool shifted = opt_.context_full == ContextFull::Shift && shift_cache(p, *best);
    log_info("the conversation outgrew the context of %lld tokens: dropped its %zu oldest turn%s (%zu messages%s, "
             "%zu tokens); its prompt is now %zu tokens%s",
             (long long)n_ctx, turns, turns == 1 ? "" : "s", cut - first,
             images ? (", " + std::to_string(images) + (images == 1 ? " image" : " images")).c_str() : "",
             p.ids.size() - best->ids.size(), best->ids.size(),
             shifted ? (", " + std::to_string(cached_.size()) + " of them kept in the cache (context shift)").c_str()
                     : "");
    msgs_.erase(msgs_.begin() + long(first), msgs_.begin() + long(cut));
    return std::move(*best);
}

// ContextFull::Shift: where `after` is `before` without one span of tokens (whole images included), the
// cached positions past the span move down over it, so that only what the cache lacked is read. False
// where nothing moved (no such span, or nothing cached past it): the prefill then reads what follows the
// shared start again.
bool ChatSession::shift_cache(const Prompt& before, const Prompt& after) {
    const std::optional<TokenSpan> dropped = dropped_span(before, after);
    if (!dropped) return false;
    const size_t at = dropped->at, span = dropped->count;
    size_t cached = 0;  // positions that hold the `before` prompt
    const std::vector<int32_t>& o = before.ids;
    while (cached < cached_.size() && cached < o.size() && cached_[cached] == o[cached]) ++cached;
    if (cached <= at + span) return false;
    ctx_.drop_positions(int(at), int(span), int(cached));
    cached_.resize(cached);
    cached_.erase(cached_.begin() + long(at), cached_.begin() + long(at + span));
    std::vector<Prompt::Image> images;
    for (Prompt::Image im : cached_images_) {
        if (im.first + im.count <= at) images.push_back(im);
        if (im.first >= at + span && im.first + im.count <= cached) im.first -= span, images.push_back(im);
    }
    cached_images_ = std::move(images);
    return true;
}

Reply ChatSession::generate(const OnText& on_text, const ShouldStop& stop) {
    const auto t0 = clock_type::now();
    const Prompt p = render_fitting();
    if (int64_t(p.ids.size()) >= int64_t(ctx_.n_ctx()))
        throw ContextOverflow("the prompt needs " + std::to_string(p.ids.size()) +
                              " tokens but the context holds " + std::to_string(ctx_.n_ctx()) + " (raise -c)");
    if (opt_.reserve_n_predict && opt_.n_predict > 0 && int64_t(p.ids.size()) + opt_.n_predict > ctx_.n_ctx())
        throw ContextOverflow("the prompt needs " + std::to_string(p.ids.size()) + " tokens and -n asks for " +
                              std::to_string(opt_.n_predict) + " more, but the context holds " +
                              std::to_string(ctx_.n_ctx()) + " (raise -c or lower -n)");
    Reply r;
    Timings& t = r.timings;
    t.turns = 1;
    mistral::BatchResult last;  // of the last pass: logits of its last token, or (greedy) their argmax
    std::vector<int32_t> gen;
    bool in_call = false;
    mistral::StreamDecoder dec(tok_);
    const int64_t vocab = ctx_.model().config().text.vocab;

    if (!prefill(p, t, stop, last)) {
        r.stop = StopReason::Interrupted;
    } else if (opt_.n_predict == 0) {
        r.stop = StopReason::Limit;
    } else {
        // Ends the answer at </s>, the -n limit or a stop request; else streams the token.
        auto emit = [&](int32_t id) {
            if (id == tok_.eos()) {
                r.stop = StopReason::Eos;
                return true;
            }
            gen.push_back(id);
            if (id == tmpl_.tool_calls_token()) in_call = true;  // the rest is a call, not text to show
            if (!in_call && on_text) on_text(dec.push(id));
            if (opt_.n_predict > 0 && int64_t(gen.size()) >= opt_.n_predict) {
                r.stop = StopReason::Limit;
                return true;
            }
            if (stop && stop()) {
                r.stop = StopReason::Interrupted;
                return true;
            }
            return false;
        };
        std::vector<int32_t> draft;  // tokens the last pass took after its first, to check against its rows
        for (bool done = false; !done;) {
            // The pass's rows in order: row i holds the logits after its i-th token. Each accepted draft
            // token is in the cache already, and the next row follows it.
            int32_t id = -1;
            for (size_t row = 0;; ++row) {
                const auto ts = clock_type::now();
                const bool drafted = row < draft.size();
                Sampler::Verdict v{};
                if (sampler_.greedy()) {
                    v.id = last.argmax.at(row);
                    v.accepted = drafted && v.id == draft[row];
                } else {
                    const float* logits = last.logits.data() + row * size_t(vocab);
                    v = drafted ? sampler_.verify(logits, vocab, cached_, draft[row])
                                : Sampler::Verdict{sampler_.sample(logits, vocab, cached_), false};
                }
                id = v.id;
                t.sample_ms += ms_since(ts);
                if (t.sampled++ == 0) t.ttft_ms = ms_since(t0);
                t.accepted += v.accepted;
                if ((done = emit(id)) || !v.accepted) break;
                cached_.push_back(id);
            }
            if (done) break;
            if (int64_t(cached_.size()) >= int64_t(ctx_.n_ctx())) {
                r.stop = StopReason::ContextFull;
                break;
            }
            draft = next_draft(id, int64_t(gen.size()));
            t.drafted += int64_t(draft.size());
            std::vector<int32_t> ids{id};
            ids.insert(ids.end(), draft.begin(), draft.end());
            const auto ts = clock_type::now();
            mistral::Batch b = mistral::Batch::sequence(ids, int32_t(cached_.size()), 0, int64_t(ids.size()));
            b.argmax_only = sampler_.greedy();
            last = ctx_.eval(b);
            t.gen_ms += ms_since(ts);
            ++t.gen_runs;
            cached_.push_back(id);
        }
    }
    if (!in_call && on_text) on_text(dec.flush());

    const ChatTemplate::Reply parsed = tmpl_.parse_reply(gen);
    r.text = tok_.decode(parsed.content);
    r.calls = parsed.calls;
    r.malformed_calls = parsed.malformed;
    r.n_tokens = int64_t(gen.size());
    for (ToolCall& c : r.calls)
        if (c.id.empty()) c.id = new_call_id();
    if (!gen.empty() || r.stop == StopReason::Eos) {  // an immediate </s> is an (empty) answer too
        Message m;
        m.role = Role::Assistant;
        m.text = r.text;
        m.tool_calls = r.calls;
        if (r.calls.empty()) m.ids = gen;
        msgs_.push_back(m);
    }
    t.total_ms = ms_since(t0);
    totals_ += t;
    return r;
}

void ChatSession::save(const std::string& path) const { save_conversation(path, msgs_); }

void ChatSession::load(const std::string& path) {
    std::map<std::string, mistral::Image> images;
    std::vector<Message> msgs = load_conversation(path, [&](const std::string& p) {
        if (!ctx_.model().config().has_vision) throw std::runtime_error("this model has no vision tower");
        auto it = images.find(p);
        if (it == images.end()) it = images.emplace(p, load_noting_orientation(p, opt_.image)).first;
        return ImageRef{p, it->second.rows(), it->second.cols()};
    });
    msgs_ = std::move(msgs);
    loaded_ = std::move(images);
}

}  // namespace common
