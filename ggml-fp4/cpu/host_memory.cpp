// host_memory.cpp — MemAvailable from /proc/meminfo and RLIMIT_AS headroom from /proc/self/statm.
#include "cpu/host_memory.h"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>

namespace fp4::cpu {

namespace {

size_t mem_available() {
    if (FILE* f = std::fopen("/proc/meminfo", "r")) {
        char line[256];
        unsigned long long kb = 0;
        bool found = false;
        while (!found && std::fgets(line, sizeof line, f))
            found = std::sscanf(line, "MemAvailable: %llu kB", &kb) == 1;
        std::fclose(f);
        if (found) return size_t(kb) * 1024;
    }
    const long pages = sysconf(_SC_AVPHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    return pages > 0 && page > 0 ? size_t(pages) * size_t(page) : 0;
}

// Headroom under RLIMIT_AS, or SIZE_MAX when there is no limit.
size_t address_space_left() {
    rlimit lim{};
    if (getrlimit(RLIMIT_AS, &lim) != 0 || lim.rlim_cur == RLIM_INFINITY) return SIZE_MAX;
    unsigned long long pages = 0;
    if (FILE* f = std::fopen("/proc/self/statm", "r")) {
        if (std::fscanf(f, "%llu", &pages) != 1) pages = 0;
        std::fclose(f);
    }
    const size_t mapped = size_t(pages) * size_t(sysconf(_SC_PAGESIZE));
    return lim.rlim_cur > mapped ? size_t(lim.rlim_cur - mapped) : 0;
}

}  // namespace

size_t host_memory_free() { return std::min(mem_available(), address_space_left()); }

}  // namespace fp4::cpu
