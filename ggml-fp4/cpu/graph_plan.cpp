// graph_plan.cpp — liveness analysis over the node order and a best-fit offset allocator.
#include "cpu/graph_plan.h"

#include <algorithm>
#include <cstdint>
#include <limits>
#include <map>
#include <stdexcept>
#include <unordered_map>

#include "cpu/buffer.h"

namespace fp4::cpu {

namespace {

// Hands out byte ranges of a growing arena, reusing released ones (best fit, neighbours merged).
class OffsetAllocator {
public:
    size_t alloc(size_t bytes) {
        bytes = align_up(std::max<size_t>(bytes, 1));
        auto best = free_.end();
        for (auto it = free_.begin(); it != free_.end(); ++it)
            if (it->second >= bytes && (best == free_.end() || it->second < best->second)) best = it;
        if (best == free_.end()) {
            // Grow the arena, starting inside a free block at its end if there is one.
            size_t offset = top_;
            if (!free_.empty() && std::prev(free_.end())->first + std::prev(free_.end())->second == top_) {
                offset = std::prev(free_.end())->first;
                free_.erase(std::prev(free_.end()));
            }
            top_ = offset + bytes;
            return offset;
        }
        const size_t offset = best->first, left = best->second - bytes;
        free_.erase(best);
        if (left) free_[offset + bytes] = left;
        return offset;
    }

    void release(size_t offset, size_t bytes) {
        bytes = align_up(std::max<size_t>(bytes, 1));
        auto next = free_.lower_bound(offset);
        if (next != free_.end() && offset + bytes == next->first) {
            bytes += next->second;
            next = free_.erase(next);
        }
        if (next != free_.begin()) {
            auto prev = std::prev(next);
            if (prev->first + prev->second == offset) {
                prev->second += bytes;
                return;
            }
        }
        free_[offset] = bytes;
    }

    size_t size() const { return top_; }

private:
    std::map<size_t, size_t> free_;  // offset -> bytes
    size_t top_ = 0;
};

size_t storage_bytes(const Tensor& t) {
    if (t.type == Type::NVFP4) throw std::invalid_argument("graph input '" + t.name + "' cannot be NVFP4");
    return t.nbytes();
}

}  // namespace

GraphPlan plan_graph(const Graph& g) {
    constexpr int64_t kKeep = std::numeric_limits<int64_t>::max();
    const auto& nodes = g.nodes();
    // The tensor whose memory each graph tensor uses (itself, or a view's source), and for each such
    // owner the index of the last node that reads it.
    std::unordered_map<const Tensor*, Tensor*> owner;
    std::unordered_map<const Tensor*, int64_t> last_use;
    std::vector<Tensor*> owners;  // inputs, then nodes with memory, in order
    for (Tensor* t : g.inputs()) {
        owner[t] = t;
        last_use[t] = t->is_output ? kKeep : -1;
        owners.push_back(t);
    }
    for (int64_t i = 0; i < int64_t(nodes.size()); ++i) {
        Tensor* n = nodes[size_t(i)];
        for (Tensor* s : n->src) {
            if (!s) continue;
            auto it = owner.find(s);
            if (it == owner.end()) {
                if (s->op != Op::NONE)
                    throw std::invalid_argument(std::string(op_name(n->op)) + " reads '" + s->name +
                                                "', a node of another graph");
                continue;  // weight or persistent leaf
            }
            if (it->second) last_use[it->second] = std::max(last_use[it->second], i);
        }
        Tensor* mem = n;
        if (n->op == Op::VIEW_ROWS) {
            auto it = owner.find(n->src[0]);
            mem = it == owner.end() ? nullptr : it->second;
        } else {
            last_use[n] = i;
            owners.push_back(n);
        }
        owner[n] = mem;
        if (n->is_output && mem) last_use[mem] = kKeep;
    }

    std::vector<std::vector<Tensor*>> release_after(nodes.size() + 1);  // [0]: before the first node
    for (Tensor* t : owners)
        if (last_use[t] != kKeep) release_after[size_t(last_use[t] + 1)].push_back(t);

    GraphPlan plan;
    OffsetAllocator arena;
    std::unordered_map<const Tensor*, size_t> offset;
    auto place = [&](Tensor* t) {
        offset[t] = arena.alloc(storage_bytes(*t));
        plan.slots.emplace_back(t, offset[t]);
    };
    auto release = [&](size_t step) {
        for (Tensor* t : release_after[step]) arena.release(offset[t], storage_bytes(*t));
    };
    for (Tensor* t : g.inputs()) place(t);
    release(0);
    for (size_t i = 0; i < nodes.size(); ++i) {
        if (nodes[i]->op != Op::VIEW_ROWS) place(nodes[i]);
        release(i + 1);
    }
    plan.arena_bytes = arena.size();
    return plan;
}

}  // namespace fp4::cpu
