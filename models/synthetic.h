// synthetic.h — random weights with the shapes of a config, for measuring speed without a checkpoint: the
// text decoder, and the vision tower and projector when the config has them (has_vision); NVFP4 linears
// where its quantization_config quantizes them, BF16 everything else.
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
