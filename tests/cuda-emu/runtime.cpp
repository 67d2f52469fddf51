// runtime.cpp — the CUDA runtime calls the backend makes, for the emulator: device memory is host memory,
// work runs at once in submission order (one device, as the backend uses it), a capturing stream records
// its work into a graph that cudaGraphLaunch replays, and launches are checked against an H100's limits
// (1024 threads per block, 48 KiB of dynamic shared memory unless the kernel raised it, 227 KiB at most).
// Calls that a capture forbids (allocation, synchronisation) fail the capture as they would on a GPU. The
// device has 80 GiB unless FP4_CUDA_EMU_GIB says otherwise (what cudaMemGetInfo reports; host memory, from
// pdl_guard.cpp, backs it).
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <set>
#include <vector>

#include "cuda_emu.h"

using Work = std::function<void()>;

struct CUstream_st {
    bool capturing = false, invalidated = false;
    std::vector<Work> recorded;
};
struct CUgraph_st {
    std::vector<Work> work;
};
struct CUgraphExec_st {
    std::vector<Work> work;
};
struct CUevent_st {
    std::chrono::steady_clock::time_point at;
};

namespace fp4::emu {
void run_grid(const char* what, dim3 grid, dim3 block, size_t smem, bool pdl,
              const std::function<void()>& body);  // simt.cpp

namespace {

constexpr int kSms = 132;
constexpr size_t kSmemDefault = 48 << 10, kSmemMax = 227 << 10, kSmemPerSm = 228 << 10;

cudaError_t last_error = cudaSuccess;
std::map<const void*, size_t> smem_limit;  // per kernel, raised by cudaFuncSetAttribute
std::map<void*, size_t> device_allocs;
std::set<void*> pinned;
size_t device_bytes = 0;
CUstream_st* capturing = nullptr;  // the stream capturing now, if any

cudaError_t fail(cudaError_t e) {
    last_error = e;
    return e;
}
// A call a capture forbids: the capture is invalidated, the call fails.
bool forbidden_in_capture() {
    if (!capturing) return false;
    capturing->invalidated = true;
    last_error = cudaErrorStreamCaptureUnsupported;
    return true;
}
size_t device_total() {
    const char* gib = std::getenv("FP4_CUDA_EMU_GIB");
    return size_t((gib ? std::atof(gib) : 80.0) * double(1ull << 30));  // fractions too: 0.25 is 256 MiB
}

}  // namespace

void submit(cudaStream_t s, std::function<void()> work) {
    if (s && s->capturing) return s->recorded.push_back(std::move(work));
    work();
}

void launch_grid(const void* kernel, const char* what, dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
                 bool pdl, std::function<void()> body) {
    const uint64_t threads = uint64_t(block.x) * block.y * block.z;
    const auto raised = smem_limit.find(kernel);
    const size_t limit = raised == smem_limit.end() ? kSmemDefault : raised->second;
    if (threads == 0 || threads > kMaxBlockThreads || block.z > 64 || grid.x == 0 || grid.y == 0 || grid.z == 0 ||
        grid.y > 65535 || grid.z > 65535 || smem > limit ||
        uint64_t(grid.x) * grid.y * grid.z > uint64_t(INT32_MAX)) {  // the last: the emulator's own limit
        std::fprintf(stderr, "cuda-emu: launch refused: grid %u,%u,%u block %u,%u,%u, %zu bytes of shared memory\n",
                     grid.x, grid.y, grid.z, block.x, block.y, block.z, smem);
        fail(cudaErrorInvalidConfiguration);
        return;
    }
    submit(stream, [what, grid, block, smem, pdl, body = std::move(body)] { run_grid(what, grid, block, smem, pdl, body); });
}

}  // namespace fp4::emu

using namespace fp4::emu;

extern "C" {

cudaError_t cudaGetDeviceCount(int* count) {
    *count = 1;
    return cudaSuccess;
}
cudaError_t cudaSetDevice(int device) { return device == 0 ? cudaSuccess : fail(cudaErrorInvalidDevice); }
// An H100: 132 multiprocessors, compute capability 9.0 unless FP4_CUDA_EMU_CC says otherwise ("8.6"); its
// properties name it as the emulator.
cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int) {
    const char* cc = std::getenv("FP4_CUDA_EMU_CC");
    int major = 9, minor = 0;
    if (cc && std::sscanf(cc, "%d.%d", &major, &minor) != 2) return fail(cudaErrorInvalidValue);
    switch (attr) {
        case cudaDevAttrMultiProcessorCount: *value = kSms; return cudaSuccess;
        case cudaDevAttrComputeCapabilityMajor: *value = major; return cudaSuccess;
        case cudaDevAttrComputeCapabilityMinor: *value = minor; return cudaSuccess;
        default: return fail(cudaErrorInvalidValue);
    }
}
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device) {
    if (device != 0) return fail(cudaErrorInvalidDevice);
    *prop = cudaDeviceProp{};
    std::snprintf(prop->name, sizeof prop->name, "CPU emulator");
    cudaError_t e = cudaDeviceGetAttribute(&prop->major, cudaDevAttrComputeCapabilityMajor, 0);
    if (e == cudaSuccess) e = cudaDeviceGetAttribute(&prop->minor, cudaDevAttrComputeCapabilityMinor, 0);
    if (e == cudaSuccess) e = cudaDeviceGetAttribute(&prop->multiProcessorCount, cudaDevAttrMultiProcessorCount, 0);
    return e;
}
const char* cudaGetErrorString(cudaError_t e) {
    switch (e) {
        case cudaSuccess: return "no error";
        case cudaErrorInvalidConfiguration: return "invalid configuration argument";
        case cudaErrorMemoryAllocation: return "out of memory";
        case cudaErrorStreamCaptureUnsupported: return "operation not permitted when stream is capturing";
        case cudaErrorStreamCaptureInvalidated: return "operation failed due to a previous error during capture";
        default: return "error (cuda-emu)";
    }
}
cudaError_t cudaGetLastError() {
    const cudaError_t e = last_error;
    last_error = cudaSuccess;
    return e;
}
cudaError_t cudaPeekAtLastError() { return last_error; }

cudaError_t cudaMalloc(void** p, size_t n) {
    if (forbidden_in_capture()) return last_error;
    if (device_bytes + n > device_total()) return fail(cudaErrorMemoryAllocation);
    if (!(*p = device_alloc(n))) return fail(cudaErrorMemoryAllocation);
    device_allocs[*p] = n, device_bytes += n;
    return cudaSuccess;
}
cudaError_t cudaFree(void* p) {
    if (!p) return cudaSuccess;
    if (forbidden_in_capture()) return last_error;
    const auto it = device_allocs.find(p);
    if (it == device_allocs.end()) return fail(cudaErrorInvalidValue);
    device_bytes -= it->second;
    device_allocs.erase(it);
    device_free(p);
    return cudaSuccess;
}
cudaError_t cudaMallocHost(void** p, size_t n) {
    if (forbidden_in_capture()) return last_error;
    if (!(*p = exact_alloc(n))) return fail(cudaErrorMemoryAllocation);
    pinned.insert(*p);
    return cudaSuccess;
}
cudaError_t cudaFreeHost(void* p) {
    if (!p) return cudaSuccess;
    if (forbidden_in_capture()) return last_error;
    if (!pinned.erase(p)) return fail(cudaErrorInvalidValue);
    std::free(p);
    return cudaSuccess;
}
cudaError_t cudaMemGetInfo(size_t* free_b, size_t* total_b) {
    *total_b = device_total(), *free_b = *total_b - device_bytes;
    return cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t n, cudaMemcpyKind, cudaStream_t s) {
    submit(s, [=] {
        guard_other_work();
        std::memcpy(dst, src, n);
    });
    return cudaSuccess;
}
cudaError_t cudaMemset(void* p, int v, size_t n) {
    guard_other_work();
    std::memset(p, v, n);
    return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void* p, int v, size_t n, cudaStream_t s) {
    submit(s, [=] {
        guard_other_work();
        std::memset(p, v, n);
    });
    return cudaSuccess;
}

cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned) {
    *s = new CUstream_st;
    return cudaSuccess;
}
cudaError_t cudaStreamDestroy(cudaStream_t s) {
    delete s;
    return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t) { return forbidden_in_capture() ? last_error : cudaSuccess; }
cudaError_t cudaDeviceSynchronize() { return forbidden_in_capture() ? last_error : cudaSuccess; }

cudaError_t cudaEventCreate(cudaEvent_t* e) {
    *e = new CUevent_st;
    return cudaSuccess;
}
cudaError_t cudaEventDestroy(cudaEvent_t e) {
    delete e;
    return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s) {
    submit(s, [e] { e->at = std::chrono::steady_clock::now(); });
    return cudaSuccess;
}
cudaError_t cudaEventSynchronize(cudaEvent_t) { return forbidden_in_capture() ? last_error : cudaSuccess; }
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t a, cudaEvent_t b) {
    *ms = std::chrono::duration<float, std::milli>(b->at - a->at).count();
    return cudaSuccess;
}

cudaError_t cudaStreamBeginCapture(cudaStream_t s, cudaStreamCaptureMode) {
    if (!s || s->capturing || capturing) return fail(cudaErrorIllegalState);
    s->capturing = true, s->invalidated = false, s->recorded.clear();
    capturing = s;
    return cudaSuccess;
}
cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t* g) {
    if (!s || !s->capturing) return fail(cudaErrorIllegalState);
    s->capturing = false, capturing = nullptr;
    *g = nullptr;
    if (s->invalidated) return fail(cudaErrorStreamCaptureInvalidated);
    *g = new CUgraph_st{std::move(s->recorded)};
    s->recorded.clear();
    return cudaSuccess;
}
cudaError_t cudaGraphDestroy(cudaGraph_t g) {
    delete g;
    return cudaSuccess;
}
cudaError_t cudaGraphInstantiate(cudaGraphExec_t* x, cudaGraph_t g, unsigned long long) {
    *x = new CUgraphExec_st{g->work};
    return cudaSuccess;
}
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t x) {
    delete x;
    return cudaSuccess;
}
cudaError_t cudaGraphLaunch(cudaGraphExec_t x, cudaStream_t s) {
    submit(s, [x] {
        for (const Work& w : x->work) w();
    });
    return cudaSuccess;
}

cudaError_t cudaFuncSetAttribute(const void* func, cudaFuncAttribute attr, int value) {
    if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize) return cudaSuccess;
    if (value < 0 || size_t(value) > kSmemMax) return fail(cudaErrorInvalidValue);
    smem_limit[func] = size_t(value);
    return cudaSuccess;
}
// An H100's limits per multiprocessor: 32 blocks, 64 warps, 228 KiB of shared memory (1 KiB reserved per
// block) and 64 K registers, allocated per warp in units of 8 per thread. The registers a kernel uses
// are not known here: FP4_CUDA_EMU_REGS says how many to assume (default 64, as most of the backend's
// kernels on sm_90a), so that launches sized by occupancy take the shapes they take on a GPU (the NVFP4
// GEMV splits K over 10 warps for the 24B down projection there, not 16) and, varied, others.
cudaError_t cudaOccupancyMaxActiveBlocksPerMultiprocessor(int* blocks, const void*, int threads, size_t smem) {
    static const int regs = [] {
        const char* env = std::getenv("FP4_CUDA_EMU_REGS");
        const int r = env ? std::atoi(env) : 64;
        if (r < 16 || r > 255) {
            std::fprintf(stderr, "cuda-emu: FP4_CUDA_EMU_REGS must be 16..255\n");
            std::exit(2);
        }
        return (r + 7) / 8 * 8;
    }();
    const int warps = std::max(1, (threads + 31) / 32);
    int n = std::min(32, 64 / warps);
    n = std::min<int>(n, int(kSmemPerSm / (smem + 1024)));
    n = std::min(n, 65536 / (regs * 32 * warps));
    *blocks = n;
    return cudaSuccess;
}

}  // extern "C"
