// attention.cpp — ATTN_CACHED (causal, through a KV cache, several sequences, GQA) and ATTN_FULL
// (bidirectional, no cache). One (row, head) pair per task: scores q·k·scale, softmax in F32 with the
// maximum subtracted, then the probability-weighted sum of the value rows.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>

#include "cpu/ops.h"

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

float* thread_scores(OpContext& ctx, int64_t per_thread) {
    return static_cast<float*>(ctx.scratch.grow(size_t(ctx.pool.size()) * align_up(size_t(per_thread) * 4)));
}

}  // namespace

void op_attn_cached(OpContext& ctx, Tensor& dst) {
    Tensor *q = dst.src[0], *k = dst.src[1], *v = dst.src[2], *kc = dst.src[3], *vc = dst.src[4];
    for (Tensor* t : {q, k, v, kc, vc}) require_f32(*t, Op::ATTN_CACHED);
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

    float* kcache = static_cast<float*>(kc->data);
    float* vcache = static_cast<float*>(vc->data);
    for (int64_t m = 0; m < M; ++m) {
        const int64_t row = seq[m] * n_ctx + pos[m];
        std::memcpy(kcache + row * ld, static_cast<const float*>(k->data) + m * ld, size_t(ld) * 4);
        std::memcpy(vcache + row * ld, static_cast<const float*>(v->data) + m * ld, size_t(ld) * 4);
    }

    float* scores = thread_scores(ctx, n_ctx);
    const int group = n_head / n_kv;
    ctx.pool.parallel_chunks(M * n_head, [&](int64_t c, int ith) {
        const int64_t m = c / n_head, h = c % n_head;
        const int64_t first = seq[m] * n_ctx * ld + (h / group) * head_dim;
        attend(ctx.kern, static_cast<const float*>(q->data) + m * ldq + h * head_dim, kcache + first, vcache + first,
               ld, pos[m] + 1, head_dim, dst.fp[0], scores + ith * align_up(size_t(n_ctx) * 4) / 4,
               static_cast<float*>(dst.data) + m * ldq + h * head_dim);
    });
}

void op_attn_full(OpContext& ctx, Tensor& dst) {
    Tensor *q = dst.src[0], *k = dst.src[1], *v = dst.src[2];
    for (Tensor* t : {q, k, v}) require_f32(*t, Op::ATTN_FULL);
    const int n_head = dst.ip[0], head_dim = dst.ip[1];
    const int64_t M = q->rows(), ld = int64_t(n_head) * head_dim;
    float* scores = thread_scores(ctx, M);
    ctx.pool.parallel_chunks(M * n_head, [&](int64_t c, int ith) {
        const int64_t m = c / n_head, off = (c % n_head) * head_dim;
        attend(ctx.kern, static_cast<const float*>(q->data) + m * ld + off,
               static_cast<const float*>(k->data) + off, static_cast<const float*>(v->data) + off, ld, M, head_dim,
               dst.fp[0], scores + ith * align_up(size_t(M) * 4) / 4, static_cast<float*>(dst.data) + m * ld + off);
    });
}

}  // namespace fp4::cpu
