// nvfp4.cuh — the device layout of an NVFP4 weight [N, K] and how to decode it.
//
// The weight is cut into tiles of 16 rows × 64 columns (N and K padded with zero codes), stored tile after
// tile, row-tile major. A tile holds exactly what one warp needs as the A operand of four
// mma.m16n8k16 (one per 16-column scale group, kk = 0..3):
//  * codes, 512 bytes: lane l = 4g + t owns bytes [16l, 16l + 16); its 32-bit word kk holds the codes of
//    rows g and g+8 at group columns 2t, 2t+1, 2t+8, 2t+9. Fragment register i (a0: row g, cols 2t..;
//    a1: row g+8, cols 2t..; a2: row g, cols 2t+8..; a3: row g+8, cols 2t+8..) keeps its even column at
//    bits [15-4i, 12-4i] and its odd column at bits [31-4i, 28-4i], so `word << 4i` puts both nibbles at
//    the top of their 16-bit halves and two bit operations turn them into a BF16 pair.
//  * scales, 64 bytes: lanes of group g read 8 bytes at 8g; byte 2kk + h is the scale of row g + 8h in
//    group kk, re-encoded as u = (E + 9)·8 + m for the E4M3 value 2^E·(1 + m/8) (every E4M3 value, the
//    subnormal ones too, is normal in this form). Zero scales become zero codes and negative scales
//    flip the code signs at repack time, so u never needs a sign or a zero.
// Decoding: code nibble → BF16 bits (sign << 15 | magnitude << 6) = e2m1 · 2^-126; u → BF16 bits
// (u << 4) + (236 << 7) = scale · 2^118; their product e2m1 · scale · 2^-8 is exact in BF16 (6 significant
// bits, between 2^-18 and 2^4), so a kernel multiplies its F32 result by 2^8 / gscale once per output.
#pragma once

#include "common.cuh"

namespace fp4::cuda::nvfp4 {

constexpr int kTileRows = 16, kTileCols = 64;
constexpr int kTileCodeBytes = kTileRows * kTileCols / 2, kTileScaleBytes = kTileRows * kTileCols / 16;
constexpr float kOutScale = 256.0f;  // undoes the 2^-8 of the decoded products

__host__ __device__ inline int64_t padded_rows(int64_t N) { return (N + kTileRows - 1) / kTileRows * kTileRows; }
__host__ __device__ inline int64_t col_tiles(int64_t K) { return (K + kTileCols - 1) / kTileCols; }
inline size_t code_bytes(int64_t N, int64_t K) { return size_t(padded_rows(N) / kTileRows * col_tiles(K)) * kTileCodeBytes; }
inline size_t scale_bytes(int64_t N, int64_t K) { return size_t(padded_rows(N) / kTileRows * col_tiles(K)) * kTileScaleBytes; }

// Where element (r, c) of a tile (r < 16, c < 64) lives: byte offset in the tile's codes, nibble shift
// within that byte, and byte offset of its scale in the tile's scales.
struct Place { int byte, shift, scale; };
__host__ __device__ inline Place place_of(int r, int c) {
    int kk = c >> 4, cc = c & 15, g = r & 7, h = r >> 3, t = (cc & 7) >> 1;
    int i = h + 2 * (cc >> 3), bit = ((cc & 1) ? 28 : 12) - 4 * i;
    return {(4 * g + t) * 16 + kk * 4 + (bit >> 3), bit & 4, 8 * g + 2 * kk + h};
}

// Re-encoding of an E4M3 scale byte (sign and zero handled by the caller).
__host__ __device__ inline uint8_t encode_scale(uint8_t e4m3) {
    int e = (e4m3 >> 3) & 15, m = e4m3 & 7;
    if (e > 0) return uint8_t(((e + 2) << 3) | m);
    // subnormal: m · 2^-9, normalised
    int E = m >= 4 ? 2 : m >= 2 ? 1 : 0;  // 2^E ≤ m < 2^(E+1); value 2^(E-9)·(m / 2^E)
    return uint8_t((E << 3) | ((m << (3 - E)) & 7));
}
__host__ __device__ inline float decode_scale(uint8_t u) { return ldexpf(1.0f + float(u & 7) / 8.0f, int(u >> 3) - 9); }

// Four BF16 pairs (fragment registers a0..a3) from one code word, before scaling.
__device__ __forceinline__ void decode_word(uint32_t w, uint32_t a[4]) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        uint32_t x = w << (4 * i);
        a[i] = (x & 0x80008000u) | ((x >> 6) & 0x01C001C0u);
    }
}

// BF16 pairs (scale, scale) of rows g and g+8 in group kk, from a lane's 8 scale bytes.
__device__ __forceinline__ void scale_pairs(uint2 s, int kk, uint32_t& sg, uint32_t& sg8) {
    uint32_t w = kk < 2 ? s.x : s.y, b = (kk & 1) * 2;
    sg = (__byte_perm(w, 0u, b | 0x4040u | (b << 8)) << 4) + 0x76007600u;
    sg8 = (__byte_perm(w, 0u, (b + 1) | 0x4040u | ((b + 1) << 8)) << 4) + 0x76007600u;
}

__device__ __forceinline__ uint32_t bf16x2_mul(uint32_t a, uint32_t b) {
    __nv_bfloat162 r = __hmul2(*reinterpret_cast<__nv_bfloat162*>(&a), *reinterpret_cast<__nv_bfloat162*>(&b));
    return *reinterpret_cast<uint32_t*>(&r);
}

// The A fragments of group kk of a tile, scaled: e2m1 · scale · 2^-8 in BF16.
__device__ __forceinline__ void dequant_fragment(uint32_t word, uint2 scales, int kk, uint32_t a[4]) {
    decode_word(word, a);
    uint32_t sg, sg8;
    scale_pairs(scales, kk, sg, sg8);
    a[0] = bf16x2_mul(a[0], sg);
    a[1] = bf16x2_mul(a[1], sg8);
    a[2] = bf16x2_mul(a[2], sg);
    a[3] = bf16x2_mul(a[3], sg8);
}

// One element W[n, k] as F32, rounded as the reference does: e2m1 · (scale / gscale).
__device__ inline float element(const uint8_t* codes, const uint8_t* scales, int64_t KT, float gscale, int64_t n,
                                int64_t k) {
    int64_t tile = (n / kTileRows) * KT + k / kTileCols;
    Place s = place_of(int(n % kTileRows), int(k % kTileCols));
    uint8_t code = (codes[tile * kTileCodeBytes + s.byte] >> s.shift) & 15;
    int m = code & 7;
    float mag = m < 2 ? 0.5f * float(m) : ldexpf(1.0f + 0.5f * float(m & 1), (m >> 1) - 1);
    float v = mag * (decode_scale(scales[tile * kTileScaleBytes + s.scale]) / gscale);
    return (code & 8) ? -v : v;
}

// D += A·B for one m16n8k16 BF16 MMA with F32 accumulators.
__device__ __forceinline__ void mma_bf16(float d[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
    __nv_bfloat162 r = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t*>(&r);
}

}  // namespace fp4::cuda::nvfp4
