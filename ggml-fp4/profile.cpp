// profile.cpp — grouping and sorting of node times.
#include "profile.h"

#include <algorithm>

namespace fp4 {

void Profiler::add(const Tensor& node, double ms) {
    std::string what = op_name(node.op);
    if (node.op == Op::MUL_MAT || node.op == Op::GET_ROWS) {
        const Tensor& w = *node.src[0];
        what += std::string(" ") + type_name(w.type) + " " + std::to_string(w.ne[1]) + "x" + std::to_string(w.ne[0]);
    }
    OpProfile& p = totals_[what];
    p.what = what;
    p.calls += 1;
    p.ms += ms;
}

std::vector<OpProfile> Profiler::report() const {
    std::vector<OpProfile> out;
    for (const auto& [key, p] : totals_) out.push_back(p);
    std::sort(out.begin(), out.end(), [](const OpProfile& a, const OpProfile& b) { return a.ms > b.ms; });
    return out;
}

}  // namespace fp4
