// simt.cpp — the emulator's threads: a grid runs block by block, each CUDA thread of a block a fiber (its
// own stack, switched by fp4_emu_switch below: x86-64 only) that runs until it reaches a barrier
// (__syncthreads) or a warp-wide instruction (shuffle, MMA, ldmatrix), where it waits for the threads it
// meets there. A block whose live threads all wait but
// at barriers that cannot all be passed (a divergent __syncthreads, a warp split between a shuffle and a
// barrier) is reported and the process stops: on a GPU that kernel would hang or be undefined. In a kernel
// launched with PDL, threads at pdl_wait() pass it together once nothing else can run (pdl_guard.cpp
// checks what they touched before).
#include <sys/mman.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#ifdef __SANITIZE_ADDRESS__
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

#include "cuda_emu.h"
#include "mma_reference.h"

#ifndef __x86_64__
#error "the CUDA emulator switches fibers with x86-64 code"
#endif

// Saves the callee-saved registers and the FP control words on the current stack, stores its pointer in
// *save_sp and continues on new_sp (a stack left by an earlier switch, or a new fiber's initial frame).
extern "C" void fp4_emu_switch(void** save_sp, void* new_sp);
asm(R"(
    .text
    .globl fp4_emu_switch
    .type fp4_emu_switch, @function
fp4_emu_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $8, %rsp
    stmxcsr (%rsp)
    fnstcw 4(%rsp)
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    ldmxcsr (%rsp)
    fldcw 4(%rsp)
    addq $8, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size fp4_emu_switch, .-fp4_emu_switch
)");

namespace fp4::emu {
namespace {

constexpr size_t kStack = 256 << 10;  // a kernel's locals, plus the C++ runtime it may call into
constexpr size_t kCanary = 64;        // bytes after a block's dynamic shared memory, checked after it ran

enum class State { kReady, kWarpWait, kBlockWait, kPdlWait, kDone };

struct Fiber {
    void* sp = nullptr;  // saved stack pointer while switched out
    void* asan_fake_stack = nullptr;
    uint3 tid;
    State state = State::kReady;
};

// Stacks, mapped once with a guard page below each (an overflow faults instead of corrupting).
unsigned char* stack_of(int i) {
    static unsigned char* base = [] {
        const size_t page = size_t(sysconf(_SC_PAGESIZE));
        void* p = mmap(nullptr, kMaxBlockThreads * (kStack + page), PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (p == MAP_FAILED) {
            std::fprintf(stderr, "cuda-emu: cannot map fiber stacks\n");
            std::abort();
        }
        for (unsigned k = 0; k < kMaxBlockThreads; ++k)
            mprotect(static_cast<unsigned char*>(p) + k * (kStack + page), page, PROT_NONE);
        return static_cast<unsigned char*>(p);
    }();
    const size_t page = size_t(sysconf(_SC_PAGESIZE));
    return base + i * (kStack + page) + page;
}

// The order of threads within a round and of blocks within a grid (FP4_CUDA_EMU_ORDER, or set_order).
struct Order {
    enum Kind { kForward, kReverse, kShuffle } kind = kForward;
    std::mt19937_64 rng;
    // False, leaving the order as it was, for a spec other than forward, reverse, shuffle or shuffle:SEED.
    bool configure(const std::string& v) {
        if (v == "forward") kind = kForward;
        else if (v == "reverse") kind = kReverse;
        else if (v == "shuffle") kind = kShuffle, rng.seed(1);
        else if (v.rfind("shuffle:", 0) == 0 && v.size() > 8 && v.find_first_not_of("0123456789", 8) == v.npos)
            kind = kShuffle, rng.seed(std::stoull(v.substr(8)));
        else return false;
        return true;
    }
    Order() {
        const char* env = std::getenv("FP4_CUDA_EMU_ORDER");
        if (env && !configure(env)) {
            std::fprintf(stderr, "cuda-emu: FP4_CUDA_EMU_ORDER must be forward, reverse, shuffle or shuffle:SEED\n");
            std::exit(2);
        }
    }
    // Fills `order` with 0..n-1 in this run's order.
    void arrange(std::vector<int>& order, int n) {
        order.resize(size_t(n));
        std::iota(order.begin(), order.end(), 0);
        if (kind == kReverse) std::reverse(order.begin(), order.end());
        if (kind == kShuffle) std::shuffle(order.begin(), order.end(), rng);
    }
};
Order& order() {
    static Order o;
    return o;
}

// Static __shared__ variables (cuda_emu.h puts them in this section): garbage at each block's start, as
// on a GPU, not what the block before left.
extern "C" __attribute__((weak)) unsigned char __start_fp4_emu_shared[], __stop_fp4_emu_shared[];
__attribute__((no_sanitize_address)) void garble_static_shared() {
    for (volatile unsigned char* p = __start_fp4_emu_shared; p < __stop_fp4_emu_shared; ++p) *p = 0xff;
}

struct Run {
    dim3 grid, block;
    uint3 bid;
    bool pre_wait = false;  // a block of a PDL launch whose threads have not all passed pdl_wait
    std::vector<unsigned char> smem;
    const std::function<void()>* body = nullptr;
    std::vector<Fiber> fibers;
    std::vector<int> round;  // the order of the fibers in this round
    void* scheduler_sp = nullptr;
    void* scheduler_fake_stack = nullptr;
    const void* scheduler_stack = nullptr;  // the scheduler's stack, as ASan learns it at a fiber's start
    size_t scheduler_stack_size = 0;
    int cur = 0;
    // Warp exchanges alternate between two banks of slots ([bank][warp][lane][kSlot]): a lane can only
    // start exchange n + 2 once every lane of its warp has reached n + 1, so after reading n.
    std::vector<unsigned char> slots;
    std::vector<int> bank;                           // per warp: the bank of its next exchange
    std::vector<void (*)(unsigned char*)> combine;  // per warp: run once when its exchange completes
    unsigned char* slots_of(int warp, int b) {
        return slots.data() + ((size_t(b) * bank.size() + size_t(warp)) * 32) * kSlot;
    }
};
Run* run_ = nullptr;

[[noreturn]] void stop(const char* what) {
    std::fprintf(stderr, "cuda-emu: %s (block %u,%u,%u)\n", what, run_->bid.x, run_->bid.y, run_->bid.z);
    std::abort();
}

// Stack switches, told to AddressSanitizer when it is on (it tracks which stack is live), and a reused
// fiber stack cleared of what a previous block's frames left poisoned.
#ifdef __SANITIZE_ADDRESS__
void asan_start(void** fake, const void* bottom, size_t size) { __sanitizer_start_switch_fiber(fake, bottom, size); }
void asan_finish(void* fake, const void** bottom, size_t* size) { __sanitizer_finish_switch_fiber(fake, bottom, size); }
void asan_reuse(void* stack, size_t size) { __asan_unpoison_memory_region(stack, size); }
#else
void asan_start(void**, const void*, size_t) {}
void asan_finish(void*, const void**, size_t*) {}
void asan_reuse(void*, size_t) {}
#endif

void enter(Run& r, int i) {
    asan_start(&r.scheduler_fake_stack, stack_of(i), kStack);
    fp4_emu_switch(&r.scheduler_sp, r.fibers[size_t(i)].sp);
    asan_finish(r.scheduler_fake_stack, nullptr, nullptr);
}
// From the running fiber back to the scheduler; a finished fiber is never resumed (no fake stack kept).
void leave(Fiber& f, bool finished) {
    asan_start(finished ? nullptr : &f.asan_fake_stack, run_->scheduler_stack, run_->scheduler_stack_size);
    fp4_emu_switch(&f.sp, run_->scheduler_sp);
    asan_finish(f.asan_fake_stack, &run_->scheduler_stack, &run_->scheduler_stack_size);
}

Fiber& current() { return run_->fibers[size_t(run_->cur)]; }

void wait(State s) {
    Fiber& f = current();
    f.state = s;
    leave(f, false);
}

// A fiber's first frame returns into this; it never returns, its stack is reset for the next block.
[[noreturn]] void fiber_main() {
    asan_finish(nullptr, &run_->scheduler_stack, &run_->scheduler_stack_size);
    (*run_->body)();
    Fiber& f = current();
    f.state = State::kDone;
    leave(f, true);
    __builtin_unreachable();
}

// The frame fp4_emu_switch pops when it first enters a fiber: FP control words (their initial values),
// six registers, then fiber_main as the return address, 16 bytes below the (16-aligned) top: fiber_main
// starts with the stack aligned as after a call.
void* initial_frame(unsigned char* top) {
    auto* p = reinterpret_cast<uint64_t*>(top - 72);
    p[0] = 0x1f80u | (uint64_t(0x037f) << 32);  // MXCSR, x87 control word
    for (int i = 1; i <= 6; ++i) p[i] = 0;
    p[7] = reinterpret_cast<uint64_t>(&fiber_main);
    p[8] = 0;
    return p;
}

// Releases the barriers every live thread concerned has reached; false if none could be released.
bool release(Run& r) {
    bool any = false;
    const int n = int(r.fibers.size());
    bool all_block = true, live = false;
    for (const Fiber& f : r.fibers) {
        if (f.state == State::kDone) continue;
        live = true;
        all_block = all_block && f.state == State::kBlockWait;
    }
    if (live && all_block) {
        for (Fiber& f : r.fibers)
            if (f.state == State::kBlockWait) f.state = State::kReady;
        return true;
    }
    for (int w = 0; w * 32 < n; ++w) {
        bool all_warp = true, wlive = false;
        for (int i = w * 32; i < std::min(n, w * 32 + 32); ++i) {
            const State s = r.fibers[size_t(i)].state;
            if (s == State::kDone) continue;
            wlive = true;
            all_warp = all_warp && s == State::kWarpWait;
        }
        if (!wlive || !all_warp) continue;
        for (int i = w * 32; i < std::min(n, w * 32 + 32); ++i)
            if (r.fibers[size_t(i)].state == State::kDone)
                stop("a warp-wide instruction after lanes of its warp returned (its full mask names them)");
        if (auto f = r.combine[size_t(w)]) f(r.slots_of(w, r.bank[size_t(w)])), r.combine[size_t(w)] = nullptr;
        r.bank[size_t(w)] ^= 1;
        for (int i = w * 32; i < std::min(n, w * 32 + 32); ++i)
            if (r.fibers[size_t(i)].state == State::kWarpWait) r.fibers[size_t(i)].state = State::kReady;
        any = true;
    }
    return any;
}

// `check`: the block of a PDL launch starts before the kernel before it has finished (see pdl_guard.cpp).
void run_block(Run& r, bool check) {
    const int n = int(r.block.x * r.block.y * r.block.z);
    r.fibers.assign(size_t(n), Fiber{});
    for (int i = 0; i < n; ++i) {
        Fiber& f = r.fibers[size_t(i)];
        f.tid =
            uint3{unsigned(i) % r.block.x, unsigned(i) / r.block.x % r.block.y, unsigned(i) / (r.block.x * r.block.y)};
        asan_reuse(stack_of(i), kStack);
        f.sp = initial_frame(stack_of(i) + kStack);
    }
    std::fill(r.bank.begin(), r.bank.end(), 0);
    // Shared memory starts as garbage on a GPU: NaN-filled here, so that reading before writing shows;
    // the canary after it shows writes past the launch's size.
    std::fill(r.smem.begin(), r.smem.end() - kCanary, 0xff);
    std::fill(r.smem.end() - kCanary, r.smem.end(), 0xa5);
    garble_static_shared();
    r.pre_wait = check;
    guard_block_begin(check);
    for (;;) {
        bool ran = false, done = true;
        order().arrange(r.round, n);
        for (const int i : r.round) {
            if (r.fibers[size_t(i)].state != State::kReady) continue;
            r.cur = i;
            enter(r, i);
            ran = true;
        }
        for (const Fiber& f : r.fibers) done = done && f.state == State::kDone;
        if (done) {
            if (std::any_of(r.smem.end() - kCanary, r.smem.end(), [](unsigned char c) { return c != 0xa5; }))
                stop("a thread wrote past the block's dynamic shared memory");
            return;
        }
        if (release(r) || ran) continue;
        // No thread can go on: those at pdl_wait() pass it together (the kernel before is done).
        if (!std::any_of(r.fibers.begin(), r.fibers.end(), [](const Fiber& f) { return f.state == State::kPdlWait; }))
            stop("threads of a block wait at different barriers");
        r.pre_wait = false;
        guard_wait_passed();
        for (Fiber& f : r.fibers)
            if (f.state == State::kPdlWait) f.state = State::kReady;
    }
}

}  // namespace

const uint3& thread_idx() { return current().tid; }
const uint3& block_idx() { return run_->bid; }
const dim3& block_dim() { return run_->block; }
const dim3& grid_dim() { return run_->grid; }
void* dynamic_smem() { return run_->smem.data(); }
int lane() { return run_->cur & 31; }

void sync_block() { wait(State::kBlockWait); }

void pdl_wait() {
    if (run_->pre_wait) wait(State::kPdlWait);
}

bool set_order(const char* spec) { return order().configure(spec); }

const unsigned char* warp_gather(const void* mine, size_t bytes, void (*combine)(unsigned char* slots)) {
    const int w = run_->cur / 32;
    unsigned char* warp_slots = run_->slots_of(w, run_->bank[size_t(w)]);
    std::memcpy(warp_slots + lane() * kSlot, mine, bytes);
    if (combine) run_->combine[size_t(w)] = combine;
    wait(State::kWarpWait);
    return warp_slots;
}

void run_grid(const char* what, dim3 grid, dim3 block, size_t smem, bool pdl, const std::function<void()>& body) {
    const unsigned threads = block.x * block.y * block.z;  // 1..kMaxBlockThreads: launch_grid checked
    Run r;
    r.grid = grid, r.block = block, r.body = &body;
    r.smem.assign(smem + kCanary, 0);
    const size_t warps = (threads + 31) / 32;
    r.bank.assign(warps, 0);
    r.slots.assign(2 * warps * 32 * kSlot, 0);
    r.combine.assign(warps, nullptr);
    Run* outer = run_;
    run_ = &r;
    std::vector<int> blocks;
    order().arrange(blocks, int(grid.x * grid.y * grid.z));  // launch_grid checked that it fits an int
    guard_kernel_begin(what);
    // Of a PDL launch the first two blocks and the last are run as starting early: every block does the
    // same before pdl_wait(), and guarding each would cost two mprotect sweeps per block.
    for (size_t i = 0; i < blocks.size(); ++i) {
        const int b = blocks[i];
        r.bid = uint3{unsigned(b) % grid.x, unsigned(b) / grid.x % grid.y, unsigned(b) / (grid.x * grid.y)};
        run_block(r, pdl && (i < 2 || i + 1 == blocks.size()));
    }
    guard_kernel_end();
    run_ = outer;
}

namespace {

// One MMA over the 32 lanes' slots (a0..a3, b0, b1, d0..d3 each): d of lane (g, t) holds D rows g / g+8,
// columns 2t, 2t+1, and is replaced by d + a·b.
void mma_combine(unsigned char* slots) {
    uint32_t a[32][4], b[32][2];
    float d[16][8];
    for (int ln = 0; ln < 32; ++ln) {
        const unsigned char* slot = slots + ln * kSlot;
        std::memcpy(a[ln], slot, 16), std::memcpy(b[ln], slot + 16, 8);
        const int g = ln >> 2, t = ln & 3;
        for (int i = 0; i < 4; ++i) std::memcpy(&d[g + 8 * (i >> 1)][2 * t + (i & 1)], slot + 24 + 4 * i, 4);
    }
    mma_m16n8k16(a, b, d);
    for (int ln = 0; ln < 32; ++ln) {
        unsigned char* slot = slots + ln * kSlot;
        const int g = ln >> 2, t = ln & 3;
        for (int i = 0; i < 4; ++i) std::memcpy(slot + 24 + 4 * i, &d[g + 8 * (i >> 1)][2 * t + (i & 1)], 4);
    }
}

}  // namespace

// Each lane's slot: a0..a3, b0, b1, then d0..d3, which the warp's combine step replaces by d + a·b.
void mma_bf16_m16n8k16(float d[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
    uint32_t mine[10] = {a[0], a[1], a[2], a[3], b0, b1};
    std::memcpy(mine + 6, d, 16);
    const unsigned char* all = warp_gather(mine, sizeof mine, mma_combine);
    std::memcpy(d, all + lane() * kSlot + 24, 16);
}

void ldmatrix_x4(uint32_t r[4], const void* row, bool trans) {
    if (reinterpret_cast<uintptr_t>(row) % 16) stop("ldmatrix: a row address that is not 16-byte aligned");
    const unsigned char* all = warp_gather(&row, sizeof row);
    auto row_of = [&](int m, int i) {
        const unsigned char* p;
        std::memcpy(&p, all + (8 * m + i) * kSlot, sizeof p);
        return reinterpret_cast<const uint16_t*>(p);
    };
    const int g = lane() >> 2, t = lane() & 3;
    for (int m = 0; m < 4; ++m) {
        const uint16_t lo = trans ? row_of(m, 2 * t)[g] : row_of(m, g)[2 * t];
        const uint16_t hi = trans ? row_of(m, 2 * t + 1)[g] : row_of(m, g)[2 * t + 1];
        r[m] = uint32_t(lo) | uint32_t(hi) << 16;
    }
}

}  // namespace fp4::emu
