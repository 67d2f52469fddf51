// nvfp4_tile.h — the device layout of an NVFP4 weight [N, K] as plain integer code that compiles for the host
// too (no CUDA headers outside the device paths), so the layout, its load-time repack, its decode and the
// fragments a GEMV feeds its MMAs are tested on any machine.
//
// The weight is cut into tiles of 16 rows × 64 columns (N and K padded with zero codes), stored tile after
// tile, row-tile major. A tile holds exactly what one warp needs as the A operand of four
// mma.m16n8k16 (kk = 0..3). An MMA sums over its 16 k positions in any order, so the columns behind them
// are ours to choose: lane l = 4g + t takes the whole 16-column scale group t of rows g and g+8, and MMA kk
// gives it columns 16t + 4kk .. 16t + 4kk + 3 (tile_col). So a lane's activations are 16 consecutive
// floats (four 16-byte loads) and its weights need two scales per tile, not eight.
//  * codes, 512 bytes: lane l owns bytes [16l, 16l + 16); its 32-bit word kk holds fragment registers
//    a0: row g, columns tile_col(t, kk, 0, ·); a1: row g+8, the same columns; a2: row g, tile_col(t, kk, 1, ·);
//    a3: row g+8, the same — each register's even column in the low 16 bits and its odd column in the high
//    16. A code's sign and 3 magnitude bits sit where decoding wants them (code_bits), so that three
//    registers cost a mask (and a shift or a rotation) each and the fourth two of each:
//      a0: word & 0x81C081C0              (BF16 sign 15 and magnitude 8..6 of each half)
//      a1: rotl(word, 10) & 0x81C081C0
//      a2: (word << 6) & 0x81C081C0
//      a3: rotl(word, 12) & 0x80C080C0 | (word << 4) & 0x01000100   (no fourth rotation fits the bits left)
//  * scales, 64 bytes: lane l owns bytes 2l (row g) and 2l + 1 (row g+8), the scales of its group t,
//    re-encoded as u = (E + 9)·8 + m for the E4M3 value 2^E·(1 + m/8) (every E4M3 value, the subnormal
//    ones too, is normal in this form). Zero scales become zero codes and negative scales flip the code
//    signs at repack time, so u never needs a sign or a zero.
// Decoding: code → BF16 bits (sign << 15 | magnitude << 6) = e2m1 · 2^-126; u → BF16 bits
// (u << 4) + (236 << 7) = scale · 2^118; their product e2m1 · scale · 2^-8 is exact in BF16 (6 significant
// bits, between 2^-18 and 2^4), so a kernel multiplies its F32 result by 2^8 / gscale once per output.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>

#include "bf16_pair.h"

namespace fp4::cuda::nvfp4 {

constexpr int kTileRows = 16, kTileCols = 64;
constexpr int kTileCodeBytes = kTileRows * kTileCols / 2, kTileScaleBytes = kTileRows * kTileCols / 16;
constexpr float kOutScale = 256.0f;  // undoes the 2^-8 of the decoded products

FP4_HD int64_t padded_rows(int64_t N) { return (N + kTileRows - 1) / kTileRows * kTileRows; }
FP4_HD int64_t col_tiles(int64_t K) { return (K + kTileCols - 1) / kTileCols; }
inline size_t tiles(int64_t N, int64_t K) { return size_t(padded_rows(N) / kTileRows * col_tiles(K)); }
inline size_t code_bytes(int64_t N, int64_t K) { return tiles(N, K) * kTileCodeBytes; }
inline size_t scale_bytes(int64_t N, int64_t K) { return tiles(N, K) * kTileScaleBytes; }

// The tile column behind k positions 2t + 8·half + odd of MMA kk for the lanes of quad t: fragment
// registers a0/a1 and b0 (half 0), a2/a3 and b1 (half 1). All of them lie in scale group t.
FP4_HD int tile_col(int t, int kk, int half, int odd) { return 16 * t + 4 * kk + 2 * half + odd; }

// Bits of the code of fragment register i's even (odd = 0) or odd column in its lane's word: sign, then
// magnitude bits 2, 1, 0 — the word bits that decode_word moves to BF16 bits 15, 8, 7, 6 (+16 if odd).
struct CodeBits { int bit[4]; };
FP4_HD CodeBits code_bits(int i, int odd) {
    CodeBits b{};
    const int target[4] = {15, 8, 7, 6};
    for (int j = 0; j < 4; ++j) {
        const int q = target[j] + 16 * odd;
        b.bit[j] = i == 0 ? q : i == 1 ? (q - 10) & 31 : i == 2 ? q - 6 : (j == 1 ? q - 4 : (q - 12) & 31);
    }
    return b;
}
FP4_HD uint32_t place_code(uint32_t code, CodeBits b) {
    return (code >> 3 & 1u) << b.bit[0] | (code >> 2 & 1u) << b.bit[1] | (code >> 1 & 1u) << b.bit[2] |
           (code & 1u) << b.bit[3];
}
FP4_HD uint32_t code_at(uint32_t word, CodeBits b) {
    return (word >> b.bit[0] & 1u) << 3 | (word >> b.bit[1] & 1u) << 2 | (word >> b.bit[2] & 1u) << 1 |
           (word >> b.bit[3] & 1u);
}

// Where element (r, c) of a tile (r < 16, c < 64) lives: the 32-bit word of the tile's codes that holds
// it, the code's bits in that word, and the byte offset of its scale in the tile's scales (tile_col inverted).
struct Place { int word; CodeBits bits; int scale; };
FP4_HD Place place_of(int r, int c) {
    const int g = r & 7, h = r >> 3, t = c >> 4, kk = (c >> 2) & 3, half = (c >> 1) & 1, lane = 4 * g + t;
    return {lane * 4 + kk, code_bits(h + 2 * half, c & 1), 2 * lane + h};
}

// Re-encoding of an E4M3 scale byte (sign and zero handled by the caller).
FP4_HD uint8_t encode_scale(uint8_t e4m3) {
    const int e = (e4m3 >> 3) & 15, m = e4m3 & 7;
    if (e > 0) return uint8_t(((e + 2) << 3) | m);
    // subnormal: m · 2^-9, normalised
    const int E = m >= 4 ? 2 : m >= 2 ? 1 : 0;  // 2^E ≤ m < 2^(E+1); value 2^(E-9)·(m / 2^E)
    return uint8_t((E << 3) | ((m << (3 - E)) & 7));
}
FP4_HD float decode_scale(uint8_t u) { return ldexpf(1.0f + float(u & 7) / 8.0f, int(u >> 3) - 9); }

// One lane's part of one tile from the checkpoint layout (row-major codes, row-major E4M3 scales): its
// four code words and its two scale bytes (row g in the low byte, row g+8 in the high one). Sets
// *nan_scale when a scale is an E4M3 NaN.
FP4_HD void repack_lane(const uint8_t* codes, const uint8_t* scales, int64_t N, int64_t K, int64_t rt, int64_t kt,
                        int lane, uint32_t words[4], uint16_t* scale_pair, bool* nan_scale) {
    const int g = lane >> 2, t = lane & 3;
    const int64_t grp = kt * 4 + t;
    uint8_t u[2];
    bool zero[2], neg[2];
    for (int h = 0; h < 2; ++h) {
        const int64_t n = rt * kTileRows + g + 8 * h;
        const uint8_t b = (n < N && grp * 16 < K) ? scales[n * (K / 16) + grp] : 0;
        if ((b & 0x7f) == 0x7f) *nan_scale = true;
        zero[h] = (b & 0x7f) == 0;
        neg[h] = (b & 0x80) != 0;
        u[h] = zero[h] ? 0 : encode_scale(b & 0x7f);
    }
    for (int kk = 0; kk < 4; ++kk) {
        words[kk] = 0;
        for (int i = 0; i < 4; ++i)
            for (int odd = 0; odd < 2; ++odd) {
                const int h = i & 1;
                const int64_t n = rt * kTileRows + g + 8 * h, k = kt * kTileCols + tile_col(t, kk, i >> 1, odd);
                uint32_t nib = 0;
                if (n < N && k < K) {
                    const uint8_t byte = codes[n * (K / 2) + k / 2];
                    nib = (k & 1) ? byte >> 4 : byte & 15;
                }
                if (zero[h]) nib = 0;
                else if (neg[h]) nib ^= 8;
                words[kk] |= place_code(nib, code_bits(i, odd));
            }
    }
    *scale_pair = uint16_t(u[0] | u[1] << 8);
}

// The word rotated left by n bits (one funnel shift on the device).
FP4_HD uint32_t rotl(uint32_t w, int n) {
#if defined(__CUDA_ARCH__)
    return __funnelshift_l(w, w, n);
#else
    return w << n | w >> (32 - n);
#endif
}

// Four BF16 pairs (fragment registers a0..a3, bits) from one code word, before scaling: 9 integer operations.
FP4_HD void decode_word(uint32_t w, uint32_t a[4]) {
    constexpr uint32_t kBf16 = 0x81C081C0u;  // sign 15, magnitude 8..6 of each half
    a[0] = w & kBf16;
    a[1] = rotl(w, 10) & kBf16;
    a[2] = (w << 6) & kBf16;
    a[3] = (rotl(w, 12) & 0x80C080C0u) | ((w << 4) & 0x01000100u);
}

// CUDA's __byte_perm(x, y, s) (selector nibbles below 8: byte n of the 8 bytes y:x), also on the host.
FP4_HD uint32_t byte_perm(uint32_t x, uint32_t y, uint32_t s) {
#if defined(__CUDA_ARCH__)
    return __byte_perm(x, y, s);
#else
    const uint64_t v = uint64_t(y) << 32 | x;
    uint32_t r = 0;
    for (int b = 0; b < 4; ++b) r |= uint32_t((v >> (8 * ((s >> (4 * b)) & 7))) & 0xff) << (8 * b);
    return r;
#endif
}

// BF16 pairs (scale, scale) of rows g and g+8 from a lane's two scale bytes.
FP4_HD void scale_pairs(uint32_t scale_pair, uint32_t& sg, uint32_t& sg8) {
    sg = (byte_perm(scale_pair, 0u, 0x4040u) << 4) + 0x76007600u;
    sg8 = (byte_perm(scale_pair, 0u, 0x4141u) << 4) + 0x76007600u;
}

// The A fragments of MMA kk of a tile from the lane's code word kk and its scale pairs: e2m1 · scale · 2^-8.
FP4_HD void a_fragments(uint32_t word, uint32_t sg, uint32_t sg8, uint32_t a[4]) {
    decode_word(word, a);
    a[0] = bf16x2_mul(a[0], sg);
    a[1] = bf16x2_mul(a[1], sg8);
    a[2] = bf16x2_mul(a[2], sg);
    a[3] = bf16x2_mul(a[3], sg8);
}

// The B fragments of MMA kk from the four activations at tile_col(t, kk, 0, 0): b0 = (v0, v1), b1 = (v2, v3).
FP4_HD void b_fragments(float v0, float v1, float v2, float v3, uint32_t& b0, uint32_t& b1) {
    b0 = pack_bf16x2(v0, v1);
    b1 = pack_bf16x2(v2, v3);
}

}  // namespace fp4::cuda::nvfp4
