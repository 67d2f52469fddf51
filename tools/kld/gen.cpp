// gen.cpp — greedy decoding with the model, the base teacher-forced on the same tokens, per-step KLD.
#include "gen.h"

#include <algorithm>
#include <chrono>
#include <cstdio>

#include "kld_stats.h"
#include "log.h"

namespace {

// Prefill of the prompts of chunks [c0, c0+n): [BOS, tokens 1 .. first−1] as sequence c − c0, laid out so
// that the last token of every prompt comes at the end and their logits are one range.
mistral::Batch prompt_batch(const std::vector<int32_t>& tokens, const common::ChunkPlan& plan, int c0, int n,
                            int32_t bos) {
    mistral::Batch b;
    auto push = [&](int c, int p) {
        b.ids.push_back(p == 0 ? bos : tokens[size_t(c0 + c) * plan.n_ctx + p]);
        b.pos.push_back(p);
        b.seq.push_back(c);
    };
    for (int c = 0; c < n; ++c)
        for (int p = 0; p + 1 < plan.first; ++p) push(c, p);
    for (int c = 0; c < n; ++c) push(c, plan.first - 1);
    b.logits_count = n;
    b.logits_first = int64_t(b.ids.size()) - n;
    return b;
}

}  // namespace

nlohmann::json run_generation_kld(mistral::Context& ctx, mistral::Context& base_ctx, const std::vector<int32_t>& tokens,
                                  const common::ChunkPlan& plan, int32_t bos, int n_gen, int top_k) {
    const int64_t V = ctx.model().config().text.vocab;
    if (plan.first < 1) throw std::runtime_error("--gen needs a prompt: the first half of each chunk");
    const auto t0 = std::chrono::steady_clock::now();
    common::log_info("kl_divergence: greedy generation of %d tokens after %d prompts of %d tokens, n_seq=%d", n_gen,
                     plan.n_chunk, plan.first, plan.n_seq);
    std::vector<common::KldStats> steps(static_cast<size_t>(n_gen), common::KldStats{top_k});
    common::KldStats all(top_k);

    common::for_each_chunk_group(plan, "kl_divergence", [&](int c0, int n) {
        mistral::Batch b = prompt_batch(tokens, plan, c0, n, bos);
        for (int s = 0; s < n_gen; ++s) {
            const std::vector<float> q = ctx.eval(b).logits, base = base_ctx.eval(b).logits;
            std::vector<common::TokenScore> scores(static_cast<size_t>(n));
            std::vector<int32_t> chosen(static_cast<size_t>(n));
            common::parallel_for(n, [&](int64_t i) {
                const float* row = q.data() + i * V;
                chosen[size_t(i)] = int32_t(std::max_element(row, row + V) - row);
                scores[size_t(i)] = common::score_token(base.data() + i * V, row, V, chosen[size_t(i)], top_k);
            });
            for (const common::TokenScore& t : scores) {
                steps[size_t(s)].add(t);
                all.add(t);
            }
            b = mistral::Batch{};
            for (int i = 0; i < n; ++i) {
                b.ids.push_back(chosen[size_t(i)]);
                b.pos.push_back(plan.first + s);
                b.seq.push_back(i);
            }
            b.logits_count = n;
        }
    });

    std::printf("\nstep     mean KLD                    Same top p\n");
    nlohmann::json jsteps = nlohmann::json::array();
    for (int s = 0; s < n_gen; ++s) {
        const nlohmann::json j = steps[size_t(s)].json();
        std::printf("%4d    %10.6lf \xc2\xb1 %10.6lf    %7.3lf \xc2\xb1 %6.3lf %%\n", s + 1, double(j["kld"]["mean"]),
                    double(j["kld"]["err"]), double(j["same_top_percent"]), double(j["same_top_err_percent"]));
        jsteps.push_back({{"step", s + 1}, {"kld", j["kld"]}, {"same_top_percent", j["same_top_percent"]}});
    }
    if (all.count() < 100)
        common::log_warn("only %lld tokens compared: no final statistics under 100", (long long)all.count());
    all.print_report(stdout);
    std::fflush(stdout);
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    common::log_info("kl_divergence: %lld generated tokens compared in %.2f s", (long long)all.count(), secs);
    nlohmann::json j = all.json();
    j["mode"] = "generation";
    j["n_gen"] = n_gen;
    j["prompts"] = plan.n_chunk;
    j["prompt_tokens"] = plan.first;
    j["seconds"] = secs;
    j["steps"] = jsteps;
    return j;
}
