// attention_avx512bf16.cpp — the flash-attention tile of attention_tile.h on BF16 pairs (built with
// AVX512-BF16): with BF16 activations, q·Kᵀ and P·V are vdpbf16ps outer products, each broadcast pair of
// a query (or of a row's probabilities) meeting 16 keys' (or 16 dimensions') pairs, twice the multiply-adds
// of an F32 FMA. Queries and probabilities are rounded to BF16 in the tile, keys and values as they are
// packed (pack_pair_block_avx512bf16, called by attention.cpp); the scores, the online softmax and the
// sums stay F32, as in a GPU's flash attention.

// GCC 12 reports its own intrinsics' _mm*_undefined_*() placeholders as uninitialized (GCC bug 105593).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <algorithm>

#include "cpu/attention_tile.h"
#include "cpu/bf16_pairs_avx512.h"

namespace fp4::cpu {

namespace {

inline __m512bh broadcast_pair(const uint32_t* p) { return (__m512bh)_mm512_set1_epi32(int(*p)); }

}  // namespace

void pack_pair_block_avx512bf16(const float* k, const float* v, int64_t ld, int64_t k0, int64_t n, int D, float* out) {
    const int64_t dpad = attn_dpad(D), dp = (D + 1) / 2;
    auto* kt = reinterpret_cast<uint32_t*>(out);
    uint32_t* vt = kt + dp * kAttnKeys;
    std::fill(out, out + attn_pair_block_floats(D), 0.0f);
    alignas(64) uint32_t slots[16];
    for (int64_t j = 0; j < n; ++j)  // key j's dimensions as pairs, 16 at a time, down column j
        for (int64_t p0 = 0; p0 < dp; p0 += 16) {
            _mm512_store_si512(slots, pairs32(k + (k0 + j) * ld + 2 * p0, D - 2 * p0));
            for (int64_t p = p0; p < std::min<int64_t>(dp, p0 + 16); ++p) kt[p * kAttnKeys + j] = slots[p - p0];
        }
    for (int64_t j = 0; j < n; j += 2) {  // keys j and j + 1 (zero past n) paired dimension by dimension
        const float* v0 = v + (k0 + j) * ld;
        for (int64_t d = 0; d < D; d += 16) {
            const __mmask16 lanes = lanes_below(D - d);
            const __m512 lo = _mm512_maskz_loadu_ps(lanes, v0 + d);
            const __m512 hi = j + 1 < n ? _mm512_maskz_loadu_ps(lanes, v0 + ld + d) : _mm512_setzero_ps();
            _mm512_storeu_si512(vt + j / 2 * dpad + d, interleave_pairs(lo, hi));
        }
    }
}

void attend_tile_pairs_avx512bf16(const AttnTile& t, float* scratch) {
    constexpr int R = kAttnRowGroup, C = 4, L = 16;  // register tile: R queries × C vectors of 16 lanes
    static_assert(kAttnKeys == C * L, "one register tile spans a block's keys (and 64 dimensions)");
    TileState<L> st(t, scratch);
    const int D = t.D;
    const int64_t dpad = st.dpad, block = attn_pair_block_floats(D), dp = (D + 1) / 2, qld = dpad / 2;
    float *S = st.S, *O = st.O;  // S: a row group's scores, probabilities, then their pairs
    uint32_t* qp = st.qp;
    for (int i = 0; i < st.rows; ++i)
        for (int64_t d = 0; d < dpad; d += 32) _mm512_storeu_si512(qp + i * qld + d / 2, pairs32(st.q[i] + d, D - d));
    const __m512 scale = _mm512_set1_ps(t.scale * kLog2e);
    for (int64_t k0 = 0; k0 < st.n_max; k0 += kAttnKeys) {
        const auto* kt = reinterpret_cast<const uint32_t*>(t.blocks + k0 / kAttnKeys * block);
        const uint32_t* vt = kt + dp * kAttnKeys;
        for (int i0 = 0; i0 < st.rows; i0 += R) {
            const int64_t bk = st.group_keys(k0, i0);
            if (bk <= 0) continue;
            __m512 acc[R][C];  // S = scale · log2 e · q·Kᵀ
            for (int r = 0; r < R; ++r)
                for (int c = 0; c < C; ++c) acc[r][c] = _mm512_setzero_ps();
            for (int64_t p = 0; p < dp; ++p) {
                __m512bh k[C];
                for (int c = 0; c < C; ++c) k[c] = (__m512bh)_mm512_loadu_si512(kt + p * kAttnKeys + c * L);
                for (int r = 0; r < R; ++r) {
                    const __m512bh qr = broadcast_pair(qp + (i0 + r) * qld + p);
                    for (int c = 0; c < C; ++c) acc[r][c] = _mm512_dpbf16_ps(acc[r][c], qr, k[c]);
                }
            }
            for (int r = 0; r < R; ++r)
                for (int c = 0; c < C; ++c)
                    _mm512_storeu_ps(S + r * kAttnKeys + c * L, _mm512_mul_ps(acc[r][c], scale));
            float alpha[R];
            st.template softmax<4>(k0, i0, alpha);
            // Each row's 64 probabilities become 32 pairs in place (slot j reads floats 2j and 2j + 1, j ≤ 2j).
            for (int r = 0; r < R; ++r)
                for (int j0 = 0; j0 < kAttnKeys; j0 += 32)
                    _mm512_storeu_si512(S + r * kAttnKeys + j0 / 2, pairs32(S + r * kAttnKeys + j0, 32));
            const auto* P = reinterpret_cast<const uint32_t*>(S);
            for (int64_t d0 = 0; d0 < dpad; d0 += C * L) {  // O = alpha·O + P·V
                for (int r = 0; r < R; ++r)
                    for (int c = 0; c < C; ++c)
                        acc[r][c] = _mm512_mul_ps(_mm512_loadu_ps(O + (i0 + r) * dpad + d0 + c * L),
                                                  _mm512_set1_ps(alpha[r]));
                for (int jp = 0; jp < (bk + 1) / 2; ++jp) {
                    __m512bh v[C];
                    for (int c = 0; c < C; ++c) v[c] = (__m512bh)_mm512_loadu_si512(vt + jp * dpad + d0 + c * L);
                    for (int r = 0; r < R; ++r) {
                        const __m512bh pr = broadcast_pair(P + r * kAttnKeys + jp);
                        for (int c = 0; c < C; ++c) acc[r][c] = _mm512_dpbf16_ps(acc[r][c], pr, v[c]);
                    }
                }
                for (int r = 0; r < R; ++r)
                    for (int c = 0; c < C; ++c) _mm512_storeu_ps(O + (i0 + r) * dpad + d0 + c * L, acc[r][c]);
            }
        }
    }
    st.finish(t);
}

}  // namespace fp4::cpu
