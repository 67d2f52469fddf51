// main.cpp — the `chat` binary: an interactive terminal chat (REPL) with a Mistral model folder, or, with
// -p/-f, one answer to one prompt: only the answer on stdout; logs, progress and timings on stderr.
#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "args.h"
#include "chat_session.h"
#include "chat_template.h"
#include "console.h"
#include "log.h"
#include "prompt_cache.h"
#include "repl_command.h"
#include "sampling.h"
#include "tokenizer.h"

namespace fs = std::filesystem;
using namespace common;

namespace {

struct ChatOptions {
    CommonOptions common;
    std::string prompt, prompt_file, system, system_file, tools_file, color = "auto", dump_ids, prompt_cache;
    bool prompt_cache_ro = false;
    ImageArgs images;
    bool no_system = false;
    int n_predict = -1;
    int n_ubatch = 0;  // 0: the backend's (see --ubatch-size)
    std::string context_full = "drop-oldest";
    DraftParams draft;
    SamplingParams sampling;
};

const char* kHelp =
    "commands:\n"
    "  /image PATH        attach an image to the next message (several allowed)\n"
    "  /clear             start a new conversation (the system prompt stays)\n"
    "  /regen             generate the last answer again\n"
    "  /save FILE         save the conversation as JSON\n"
    "  /load FILE         load a conversation saved with /save\n"
    "  /tool-result JSON  give the result of the oldest tool call still waiting\n"
    "  /stats             timings of this session and context use\n"
    "  /help              this list\n"
    "  /exit              leave (also /quit, Ctrl-D, or Ctrl-C at an empty prompt)\n"
    "a line ending in \\ continues on the next one; Ctrl-C stops an answer; start a line with // to send a "
    "text beginning with /";

std::string read_file(const std::string& path, const char* what) {
    std::ifstream f(path, std::ios::binary);
    if (!f) throw std::runtime_error(std::string("cannot read ") + what + " " + path);
    std::ostringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

std::string drop_final_newline(std::string s) {
    if (!s.empty() && s.back() == '\n') s.pop_back();
    if (!s.empty() && s.back() == '\r') s.pop_back();
    return s;
}

// -sys and -sysf are llama.cpp's spellings; CLI11 only takes one-letter short options.
std::vector<std::string> translate_args(int argc, char** argv) {
    std::vector<std::string> args(argv, argv + argc);
    for (std::string& a : args) {
        if (a == "-sys") a = "--system-prompt";
        if (a == "-sysf") a = "--system-file";
        if (a == "-ub") a = "--ubatch-size";
    }
    return args;
}

std::string system_prompt(const ChatOptions& o) {
    if (o.no_system) return "";
    if (!o.system.empty()) return o.system;
    if (!o.system_file.empty()) return drop_final_newline(read_file(o.system_file, "system prompt file"));
    const fs::path shipped = fs::path(o.common.model) / "SYSTEM_PROMPT.txt";
    if (!fs::exists(shipped)) return "";
    fs::path dir = fs::path(o.common.model);
    const std::string name = (dir.filename().empty() ? dir.parent_path() : dir).filename().string();
    log_info("system prompt: %s", shipped.c_str());
    return fill_system_prompt(read_file(shipped.string(), "system prompt"), name, std::time(nullptr));
}

// generation_config.json's "temperature", else Mistral's recommended 0.15.
float default_temperature(const std::string& dir) {
    std::ifstream f(fs::path(dir) / "generation_config.json");
    if (!f) return 0.15f;
    try {
        nlohmann::json j = nlohmann::json::parse(f);
        if (j.contains("temperature") && j["temperature"].is_number()) return j["temperature"].get<float>();
    } catch (const nlohmann::json::exception&) {
        log_warn("%s/generation_config.json is not valid JSON; ignoring it", dir.c_str());
    }
    return 0.15f;
}

std::string call_line(const ToolCall& c) {
    nlohmann::ordered_json j;
    j["name"] = c.name;
    try {
        j["arguments"] = nlohmann::ordered_json::parse(c.arguments.empty() ? "{}" : c.arguments);
    } catch (const nlohmann::json::exception&) {
        j["arguments"] = c.arguments;
    }
    j["id"] = c.id;
    return py_json(j);
}

// How an answer ended, where that is worth a line: in the REPL, which goes on (dropping the oldest turns
// unless --context-full stop), or in a one-shot answer.
const char* stop_note(StopReason s, bool repl, bool drops) {
    switch (s) {
        case StopReason::ContextFull:
            if (!repl) return "the answer stopped at the end of the context (raise -c)";
            return drops ? "the context is full: the next message drops the oldest turns (/clear starts anew; -c "
                           "raises the context)"
                         : "the context is full; /clear starts a new conversation (or raise -c)";
        case StopReason::Interrupted: return "(interrupted)";
        default: return nullptr;
    }
}

// -p TEXT, -p - (stdin) or -f FILE; one final newline of a file or stdin is dropped.
std::string one_shot_prompt(const ChatOptions& o) {
    if (!o.prompt_file.empty()) return drop_final_newline(read_file(o.prompt_file, "prompt file"));
    if (o.prompt != "-") return o.prompt;
    std::ostringstream ss;
    ss << std::cin.rdbuf();
    return drop_final_newline(ss.str());
}

int run_one_shot(ChatSession& s, const std::string& prompt, double load_ms) {
    bool printed = false;
    Reply r = s.ask(prompt, [&](const std::string& piece) {
        if (piece.empty()) return;
        std::fwrite(piece.data(), 1, piece.size(), stdout);
        std::fflush(stdout);
        printed = true;
    });
    if (printed || r.calls.empty()) std::fputc('\n', stdout);
    for (const ToolCall& c : r.calls) std::printf("%s\n", call_line(c).c_str());
    std::fflush(stdout);
    if (r.malformed_calls) log_warn("the model's tool call could not be parsed; it was printed as text");
    if (r.stop == StopReason::ContextFull) log_warn("%s", stop_note(r.stop, false, false));
    char buf[64];
    std::snprintf(buf, sizeof buf, "%20s = %10.2f ms", "load time", load_ms);
    log_info("%s", buf);
    for (const std::string& line : format_timings(r.timings)) log_info("%s", line.c_str());
    return 0;
}

// The REPL: one line per turn or command, answers streamed on stdout, everything else on stderr.
class Repl {
public:
    Repl(ChatSession& s, Console& con, bool drops) : s_(s), con_(con), drops_(drops) {}

    int run() {
        con_.info("chat: type a message, /help for commands; Ctrl-C stops an answer, Ctrl-D exits");
        std::string line;
        for (;;) {
            const Console::Input in = con_.read_line(line);
            if (in == Console::Input::Eof) break;
            if (in == Console::Input::Interrupt) {
                finish();
                return 130;
            }
            const ReplLine in_line = parse_repl_line(line);
            if (in_line.kind == ReplLine::Kind::Empty) continue;
            try {
                if (in_line.kind == ReplLine::Kind::Command) {
                    if (!command(in_line.cmd, in_line.arg)) break;
                } else {
                    show(s_.ask(in_line.text, stream(), stop()));
                }
            } catch (const ContextOverflow& e) {
                con_.error(e.what());
                if (!drops_) con_.info("/clear starts a new conversation");
            } catch (const std::exception& e) {
                con_.error(e.what());
            }
            Console::clear_interrupt();
        }
        finish();
        return 0;
    }

private:
    ChatSession::OnText stream() {
        printed_ = false;
        return [this](const std::string& piece) {
            if (piece.empty()) return;
            con_.answer(piece);
            printed_ = true;
        };
    }
    static ChatSession::ShouldStop stop() { return [] { return Console::interrupted(); }; }

    void show(const Reply& r) {
        if (printed_ || r.calls.empty()) con_.answer("\n");  // one line per answer, even an empty one
        for (const ToolCall& c : r.calls) con_.answer(call_line(c) + "\n");
        if (r.malformed_calls) con_.error("the model's tool call could not be parsed; it was kept as text");
        if (!r.calls.empty())
            con_.info("the model called " + std::to_string(r.calls.size()) +
                      " tool(s): give each result with /tool-result JSON");
        if (const char* note = stop_note(r.stop, true, drops_)) con_.info(note);
        con_.info(format_speed(r.timings));
    }

    // false: leave the REPL.
    bool command(const std::string& cmd, const std::string& arg) {
        auto need_arg = [&](const char* what) {
            if (arg.empty()) throw std::runtime_error(cmd + " needs " + what);
        };
        if (cmd == "/exit" || cmd == "/quit") return false;
        if (cmd == "/help") {
            con_.info(kHelp);
        } else if (cmd == "/clear") {
            s_.clear();
            con_.info("new conversation");
        } else if (cmd == "/image") {
            need_arg("a file");
            const ImageRef& im = s_.attach_image(arg);
            con_.info(im.path + ": image attached, " + std::to_string(im.cols) + "x" + std::to_string(im.rows) +
                      " cells (" + std::to_string(im.rows * (im.cols + 1)) + " tokens)");
        } else if (cmd == "/regen") {
            show(s_.regenerate(stream(), stop()));
        } else if (cmd == "/save") {
            need_arg("a file");
            s_.save(arg);
            con_.info("saved " + std::to_string(s_.messages().size()) + " messages to " + arg);
        } else if (cmd == "/load") {
            need_arg("a file");
            s_.load(arg);
            con_.info("loaded " + std::to_string(s_.messages().size()) + " messages from " + arg);
        } else if (cmd == "/tool-result") {
            need_arg("the result (JSON)");
            if (std::optional<Reply> r = s_.tool_result(arg, stream(), stop()))
                show(*r);
            else
                con_.info(std::to_string(s_.waiting_tool_calls()) + " tool call(s) still waiting for a result");
        } else if (cmd == "/stats") {
            stats();
        } else {
            throw std::runtime_error("unknown command " + cmd + " (/help lists them)");
        }
        return true;
    }

    void stats() {
        con_.info("context: " + std::to_string(s_.n_cached()) + " of " + std::to_string(s_.n_ctx()) +
                  " tokens cached, " + std::to_string(s_.messages().size()) + " messages");
        if (s_.totals().turns == 0) return;
        for (const std::string& l : format_timings(s_.totals())) con_.info(l);
    }

    void finish() {
        if (s_.totals().turns > 0)
            for (const std::string& l : format_timings(s_.totals())) con_.info(l);
    }

    ChatSession& s_;
    Console& con_;
    bool drops_;  // --context-full is not stop: a full context loses its oldest turns
    bool printed_ = false;
};

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"chat: talk with Mistral-Small-3.x from its Hugging Face folder (REPL, or one answer with -p)"};
    app.footer("Without -p or -f, chat reads messages from stdin; type /help there for its commands.");
    ChatOptions o;
    add_common_options(app, o.common);
    auto* p_opt = app.add_option("-p,--prompt", o.prompt, "one-shot: answer this prompt and exit (- reads stdin)");
    auto* f_opt = app.add_option("-f,--file", o.prompt_file, "one-shot: read the prompt from a file")->excludes(p_opt);
    add_image_options(app, o.images, "image(s) shown before the prompt (in the chat: the first message), in order");
    auto* sys = app.add_option("--system-prompt", o.system, "system prompt (also -sys)");
    auto* sysf = app.add_option("--system-file", o.system_file, "read the system prompt from a file (also -sysf)")
                     ->excludes(sys);
    app.add_flag("--no-system", o.no_system, "no system prompt, not even the folder's SYSTEM_PROMPT.txt")
        ->excludes(sys)
        ->excludes(sysf);
    auto* temp = app.add_option("--temp", o.sampling.temp,
                                "temperature, 0 = greedy (default: generation_config.json, else 0.15)");
    app.add_option("--top-k", o.sampling.top_k, "top-k, 0 = off")->capture_default_str();
    app.add_option("--top-p", o.sampling.top_p, "top-p, 1 = off")->capture_default_str();
    app.add_option("--min-p", o.sampling.min_p, "min-p, 0 = off")->capture_default_str();
    app.add_option("--repeat-penalty", o.sampling.repeat_penalty, "repeat penalty, 1 = off")->capture_default_str();
    app.add_option("--frequency-penalty", o.sampling.frequency_penalty,
                   "subtracted from a recent token's logit per occurrence, 0 = off")
        ->capture_default_str();
    app.add_option("--presence-penalty", o.sampling.presence_penalty,
                   "subtracted from the logit of every recent token, 0 = off")
        ->capture_default_str();
    app.add_option("--repeat-last-n", o.sampling.repeat_last_n, "tokens the penalties look back")
        ->capture_default_str();
    app.add_option("-n,--n-predict", o.n_predict, "tokens per answer, -1 = until </s> or a full context")
        ->capture_default_str();
    app.add_option("--ubatch-size", o.n_ubatch,
                   "prompt tokens per forward pass (also -ub); logits only for the last. 0: 2048 on a GPU (each pass "
                   "expands every NVFP4 weight to BF16 once for its products), 512 on the CPU")
        ->check(whole_number(0))
        ->capture_default_str();
    app.add_option("--draft,--draft-max", o.draft.n_draft,
                   "prompt-lookup speculation: tokens proposed per decode pass from an earlier occurrence of the last "
                   "few tokens, checked by the model in that pass (0 = off; greedy answers keep their tokens, sampled "
                   "ones their distribution)")
        ->check(whole_number(0, 64))
        ->capture_default_str();
    app.add_option("--draft-ngram-min", o.draft.ngram_min, "--draft: the fewest last tokens that make a match")
        ->check(whole_number(1, 16))
        ->capture_default_str();
    app.add_option("--draft-ngram-max", o.draft.ngram_max, "--draft: the most last tokens matched (tried first)")
        ->check(whole_number(1, 16))
        ->capture_default_str();
    app.add_option("--context-full", o.context_full,
                   "chat: when a conversation leaves less than a quarter of the context (or -n) for the answer, "
                   "drop-oldest drops its oldest turns (the system prompt stays) down to half the context and "
                   "reads the rest again; shift drops them too but moves the cache down over them instead "
                   "(llama.cpp's context shift: no re-read, answers close to but not those of the shorter "
                   "conversation); stop refuses the message (/clear starts anew)")
        ->check(CLI::IsMember({"drop-oldest", "shift", "stop"}))
        ->capture_default_str();
    app.add_option("--tools", o.tools_file, "JSON file with an OpenAI-style function list");
    app.add_option("--color", o.color, "colours: auto (on a terminal), on, off")
        ->check(CLI::IsMember({"auto", "on", "off"}))
        ->capture_default_str();
    CLI::Option* cache_opt = app.add_option(
        "--prompt-cache", o.prompt_cache,
        "file for the KV cache of the first prompt: reused where the next prompt starts the same (system prompt, "
        "tools, images, message), written after the prefill");
    app.add_flag("--prompt-cache-ro", o.prompt_cache_ro, "use the --prompt-cache file but do not update it")
        ->needs(cache_opt);
    app.add_option("--dump-ids", o.dump_ids, "debug: append the ids of every prefill to FILE")->group("");

    std::vector<std::string> args = translate_args(argc, argv);
    std::vector<char*> cargs;
    for (std::string& a : args) cargs.push_back(a.data());
    return run_main(app, int(cargs.size()), cargs.data(), [&] {
        if (!fs::is_directory(o.common.model))
            throw std::runtime_error("model folder " + o.common.model + " does not exist");
        const bool one_shot = p_opt->count() > 0 || f_opt->count() > 0;
        if (temp->count() == 0) o.sampling.temp = default_temperature(o.common.model);
        o.sampling.seed = o.common.seed;
        Sampler check(o.sampling);  // bad sampling values fail before the model loads

        mistral::Tokenizer tok(o.common.model);
        const ChatTemplate tmpl(tok);
        SessionOptions so;
        so.n_predict = o.n_predict;
        if (o.draft.ngram_max < o.draft.ngram_min)
            throw std::runtime_error("--draft-ngram-max " + std::to_string(o.draft.ngram_max) +
                                     " is below --draft-ngram-min " + std::to_string(o.draft.ngram_min));
        so.draft = o.draft;
        so.dump_ids = o.dump_ids;
        so.prompt_cache = o.prompt_cache;
        so.prompt_cache_ro = o.prompt_cache_ro;
        if (!o.prompt_cache.empty()) check_prompt_cache_path(o.prompt_cache, !o.prompt_cache_ro);
        so.seed = o.common.seed;
        if (!o.tools_file.empty()) {
            try {
                so.tools = tools_json(parse_json(read_file(o.tools_file, "tools file")));
            } catch (const nlohmann::json::parse_error& e) {
                throw std::runtime_error(o.tools_file + ": not valid JSON (at byte " + std::to_string(e.byte) + ")");
            }
        }
        const std::string system = system_prompt(o);
        const std::string prompt = one_shot ? one_shot_prompt(o) : "";
        for (const std::string& p : o.images.paths)  // fail before a long model load
            if (!std::ifstream(p, std::ios::binary)) throw std::runtime_error("cannot read image " + p);

        const auto t0 = std::chrono::steady_clock::now();
        auto model = load_model(o.common, one_shot && o.images.paths.empty());
        const double load_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
        const mistral::Config& cfg = model->config();
        so.image = image_options(o.images, cfg, tok);

        const bool cpu = std::string(model->backend().name()).rfind("cpu", 0) == 0;
        if (o.n_ubatch == 0) o.n_ubatch = cpu ? 512 : 2048;
        so.n_batch = o.n_ubatch;
        int n_ctx = o.common.ctx > 0 ? o.common.ctx : (cpu ? 4096 : 32768);
        if (o.common.ctx == 0 && n_ctx > cfg.text.max_pos) n_ctx = int(cfg.text.max_pos);
        const fp4::Type kv_type = cache_type_of(o.common).value_or(model->backend().cache_type());
        if (o.common.ctx == 0) {  // a default context shrinks to what the card holds (-c is taken as asked)
            const size_t free = model->backend().memory_free();
            const int fit = mistral::fitting_context(cfg.text, n_ctx, 1, kv_type, free, o.n_ubatch);
            if (fit > 0 && fit < n_ctx) {
                log_info("chat: a context of %d tokens does not fit the %.2f GiB of free %s memory; using %d (-c sets it)",
                         n_ctx, double(free) / double(1ull << 30), model->backend().name(), fit);
                n_ctx = fit;
            }
        }
        if (o.n_predict > n_ctx)
            throw std::runtime_error("-n " + std::to_string(o.n_predict) + " exceeds the context of " +
                                     std::to_string(n_ctx) + " tokens (-c)");
        so.reserve_n_predict = one_shot;
        so.context_full = o.context_full == "stop"    ? ContextFull::Stop
                          : o.context_full == "shift" ? ContextFull::Shift
                                                      : ContextFull::DropOldest;
        mistral::Context ctx(*model, n_ctx, 1, kv_type, o.n_ubatch);
        log_info("chat: %s layout, context %d tokens, sampling: %s", tok.version().c_str(), n_ctx,
                 check.describe().c_str());

        ChatSession session(ctx, tok, tmpl, o.sampling, so);
        session.set_system(system);
        for (const std::string& p : o.images.paths) session.attach_image(p);
        if (one_shot) return run_one_shot(session, prompt, load_ms);
        Console con(parse_color_mode(o.color));
        return Repl(session, con, so.context_full != ContextFull::Stop).run();
    });
}
