// mma_reference.h — mma.sync.aligned.m16n8k16.row.col with BF16 operands, as PTX defines its fragments, on
// the host: the emulator's MMA (simt.cpp) and test_nvfp4_tile's check of the GEMV's fragments.
#pragma once

#include <cstdint>

#include "numeric.h"

namespace fp4::emu {

// d[16][8] += A·B over a warp's fragments: lane 4g + t holds A rows g (a0, a2) and g+8 (a1, a3) at
// k = 2t, 2t+1 (a0, a1) and 2t+8, 2t+9 (a2, a3), and B column g at the same k (b0, b1); the lower half of a
// register holds the lower k. Acc is float for the emulator, double for a reference free of rounding.
template <typename Acc>
void mma_m16n8k16(const uint32_t a[32][4], const uint32_t b[32][2], Acc d[16][8]) {
    auto lo = [](uint32_t v) { return Acc(bf16_to_f32(uint16_t(v))); };
    auto hi = [](uint32_t v) { return Acc(bf16_to_f32(uint16_t(v >> 16))); };
    Acc A[16][16], B[16][8];
    for (int lane = 0; lane < 32; ++lane) {
        const int g = lane >> 2, t = lane & 3;
        for (int i = 0; i < 4; ++i) {
            const int row = g + 8 * (i & 1), k = 2 * t + 8 * (i >> 1);
            A[row][k] = lo(a[lane][i]), A[row][k + 1] = hi(a[lane][i]);
        }
        for (int i = 0; i < 2; ++i) B[2 * t + 8 * i][g] = lo(b[lane][i]), B[2 * t + 8 * i + 1][g] = hi(b[lane][i]);
    }
    for (int r = 0; r < 16; ++r)
        for (int n = 0; n < 8; ++n) {
            Acc s = d[r][n];
            for (int k = 0; k < 16; ++k) s += A[r][k] * B[k][n];
            d[r][n] = s;
        }
}

}  // namespace fp4::emu
