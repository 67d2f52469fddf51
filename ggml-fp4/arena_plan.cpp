// arena_plan.cpp — plan_arena: first fit over a short sorted list of free ranges, neighbours merged on
// release; last uses found in one pass over the steps.
#include "arena_plan.h"

#include <algorithm>

namespace fp4 {

namespace {

class FreeList {
public:
    size_t take(size_t n) {
        for (size_t i = 0; i < free_.size(); ++i)
            if (free_[i].size >= n) {
                const size_t off = free_[i].off;
                free_[i].off += n, free_[i].size -= n;
                if (free_[i].size == 0) free_.erase(free_.begin() + std::ptrdiff_t(i));
                return off;
            }
        const size_t off = end;
        end += n;
        return off;
    }
    void release(size_t off, size_t n) {
        if (n == 0) return;
        auto it = std::lower_bound(free_.begin(), free_.end(), off, [](const Range& r, size_t o) { return r.off < o; });
        it = free_.insert(it, Range{off, n});
        auto next = it + 1;
        if (next != free_.end() && off + n == next->off) it->size += next->size, free_.erase(next);
        if (it != free_.begin()) {
            auto prev = it - 1;
            if (prev->off + prev->size == it->off) prev->size += it->size, free_.erase(it);
        }
    }
    size_t end = 0;

private:
    struct Range { size_t off, size; };
    std::vector<Range> free_;  // by offset
};

}  // namespace

ArenaPlan plan_arena(const Graph& g, const std::vector<Step>& steps, size_t alignment) {
    const std::vector<Tensor*>& inputs = g.inputs();
    const std::vector<Tensor*>& nodes = g.nodes();
    ArenaPlan plan;
    plan.input_offset.assign(inputs.size(), ArenaPlan::kNone);
    plan.node_offset.assign(nodes.size(), ArenaPlan::kNone);
    FreeList arena;
    auto size_of = [alignment](const Tensor* t) { return (t->nbytes() + alignment - 1) / alignment * alignment; };
    // Buffers that live in the arena are inputs and step outputs; the step that reads each for the last time.
    std::vector<size_t> last_input(inputs.size(), ArenaPlan::kNone), last_node(nodes.size(), ArenaPlan::kNone);
    auto last_of = [&](const Tensor* s) -> size_t* {
        if (!s) return nullptr;
        if (s->op != Op::NONE) return &last_node[size_t(s->index)];
        return s->host ? &last_input[size_t(s->index)] : nullptr;  // weights and caches live elsewhere
    };
    for (size_t i = 0; i < steps.size(); ++i)
        for (const Tensor* t : steps[i].nodes)
            for (const Tensor* s : t->src)
                if (size_t* l = last_of(s)) *l = i;
    for (const Tensor* t : inputs) plan.input_offset[size_t(t->index)] = arena.take(size_of(t));
    for (size_t i = 0; i < steps.size(); ++i) {
        for (const Tensor* t : steps[i].outputs()) plan.node_offset[size_t(t->index)] = arena.take(size_of(t));
        for (const Tensor* t : steps[i].nodes)
            for (const Tensor* s : t->src) {
                size_t* l = last_of(s);
                if (!l || *l != i) continue;
                *l = ArenaPlan::kNone;  // given back once, even when read twice by this step
                const size_t off = plan.offset_of(*s);
                if (off != ArenaPlan::kNone && !s->is_output) arena.release(off, size_of(s));
            }
    }
    plan.bytes = arena.end;
    return plan;
}

}  // namespace fp4
