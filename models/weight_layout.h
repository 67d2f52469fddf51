// weight_layout.h — every weight a Mistral3 config implies: its canonical name (the transformers ≥ 4.52
// layout), shape and module class, asked of a WeightSource that supplies the tensor — a checkpoint's bytes
// (checkpoint.cpp) or random ones of the same shapes (synthetic.cpp).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "mistral3.h"

namespace mistral {

inline const std::string kTextPrefix = "model.language_model.";
inline const std::string kVisionPrefix = "model.vision_tower.";
inline const std::string kProjectorPrefix = "model.multi_modal_projector.";

class WeightSource {
public:
    virtual ~WeightSource() = default;
    // Whether the source holds a tensor of this canonical name.
    virtual bool has(const std::string& canon) const = 0;
    // A dense tensor of HF shape `shape` (a norm's weight when it has one dimension); `ne` is its fp4 shape
    // (default: `shape` reversed). `role` names it in messages.
    fp4::Tensor* dense(const std::string& canon, const std::vector<int64_t>& shape, const std::string& role,
                       const std::vector<int64_t>& ne = {}) {
        return make_dense(canon, shape, role, ne.empty() ? std::vector<int64_t>(shape.rbegin(), shape.rend()) : ne);
    }
    // The weight of linear module `x` [out, in] of class `cls`, NVFP4 or dense as the config's
    // quantization_config says.
    fp4::Tensor* linear(const std::string& x, int64_t out, int64_t in, const std::string& role,
                        const std::string& cls = "Linear") {
        return make_linear(x, out, in, role, cls);
    }

protected:
    virtual fp4::Tensor* make_dense(const std::string& canon, const std::vector<int64_t>& shape,
                                    const std::string& role, const std::vector<int64_t>& ne) = 0;
    virtual fp4::Tensor* make_linear(const std::string& x, int64_t out, int64_t in, const std::string& role,
                                     const std::string& cls) = 0;
};

// The text decoder's weights into `w`; sets cfg.tie_embeddings when the source has no lm_head.
void bind_text(WeightSource& src, Config& cfg, Weights& w);
// The Pixtral tower's and the projector's weights into `w`.
void bind_vision(WeightSource& src, const Config& cfg, Weights& w);

}  // namespace mistral
