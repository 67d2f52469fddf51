// bf16_pair.h — two BF16 values in one 32-bit register (the operand of BF16x2 instructions and MMAs), as
// functions that compile for the host and the device alike: on the GPU through its instructions, on the
// CPU through numeric.h, so fragment logic is testable without a GPU.
#pragma once

#include <cstdint>

#include "numeric.h"

#if defined(__CUDACC__)
#include <cuda_bf16.h>
#define FP4_HD __host__ __device__ __forceinline__
#else
#define FP4_HD inline
#endif

namespace fp4::cuda {

// (lo, hi) rounded to nearest even into a BF16 pair, lo in the low half.
FP4_HD uint32_t pack_bf16x2(float lo, float hi) {
#if defined(__CUDA_ARCH__)
    __nv_bfloat162 r = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t*>(&r);
#else
    return uint32_t(f32_to_bf16(lo)) | uint32_t(f32_to_bf16(hi)) << 16;
#endif
}

// The product of two BF16 pairs, rounded to nearest even.
FP4_HD uint32_t bf16x2_mul(uint32_t a, uint32_t b) {
#if defined(__CUDA_ARCH__)
    __nv_bfloat162 r = __hmul2(*reinterpret_cast<__nv_bfloat162*>(&a), *reinterpret_cast<__nv_bfloat162*>(&b));
    return *reinterpret_cast<uint32_t*>(&r);
#else
    return pack_bf16x2(bf16_to_f32(uint16_t(a)) * bf16_to_f32(uint16_t(b)),
                       bf16_to_f32(uint16_t(a >> 16)) * bf16_to_f32(uint16_t(b >> 16)));
#endif
}

}  // namespace fp4::cuda
