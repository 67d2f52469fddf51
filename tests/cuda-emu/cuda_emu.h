// cuda_emu.h — runs the CUDA backend's kernels on the CPU, for machines without a GPU. Force-included
// (-include) before every file of ggml-fp4/cuda compiled as C++: the toolkit's headers in host mode give
// the types (dim3, __nv_bfloat16, __nv_fp8_e4m3, ...) and the runtime's declarations (defined by runtime.cpp
// and cublas.cpp here); this file gives what only nvcc would: the qualifiers, threadIdx and friends, warp
// shuffles, barriers, cached loads, atomics, and kernel launch (simt.cpp runs each CUDA thread of a block as
// a fiber, switching at every barrier and warp-wide instruction). With FP4_CUDA_EMU defined, common.cuh,
// mma.cuh and flash_attention.cu route launches, dynamic shared memory, MMA and ldmatrix here.
// What it checks: indexing, fragment layouts, barriers (a block whose threads wait at different barriers,
// or a warp-wide instruction some lanes returned from, is reported, not hung), writes past dynamic shared
// memory, misalignment (UBSan), launch limits and graph capture; with ASan, out-of-bounds device memory.
// Races show as results that depend on the order threads and blocks run in (FP4_CUDA_EMU_ORDER, simt.cpp);
// a kernel launched with PDL that touches what the kernel before it writes, before pdl_wait(), is stopped
// (pdl_guard.cpp). What it cannot: timing.
#pragma once

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <tuple>
#include <type_traits>
#include <utility>

#define FP4_CUDA_EMU 1

#undef __shared__
// One block runs at a time: a static is the block's shared variable; simt.cpp garbles the section before
// each block.
#define __shared__ static __attribute__((section("fp4_emu_shared")))
#ifndef __launch_bounds__
#define __launch_bounds__(...)
#endif

namespace fp4::emu {

constexpr unsigned kMaxBlockThreads = 1024;  // per block, on every CUDA GPU: launches beyond are refused

// The thread that runs now (simt.cpp).
const uint3& thread_idx();
const uint3& block_idx();
const dim3& block_dim();
const dim3& grid_dim();
void* dynamic_smem();
void sync_block();
// Warp-wide exchange: every lane of the warp puts `bytes` (≤ kSlot) in its slot and gets the
// warp's slots back (lane i at i·kSlot) once all have, after `combine` (if any) ran once over them;
// they stay valid until the lane's next exchange.
constexpr int kSlot = 64;
const unsigned char* warp_gather(const void* mine, size_t bytes, void (*combine)(unsigned char* slots) = nullptr);
int lane();
// The order threads and blocks run in: "forward", "reverse", "shuffle" or "shuffle:SEED" (as
// FP4_CUDA_EMU_ORDER); false for anything else.
bool set_order(const char* spec);

// Work on a stream: run now, or recorded while the stream captures a graph (runtime.cpp).
void submit(cudaStream_t stream, std::function<void()> work);
// A grid named `what`, submitted to the stream: body is a thread's whole kernel (run by simt.cpp); with
// pdl (programmatic dependent launch) its threads may not touch, until pdl_wait(), what the kernel
// before wrote (pdl_guard.cpp).
void launch_grid(const void* kernel, const char* what, dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
                 bool pdl, std::function<void()> body);

template <typename... P, typename... A>
void launch(void (*kernel)(P...), const char* what, dim3 grid, dim3 block, size_t smem, cudaStream_t stream, bool pdl,
            A&&... args) {
    auto params = std::make_shared<std::tuple<std::decay_t<P>...>>(std::forward<A>(args)...);
    launch_grid(reinterpret_cast<const void*>(kernel), what, grid, block, smem, stream, pdl,
                [kernel, params] { std::apply(kernel, *params); });
}
// griddepcontrol.wait: in a kernel launched with PDL, the point from which the kernel before is done.
void pdl_wait();

// Memory (pdl_guard.cpp): host memory of exactly n bytes, 256-aligned like the runtime's (ASan then shows
// an overrun; freed with std::free), and device memory: pages of its own, watched while kernels run.
void* exact_alloc(size_t n);
void* device_alloc(size_t n);
void device_free(void* p);
void guard_kernel_begin(const char* what);
void guard_block_begin(bool early);
void guard_wait_passed();
void guard_kernel_end();
void guard_other_work();  // a copy, memset or cuBLAS call: the next kernel no longer overlaps the last

template <typename T>
T shuffle(T v, int src) {
    static_assert(sizeof(T) <= kSlot && std::is_trivially_copyable_v<T>);
    const unsigned char* all = warp_gather(&v, sizeof(T));
    T r;
    std::memcpy(&r, all + (src & 31) * kSlot, sizeof(T));
    return r;
}

// mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 with PTX's fragment layout, d += a·b.
void mma_bf16_m16n8k16(float d[4], const uint32_t a[4], uint32_t b0, uint32_t b1);
// ldmatrix.sync.aligned.m8n8.x4[.trans].shared.b16: lanes 8i..8i+7 give matrix i's row addresses.
void ldmatrix_x4(uint32_t r[4], const void* row, bool trans);

}  // namespace fp4::emu

// The runtime's kernel-pointer overloads (cuda_runtime.h declares them for nvcc only).
template <typename... P>
cudaError_t cudaFuncSetAttribute(void (*kernel)(P...), cudaFuncAttribute attr, int value) {
    return ::cudaFuncSetAttribute(reinterpret_cast<const void*>(kernel), attr, value);
}
template <typename... P>
cudaError_t cudaOccupancyMaxActiveBlocksPerMultiprocessor(int* blocks, void (*kernel)(P...), int threads, size_t smem) {
    return ::cudaOccupancyMaxActiveBlocksPerMultiprocessor(blocks, reinterpret_cast<const void*>(kernel), threads,
                                                           smem);
}

#define threadIdx (::fp4::emu::thread_idx())
#define blockIdx (::fp4::emu::block_idx())
#define blockDim (::fp4::emu::block_dim())
#define gridDim (::fp4::emu::grid_dim())

inline void __syncthreads() { ::fp4::emu::sync_block(); }
template <typename T>
T __shfl_sync(unsigned, T v, int src) {
    return ::fp4::emu::shuffle(v, src);
}
template <typename T>
T __shfl_xor_sync(unsigned, T v, int mask) {
    return ::fp4::emu::shuffle(v, ::fp4::emu::lane() ^ mask);
}
template <typename T>
T __ldg(const T* p) {
    return *p;
}
template <typename T>
T __ldca(const T* p) {
    return *p;
}
template <typename T>
T __ldcs(const T* p) {
    return *p;
}
template <typename T>
T __ldcg(const T* p) {
    return *p;
}
// Blocks run one after another, each to its end: its writes are visible to the next without a fence.
inline void __threadfence() {}
// Fibers switch only at barriers: a read-modify-write between them is atomic.
inline int atomicMax(int* p, int v) {
    const int old = *p;
    *p = std::max(old, v);
    return old;
}
inline int atomicOr(int* p, int v) {
    const int old = *p;
    *p = old | v;
    return old;
}
inline int atomicAdd(int* p, int v) {
    const int old = *p;
    *p = old + v;
    return old;
}
inline int min(int a, int b) { return a < b ? a : b; }
inline int64_t min(int64_t a, int64_t b) { return a < b ? a : b; }
