// profile.cpp — grouping and sorting of node times.
#include "profile.h"

#include <algorithm>

namespace fp4 {

namespace {

std::string shape_of(const Tensor& w) { return std::to_string(w.ne[1]) + "x" + std::to_string(w.ne[0]); }

std::string describe(const Tensor& node) {
    std::string what = op_name(node.op);
    if (node.op == Op::MUL_MAT || node.op == Op::GET_ROWS)
        what += std::string(" ") + type_name(node.src[0]->type) + " " + shape_of(*node.src[0]);
    return what;
}

// What a product reads of its weight: the whole table (a GET_ROWS reads only some rows: not counted).
double weight_bytes(const Tensor& node) {
    return node.op == Op::MUL_MAT ? double(node.src[0]->nbytes() + node.src[0]->scale_bytes()) : 0.0;
}

}  // namespace

void Profiler::add(const Tensor& node, double ms) { add(describe(node), ms, weight_bytes(node)); }

// A fused step reads as its parts: "RMS_NORM+MUL_MAT NVFP4 32768x5120,32768x5120+SWIGLU", "ROPE+ROPE+ATTN_CACHED";
// BF16 links (fusion.h) as "(bf16 out)" after the step that stores one and "(bf16 in)" after the products
// that read one.
void Profiler::add(const Step& step, double ms) {
    const std::string out = step.bf16_out ? " (bf16 out)" : "";
    if (!step.fused()) {
        const Tensor& node = *step.nodes.front();
        return add(describe(node) + out, ms, weight_bytes(node));
    }
    if (step.products.empty()) {
        std::string what;
        for (const Tensor* t : step.nodes) what += (what.empty() ? "" : "+") + std::string(op_name(t->op));
        return add(what, ms, 0.0);
    }
    std::string what = step.norm ? "RMS_NORM+" : "";
    what += describe(*step.products.front());
    double bytes = weight_bytes(*step.products.front());
    for (size_t i = 1; i < step.products.size(); ++i) {
        what += "," + shape_of(*step.products[i]->src[0]);
        bytes += weight_bytes(*step.products[i]);
    }
    if (step.bf16_in) what += " (bf16 in)";
    if (step.epilogue) what += std::string("+") + op_name(step.epilogue->op);
    add(what + out, ms, bytes);
}

void Profiler::add(const std::string& what, double ms, double weight_bytes) {
    OpProfile& p = totals_[what];
    p.what = what;
    p.calls += 1;
    p.ms += ms;
    p.weight_bytes += weight_bytes;
}

std::vector<OpProfile> Profiler::report() const {
    std::vector<OpProfile> out;
    for (const auto& [key, p] : totals_) out.push_back(p);
    std::sort(out.begin(), out.end(), [](const OpProfile& a, const OpProfile& b) { return a.ms > b.ms; });
    return out;
}

}  // namespace fp4
