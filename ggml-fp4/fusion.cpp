// fusion.cpp — plan_steps: a greedy walk over the nodes that takes a rope group, or a linear group
// (norm → products → epilogue), where one starts, and a single node otherwise; then the BF16 links.
#include "fusion.h"

#include <stdexcept>
#include <unordered_map>
#include <unordered_set>

namespace fp4 {

Tensor* Step::residual() const {
    if (!epilogue || epilogue->op != Op::ADD) return nullptr;
    return epilogue->src[0] == products.front() ? epilogue->src[1] : epilogue->src[0];
}

std::vector<Tensor*> Step::outputs() const {
    if (!fused()) return nodes;
    if (attention) return {attention};
    if (epilogue) return {epilogue};
    return products;
}

std::vector<Step> plan_steps(const Graph& g, const FusionRules& rules) {
    const std::vector<Tensor*>& nodes = g.nodes();
    std::vector<int> uses(nodes.size());  // source slots that name each node, over all nodes
    for (const Tensor* t : nodes)
        for (const Tensor* s : t->src)
            if (s && s->op != Op::NONE) {
                if (s->index < 0 || size_t(s->index) >= nodes.size() || nodes[size_t(s->index)] != s)
                    throw std::invalid_argument("node '" + t->name + "' reads a node of another graph");
                ++uses[size_t(s->index)];
            }
    // A node no other step needs to see: read by `readers` slots only, and not an output.
    auto private_to = [&](const Tensor* t, int readers) { return !t->is_output && uses[size_t(t->index)] == readers; };
    auto is_product = [&](const Tensor* t, const Tensor* input) {
        return t->op == Op::MUL_MAT && t->src[1] == input && t->src[0]->type == rules.weight_type &&
               input->rows() >= 1 && input->rows() <= rules.max_rows;
    };

    // ROPE(q), ROPE(k), ATTN_CACHED(q, k, ...) with both rotations by the attention's positions.
    auto rope_group = [&](size_t i) {
        if (rules.max_rows <= 0 || i + 2 >= nodes.size()) return false;
        const Tensor *rq = nodes[i], *rk = nodes[i + 1], *at = nodes[i + 2];
        return rq->op == Op::ROPE && rk->op == Op::ROPE && at->op == Op::ATTN_CACHED && at->src[0] == rq &&
               at->src[1] == rk && rq->src[1] == at->src[5] && rk->src[1] == at->src[5] && rq->fp[0] == rk->fp[0] &&
               rq->ip[0] == at->ip[0] && rk->ip[0] == at->ip[1] && rq->ip[1] == at->ip[2] && rk->ip[1] == at->ip[2] &&
               rq->rows() <= rules.max_rows && private_to(rq, 1) && private_to(rk, 1);
    };

    std::vector<Step> steps;
    const size_t n = nodes.size();
    for (size_t i = 0; i < n;) {
        Step s;
        size_t j = i;
        if (rope_group(i)) {
            s.attention = nodes[i + 2];
            s.nodes.assign(nodes.begin() + std::ptrdiff_t(i), nodes.begin() + std::ptrdiff_t(i + 3));
            steps.push_back(std::move(s));
            i += 3;
            continue;
        }
        if (rules.max_rows > 0) {
            Tensor* norm =
                nodes[i]->op == Op::RMS_NORM && nodes[i]->rows() <= rules.max_norm_rows ? nodes[i] : nullptr;
            if (norm) ++j;
            Tensor* input = norm ? norm : nodes[j < n ? j : i]->src[1];
            while (j < n && int(s.products.size()) < rules.max_products && is_product(nodes[j], input))
                s.products.push_back(nodes[j++]);
            if (norm && (s.products.empty() || !private_to(norm, int(s.products.size())))) {
                s.products.clear();  // the norm runs alone; its products may still group from the next node
                j = i + 1;
            } else {
                s.norm = norm;
            }
        }
        if (!s.products.empty() && j < n) {
            Tensor* e = nodes[j];
            if (s.products.size() == 2 && e->op == Op::SWIGLU && e->src[0] != e->src[1] &&
                private_to(s.products[0], 1) && private_to(s.products[1], 1) &&
                (e->src[0] == s.products[0] || e->src[0] == s.products[1]) &&
                (e->src[1] == s.products[0] || e->src[1] == s.products[1])) {
                s.products = {e->src[0], e->src[1]};  // gate first
                s.epilogue = e, ++j;
            } else if (s.products.size() == 1 && e->op == Op::ADD && e->src[0] != e->src[1] &&
                       (e->src[0] == s.products[0] || e->src[1] == s.products[0]) && private_to(s.products[0], 1)) {
                s.epilogue = e, ++j;
            }
        }
        if (s.products.size() == 1 && !s.norm && !s.epilogue) s.products.clear();  // nothing to gain
        if (!s.fused()) j = i + 1;
        s.nodes.assign(nodes.begin() + std::ptrdiff_t(i), nodes.begin() + std::ptrdiff_t(j));
        steps.push_back(std::move(s));
        i = j;
    }

    if (rules.bf16_links) {
        // Slots that read each tensor as the input of a linear group without a norm.
        std::unordered_map<const Tensor*, int> group_reads;
        for (const Step& s : steps)
            if (!s.products.empty() && !s.norm) group_reads[s.input()] += int(s.products.size());
        auto linked = [&](const Tensor* t) {  // t: a node, the output of a lone norm or a SwiGLU epilogue
            const auto it = group_reads.find(t);
            return !t->is_output && it != group_reads.end() && it->second == uses[size_t(t->index)];
        };
        std::unordered_set<const Tensor*> links;
        for (Step& s : steps) {
            const Tensor* out = !s.fused() && s.nodes.front()->op == Op::RMS_NORM ? s.nodes.front()
                                : s.epilogue && s.epilogue->op == Op::SWIGLU     ? s.epilogue
                                                                                 : nullptr;
            s.bf16_out = out && linked(out);
            if (s.bf16_out) links.insert(out);
        }
        for (Step& s : steps) s.bf16_in = !s.products.empty() && !s.norm && links.count(s.input());
    }
    return steps;
}

}  // namespace fp4
