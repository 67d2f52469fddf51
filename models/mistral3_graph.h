// mistral3_graph.h — the graph builders of Mistral3: one text decoder pass (prefill, decode or batched
// decode through the KV cache) and one image through the Pixtral tower and the projector.
#pragma once

#include <vector>

#include "fp4.h"
#include "mistral3.h"

namespace mistral {

// Per-layer K and V caches of `n_seq` sequences × `n_ctx` positions each.
struct KvCache {
    int n_ctx = 0, n_seq = 0;
    std::vector<std::unique_ptr<fp4::Tensor>> k, v;
};

// The host-side inputs of one text pass; pointers must outlive the graph's compute.
struct TextInputs {
    int64_t n_tokens = 0;
    const int32_t* ids = nullptr;
    const int32_t* pos = nullptr;        // position of each token in its sequence
    const int32_t* seq = nullptr;        // sequence of each token
    int64_t n_image_rows = 0;            // projected image rows replacing [IMG] embeddings
    const float* image_rows = nullptr;   // [n_image_rows, D]
    const int32_t* image_slots = nullptr;  // token index each image row goes to
    int64_t logits_first = 0, logits_count = 0;  // rows of logits to compute (0 count: none)
    bool argmax_only = false;            // output each logits row's argmax instead of the logits
};

struct TextOutputs {
    fp4::Tensor* logits = nullptr;        // [logits_count, vocab] or null
    fp4::Tensor* argmax = nullptr;        // I32 [logits_count] instead, with argmax_only
    std::vector<fp4::Tensor*> hidden;     // when asked: [0] embeddings, [l] residual after layer l,
                                          // [n_layer] after the final norm (as transformers)
};

TextOutputs build_text_graph(fp4::Graph& g, const Config& cfg, const Weights& w, KvCache& cache,
                             const TextInputs& in, bool want_hidden);

// One preprocessed image [3, H, W] (H, W multiples of patch·merge) -> [rows·cols, D] projected rows.
// `pos_rc` holds (row, col) of each patch, (H/p)·(W/p) pairs, filled by the caller.
fp4::Tensor* build_vision_graph(fp4::Graph& g, const Config& cfg, const Weights& w, const float* pixels,
                                int height, int width, const int32_t* pos_rc);

}  // namespace mistral
