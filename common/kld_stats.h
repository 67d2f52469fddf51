// kld_stats.h — a model's next-token distribution against a base distribution, token by token (NLL of both,
// KL divergence, Δp, top-1 agreement, optional top-k KLD), and llama.cpp's KL-divergence statistics: the
// cumulative per-chunk line, the final report blocks, and a JSON summary.
//
// Top-k KLD (--top-k-only K), as from top-K logprobs: S = the base's K most likely entries (ties: lower id);
// both distributions are restricted to S and renormalized, KLD_K = Σ_{i∈S} p̂_b(i)·(log p̂_b(i) − log p̂_q(i)).
#pragma once

#include <cstdint>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "kld_file.h"

namespace common {

struct TokenScore {
    double nll = 0, nll_base = 0;  // −log p(target) under the model and under the base
    double kld = 0;                // KL(base ‖ model)
    double dp = 0;                 // p_model(target) − p_base(target)
    bool same_top = false;         // the argmaxes agree (first maximum wins on both sides)
    double kld_top_k = 0;          // top-k KLD (0 when top_k is 0)
};

// Base from fp32 logits: exact log-softmax in double, every vocabulary entry counted in the KLD.
TokenScore score_token(const float* base_logits, const float* logits, int64_t n_vocab, int32_t target, int top_k);
// Base from a stored 16-bit row: as llama.cpp, entries with log p_base <= −16 are left out of the KLD.
TokenScore score_token(const LogProbRow& base, const float* logits, int64_t n_vocab, int32_t target, int top_k);

// llama.cpp's helpers. mean_and_uncertainty: (sum/N, sqrt(var/(N−1))), the σ 0 unless var > 0 and N > 10.
// covariance of the means: (⟨ab⟩ − ⟨a⟩⟨b⟩)/(N−1), 0 when N < 10. percentile: linear interpolation at
// fraction·(N−1) of a sorted array; median: the mean of the two middle values for even N.
std::pair<double, double> mean_and_uncertainty(double sum, double sum2, int64_t n);
double covariance(double sum_a, double sum_b, double sum_ab, int64_t n);
double percentile(const std::vector<double>& sorted, double fraction);
double median(const std::vector<double>& sorted);

class KldStats {
public:
    explicit KldStats(int top_k = 0) : top_k_(top_k) {}
    void add(const TokenScore& s);
    int64_t count() const { return n_; }

    static const char* chunk_header();
    std::string chunk_line(int chunk) const;  // llama.cpp's cumulative line for chunk number `chunk` (1-based)
    // The final blocks exactly as llama.cpp prints them (skipped, as there, under 100 tokens), then the top-k block.
    void print_report(std::FILE* out) const;
    nlohmann::json json() const;

private:
    struct Summary;
    Summary summary() const;

    int top_k_;
    int64_t n_ = 0, n_same_top_ = 0;
    double nll_ = 0, nll2_ = 0, nll_base_ = 0, nll_base2_ = 0, nll_nll_base_ = 0;
    double kld_ = 0, kld2_ = 0, dp_ = 0, dp2_ = 0, dp4_ = 0, kld_top_ = 0, kld_top2_ = 0;
    std::vector<double> kld_values_, dp_values_, kld_top_values_;
};

}  // namespace common
