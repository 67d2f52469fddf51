// fusion.h — the steps a backend may run a graph in: each node alone, or a group of consecutive nodes
// run together. The groups are those of a decode-sized decoder step:
//   linear groups: [RMS_NORM →] 1–3 MUL_MATs reading the same input [→ SWIGLU of two | → ADD of one to a residual]
//   rope groups:   ROPE(q), ROPE(k) → the ATTN_CACHED that reads them (the rotations join the cache store)
// A folded RMS_NORM, products that feed an epilogue and the rotated q and k are never materialised, so a
// group is only formed when nothing else reads them (and they are not outputs).
// BF16 links (rules.bf16_links): a tensor that a norm run alone or a SWIGLU epilogue writes and that only
// linear groups read, as their input, may be stored as BF16: those products round their activations to
// BF16 anyway, so rounding once where the values are made gives the same bits, half the bytes to read and
// no conversions in the products. Knows nothing about any particular model.
#pragma once

#include <cstdint>
#include <vector>

#include "fp4.h"

namespace fp4 {

// What a backend's fused kernels accept.
struct FusionRules {
    Type weight_type = Type::NVFP4;  // every product's weight
    int64_t max_rows = 0;            // rows (M) of a group at most; 0 turns fusion off
    int max_products = 3;
    int64_t max_norm_rows = INT64_MAX;  // a group folds its RMS_NORM for at most this many rows (else it runs alone)
    bool bf16_links = false;            // mark the BF16 links (Step::bf16_in, Step::bf16_out)
};

struct Step {
    std::vector<Tensor*> nodes;     // graph nodes this step computes, in graph order
    Tensor* norm = nullptr;         // RMS_NORM folded into the products' input (not materialised)
    std::vector<Tensor*> products;  // MUL_MATs of a linear group (empty otherwise)
    Tensor* epilogue = nullptr;     // SWIGLU(products[0] = gate, products[1] = up) or ADD(residual, products[0])
    Tensor* attention = nullptr;    // a rope group's ATTN_CACHED; its sources 0 and 1 are the two ROPEs
    bool bf16_out = false;          // its one output is stored as BF16 (a lone RMS_NORM, a SWIGLU epilogue)
    bool bf16_in = false;           // of a linear group without a norm: its input is stored as BF16

    bool fused() const { return !products.empty() || attention; }
    // Of a linear group: the input every product reads (the norm's source when a norm is folded).
    Tensor* input() const { return norm ? norm->src[0] : products.front()->src[1]; }
    // For an ADD epilogue: the source that is not the product.
    Tensor* residual() const;
    // Nodes whose results the step writes: the attention, the epilogue, or the products, or the single node.
    std::vector<Tensor*> outputs() const;
};

// Splits g's nodes into steps, in execution order. With rules.max_rows == 0 every node is its own step.
std::vector<Step> plan_steps(const Graph& g, const FusionRules& rules);

}  // namespace fp4
