// attention.cpp — ATTN_CACHED (causal, through a KV cache of F32, BF16 or FP8 E4M3 rows, several
// sequences, GQA) and ATTN_FULL (bidirectional, no cache). One (row, head) pair per task: scores
// q·k·scale, softmax in F32 with the maximum subtracted, then the probability-weighted sum of the value
// rows. A BF16/FP8 cache is widened to F32 once per pass, over the rows the pass reads.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "cpu/ops.h"
#include "numeric.h"

namespace fp4::cpu {

namespace {

// out[0..Dh) = softmax(scale · q·k_i)_i · v_i over i < n, with k_i = k + i·ld and v_i = v + i·ld.
void attend(const Kernels& kern, const float* q, const float* k, const float* v, int64_t ld, int64_t n,
            int64_t head_dim, float scale, float* scores, float* out) {
    float mx = -INFINITY;
    for (int64_t i = 0; i < n; ++i) {
        scores[i] = kern.dot(q, k + i * ld, head_dim) * scale;
        mx = std::max(mx, scores[i]);
    }
    float sum = 0.0f;
    for (int64_t i = 0; i < n; ++i) {
        scores[i] = std::exp(scores[i] - mx);
        sum += scores[i];
    }
    std::fill(out, out + head_dim, 0.0f);
    for (int64_t i = 0; i < n; ++i) kern.axpy(scores[i] / sum, v + i * ld, out, head_dim);
}

// Stores `n` F32 values as the cache's type (round to nearest even; FP8 saturates at ±448).
void store_row(Type t, const float* src, int64_t n, void* dst) {
    switch (t) {
        case Type::F32: std::memcpy(dst, src, size_t(n) * 4); return;
        case Type::BF16:
            for (int64_t i = 0; i < n; ++i) static_cast<uint16_t*>(dst)[i] = f32_to_bf16(src[i]);
            return;
        case Type::F8_E4M3:
            for (int64_t i = 0; i < n; ++i) static_cast<uint8_t*>(dst)[i] = f32_to_e4m3(src[i]);
            return;
        default: throw std::invalid_argument(std::string("ATTN_CACHED: a cache of type ") + type_name(t));
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

    const size_t row_bytes = fp4::row_bytes(ct, ld);
    auto row_of = [&](Tensor* c, int64_t row) { return static_cast<char*>(c->data) + size_t(row) * row_bytes; };
    for (int64_t m = 0; m < M; ++m) {
        const int64_t row = seq[m] * n_ctx + pos[m];
        store_row(ct, static_cast<const float*>(k->data) + m * ld, ld, row_of(kc, row));
        store_row(ct, static_cast<const float*>(v->data) + m * ld, ld, row_of(vc, row));
    }

    // F32 rows of K and V of each sequence: the cache itself, or copies of the rows [0, last position] this
    // pass reads, widened into scratch after the scores.
    std::vector<int64_t> used(size_t(n_seq), 0);
    for (int64_t m = 0; m < M; ++m) used[size_t(seq[m])] = std::max<int64_t>(used[size_t(seq[m])], pos[m] + 1);
    auto wide_bytes = [&](int64_t s) { return align_up(size_t(used[size_t(s)] * ld) * 4); };
    size_t extra = 0;
    if (ct != Type::F32)
        for (int64_t s = 0; s < n_seq; ++s) extra += 2 * wide_bytes(s);
    const AttnScratch sc = attn_scratch(ctx, n_ctx, extra);
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
                load_rows(ctx.kern, ct, row_of(c % 2 ? vc : kc, s * n_ctx), n,
                          c % 2 ? values[size_t(s)] : keys[size_t(s)]);
        });

    const int group = n_head / n_kv;
    ctx.pool.parallel_chunks(M * n_head, [&](int64_t c, int ith) {
        const int64_t m = c / n_head, h = c % n_head, kv = (h / group) * head_dim;
        attend(ctx.kern, static_cast<const float*>(q->data) + m * ldq + h * head_dim, keys[size_t(seq[m])] + kv,
               values[size_t(seq[m])] + kv, ld, pos[m] + 1, head_dim, dst.fp[0], sc.scores_of(ith),
               static_cast<float*>(dst.data) + m * ldq + h * head_dim);
    });
}

void op_attn_full(OpContext& ctx, Tensor& dst) {
    Tensor *q = dst.src[0], *k = dst.src[1], *v = dst.src[2];
    for (Tensor* t : {q, k, v}) require_f32(*t, Op::ATTN_FULL);
    const int n_head = dst.ip[0], head_dim = dst.ip[1];
    const int64_t M = q->rows(), ld = int64_t(n_head) * head_dim;
    const AttnScratch sc = attn_scratch(ctx, M);
    ctx.pool.parallel_chunks(M * n_head, [&](int64_t c, int ith) {
        const int64_t m = c / n_head, off = (c % n_head) * head_dim;
        attend(ctx.kern, static_cast<const float*>(q->data) + m * ld + off,
               static_cast<const float*>(k->data) + off, static_cast<const float*>(v->data) + off, ld, M, head_dim,
               dst.fp[0], sc.scores_of(ith), static_cast<float*>(dst.data) + m * ld + off);
    });
}

}  // namespace fp4::cpu
