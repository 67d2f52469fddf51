// profile.h — per-step timing totals for Backend::profile(): steps are grouped by what they compute (the op,
// and for MUL_MAT and GET_ROWS the table's type and shape; a fused step lists its parts), so a decode step
// reads as a short table.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "fusion.h"

namespace fp4 {

class Profiler {
public:
    void add(const Tensor& node, double ms);
    void add(const Step& step, double ms);
    void reset() { totals_.clear(); }
    std::vector<OpProfile> report() const;  // most time first

private:
    void add(const std::string& what, double ms, double weight_bytes);
    std::map<std::string, OpProfile> totals_;
};

}  // namespace fp4
