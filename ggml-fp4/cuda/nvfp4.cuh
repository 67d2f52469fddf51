// nvfp4.cuh — the device side of the NVFP4 tile layout (nvfp4_tile.h): scaling decoded fragments in BF16
// and reading single elements.
#pragma once

#include "common.cuh"
#include "nvfp4_tile.h"

namespace fp4::cuda::nvfp4 {

__device__ __forceinline__ uint32_t bf16x2_mul(uint32_t a, uint32_t b) {
    __nv_bfloat162 r = __hmul2(*reinterpret_cast<__nv_bfloat162*>(&a), *reinterpret_cast<__nv_bfloat162*>(&b));
    return *reinterpret_cast<uint32_t*>(&r);
}

// The A fragments of group kk of a tile, scaled: e2m1 · scale · 2^-8 in BF16.
__device__ __forceinline__ void dequant_fragment(uint32_t word, uint2 scales, int kk, uint32_t a[4]) {
    decode_word(word, a);
    uint32_t sg, sg8;
    scale_pairs(scales.x, scales.y, kk, sg, sg8);
    a[0] = bf16x2_mul(a[0], sg);
    a[1] = bf16x2_mul(a[1], sg8);
    a[2] = bf16x2_mul(a[2], sg);
    a[3] = bf16x2_mul(a[3], sg8);
}

// One element W[n, k] as F32, rounded as the reference does: e2m1 · (scale / gscale).
__device__ inline float element(const uint8_t* codes, const uint8_t* scales, int64_t KT, float gscale, int64_t n,
                                int64_t k) {
    const int64_t tile = (n / kTileRows) * KT + k / kTileCols;
    const Place s = place_of(int(n % kTileRows), int(k % kTileCols));
    const uint32_t code = code_at(reinterpret_cast<const uint32_t*>(codes + tile * kTileCodeBytes)[s.word], s.bits);
    int m = code & 7;
    float mag = m < 2 ? 0.5f * float(m) : ldexpf(1.0f + 0.5f * float(m & 1), (m >> 1) - 1);
    float v = mag * (decode_scale(scales[tile * kTileScaleBytes + s.scale]) / gscale);
    return (code & 8) ? -v : v;
}

}  // namespace fp4::cuda::nvfp4
