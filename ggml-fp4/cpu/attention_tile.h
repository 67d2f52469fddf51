// attention_tile.h — flash attention on the CPU: a tile of up to kAttnQueries query vectors against keys
// and values packed in blocks of kAttnKeys (keys transposed, values padded), with the softmax kept online
// in F32, so that each packed block is read once per tile instead of once per query and every product is
// a vector FMA. The packed layout is shared with attention.cpp, which packs; the kernel is written once
// with GCC vector extensions and compiled by each instruction set's kernel file (L floats per vector:
// AVX-512 16, AVX2 8, SSE2 4), with internal linkage there. With BF16 activations, AVX512-BF16 runs the
// same tile on blocks of BF16 pairs (attention_avx512bf16.cpp), sharing its online softmax.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "cpu/vec_math.h"

namespace fp4::cpu {

constexpr int kAttnKeys = 64;     // keys per packed block
constexpr int kAttnQueries = 64;  // query vectors per tile
constexpr int kAttnRowGroup = 4;  // query vectors that go through a block of keys together
constexpr int kAttnMaxLanes = 16; // floats per vector of the widest kernel set (lanes of a row's sums)

// A packed block of one head: its keys transposed, [D][kAttnKeys], then its values, [kAttnKeys][dpad];
// zeros past the block's last key and past D.
inline int64_t attn_dpad(int64_t D) { return (D + 63) / 64 * 64; }
inline int64_t attn_block_floats(int64_t D) { return D * kAttnKeys + kAttnKeys * attn_dpad(D); }

// One tile: query vector i (D floats at q[i]) attends to keys 0 .. n_keys[i]−1 (at least one) of the
// packed blocks at `blocks`, one after another, and its D outputs go to out[i].
struct AttnTile {
    int nq = 0;
    const float* q[kAttnQueries];
    float* out[kAttnQueries];
    int64_t n_keys[kAttnQueries];
    const float* blocks = nullptr;
    int D = 0;
    float scale = 1.0f;
};

// With BF16 activations, on a kernel set with BF16 dot products (Kernels::attend_tile_pairs), a block holds
// BF16 pairs in 32-bit slots (the first value in the low half): the keys, [(D + 1) / 2][kAttnKeys], slot
// (p, j) = dimensions 2p and 2p + 1 of key j; then the values, [kAttnKeys / 2][dpad], slot (jp, d) =
// dimension d of keys 2jp and 2jp + 1; zeros past the last key and past D.
inline int64_t attn_pair_block_floats(int64_t D) { return (D + 1) / 2 * kAttnKeys + kAttnKeys / 2 * attn_dpad(D); }

// Floats of scratch a tile needs (TileState): a row group's scores; per query vector its outputs, its
// softmax state and, in the pair tile, its pairs.
inline int64_t attn_tile_scratch(int64_t D) {
    return kAttnRowGroup * kAttnKeys + kAttnQueries * (attn_dpad(D) + 1 + kAttnMaxLanes + attn_dpad(D) / 2);
}

// The tile on pair blocks, for kernel sets with AVX512-BF16 (attention_avx512bf16.cpp): queries and
// probabilities rounded to BF16 as they enter vdpbf16ps, scores, softmax and sums in F32.
void attend_tile_pairs_avx512bf16(const AttnTile& t, float* scratch);
// Keys and values [k0, k0 + n) of one head (row j at k + j·ld, D floats) as a pair block at `out`, n ≤
// kAttnKeys, rounded to BF16 by vcvtne2ps2bf16.
void pack_pair_block_avx512bf16(const float* k, const float* v, int64_t ld, int64_t k0, int64_t n, int D, float* out);

namespace {

// A tile's working state, in its scratch (attn_tile_scratch) for vectors of L floats. Query vector i's
// scores of one block of keys are in units of log2 (scaled by log2 e, so that e^(s − max) is one exp2);
// its softmax state is the largest score so far, mx[i], and L partial sums of 2^(score − mx), added up at
// the end. Rows past nq, up to a whole row group, repeat the last query: computed, never used.
template <int L>
struct TileState {
    static_assert(L <= kAttnMaxLanes, "a row's sums fit the scratch");
    static_assert(kAttnRowGroup <= L, "a row group's rescale factors fit one vector");
    int rows;
    int64_t dpad;
    int64_t n_max = 0;  // the most keys a row sees
    const float* q[kAttnQueries];
    int64_t n_keys[kAttnQueries];
    float* S;      // [kAttnRowGroup][kAttnKeys]: a row group's scores, then its probabilities
    float* O;      // [kAttnQueries][dpad]: unnormalised outputs
    float* mx;     // [kAttnQueries]
    float* sums;   // [kAttnQueries][L]
    uint32_t* qp;  // [kAttnQueries][dpad / 2]: the pair tile's queries as pairs

    TileState(const AttnTile& t, float* scratch)
        : rows((t.nq + kAttnRowGroup - 1) / kAttnRowGroup * kAttnRowGroup), dpad(attn_dpad(t.D)), S(scratch),
          O(S + kAttnRowGroup * kAttnKeys), mx(O + kAttnQueries * dpad), sums(mx + kAttnQueries),
          qp(reinterpret_cast<uint32_t*>(sums + kAttnQueries * L)) {
        for (int i = 0; i < rows; ++i) {
            q[i] = t.q[std::min(i, t.nq - 1)];
            n_keys[i] = t.n_keys[std::min(i, t.nq - 1)];
            n_max = std::max(n_max, n_keys[i]);
            mx[i] = -INFINITY;
        }
        std::fill(sums, sums + rows * L, 0.0f);
        std::fill(O, O + rows * dpad, 0.0f);
    }

    // Keys of the block from k0 that some row of the group from i0 sees (none: the group skips the block).
    int64_t group_keys(int64_t k0, int i0) const {
        int64_t n = 0;
        for (int r = 0; r < kAttnRowGroup; ++r) n = std::max(n, n_keys[i0 + r] - k0);
        return std::min<int64_t>(n, kAttnKeys);
    }

    // The online softmax of the row group from i0 over the block of keys from k0, its scores in S (row r at
    // S + r·kAttnKeys): the scores become 2^(s − max), zero past the keys a row sees, its mx and sums
    // follow, and alpha[r] is the factor its unnormalised output is rescaled by. The rows' rescale
    // factors are one vector exp2; Deg is its polynomial's degree (exp2_nonpositive).
    template <int Deg>
    void softmax(int64_t k0, int i0, float* alpha) {
        float lane_index[L];  // 0, 1, .., L−1: which keys of a vector lie below a limit
        for (int l = 0; l < L; ++l) lane_index[l] = float(l);
        const Vec<L> lanes = vload<L>(lane_index);
        float shift[L] = {};  // old max − new max per row
        Vec<L> top[kAttnRowGroup];
        for (int r = 0; r < kAttnRowGroup; ++r) {
            const float* s = S + r * kAttnKeys;
            const int64_t n = std::min<int64_t>(kAttnKeys, n_keys[i0 + r] - k0);
            Vec<L> m = Vec<L>{} + mx[i0 + r];
            for (int j0 = 0; j0 < n; j0 += L) {
                const Vec<L> v = vload<L>(s + j0);
                if (n == kAttnKeys)
                    m = v > m ? v : m;
                else
                    m = (v > m) & (lanes + float(j0) < float(n)) ? v : m;
            }
            top[r] = lanes_max<L>(m);
            shift[r] = mx[i0 + r] - top[r][0];
            mx[i0 + r] = top[r][0];
        }
        vstore<L>(shift, exp2_nonpositive<L, Deg>(vload<L>(shift)));
        for (int r = 0; r < kAttnRowGroup; ++r) {
            float* s = S + r * kAttnKeys;
            const int64_t n = std::min<int64_t>(kAttnKeys, n_keys[i0 + r] - k0);
            alpha[r] = shift[r];
            Vec<L> total = vload<L>(sums + (i0 + r) * L) * alpha[r];
            for (int j0 = 0; j0 < kAttnKeys; j0 += L) {
                Vec<L> p = exp2_nonpositive<L, Deg>(vload<L>(s + j0) - top[r]);
                if (n < kAttnKeys) p = lanes + float(j0) < float(n) ? p : Vec<L>{};
                vstore<L>(s + j0, p);
                total += p;
            }
            vstore<L>(sums + (i0 + r) * L, total);
        }
    }

    // Writes out = O / (the row's sum) for the tile's nq query vectors.
    void finish(const AttnTile& t) const {
        for (int i = 0; i < t.nq; ++i) {
            float sum = 0.0f;
            for (int l = 0; l < L; ++l) sum += sums[i * L + l];
            const float inv = 1.0f / sum;
            for (int d = 0; d < t.D; ++d) t.out[i][d] = O[i * dpad + d] * inv;
        }
    }
};

template <int L>
void attend_tile(const AttnTile& t, float* scratch) {
    constexpr int R = kAttnRowGroup, C = L == 16 ? 4 : 2;  // register tile: R query vectors × C vectors
    TileState<L> st(t, scratch);
    const int D = t.D;
    const int64_t dpad = st.dpad, block = attn_block_floats(D);
    const float scale = t.scale * kLog2e;
    float *S = st.S, *O = st.O;
    for (int64_t k0 = 0; k0 < st.n_max; k0 += kAttnKeys) {
        const float* kt = t.blocks + k0 / kAttnKeys * block;
        const float* vt = kt + int64_t(D) * kAttnKeys;
        for (int i0 = 0; i0 < st.rows; i0 += R) {
            const int64_t bk = st.group_keys(k0, i0);
            if (bk <= 0) continue;
            for (int j0 = 0; j0 < kAttnKeys; j0 += C * L) {  // S = scale · log2 e · q·Kᵀ
                Vec<L> acc[R][C] = {};
                for (int d = 0; d < D; ++d) {
                    Vec<L> k[C];
                    for (int c = 0; c < C; ++c) k[c] = vload<L>(kt + d * kAttnKeys + j0 + c * L);
                    for (int r = 0; r < R; ++r) {
                        const float qd = st.q[i0 + r][d];
                        for (int c = 0; c < C; ++c) acc[r][c] += qd * k[c];
                    }
                }
                for (int r = 0; r < R; ++r)
                    for (int c = 0; c < C; ++c) vstore<L>(S + r * kAttnKeys + j0 + c * L, acc[r][c] * scale);
            }
            float alpha[R];
            st.template softmax<6>(k0, i0, alpha);
            for (int64_t d0 = 0; d0 < dpad; d0 += C * L) {  // O = alpha·O + P·V
                Vec<L> acc[R][C];
                for (int r = 0; r < R; ++r)
                    for (int c = 0; c < C; ++c) acc[r][c] = vload<L>(O + (i0 + r) * dpad + d0 + c * L) * alpha[r];
                for (int j = 0; j < bk; ++j) {
                    Vec<L> v[C];
                    for (int c = 0; c < C; ++c) v[c] = vload<L>(vt + j * dpad + d0 + c * L);
                    for (int r = 0; r < R; ++r) {
                        const float p = S[r * kAttnKeys + j];
                        for (int c = 0; c < C; ++c) acc[r][c] += p * v[c];
                    }
                }
                for (int r = 0; r < R; ++r)
                    for (int c = 0; c < C; ++c) vstore<L>(O + (i0 + r) * dpad + d0 + c * L, acc[r][c]);
            }
        }
    }
    st.finish(t);
}

}  // namespace
}  // namespace fp4::cpu
