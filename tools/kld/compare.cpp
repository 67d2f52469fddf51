// compare.cpp — the chunk loop of the KL-divergence pass: evaluate, score every row in parallel, report.
#include "compare.h"

#include <chrono>
#include <cstdio>

#include "kld_stats.h"
#include "log.h"

nlohmann::json run_compare(const CompareSetup& s) {
    const common::ChunkPlan& plan = s.plan;
    const int64_t V = s.ctx->model().config().text.vocab, R = plan.rows();
    const auto t0 = std::chrono::steady_clock::now();
    common::log_info("kl_divergence: computing over %d chunks, n_ctx=%d, batch_size=%d, n_seq=%d (base: %s)",
                     plan.n_chunk, plan.n_ctx, plan.n_batch, plan.n_seq,
                     s.base_file ? "16-bit log-probs of the file" : "fp32 logits of the base model");
    std::printf("\n%s\n", common::KldStats::chunk_header());
    common::KldStats stats(s.top_k);
    nlohmann::json chunks = nlohmann::json::array();

    common::for_each_chunk_group(plan, "kl_divergence", [&](int c0, int n) {
        const std::vector<float> logits = common::eval_chunks(*s.ctx, *s.tokens, plan, c0, n, s.bos);
        std::vector<float> base_logits;
        std::vector<std::vector<uint16_t>> base_rows;
        if (s.base_ctx) base_logits = common::eval_chunks(*s.base_ctx, *s.tokens, plan, c0, n, s.bos);
        for (int c = 0; c < n && s.base_file; ++c) base_rows.push_back(s.base_file->read_chunk(c0 + c));

        std::vector<common::TokenScore> scores(size_t(n) * R);
        common::parallel_for(int64_t(scores.size()), [&](int64_t i) {
            const int c = int(i / R), k = int(i % R);
            const int32_t target = common::chunk_target(*s.tokens, plan, c0 + c, k);
            const float* row = logits.data() + i * V;
            if (s.base_file) {
                const int64_t slots = s.base_file->header().row_slots();
                scores[size_t(i)] = common::score_token(common::decode_row(base_rows[size_t(c)].data() + k * slots),
                                                        row, V, target, s.top_k);
            } else {
                scores[size_t(i)] = common::score_token(base_logits.data() + i * V, row, V, target, s.top_k);
            }
        });

        for (int c = 0; c < n; ++c) {
            double kld = 0, nll = 0, nll_base = 0, same = 0;
            for (int64_t k = 0; k < R; ++k) {
                const common::TokenScore& t = scores[size_t(c * R + k)];
                stats.add(t);
                kld += t.kld;
                nll += t.nll;
                nll_base += t.nll_base;
                same += t.same_top;
            }
            std::printf("%s\n", stats.chunk_line(c0 + c + 1).c_str());
            std::fflush(stdout);
            chunks.push_back({{"chunk", c0 + c + 1},
                              {"mean_kld", kld / R},
                              {"mean_nll", nll / R},
                              {"mean_nll_base", nll_base / R},
                              {"same_top_percent", 100.0 * same / R}});
        }
    });

    if (stats.count() < 100)
        common::log_warn("only %lld tokens scored: llama.cpp prints no final statistics under 100",
                         (long long)stats.count());
    stats.print_report(stdout);
    std::fflush(stdout);
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    common::log_info("kl_divergence: %lld tokens compared in %.2f s", (long long)stats.count(), secs);
    nlohmann::json j = stats.json();
    j["base"] = s.base_file ? "file" : "model";
    j["n_ctx"] = plan.n_ctx;
    j["n_chunk"] = plan.n_chunk;
    j["n_seq"] = plan.n_seq;
    j["first_scored"] = plan.first;
    j["seconds"] = secs;
    j["chunks"] = chunks;
    return j;
}
