// nvfp4.cuh — the device side of the NVFP4 tile layout (nvfp4_tile.h): reading single elements.
#pragma once

#include "common.cuh"
#include "nvfp4_tile.h"

namespace fp4::cuda::nvfp4 {

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
