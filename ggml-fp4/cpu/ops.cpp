// ops.cpp — the CPU ops other than attention and the matmul kernels: embedding lookup, RMS norm, the
// rotary embeddings, activations, addition and the vision data-movement ops. Rows (or elements) are
// split over the thread pool; arithmetic follows PyTorch's float32 formulas (SWIGLU's through the kernel
// set's vector exp, vec_math.h).
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "cpu/ops.h"
#include "numeric.h"
#include "rope.h"

namespace fp4::cpu {

void require_f32(const Tensor& t, Op op) {
    if (t.type != Type::F32)
        throw std::invalid_argument(std::string(op_name(op)) + ": '" + t.name + "' must be F32, is " +
                                    type_name(t.type));
}

static float* f32(Tensor* t) { return static_cast<float*>(t->data); }
static const int32_t* i32(const Tensor* t) { return static_cast<const int32_t*>(t->data); }

// Throws unless every index is in [0, limit).
static void check_indices(const int32_t* idx, int64_t n, int64_t limit, Op op, const char* what) {
    for (int64_t i = 0; i < n; ++i)
        if (idx[i] < 0 || idx[i] >= limit)
            throw std::out_of_range(std::string(op_name(op)) + ": " + what + " " + std::to_string(idx[i]) +
                                    " out of range [0, " + std::to_string(limit) + ")");
}

// Row r of a weight-like tensor (F32, BF16, F16 or NVFP4) as F32.
static void row_to_f32(const Tensor& t, int64_t r, float* out) {
    const int64_t D = t.ne[0];
    const auto* bytes = static_cast<const uint8_t*>(t.data) + r * int64_t(row_bytes(t.type, D));
    switch (t.type) {
        case Type::F32: std::memcpy(out, bytes, size_t(D) * 4); return;
        case Type::BF16:
        case Type::F16:
            for (int64_t i = 0; i < D; ++i) {
                uint16_t h;
                std::memcpy(&h, bytes + 2 * i, 2);
                out[i] = t.type == Type::BF16 ? bf16_to_f32(h) : f16_to_f32(h);
            }
            return;
        case Type::NVFP4:
            dequant_nvfp4_row(bytes, static_cast<const uint8_t*>(t.scale) + r * (D / 16), t.gscale, D, out);
            return;
        default: throw std::invalid_argument(std::string("unsupported table/weight type ") + type_name(t.type));
    }
}

void op_get_rows(OpContext& ctx, Tensor& dst) {
    const Tensor& table = *dst.src[0];
    const Tensor& ids = *dst.src[1];
    if (table.type != Type::F32 && table.type != Type::BF16 && table.type != Type::F16 && table.type != Type::NVFP4)
        throw std::invalid_argument(std::string("GET_ROWS: unsupported table type ") + type_name(table.type));
    const int64_t T = ids.ne[0], D = table.ne[0];
    check_indices(i32(&ids), T, table.rows(), Op::GET_ROWS, "id");
    ctx.pool.parallel_for(T, [&](int64_t t0, int64_t t1) {
        for (int64_t t = t0; t < t1; ++t) row_to_f32(table, i32(&ids)[t], f32(&dst) + t * D);
    });
}

void op_mul_mat(OpContext& ctx, Tensor& dst) {
    Tensor* x = dst.src[1];
    require_f32(*x, Op::MUL_MAT);
    mul_mat(ctx.kern, ctx.pool, ctx.scratch, *dst.src[0], f32(x), x->rows(), f32(&dst), ctx.bf16_activations);
}

void op_rms_norm(OpContext& ctx, Tensor& dst) {
    Tensor* x = dst.src[0];
    require_f32(*x, Op::RMS_NORM);
    const int64_t D = x->ne[0];
    std::vector<float> w(static_cast<size_t>(D));
    row_to_f32(*dst.src[1], 0, w.data());
    const float eps = dst.fp[0];
    ctx.pool.parallel_for(x->rows(), [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
            const float* xr = f32(x) + r * D;
            float* yr = f32(&dst) + r * D;
            double sum = 0.0;
            for (int64_t i = 0; i < D; ++i) sum += double(xr[i]) * xr[i];
            const float inv = 1.0f / std::sqrt(float(sum / double(D)) + eps);
            for (int64_t i = 0; i < D; ++i) yr[i] = (xr[i] * inv) * w[size_t(i)];
        }
    });
}

// Rotates lanes (i, i + Dh/2) of every head of row x by the angle whose cos/sin are c[i], s[i].
static void rotate_heads(const float* x, float* y, int n_head, int head_dim, const float* c, const float* s) {
    const int half = head_dim / 2;
    for (int h = 0; h < n_head; ++h) {
        const float* xh = x + int64_t(h) * head_dim;
        float* yh = y + int64_t(h) * head_dim;
        for (int i = 0; i < half; ++i) {
            const float a = xh[i], b = xh[i + half];
            yh[i] = a * c[i] - b * s[i];
            yh[i + half] = b * c[i] + a * s[i];
        }
    }
}

void op_rope(OpContext& ctx, Tensor& dst) {
    Tensor* x = dst.src[0];
    require_f32(*x, Op::ROPE);
    const int n_head = dst.ip[0], head_dim = dst.ip[1];
    const std::vector<float> inv_freq = rope_inv_freq(dst.fp[0], head_dim);
    const int32_t* pos = i32(dst.src[1]);
    ctx.pool.parallel_for(x->rows(), [&](int64_t r0, int64_t r1) {
        std::vector<float> c(size_t(head_dim / 2)), s(c.size());
        for (int64_t r = r0; r < r1; ++r) {
            for (size_t j = 0; j < c.size(); ++j) {
                const float angle = float(pos[r]) * inv_freq[j];
                c[j] = std::cos(angle);
                s[j] = std::sin(angle);
            }
            rotate_heads(f32(x) + r * x->ne[0], f32(&dst) + r * x->ne[0], n_head, head_dim, c.data(), s.data());
        }
    });
}

void op_rope_2d(OpContext& ctx, Tensor& dst) {
    Tensor* x = dst.src[0];
    require_f32(*x, Op::ROPE_2D);
    const int n_head = dst.ip[0], head_dim = dst.ip[1], quarter = head_dim / 4;
    const std::vector<float> f = rope_inv_freq(dst.fp[0], head_dim);
    const int32_t* rc = i32(dst.src[1]);
    ctx.pool.parallel_for(x->rows(), [&](int64_t r0, int64_t r1) {
        std::vector<float> c(size_t(head_dim / 2)), s(c.size());
        for (int64_t r = r0; r < r1; ++r) {
            for (int i = 0; i < quarter; ++i) {
                const float a_row = float(rc[2 * r]) * f[size_t(2 * i)];
                const float a_col = float(rc[2 * r + 1]) * f[size_t(2 * i + 1)];
                c[size_t(i)] = std::cos(a_row), s[size_t(i)] = std::sin(a_row);
                c[size_t(quarter + i)] = std::cos(a_col), s[size_t(quarter + i)] = std::sin(a_col);
            }
            rotate_heads(f32(x) + r * x->ne[0], f32(&dst) + r * x->ne[0], n_head, head_dim, c.data(), s.data());
        }
    });
}

// y[i] = fn(i) over all elements of dst, split over the pool.
template <class Fn>
static void elementwise(OpContext& ctx, Tensor& dst, Fn fn) {
    float* y = f32(&dst);
    ctx.pool.parallel_for(dst.nelements(), [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i) y[i] = fn(i);
    });
}

void op_swiglu(OpContext& ctx, Tensor& dst) {
    require_f32(*dst.src[0], Op::SWIGLU);
    require_f32(*dst.src[1], Op::SWIGLU);
    const float *g = f32(dst.src[0]), *u = f32(dst.src[1]);
    float* y = f32(&dst);
    ctx.pool.parallel_for(dst.nelements(), [&](int64_t i0, int64_t i1) {
        ctx.kern.swiglu(g + i0, u + i0, y + i0, i1 - i0);
    });
}

void op_gelu(OpContext& ctx, Tensor& dst) {
    require_f32(*dst.src[0], Op::GELU);
    const float* x = f32(dst.src[0]);
    const float inv_sqrt2 = float(M_SQRT1_2);
    elementwise(ctx, dst, [&](int64_t i) { return 0.5f * x[i] * (1.0f + std::erf(x[i] * inv_sqrt2)); });
}

void op_add(OpContext& ctx, Tensor& dst) {
    require_f32(*dst.src[0], Op::ADD);
    require_f32(*dst.src[1], Op::ADD);
    const float* a = f32(dst.src[0]);
    const float* b = f32(dst.src[1]);
    elementwise(ctx, dst, [&](int64_t i) { return a[i] + b[i]; });
}

void op_im2col_patch(OpContext& ctx, Tensor& dst) {
    const Tensor& px = *dst.src[0];
    const int64_t W = px.ne[0], H = px.ne[1], C = px.ne[2], p = dst.ip[0], pw = W / p;
    const float* in = static_cast<const float*>(px.data);
    ctx.pool.parallel_for(dst.ne[1], [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
            const int64_t py = r / pw, pxl = r % pw;
            float* out = f32(&dst) + r * dst.ne[0];
            for (int64_t c = 0; c < C; ++c)
                for (int64_t ky = 0; ky < p; ++ky)
                    std::memcpy(out + (c * p + ky) * p, in + (c * H + py * p + ky) * W + pxl * p, size_t(p) * 4);
        }
    });
}

void op_patch_merge(OpContext& ctx, Tensor& dst) {
    Tensor* x = dst.src[0];
    require_f32(*x, Op::PATCH_MERGE);
    const int64_t C = x->ne[0], w = dst.ip[1], w2 = w / 2;
    ctx.pool.parallel_for(dst.ne[1], [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
            const int64_t R = r / w2, Cc = r % w2;
            float* out = f32(&dst) + r * 4 * C;
            for (int a = 0; a < 2; ++a)
                for (int b = 0; b < 2; ++b) {
                    const float* in = f32(x) + ((2 * R + a) * w + 2 * Cc + b) * C;
                    for (int64_t c = 0; c < C; ++c) out[4 * c + 2 * a + b] = in[c];
                }
        }
    });
}

void op_scatter_rows(OpContext&, Tensor& dst) {  // serial: with repeated indices the last row wins
    Tensor *base = dst.src[0], *rows = dst.src[1];
    require_f32(*base, Op::SCATTER_ROWS);
    require_f32(*rows, Op::SCATTER_ROWS);
    const int32_t* idx = i32(dst.src[2]);
    const int64_t D = dst.ne[0], n = rows->rows();
    check_indices(idx, n, dst.ne[1], Op::SCATTER_ROWS, "row index");
    std::memcpy(dst.data, base->data, dst.nbytes());
    for (int64_t i = 0; i < n; ++i) std::memcpy(f32(&dst) + idx[i] * D, f32(rows) + i * D, size_t(D) * 4);
}

void op_argmax(OpContext& ctx, Tensor& dst) {
    const Tensor& x = *dst.src[0];
    require_f32(x, Op::ARGMAX);
    const int64_t N = x.ne[0];
    int32_t* out = static_cast<int32_t*>(dst.data);
    ctx.pool.parallel_for(x.rows(), [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
            const float* row = static_cast<const float*>(x.data) + r * N;
            int64_t best = -1;
            for (int64_t i = 0; i < N; ++i)
                if (row[i] == row[i] && (best < 0 || row[i] > row[best])) best = i;
            out[r] = int32_t(best < 0 ? 0 : best);
        }
    });
}

}  // namespace fp4::cpu
