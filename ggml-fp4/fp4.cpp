// fp4.cpp — type tables, shape checks and the graph builder: each op function validates its sources
// and appends one node whose output shape follows from them.
#include "fp4.h"

#include <atomic>
#include <cstring>
#include <stdexcept>
#include <string>

#include "numeric.h"

namespace fp4 {

const char* type_name(Type t) {
    switch (t) {
        case Type::F32: return "F32";
        case Type::F16: return "F16";
        case Type::BF16: return "BF16";
        case Type::F8_E4M3: return "F8_E4M3";
        case Type::I32: return "I32";
        case Type::U8: return "U8";
        case Type::NVFP4: return "NVFP4";
    }
    return "?";
}

size_t row_bytes(Type t, int64_t n) {
    switch (t) {
        case Type::F32: case Type::I32: return size_t(n) * 4;
        case Type::F16: case Type::BF16: return size_t(n) * 2;
        case Type::F8_E4M3: case Type::U8: return size_t(n);
        case Type::NVFP4: return size_t(n) / 2;
    }
    return 0;
}

static void require_cache_type(Type t) {
    if (t != Type::F32 && t != Type::BF16 && t != Type::F8_E4M3)
        throw std::invalid_argument(std::string("a KV cache of type ") + type_name(t) +
                                    " is not supported (F32, BF16 or F8_E4M3)");
}

void store_cache_values(Type t, const float* src, int64_t n, void* dst) {
    require_cache_type(t);
    auto* out = static_cast<uint8_t*>(dst);
    if (t == Type::F32) std::memcpy(out, src, size_t(n) * 4);
    if (t == Type::BF16)
        for (int64_t i = 0; i < n; ++i) {
            const uint16_t h = f32_to_bf16(src[i]);
            std::memcpy(out + 2 * i, &h, 2);
        }
    if (t == Type::F8_E4M3)
        for (int64_t i = 0; i < n; ++i) out[i] = f32_to_e4m3(src[i]);
}

void load_cache_values(Type t, const void* src, int64_t n, float* dst) {
    require_cache_type(t);
    const auto* in = static_cast<const uint8_t*>(src);
    if (t == Type::F32) std::memcpy(dst, in, size_t(n) * 4);
    if (t == Type::BF16)
        for (int64_t i = 0; i < n; ++i) {
            uint16_t h;
            std::memcpy(&h, in + 2 * i, 2);
            dst[i] = bf16_to_f32(h);
        }
    if (t == Type::F8_E4M3)
        for (int64_t i = 0; i < n; ++i) dst[i] = e4m3_to_f32(in[i]);
}

const char* op_name(Op op) {
    static const char* names[] = {"NONE",     "GET_ROWS", "MUL_MAT",      "RMS_NORM",    "ROPE",
                                  "ROPE_2D",  "ATTN_CACHED", "ATTN_FULL", "SWIGLU",      "GELU",
                                  "ADD",      "IM2COL_PATCH", "PATCH_MERGE", "SCATTER_ROWS", "VIEW_ROWS",
                                  "ARGMAX"};
    static_assert(sizeof(names) / sizeof(names[0]) == size_t(Op::COUNT), "op names out of date");
    return names[size_t(op)];
}

size_t Tensor::nbytes() const { return row_bytes(type, ne[0]) * size_t(rows()); }

std::unique_ptr<Tensor> make_tensor(Type t, std::vector<int64_t> ne, std::string name) {
    if (ne.empty() || ne.size() > size_t(kMaxDims)) throw std::invalid_argument("tensor rank must be 1..4");
    auto x = std::make_unique<Tensor>();
    x->type = t;
    for (size_t i = 0; i < ne.size(); ++i) x->ne[i] = ne[i];
    if (t == Type::NVFP4 && ne[0] % 16 != 0)
        throw std::invalid_argument("NVFP4 tensor '" + name + "': columns must be a multiple of 16");
    x->name = std::move(name);
    return x;
}

static void require(bool ok, Op op, const char* what) {
    if (!ok) throw std::invalid_argument(std::string(op_name(op)) + ": " + what);
}

Graph::Graph() {
    static std::atomic<uint64_t> next{1};
    id_ = next++;
}

Tensor* Graph::input(Type t, std::vector<int64_t> ne, const void* host, const char* name) {
    ++revision_;
    owned_.push_back(make_tensor(t, std::move(ne), name));
    Tensor* x = owned_.back().get();
    x->host = host;
    x->index = int32_t(inputs_.size());
    inputs_.push_back(x);
    return x;
}

Tensor* Graph::new_node(Op op, Type type, std::vector<int64_t> ne, std::initializer_list<Tensor*> src) {
    ++revision_;
    owned_.push_back(make_tensor(type, std::move(ne), op_name(op)));
    Tensor* x = owned_.back().get();
    x->op = op;
    int i = 0;
    for (Tensor* s : src) x->src[i++] = s;
    x->index = int32_t(nodes_.size());
    nodes_.push_back(x);
    return x;
}

Tensor* Graph::get_rows(Tensor* table, Tensor* ids) {
    require(ids->type == Type::I32 && ids->ne[1] == 1, Op::GET_ROWS, "ids must be an I32 vector");
    return new_node(Op::GET_ROWS, Type::F32, {table->ne[0], ids->ne[0]}, {table, ids});
}

Tensor* Graph::mul_mat(Tensor* w, Tensor* x) {
    require(x->type == Type::F32, Op::MUL_MAT, "activations must be F32");
    require(w->ne[0] == x->ne[0], Op::MUL_MAT, ("inner dimensions differ for " + w->name).c_str());
    return new_node(Op::MUL_MAT, Type::F32, {w->ne[1], x->rows()}, {w, x});
}

Tensor* Graph::rms_norm(Tensor* x, Tensor* w, float eps) {
    require(w->nelements() == x->ne[0], Op::RMS_NORM, "weight length differs from the row length");
    Tensor* y = new_node(Op::RMS_NORM, Type::F32, {x->ne[0], x->rows()}, {x, w});
    y->fp[0] = eps;
    return y;
}

Tensor* Graph::rope(Tensor* x, Tensor* pos, int n_head, int head_dim, float theta) {
    require(x->ne[0] == int64_t(n_head) * head_dim && head_dim % 2 == 0, Op::ROPE, "bad head layout");
    require(pos->type == Type::I32 && pos->ne[0] == x->rows(), Op::ROPE, "need one I32 position per row");
    Tensor* y = new_node(Op::ROPE, Type::F32, {x->ne[0], x->rows()}, {x, pos});
    y->ip[0] = n_head, y->ip[1] = head_dim, y->fp[0] = theta;
    return y;
}

Tensor* Graph::rope_2d(Tensor* x, Tensor* pos_rc, int n_head, int head_dim, float theta) {
    require(x->ne[0] == int64_t(n_head) * head_dim && head_dim % 4 == 0, Op::ROPE_2D, "bad head layout");
    require(pos_rc->type == Type::I32 && pos_rc->ne[0] == 2 && pos_rc->ne[1] == x->rows(), Op::ROPE_2D,
            "need an I32 (row, col) pair per row");
    Tensor* y = new_node(Op::ROPE_2D, Type::F32, {x->ne[0], x->rows()}, {x, pos_rc});
    y->ip[0] = n_head, y->ip[1] = head_dim, y->fp[0] = theta;
    return y;
}

Tensor* Graph::attn_cached(Tensor* q, Tensor* k, Tensor* v, Tensor* kcache, Tensor* vcache, Tensor* pos,
                           Tensor* seq, int n_head, int n_kv_head, int head_dim, int n_ctx, float scale) {
    const int64_t M = q->rows();
    require(q->ne[0] == int64_t(n_head) * head_dim, Op::ATTN_CACHED, "q width");
    require(k->ne[0] == int64_t(n_kv_head) * head_dim && v->ne[0] == k->ne[0], Op::ATTN_CACHED, "k/v width");
    require(k->rows() == M && v->rows() == M, Op::ATTN_CACHED, "q/k/v row counts differ");
    require(n_kv_head > 0 && n_head % n_kv_head == 0, Op::ATTN_CACHED, "heads not a multiple of kv heads");
    require(kcache->ne[0] == k->ne[0] && vcache->ne[0] == k->ne[0] && kcache->rows() % n_ctx == 0 &&
                vcache->rows() == kcache->rows(),
            Op::ATTN_CACHED, "cache shape");
    require(pos->type == Type::I32 && pos->ne[0] == M && seq->type == Type::I32 && seq->ne[0] == M,
            Op::ATTN_CACHED, "pos/seq must be I32 [rows]");
    Tensor* y = new_node(Op::ATTN_CACHED, Type::F32, {q->ne[0], M}, {q, k, v, kcache, vcache, pos, seq});
    y->ip[0] = n_head, y->ip[1] = n_kv_head, y->ip[2] = head_dim, y->ip[3] = n_ctx, y->fp[0] = scale;
    return y;
}

Tensor* Graph::attn_full(Tensor* q, Tensor* k, Tensor* v, int n_head, int head_dim, float scale) {
    require(q->ne[0] == int64_t(n_head) * head_dim && k->ne[0] == q->ne[0] && v->ne[0] == q->ne[0],
            Op::ATTN_FULL, "q/k/v width");
    require(k->rows() == q->rows() && v->rows() == q->rows(), Op::ATTN_FULL, "q/k/v row counts differ");
    Tensor* y = new_node(Op::ATTN_FULL, Type::F32, {q->ne[0], q->rows()}, {q, k, v});
    y->ip[0] = n_head, y->ip[1] = head_dim, y->fp[0] = scale;
    return y;
}

Tensor* Graph::swiglu(Tensor* gate, Tensor* up) {
    require(gate->nelements() == up->nelements(), Op::SWIGLU, "gate and up differ in size");
    return new_node(Op::SWIGLU, Type::F32, {gate->ne[0], gate->rows()}, {gate, up});
}

Tensor* Graph::gelu(Tensor* x) { return new_node(Op::GELU, Type::F32, {x->ne[0], x->rows()}, {x}); }

Tensor* Graph::add(Tensor* a, Tensor* b) {
    require(a->nelements() == b->nelements() && a->ne[0] == b->ne[0], Op::ADD, "shapes differ");
    return new_node(Op::ADD, Type::F32, {a->ne[0], a->rows()}, {a, b});
}

Tensor* Graph::im2col_patch(Tensor* pixels, int patch) {
    const int64_t W = pixels->ne[0], H = pixels->ne[1], C = pixels->ne[2];
    require(pixels->type == Type::F32 && W % patch == 0 && H % patch == 0, Op::IM2COL_PATCH,
            "image sides must be multiples of the patch size");
    Tensor* y = new_node(Op::IM2COL_PATCH, Type::F32, {C * patch * patch, (H / patch) * (W / patch)}, {pixels});
    y->ip[0] = patch;
    return y;
}

Tensor* Graph::patch_merge(Tensor* x, int h, int w) {
    require(x->rows() == int64_t(h) * w && h % 2 == 0 && w % 2 == 0, Op::PATCH_MERGE, "grid must be even and match rows");
    Tensor* y = new_node(Op::PATCH_MERGE, Type::F32, {4 * x->ne[0], int64_t(h / 2) * (w / 2)}, {x});
    y->ip[0] = h, y->ip[1] = w;
    return y;
}

Tensor* Graph::scatter_rows(Tensor* dst, Tensor* rows, Tensor* idx) {
    require(rows->ne[0] == dst->ne[0], Op::SCATTER_ROWS, "row widths differ");
    require(idx->type == Type::I32 && idx->ne[0] == rows->rows(), Op::SCATTER_ROWS, "need one I32 index per row");
    return new_node(Op::SCATTER_ROWS, Type::F32, {dst->ne[0], dst->rows()}, {dst, rows, idx});
}

Tensor* Graph::view_rows(Tensor* x, int64_t first, int64_t count) {
    require(first >= 0 && count >= 0 && first + count <= x->rows(), Op::VIEW_ROWS, "row range out of bounds");
    Tensor* y = new_node(Op::VIEW_ROWS, Type::F32, {x->ne[0], count}, {x});
    y->ip[0] = int32_t(first), y->ip[1] = int32_t(count);
    return y;
}

Tensor* Graph::argmax(Tensor* x) {
    require(x->type == Type::F32, Op::ARGMAX, "x must be F32");
    return new_node(Op::ARGMAX, Type::I32, {x->rows()}, {x});
}

}  // namespace fp4
