// mistral3.h — the Mistral3 model as the rest of the program sees it: its configuration, its weights
// (ggml-fp4 leaves bound to the checkpoint's bytes), and the graph builders for the text decoder, the
// Pixtral vision tower and the multimodal projector.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "fp4.h"
#include "quant_scheme.h"

namespace mistral {

struct TextConfig {
    int64_t hidden = 0, intermediate = 0, vocab = 0;
    int n_layer = 0, n_head = 0, n_kv_head = 0, head_dim = 0;
    int64_t max_pos = 0;
    float rope_theta = 0, norm_eps = 1e-5f;
};

struct VisionConfig {
    int64_t hidden = 0, intermediate = 0;
    int n_layer = 0, n_head = 0, head_dim = 0, patch = 0, image_size = 0, channels = 3;
    float rope_theta = 10000.0f, norm_eps = 1e-5f;
};

struct Config {
    std::string architecture;        // Mistral3ForConditionalGeneration or MistralForCausalLM
    TextConfig text;
    bool has_vision = false;
    VisionConfig vision;
    int spatial_merge = 2;
    int image_token = 10, image_break_token = 12, image_end_token = 13;
    float projector_eps = 1e-5f;
    bool tie_embeddings = false;     // true only when no lm_head tensor exists
    std::string quant_format;        // "" (dense) or "nvfp4-pack-quantized"
    QuantScheme quant;               // quantization_config targets and ignore (empty when dense)
    bool activations_quantized = false;  // a config group quantizes input activations too (NVFP4 W4A4): not
                                         // applied here, the products keep BF16/F32 activations (A16)
};

// A linear layer: F32/BF16/F16 dense weight or NVFP4 (codes + scales + global scale).
using Linear = fp4::Tensor*;

// A pre-norm transformer block; the text decoder and the Pixtral tower share this shape.
struct Block {
    fp4::Tensor* attn_norm = nullptr;  // input_layernorm / attention_norm
    Linear wq = nullptr, wk = nullptr, wv = nullptr, wo = nullptr;
    fp4::Tensor* ffn_norm = nullptr;   // post_attention_layernorm / ffn_norm
    Linear w_gate = nullptr, w_up = nullptr, w_down = nullptr;

    std::vector<fp4::Tensor*> tensors() const { return {attn_norm, wq, wk, wv, wo, ffn_norm, w_gate, w_up, w_down}; }
};

struct Weights {
    fp4::Tensor* tok_embd = nullptr;  // [vocab, D]
    std::vector<Block> layers;
    fp4::Tensor* out_norm = nullptr;  // [D]
    Linear lm_head = nullptr;         // [vocab, D] (== tok_embd when tied)

    fp4::Tensor* patch_conv = nullptr;  // [d, C·p·p] (the conv kernel [d, C, p, p] flattened)
    fp4::Tensor* ln_pre = nullptr;      // [d]
    std::vector<Block> vision_layers;
    fp4::Tensor* mm_norm = nullptr;     // projector norm [d]
    Linear mm_merge = nullptr;          // patch_merger.merging_layer [d, 4d]
    Linear mm_linear1 = nullptr;        // [D, d]
    Linear mm_linear2 = nullptr;        // [D, D]

    std::vector<std::unique_ptr<fp4::Tensor>> owned;  // every tensor above
    std::vector<fp4::Tensor*> all() const;            // each distinct tensor once
    std::vector<fp4::Tensor*> text() const;           // those of the text decoder (what decoding reads)
    size_t bytes() const;                             // storage of all weights (codes + scales)
};

}  // namespace mistral
