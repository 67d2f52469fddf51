// arena_plan.cpp — plan_arena: first-fit over a free list of (offset, size), merging neighbours on release.
#include "arena_plan.h"

#include <iterator>
#include <map>

namespace fp4 {

namespace {

class FreeList {
public:
    size_t take(size_t n) {
        for (auto it = free_.begin(); it != free_.end(); ++it)
            if (it->second >= n) {
                const size_t off = it->first, left = it->second - n;
                free_.erase(it);
                if (left) free_[off + n] = left;
                return off;
            }
        const size_t off = end;
        end += n;
        return off;
    }
    void release(size_t off, size_t n) {
        if (n == 0) return;
        auto it = free_.emplace(off, n).first;
        auto next = std::next(it);
        if (next != free_.end() && off + n == next->first) it->second += next->second, free_.erase(next);
        if (it != free_.begin()) {
            auto prev = std::prev(it);
            if (prev->first + prev->second == it->first) prev->second += it->second, free_.erase(it);
        }
    }
    size_t end = 0;

private:
    std::map<size_t, size_t> free_;  // offset -> size
};

}  // namespace

ArenaPlan plan_arena(const Graph& g, const std::vector<Step>& steps, size_t alignment) {
    ArenaPlan plan;
    FreeList arena;
    auto size_of = [alignment](const Tensor* t) { return (t->nbytes() + alignment - 1) / alignment * alignment; };
    // Buffers live in the arena: inputs and step outputs. The step that reads each for the last time.
    std::unordered_map<const Tensor*, size_t> last;
    for (const Tensor* t : g.inputs()) plan.offset[t] = arena.take(size_of(t));
    for (size_t i = 0; i < steps.size(); ++i)
        for (const Tensor* t : steps[i].nodes)
            for (const Tensor* s : t->src)
                if (s && (s->op != Op::NONE || s->host)) last[s] = i;
    for (size_t i = 0; i < steps.size(); ++i) {
        for (const Tensor* t : steps[i].outputs()) plan.offset[t] = arena.take(size_of(t));
        for (const Tensor* t : steps[i].nodes)
            for (const Tensor* s : t->src) {
                auto it = last.find(s);
                if (it == last.end() || it->second != i) continue;
                last.erase(it);
                auto at = plan.offset.find(s);  // internal nodes of a fused step have no buffer
                if (at != plan.offset.end() && !s->is_output) arena.release(at->second, size_of(s));
            }
    }
    plan.bytes = arena.end;
    return plan;
}

}  // namespace fp4
