// nvfp4_avx512.h — what the AVX-512 NVFP4 kernels share (matmul_avx512.cpp and matmul_avx512bf16.cpp,
// both compiled for AVX-512): E4M3 scale decoding and the walk over a group of weight rows in blocks of
// 128 columns. Internal linkage: the two files are compiled with different instruction sets, and neither
// may pick up the other's copy of a function at link time.
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <cstdint>

#include "cpu/matmul.h"

namespace fp4::cpu {
namespace {

inline __mmask16 first_lanes(int64_t n) { return n >= 16 ? __mmask16(0xffff) : __mmask16((1u << n) - 1); }

// 16 E4M3 scale bytes -> 16 floats. The byte's exponent and mantissa placed at the F32 exponent and
// mantissa positions give value·2^-120, subnormals included. (0x7f, E4M3's NaN, decodes as 480;
// scales never hold it.)
inline __m512 e4m3x16(__m128i bytes) {
    const __m512i b = _mm512_cvtepu8_epi32(bytes);
    const __m512i mag = _mm512_slli_epi32(_mm512_and_si512(b, _mm512_set1_epi32(0x7f)), 20);
    const __m512i sign = _mm512_slli_epi32(_mm512_and_si512(b, _mm512_set1_epi32(0x80)), 24);
    return _mm512_mul_ps(_mm512_castsi512_ps(_mm512_or_si512(mag, sign)), _mm512_set1_ps(0x1p120f));
}

// The scales of 128-column block `half` of 16 decoded ones, laid out like its code words: lane d
// (columns 8d .. 8d+7) holds the scale of group d/2.
inline __m512 block_scales(__m512 scales16, int half) {
    const __m512i pairs = _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
    return _mm512_permutexvar_ps(_mm512_add_epi32(pairs, _mm512_set1_epi32(8 * half)), scales16);
}

// Calls block(codes, scales, k) for each 128-column block of the NR rows n .. n+NR-1 in columns
// [k0, k1) (k0 a multiple of 128): codes[r] = the block's 64 code bytes of row n+r as 16 words,
// scales[r] = its scales (see block_scales); the last block is masked past K. The rows go through K
// together, so that a kernel loads each x vector once for all of them. Blocks go in pairs so that one
// decode serves 16 scales. Weight bytes are prefetched into L2 kPrefetchBytes ahead of each row's stream
// (past a row's end, in the same row of the next group): into L1 they would evict x.
template <int NR, class Block>
inline void for_each_block(const WeightRef& w, int64_t n, int64_t k0, int64_t k1, Block block) {
    const int64_t rb = w.K / 2, sb = w.K / 16;  // bytes per row of codes and of scales
    const uint8_t* codes = w.data + n * rb + k0 / 2;
    const uint8_t* scales = w.scale + n * sb + k0 / 16;
    const int64_t end = std::min(k1, w.K);
    __m512i c[NR];
    __m512 s[NR], bs[NR];
    int64_t k = k0;
    for (; k + 256 <= end; k += 256, codes += 128, scales += 16) {
        const int64_t pc = k / 2 + kPrefetchBytes < rb ? kPrefetchBytes : kPrefetchBytes + (NR - 1) * rb;
        const int64_t ps = k / 16 + kPrefetchBytes / 8 < sb ? kPrefetchBytes / 8 : kPrefetchBytes / 8 + (NR - 1) * sb;
        for (int r = 0; r < NR; ++r) {
            _mm_prefetch((const char*)codes + r * rb + pc, _MM_HINT_T1);
            _mm_prefetch((const char*)codes + r * rb + pc + 64, _MM_HINT_T1);
            _mm_prefetch((const char*)scales + r * sb + ps, _MM_HINT_T1);
            s[r] = e4m3x16(_mm_loadu_si128((const __m128i*)(scales + r * sb)));
        }
        for (int half = 0; half < 2; ++half) {
            for (int r = 0; r < NR; ++r) {
                c[r] = _mm512_loadu_si512(codes + r * rb + 64 * half);
                bs[r] = block_scales(s[r], half);
            }
            block(c, bs, k + 128 * half);
        }
    }
    if (k < end) {
        const int64_t left = end - k;  // a multiple of 16, below 256
        for (int r = 0; r < NR; ++r) s[r] = e4m3x16(_mm_maskz_loadu_epi8(first_lanes(left / 16), scales + r * sb));
        for (int half = 0; half < 2 && left > 128 * half; ++half) {
            for (int r = 0; r < NR; ++r) {
                c[r] = _mm512_maskz_loadu_epi32(first_lanes((left - 128 * half) / 8), codes + r * rb + 64 * half);
                bs[r] = block_scales(s[r], half);
            }
            block(c, bs, k + 128 * half);
        }
    }
}

// A GEMV tile: rows n .. n+NR-1 of W against MR x rows, y[m·ldy + n + r] = Σ_k W[n + r, k]·x[m·ldx + k].
// dot(codes, k, t) sets t[r][m] to the 128-column block's sums of products with the codes as E2M1
// values; the block's scales multiply them here.
template <int MR, int NR, class BlockDot>
inline void gemv_nvfp4_tile(const WeightRef& w, int64_t n, float* y, int64_t ldy, BlockDot dot) {
    __m512 acc[NR][MR];
    for (int r = 0; r < NR; ++r)
        for (int m = 0; m < MR; ++m) acc[r][m] = _mm512_setzero_ps();
    for_each_block<NR>(w, n, 0, w.K, [&](const __m512i* c, const __m512* scale, int64_t k) {
        __m512 t[NR][MR];
        dot(c, k, t);
        for (int r = 0; r < NR; ++r)
            for (int m = 0; m < MR; ++m) acc[r][m] = _mm512_fmadd_ps(t[r][m], scale[r], acc[r][m]);
    });
    for (int r = 0; r < NR; ++r)
        for (int m = 0; m < MR; ++m) y[m * ldy + n + r] = _mm512_reduce_add_ps(acc[r][m]);
}

// A GEMV's rows [n0, n1): Group computes NR rows from its first, One a single row. A row's sums come
// out the same either way, so results do not depend on how the rows are split among threads.
using RowsFn = void (*)(const WeightRef& w, int64_t n, const float* x, int64_t ldx, float* y, int64_t ldy);
template <int NR, RowsFn Group, RowsFn One>
void gemv_row_groups(const WeightRef& w, int64_t n0, int64_t n1, const float* x, int64_t ldx, float* y,
                     int64_t ldy) {
    int64_t n = n0;
    for (; n + NR <= n1; n += NR) Group(w, n, x, ldx, y, ldy);
    for (; n < n1; ++n) One(w, n, x, ldx, y, ldy);
}

}  // namespace
}  // namespace fp4::cpu
