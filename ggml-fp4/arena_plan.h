// arena_plan.h — where a device backend puts a graph's buffers: every input and every node a step writes
// gets an offset in one arena, planned by liveness. A step's outputs are taken before the buffers its
// sources used for the last time are given back, so a (fused) step never writes over what it reads;
// nodes internal to a fused step get no buffer; outputs are never given back.
#pragma once

#include <cstddef>
#include <unordered_map>
#include <vector>

#include "fusion.h"

namespace fp4 {

struct ArenaPlan {
    std::unordered_map<const Tensor*, size_t> offset;  // inputs and step outputs
    size_t bytes = 0;
};

ArenaPlan plan_arena(const Graph& g, const std::vector<Step>& steps, size_t alignment = 256);

}  // namespace fp4
