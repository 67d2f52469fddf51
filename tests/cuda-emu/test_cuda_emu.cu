// test_cuda_emu.cu — the CPU emulator's own checks (tests/cuda-emu, built with -DFP4_CUDA_EMU=ON): warp
// shuffles, barriers over dynamic shared memory, ldmatrix feeding mma.sync as flash attention uses them
// (against a plain matrix product), launch limits, stream capture, and that races show in some thread or
// block order.
#include <doctest/doctest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "fp4.h"
#include "graph_replay.cuh"
#include "mma.cuh"

using namespace fp4::cuda;

namespace {

__global__ void shuffle_kernel(int* out) {
    const int lane = threadIdx.x & 31;
    const int mixed = __shfl_xor_sync(0xffffffffu, lane * 10, 5);
    const int next = __shfl_sync(0xffffffffu, lane, (lane + 1) & 31);
    out[threadIdx.x] = mixed + 1000 * next;
}

__global__ void reverse_kernel(const float* in, float* out) {
    float* s = dynamic_smem<float>();
    const int i = int(blockIdx.x * blockDim.x + threadIdx.x);
    s[threadIdx.x] = in[i];
    __syncthreads();
    out[i] = s[blockDim.x - 1 - threadIdx.x];
}

// D[16][8] = A[16][16]·B[16][8], A and B row-major BF16 in shared memory, through ldmatrix: A's four 8x8
// quarters (lane 8i + r gives row r of quarter i), B's two k halves transposed (.trans).
__global__ void mma_kernel(const __nv_bfloat16* a, const __nv_bfloat16* b, float* d) {
    __shared__ __align__(16) __nv_bfloat16 as[16 * 16], bs[16 * 8];
    const int lane = threadIdx.x, g = lane >> 2, t = lane & 3, i = lane >> 3, r = lane & 7;
    for (int e = lane; e < 256; e += 32) as[e] = a[e];
    for (int e = lane; e < 128; e += 32) bs[e] = b[e];
    __syncthreads();
    uint32_t af[4], bf[4];
    fp4::emu::ldmatrix_x4(af, &as[(r + 8 * (i & 1)) * 16 + 8 * (i >> 1)], false);
    fp4::emu::ldmatrix_x4(bf, &bs[(r + 8 * (i & 1)) * 8], true);
    float acc[4] = {1.f, 1.f, 1.f, 1.f};
    mma_bf16(acc, af, bf[0], bf[1]);
    for (int k = 0; k < 4; ++k) d[(g + 8 * (k >> 1)) * 8 + 2 * t + (k & 1)] = acc[k];
}

__global__ void add_one_kernel(int* x) { x[threadIdx.x] += 1; }

// Programmatic dependent launch: a producer, then consumers that read its output (and a weight) before or
// after pdl_wait(), or write before it.
__global__ void produce_kernel(int* out) { out[threadIdx.x] = int(threadIdx.x) + 1; }
__global__ void consume_after_wait_kernel(const int* weight, const int* in, int* out) {
    const int w = weight[threadIdx.x];  // weights: no kernel in flight writes them
    pdl_wait();
    out[threadIdx.x] = w + in[threadIdx.x];
}
__global__ void consume_before_wait_kernel(const int* weight, const int* in, int* out) {
    const int v = weight[threadIdx.x] + in[threadIdx.x];
    pdl_wait();
    out[threadIdx.x] = v;
}
__global__ void write_before_wait_kernel(int* out) {
    out[threadIdx.x] = 7;
    pdl_wait();
}

// Races: thread i reads what thread i - 1 wrote to shared memory, without a barrier between; block b reads
// what block b - 1 wrote. Right only when the writer happens to run first.
__global__ void racy_threads_kernel(int* out) {
    int* s = dynamic_smem<int>();
    s[threadIdx.x] = int(threadIdx.x);
    out[threadIdx.x] = threadIdx.x ? s[threadIdx.x - 1] : -2;
}
__global__ void racy_blocks_kernel(int* out) {
    if (threadIdx.x == 0) out[blockIdx.x] = blockIdx.x ? out[blockIdx.x - 1] + 1 : -1;
}
// A static __shared__ variable only block 0 sets.
__global__ void static_shared_kernel(int* out) {
    __shared__ int set_by_block_0;
    if (blockIdx.x == 0 && threadIdx.x == 0) set_by_block_0 = 42;
    __syncthreads();
    if (threadIdx.x == 0) out[blockIdx.x] = set_by_block_0;
}

template <typename T>
T* device(size_t n) {
    void* p = nullptr;
    REQUIRE(cudaMalloc(&p, n * sizeof(T)) == cudaSuccess);
    return static_cast<T*>(p);
}

}  // namespace

TEST_CASE("warp shuffles read the named lane") {
    int* out = device<int>(64);
    launch_kernel("shuffle", shuffle_kernel, 1, 64, 0, nullptr, out);
    for (int i = 0; i < 64; ++i) CHECK(out[i] == ((i & 31) ^ 5) * 10 + 1000 * ((i + 1) & 31));
    cudaFree(out);
}

TEST_CASE("__syncthreads orders dynamic shared memory across the block") {
    float *in = device<float>(512), *out = device<float>(512);
    for (int i = 0; i < 512; ++i) in[i] = float(i);
    launch_kernel("reverse", reverse_kernel, 2, 256, 256 * sizeof(float), nullptr, in, out);
    for (int i = 0; i < 512; ++i) CHECK(out[i] == float(i / 256 * 256 + 255 - i % 256));
    cudaFree(in), cudaFree(out);
}

TEST_CASE("ldmatrix fragments into mma.sync compute D += A·B") {
    auto* a = device<__nv_bfloat16>(256);
    auto* b = device<__nv_bfloat16>(128);
    float* d = device<float>(128);
    for (int e = 0; e < 256; ++e) a[e] = __float2bfloat16_rn(float((e * 7) % 11 - 5));
    for (int e = 0; e < 128; ++e) b[e] = __float2bfloat16_rn(float((e * 5) % 9 - 4));
    launch_kernel("mma", mma_kernel, 1, 32, 0, nullptr, a, b, d);
    for (int m = 0; m < 16; ++m)
        for (int n = 0; n < 8; ++n) {
            float want = 1.f;  // the accumulator's start
            for (int k = 0; k < 16; ++k) want += __bfloat162float(a[m * 16 + k]) * __bfloat162float(b[k * 8 + n]);
            CHECK(d[m * 8 + n] == want);
        }
    cudaFree(a), cudaFree(b), cudaFree(d);
}

TEST_CASE("launches beyond an H100's limits fail as on a GPU") {
    int* x = device<int>(1024);
    CHECK_THROWS(launch_kernel("too many threads", add_one_kernel, 1, 1025, 0, nullptr, x));
    CHECK_THROWS(launch_kernel("64 KiB without the attribute", reverse_kernel, 1, 32, 64 << 10, nullptr,
                               static_cast<const float*>(nullptr), static_cast<float*>(nullptr)));
    CHECK(cudaFuncSetAttribute(reverse_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 64 << 10) == cudaSuccess);
    float *in = device<float>(32), *out = device<float>(32);
    for (int i = 0; i < 32; ++i) in[i] = float(i);
    launch_kernel("64 KiB with it", reverse_kernel, 1, 32, 64 << 10, nullptr, in, out);
    CHECK(out[0] == 31.f);
    cudaFree(x), cudaFree(in), cudaFree(out);
}

TEST_CASE("the occupancy calculator counts registers, 64 per thread unless FP4_CUDA_EMU_REGS says otherwise") {
    if (std::getenv("FP4_CUDA_EMU_REGS")) return;
    int blocks = 0;
    REQUIRE(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, add_one_kernel, 512, 0) == cudaSuccess);
    CHECK(blocks == 2);  // 64 K registers / (64 × 512)
    REQUIRE(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, add_one_kernel, 320, 0) == cudaSuccess);
    CHECK(blocks == 3);
    REQUIRE(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, add_one_kernel, 64, 0) == cudaSuccess);
    CHECK(blocks == 16);  // then 64 warps per multiprocessor limit it
    REQUIRE(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, add_one_kernel, 32, 100 << 10) == cudaSuccess);
    CHECK(blocks == 2);  // 228 KiB of shared memory
}

TEST_CASE("a captured stream replays its work; a forbidden call fails the capture") {
    cudaStream_t s;
    REQUIRE(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking) == cudaSuccess);
    int* x = device<int>(32);
    std::fill(x, x + 32, 0);
    REQUIRE(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal) == cudaSuccess);
    launch_kernel("add one", add_one_kernel, 1, 32, 0, s, x);
    cudaGraph_t graph;
    REQUIRE(cudaStreamEndCapture(s, &graph) == cudaSuccess);
    CHECK(x[5] == 0);  // recorded, not run
    cudaGraphExec_t exec;
    REQUIRE(cudaGraphInstantiate(&exec, graph, 0) == cudaSuccess);
    cudaGraphLaunch(exec, s), cudaGraphLaunch(exec, s);
    CHECK(x[5] == 2);
    cudaGraphExecDestroy(exec), cudaGraphDestroy(graph);

    REQUIRE(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal) == cudaSuccess);
    void* p = nullptr;
    CHECK(cudaMalloc(&p, 16) == cudaErrorStreamCaptureUnsupported);
    CHECK(cudaStreamEndCapture(s, &graph) == cudaErrorStreamCaptureInvalidated);
    cudaGetLastError();
    cudaFree(x), cudaStreamDestroy(s);
}

// How many of out[1..n) a racy kernel got right (out[i] == i - 1), in the given order.
template <typename Kernel>
int racy_right(const char* order, Kernel kernel, dim3 grid, dim3 block, int n) {
    REQUIRE(fp4::emu::set_order(order));
    int* out = device<int>(size_t(n));
    std::fill(out, out + n, -3);
    launch_kernel("racy", kernel, grid, block, block.x * sizeof(int), nullptr, out);
    int right = 0;
    for (int i = 1; i < n; ++i) right += out[i] == i - 1;
    cudaFree(out);
    return right;
}

TEST_CASE("a race shows as a result that depends on the order threads or blocks run in") {
    CHECK(racy_right("forward", racy_threads_kernel, 1, 256, 256) == 255);
    CHECK(racy_right("reverse", racy_threads_kernel, 1, 256, 256) == 0);
    const int shuffled = racy_right("shuffle:7", racy_threads_kernel, 1, 256, 256);
    CHECK(shuffled > 0);
    CHECK(shuffled < 255);
    CHECK(racy_right("forward", racy_blocks_kernel, 64, 32, 64) == 63);
    CHECK(racy_right("reverse", racy_blocks_kernel, 64, 32, 64) == 0);
    CHECK_FALSE(fp4::emu::set_order("sideways"));
    CHECK_FALSE(fp4::emu::set_order("shuffle:x"));
    REQUIRE(fp4::emu::set_order("forward"));
}

TEST_CASE("static shared memory starts as garbage in every block") {
    int* out = device<int>(4);
    launch_kernel("static shared", static_shared_kernel, 4, 64, 0, nullptr, out);
    CHECK(out[0] == 42);
    for (int b = 1; b < 4; ++b) CHECK(out[b] == -1);  // all bits set, as the emulator garbles it
    cudaFree(out);
}

TEST_CASE("the backend needs compute capability 8.0 and says so by name") {
    std::string why;
    setenv("FP4_CUDA_EMU_CC", "7.5", 1);
    CHECK(fp4::make_cuda_backend(&why) == nullptr);
    CHECK(why.find("compute capability 7.5; the CUDA backend needs 8.0 or newer") != std::string::npos);
    setenv("FP4_CUDA_EMU_CC", "8.6", 1);
    CHECK(fp4::make_cuda_backend(&why) != nullptr);
    unsetenv("FP4_CUDA_EMU_CC");
}

TEST_CASE("graph replay: work whose capture is invalidated without an error of its own runs directly") {
    cudaStream_t s;
    REQUIRE(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking) == cudaSuccess);
    int* x = device<int>(32);
    std::fill(x, x + 32, 0);
    // An allocation fails while capturing and invalidates the capture; the work clears the error and goes
    // on (as a library's internals might), so only ending the capture reports it.
    auto work = [&] {
        void* p = nullptr;
        if (cudaMalloc(&p, 16) == cudaSuccess) cudaFree(p);
        else cudaGetLastError();
        launch_kernel("add one", add_one_kernel, 1, 32, 0, s, x);
    };
    {
        GraphReplay replay;
        for (int i = 0; i < 3; ++i) replay.run(s, "key", work);  // direct, refused capture, direct
    }
    CHECK(x[0] == 3);
    cudaGetLastError();
    cudaFree(x), cudaStreamDestroy(s);
}

#ifndef __SANITIZE_ADDRESS__  // pdl_guard.cpp checks nothing under ASan
// Runs f in a child process: whether it stopped with abort(), and what it wrote to stderr.
std::pair<bool, std::string> in_child(const std::function<void()>& f) {
    int fds[2];
    REQUIRE(pipe(fds) == 0);
    const pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {  // the test framework's own abort report would go to stdout: neither
        signal(SIGABRT, SIG_DFL);
        dup2(fds[1], 2);
        close(fds[0]);
        if (FILE* null = std::fopen("/dev/null", "w")) dup2(fileno(null), 1);
        f();
        _exit(0);
    }
    close(fds[1]);
    std::string err;
    char buf[512];
    for (ssize_t n; (n = read(fds[0], buf, sizeof buf)) > 0;) err.append(buf, size_t(n));
    close(fds[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    return {WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT, err};
}

TEST_CASE("a kernel launched with PDL may not touch, before pdl_wait(), what the kernel before it writes") {
    int *weight = device<int>(32), *a = device<int>(32), *b = device<int>(32);
    std::fill(weight, weight + 32, 100);
    auto produce_then = [&](auto consumer, auto... args) {
        launch_kernel("produce", produce_kernel, 1, 32, 0, nullptr, a);
        launch_kernel_ex("consume", consumer, 1, 32, 0, nullptr, true, args...);
    };
    produce_then(consume_after_wait_kernel, static_cast<const int*>(weight), static_cast<const int*>(a), b);
    for (int i = 0; i < 32; ++i) CHECK(b[i] == 100 + i + 1);

    auto [stopped, err] = in_child([&] {
        produce_then(consume_before_wait_kernel, static_cast<const int*>(weight), static_cast<const int*>(a), b);
    });
    CHECK(stopped);
    CHECK(err.find("'consume', launched with programmatic dependent launch, touched") != std::string::npos);
    CHECK(err.find("before pdl_wait(): memory 'produce', the kernel before it, writes") != std::string::npos);

    std::tie(stopped, err) = in_child([&] { produce_then(write_before_wait_kernel, b); });
    CHECK(stopped);
    CHECK(err.find("a write, which must wait too") != std::string::npos);

    // Launched plainly, or after a copy that ends the overlap, the same kernel is fine.
    launch_kernel("produce", produce_kernel, 1, 32, 0, nullptr, a);
    launch_kernel("consume", consume_before_wait_kernel, 1, 32, 0, nullptr, static_cast<const int*>(weight),
                  static_cast<const int*>(a), b);
    launch_kernel("produce", produce_kernel, 1, 32, 0, nullptr, a);
    REQUIRE(cudaMemcpyAsync(weight, weight, 4, cudaMemcpyDeviceToDevice, nullptr) == cudaSuccess);
    launch_kernel_ex("consume", consume_before_wait_kernel, 1, 32, 0, nullptr, true,
                     static_cast<const int*>(weight), static_cast<const int*>(a), b);
    CHECK(b[5] == 106);
    cudaFree(weight), cudaFree(a), cudaFree(b);
}
#endif
