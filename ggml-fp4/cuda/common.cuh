// common.cuh — what every CUDA file of the backend shares: error checks, the per-run context (stream,
// cuBLAS handle, scratch buffers), warp reductions and loads of F32/BF16/F16 elements as F32.
#pragma once

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>

#include "fp4.h"

namespace fp4::cuda {

[[noreturn]] void fail(const std::string& what);
inline void check(cudaError_t e, const char* what) {
    if (e != cudaSuccess) fail(std::string(what) + ": " + cudaGetErrorString(e));
}
inline void check(cublasStatus_t s, const char* what) {
    if (s != CUBLAS_STATUS_SUCCESS) fail(std::string(what) + ": " + cublasGetStatusString(s));
}
// After a kernel launch: reports a bad launch configuration or a missing kernel image at once.
inline void check_launch(const char* kernel) { check(cudaGetLastError(), kernel); }
#define FP4_CHECK(call) ::fp4::cuda::check((call), #call)

// kernel<<<grid, block, smem, stream>>>(args...), with programmatic dependent launch when pdl (see
// pdl_wait), and a bad launch reported at once under the name `what`; launch_kernel(.., stream, ..) is a
// plain launch (the backend's kernels take the run's Ctx instead, below). Built with FP4_CUDA_EMU (the CPU
// emulator of tests/cuda-emu), the grid runs on the CPU.
template <typename... P, typename... A>
void launch_kernel_ex(const char* what, void (*kernel)(P...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
                      bool pdl, A&&... args) {
#ifdef FP4_CUDA_EMU
    emu::launch(kernel, what, grid, block, smem, stream, pdl, std::forward<A>(args)...);
#else
    if (pdl) {
        cudaLaunchConfig_t cfg{};
        cfg.gridDim = grid, cfg.blockDim = block, cfg.dynamicSmemBytes = smem, cfg.stream = stream;
        cudaLaunchAttribute attr{};
        attr.id = cudaLaunchAttributeProgrammaticStreamSerialization;
        attr.val.programmaticStreamSerializationAllowed = 1;
        cfg.attrs = &attr, cfg.numAttrs = 1;
        check(cudaLaunchKernelEx(&cfg, kernel, std::forward<A>(args)...), what);
    } else {
        kernel<<<grid, block, smem, stream>>>(std::forward<A>(args)...);
    }
#endif
    check_launch(what);
}
template <typename... P, typename... A>
void launch_kernel(const char* what, void (*kernel)(P...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
                   A&&... args) {
    launch_kernel_ex(what, kernel, grid, block, smem, stream, false, std::forward<A>(args)...);
}

// The block's dynamic shared memory (the launch's smem bytes), 16-byte aligned.
template <typename T>
__device__ __forceinline__ T* dynamic_smem() {
#ifdef FP4_CUDA_EMU
    return static_cast<T*>(emu::dynamic_smem());
#else
    extern __shared__ __align__(16) unsigned char smem_bytes[];
    return reinterpret_cast<T*>(smem_bytes);
#endif
}

// Growable device buffers, one per slot, reused by every node of a run (one stream, so in order).
enum Slot { kActBf16, kWeightTmp, kAttn, kAttnKv, kRopeQ, kAttnCount, kSlotCount };
class Scratch {
public:
    ~Scratch();
    // zeroed: a new buffer starts as zeros (for counters that their kernels return to zero).
    void* get(Slot slot, size_t bytes, bool zeroed = false);
    uint64_t generation() const { return generation_; }  // counts reallocations (buffers moved)
private:
    void* ptr_[kSlotCount] = {};
    size_t size_[kSlotCount] = {};
    uint64_t generation_ = 0;
};

struct Ctx {
    cudaStream_t stream = nullptr;
    cublasHandle_t blas = nullptr;
    Scratch* scratch = nullptr;
    int sms = 1;       // multiprocessors
    bool pdl = false;    // launch kernels with programmatic dependent launch (see pdl_wait)
    bool flash = false;  // attention of many query rows through flash_attention.cu
    bool fuse = false;   // fused kernels, here: decode attention takes a GQA group's heads in one block
};

// A backend kernel on the run's stream, with programmatic dependent launch when the context enables it.
template <typename... P, typename... A>
void launch_kernel(const char* what, void (*kernel)(P...), dim3 grid, dim3 block, size_t smem, const Ctx& c,
                   A&&... args) {
    launch_kernel_ex(what, kernel, grid, block, smem, c.stream, c.pdl, std::forward<A>(args)...);
}

// Programmatic dependent launch (sm_90+). A kernel launched with the attribute may start while the kernel
// before it is still running: until pdl_wait() returns it may only read what no earlier kernel writes
// (weights), and write nothing. pdl_trigger() lets the next such kernel start; kernels call it early, as
// the dependent one waits for their completion anyway. Both are no-ops for kernels launched plainly.
// Every kernel of the backend calls both (most at once, pdl_start); the NVFP4 GEMV loads its first weight
// tiles in between.
__device__ __forceinline__ void pdl_wait() {
#ifdef FP4_CUDA_EMU
    emu::pdl_wait();
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
__device__ __forceinline__ void pdl_trigger() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;");
#endif
}

__device__ __forceinline__ void pdl_start() {
    pdl_trigger();
    pdl_wait();
}

inline unsigned blocks_for(int64_t n, int threads) { return unsigned((n + threads - 1) / threads); }

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Element i of a F32/BF16/F16 array, as F32 (weights such as norm scales may be stored narrow).
__device__ __forceinline__ float load_f32(const void* p, Type t, int64_t i) {
    if (t == Type::BF16) return __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]);
    if (t == Type::F16) return __half2float(static_cast<const __half*>(p)[i]);
    return static_cast<const float*>(p)[i];
}

}  // namespace fp4::cuda
