// test_bad_inputs.cpp — every case of tests/bad-inputs/cases.json run through the real binaries (FP4_BIN,
// from the project root): the expected exit code and never a signal, exactly one `error:` line on stderr
// holding the expected text (none when the case expects success), no sanitizer report, and a bounded run time.
// Also the tensor-count limit of safetensors headers, on a header made here (too big for the corpus), and
// that readers refusing a file do not keep it open (the KLD fuzzer ran out of descriptors).
#include <doctest/doctest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli.h"
#include "kld_file.h"

namespace fs = std::filesystem;

namespace {

constexpr int kTimeLimitS = 120;  // per case; a sanitized build on a busy machine takes a few seconds

void replace_all(std::string& s, const std::string& from, const std::string& to) {
    for (size_t at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size()))
        s.replace(at, from.size(), to);
}

// The lines of stderr that start with "error:" (progress bars redraw with '\r', so both end a line).
std::vector<std::string> error_lines(const std::string& err) {
    std::vector<std::string> out;
    size_t begin = 0;
    while (begin <= err.size()) {
        size_t end = err.find_first_of("\r\n", begin);
        if (end == std::string::npos) end = err.size();
        if (err.compare(begin, 6, "error:") == 0) out.push_back(err.substr(begin, end - begin));
        begin = end + 1;
    }
    return out;
}

// cli::run with a time limit: `FP4_BIN/<cmd>`, stdin closed; a command still running after kTimeLimitS is
// killed (exit code 124).
cli::Run run(const std::string& cmd) {
    const fs::path out = cli::tmp_dir() / "stdout.txt", err = cli::tmp_dir() / "stderr.txt";
    const std::string shell = "timeout " + std::to_string(kTimeLimitS) + " " + cli::bin() + "/" + cmd +
                              " < /dev/null > " + out.string() + " 2> " + err.string();
    cli::Run r;
    r.rc = cli::exit_code(std::system(shell.c_str()));
    r.out = cli::read_file(out);
    r.err = cli::read_file(err);
    return r;
}

}  // namespace

TEST_CASE("bad inputs: one clear error each, never a crash") {
    const nlohmann::json cases = nlohmann::json::parse(cli::read_file("tests/bad-inputs/cases.json"))["cases"];
    REQUIRE(cases.size() > 0);

    for (const nlohmann::json& c : cases) {
        std::string cmd = c["cmd"].get<std::string>();
        replace_all(cmd, "{case}", "tests/bad-inputs/" + c["name"].get<std::string>());
        replace_all(cmd, "{tmp}", cli::tmp_dir().string());
        const int want = c["exit"].get<int>();
        const std::string expect = c["error"].get<std::string>();
        INFO("case ", c["name"].get<std::string>(), ": ", cmd);

        const auto t0 = std::chrono::steady_clock::now();
        const cli::Run r = run(cmd);
        const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        INFO("stderr: ", r.err);

        CHECK_MESSAGE(r.rc < 124, "killed by a signal or the time limit (exit ", r.rc, ")");
        // Sanitized builds report with exit code 1 too: their reports must not appear.
        CHECK(r.err.find("Sanitizer") == std::string::npos);
        CHECK(r.err.find("runtime error:") == std::string::npos);
        CHECK(r.rc == want);
        CHECK(secs < kTimeLimitS);
        const std::vector<std::string> errors = error_lines(r.err);
        if (want == 0) {
            CHECK(errors.empty());
        } else {
            CHECK(errors.size() == 1);
            if (!errors.empty()) CHECK_MESSAGE(errors[0].find(expect) != std::string::npos, "want: ", expect);
        }
    }
}

TEST_CASE("bad inputs: a safetensors header listing more than 2^20 tensors") {
    const fs::path dir = cli::tmp_dir() / "count";
    fs::create_directories(dir);
    fs::copy_file("tests/bad-inputs/ok-checkpoint/config.json", dir / "config.json");
    std::string header = "{";
    for (int i = 0; i <= 1 << 20; ++i) header += (i ? ",\"t" : "\"t") + std::to_string(i) + "\":0";
    header += "}";
    std::string bytes(8, '\0');
    for (int i = 0; i < 8; ++i) bytes[size_t(i)] = char(uint64_t(header.size()) >> (8 * i));
    std::ofstream(dir / "model.safetensors", std::ios::binary) << bytes << header;

    const cli::Run r = run("inspect -m " + dir.string());
    INFO("stderr: ", r.err);
    CHECK(r.rc == 1);
    const std::vector<std::string> errors = error_lines(r.err);
    REQUIRE(errors.size() == 1);
    CHECK(errors[0].find("header lists 1048577 entries, too many") != std::string::npos);
}

TEST_CASE("bad inputs: a refused KLD base file is not left open") {
    auto open_fds = [] { return std::distance(fs::directory_iterator("/proc/self/fd"), fs::directory_iterator()); };
    const auto before = open_fds();
    for (int i = 0; i < 64; ++i) CHECK_THROWS(common::KldReader("tests/bad-inputs/kld-truncated.dat"));
    CHECK(open_fds() == before);
}
