// nvfp4_tile.h — the device layout of an NVFP4 weight [N, K] as plain integer code that compiles for the host
// too (no CUDA headers), so the layout, its load-time repack and its decode are tested on any machine.
//
// The weight is cut into tiles of 16 rows × 64 columns (N and K padded with zero codes), stored tile after
// tile, row-tile major. A tile holds exactly what one warp needs as the A operand of four
// mma.m16n8k16 (one per 16-column scale group, kk = 0..3):
//  * codes, 512 bytes: lane l = 4g + t owns bytes [16l, 16l + 16); its 32-bit word kk holds the codes of
//    rows g and g+8 at group columns 2t, 2t+1, 2t+8, 2t+9: fragment register i (a0: row g, cols 2t..;
//    a1: row g+8, cols 2t..; a2: row g, cols 2t+8..; a3: row g+8, cols 2t+8..), its even column in the
//    low 16 bits and its odd column in the high 16. Within a half, a code's sign and 3 magnitude bits sit
//    where decoding wants them, so that three registers cost one mask (and a shift) each:
//      a0: sign 15, magnitude 8..6    → word & 0x81C081C0
//      a1: sign 12, magnitude 5..3    → (word << 3) & 0x81C081C0
//      a2: sign  9, magnitude 2..0    → (word << 6) & 0x81C081C0
//      a3: sign 14, magnitude 13, 11, 10 (the bits left) → three shifts and masks
//  * scales, 64 bytes: lanes of group g read 8 bytes at 8g; byte 2kk + h is the scale of row g + 8h in
//    group kk, re-encoded as u = (E + 9)·8 + m for the E4M3 value 2^E·(1 + m/8) (every E4M3 value, the
//    subnormal ones too, is normal in this form). Zero scales become zero codes and negative scales
//    flip the code signs at repack time, so u never needs a sign or a zero.
// Decoding: code → BF16 bits (sign << 15 | magnitude << 6) = e2m1 · 2^-126; u → BF16 bits
// (u << 4) + (236 << 7) = scale · 2^118; their product e2m1 · scale · 2^-8 is exact in BF16 (6 significant
// bits, between 2^-18 and 2^4), so a kernel multiplies its F32 result by 2^8 / gscale once per output.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>

#if defined(__CUDACC__)
#define FP4_HD __host__ __device__ __forceinline__
#else
#define FP4_HD inline
#endif

namespace fp4::cuda::nvfp4 {

constexpr int kTileRows = 16, kTileCols = 64;
constexpr int kTileCodeBytes = kTileRows * kTileCols / 2, kTileScaleBytes = kTileRows * kTileCols / 16;
constexpr float kOutScale = 256.0f;  // undoes the 2^-8 of the decoded products

FP4_HD int64_t padded_rows(int64_t N) { return (N + kTileRows - 1) / kTileRows * kTileRows; }
FP4_HD int64_t col_tiles(int64_t K) { return (K + kTileCols - 1) / kTileCols; }
inline size_t tiles(int64_t N, int64_t K) { return size_t(padded_rows(N) / kTileRows * col_tiles(K)); }
inline size_t code_bytes(int64_t N, int64_t K) { return tiles(N, K) * kTileCodeBytes; }
inline size_t scale_bytes(int64_t N, int64_t K) { return tiles(N, K) * kTileScaleBytes; }

// Bits of the code of fragment register i's even (odd = 0) or odd column in its lane's word: sign, then
// magnitude bits 2, 1, 0.
struct CodeBits { int bit[4]; };
FP4_HD CodeBits code_bits(int i, int odd) {
    const int base = odd ? 16 : 0;
    if (i == 3) return {{base + 14, base + 13, base + 11, base + 10}};
    const int top = 15 - 3 * i;  // a0: 15, a1: 12, a2: 9; the magnitude 7 bits lower
    return {{base + top, base + top - 7, base + top - 8, base + top - 9}};
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
// it, the code's bits in that word, and the byte offset of its scale in the tile's scales.
struct Place { int word; CodeBits bits; int scale; };
FP4_HD Place place_of(int r, int c) {
    const int kk = c >> 4, cc = c & 15, g = r & 7, h = r >> 3, t = (cc & 7) >> 1;
    return {(4 * g + t) * 4 + kk, code_bits(h + 2 * (cc >> 3), cc & 1), 8 * g + 2 * kk + h};
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
// four code words and, for lanes with t = 0, the 8 scale bytes of rows g and g+8. Sets *nan_scale when a
// scale is an E4M3 NaN.
FP4_HD void repack_lane(const uint8_t* codes, const uint8_t* scales, int64_t N, int64_t K, int64_t rt, int64_t kt,
                        int lane, uint32_t words[4], uint32_t scale_words[2], bool* nan_scale) {
    const int g = lane >> 2, t = lane & 3;
    uint8_t u[4][2];
    bool zero[4][2], neg[4][2];
    for (int kk = 0; kk < 4; ++kk)
        for (int h = 0; h < 2; ++h) {
            const int64_t n = rt * kTileRows + g + 8 * h, grp = kt * 4 + kk;
            const uint8_t b = (n < N && grp * 16 < K) ? scales[n * (K / 16) + grp] : 0;
            if ((b & 0x7f) == 0x7f) *nan_scale = true;
            zero[kk][h] = (b & 0x7f) == 0;
            neg[kk][h] = (b & 0x80) != 0;
            u[kk][h] = zero[kk][h] ? 0 : encode_scale(b & 0x7f);
        }
    for (int kk = 0; kk < 4; ++kk) {
        words[kk] = 0;
        for (int i = 0; i < 4; ++i)
            for (int odd = 0; odd < 2; ++odd) {
                const int h = i & 1;
                const int64_t n = rt * kTileRows + g + 8 * h;
                const int64_t k = kt * kTileCols + kk * 16 + (i >> 1) * 8 + 2 * t + odd;
                uint32_t nib = 0;
                if (n < N && k < K) {
                    const uint8_t byte = codes[n * (K / 2) + k / 2];
                    nib = (k & 1) ? byte >> 4 : byte & 15;
                }
                if (zero[kk][h]) nib = 0;
                else if (neg[kk][h]) nib ^= 8;
                words[kk] |= place_code(nib, code_bits(i, odd));
            }
    }
    scale_words[0] = uint32_t(u[0][0]) | uint32_t(u[0][1]) << 8 | uint32_t(u[1][0]) << 16 | uint32_t(u[1][1]) << 24;
    scale_words[1] = uint32_t(u[2][0]) | uint32_t(u[2][1]) << 8 | uint32_t(u[3][0]) << 16 | uint32_t(u[3][1]) << 24;
}

// Four BF16 pairs (fragment registers a0..a3, bits) from one code word, before scaling.
FP4_HD void decode_word(uint32_t w, uint32_t a[4]) {
    constexpr uint32_t kBf16 = 0x81C081C0u;  // sign 15, magnitude 8..6 of each half
    a[0] = w & kBf16;
    a[1] = (w << 3) & kBf16;
    a[2] = (w << 6) & kBf16;
    a[3] = ((w << 1) & 0x80008000u) | ((w >> 5) & 0x01000100u) | ((w >> 4) & 0x00C000C0u);
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

// BF16 pairs (scale, scale) of rows g and g+8 in group kk, from a lane's two scale words.
FP4_HD void scale_pairs(uint32_t s0, uint32_t s1, int kk, uint32_t& sg, uint32_t& sg8) {
    const uint32_t w = kk < 2 ? s0 : s1, b = (kk & 1) * 2;
    sg = (byte_perm(w, 0u, b | 0x4040u | (b << 8)) << 4) + 0x76007600u;
    sg8 = (byte_perm(w, 0u, (b + 1) | 0x4040u | ((b + 1) << 8)) << 4) + 0x76007600u;
}

}  // namespace fp4::cuda::nvfp4
