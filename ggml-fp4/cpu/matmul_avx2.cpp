// matmul_avx2.cpp — AVX2/FMA/F16C matmul kernels. NVFP4 codes are decoded in registers: each 32-bit
// word holds 8 nibbles and x is pre-ordered (pack_x_nibble_order) so that vector j of a block meets
// nibble j of every word; a 128-column block is two halves of 8 words. vpermps indexes only 8 entries,
// so it looks up the E2M1 magnitude from a nibble's low 3 bits, and its sign (bit 3) is moved to bit 31
// and XOR-ed in. Row tails are copied into small zero-padded buffers. All products and sums are F32.

// GCC 12 reports its own intrinsics' _mm*_undefined_*() placeholders as uninitialized (GCC bug 105593).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "cpu/attention_tile.h"
#include "cpu/matmul.h"

namespace fp4::cpu {
namespace {

alignas(32) constexpr float kE2M1Magnitude[8] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f};

inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

// ---- NVFP4 ----------------------------------------------------------------------------------------

// 4 E4M3 scale bytes -> 8 floats, lane d (columns 8d .. 8d+7) holding group d/2. The byte's exponent
// and mantissa placed at the F32 exponent and mantissa positions give value·2^-120, subnormals included.
inline __m256 e4m3_pairs(uint32_t bytes) {
    const __m128i b4 = _mm_cvtsi32_si128(int(bytes));
    const __m256i b = _mm256_cvtepu8_epi32(_mm_unpacklo_epi8(b4, b4));
    const __m256i mag = _mm256_slli_epi32(_mm256_and_si256(b, _mm256_set1_epi32(0x7f)), 20);
    const __m256i sign = _mm256_slli_epi32(_mm256_and_si256(b, _mm256_set1_epi32(0x80)), 24);
    return _mm256_mul_ps(_mm256_castsi256_ps(_mm256_or_si256(mag, sign)), _mm256_set1_ps(0x1p120f));
}

// Two halves of 8 code words each and their scales (see e4m3_pairs) of one 128-column block.
inline void load_block(const uint8_t* codes, const uint8_t* scales, __m256i* c, __m256* s) {
    uint32_t sc[2];
    std::memcpy(sc, scales, 8);
    for (int h = 0; h < 2; ++h) {
        c[h] = _mm256_loadu_si256((const __m256i*)(codes + 32 * h));
        s[h] = e4m3_pairs(sc[h]);
    }
}

// Calls body(codes[2], scale[2], k) for each 128-column block of row n in columns [k0, k1) (k0 a
// multiple of 128); the last block is copied into a zero-padded buffer when it ends before 128.
template <class Body>
inline void for_each_block(const WeightRef& w, int64_t n, int64_t k0, int64_t k1, Body body) {
    const uint8_t* codes = w.data + n * (w.K / 2) + k0 / 2;
    const uint8_t* scales = w.scale + n * (w.K / 16) + k0 / 16;
    const int64_t end = std::min(k1, w.K);
    __m256i c[2];
    __m256 s[2];
    int64_t k = k0;
    for (; k + 128 <= end; k += 128, codes += 64, scales += 8) {
        _mm_prefetch((const char*)codes + kPrefetchBytes, _MM_HINT_T0);
        _mm_prefetch((const char*)scales + kPrefetchBytes / 8, _MM_HINT_T0);
        load_block(codes, scales, c, s);
        body(c, s, k);
    }
    if (k < end) {
        const int64_t left = end - k;  // a multiple of 16
        alignas(32) uint8_t tail_codes[64] = {};
        uint8_t tail_scales[8] = {};
        std::memcpy(tail_codes, codes, size_t(left / 2));
        std::memcpy(tail_scales, scales, size_t(left / 16));
        load_block(tail_codes, tail_scales, c, s);
        body(c, s, k);
    }
}

// Nibble j of every word, as signed E2M1 values.
template <int J>
inline __m256 nibbles(__m256i codes, __m256 lut) {
    const __m256 mag = _mm256_permutevar8x32_ps(lut, _mm256_srli_epi32(codes, 4 * J));
    const __m256i sign = _mm256_and_si256(_mm256_slli_epi32(codes, 28 - 4 * J), _mm256_set1_epi32(int(0x80000000u)));
    return _mm256_xor_ps(mag, _mm256_castsi256_ps(sign));
}

// t[m] = Σ_j nibbles_j ⊙ x[m] over one half block (x points at the block, plus 8 for the upper half).
template <int MR, int J = 0>
inline void dot_half(__m256i codes, __m256 lut, const float* x, int64_t ldx, __m256* t) {
    const __m256 w = nibbles<J>(codes, lut);
    for (int m = 0; m < MR; ++m) {
        const __m256 xv = _mm256_loadu_ps(x + m * ldx + 16 * J);
        t[m] = J == 0 ? _mm256_mul_ps(w, xv) : _mm256_fmadd_ps(w, xv, t[m]);
    }
    if constexpr (J < 7) dot_half<MR, J + 1>(codes, lut, x, ldx, t);
}

template <int MR>
void gemv_nvfp4_rows(const WeightRef& w, int64_t n0, int64_t n1, const float* x, int64_t ldx, float* y,
                     int64_t ldy) {
    const __m256 lut = _mm256_load_ps(kE2M1Magnitude);
    for (int64_t n = n0; n < n1; ++n) {
        __m256 acc[MR];
        for (int m = 0; m < MR; ++m) acc[m] = _mm256_setzero_ps();
        for_each_block(w, n, 0, w.K, [&](const __m256i* codes, const __m256* scale, int64_t k) {
            for (int h = 0; h < 2; ++h) {
                __m256 t[MR];
                dot_half<MR>(codes[h], lut, x + k + 8 * h, ldx, t);
                for (int m = 0; m < MR; ++m) acc[m] = _mm256_fmadd_ps(t[m], scale[h], acc[m]);
            }
        });
        for (int m = 0; m < MR; ++m) y[m * ldy + n] = hsum(acc[m]);
    }
}

template <int J = 0>
inline void store_half(__m256i codes, __m256 scale, __m256 lut, float* out) {
    _mm256_storeu_ps(out + 16 * J, _mm256_mul_ps(nibbles<J>(codes, lut), scale));
    if constexpr (J < 7) store_half<J + 1>(codes, scale, lut, out);
}

void decode_nvfp4(const WeightRef& w, int64_t n0, int nr, int64_t k0, int64_t kb, float* panel, int64_t ldp) {
    const __m256 lut = _mm256_load_ps(kE2M1Magnitude);
    for (int r = 0; r < nr; ++r)  // kpad rounds K up to 128: no block lies wholly past K
        for_each_block(w, n0 + r, k0, k0 + kb, [&](const __m256i* codes, const __m256* scale, int64_t k) {
            for (int h = 0; h < 2; ++h) store_half(codes[h], scale[h], lut, panel + r * ldp + (k - k0) + 8 * h);
        });
}

// ---- dense weights: 8 columns widened to F32 ------------------------------------------------------

struct F32 {
    static constexpr int kBytes = 4;
    static __m256 load(const uint8_t* p) { return _mm256_loadu_ps(reinterpret_cast<const float*>(p)); }
};
struct F16 {
    static constexpr int kBytes = 2;
    static __m256 load(const uint8_t* p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)p)); }
};
struct BF16 {
    static constexpr int kBytes = 2;
    static __m256 load(const uint8_t* p) {
        const __m256i h = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i*)p));
        return _mm256_castsi256_ps(_mm256_slli_epi32(h, 16));
    }
};

// Columns [k, k+8) of a row, zero past K.
template <class T>
inline __m256 load_cols(const uint8_t* row, int64_t k, int64_t K) {
    if (k + 8 <= K) return T::load(row + k * T::kBytes);
    alignas(32) uint8_t tail[8 * T::kBytes] = {};
    if (k < K) std::memcpy(tail, row + k * T::kBytes, size_t((K - k) * T::kBytes));
    return T::load(tail);
}

template <class T, int MR>
void gemv_dense_rows(const WeightRef& w, int64_t n0, int64_t n1, const float* x, int64_t ldx, float* y,
                     int64_t ldy) {
    for (int64_t n = n0; n < n1; ++n) {
        const uint8_t* row = w.data + n * w.K * T::kBytes;
        __m256 acc[MR][2];
        for (int m = 0; m < MR; ++m) acc[m][0] = acc[m][1] = _mm256_setzero_ps();
        for (int64_t k = 0; k < w.K; k += 16) {
            _mm_prefetch((const char*)row + k * T::kBytes + kPrefetchBytes, _MM_HINT_T0);
            for (int h = 0; h < 2; ++h) {
                const __m256 wv = load_cols<T>(row, k + 8 * h, w.K);
                for (int m = 0; m < MR; ++m)
                    acc[m][h] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x + m * ldx + k + 8 * h), acc[m][h]);
            }
        }
        for (int m = 0; m < MR; ++m) y[m * ldy + n] = hsum(_mm256_add_ps(acc[m][0], acc[m][1]));
    }
}

template <class T>
void decode_dense(const WeightRef& w, int64_t n0, int nr, int64_t k0, int64_t kb, float* panel, int64_t ldp) {
    for (int r = 0; r < nr; ++r) {
        const uint8_t* row = w.data + (n0 + r) * w.K * T::kBytes;
        for (int64_t j = 0; j < kb; j += 8) _mm256_storeu_ps(panel + r * ldp + j, load_cols<T>(row, k0 + j, w.K));
    }
}

// ---- shared -----------------------------------------------------------------------------------------

template <class T>
constexpr GemvFn gemv_dense = gemv_by_rows<gemv_dense_rows<T, 1>, gemv_dense_rows<T, 2>, gemv_dense_rows<T, 3>,
                                           gemv_dense_rows<T, 4>>;
constexpr GemvFn gemv_nvfp4 =
    gemv_by_rows<gemv_nvfp4_rows<1>, gemv_nvfp4_rows<2>, gemv_nvfp4_rows<3>, gemv_nvfp4_rows<4>>;

// NR panel rows × MV groups of 8 x rows, outer products: each panel value is broadcast and multiplies MV
// vectors of x rows (at 4 × 2: 8 sums in registers; 2 vector loads and 4 broadcasts per 8 FMAs).
template <int NR, int MV>
void panel_tile(const float* panel, int64_t ldp, const float* x, int64_t ldg, int64_t kb, float* sums, int64_t lds) {
    __m256 acc[NR][MV];
#pragma GCC unroll 4
    for (int r = 0; r < NR; ++r)
#pragma GCC unroll 2
        for (int v = 0; v < MV; ++v) acc[r][v] = _mm256_loadu_ps(sums + r * lds + 8 * v);
    for (int64_t j = 0; j < kb; ++j) {
        __m256 xv[MV];
#pragma GCC unroll 2
        for (int v = 0; v < MV; ++v) xv[v] = _mm256_loadu_ps(x + v * ldg + 8 * j);
#pragma GCC unroll 4
        for (int r = 0; r < NR; ++r) {
            const __m256 w = _mm256_broadcast_ss(panel + r * ldp + j);
#pragma GCC unroll 2
            for (int v = 0; v < MV; ++v) acc[r][v] = _mm256_fmadd_ps(w, xv[v], acc[r][v]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < NR; ++r)
#pragma GCC unroll 2
        for (int v = 0; v < MV; ++v) _mm256_storeu_ps(sums + r * lds + 8 * v, acc[r][v]);
}

template <int MV>
void panel_rows(const float* panel, int64_t ldp, int nr, const float* x, int64_t ldg, int64_t kb, float* sums,
                int64_t lds) {
    int r = 0;
    for (; r + 4 <= nr; r += 4) panel_tile<4, MV>(panel + r * ldp, ldp, x, ldg, kb, sums + r * lds, lds);
    switch (nr - r) {
        case 3: return panel_tile<3, MV>(panel + r * ldp, ldp, x, ldg, kb, sums + r * lds, lds);
        case 2: return panel_tile<2, MV>(panel + r * ldp, ldp, x, ldg, kb, sums + r * lds, lds);
        case 1: return panel_tile<1, MV>(panel + r * ldp, ldp, x, ldg, kb, sums + r * lds, lds);
    }
}

void gemm_panel(const float* panel, int64_t ldp, int nr, const float* x, int64_t ldg, int64_t mpad, int64_t kb,
                float* sums, int64_t lds) {
    int64_t m = 0;
    for (; m + 16 <= mpad; m += 16) panel_rows<2>(panel, ldp, nr, x + m / 8 * ldg, ldg, kb, sums + m, lds);
    if (m < mpad) panel_rows<1>(panel, ldp, nr, x + m / 8 * ldg, ldg, kb, sums + m, lds);
}

float dot(const float* a, const float* b, int64_t n) {
    __m256 acc = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc);
    float s = hsum(acc);
    for (; i < n; ++i) s += a[i] * b[i];
    return s;
}

void axpy(float alpha, const float* x, float* y, int64_t n) {
    const __m256 a = _mm256_set1_ps(alpha);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(a, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; ++i) y[i] += alpha * x[i];
}

float fma_chains(int64_t iters) {
    __m256 a[kFmaChains];
#pragma GCC unroll 12
    for (int j = 0; j < kFmaChains; ++j) a[j] = _mm256_set1_ps(1.0f + float(j) * 1e-3f);
    const __m256 b = _mm256_set1_ps(0.999f), c = _mm256_set1_ps(1e-3f);
    for (int64_t i = 0; i < iters; ++i)
#pragma GCC unroll 12
        for (int j = 0; j < kFmaChains; ++j) a[j] = _mm256_fmadd_ps(a[j], b, c);
    __m256 sum = a[0];
#pragma GCC unroll 12
    for (int j = 1; j < kFmaChains; ++j) sum = _mm256_add_ps(sum, a[j]);
    return hsum(sum);
}

}  // namespace

const Kernels& kernels_avx2() {
    static const Kernels k{128, pack_x_nibble_order, pack_x_nibble_order,
                           gemv_dense<F32>, gemv_dense<F16>, gemv_dense<BF16>, gemv_nvfp4,
                           decode_dense<F32>, decode_dense<F16>, decode_dense<BF16>, decode_nvfp4,
                           gemm_panel, 8, dot, axpy, attend_tile<8>, swiglu<8>, fma_chains,
                           // GEMV up to: Zen 4, 32768x5120, 4-row passes 14.4 ms (NVFP4) and 18.2 ms (BF16)
                           // against panels of 8 / 16 rows at 33 / 40 and 44 / 46 ms
                           8, 8};
    return k;
}

}  // namespace fp4::cpu
