// attention_avx512bf16.cpp — the flash-attention tile of attention_tile.h on BF16 pairs (built with
// AVX512-BF16): with BF16 activations, q·Kᵀ and P·V are vdpbf16ps outer products, each broadcast pair of
// a query (or of a row's probabilities) meeting 16 keys' (or 16 dimensions') pairs, twice the multiply-adds
// of an F32 FMA. Queries and probabilities are rounded to BF16 here, keys and values when packed
// (attention.cpp); the scores, the online softmax and the sums stay F32, as in a GPU's flash attention.

// GCC 12 reports its own intrinsics' _mm*_undefined_*() placeholders as uninitialized (GCC bug 105593).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include "cpu/attention_tile.h"

namespace fp4::cpu {

namespace {

inline __mmask16 lanes_below(int64_t n) { return n >= 16 ? __mmask16(0xffff) : n > 0 ? __mmask16((1u << n) - 1) : 0; }

// 32 floats from p (zero past n) as 16 pairs: slot i = (p[2i], p[2i + 1]).
inline __m512i pairs32(const float* p, int64_t n) {
    const __m512 lo = _mm512_maskz_loadu_ps(lanes_below(n), p);
    const __m512 hi = _mm512_maskz_loadu_ps(lanes_below(n - 16), p + 16);
    return (__m512i)_mm512_cvtne2ps_pbh(hi, lo);
}

inline __m512bh broadcast_pair(const uint32_t* p) { return (__m512bh)_mm512_set1_epi32(int(*p)); }

}  // namespace

void attend_tile_pairs_avx512bf16(const AttnTile& t, float* scratch) {
    constexpr int R = 4, C = 4, L = 16;  // register tile: R queries × C vectors of 16 lanes (64 keys or dims)
    static_assert(kAttnKeys == C * L, "one register tile spans a block's keys");
    const int D = t.D, nq = t.nq, rows = (nq + R - 1) / R * R;
    const int64_t dpad = attn_dpad(D), block = attn_pair_block_floats(D), dp = (D + 1) / 2, qld = dpad / 2;
    float* S = scratch;                       // [kAttnQueries][kAttnKeys]: scores, probabilities, their pairs
    float* O = S + kAttnQueries * kAttnKeys;  // [kAttnQueries][dpad]: unnormalised outputs
    float* mx = O + kAttnQueries * dpad;      // per query: the largest score so far
    float* sum = mx + kAttnQueries;           // and the sum of e^(score − mx)
    auto* qp = reinterpret_cast<uint32_t*>(sum + kAttnQueries);  // [kAttnQueries][dpad / 2]: queries as pairs
    int64_t n_max = 0;
    for (int i = 0; i < rows; ++i) {  // rows past nq: the last query again, computed, never used
        const float* q = t.q[std::min(i, nq - 1)];
        for (int64_t d = 0; d < dpad; d += 32) _mm512_storeu_si512(qp + i * qld + d / 2, pairs32(q + d, D - d));
    }
    for (int i = 0; i < nq; ++i) n_max = std::max(n_max, t.n_keys[i]), mx[i] = -INFINITY, sum[i] = 0.0f;
    std::fill(O, O + rows * dpad, 0.0f);
    const __m512 scale = _mm512_set1_ps(t.scale);
    for (int64_t k0 = 0; k0 < n_max; k0 += kAttnKeys) {
        const auto* kt = reinterpret_cast<const uint32_t*>(t.blocks + k0 / kAttnKeys * block);
        const uint32_t* vt = kt + dp * kAttnKeys;
        const int bk = int(std::min<int64_t>(kAttnKeys, n_max - k0));
        for (int i0 = 0; i0 < rows; i0 += R) {  // S = scale · q·Kᵀ
            __m512 acc[R][C];
            for (int r = 0; r < R; ++r)
                for (int c = 0; c < C; ++c) acc[r][c] = _mm512_setzero_ps();
            for (int64_t p = 0; p < dp; ++p) {
                __m512bh k[C];
                for (int c = 0; c < C; ++c) k[c] = (__m512bh)_mm512_loadu_si512(kt + p * kAttnKeys + c * L);
                for (int r = 0; r < R; ++r) {
                    const __m512bh q = broadcast_pair(qp + (i0 + r) * qld + p);
                    for (int c = 0; c < C; ++c) acc[r][c] = _mm512_dpbf16_ps(acc[r][c], q, k[c]);
                }
            }
            for (int r = 0; r < R; ++r)
                for (int c = 0; c < C; ++c)
                    _mm512_storeu_ps(S + (i0 + r) * kAttnKeys + c * L, _mm512_mul_ps(acc[r][c], scale));
        }
        online_softmax<L>(t, k0, bk, rows, S, O, mx, sum);
        // Each row's 64 probabilities become 32 pairs in place (slot j reads floats 2j and 2j + 1, j ≤ 2j).
        for (int i = 0; i < rows; ++i)
            for (int j0 = 0; j0 < kAttnKeys; j0 += 32)
                _mm512_storeu_si512(S + i * kAttnKeys + j0 / 2, pairs32(S + i * kAttnKeys + j0, 32));
        const auto* P = reinterpret_cast<const uint32_t*>(S);
        for (int i0 = 0; i0 < rows; i0 += R)  // O += P·V
            for (int64_t d0 = 0; d0 < dpad; d0 += C * L) {
                __m512 acc[R][C];
                for (int r = 0; r < R; ++r)
                    for (int c = 0; c < C; ++c) acc[r][c] = _mm512_loadu_ps(O + (i0 + r) * dpad + d0 + c * L);
                for (int jp = 0; jp < (bk + 1) / 2; ++jp) {
                    __m512bh v[C];
                    for (int c = 0; c < C; ++c) v[c] = (__m512bh)_mm512_loadu_si512(vt + jp * dpad + d0 + c * L);
                    for (int r = 0; r < R; ++r) {
                        const __m512bh pr = broadcast_pair(P + (i0 + r) * kAttnKeys + jp);
                        for (int c = 0; c < C; ++c) acc[r][c] = _mm512_dpbf16_ps(acc[r][c], pr, v[c]);
                    }
                }
                for (int r = 0; r < R; ++r)
                    for (int c = 0; c < C; ++c) _mm512_storeu_ps(O + (i0 + r) * dpad + d0 + c * L, acc[r][c]);
            }
    }
    for (int i = 0; i < nq; ++i) {
        const float inv = 1.0f / sum[i];
        for (int d = 0; d < D; ++d) t.out[i][d] = O[i * dpad + d] * inv;
    }
}

}  // namespace fp4::cpu
