// rope.cuh — the rotary embedding's frequencies and pair rotation, shared by the ROPE kernels and the
// fused rotation + KV-cache store of attention.cu, so that both give the same bits.
#pragma once

#include "common.cuh"

namespace fp4::cuda {

// inv_freq[j] = 1 / theta^(2j/Dh) in F32 as torch computes it (pow evaluated in double, then rounded).
__device__ __forceinline__ float inv_freq(float theta, int j, int Dh) {
    return 1.0f / float(pow(double(theta), double(float(2 * j) / float(Dh))));
}

// The pair (a, b) = (x[i], x[i + Dh/2]) of one head rotated by `angle` (an F32 angle; sin/cos in double).
__device__ __forceinline__ float2 rotate_pair(float a, float b, float angle) {
    double s, co;
    sincos(double(angle), &s, &co);
    const float sf = float(s), cf = float(co);
    return make_float2(a * cf - b * sf, b * cf + a * sf);
}

}  // namespace fp4::cuda
