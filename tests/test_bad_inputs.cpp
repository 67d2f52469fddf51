// test_bad_inputs.cpp — every case of tests/bad-inputs/cases.json run through the real binaries (FP4_BIN,
// from the project root): the expected exit code and never a signal, exactly one `error:` line on stderr
// holding the expected text (none when the case expects success), no sanitizer report, and a bounded run time.
// Also the tensor-count limit of safetensors headers, on a header made here (too big for the corpus).
#include <doctest/doctest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

namespace fs = std::filesystem;

namespace {

constexpr int kTimeLimitS = 120;  // per case; a sanitized build on a busy machine takes a few seconds

std::string bin() {
    const char* b = std::getenv("FP4_BIN");
    return b ? b : "build/bin";
}

std::string read(const fs::path& p) {
    std::ifstream f(p, std::ios::binary);
    std::ostringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

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

// Runs `cmd` (relative to FP4_BIN) with stdin closed; returns the exit code and fills `stderr_text`.
int run(const std::string& cmd, const fs::path& tmp, std::string& stderr_text) {
    const fs::path out = tmp / "stdout.txt", err = tmp / "stderr.txt";
    const std::string shell = "timeout " + std::to_string(kTimeLimitS) + " " + bin() + "/" + cmd + " < /dev/null > " +
                              out.string() + " 2> " + err.string();
    const int status = std::system(shell.c_str());
    stderr_text = read(err);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

fs::path scratch(const char* what) {
    const fs::path tmp = fs::temp_directory_path() / (std::string(what) + "_" + std::to_string(getpid()));
    fs::create_directories(tmp);
    return tmp;
}

}  // namespace

TEST_CASE("bad inputs: one clear error each, never a crash") {
    const nlohmann::json cases = nlohmann::json::parse(read("tests/bad-inputs/cases.json"))["cases"];
    REQUIRE(cases.size() > 0);
    const fs::path tmp = scratch("test_bad_inputs");

    for (const nlohmann::json& c : cases) {
        std::string cmd = c["cmd"].get<std::string>();
        replace_all(cmd, "{case}", "tests/bad-inputs/" + c["name"].get<std::string>());
        replace_all(cmd, "{tmp}", tmp.string());
        const int want = c["exit"].get<int>();
        const std::string expect = c["error"].get<std::string>();
        INFO("case ", c["name"].get<std::string>(), ": ", cmd);

        std::string stderr_text;
        const auto t0 = std::chrono::steady_clock::now();
        const int rc = run(cmd, tmp, stderr_text);
        const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        INFO("stderr: ", stderr_text);

        CHECK_MESSAGE(rc < 124, "killed by a signal or the time limit (exit ", rc, ")");
        // Sanitized builds report with exit code 1 too: their reports must not appear.
        CHECK(stderr_text.find("Sanitizer") == std::string::npos);
        CHECK(stderr_text.find("runtime error:") == std::string::npos);
        CHECK(rc == want);
        CHECK(secs < kTimeLimitS);
        const std::vector<std::string> errors = error_lines(stderr_text);
        if (want == 0) {
            CHECK(errors.empty());
        } else {
            CHECK(errors.size() == 1);
            if (!errors.empty()) CHECK_MESSAGE(errors[0].find(expect) != std::string::npos, "want: ", expect);
        }
    }
    fs::remove_all(tmp);
}

TEST_CASE("bad inputs: a safetensors header listing more than 2^20 tensors") {
    const fs::path dir = scratch("test_bad_inputs_count");
    fs::copy_file("tests/bad-inputs/ok-checkpoint/config.json", dir / "config.json");
    std::string header = "{";
    for (int i = 0; i <= 1 << 20; ++i) header += (i ? ",\"t" : "\"t") + std::to_string(i) + "\":0";
    header += "}";
    std::string bytes(8, '\0');
    for (int i = 0; i < 8; ++i) bytes[size_t(i)] = char(uint64_t(header.size()) >> (8 * i));
    std::ofstream(dir / "model.safetensors", std::ios::binary) << bytes << header;

    std::string err;
    CHECK(run("inspect -m " + dir.string(), dir, err) == 1);
    INFO("stderr: ", err);
    const std::vector<std::string> errors = error_lines(err);
    REQUIRE(errors.size() == 1);
    CHECK(errors[0].find("header lists 1048577 entries, too many") != std::string::npos);
    fs::remove_all(dir);
}
