// fuzz_util.h — what the libFuzzer targets share: an in-memory file (memfd) that path-taking loaders
// can open as /proc/self/fd/N, and the fixtures' location.
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <string>

namespace fuzz {

// One anonymous in-memory file, rewritten for every input (no disk I/O).
class MemFile {
public:
    MemFile() : fd_(memfd_create("fuzz", MFD_CLOEXEC)) {
        if (fd_ < 0) std::abort();
        path_ = "/proc/self/fd/" + std::to_string(fd_);
    }
    // Replaces the contents with `n` bytes; returns the path to open.
    const std::string& write(const uint8_t* data, size_t n) {
        if (ftruncate(fd_, 0) != 0 || (n && pwrite(fd_, data, n, 0) != ssize_t(n))) std::abort();
        return path_;
    }

private:
    int fd_;
    std::string path_;
};

// A file of the source tree (FP4_SOURCE_DIR is set by tests/fuzz/CMakeLists.txt).
inline std::string source_path(const std::string& rel) { return std::string(FP4_SOURCE_DIR) + "/" + rel; }

}  // namespace fuzz
