// matmul_avx512.cpp — AVX-512 matmul kernels (built with -mavx512f/bw/vl/dq/vbmi). NVFP4 codes are
// decoded in registers: each 32-bit word holds 8 nibbles, and vpermps with a 16-entry F32 table of the
// E2M1 values turns nibble j of 16 words into 16 floats at once; x is pre-ordered to match
// (pack_x_nibble_order). BF16/F16 weights are widened to F32 in registers; all products and sums are F32.

// GCC 12 reports its own intrinsics' _mm*_undefined_*() placeholders as uninitialized (GCC bug 105593).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <algorithm>

#include "cpu/attention_tile.h"
#include "cpu/matmul.h"
#include "cpu/nvfp4_avx512.h"
#include "cpu/panel_avx512.h"

namespace fp4::cpu {
namespace {

alignas(64) constexpr float kE2M1[16] = {0.0f,  0.5f,  1.0f,  1.5f,  2.0f,  3.0f,  4.0f,  6.0f,
                                         -0.0f, -0.5f, -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f};

// ---- NVFP4 ----------------------------------------------------------------------------------------

// Nibble j of every word, as E2M1 values.
template <int J>
inline __m512 nibbles(__m512i codes, __m512 lut) {
    return _mm512_permutexvar_ps(_mm512_srli_epi32(codes, 4 * J), lut);
}

// Rows n .. n+NR-1 against MR x rows: per 128-column block t = Σ_j nibbles_j ⊙ x vector j, then
// acc += t ⊙ the block's scales; each x vector loaded serves the NR rows.
template <int MR, int NR>
void gemv_nvfp4_rows_at(const WeightRef& w, int64_t n, const float* x, int64_t ldx, float* y, int64_t ldy) {
    const __m512 lut = _mm512_load_ps(kE2M1);
    gemv_nvfp4_tile<MR, NR>(w, n, y, ldy, [&](const __m512i* c, int64_t k, __m512 (*t)[MR]) {
#pragma GCC unroll 8
        for (int j = 0; j < 8; ++j) {
            __m512 xv[MR];
            for (int m = 0; m < MR; ++m) xv[m] = _mm512_loadu_ps(x + m * ldx + k + 16 * j);
            for (int r = 0; r < NR; ++r) {
                const __m512 wv = _mm512_permutexvar_ps(_mm512_srli_epi32(c[r], 4 * j), lut);
                for (int m = 0; m < MR; ++m)
                    t[r][m] = j == 0 ? _mm512_mul_ps(wv, xv[m]) : _mm512_fmadd_ps(wv, xv[m], t[r][m]);
            }
        }
    });
}

template <int MR, int NR>
constexpr auto gemv_nvfp4_rows = gemv_row_groups<NR, gemv_nvfp4_rows_at<MR, NR>, gemv_nvfp4_rows_at<MR, 1>>;

template <int J = 0>
inline void store_block(__m512i codes, __m512 scale, __m512 lut, float* out) {
    _mm512_storeu_ps(out + 16 * J, _mm512_mul_ps(nibbles<J>(codes, lut), scale));
    if constexpr (J < 7) store_block<J + 1>(codes, scale, lut, out);
}

void decode_nvfp4(const WeightRef& w, int64_t n0, int nr, int64_t k0, int64_t kb, float* panel, int64_t ldp) {
    const __m512 lut = _mm512_load_ps(kE2M1);
    for (int r = 0; r < nr; ++r)  // kpad rounds K up to 128: no block lies wholly past K
        for_each_block<1>(w, n0 + r, k0, k0 + kb, [&](const __m512i* codes, const __m512* scale, int64_t k) {
            store_block(codes[0], scale[0], lut, panel + r * ldp + (k - k0));
        });
}

// ---- dense weights: 16 columns widened to F32, masked past K --------------------------------------

struct F32 {
    static constexpr int kBytes = 4;
    static __m512 load(const uint8_t* p, __mmask16 m) { return _mm512_maskz_loadu_ps(m, p); }
};
struct F16 {
    static constexpr int kBytes = 2;
    static __m512 load(const uint8_t* p, __mmask16 m) { return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p)); }
};
struct BF16 {
    static constexpr int kBytes = 2;
    static __m512 load(const uint8_t* p, __mmask16 m) {
        const __m512i h = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p));
        return _mm512_castsi512_ps(_mm512_slli_epi32(h, 16));
    }
};

template <class T, int MR>
void gemv_dense_rows(const WeightRef& w, int64_t n0, int64_t n1, const float* x, int64_t ldx, float* y,
                     int64_t ldy) {
    for (int64_t n = n0; n < n1; ++n) {
        const uint8_t* row = w.data + n * w.K * T::kBytes;
        __m512 acc[MR][2];
        for (int m = 0; m < MR; ++m) acc[m][0] = acc[m][1] = _mm512_setzero_ps();
        int64_t k = 0;
        for (; k + 32 <= w.K; k += 32) {
            _mm_prefetch((const char*)row + k * T::kBytes + kPrefetchBytes, _MM_HINT_T0);
            if constexpr (T::kBytes == 4) _mm_prefetch((const char*)row + k * 4 + 64 + kPrefetchBytes, _MM_HINT_T0);
            for (int h = 0; h < 2; ++h) {
                const __m512 wv = T::load(row + (k + 16 * h) * T::kBytes, 0xffff);
                for (int m = 0; m < MR; ++m)
                    acc[m][h] = _mm512_fmadd_ps(wv, _mm512_loadu_ps(x + m * ldx + k + 16 * h), acc[m][h]);
            }
        }
        for (; k < w.K; k += 16) {
            const __m512 wv = T::load(row + k * T::kBytes, first_lanes(w.K - k));
            for (int m = 0; m < MR; ++m) acc[m][0] = _mm512_fmadd_ps(wv, _mm512_loadu_ps(x + m * ldx + k), acc[m][0]);
        }
        for (int m = 0; m < MR; ++m) y[m * ldy + n] = _mm512_reduce_add_ps(_mm512_add_ps(acc[m][0], acc[m][1]));
    }
}

template <class T>
void decode_dense(const WeightRef& w, int64_t n0, int nr, int64_t k0, int64_t kb, float* panel, int64_t ldp) {
    for (int r = 0; r < nr; ++r) {
        const uint8_t* row = w.data + (n0 + r) * w.K * T::kBytes;
        for (int64_t j = 0; j < kb; j += 16) {
            const int64_t k = k0 + j;
            const __m512 v = k < w.K ? T::load(row + k * T::kBytes, first_lanes(w.K - k)) : _mm512_setzero_ps();
            _mm512_storeu_ps(panel + r * ldp + j, v);
        }
    }
}

// ---- shared -----------------------------------------------------------------------------------------

template <class T>
constexpr GemvFn gemv_dense = gemv_by_rows<gemv_dense_rows<T, 1>, gemv_dense_rows<T, 2>, gemv_dense_rows<T, 3>,
                                           gemv_dense_rows<T, 4>>;
constexpr GemvFn gemv_nvfp4 =
    gemv_by_rows<gemv_nvfp4_rows<1, 4>, gemv_nvfp4_rows<2, 4>, gemv_nvfp4_rows<3, 2>, gemv_nvfp4_rows<4, 2>>;

float dot(const float* a, const float* b, int64_t n) {
    __m512 acc = _mm512_setzero_ps();
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 m = first_lanes(n - i);
        acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), acc);
    }
    return _mm512_reduce_add_ps(acc);
}

void axpy(float alpha, const float* x, float* y, int64_t n) {
    const __m512 a = _mm512_set1_ps(alpha);
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 m = first_lanes(n - i);
        _mm512_mask_storeu_ps(y + i, m,
                              _mm512_fmadd_ps(a, _mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, y + i)));
    }
}

float fma_chains(int64_t iters) {
    __m512 a[kFmaChains];
#pragma GCC unroll 12
    for (int j = 0; j < kFmaChains; ++j) a[j] = _mm512_set1_ps(1.0f + float(j) * 1e-3f);
    const __m512 b = _mm512_set1_ps(0.999f), c = _mm512_set1_ps(1e-3f);
    for (int64_t i = 0; i < iters; ++i)
#pragma GCC unroll 12
        for (int j = 0; j < kFmaChains; ++j) a[j] = _mm512_fmadd_ps(a[j], b, c);
    __m512 sum = a[0];
#pragma GCC unroll 12
    for (int j = 1; j < kFmaChains; ++j) sum = _mm512_add_ps(sum, a[j]);
    return _mm512_reduce_add_ps(sum);
}

// ---- Panel sums into y ---------------------------------------------------------------------------

// Kernels::store_sums: for 16 weight rows, each block of 16 x rows is 16 vectors (one per weight row)
// transposed in registers — pairs of floats, of doubles, then 128-bit lanes twice — so that an x row's 16
// outputs leave in one store.
void store_sums(const float* sums, int64_t lds, int nc, int64_t rows, float f, float* out, int64_t ldo) {
    int64_t m = 0;
    const __m512 scale = _mm512_set1_ps(f);
    for (; nc == 16 && m + 16 <= rows; m += 16) {
        __m512 a[16], b[16];
        for (int i = 0; i < 16; ++i) a[i] = _mm512_loadu_ps(sums + i * lds + m);
        for (int i = 0; i < 16; i += 2) {  // b[i], b[i+1]: rows i, i+1 interleaved within each 128-bit lane
            b[i] = _mm512_unpacklo_ps(a[i], a[i + 1]);
            b[i + 1] = _mm512_unpackhi_ps(a[i], a[i + 1]);
        }
        for (int g = 0; g < 16; g += 4)  // a[g + e], lane k: element 4k + e of rows g .. g+3
            for (int h = 0; h < 2; ++h) {
                const __m512d lo = _mm512_castps_pd(b[g + h]), hi = _mm512_castps_pd(b[g + 2 + h]);
                a[g + 2 * h] = _mm512_castpd_ps(_mm512_unpacklo_pd(lo, hi));
                a[g + 2 * h + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(lo, hi));
            }
        for (int e = 0; e < 4; ++e) {  // lane k of the four groups' vectors e gathered: element 4k + e of all rows
            const __m512 p0 = _mm512_shuffle_f32x4(a[e], a[4 + e], 0x44);
            const __m512 p1 = _mm512_shuffle_f32x4(a[e], a[4 + e], 0xee);
            const __m512 p2 = _mm512_shuffle_f32x4(a[8 + e], a[12 + e], 0x44);
            const __m512 p3 = _mm512_shuffle_f32x4(a[8 + e], a[12 + e], 0xee);
            const __m512 col[4] = {_mm512_shuffle_f32x4(p0, p2, 0x88), _mm512_shuffle_f32x4(p0, p2, 0xdd),
                                   _mm512_shuffle_f32x4(p1, p3, 0x88), _mm512_shuffle_f32x4(p1, p3, 0xdd)};
            for (int k = 0; k < 4; ++k) _mm512_storeu_ps(out + (m + 4 * k + e) * ldo, _mm512_mul_ps(col[k], scale));
        }
    }
    if (m < rows) store_sums_scalar(sums + m, lds, nc, rows - m, f, out + m * ldo, ldo);
}

}  // namespace

const Kernels& kernels_avx512() {
    static const Kernels k{128, pack_x_nibble_order, pack_x_nibble_order,
                           gemv_dense<F32>, gemv_dense<F16>, gemv_dense<BF16>, gemv_nvfp4,
                           decode_dense<F32>, decode_dense<F16>, decode_dense<BF16>, decode_nvfp4,
                           gemm_panel<F32Step>, 16, dot, axpy, attend_tile<16>, swiglu<16>, fma_chains,
                           // GEMV up to: Zen 4, 32768x5120, 4-row passes 7.0 ms (NVFP4) and 19.3 ms (BF16)
                           // against panels of 16 / 32 rows at 31 / 55 and 43 / 69 ms
                           28, 8, store_sums};
    return k;
}

}  // namespace fp4::cpu
