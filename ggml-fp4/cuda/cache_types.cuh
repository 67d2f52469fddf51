// cache_types.cuh — the element types a KV cache can hold (F32, BF16, FP8 E4M3): rounding into them (to
// nearest even, FP8 saturating, as the CPU backend does) and reading them back as F32, one or four at a time.
#pragma once

#include <cuda_fp8.h>

#include "common.cuh"

namespace fp4::cuda {

// Cache element types: F32 as is, BF16 and FP8 E4M3 through CUDA's round-to-nearest(-even) conversions.
template <typename T> __device__ __forceinline__ T to_cache(float x);
template <> __device__ __forceinline__ float to_cache<float>(float x) { return x; }
template <> __device__ __forceinline__ __nv_bfloat16 to_cache<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }
template <> __device__ __forceinline__ __nv_fp8_e4m3 to_cache<__nv_fp8_e4m3>(float x) { return __nv_fp8_e4m3(x); }
__device__ __forceinline__ float from_cache(float x) { return x; }
__device__ __forceinline__ float from_cache(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ __forceinline__ float from_cache(__nv_fp8_e4m3 x) { return float(x); }

// Four consecutive cache elements (4-element aligned) as floats, in one load.
__device__ __forceinline__ float4 load4(const float* p) { return *reinterpret_cast<const float4*>(p); }
__device__ __forceinline__ float4 load4(const __nv_bfloat16* p) {
    const uint2 u = *reinterpret_cast<const uint2*>(p);
    const float2 a = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&u.x));
    const float2 b = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&u.y));
    return make_float4(a.x, a.y, b.x, b.y);
}
__device__ __forceinline__ float4 load4(const __nv_fp8_e4m3* p) {
    const __nv_fp8x4_e4m3 u = *reinterpret_cast<const __nv_fp8x4_e4m3*>(p);
    return float4(u);
}

}  // namespace fp4::cuda
