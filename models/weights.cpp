// weights.cpp — enumeration and byte count of a model's weight tensors.
#include <set>

#include "mistral3.h"

namespace mistral {

std::vector<fp4::Tensor*> Weights::all() const {
    std::vector<fp4::Tensor*> out;
    std::set<const fp4::Tensor*> seen;
    auto add = [&](fp4::Tensor* t) {
        if (t && seen.insert(t).second) out.push_back(t);
    };
    add(tok_embd);
    for (const TextLayer& L : layers)
        for (fp4::Tensor* t : {L.attn_norm, L.wq, L.wk, L.wv, L.wo, L.ffn_norm, L.w_gate, L.w_up, L.w_down}) add(t);
    add(out_norm);
    add(lm_head);
    add(patch_conv);
    add(ln_pre);
    for (const VisionLayer& L : vision_layers)
        for (fp4::Tensor* t : {L.attn_norm, L.wq, L.wk, L.wv, L.wo, L.ffn_norm, L.w_gate, L.w_up, L.w_down}) add(t);
    add(mm_norm);
    add(mm_merge);
    add(mm_linear1);
    add(mm_linear2);
    return out;
}

size_t Weights::bytes() const {
    size_t n = 0;
    for (const fp4::Tensor* t : all()) n += t->nbytes() + t->scale_bytes();
    return n;
}

}  // namespace mistral
