// checkpoint.h — open a Hugging Face model folder: config.json, the safetensors (single or sharded),
// and every weight the config implies bound into mistral::Weights, validated by name, dtype and shape.
//
// Weight tensors point straight into the read-only mappings (no host copy): never write through
// `data`/`scale`. Keep the Checkpoint alive as long as its Weights (or a backend's copy source) are used.
// Names are normalised first, so the transformers ≥ 4.52 layout (`model.language_model.*`, `lm_head.*`,
// `model.vision_tower.*`, `model.multi_modal_projector.*`), the older one (`language_model.model.*`,
// `language_model.lm_head.*`, `vision_tower.*`, `multi_modal_projector.*`) and MistralForCausalLM's
// (`model.layers.*`, `model.embed_tokens.*`, `model.norm.*`) all load. Each linear is NVFP4 when
// `X.weight_packed` + `X.weight_scale` + `X.weight_global_scale` exist, else dense `X.weight`
// (BF16/F16/F32). Errors are std::runtime_error, one line naming the file and the tensor.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "mistral3.h"
#include "safetensors.h"

namespace mistral {

struct LoadOptions {
    bool text_only = false;  // skip the vision tower and projector; config().has_vision becomes false
    bool verbose = false;    // print the tensors no weight uses to stderr
    bool prefault = true;    // read every weight page once (page cache, no copy) so the load shows progress
    // Called with bytes done / total while scales are validated and pages faulted in; ends with done == total.
    std::function<void(size_t bytes_done, size_t bytes_total)> progress;
};

// The checkpoint name a tensor has in the transformers ≥ 4.52 layout (see above).
std::string canonical_name(const std::string& name);

class Checkpoint {
public:
    static std::unique_ptr<Checkpoint> open(const std::string& dir, const LoadOptions& opt = {});

    const Config& config() const { return config_; }
    Weights& weights() { return weights_; }
    const Weights& weights() const { return weights_; }
    const SafeTensorSet& tensors() const { return *tensors_; }
    const std::string& dir() const { return dir_; }
    // Names (as in the files) of tensors that no weight uses, sorted.
    std::vector<std::string> unused() const;
    // One line per file tensor: name, dtype, shape, bytes, and the weight it became (or "unused").
    std::vector<std::string> describe() const;

private:
    Checkpoint() = default;
    std::string dir_;
    Config config_;
    std::unique_ptr<SafeTensorSet> tensors_;
    Weights weights_;
    std::map<std::string, std::string> role_;  // file tensor name -> what it became
};

}  // namespace mistral
