// graph_plan.h — memory planning for running a graph on the CPU backend. Every input and every node
// that owns memory gets an offset in one arena; a buffer is reused once the last node reading it (also
// through VIEW_ROWS aliases) has run, except for outputs, which stay valid until the next graph runs.
#pragma once

#include <cstddef>
#include <utility>
#include <vector>

#include "fp4.h"

namespace fp4::cpu {

struct GraphPlan {
    size_t arena_bytes = 0;
    std::vector<std::pair<Tensor*, size_t>> slots;  // (tensor, byte offset) for inputs and non-view nodes
};

// Throws if a node reads a node of another graph.
GraphPlan plan_graph(const Graph& g);

}  // namespace fp4::cpu
