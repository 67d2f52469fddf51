// matmul_avx512bf16.cpp — the AVX-512 kernel set with an NVFP4 GEMV on AVX512-BF16 dot products (built
// with -mavx512bf16 besides the AVX-512 flags). With one x row the F32 GEMV issues a shift, a vpermps and
// an FMA per 16 weights, which caps two cores below the memory's speed; vdpbf16ps does 32 products per
// instruction. E2M1 values are exact in BF16 (vpermw looks them up for 32 nibbles at once); x is split into
// two BF16 halves, hi = bf16(x) and lo = bf16(x − hi), so it keeps 16 significant bits (relative error
// ≤ 2^-17, where F32 has 2^-24) and products and sums stay F32.
// With BF16 activations (matmul.h) the panels run on pairs of columns: each vdpbf16ps multiplies a
// broadcast pair of panel values with 16 x rows' pairs, twice the multiply-adds of an F32 FMA. Everything
// else is the AVX-512 set's.

// GCC 12 reports its own intrinsics' _mm*_undefined_*() placeholders as uninitialized (GCC bug 105593).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cstring>

#include "cpu/attention_tile.h"
#include "cpu/bf16_pairs_avx512.h"
#include "cpu/matmul.h"
#include "cpu/nvfp4_avx512.h"
#include "cpu/panel_avx512.h"

namespace fp4::cpu {
namespace {

// E2M1 as BF16, twice: vpermw reads 5 index bits, and the bit above a shifted nibble is the next one's.
alignas(64) constexpr uint16_t kE2M1Bf16[32] = {
    0x0000, 0x3f00, 0x3f80, 0x3fc0, 0x4000, 0x4040, 0x4080, 0x40c0, 0x8000, 0xbf00, 0xbf80, 0xbfc0, 0xc000, 0xc040, 0xc080, 0xc0c0,
    0x0000, 0x3f00, 0x3f80, 0x3fc0, 0x4000, 0x4040, 0x4080, 0x40c0, 0x8000, 0xbf00, 0xbf80, 0xbfc0, 0xc000, 0xc040, 0xc080, 0xc0c0};

// The GEMV's x order. A 16-bit word of codes holds columns 4l .. 4l+3 of its block, so shifting by 4j
// puts column 4l + j in word l, and vdpbf16ps lane i pairs words 2i and 2i+1: columns 8i + j and
// 8i + 4 + j, always within the 8 columns of 32-bit word i (one scale group per two lanes, as in the
// F32 kernels). Per 128-column block and j = 0..3: the 32 hi halves of those columns in that order,
// then the 32 lo halves (512 bytes per block, the size of the block in F32).
// Lane l of vector j holds column 8(l/2) + 4(l%2) + j: lanes 0-15 from columns 0-63, 16-31 from 64-127
// (indices into two 32-column vectors, mod 64).
alignas(64) constexpr auto kPairOrder = [] {
    std::array<std::array<uint16_t, 32>, 4> idx{};
    for (int j = 0; j < 4; ++j)
        for (int l = 0; l < 32; ++l) idx[size_t(j)][size_t(l)] = uint16_t((8 * (l / 2) + 4 * (l % 2) + j) % 64);
    return idx;
}();

// Kernels::pair_x: 32 columns at a time rounded by vcvtne2ps2bf16 (pairs 2s, 2s + 1 as they come; NVFP4's
// d, 16 + d interleaved by vpermw), then stored slot by slot.
void pair_x(const float* in, int64_t n, bool nvfp4, uint32_t* out, int64_t stride) {
    for (int64_t c = 0; c < n; c += 32) {
        alignas(64) uint32_t slots[16];
        _mm512_store_si512(slots, nvfp4 ? interleave_pairs(_mm512_loadu_ps(in + c), _mm512_loadu_ps(in + c + 16))
                                        : pairs32(in + c, 32));
        for (int d = 0; d < 16; ++d) out[(c / 2 + d) * stride] = slots[d];
    }
}

void pack_x_bf16_pairs(const float* x, int64_t K, int64_t kpad, float* out) {
    auto* o = reinterpret_cast<uint16_t*>(out);
    for (int64_t b = 0; b < kpad; b += 128) {
        __m512i hi[4], lo[4];  // 32 columns each, in column order
        for (int q = 0; q < 4; ++q) {
            __m256i h[2], l[2];
            for (int p = 0; p < 2; ++p) {
                const int64_t c = b + 32 * q + 16 * p;
                const __m512 v = _mm512_maskz_loadu_ps(c < K ? first_lanes(K - c) : 0, x + std::min(c, K));
                h[p] = (__m256i)_mm512_cvtneps_pbh(v);
                const __m512 back = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h[p]), 16));
                l[p] = (__m256i)_mm512_cvtneps_pbh(_mm512_sub_ps(v, back));
            }
            hi[q] = _mm512_inserti64x4(_mm512_castsi256_si512(h[0]), h[1], 1);
            lo[q] = _mm512_inserti64x4(_mm512_castsi256_si512(l[0]), l[1], 1);
        }
        for (int j = 0; j < 4; ++j) {
            const __m512i ix = _mm512_load_si512(kPairOrder[size_t(j)].data());
            auto order = [&](const __m512i* v) {
                return _mm512_mask_blend_epi16(0xffff0000u, _mm512_permutex2var_epi16(v[0], ix, v[1]),
                                               _mm512_permutex2var_epi16(v[2], ix, v[3]));
            };
            _mm512_storeu_si512(o + 2 * b + 64 * j, order(hi));
            _mm512_storeu_si512(o + 2 * b + 64 * j + 32, order(lo));
        }
    }
}

// Rows n .. n+NR-1 against MR x rows (in pack_x_bf16_pairs order): per 128-column block
// t = Σ_j (nibbles_j as BF16)·(x hi + x lo), then acc += t ⊙ the block's scales. Without kLo, x is already
// BF16 (BF16 activations: its lo halves are zero) and the hi halves alone give the same sums in half the
// dot products.
template <int MR, int NR, bool kLo>
void gemv_nvfp4_rows_at(const WeightRef& w, int64_t n, const float* xf, int64_t ldx, float* y, int64_t ldy) {
    const auto* x = reinterpret_cast<const uint16_t*>(xf);  // ldx floats = 2·ldx halves
    const __m512i lut = _mm512_load_si512(kE2M1Bf16);
    gemv_nvfp4_tile<MR, NR>(w, n, y, ldy, [&](const __m512i* c, int64_t k, __m512 (*t)[MR]) {
        for (int r = 0; r < NR; ++r)
            for (int m = 0; m < MR; ++m) t[r][m] = _mm512_setzero_ps();
#pragma GCC unroll 4
        for (int j = 0; j < 4; ++j) {
            __m512bh xh[MR], xl[MR];
            for (int m = 0; m < MR; ++m) {
                const uint16_t* xb = x + 2 * (m * ldx + k) + 64 * j;
                xh[m] = (__m512bh)_mm512_loadu_si512(xb);
                if constexpr (kLo) xl[m] = (__m512bh)_mm512_loadu_si512(xb + 32);
            }
            for (int r = 0; r < NR; ++r) {
                const __m512bh wv = (__m512bh)_mm512_permutexvar_epi16(_mm512_srli_epi16(c[r], 4 * j), lut);
                for (int m = 0; m < MR; ++m) {
                    t[r][m] = _mm512_dpbf16_ps(t[r][m], wv, xh[m]);
                    if constexpr (kLo) t[r][m] = _mm512_dpbf16_ps(t[r][m], wv, xl[m]);
                }
            }
        }
    });
}

template <int MR, int NR, bool kLo>
constexpr auto gemv_nvfp4_rows =
    gemv_row_groups<NR, gemv_nvfp4_rows_at<MR, NR, kLo>, gemv_nvfp4_rows_at<MR, 1, kLo>>;

template <bool kLo>
constexpr GemvFn gemv_nvfp4 = gemv_by_rows<gemv_nvfp4_rows<1, 4, kLo>, gemv_nvfp4_rows<2, 4, kLo>,
                                           gemv_nvfp4_rows<3, 2, kLo>, gemv_nvfp4_rows<4, 2, kLo>>;

// ---- BF16 activations: panels of column pairs --------------------------------------------------------

alignas(64) constexpr float kE2M1[16] = {0.0f,  0.5f,  1.0f,  1.5f,  2.0f,  3.0f,  4.0f,  6.0f,
                                         -0.0f, -0.5f, -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f};

// Lane-wise pairs of two F32 vectors whose values are exact in BF16: a's in the low halves, b's above.
inline __m512i pair_exact(__m512 a, __m512 b) {
    return _mm512_mask_blend_epi16(0xaaaaaaaau, _mm512_srli_epi32(_mm512_castps_si512(a), 16),
                                   _mm512_castps_si512(b));
}

// The F32 panel's order is the nibble order (nibble j of word d at 16j + d), so the 32 columns from
// 32c pair nibbles 2c and 2c + 1 of every word.
void decode_nvfp4_pairs(const WeightRef& w, int64_t n0, int nr, int64_t k0, int64_t kb, float* panel, int64_t ldp) {
    const __m512 lut = _mm512_load_ps(kE2M1);
    for (int r = 0; r < nr; ++r)  // kpad rounds K up to 128: no block lies wholly past K
        for_each_block<1>(w, n0 + r, k0, k0 + kb, [&](const __m512i* codes, const __m512* scale, int64_t k) {
            float* out = panel + r * ldp + (k - k0) / 2;
#pragma GCC unroll 4
            for (int c = 0; c < 4; ++c) {
                const __m512 a = _mm512_permutexvar_ps(_mm512_srli_epi32(codes[0], 8 * c), lut);
                const __m512 b = _mm512_permutexvar_ps(_mm512_srli_epi32(codes[0], 8 * c + 4), lut);
                _mm512_storeu_si512(out + 16 * c, pair_exact(_mm512_mul_ps(a, scale[0]), _mm512_mul_ps(b, scale[0])));
            }
        });
}

// One pair of columns per slot: broadcast panel pair · 16 x rows' pairs, vdpbf16ps.
struct PairStep {
    static constexpr int kCols = 2;
    using X = __m512bh;
    using W = __m512bh;
    static X load_x(const float* p) { return (__m512bh)_mm512_loadu_si512(p); }
    static W broadcast(const float* p) {
        int pair;
        std::memcpy(&pair, p, 4);
        return (__m512bh)_mm512_set1_epi32(pair);
    }
    static __m512 madd(__m512 acc, W w, X x) { return _mm512_dpbf16_ps(acc, w, x); }
};

float pair_chains(int64_t iters) {
    __m512 a[kFmaChains];
#pragma GCC unroll 12
    for (int j = 0; j < kFmaChains; ++j) a[j] = _mm512_set1_ps(1.0f + float(j) * 1e-3f);
    // Every lane adds 2 · 2^-5 · 2^-5 = 2^-9 per step (exact while the sums stay below 2^14).
    const __m512bh b = (__m512bh)_mm512_set1_epi16(0x3d00);  // 2^-5 in BF16
    for (int64_t i = 0; i < iters; ++i)
#pragma GCC unroll 12
        for (int j = 0; j < kFmaChains; ++j) a[j] = _mm512_dpbf16_ps(a[j], b, b);
    __m512 sum = a[0];
#pragma GCC unroll 12
    for (int j = 1; j < kFmaChains; ++j) sum = _mm512_add_ps(sum, a[j]);
    return _mm512_reduce_add_ps(sum);
}

}  // namespace

const Kernels& kernels_avx512bf16() {
    static const Kernels k = [] {
        Kernels k = kernels_avx512();
        k.pack_nvfp4_gemv_x = pack_x_bf16_pairs;
        k.gemv_nvfp4 = gemv_nvfp4<true>;
        k.gemv_nvfp4_pairs = gemv_nvfp4<false>;
        k.pair_x = pair_x;
        // nvfp4_gemv_rows stays the F32 set's 28 (microbench, Zen 4, 32768x5120: this GEMV 10.2 / 30.4 /
        // 45.7 / 61.4 ms at 5 / 16 / 24 / 32 rows, the panels 30.8 / 31.0 / 55.3 / 55.6).
        k.decode_nvfp4_pairs = decode_nvfp4_pairs;
        k.gemm_panel_pairs = gemm_panel<PairStep>;
        k.pair_chains = pair_chains;
        k.attend_tile_pairs = attend_tile_pairs_avx512bf16;
        k.pack_pair_block = pack_pair_block_avx512bf16;
        // With BF16 activations (Zen 4, 32768x5120): the NVFP4 GEMV on hi halves 6.1 / 12.7 / 16.5 / 20.1 /
        // 23.2 / 32.4 ms at 4 / 8 / 12 / 16 / 20 / 24 rows, pair panels 20.7-21.0 up to 16 rows and 32.9 at 20;
        // BF16 GEMV 20.0 / 37.5 at 4 / 8, pair panels 27.2 at 5 to 12.
        k.nvfp4_pair_gemv_rows = 20;
        k.dense_pair_gemv_rows = 4;
        return k;
    }();
    return k;
}

}  // namespace fp4::cpu
