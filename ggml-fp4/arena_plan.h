// arena_plan.h — where a device backend puts a graph's buffers: every input and every node a step writes
// gets an offset in one arena, planned by liveness. A step's outputs are taken before the buffers its
// sources used for the last time are given back, so a (fused) step never writes over what it reads;
// nodes internal to a fused step get no buffer; outputs are never given back. Runs once per decode step,
// so it works on the tensors' graph indices (no hashing): a few microseconds for a 24B decode graph.
#pragma once

#include <cstddef>
#include <vector>

#include "fusion.h"

namespace fp4 {

struct ArenaPlan {
    static constexpr size_t kNone = ~size_t(0);
    std::vector<size_t> input_offset;  // by Tensor::index of each input
    std::vector<size_t> node_offset;   // by Tensor::index of each node; kNone inside fused steps
    size_t bytes = 0;
    size_t offset_of(const Tensor& t) const {
        return t.op == Op::NONE ? input_offset[size_t(t.index)] : node_offset[size_t(t.index)];
    }
};

ArenaPlan plan_arena(const Graph& g, const std::vector<Step>& steps, size_t alignment = 256);

}  // namespace fp4
