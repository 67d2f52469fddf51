// pdl_guard.cpp — device memory for the emulator, and a check of programmatic dependent launch's rule:
// a kernel launched with PDL may start while the kernel before it still runs, so until pdl_wait()
// (griddepcontrol.wait) it may read only what that kernel does not write, and write nothing. Each device
// allocation gets pages of its own, read-only when a kernel starts: the pages it writes are recorded (a
// fault, then writable). Pages the host writes between kernels become writable the same way, so that
// each launch re-protects only what was written since the last. The blocks of a PDL kernel that simt.cpp
// runs as starting early (the first two and the last) start with the previous kernel's pages inaccessible
// and all others read-only, until their threads have reached pdl_wait: a fault before then names both
// kernels and stops the run. A memory copy, a memset or a cuBLAS call in between ends the overlap (on a
// GPU the dependent kernel then waits for it as usual).
// Under AddressSanitizer, which needs malloc's exact sizes to see overruns and owns SIGSEGV, allocations
// come from malloc and nothing is checked.
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <vector>

#include "cuda_emu.h"

namespace fp4::emu {
namespace {

#ifdef __SANITIZE_ADDRESS__
constexpr bool kGuard = false;
#else
constexpr bool kGuard = true;
#endif

size_t page_size() {
    static const size_t p = size_t(sysconf(_SC_PAGESIZE));
    return p;
}
size_t pages_of(size_t n) { return (std::max<size_t>(n, 1) + page_size() - 1) / page_size() * page_size(); }

struct Region {
    char* p;
    size_t n;
};
std::map<char*, size_t> allocs;   // device allocations: start, bytes mapped
std::vector<Region> writable;     // what may be writable now: protected again when a kernel starts
std::vector<char*> written;       // pages the running kernel wrote
std::vector<char*> before;        // pages the kernel before it wrote, when nothing came between
const char* running = nullptr;    // the running kernel's name, null between kernels
const char* previous = nullptr;   // the kernel before, while `before` is meaningful
bool pre_wait = false;            // a PDL kernel's block before pdl_wait: `before` is inaccessible
struct sigaction chained {};     // the handler before ours

// Pages sorted and unique, one call per run of consecutive ones.
void protect(const std::vector<char*>& pages, int prot) {
    for (size_t i = 0, j; i < pages.size(); i = j) {
        for (j = i + 1; j < pages.size() && pages[j] == pages[j - 1] + page_size(); ++j) {}
        mprotect(pages[i], (j - i) * page_size(), prot);
    }
}
void sort_unique(std::vector<char*>& pages) {
    std::sort(pages.begin(), pages.end());
    pages.erase(std::unique(pages.begin(), pages.end()), pages.end());
}
bool device_page(char* page) {
    auto it = allocs.upper_bound(page);
    return it != allocs.begin() && page < std::prev(it)->first + std::prev(it)->second;
}

// A write to a read-only device page, by a running kernel or by the host: recorded, then let through.
// Anything else that faults goes to the handler before ours (a real crash).
void on_fault(int, siginfo_t* info, void*) {
    char* page = reinterpret_cast<char*>(reinterpret_cast<uintptr_t>(info->si_addr) & ~(page_size() - 1));
    if (!device_page(page)) {
        sigaction(SIGSEGV, &chained, nullptr);
        return;  // the access faults again, with the handler before ours
    }
    if (!running) {
        writable.push_back({page, page_size()});
        mprotect(page, page_size(), PROT_READ | PROT_WRITE);
        return;
    }
    if (pre_wait) {
        const bool theirs = std::find(before.begin(), before.end(), page) != before.end();
        char msg[512];
        const int n = std::snprintf(msg, sizeof msg,
                                    "cuda-emu: '%s', launched with programmatic dependent launch, touched %p before "
                                    "pdl_wait(): %s%s%s (block %u,%u,%u)\n",
                                    running, info->si_addr, theirs ? "memory '" : "a write, which must wait too",
                                    theirs ? previous : "", theirs ? "', the kernel before it, writes" : "",
                                    block_idx().x, block_idx().y, block_idx().z);
        if (n > 0) (void)!write(2, msg, size_t(std::min<int>(n, int(sizeof msg) - 1)));
        std::abort();
    }
    written.push_back(page);
    mprotect(page, page_size(), PROT_READ | PROT_WRITE);
}

// Ours on top of whatever handles SIGSEGV now (a test framework may swap handlers between tests).
void install_handler() {
    static std::vector<char> alt(1 << 16);  // faults on a fiber's guard page still find a stack
    static bool stack_set = false;
    if (!stack_set) {
        stack_t ss{};
        ss.ss_sp = alt.data(), ss.ss_size = alt.size();
        sigaltstack(&ss, nullptr);
        stack_set = true;
    }
    struct sigaction now {};
    sigaction(SIGSEGV, nullptr, &now);
    if ((now.sa_flags & SA_SIGINFO) && now.sa_sigaction == on_fault) return;
    struct sigaction sa {};
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, &chained);
}

}  // namespace

void* exact_alloc(size_t n) {
    void* p = nullptr;
    return posix_memalign(&p, 256, std::max<size_t>(n, 1)) == 0 ? p : nullptr;
}

void* device_alloc(size_t n) {
    if (!kGuard) return exact_alloc(n);
    install_handler();
    void* p = mmap(nullptr, pages_of(n), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return nullptr;
    allocs[static_cast<char*>(p)] = pages_of(n);
    writable.push_back({static_cast<char*>(p), pages_of(n)});
    return p;
}

void device_free(void* p) {
    if (!kGuard) return std::free(p);
    const auto it = allocs.find(static_cast<char*>(p));
    if (it == allocs.end()) return;
    char *lo = it->first, *hi = lo + it->second;  // forgotten, as the addresses may come back
    auto inside = [&](char* q) { return q >= lo && q < hi; };
    writable.erase(std::remove_if(writable.begin(), writable.end(), [&](const Region& r) { return inside(r.p); }),
                   writable.end());
    before.erase(std::remove_if(before.begin(), before.end(), inside), before.end());
    munmap(it->first, it->second);
    allocs.erase(it);
}

void guard_kernel_begin(const char* name) {
    if (!kGuard) return;
    install_handler();
    for (const Region& r : writable) mprotect(r.p, r.n, PROT_READ);
    writable.clear();
    writable.reserve(1 << 16), written.clear(), written.reserve(1 << 16);  // no allocation in the handler, mostly
    running = name;
}

void guard_block_begin(bool early) {
    if (!kGuard || !early || !previous) return;
    pre_wait = true;
    sort_unique(written);
    protect(written, PROT_READ);  // what earlier blocks wrote: a write faults again, and is reported
    protect(before, PROT_NONE);
}

void guard_wait_passed() {
    if (!kGuard || !pre_wait) return;
    pre_wait = false;
    protect(before, PROT_READ);
    protect(written, PROT_READ | PROT_WRITE);
}

void guard_kernel_end() {
    if (!kGuard) return;
    pre_wait = false;
    sort_unique(written);
    before = written;
    for (char* p : written) writable.push_back({p, page_size()});  // writable since its fault
    previous = running;
    running = nullptr;
}

void guard_other_work() {
    if (!kGuard) return;
    install_handler();  // the copy may write read-only pages (a test framework may have swapped handlers)
    previous = nullptr, before.clear();
}

}  // namespace fp4::emu
