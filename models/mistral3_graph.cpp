// mistral3_graph.cpp — Mistral3 as a graph: the Mistral text decoder, the Pixtral vision tower and the
// patch-merge projector, op for op as spec/model-math.md §2–§4 describe them.
#include "mistral3_graph.h"

#include <cmath>

namespace mistral {

using fp4::Graph;
using fp4::Tensor;

// SwiGLU feed-forward shared by the text decoder and the vision tower. The products that read the same
// input are built one after another (here and for q/k/v) so that a backend can run them as one group.
static Tensor* feed_forward(Graph& g, Tensor* x, Linear gate, Linear up, Linear down) {
    Tensor* gated = g.mul_mat(gate, x);
    Tensor* upped = g.mul_mat(up, x);
    return g.mul_mat(down, g.swiglu(gated, upped));
}

TextOutputs build_text_graph(Graph& g, const Config& cfg, const Weights& w, KvCache& cache,
                             const TextInputs& in, bool want_hidden) {
    const TextConfig& c = cfg.text;
    const int64_t T = in.n_tokens;
    TextOutputs out;

    Tensor* ids = g.input(fp4::Type::I32, {T}, in.ids, "ids");
    Tensor* pos = g.input(fp4::Type::I32, {T}, in.pos, "pos");
    Tensor* seq = g.input(fp4::Type::I32, {T}, in.seq, "seq");

    Tensor* x = g.get_rows(w.tok_embd, ids);
    if (in.n_image_rows > 0) {
        Tensor* rows = g.input(fp4::Type::F32, {c.hidden, in.n_image_rows}, in.image_rows, "image_rows");
        Tensor* slots = g.input(fp4::Type::I32, {in.n_image_rows}, in.image_slots, "image_slots");
        x = g.scatter_rows(x, rows, slots);
    }
    if (want_hidden) out.hidden.push_back(g.mark_output(x));

    const float kq_scale = 1.0f / std::sqrt(float(c.head_dim));
    for (int il = 0; il < c.n_layer; ++il) {
        const Block& L = w.layers[size_t(il)];
        Tensor* a = g.rms_norm(x, L.attn_norm, c.norm_eps);
        Tensor* q = g.mul_mat(L.wq, a);
        Tensor* k = g.mul_mat(L.wk, a);
        Tensor* v = g.mul_mat(L.wv, a);
        q = g.rope(q, pos, c.n_head, c.head_dim, c.rope_theta);
        k = g.rope(k, pos, c.n_kv_head, c.head_dim, c.rope_theta);
        Tensor* o = g.attn_cached(q, k, v, cache.k[size_t(il)].get(), cache.v[size_t(il)].get(), pos, seq,
                                  c.n_head, c.n_kv_head, c.head_dim, cache.n_ctx, kq_scale);
        x = g.add(x, g.mul_mat(L.wo, o));
        Tensor* m = g.rms_norm(x, L.ffn_norm, c.norm_eps);
        x = g.add(x, feed_forward(g, m, L.w_gate, L.w_up, L.w_down));
        if (want_hidden && il + 1 < c.n_layer) out.hidden.push_back(g.mark_output(x));
    }
    // As transformers reports them, the last hidden state is taken after the final norm.
    if (want_hidden) out.hidden.push_back(g.mark_output(g.rms_norm(x, w.out_norm, c.norm_eps)));

    if (in.logits_count > 0) {
        if (in.logits_first != 0 || in.logits_count != T) x = g.view_rows(x, in.logits_first, in.logits_count);
        Tensor* logits = g.mul_mat(w.lm_head, g.rms_norm(x, w.out_norm, c.norm_eps));
        if (in.argmax_only) out.argmax = g.mark_output(g.argmax(logits));
        else out.logits = g.mark_output(logits);
    }
    return out;
}

Tensor* build_vision_graph(Graph& g, const Config& cfg, const Weights& w, const float* pixels, int height,
                           int width, const int32_t* pos_rc) {
    const VisionConfig& v = cfg.vision;
    const int gh = height / v.patch, gw = width / v.patch;

    Tensor* pix = g.input(fp4::Type::F32, {width, height, v.channels}, pixels, "pixels");
    Tensor* prc = g.input(fp4::Type::I32, {2, int64_t(gh) * gw}, pos_rc, "pos_rc");

    Tensor* x = g.mul_mat(w.patch_conv, g.im2col_patch(pix, v.patch));
    x = g.rms_norm(x, w.ln_pre, v.norm_eps);

    const float kq_scale = 1.0f / std::sqrt(float(v.head_dim));
    for (const Block& L : w.vision_layers) {
        Tensor* n = g.rms_norm(x, L.attn_norm, v.norm_eps);
        Tensor* q = g.mul_mat(L.wq, n);
        Tensor* k = g.mul_mat(L.wk, n);
        Tensor* val = g.mul_mat(L.wv, n);
        q = g.rope_2d(q, prc, v.n_head, v.head_dim, v.rope_theta);
        k = g.rope_2d(k, prc, v.n_head, v.head_dim, v.rope_theta);
        Tensor* o = g.attn_full(q, k, val, v.n_head, v.head_dim, kq_scale);
        x = g.add(x, g.mul_mat(L.wo, o));
        x = g.add(x, feed_forward(g, g.rms_norm(x, L.ffn_norm, v.norm_eps), L.w_gate, L.w_up, L.w_down));
    }

    // Projector: norm -> 2x2 patch merge -> linear_1 -> GELU -> linear_2.
    Tensor* m = g.patch_merge(g.rms_norm(x, w.mm_norm, cfg.projector_eps), gh, gw);
    m = g.mul_mat(w.mm_merge, m);
    return g.mark_output(g.mul_mat(w.mm_linear2, g.gelu(g.mul_mat(w.mm_linear1, m))));
}

}  // namespace mistral
