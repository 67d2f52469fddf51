// attention.cpp — ATTN_CACHED (causal, through a KV cache of F32, BF16 or FP8 E4M3 rows, several
// sequences, GQA) and ATTN_FULL (bidirectional, no cache). Many query rows (prefill, the vision tower):
// the keys and values the pass reads are packed once (attention_tile.h, widened from the cache's type;
// as BF16 pairs with BF16 activations where the kernel set multiplies them) and tiles of up to 64 query
// vectors — the heads of a GQA group over consecutive rows of one sequence — run flash attention over them.
// A few rows (decode): one (row, GQA group) pair per task, scores q·k·scale, softmax in F32 with the
// maximum subtracted, then the probability-weighted sum of the value rows, over the cache itself or, for
// BF16/FP8, its rows widened to F32 once per pass.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "cpu/attention_tile.h"
#include "cpu/ops.h"
#include "numeric.h"

namespace fp4::cpu {

namespace {

// For each of `group` queries g (head_dim floats at q + g·head_dim): out_g = softmax(scale · q_g·k_i)_i · v_i
// over i < n, with k_i = k + i·ld and v_i = v + i·ld. The queries of a GQA group go through the keys
// together, so that each key and value row comes from memory once and from L1 for the others.
void attend(const Kernels& kern, const float* q, int group, const float* k, const float* v, int64_t ld, int64_t n,
            int64_t head_dim, float scale, float* scores, float* out) {
    // Rows kAhead keys on are requested while this one is used: one row at a time leaves the loads of a
    // long cache waiting on memory latency (stride ld, beyond what the hardware prefetcher follows).
    constexpr int64_t kAhead = 8;
    auto prefetch = [&](const float* rows, int64_t i) {
        if (i + kAhead < n)
            for (int64_t d = 0; d < head_dim; d += 16) __builtin_prefetch(rows + (i + kAhead) * ld + d);
    };
    for (int64_t i = 0; i < n; ++i) {
        prefetch(k, i);
        for (int g = 0; g < group; ++g) scores[g * n + i] = kern.dot(q + g * head_dim, k + i * ld, head_dim) * scale;
    }
    for (int g = 0; g < group; ++g) {
        float* s = scores + g * n;
        const float mx = *std::max_element(s, s + n);
        float sum = 0.0f;
        for (int64_t i = 0; i < n; ++i) sum += s[i] = std::exp(s[i] - mx);
        for (int64_t i = 0; i < n; ++i) s[i] /= sum;
    }
    std::fill(out, out + group * head_dim, 0.0f);
    for (int64_t i = 0; i < n; ++i) {
        prefetch(v, i);
        for (int g = 0; g < group; ++g) kern.axpy(scores[g * n + i], v + i * ld, out + g * head_dim, head_dim);
    }
}

// Widens n cache elements to F32; dst has room for n rounded up to 16 (the SIMD BF16 decoder's step).
void load_rows(const Kernels& kern, Type t, const void* src, int64_t n, float* dst) {
    if (t == Type::BF16) {
        const WeightRef w{Type::BF16, static_cast<const uint8_t*>(src), nullptr, 1, n};
        return kern.decode_bf16(w, 0, 1, 0, (n + 15) / 16 * 16, dst, 0);
    }
    static const std::array<float, 256> e4m3 = [] {
        std::array<float, 256> v{};
        for (int b = 0; b < 256; ++b) v[size_t(b)] = e4m3_to_f32(uint8_t(b));
        return v;
    }();
    for (int64_t i = 0; i < n; ++i) dst[i] = e4m3[static_cast<const uint8_t*>(src)[i]];
}

// The op's scratch: a row of `per_thread` scores for each thread, then `extra` bytes.
struct AttnScratch {
    float* scores;
    size_t stride;  // floats from one thread's scores to the next's
    char* extra;
    float* scores_of(int ith) const { return scores + size_t(ith) * stride; }
};

AttnScratch attn_scratch(OpContext& ctx, int64_t per_thread, size_t extra = 0) {
    const size_t stride = align_up(size_t(per_thread) * 4), score_bytes = size_t(ctx.pool.size()) * stride;
    char* base = static_cast<char*>(ctx.scratch.grow(score_bytes + extra));
    return {reinterpret_cast<float*>(base), stride / 4, base + score_bytes};
}

// Packs keys and values [k0, k0 + n) of one head (row j at k + j·ld, D floats) as the block of
// attention_tile.h at `out`, n ≤ kAttnKeys.
void pack_block(const float* k, const float* v, int64_t ld, int64_t k0, int64_t n, int D, float* out) {
    const int64_t dpad = attn_dpad(D);
    float* kt = out;
    float* vt = out + int64_t(D) * kAttnKeys;
    std::fill(out, out + attn_block_floats(D), 0.0f);
    for (int64_t j = 0; j < n; ++j) {
        const float* kr = k + (k0 + j) * ld;
        for (int d = 0; d < D; ++d) kt[d * kAttnKeys + j] = kr[d];
        std::memcpy(vt + j * dpad, v + (k0 + j) * ld, size_t(D) * 4);
    }
}

// How a pass packs keys and values and runs its tiles: on BF16 pairs with BF16 activations where the
// kernel set has a pair tile, else in F32.
struct TileKind {
    int64_t block;  // floats per packed block
    void (*pack)(const float* k, const float* v, int64_t ld, int64_t k0, int64_t n, int D, float* out);
    void (*attend)(const AttnTile& t, float* scratch);
};

TileKind tile_kind(const OpContext& ctx, int D) {
    if (ctx.bf16_activations && ctx.kern.attend_tile_pairs)
        return {attn_pair_block_floats(D), ctx.kern.pack_pair_block, ctx.kern.attend_tile_pairs};
    return {attn_block_floats(D), pack_block, ctx.kern.attend_tile};
}

int64_t key_blocks(int64_t n) { return (n + kAttnKeys - 1) / kAttnKeys; }

// A tile's query vectors: `rows` consecutive rows from m0 (q row m at q + m·ldq), each with the `heads`
// heads from h0, row-major; row m sees n_keys(m) keys.
template <class Keys>
AttnTile make_tile(const float* q, float* out, int64_t ldq, int64_t m0, int64_t rows, int h0, int heads, int D,
                   float scale, const float* blocks, Keys n_keys) {
    AttnTile t;
    t.D = D, t.scale = scale, t.blocks = blocks;
    for (int64_t m = m0; m < m0 + rows; ++m)
        for (int h = h0; h < h0 + heads; ++h, ++t.nq) {
            t.q[t.nq] = q + m * ldq + int64_t(h) * D;
            t.out[t.nq] = out + m * ldq + int64_t(h) * D;
            t.n_keys[t.nq] = n_keys(m);
        }
    return t;
}

// The KV cache of ATTN_CACHED: sequence s's row p at row s·n_ctx + p, `ld` elements of the cache's type.
struct CacheView {
    Tensor *k, *v;
    size_t row_bytes;
    int64_t n_ctx, ld;
    char* row(const Tensor* c, int64_t r) const { return static_cast<char*>(c->data) + size_t(r) * row_bytes; }
};

// ATTN_CACHED with many rows per sequence: each sequence's rows [0, used) packed per KV head (widened from
// the cache's type a block of rows at a time), then one tile per GQA group and run of up to
// kAttnQueries / group consecutive rows of one sequence.
void attn_cached_tiles(OpContext& ctx, Tensor& dst, const CacheView& cache, const std::vector<int64_t>& used,
                       const int32_t* pos, const int32_t* seq) {
    const int n_head = dst.ip[0], n_kv = dst.ip[1], D = dst.ip[2], group = n_head / n_kv;
    const TileKind kind = tile_kind(ctx, D);
    const int64_t M = dst.src[0]->rows(), ld = cache.ld, block = kind.block;
    const int64_t tile = attn_tile_scratch(D), wide = cache.k->type == Type::F32 ? 0 : 2 * kAttnKeys * ld;
    std::vector<int64_t> first(used.size() + 1, 0);  // each sequence's packed blocks, KV head by KV head
    std::vector<std::pair<int64_t, int64_t>> packs;  // (sequence, key block)
    for (size_t s = 0; s < used.size(); ++s) {
        first[s + 1] = first[s] + n_kv * key_blocks(used[s]) * block;
        for (int64_t b = 0; b < key_blocks(used[s]); ++b) packs.emplace_back(int64_t(s), b);
    }
    const int64_t per_thread = tile + wide;
    auto* packed = static_cast<float*>(ctx.scratch.grow(size_t(first.back() + ctx.pool.size() * per_thread) * 4));
    float* threads = packed + first.back();
    ctx.pool.parallel_chunks(int64_t(packs.size()), [&](int64_t c, int ith) {
        const auto [s, b] = packs[size_t(c)];
        const int64_t k0 = b * kAttnKeys, n = std::min<int64_t>(kAttnKeys, used[size_t(s)] - k0);
        const int64_t row = s * cache.n_ctx + k0;
        const float *kw, *vw;
        if (wide == 0) {
            kw = reinterpret_cast<const float*>(cache.row(cache.k, row));
            vw = reinterpret_cast<const float*>(cache.row(cache.v, row));
        } else {
            float* w = threads + ith * per_thread + tile;
            load_rows(ctx.kern, cache.k->type, cache.row(cache.k, row), n * ld, w);
            load_rows(ctx.kern, cache.k->type, cache.row(cache.v, row), n * ld, w + wide / 2);
            kw = w, vw = w + wide / 2;
        }
        for (int h = 0; h < n_kv; ++h)
            kind.pack(kw + h * D, vw + h * D, ld, 0, n, D,
                      packed + first[size_t(s)] + (h * key_blocks(used[size_t(s)]) + b) * block);
    });

    struct Task {
        int64_t m0, rows;
        int kv;
    };
    std::vector<Task> tasks;
    const int64_t per_tile = kAttnQueries / group;
    for (int64_t r0 = 0; r0 < M;) {
        int64_t r1 = r0 + 1;
        while (r1 < M && seq[r1] == seq[r0]) ++r1;
        for (int64_t m0 = r0; m0 < r1; m0 += per_tile)
            for (int h = 0; h < n_kv; ++h) tasks.push_back({m0, std::min(per_tile, r1 - m0), h});
        r0 = r1;
    }
    ctx.pool.parallel_chunks(int64_t(tasks.size()), [&](int64_t c, int ith) {
        const Task& task = tasks[size_t(c)];
        const size_t s = size_t(seq[task.m0]);
        const float* blocks = packed + first[s] + task.kv * key_blocks(used[s]) * block;
        const AttnTile t = make_tile(static_cast<const float*>(dst.src[0]->data), static_cast<float*>(dst.data),
                                     int64_t(n_head) * D, task.m0, task.rows, task.kv * group, group, D, dst.fp[0],
                                     blocks, [pos](int64_t m) { return int64_t(pos[m]) + 1; });
        kind.attend(t, threads + ith * per_thread);
    });
}

}  // namespace

void op_attn_cached(OpContext& ctx, Tensor& dst) {
    Tensor *q = dst.src[0], *k = dst.src[1], *v = dst.src[2], *kc = dst.src[3], *vc = dst.src[4];
    for (Tensor* t : {q, k, v}) require_f32(*t, Op::ATTN_CACHED);
    const Type ct = kc->type;
    if (vc->type != ct) throw std::invalid_argument("ATTN_CACHED: the K and V caches differ in type");
    const int32_t* pos = static_cast<const int32_t*>(dst.src[5]->data);
    const int32_t* seq = static_cast<const int32_t*>(dst.src[6]->data);
    const int n_head = dst.ip[0], n_kv = dst.ip[1], head_dim = dst.ip[2];
    const int64_t n_ctx = dst.ip[3], n_seq = kc->rows() / n_ctx, M = q->rows();
    const int64_t ld = int64_t(n_kv) * head_dim, ldq = int64_t(n_head) * head_dim;
    for (int64_t m = 0; m < M; ++m)
        if (pos[m] < 0 || pos[m] >= n_ctx || seq[m] < 0 || seq[m] >= n_seq)
            throw std::out_of_range("ATTN_CACHED: row " + std::to_string(m) + " has pos " + std::to_string(pos[m]) +
                                    ", seq " + std::to_string(seq[m]) + " outside a cache of " +
                                    std::to_string(n_seq) + " x " + std::to_string(n_ctx));

    const CacheView cache{kc, vc, fp4::row_bytes(ct, ld), n_ctx, ld};
    for (int64_t m = 0; m < M; ++m) {
        const int64_t row = seq[m] * n_ctx + pos[m];
        store_cache_values(ct, static_cast<const float*>(k->data) + m * ld, ld, cache.row(kc, row));
        store_cache_values(ct, static_cast<const float*>(v->data) + m * ld, ld, cache.row(vc, row));
    }

    // The rows [0, last position] of each sequence this pass reads.
    std::vector<int64_t> used(size_t(n_seq), 0);
    for (int64_t m = 0; m < M; ++m) used[size_t(seq[m])] = std::max<int64_t>(used[size_t(seq[m])], pos[m] + 1);
    int64_t runs = 0;  // of consecutive rows of one sequence
    for (int64_t m = 0; m < M; ++m) runs += m == 0 || seq[m] != seq[m - 1];
    if (M >= 8 * runs && n_head / n_kv <= kAttnQueries) return attn_cached_tiles(ctx, dst, cache, used, pos, seq);

    // Few rows: F32 rows of K and V of each sequence, the cache itself or copies widened into scratch
    // after the scores.
    auto wide_bytes = [&](int64_t s) { return align_up(size_t(used[size_t(s)] * ld) * 4); };
    size_t extra = 0;
    if (ct != Type::F32)
        for (int64_t s = 0; s < n_seq; ++s) extra += 2 * wide_bytes(s);
    const int group = n_head / n_kv;
    const AttnScratch sc = attn_scratch(ctx, group * n_ctx, extra);
    std::vector<float*> keys(static_cast<size_t>(n_seq)), values(static_cast<size_t>(n_seq));
    char* next = sc.extra;
    for (int64_t s = 0; s < n_seq; ++s) {
        if (ct == Type::F32) {
            keys[size_t(s)] = static_cast<float*>(kc->data) + s * n_ctx * ld;
            values[size_t(s)] = static_cast<float*>(vc->data) + s * n_ctx * ld;
        } else {
            keys[size_t(s)] = reinterpret_cast<float*>(next);
            values[size_t(s)] = reinterpret_cast<float*>(next + wide_bytes(s));
            next += 2 * wide_bytes(s);
        }
    }
    if (ct != Type::F32)
        ctx.pool.parallel_chunks(n_seq * 2, [&](int64_t c, int) {
            const int64_t s = c / 2, n = used[size_t(s)] * ld;
            if (n > 0)
                load_rows(ctx.kern, ct, cache.row(c % 2 ? vc : kc, s * n_ctx), n,
                          c % 2 ? values[size_t(s)] : keys[size_t(s)]);
        });

    ctx.pool.parallel_chunks(M * n_kv, [&](int64_t c, int ith) {
        const int64_t m = c / n_kv, h = c % n_kv * group, kv = c % n_kv * head_dim;
        attend(ctx.kern, static_cast<const float*>(q->data) + m * ldq + h * head_dim, group, keys[size_t(seq[m])] + kv,
               values[size_t(seq[m])] + kv, ld, pos[m] + 1, head_dim, dst.fp[0], sc.scores_of(ith),
               static_cast<float*>(dst.data) + m * ldq + h * head_dim);
    });
}

void op_attn_full(OpContext& ctx, Tensor& dst) {
    Tensor *q = dst.src[0], *k = dst.src[1], *v = dst.src[2];
    for (Tensor* t : {q, k, v}) require_f32(*t, Op::ATTN_FULL);
    const int n_head = dst.ip[0], D = dst.ip[1];
    const TileKind kind = tile_kind(ctx, D);
    const int64_t M = q->rows(), ld = int64_t(n_head) * D, blocks = key_blocks(M);
    const int64_t block = kind.block, per_head = blocks * block, tile = attn_tile_scratch(D);
    auto* packed = static_cast<float*>(ctx.scratch.grow(size_t(n_head * per_head + ctx.pool.size() * tile) * 4));
    float* tiles = packed + n_head * per_head;
    const auto *kd = static_cast<const float*>(k->data), *vd = static_cast<const float*>(v->data);
    ctx.pool.parallel_chunks(n_head * blocks, [&](int64_t c, int) {
        const int64_t h = c / blocks, k0 = c % blocks * kAttnKeys;
        kind.pack(kd + h * D, vd + h * D, ld, k0, std::min<int64_t>(kAttnKeys, M - k0), D,
                  packed + h * per_head + k0 / kAttnKeys * block);
    });
    const int64_t row_tiles = (M + kAttnQueries - 1) / kAttnQueries;
    ctx.pool.parallel_chunks(n_head * row_tiles, [&](int64_t c, int ith) {
        const int h = int(c / row_tiles);
        const int64_t m0 = c % row_tiles * kAttnQueries;
        const AttnTile t = make_tile(static_cast<const float*>(q->data), static_cast<float*>(dst.data), ld, m0,
                                     std::min<int64_t>(kAttnQueries, M - m0), h, 1, D, dst.fp[0],
                                     packed + h * per_head, [M](int64_t) { return M; });
        kind.attend(t, tiles + ith * tile);
    });
}

}  // namespace fp4::cpu
