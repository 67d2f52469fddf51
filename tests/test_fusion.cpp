// test_fusion.cpp — the steps a backend runs a graph in (fusion.h) and the arena planned for them
// (arena_plan.h): which node groups fuse and which must not, on hand-built graphs and on the decode graph
// the Mistral builder makes; and that no planned buffer is written while another still needs its bytes.
// (That the fused kernels compute what the separate nodes do is test_backend_ops' job, on a GPU.)
#include <doctest/doctest.h>

#include <algorithm>
#include <map>
#include <stdexcept>
#include <string>
#include <unordered_map>

#include "arena_plan.h"
#include "checkpoint.h"
#include "fusion.h"
#include "mistral3_graph.h"

using namespace fp4;

namespace {

const FusionRules kRules{Type::NVFP4, 32, 3};

// A step as text: its nodes' ops joined by '+', e.g. "RMS_NORM+MUL_MAT+MUL_MAT+MUL_MAT".
std::string describe(const Step& s) {
    std::string out;
    for (const Tensor* t : s.nodes) out += (out.empty() ? "" : "+") + std::string(op_name(t->op));
    return out;
}

std::vector<std::string> describe(const std::vector<Step>& steps) {
    std::vector<std::string> out;
    for (const Step& s : steps) out.push_back(describe(s));
    return out;
}

// Checks a plan by replaying it: when a step runs, none of its outputs may overlap another of them or any
// buffer that is still to be read (at this step or later) or that is an output of the graph.
void check_plan(const Graph& g, const std::vector<Step>& steps, const ArenaPlan& plan) {
    std::unordered_map<const Tensor*, size_t> last;  // step that reads a buffer for the last time
    for (size_t i = 0; i < steps.size(); ++i)
        for (const Tensor* t : steps[i].nodes)
            for (const Tensor* s : t->src)
                if (s) last[s] = i;
    std::vector<const Tensor*> placed(g.inputs().begin(), g.inputs().end());
    auto size_of = [](const Tensor* t) { return (t->nbytes() + 255) / 256 * 256; };
    auto overlap = [&](const Tensor* a, const Tensor* b) {
        const size_t a0 = plan.offset_of(*a), b0 = plan.offset_of(*b);
        return a0 < b0 + size_of(b) && b0 < a0 + size_of(a);
    };
    for (size_t i = 0; i < steps.size(); ++i) {
        const std::vector<Tensor*> outs = steps[i].outputs();
        for (const Tensor* o : outs) {
            REQUIRE(plan.offset_of(*o) != ArenaPlan::kNone);
            CHECK(plan.offset_of(*o) + size_of(o) <= plan.bytes);
            for (const Tensor* p : placed) {
                const bool needed = p->is_output || (last.count(p) && last.at(p) >= i);
                if (needed) CHECK_MESSAGE(!overlap(o, p), describe(steps[i]) << " writes over a live buffer");
            }
        }
        for (size_t a = 0; a < outs.size(); ++a)
            for (size_t b = a + 1; b < outs.size(); ++b) CHECK(!overlap(outs[a], outs[b]));
        placed.insert(placed.end(), outs.begin(), outs.end());
    }
}

// One decoder block in the order the Mistral builder makes it, on M rows.
struct Block {
    std::vector<std::unique_ptr<Tensor>> leaves;
    Graph g;
    std::vector<int32_t> ids, pos;
    Tensor* leaf(Type t, std::vector<int64_t> ne) {
        leaves.push_back(make_tensor(t, std::move(ne)));
        return leaves.back().get();
    }
    Tensor* x = nullptr;
    Tensor *norm_out = nullptr, *gate = nullptr;
    explicit Block(int64_t M) : ids(size_t(M), 1), pos(size_t(M), 0) {
        const int64_t D = 64, F = 128, Hq = 4, Hkv = 2, Dh = 16, C = 64;
        Tensor* emb = leaf(Type::BF16, {D, 100});
        Tensor* nw = leaf(Type::F32, {D});
        auto lin = [&](int64_t n, int64_t k) { return leaf(Type::NVFP4, {k, n}); };
        Tensor *wq = lin(Hq * Dh, D), *wk = lin(Hkv * Dh, D), *wv = lin(Hkv * Dh, D), *wo = lin(D, Hq * Dh);
        Tensor *wg = lin(F, D), *wu = lin(F, D), *wd = lin(D, F);
        Tensor *kc = leaf(Type::F32, {Hkv * Dh, C}), *vc = leaf(Type::F32, {Hkv * Dh, C});
        Tensor* p = g.input(Type::I32, {M}, pos.data());
        x = g.get_rows(emb, g.input(Type::I32, {M}, ids.data()));
        Tensor* a = norm_out = g.rms_norm(x, nw, 1e-5f);
        Tensor* q = g.mul_mat(wq, a);
        Tensor* k = g.mul_mat(wk, a);
        Tensor* v = g.mul_mat(wv, a);
        q = g.rope(q, p, Hq, Dh, 1e6f);
        k = g.rope(k, p, Hkv, Dh, 1e6f);
        Tensor* o = g.attn_cached(q, k, v, kc, vc, p, p, int(Hq), int(Hkv), int(Dh), int(C), 0.25f);
        x = g.add(x, g.mul_mat(wo, o));
        Tensor* h = g.rms_norm(x, nw, 1e-5f);
        gate = g.mul_mat(wg, h);
        Tensor* up = g.mul_mat(wu, h);
        x = g.add(x, g.mul_mat(wd, g.swiglu(gate, up)));
    }
};

}  // namespace

TEST_CASE("a decode-sized decoder block runs as four fused product groups and one rope group") {
    for (int64_t M : {1, 7, 32}) {
        Block b(M);
        b.g.mark_output(b.x);
        const std::vector<Step> steps = plan_steps(b.g, kRules);
        CHECK(describe(steps) == std::vector<std::string>{"GET_ROWS", "RMS_NORM+MUL_MAT+MUL_MAT+MUL_MAT",
                                                          "ROPE+ROPE+ATTN_CACHED", "MUL_MAT+ADD",
                                                          "RMS_NORM+MUL_MAT+MUL_MAT+SWIGLU", "MUL_MAT+ADD"});
        const Step& rope = steps[2];
        CHECK(rope.attention == rope.nodes[2]);
        CHECK(rope.outputs() == std::vector<Tensor*>{rope.attention});
        CHECK(rope.attention->src[0]->src[0] == steps[1].products[0]);  // q rotates on its way into attention
        const Step& ffn = steps[4];
        CHECK((ffn.norm && ffn.norm->op == Op::RMS_NORM));
        CHECK(ffn.products[0] == b.gate);  // gate first, whatever order the two were built in
        CHECK(ffn.outputs() == std::vector<Tensor*>{ffn.epilogue});
        CHECK(steps[5].residual() == steps[3].epilogue);  // down's residual: the sum after attention
        CHECK(steps[1].input() == steps[0].nodes[0]);      // q/k/v read the embeddings through the norm
        CHECK(steps[1].outputs() == steps[1].products);
        check_plan(b.g, steps, plan_arena(b.g, steps));
    }
}

TEST_CASE("above max_norm_rows the norms run alone and their products still group") {
    FusionRules rules = kRules;
    rules.max_norm_rows = 8;
    for (int64_t M : {1, 8, 9, 32}) {
        Block b(M);
        b.g.mark_output(b.x);
        const std::vector<Step> steps = plan_steps(b.g, rules);
        INFO("M=" << M);
        if (M <= 8) {
            CHECK(describe(steps) == std::vector<std::string>{"GET_ROWS", "RMS_NORM+MUL_MAT+MUL_MAT+MUL_MAT",
                                                              "ROPE+ROPE+ATTN_CACHED", "MUL_MAT+ADD",
                                                              "RMS_NORM+MUL_MAT+MUL_MAT+SWIGLU", "MUL_MAT+ADD"});
            continue;
        }
        REQUIRE(describe(steps) == std::vector<std::string>{"GET_ROWS", "RMS_NORM", "MUL_MAT+MUL_MAT+MUL_MAT",
                                                            "ROPE+ROPE+ATTN_CACHED", "MUL_MAT+ADD", "RMS_NORM",
                                                            "MUL_MAT+MUL_MAT+SWIGLU", "MUL_MAT+ADD"});
        CHECK(!steps[1].fused());
        CHECK(steps[2].norm == nullptr);
        CHECK(steps[2].input() == b.norm_out);  // q/k/v read the materialised norm
        CHECK(steps[6].products[0] == b.gate);
        check_plan(b.g, steps, plan_arena(b.g, steps));
    }
}

TEST_CASE("nothing fuses beyond the row limit, with fusion off, or when a part is needed elsewhere") {
    Block big(33);
    for (const Step& s : plan_steps(big.g, kRules)) CHECK(!s.fused());
    Block off(1);
    for (const Step& s : plan_steps(off.g, FusionRules{Type::NVFP4, 0, 3})) CHECK(!s.fused());
    Block bf16(1);
    for (const Step& s : plan_steps(bf16.g, FusionRules{Type::BF16, 32, 3})) CHECK(s.products.empty());

    // The attention norm is an output: it must be written, so q/k/v group without it.
    Block shown(1);
    shown.g.mark_output(shown.norm_out);
    std::vector<Step> steps = plan_steps(shown.g, kRules);
    CHECK(describe(steps[1]) == "RMS_NORM");
    CHECK(describe(steps[2]) == "MUL_MAT+MUL_MAT+MUL_MAT");
    CHECK(steps[2].norm == nullptr);
    check_plan(shown.g, steps, plan_arena(shown.g, steps));

    // The gate is read again after SwiGLU: the products group, SwiGLU runs alone.
    Block reused(1);
    reused.g.add(reused.gate, reused.gate);
    steps = plan_steps(reused.g, kRules);
    CHECK(describe(steps[4]) == "RMS_NORM+MUL_MAT+MUL_MAT");
    CHECK(describe(steps[5]) == "SWIGLU");
    check_plan(reused.g, steps, plan_arena(reused.g, steps));

    // A rotated key that is also an output is written by its ROPE: no rope group.
    Block keys(1);
    keys.g.mark_output(keys.g.nodes()[6]);
    REQUIRE(keys.g.nodes()[6]->op == Op::ROPE);
    steps = plan_steps(keys.g, kRules);
    CHECK(describe(steps[2]) == "ROPE");
    CHECK(describe(steps[3]) == "ROPE");
    CHECK(describe(steps[4]) == "ATTN_CACHED");
    check_plan(keys.g, steps, plan_arena(keys.g, steps));

    // At most rules.max_products products in one group; the norm then has a reader outside it.
    Block two(1);
    steps = plan_steps(two.g, FusionRules{Type::NVFP4, 32, 2});
    CHECK(describe(steps[1]) == "RMS_NORM");
    CHECK(describe(steps[2]) == "MUL_MAT+MUL_MAT");
    CHECK(describe(steps[3]) == "MUL_MAT");
    check_plan(two.g, steps, plan_arena(two.g, steps));
}

// Which steps store a BF16 link and which read one, as "out"/"in" marks per step ("-": neither).
std::vector<std::string> links(const std::vector<Step>& steps) {
    std::vector<std::string> out;
    for (const Step& s : steps)
        out.push_back(s.bf16_out && s.bf16_in ? "in,out" : s.bf16_out ? "out" : s.bf16_in ? "in" : "-");
    return out;
}

TEST_CASE("BF16 links: what a lone norm or a SwiGLU epilogue makes only for linear groups is stored as BF16") {
    FusionRules rules = kRules;
    rules.max_norm_rows = 8;
    rules.bf16_links = true;
    for (int64_t M : {1, 8, 9, 32}) {
        Block b(M);
        b.g.mark_output(b.x);
        const std::vector<Step> steps = plan_steps(b.g, rules);
        INFO("M=" << M);
        // Folded norms read the F32 residual stream; down reads SwiGLU's output; o reads the attention's (F32).
        if (M <= 8)
            CHECK(links(steps) == std::vector<std::string>{"-", "-", "-", "-", "out", "in"});
        else
            CHECK(links(steps) == std::vector<std::string>{"-", "out", "in", "-", "-", "out", "in,out", "in"});
        check_plan(b.g, steps, plan_arena(b.g, steps));
        rules.bf16_links = false;
        for (const Step& s : plan_steps(b.g, rules)) CHECK((!s.bf16_in && !s.bf16_out));
        rules.bf16_links = true;
    }
    // A link that is an output, or that another node reads too, stays F32.
    Block shown(16);
    shown.g.mark_output(shown.norm_out);
    std::vector<Step> steps = plan_steps(shown.g, rules);
    CHECK(links(steps) == std::vector<std::string>{"-", "-", "-", "-", "-", "out", "in,out", "in"});
    Block reused(1);
    Tensor* sw = *std::find_if(reused.g.nodes().begin(), reused.g.nodes().end(),
                               [](const Tensor* t) { return t->op == Op::SWIGLU; });
    reused.g.add(sw, sw);
    steps = plan_steps(reused.g, rules);
    CHECK(describe(steps[4]) == "RMS_NORM+MUL_MAT+MUL_MAT+SWIGLU");
    CHECK(links(steps) == std::vector<std::string>{"-", "-", "-", "-", "-", "-", "-"});
    // A norm that a lone product also reads (one product groups with nothing: it runs alone) stays F32.
    Block two(16);
    steps = plan_steps(two.g, FusionRules{Type::NVFP4, 32, 2, 8, true});
    REQUIRE(describe(steps[1]) == "RMS_NORM");
    REQUIRE(describe(steps[2]) == "MUL_MAT+MUL_MAT");
    REQUIRE(describe(steps[3]) == "MUL_MAT");
    CHECK((!steps[1].bf16_out && !steps[2].bf16_in));
}

TEST_CASE("unfused, every node is a step and the plan matches node-by-node liveness") {
    Block b(5);
    b.g.mark_output(b.x);
    const std::vector<Step> steps = plan_steps(b.g, FusionRules{});
    REQUIRE(steps.size() == b.g.nodes().size());
    for (size_t i = 0; i < steps.size(); ++i) CHECK(steps[i].nodes == std::vector<Tensor*>{b.g.nodes()[i]});
    const ArenaPlan plan = plan_arena(b.g, steps);
    check_plan(b.g, steps, plan);
    // Fusing never needs more arena: the folded norms and the products before an epilogue have no buffer.
    const std::vector<Step> fused = plan_steps(b.g, kRules);
    const ArenaPlan fused_plan = plan_arena(b.g, fused);
    CHECK(fused_plan.bytes <= plan.bytes);
    auto buffers = [](const ArenaPlan& p) {
        return std::count_if(p.node_offset.begin(), p.node_offset.end(), [](size_t o) { return o != ArenaPlan::kNone; });
    };
    CHECK(buffers(fused_plan) < buffers(plan));
    CHECK(buffers(plan) == std::ptrdiff_t(b.g.nodes().size()));
}

TEST_CASE("the Mistral decode graph fuses every layer; prefill and the vision tower do not") {
    std::shared_ptr<mistral::Checkpoint> ck = mistral::Checkpoint::open("tests/data/tiny-kjv/nvfp4", {});
    const mistral::Config& cfg = ck->config();
    mistral::KvCache cache;
    cache.n_ctx = 64, cache.n_seq = 1;
    for (int il = 0; il < cfg.text.n_layer; ++il) {
        cache.k.push_back(make_tensor(Type::F32, {int64_t(cfg.text.n_kv_head) * cfg.text.head_dim, 64}));
        cache.v.push_back(make_tensor(Type::F32, {int64_t(cfg.text.n_kv_head) * cfg.text.head_dim, 64}));
    }
    for (int64_t T : {1, 4, 40}) {
        std::vector<int32_t> ids(size_t(T), 5), pos(size_t(T), 0), seq(size_t(T), 0);
        for (int64_t t = 0; t < T; ++t) pos[size_t(t)] = int32_t(t);
        mistral::TextInputs in;
        in.n_tokens = T, in.ids = ids.data(), in.pos = pos.data(), in.seq = seq.data();
        in.logits_first = T - 1, in.logits_count = 1;
        Graph g;
        mistral::build_text_graph(g, cfg, ck->weights(), cache, in, false);
        const std::vector<Step> steps = plan_steps(g, kRules);
        std::map<std::string, int> groups;
        for (const Step& s : steps)
            if (s.fused()) ++groups[describe(s)];
        INFO("tokens: " << T);
        if (T <= 32) {
            CHECK(groups == std::map<std::string, int>{{"RMS_NORM+MUL_MAT+MUL_MAT+MUL_MAT", cfg.text.n_layer},
                                                       {"ROPE+ROPE+ATTN_CACHED", cfg.text.n_layer},
                                                       {"MUL_MAT+ADD", 2 * cfg.text.n_layer},
                                                       {"RMS_NORM+MUL_MAT+MUL_MAT+SWIGLU", cfg.text.n_layer}});
        } else {
            CHECK(groups.empty());
        }
        check_plan(g, steps, plan_arena(g, steps));
        // BF16 links with the norms folded up to 2 rows: SwiGLU → down in every layer, and above 2 rows also
        // each norm → its products; never the final norm, which feeds the BF16 output head.
        FusionRules linking = kRules;
        linking.max_norm_rows = 2, linking.bf16_links = true;
        const std::vector<Step> linked = plan_steps(g, linking);
        const int per_layer = T == 1 ? 1 : T <= 32 ? 3 : 0;
        auto marked = [&](bool Step::*mark) {
            return std::count_if(linked.begin(), linked.end(), [&](const Step& s) { return s.*mark; });
        };
        CHECK(marked(&Step::bf16_out) == per_layer * cfg.text.n_layer);
        CHECK(marked(&Step::bf16_in) == per_layer * cfg.text.n_layer);
        check_plan(g, linked, plan_arena(g, linked));
    }
}

TEST_CASE("a graph that reads a node of another graph is refused") {
    Block a(1), b(1);
    b.g.add(b.x, a.x);
    CHECK_THROWS_WITH_AS(plan_steps(b.g, kRules), doctest::Contains("reads a node of another graph"),
                         std::invalid_argument);
}
