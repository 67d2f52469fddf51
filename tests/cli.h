// cli.h — test support for running the binaries as a user does: FP4_BIN (set by ctest to build/bin), a
// scratch folder per test process, and a run that captures exit code, stdout and stderr.
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace cli {

namespace fs = std::filesystem;

inline std::string bin() {
    const char* b = std::getenv("FP4_BIN");
    return b ? b : "build/bin";
}

// A folder for this test process, removed at exit.
inline fs::path tmp_dir() {
    struct Dir {
        fs::path path = fs::temp_directory_path() / ("fp4_cli_" + std::to_string(getpid()));
        Dir() { fs::create_directories(path); }
        ~Dir() {
            std::error_code ec;
            fs::remove_all(path, ec);
        }
    };
    static const Dir dir;
    return dir.path;
}

inline std::string read_file(const fs::path& p) {
    std::ifstream f(p, std::ios::binary);
    std::ostringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

// A std::system() status as a shell would report it: the exit code, or 128 + the signal.
inline int exit_code(int status) { return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status); }

struct Run {
    int rc = -1;  // exit code, or 128 + signal
    std::string out, err;
};

// `FP4_BIN/<args>` with stdin closed.
inline Run run(const std::string& args) {
    const fs::path out = tmp_dir() / "stdout.txt", err = tmp_dir() / "stderr.txt";
    const std::string cmd = bin() + "/" + args + " < /dev/null > " + out.string() + " 2> " + err.string();
    const int status = std::system(cmd.c_str());
    Run r;
    r.rc = exit_code(status);
    r.out = read_file(out);
    r.err = read_file(err);
    return r;
}

}  // namespace cli
