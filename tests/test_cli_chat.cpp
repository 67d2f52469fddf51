// test_cli_chat.cpp — build/bin/chat as a user runs it (from the project root, FP4_BIN = the binaries'
// folder): one-shot answers against the tiny-kjv goldens, prompts from files and stdin, system prompts,
// tools, the prompt cache, prompt-lookup drafts, the REPL driven through a pipe (turns, images, /clear, /regen,
// /save, /load, /tool-result, bad commands, Ctrl-C), the ids sent to the model (--dump-ids), and the error
// messages.
#include <doctest/doctest.h>

#include <sys/wait.h>

#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli.h"
#include "golden.h"
#include "tokenizer.h"

namespace fs = std::filesystem;
using Ids = std::vector<int32_t>;

namespace {

const std::string kModel = "tests/data/tiny-kjv/nvfp4";
const std::string kRedCircle = "tests/data/tiny-kjv/images/red_circle.png";

using cli::bin;
using cli::tmp_dir;
std::string read(const fs::path& p) { return cli::read_file(p); }

std::string write(const std::string& name, const std::string& text) {
    const fs::path p = tmp_dir() / name;
    std::ofstream(p, std::ios::binary) << text;
    return p.string();
}

using cli::exit_code;
using cli::Run;

// `chat --device cpu ARGS < stdin_text`, capturing stdout and stderr. The CPU path is the one whose greedy
// tokens equal the goldens exactly.
Run chat(const std::string& args, const std::string& stdin_text = "") {
    const std::string in = write("stdin.txt", stdin_text);
    const fs::path out = tmp_dir() / "stdout.txt", err = tmp_dir() / "stderr.txt";
    const std::string cmd = bin() + "/chat --device cpu " + args + " < " + in + " > " + out.string() + " 2> " +
                            err.string();
    Run r;
    r.rc = exit_code(std::system(cmd.c_str()));
    r.out = read(out);
    r.err = read(err);
    return r;
}

// A bash script run from the project root (for FIFOs and signals).
int script(const std::string& body) {
    const std::string path = write("script.sh", "set -u\nCHAT=\"" + bin() + "/chat --device cpu\"\n" + body);
    return exit_code(std::system(("bash " + path).c_str()));
}

struct Prefill {
    int64_t pos;
    Ids ids;
};

// The --dump-ids file: one {"pos", "ids"} line per prefill.
std::vector<Prefill> prefills(const std::string& path) {
    std::vector<Prefill> out;
    std::istringstream in(read(path));
    std::string line;
    while (std::getline(in, line)) {
        nlohmann::json j = nlohmann::json::parse(line);
        out.push_back({j["pos"].get<int64_t>(), j["ids"].get<Ids>()});
    }
    return out;
}

std::string dump_path(const std::string& name) {
    const fs::path p = tmp_dir() / name;
    fs::remove(p);
    return p.string();
}

const mistral::Tokenizer& tok() {
    static const mistral::Tokenizer t(kModel);
    return t;
}

Ids cat(std::initializer_list<Ids> parts) {
    Ids out;
    for (const Ids& p : parts) out.insert(out.end(), p.begin(), p.end());
    return out;
}
Ids E(const std::string& text) { return tok().encode(text); }
Ids image(int rows, int cols) {
    Ids out;
    for (int r = 0; r < rows; ++r) {
        out.insert(out.end(), size_t(cols), 10);
        out.push_back(r + 1 < rows ? 12 : 13);
    }
    return out;
}

std::string golden_text(const std::string& name) {
    static const Golden g("tests/data/tiny-kjv/golden");
    return g.find_case(name)["greedy_nvfp4_text"].get<std::string>();
}

// A model folder beside tiny-kjv's: the same weights, a tekken.json edited by `edit`, and extra files.
std::string model_variant(const std::string& name, const std::function<void(nlohmann::json&)>& edit,
                          const std::map<std::string, std::string>& files = {}) {
    const fs::path dir = tmp_dir() / name;
    fs::create_directories(dir);
    for (const char* f : {"config.json", "generation_config.json", "model.safetensors"})
        if (!fs::exists(dir / f)) fs::create_symlink(fs::absolute(fs::path(kModel) / f), dir / f);
    nlohmann::json t = nlohmann::json::parse(read(fs::path(kModel) / "tekken.json"));
    edit(t);
    std::ofstream(dir / "tekken.json") << t.dump();
    for (const auto& [f, text] : files) std::ofstream(dir / f) << text;
    return dir.string();
}

void with_tool_tokens(nlohmann::json& t) {
    t["special_tokens"][32]["token_str"] = "[ARGS]";
    t["special_tokens"][33]["token_str"] = "[CALL_ID]";
}

// Exactly one line of stderr mentions an error, and it is the last one.
void check_one_error(const Run& r, const std::string& contains) {
    INFO("stderr: " << r.err);
    CHECK(r.rc == 1);
    CHECK(r.out.empty());
    size_t n = 0, pos = 0;
    while ((pos = r.err.find("error", pos)) != std::string::npos) ++n, ++pos;
    CHECK(n == 1);
    const size_t last = r.err.rfind("error: ");
    REQUIRE(last != std::string::npos);
    CHECK(r.err.find('\n', last) == r.err.size() - 1);
    CHECK(r.err.find(contains, last) != std::string::npos);
}

}  // namespace

TEST_CASE("one-shot: the golden psalm continuation, only the answer on stdout, timings on stderr") {
    Run r = chat("-m " + kModel + " --temp 0 -n 48 -p \"Psalms 23\"");
    INFO(r.err);
    CHECK(r.rc == 0);
    CHECK(r.out == golden_text("psalm") + "\n");
    for (const char* s : {"prompt eval time", "eval time", "time to first token", "tokens per second"})
        CHECK(r.err.find(s) != std::string::npos);
}

#ifdef FP4_TEST_CUDA_EMU
TEST_CASE("a default context shrinks to what the device holds; an asked-for one that does not fit is refused") {
    setenv("FP4_CUDA_EMU_GIB", "0.05", 1);  // 51 MiB: 7680 tokens of BF16 cache (4 KiB each) and the rest
    const std::string args = "chat -m " + kModel + " --device cuda --temp 0 -n 8 -p \"Psalms 23\"";
    Run r = cli::run(args + " -ub 512");
    INFO(r.err);
    CHECK(r.rc == 0);
    CHECK(r.err.find("a context of 32768 tokens does not fit") != std::string::npos);
    CHECK(r.err.find("context 7680 tokens") != std::string::npos);
    // Passes of 2048 prompt tokens (the default -ub on a GPU) need more activation memory: less room for the
    // cache.
    Run big = cli::run(args);
    INFO(big.err);
    CHECK(big.rc == 0);
    const size_t at = big.err.find("layout, context ");
    REQUIRE(at != std::string::npos);
    const int n_ctx = std::atoi(big.err.c_str() + at + 16);
    CHECK(n_ctx < 7680);
    CHECK(n_ctx % 256 == 0);
    CHECK(big.out == r.out);
    r = cli::run(args + " -c 32768");
    CHECK(r.rc == 1);
    CHECK(r.err.find("error: the BF16 KV cache for 32768 tokens x 1 sequence(s) needs 0.12 GiB") != std::string::npos);
    r = cli::run(args + " -c 4096 -ub 4096");  // the cache alone would fit
    unsetenv("FP4_CUDA_EMU_GIB");
    CHECK(r.rc == 1);
    CHECK(r.err.find("for passes of 4096 tokens") != std::string::npos);
}

TEST_CASE("--prompt-cache: a BF16 cache written on the CPU serves the CUDA backend") {
    const std::string cache = (tmp_dir() / "cpu.cache").string();
    fs::remove(cache);
    const std::string args = "chat -m " + kModel + " --temp 0 -n 16 -p \"Psalms 23\" --kv-type bf16 --prompt-cache " + cache;
    Run cpu = cli::run(args + " --device cpu"), gpu = cli::run(args + " --device cuda"),
        plain = cli::run("chat -m " + kModel + " --temp 0 -n 16 -p \"Psalms 23\" --device cuda");
    INFO(cpu.err << gpu.err);
    CHECK(cpu.err.find("prompt cache: saved 7 tokens") != std::string::npos);
    CHECK(gpu.rc == 0);
    CHECK(gpu.err.find("prompt cache: 7 of the prompt's 7 tokens") != std::string::npos);
    CHECK(gpu.out == plain.out);
}

TEST_CASE("a GPU the CUDA backend refuses: an error with --device cuda, a warning and the CPU with auto") {
    setenv("FP4_CUDA_EMU_CC", "7.5", 1);
    const std::string args = "chat -m " + kModel + " --temp 0 -n 48 -p \"Psalms 23\"";
    Run cuda = cli::run(args + " --device cuda"), any = cli::run(args);
    unsetenv("FP4_CUDA_EMU_CC");
    INFO(cuda.err << any.err);
    CHECK(cuda.rc == 1);
    CHECK(cuda.err.find("error: --device cuda: CUDA backend: this GPU (CPU emulator) has compute capability 7.5;") != std::string::npos);
    CHECK(any.rc == 0);
    CHECK(any.out == golden_text("psalm") + "\n");
    CHECK(any.err.find("warning: not using the GPU (CUDA backend: this GPU (CPU emulator) has compute capability 7.5;") != std::string::npos);
    CHECK(any.err.find("weights on cpu") != std::string::npos);
}

TEST_CASE("a bad FP4_CUDA_* value: one error line, with --device cuda and with auto") {
    setenv("FP4_CUDA_FUSE", "off", 1);
    const std::string args = "chat -m " + kModel + " --temp 0 -n 4 -p \"Psalms 23\"";
    for (const char* device : {" --device cuda", ""}) {
        Run r = cli::run(args + device);
        INFO(device << ": " << r.err);
        CHECK(r.rc == 1);
        CHECK(r.out.empty());
        CHECK(r.err.find("error: FP4_CUDA_FUSE=off: expected 1 (on) or 0 (off)\n") != std::string::npos);
        CHECK(r.err.find("running on the CPU") == std::string::npos);
    }
    unsetenv("FP4_CUDA_FUSE");
}
#endif

TEST_CASE("one-shot: the golden answer about an image") {
    Run r = chat("-m " + kModel + " --temp 0 --image " + kRedCircle + " -p \"What is in the image?\"");
    INFO(r.err);
    CHECK(r.rc == 0);
    CHECK(r.out == golden_text("shape_red_circle") + "\n");
    CHECK(r.err.find("image encode time") != std::string::npos);
    // Prefilled 5 tokens per pass, the image's rows spread over many passes: the same answer.
    Run c = chat("-m " + kModel + " --temp 0 -ub 5 --image " + kRedCircle + " -p \"What is in the image?\"");
    CHECK(c.rc == 0);
    CHECK(c.out == golden_text("shape_red_circle") + "\n");
    CHECK(r.err.find("EXIF") == std::string::npos);
}

TEST_CASE("one-shot: a picture stored sideways is turned upright and said so") {
    // The red circle with an eXIf chunk after IHDR: orientation 6 (big-endian TIFF, one SHORT entry).
    const std::string tiff("MM\0\x2a\0\0\0\x08\0\x01\x01\x12\0\x03\0\0\0\x01\0\x06\0\0\0\0\0\0", 26);
    std::string png = read(kRedCircle);
    REQUIRE(png.size() > 33);
    png.insert(33, std::string("\0\0\0\x1a", 4) + "eXIf" + tiff + std::string(4, '\0'));
    Run r = chat("-m " + kModel + " --temp 0 --image " + write("sideways.png", png) + " -p \"What is in the image?\"");
    INFO(r.err);
    CHECK(r.rc == 0);
    CHECK(r.out == golden_text("shape_red_circle") + "\n");
    CHECK(r.err.find("sideways.png: turned upright by its EXIF orientation (6)") != std::string::npos);
}

TEST_CASE("one-shot: the prompt from a file or stdin, and the layout sent to the model") {
    const std::string want = golden_text("psalm") + "\n";
    const std::string file = write("prompt.txt", "Psalms 23\n");
    const std::string d1 = dump_path("file.jsonl");
    Run f = chat("-m " + kModel + " --temp 0 -n 48 -f " + file + " --dump-ids " + d1);
    CHECK(f.rc == 0);
    CHECK(f.out == want);
    auto p = prefills(d1);
    REQUIRE(p.size() == 1);
    CHECK(p[0].pos == 0);
    CHECK(p[0].ids == Ids{1, 3, 2702, 1032, 1050, 1051, 4});  // golden psalm.ids

    Run s = chat("-m " + kModel + " --temp 0 -n 48 -p -", "Psalms 23\n");
    CHECK(s.rc == 0);
    CHECK(s.out == want);
}

TEST_CASE("one-shot: -sys, SYSTEM_PROMPT.txt with its placeholders, --no-system") {
    const std::string d = dump_path("sys.jsonl");
    Run r = chat("-m " + kModel + " --temp 0 -n 2 -sys \"You are a scribe.\" -p \"Psalms 23\" --dump-ids " + d);
    CHECK(r.rc == 0);
    auto p = prefills(d);
    REQUIRE(p.size() == 1);
    CHECK(p[0].ids == cat({{1, 17}, E("You are a scribe."), {18, 3}, E("Psalms 23"), {4}}));

    const std::string dir = model_variant("Tiny-KJV-Instruct", [](nlohmann::json&) {},
                                          {{"SYSTEM_PROMPT.txt", "You are {name}. Today is {today}.\n"}});
    char today[16];
    const std::time_t now = std::time(nullptr);
    std::strftime(today, sizeof today, "%Y-%m-%d", std::localtime(&now));
    const std::string d2 = dump_path("shipped.jsonl");
    Run s = chat("-m " + dir + " --temp 0 -n 2 -p \"Psalms 23\" --dump-ids " + d2);
    CHECK(s.rc == 0);
    auto q = prefills(d2);
    REQUIRE(q.size() == 1);
    CHECK(q[0].ids ==
          cat({{1, 17}, E(std::string("You are Tiny-KJV-Instruct. Today is ") + today + ".\n"), {18, 3},
               E("Psalms 23"), {4}}));

    const std::string d3 = dump_path("nosys.jsonl");
    Run n = chat("-m " + dir + " --temp 0 -n 2 --no-system -p \"Psalms 23\" --dump-ids " + d3);
    CHECK(n.rc == 0);
    CHECK(prefills(d3).at(0).ids == Ids{1, 3, 2702, 1032, 1050, 1051, 4});
}

TEST_CASE("one-shot: --tools puts [AVAILABLE_TOOLS] before the user message") {
    const std::string tools = write("tools.json", R"([{"type": "function", "function": {"name": "get_weather",
        "description": "Get weather", "parameters": {"type": "object"}}}])");
    const std::string d = dump_path("tools.jsonl");
    Run r = chat("-m " + kModel + " --temp 0 -n 2 --tools " + tools + " -p Weather? --dump-ids " + d);
    CHECK(r.rc == 0);
    CHECK(prefills(d).at(0).ids ==
          cat({{1, 5},
               E(R"([{"type": "function", "function": {"name": "get_weather", "description": "Get weather", )"
                 R"("parameters": {"type": "object"}}}])"),
               {6, 3},
               E("Weather?"),
               {4}}));
    check_one_error(chat("-m " + kModel + " --tools " + write("bad.json", "[{") + " -p x"), "not valid JSON");
}

TEST_CASE("one-shot errors: one clear line and exit code 1") {
    check_one_error(chat("-m tests/data/no-such-model -p hi"), "no-such-model");
    check_one_error(chat("-m " + kModel + " --image tests/data/missing.png -p hi"), "missing.png");
    check_one_error(chat("-m " + kModel + " --image " + write("not_an_image.png", "text") + " -p hi"),
                    "not_an_image.png");
    check_one_error(chat("-m " + kModel + " -c 8 -p \"" + std::string(200, 'a') + " b c d e\""), "context");
    const std::string v3 = model_variant("v3-model", [](nlohmann::json& t) { t["config"]["version"] = "v3"; });
    check_one_error(chat("-m " + v3 + " -p hi"), "v3");
    check_one_error(chat("-m " + kModel + " -p hi --top-p 0"), "top-p");
    // Flags CLI11 refuses: the same one line and exit code 1.
    check_one_error(chat("-m " + kModel + " -p hi --no-such-flag"), "not expected: --no-such-flag (see --help)");
    check_one_error(chat("-m " + kModel + " -p hi -f x"), "--prompt excludes --file");
    check_one_error(chat("-p hi"), "--model is required");
    check_one_error(chat("-m " + kModel + " -p hi -n many"), "many");
    // Whole-number options name the value and the range they take (no DBL_MAX printed in full).
    check_one_error(chat("-m " + kModel + " -p hi -c -5"), "--ctx-size: -5 is not a whole number >= 0 (see --help)");
    check_one_error(chat("-m " + kModel + " -p hi -ub -1"), "--ubatch-size: -1 is not a whole number >= 0");
    check_one_error(chat("-m " + kModel + " -p hi --draft 65"), "--draft: 65 is not a whole number from 0 to 64");
    check_one_error(chat("-m " + kModel + " -p hi -t 2x"), "--threads: 2x is not a whole number >= 0");
}

TEST_CASE("one-shot: an answer cut by the context says so, without the REPL's /clear") {
    Run r = chat("-m " + kModel + " --temp 0 -c 24 -p \"Psalms 23\"");
    CHECK(r.rc == 0);
    CHECK(r.err.find("the answer stopped at the end of the context (raise -c)") != std::string::npos);
    CHECK(r.err.find("/clear") == std::string::npos);
}

// The decode passes of a one-shot answer, from its "eval time = ... / N runs" line.
int64_t decode_runs(const std::string& err) {
    const size_t at = err.find("           eval time =");
    REQUIRE(at != std::string::npos);
    const size_t slash = err.find('/', at);
    return std::stoll(err.substr(slash + 1));
}

TEST_CASE("--draft: the same greedy answers in fewer passes, one-shot and over REPL turns") {
    Run r = chat("-m " + kModel + " --temp 0 -n 48 -p \"Psalms 23\" --draft 3");
    INFO(r.err);
    CHECK(r.rc == 0);
    CHECK(r.out == golden_text("psalm") + "\n");  // -n 48 exactly, though a pass may take several tokens
    CHECK(r.err.find("draft accepted =") != std::string::npos);
    const std::string genesis = "-m " + kModel + " --temp 0 -n 300 -p \"Genesis 1\"";
    Run plain = chat(genesis), drafted = chat(genesis + " --draft 2");
    INFO(drafted.err);
    CHECK(plain.err.find("draft accepted") == std::string::npos);
    CHECK(drafted.out == plain.out);
    CHECK(decode_runs(drafted.err) < decode_runs(plain.err));
    // The second turn reuses the cache the first left, accepted drafts included: the same prefills.
    const std::string d0 = dump_path("draft0.jsonl"), d3 = dump_path("draft3.jsonl");
    const std::string turns = "Psalms 23\nGenesis 1\n/exit\n";
    Run a = chat("-m " + kModel + " --temp 0 -n 100 --dump-ids " + d0, turns);
    Run b = chat("-m " + kModel + " --temp 0 -n 100 --draft 3 --dump-ids " + d3, turns);
    CHECK(a.rc == 0);
    CHECK(b.rc == 0);
    CHECK(b.out == a.out);
    const auto pa = prefills(d0), pb = prefills(d3);
    REQUIRE(pa.size() == 2);
    REQUIRE(pb.size() == 2);
    CHECK(pb[1].pos == pa[1].pos);
    CHECK(pb[1].ids == pa[1].ids);
    // A second picture: its answer ends like the first's, whose next tokens are </s>[INST][IMG]...; a draft
    // stops before an image's place (an [IMG] in a pass without image rows was an error).
    const std::string pictures = "/image " + kRedCircle + "\nWhat is in the image?\n/image " +
                                 "tests/data/tiny-kjv/images/blue_square.png\nWhat is in the image?\n/exit\n";
    Run without = chat("-m " + kModel + " --temp 0", pictures);
    Run with = chat("-m " + kModel + " --temp 0 --draft 3", pictures);
    INFO(with.err);
    CHECK(with.rc == 0);
    CHECK(with.err.find("error") == std::string::npos);
    CHECK(with.out == without.out);
    // Sampling checks each draft token by its probability; -n still ends the answer.
    Run sampled = chat("-m " + kModel + " --temp 0.7 --seed 11 -n 60 -p \"Genesis 1\" --draft 2");
    INFO(sampled.err);
    CHECK(sampled.rc == 0);
    CHECK(!sampled.out.empty());
    CHECK(sampled.err.find("draft accepted =") != std::string::npos);
    check_one_error(chat("-m " + kModel + " -p hi --draft -1"), "--draft");
    check_one_error(chat("-m " + kModel + " -p hi --draft 2 --draft-ngram-min 3 --draft-ngram-max 2"),
                    "--draft-ngram-max 2 is below --draft-ngram-min 3");
}

#ifdef FP4_TEST_CUDA_EMU
// "draft accepted = A of D tokens": D.
int64_t drafted_tokens(const std::string& err) {
    const size_t at = err.find("draft accepted =");
    REQUIRE(at != std::string::npos);
    return std::stoll(err.substr(err.find(" of ", at) + 4));
}

TEST_CASE("--draft on the CUDA backend: every pass at full length (one graph shape), the same answer") {
    const std::string args = "chat -m " + kModel + " --temp 0 -n 48 -p \"Psalms 23\" --device ";
    Run plain = cli::run(args + "cuda"), gpu = cli::run(args + "cuda --draft 3"), cpu = cli::run(args + "cpu --draft 3");
    INFO(gpu.err);
    CHECK(gpu.rc == 0);
    CHECK(gpu.out == plain.out);
    // The CPU sends only what the lookup found; the GPU pads each draft to 3 tokens while -n leaves room.
    CHECK(drafted_tokens(gpu.err) > drafted_tokens(cpu.err));
    CHECK(drafted_tokens(gpu.err) >= 3 * (decode_runs(gpu.err) - 3));
}
#endif

TEST_CASE("--prompt-cache: the next run prefills only what differs, with the same answer") {
    const std::string cache = (tmp_dir() / "psalm.cache").string(), pc = " --prompt-cache " + cache;
    const std::string psalm = "-m " + kModel + " --temp 0 -n 48 -p \"Psalms 23\"";
    fs::remove(cache);
    Run first = chat(psalm + pc);
    INFO(first.err);
    CHECK(first.rc == 0);
    CHECK(first.out == golden_text("psalm") + "\n");
    CHECK(first.err.find("prompt cache: saved 7 tokens") != std::string::npos);
    Run again = chat(psalm + pc);
    INFO(again.err);
    CHECK(again.out == golden_text("psalm") + "\n");
    CHECK(again.err.find("prompt cache: 7 of the prompt's 7 tokens from " + cache) != std::string::npos);
    CHECK(again.err.find("/     1 tokens") != std::string::npos);  // only the last token runs again
    CHECK(again.err.find("saved") == std::string::npos);           // the file already holds this prompt
    // Another prompt with the same start: the shared ids come from the file, the answer is unchanged.
    const std::string other = "-m " + kModel + " --temp 0 -n 24 -p \"Psalms 24\"";
    Run plain = chat(other), cached = chat(other + pc);
    INFO(cached.err);
    CHECK(cached.rc == 0);
    CHECK(cached.out == plain.out);
    CHECK(cached.err.find("of the prompt's 7 tokens from") != std::string::npos);
    CHECK(cached.err.find("prompt cache: 7 of") == std::string::npos);
    CHECK(cached.err.find("prompt cache: saved 7 tokens") != std::string::npos);  // now this prompt's
}

TEST_CASE("--prompt-cache: images are reused by their pixels, --prompt-cache-ro keeps the file as it is") {
    const std::string image_cache = (tmp_dir() / "image.cache").string(), pc = " --prompt-cache " + image_cache;
    auto ask = [&](const std::string& image, const std::string& flags) {
        Run r = chat("-m " + kModel + " --temp 0 -p \"What is in the image?\" --image " + image + pc + flags);
        INFO(r.err);
        CHECK(r.rc == 0);
        return r;
    };
    fs::remove(image_cache);
    Run first = ask(kRedCircle, "");
    CHECK(first.out == golden_text("shape_red_circle") + "\n");
    CHECK(first.err.find("prompt cache: saved 31 tokens") != std::string::npos);
    // The same pixels under another name: the whole prompt from the file, the vision tower not run.
    const fs::path copy = tmp_dir() / "same-pixels.png";
    fs::copy_file(kRedCircle, copy, fs::copy_options::overwrite_existing);
    Run again = ask(copy.string(), "");
    CHECK(again.out == first.out);
    CHECK(again.err.find("prompt cache: 31 of the prompt's 31 tokens (1 image) from") != std::string::npos);
    CHECK(again.err.find("image encode time") == std::string::npos);
    CHECK(again.err.find("/     1 tokens") != std::string::npos);
    // Another picture at the same place: only the text before it is reused, and the answer is its own.
    const std::string blue = "tests/data/tiny-kjv/images/blue_square.png";
    const std::string red_file = read(image_cache);
    Run other = ask(blue, " --prompt-cache-ro");
    CHECK(other.out == golden_text("shape_blue_square") + "\n");
    CHECK(other.err.find("prompt cache: 2 of the prompt's 31 tokens from") != std::string::npos);
    CHECK(other.err.find("image encode time") != std::string::npos);
    CHECK(other.err.find("saved") == std::string::npos);
    CHECK(read(image_cache) == red_file);  // -ro: not replaced by the blue prompt's
    Run saved = ask(blue, "");
    CHECK(saved.out == other.out);
    CHECK(saved.err.find("prompt cache: saved 31 tokens") != std::string::npos);
    // -ro with no file yet: an ordinary run that writes nothing, even where nothing could be written.
    const fs::path nowhere = tmp_dir() / "no-such-dir" / "c";
    Run plain = chat("-m " + kModel + " --temp 0 -p \"What is in the image?\" --image " + kRedCircle +
                     " --prompt-cache-ro --prompt-cache " + nowhere.string());
    CHECK(plain.rc == 0);
    CHECK(plain.out == first.out);
    CHECK(!fs::exists(nowhere.parent_path()));
    check_one_error(chat("-m " + kModel + " -p hi --prompt-cache-ro"),
                    "--prompt-cache-ro requires --prompt-cache (see --help)");
}

TEST_CASE("--prompt-cache: a file of another model or cache type is replaced, one that is not a cache refused") {
    const std::string cache = (tmp_dir() / "kjv.cache").string(), pc = " --prompt-cache " + cache;
    const std::string args = " --temp 0 -n 16 -p \"Psalms 23\"" + pc;
    fs::remove(cache);
    REQUIRE(chat("-m " + kModel + args).rc == 0);
    const std::string bf16 = "tests/data/tiny-kjv/bf16";
    Run other = chat("-m " + bf16 + args), plain = chat("-m " + bf16 + " --temp 0 -n 16 -p \"Psalms 23\"");
    INFO(other.err);
    CHECK(other.rc == 0);
    CHECK(other.out == plain.out);
    CHECK(other.err.find("warning: prompt cache " + cache + ": it was made by another model") != std::string::npos);
    CHECK(other.err.find("prompt cache: saved 7 tokens") != std::string::npos);
    Run kv = chat("-m " + bf16 + args + " --kv-type bf16");
    INFO(kv.err);
    CHECK(kv.err.find("it holds a F32 KV cache, this run keeps BF16") != std::string::npos);
    // Damaged bytes and a cut file: named, then replaced.
    std::string bytes = read(cache);
    bytes[bytes.size() - 3] ^= 0x40;
    write("kjv.cache", bytes);
    Run damaged = chat("-m " + bf16 + args + " --kv-type bf16");
    INFO(damaged.err);
    CHECK(damaged.err.find("its bytes do not match their checksum") != std::string::npos);
    write("kjv.cache", bytes.substr(0, bytes.size() / 2));
    Run cut = chat("-m " + bf16 + args + " --kv-type bf16");
    INFO(cut.err);
    CHECK(cut.rc == 0);
    CHECK(cut.err.find("damaged or truncated") != std::string::npos);
    CHECK(chat("-m " + bf16 + args + " --kv-type bf16").err.find("prompt cache: 7 of the prompt's 7") != std::string::npos);
    write("kjv.cache", "");  // as `touch` or mktemp leave it
    Run empty = chat("-m " + bf16 + args + " --kv-type bf16");
    INFO(empty.err);
    CHECK(empty.err.find(": empty; prefilling the whole prompt") != std::string::npos);
    CHECK(empty.err.find("prompt cache: saved 7 tokens") != std::string::npos);
    // A file that cannot be written: the answer all the same, with a warning.
    const fs::path blocked = tmp_dir() / "blocked.cache";
    fs::create_directories(blocked.string() + ".tmp");
    Run unsaved = chat("-m " + kModel + " --temp 0 -n 48 -p \"Psalms 23\" --prompt-cache " + blocked.string());
    INFO(unsaved.err);
    CHECK(unsaved.rc == 0);
    CHECK(unsaved.out == golden_text("psalm") + "\n");
    CHECK(unsaved.err.find("blocked.cache: cannot write") != std::string::npos);
    CHECK(unsaved.err.find("answering without saving") != std::string::npos);
    CHECK_FALSE(fs::exists(blocked));
    // Not a prompt cache, or nowhere to write one: an error before the model loads, the file left as it is.
    const std::string config = read(kModel + "/config.json"), not_cache = write("config.json", config);
    Run refused = chat("-m " + kModel + " -p hi --prompt-cache " + not_cache);
    check_one_error(refused, "is not a prompt cache (left as it is)");
    CHECK(refused.err.find("weights on") == std::string::npos);  // refused before the model loads
    CHECK(read(not_cache) == config);
    check_one_error(chat("-m " + kModel + " -p hi --prompt-cache " + (tmp_dir() / "no-such-dir" / "c").string()),
                    "does not exist");
    check_one_error(chat("-m " + kModel + " -p hi --prompt-cache " + tmp_dir().string()), "not a regular file");
}

TEST_CASE("REPL through a pipe: turns, images, /clear, /regen, bad commands; only new tokens are prefilled") {
    const std::string d = dump_path("repl.jsonl");
    Run r = chat("-m " + kModel + " --temp 0 -n 48 --dump-ids " + d,
                 "/image " + kRedCircle +
                     "\n"
                     "What is in the image?\n"
                     "/frobnicate\n"
                     "/image tests/data/missing.png\n"
                     "And the blue one?\n"
                     "/stats\n"
                     "/clear\n"
                     "Psalms 23\n"
                     "/regen\n"
                     "/exit\n");
    INFO(r.err);
    CHECK(r.rc == 0);
    CHECK(r.err.find("error: unknown command /frobnicate") != std::string::npos);
    CHECK(r.err.find("missing.png") != std::string::npos);
    CHECK(r.err.find("context:") != std::string::npos);  // /stats
    CHECK(r.out.find('\033') == std::string::npos);      // no colours on a pipe

    std::istringstream lines(r.out);
    std::string first, second, third, fourth;
    std::getline(lines, first);
    std::getline(lines, second);
    std::getline(lines, third);
    std::getline(lines, fourth);
    CHECK(first == golden_text("shape_red_circle"));
    CHECK(third == golden_text("psalm"));   // a cleared conversation answers like a fresh one
    CHECK(fourth == golden_text("psalm"));  // /regen at temperature 0

    const Ids turn1 = cat({{1, 3}, image(4, 4), E("What is in the image?"), {4}});
    const int64_t answer1 = int64_t(E(golden_text("shape_red_circle")).size());
    auto p = prefills(d);
    REQUIRE(p.size() == 4);
    CHECK(p[0].pos == 0);
    CHECK(p[0].ids == turn1);
    // Turn 2 starts after the cached answer: its </s>, then the new [INST] block.
    CHECK(p[1].pos == int64_t(turn1.size()) + answer1);
    CHECK(p[1].ids == cat({{2, 3}, E("And the blue one?"), {4}}));
    // After /clear only <s>[INST] is shared with the cache.
    CHECK(p[2].pos == 2);
    CHECK(p[2].ids == cat({E("Psalms 23"), {4}}));
    // /regen runs the last prompt token again.
    CHECK(p[3].pos == 6);
    CHECK(p[3].ids == Ids{4});
}

TEST_CASE("REPL: a conversation that outgrows the context drops its oldest turns (read again or shifted), or ends") {
    // -c 128, -n 48: the third message would leave less than 48 tokens for its answer.
    const std::string d = dump_path("full.jsonl");
    const std::string turns = "Psalms 23\nGenesis 1\nExodus 3\n";
    Run r = chat("-m " + kModel + " --temp 0 -c 128 -n 48 --dump-ids " + d, turns);
    INFO(r.err);
    CHECK(r.rc == 0);
    CHECK(r.err.find("dropped its 1 oldest turn (2 messages, ") != std::string::npos);
    CHECK(r.err.find("the context is full") == std::string::npos);
    auto p = prefills(d);
    REQUIRE(p.size() == 3);
    // The first turn is gone: after <s>[INST] the second message comes, its answer, then the third.
    CHECK(p[2].pos == 2);
    const Ids second = cat({E("Genesis 1"), {4}}), third = cat({{2, 3}, E("Exodus 3"), {4}});
    REQUIRE(p[2].ids.size() > second.size() + third.size());
    CHECK(Ids(p[2].ids.begin(), p[2].ids.begin() + long(second.size())) == second);
    CHECK(Ids(p[2].ids.end() - long(third.size()), p[2].ids.end()) == third);
    // The third answer is that of the conversation without its first turn, as a new process loads it.
    const std::string saved = dump_path("full.json");
    Run kept = chat("-m " + kModel + " --temp 0 -c 128 -n 48", turns + "/save " + saved + "\n");
    CHECK(kept.out == r.out);
    const nlohmann::json conv = nlohmann::json::parse(read(saved));
    REQUIRE(conv["messages"].size() == 4);
    CHECK(conv["messages"][0]["content"] == "Genesis 1");
    Run again = chat("-m " + kModel + " --temp 0 -c 128 -n 48", "/load " + saved + "\n/regen\n");
    CHECK(again.out == r.out.substr(r.out.rfind('\n', r.out.size() - 2) + 1));

    // --context-full shift: the cache moves down over the first turn, and only what it lacked is read (the
    // second answer's last token, which no pass has taken yet, and the third message).
    const std::string ds = dump_path("shift.jsonl");
    Run shifted = chat("-m " + kModel + " --temp 0 -c 128 -n 48 --context-full shift --dump-ids " + ds, turns);
    CHECK(shifted.rc == 0);
    CHECK(shifted.err.find("dropped its 1 oldest turn (2 messages, ") != std::string::npos);
    CHECK(shifted.err.find("of them kept in the cache (context shift)") != std::string::npos);
    auto q = prefills(ds);
    REQUIRE(q.size() == 3);
    CHECK(q[2].pos == p[2].pos + int64_t(p[2].ids.size()) - int64_t(third.size()) - 1);
    CHECK(q[2].ids.size() == third.size() + 1);
    CHECK(Ids(q[2].ids.begin() + 1, q[2].ids.end()) == third);
    CHECK(shifted.out.substr(0, shifted.out.rfind('\n', shifted.out.size() - 2)) ==
          r.out.substr(0, r.out.rfind('\n', r.out.size() - 2)));  // the same first two answers

    // A message that does not fit even alone: the error names its own size, and the chat goes on.
    std::string words;
    for (int i = 0; i < 150; ++i) words += " amen";
    Run alone = chat("-m " + kModel + " --temp 0 -c 128 -n 48", turns + words + "\nJohn 3\n");
    const Ids lone = cat({{1, 3}, E(words), {4}});
    const std::string needs = "error: the prompt needs " + std::to_string(lone.size()) + " tokens";
    CHECK(alone.err.find(needs + " but the context holds 128") != std::string::npos);
    CHECK(std::count(alone.out.begin(), alone.out.end(), '\n') == 4);  // three answers, then John's

    Run stopped = chat("-m " + kModel + " --temp 0 -c 128 -n 48 --context-full stop", turns);
    CHECK(stopped.rc == 0);
    CHECK(stopped.err.find("dropped") == std::string::npos);
    CHECK(stopped.err.find("the context is full; /clear starts a new conversation") != std::string::npos);
}

TEST_CASE("REPL: a dropped turn with a picture; the next picture's cache is moved with --context-full shift") {
    // Both pictures take the same [IMG] tokens: the shift must see that the kept one is another file.
    const std::string turns = "/image " + kRedCircle + "\nWhat is in the image?\n/image " +
                              "tests/data/tiny-kjv/images/blue_square.png\nAnd this one?\nWhat colour was it?\n";
    for (const char* mode : {"shift", "drop-oldest"}) {
        CAPTURE(mode);
        const std::string d = dump_path(std::string("pictures-") + mode + ".jsonl");
        Run r = chat("-m " + kModel + " --temp 0 -c 90 -n 16 --context-full " + mode + " --dump-ids " + d, turns);
        INFO(r.err);
        CHECK(r.rc == 0);
        CHECK(r.err.find("dropped its 1 oldest turn (2 messages, 1 image, 36 tokens)") != std::string::npos);
        auto p = prefills(d);
        REQUIRE(p.size() == 3);
        const Ids third = cat({{2, 3}, E("What colour was it?"), {4}});
        if (std::string(mode) == "shift") {
            // <s>[INST], the blue square's 20 tokens, its question and answer stay cached (32 positions).
            CHECK(p[2].pos == 32);
            CHECK(p[2].ids == third);
        } else {
            CHECK(p[2].pos == 2);  // read again from the blue square on (its pixels loaded again)
            CHECK(Ids(p[2].ids.begin(), p[2].ids.begin() + 20) == image(4, 4));
        }
    }
}

TEST_CASE("REPL: --image goes with the first message") {
    Run r = chat("-m " + kModel + " --temp 0 --image " + kRedCircle, "What is in the image?\n");
    CHECK(r.rc == 0);
    CHECK(r.out == golden_text("shape_red_circle") + "\n");
}

TEST_CASE("REPL: /save and /load carry a conversation to a new process") {
    const std::string conv = (tmp_dir() / "conv.json").string();
    Run a = chat("-m " + kModel + " --temp 0 -n 48", "Psalms 23\n/save " + conv + "\n");
    CHECK(a.rc == 0);
    nlohmann::json j = nlohmann::json::parse(read(conv));
    REQUIRE(j["messages"].size() == 2);
    CHECK(j["messages"][0]["role"] == "user");
    CHECK(j["messages"][1]["content"] == golden_text("psalm"));

    const std::string d = dump_path("load.jsonl");
    Run b = chat("-m " + kModel + " --temp 0 -n 4 --dump-ids " + d, "/load " + conv + "\nAmen\n");
    CHECK(b.rc == 0);
    CHECK(prefills(d).at(0).ids ==
          cat({{1, 3}, E("Psalms 23"), {4}, E(golden_text("psalm")), {2, 3}, E("Amen"), {4}}));
    Run c = chat("-m " + kModel, "/load " + write("broken.json", "{\"messages\": 3}") + "\n/exit\n");
    CHECK(c.rc == 0);
    CHECK(c.err.find("error: ") != std::string::npos);
}

TEST_CASE("REPL: /tool-result answers a waiting tool call (v11 layout with call ids)") {
    const std::string dir = model_variant("tools-model", with_tool_tokens);
    const std::string tools = write("tools2.json", R"([{"name": "get_weather", "description": "Get weather"}])");
    const std::string conv = write("calls.json", R"({"messages": [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "a1b2c3d4e", "type": "function",
             "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]}]})");
    const std::string d = dump_path("toolres.jsonl");
    Run r = chat("-m " + dir + " --temp 0 -n 2 --tools " + tools + " --dump-ids " + d,
                 "/tool-result {\"temp_c\": 21}\n/tool-result again\n/exit\n");
    INFO(r.err);
    CHECK(r.rc == 0);
    // Fails: nothing loaded yet, so no call is waiting.
    CHECK(r.err.find("no tool call is waiting") != std::string::npos);

    const std::string d2 = dump_path("toolres2.jsonl");
    Run s = chat("-m " + dir + " --temp 0 -n 2 --tools " + tools + " --dump-ids " + d2,
                 "/load " + conv + "\n/tool-result {\"temp_c\": 21}\n/exit\n");
    INFO(s.err);
    CHECK(s.rc == 0);
    CHECK(prefills(d2).at(0).ids ==
          cat({{1, 5},
               E(R"([{"type": "function", "function": {"name": "get_weather", "description": "Get weather", )"
                 R"("parameters": {}}}])"),
               {6, 3},
               E("Weather in Paris?"),
               {4, 9},
               E("get_weather"),
               {33},
               E("a1b2c3d4e"),
               {32},
               E(R"({"city": "Paris"})"),
               {2, 7},
               E("a1b2c3d4e"),
               {19},
               E(R"({"temp_c": 21})"),
               {8}}));
}

TEST_CASE("REPL: Ctrl-C stops an answer and the chat goes on; Ctrl-C at the prompt exits") {
    const std::string out = (tmp_dir() / "sigint.out").string(), err = (tmp_dir() / "sigint.err").string();
    const std::string fifo = (tmp_dir() / "sigint.fifo").string();
    // A hot sampler keeps the tiny model talking for thousands of tokens.
    const int rc = script("rm -f " + fifo + "; mkfifo " + fifo + "\n$CHAT -m " + kModel +
                          " --temp 1.5 --top-k 0 --top-p 1 --min-p 0 < " + fifo + " > " + out + " 2> " + err +
                          " &\npid=$!\nexec 3> " + fifo +
                          "\necho 'Psalms 23' >&3\n"
                          "for i in $(seq 600); do [ -s " + out + " ] && break; sleep 0.1; done\n"
                          "kill -INT $pid\nsleep 0.5\necho '/exit' >&3\nexec 3>&-\nwait $pid\n");
    INFO(read(err));
    CHECK(rc == 0);
    CHECK(read(err).find("(interrupted)") != std::string::npos);

    const int rc2 = script("rm -f " + fifo + "; mkfifo " + fifo + "\n$CHAT -m " + kModel + " < " + fifo + " > " +
                           out + " 2> " + err + " &\npid=$!\nexec 3> " + fifo +
                           "\nfor i in $(seq 600); do grep -q 'type a message' " + err +
                           " && break; sleep 0.1; done\nkill -INT $pid\nwait $pid\n");
    CHECK(rc2 == 130);
}

TEST_CASE("--color on colours stderr even on a pipe; answers stay plain") {
    Run r = chat("-m " + kModel + " --temp 0 -n 2 --color on", "/nope\nPsalms 23\n");
    CHECK(r.rc == 0);
    CHECK(r.err.find("\033[1;31merror: unknown command") != std::string::npos);
    CHECK(r.out.find('\033') == std::string::npos);
}
