// weight_layout.cpp — the names, shapes and classes of the text decoder's, the Pixtral tower's and the
// projector's weights.
#include "weight_layout.h"

namespace mistral {

void bind_text(WeightSource& b, Config& cfg, Weights& w) {
    const TextConfig& c = cfg.text;
    const int64_t D = c.hidden, q = int64_t(c.n_head) * c.head_dim, kv = int64_t(c.n_kv_head) * c.head_dim;
    w.tok_embd = b.linear(kTextPrefix + "embed_tokens", c.vocab, D, "tok_embd", "Embedding");
    w.layers.resize(size_t(c.n_layer));
    for (int i = 0; i < c.n_layer; ++i) {
        const std::string p = kTextPrefix + "layers." + std::to_string(i) + ".";
        const std::string r = "layers." + std::to_string(i) + ".";
        Block& L = w.layers[size_t(i)];
        L.attn_norm = b.dense(p + "input_layernorm.weight", {D}, r + "attn_norm");
        L.wq = b.linear(p + "self_attn.q_proj", q, D, r + "wq");
        L.wk = b.linear(p + "self_attn.k_proj", kv, D, r + "wk");
        L.wv = b.linear(p + "self_attn.v_proj", kv, D, r + "wv");
        L.wo = b.linear(p + "self_attn.o_proj", D, q, r + "wo");
        L.ffn_norm = b.dense(p + "post_attention_layernorm.weight", {D}, r + "ffn_norm");
        L.w_gate = b.linear(p + "mlp.gate_proj", c.intermediate, D, r + "w_gate");
        L.w_up = b.linear(p + "mlp.up_proj", c.intermediate, D, r + "w_up");
        L.w_down = b.linear(p + "mlp.down_proj", D, c.intermediate, r + "w_down");
    }
    w.out_norm = b.dense(kTextPrefix + "norm.weight", {D}, "out_norm");
    cfg.tie_embeddings = !b.has("lm_head.weight") && !b.has("lm_head.weight_packed");
    w.lm_head = cfg.tie_embeddings ? w.tok_embd : b.linear("lm_head", c.vocab, D, "lm_head");
}

void bind_vision(WeightSource& b, const Config& cfg, Weights& w) {
    const VisionConfig& v = cfg.vision;
    const int64_t d = v.hidden, D = cfg.text.hidden, p = v.patch, C = v.channels;
    w.patch_conv = b.dense(kVisionPrefix + "patch_conv.weight", {d, C, p, p}, "patch_conv", {C * p * p, d});
    w.ln_pre = b.dense(kVisionPrefix + "ln_pre.weight", {d}, "ln_pre");
    w.vision_layers.resize(size_t(v.n_layer));
    for (int j = 0; j < v.n_layer; ++j) {
        const std::string px = kVisionPrefix + "transformer.layers." + std::to_string(j) + ".";
        const std::string r = "vision_layers." + std::to_string(j) + ".";
        Block& L = w.vision_layers[size_t(j)];
        L.attn_norm = b.dense(px + "attention_norm.weight", {d}, r + "attn_norm");
        L.wq = b.linear(px + "attention.q_proj", d, d, r + "wq");
        L.wk = b.linear(px + "attention.k_proj", d, d, r + "wk");
        L.wv = b.linear(px + "attention.v_proj", d, d, r + "wv");
        L.wo = b.linear(px + "attention.o_proj", d, d, r + "wo");
        L.ffn_norm = b.dense(px + "ffn_norm.weight", {d}, r + "ffn_norm");
        L.w_gate = b.linear(px + "feed_forward.gate_proj", v.intermediate, d, r + "w_gate");
        L.w_up = b.linear(px + "feed_forward.up_proj", v.intermediate, d, r + "w_up");
        L.w_down = b.linear(px + "feed_forward.down_proj", d, v.intermediate, r + "w_down");
    }
    const int64_t m2 = int64_t(cfg.spatial_merge) * cfg.spatial_merge;
    w.mm_norm = b.dense(kProjectorPrefix + "norm.weight", {d}, "mm_norm");
    w.mm_merge = b.linear(kProjectorPrefix + "patch_merger.merging_layer", d, d * m2, "mm_merge");
    w.mm_linear1 = b.linear(kProjectorPrefix + "linear_1", D, d, "mm_linear1");
    w.mm_linear2 = b.linear(kProjectorPrefix + "linear_2", D, D, "mm_linear2");
}

}  // namespace mistral
