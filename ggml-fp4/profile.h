// profile.h — per-node timing totals for Backend::profile(): nodes are grouped by what they compute (the op,
// and for MUL_MAT and GET_ROWS the table's type and shape), so a decode step reads as a short table.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "fp4.h"

namespace fp4 {

class Profiler {
public:
    void add(const Tensor& node, double ms);
    void reset() { totals_.clear(); }
    std::vector<OpProfile> report() const;  // most time first

private:
    std::map<std::string, OpProfile> totals_;
};

}  // namespace fp4
