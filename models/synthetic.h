// synthetic.h — random weights with the shapes of a config (text decoder only), for measuring speed
// without a checkpoint: NVFP4 linears (when the config is quantized) and BF16 embeddings, lm_head and norms.
#pragma once

#include <cstdint>
#include <memory>

#include "mistral3.h"

namespace mistral {

struct SyntheticWeights {
    Weights weights;
    std::shared_ptr<void> storage;  // owns the bytes the weights point at
};

// Values are scaled so activations stay finite through every layer; `threads` fill memory in parallel.
SyntheticWeights make_synthetic_weights(const Config& cfg, uint64_t seed, int threads);

}  // namespace mistral
