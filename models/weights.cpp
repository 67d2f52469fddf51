// weights.cpp — enumeration and byte count of a model's weight tensors.
#include <set>

#include "mistral3.h"

namespace mistral {

namespace {

// Collects non-null tensors, each once (a tied lm_head is the embedding).
struct Distinct {
    std::vector<fp4::Tensor*> out;
    std::set<const fp4::Tensor*> seen;
    void add(fp4::Tensor* t) {
        if (t && seen.insert(t).second) out.push_back(t);
    }
    void add(const std::vector<Block>& blocks) {
        for (const Block& b : blocks)
            for (fp4::Tensor* t : b.tensors()) add(t);
    }
};

}  // namespace

std::vector<fp4::Tensor*> Weights::text() const {
    Distinct d;
    d.add(tok_embd);
    d.add(layers);
    d.add(out_norm);
    d.add(lm_head);
    return d.out;
}

std::vector<fp4::Tensor*> Weights::all() const {
    Distinct d;
    for (fp4::Tensor* t : text()) d.add(t);
    d.add(patch_conv);
    d.add(ln_pre);
    d.add(vision_layers);
    for (fp4::Tensor* t : {mm_norm, mm_merge, mm_linear1, mm_linear2}) d.add(t);
    return d.out;
}

size_t Weights::bytes() const {
    size_t n = 0;
    for (const fp4::Tensor* t : all()) n += t->nbytes() + t->scale_bytes();
    return n;
}

}  // namespace mistral
