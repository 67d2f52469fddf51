// kld_stats.cpp — per-token scoring against a base distribution and llama.cpp's KLD statistics and output.
#include "kld_stats.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <tuple>

#include "perplexity.h"

namespace common {

namespace {

// KL over the base's top-k entries, both sides renormalized over them.
double top_k_kld(const std::vector<double>& lb, const float* logits, int64_t n, int top_k) {
    const int64_t k = std::min<int64_t>(top_k, n);
    thread_local std::vector<int64_t> idx;
    idx.resize(size_t(n));
    std::iota(idx.begin(), idx.end(), int64_t(0));
    std::partial_sort(idx.begin(), idx.begin() + k, idx.end(),
                      [&](int64_t a, int64_t b) { return lb[a] > lb[b] || (lb[a] == lb[b] && a < b); });
    double mb = -INFINITY, mq = -INFINITY, sb = 0, sq = 0;
    for (int64_t j = 0; j < k; ++j) {
        mb = std::max(mb, lb[idx[j]]);
        mq = std::max(mq, double(logits[idx[j]]));
    }
    for (int64_t j = 0; j < k; ++j) {
        sb += std::exp(lb[idx[j]] - mb);
        sq += std::exp(double(logits[idx[j]]) - mq);
    }
    const double nb = mb + std::log(sb), nq = mq + std::log(sq);
    double kld = 0;
    for (int64_t j = 0; j < k; ++j) {
        const double pb = lb[idx[j]] - nb, pq = double(logits[idx[j]]) - nq;
        kld += std::exp(pb) * (pb - pq);
    }
    return kld;
}

// The model's row against base log-probs `lb`; entries with lb <= cutoff are left out of the KLD.
TokenScore score_core(const std::vector<double>& lb, double cutoff, const float* logits, int64_t n, int32_t target,
                      int top_k) {
    const RowNorm q = row_norm(logits, n);
    const double norm = q.max + q.lse;
    int64_t top_q = 0, top_b = 0;
    double kld = 0;
    for (int64_t i = 0; i < n; ++i) {
        if (logits[i] > logits[top_q]) top_q = i;
        if (lb[i] > lb[top_b]) top_b = i;
        if (lb[i] > cutoff) kld += std::exp(lb[i]) * (lb[i] - (double(logits[i]) - norm));
    }
    TokenScore s;
    s.kld = kld;
    s.same_top = top_q == top_b;
    s.nll = norm - double(logits[target]);
    s.nll_base = -lb[target];
    s.dp = std::exp(-s.nll) - std::exp(-s.nll_base);
    if (top_k > 0) s.kld_top_k = top_k_kld(lb, logits, n, top_k);
    return s;
}

thread_local std::vector<double> t_logp;

}  // namespace

TokenScore score_token(const float* base_logits, const float* logits, int64_t n_vocab, int32_t target, int top_k) {
    const RowNorm b = row_norm(base_logits, n_vocab);
    t_logp.resize(size_t(n_vocab));
    for (int64_t i = 0; i < n_vocab; ++i) t_logp[i] = double(base_logits[i]) - b.max - b.lse;
    return score_core(t_logp, -INFINITY, logits, n_vocab, target, top_k);
}

TokenScore score_token(const LogProbRow& base, const float* logits, int64_t n_vocab, int32_t target, int top_k) {
    t_logp.resize(size_t(n_vocab));
    for (int64_t i = 0; i < n_vocab; ++i) t_logp[i] = double(base.logp(i));
    return score_core(t_logp, -16.0, logits, n_vocab, target, top_k);
}

std::pair<double, double> mean_and_uncertainty(double sum, double sum2, int64_t n) {
    if (n < 1) return {0.0, 0.0};
    const double f = sum / double(n), var = sum2 / double(n) - f * f;
    return {f, var > 0 && n > 10 ? std::sqrt(var / double(n - 1)) : 0.0};
}

double covariance(double sum_a, double sum_b, double sum_ab, int64_t n) {
    if (n < 10) return 0.0;
    return (sum_ab / double(n) - (sum_a / double(n)) * (sum_b / double(n))) / double(n - 1);
}

double percentile(const std::vector<double>& sorted, double fraction) {
    if (sorted.empty()) return NAN;
    if (fraction <= 0) return sorted.front();
    if (fraction >= 1) return sorted.back();
    const double p = fraction * double(sorted.size() - 1);
    const size_t i = size_t(p);
    const double f = p - double(i);
    return (1 - f) * sorted[i] + f * sorted[std::min(i + 1, sorted.size() - 1)];
}

double median(const std::vector<double>& sorted) {
    const size_t n = sorted.size();
    if (n == 0) return NAN;
    return n % 2 ? sorted[n / 2] : 0.5 * (sorted[n / 2 - 1] + sorted[n / 2]);
}

void KldStats::add(const TokenScore& s) {
    ++n_;
    n_same_top_ += s.same_top;
    nll_ += s.nll;
    nll2_ += s.nll * s.nll;
    nll_base_ += s.nll_base;
    nll_base2_ += s.nll_base * s.nll_base;
    nll_nll_base_ += s.nll * s.nll_base;
    kld_ += s.kld;
    kld2_ += s.kld * s.kld;
    dp_ += s.dp;
    dp2_ += s.dp * s.dp;
    dp4_ += s.dp * s.dp * s.dp * s.dp;
    kld_values_.push_back(s.kld);
    dp_values_.push_back(s.dp);
    if (top_k_ > 0) {
        kld_top_ += s.kld_top_k;
        kld_top2_ += s.kld_top_k * s.kld_top_k;
        kld_top_values_.push_back(s.kld_top_k);
    }
}

// Every figure of the report, from the running sums.
struct KldStats::Summary {
    double ppl, ppl_err, ppl_base, ppl_base_err, cor, ln_ratio, ln_ratio_err, ratio, ratio_err, diff, diff_err;
    double kld, kld_err, dp, dp_err, rms_dp, rms_dp_err, same_top, same_top_err, kld_top, kld_top_err;
};

KldStats::Summary KldStats::summary() const {
    const auto lq = mean_and_uncertainty(nll_, nll2_, n_), lb = mean_and_uncertainty(nll_base_, nll_base2_, n_);
    const double cov = covariance(nll_, nll_base_, nll_nll_base_, n_);
    Summary s;
    s.ppl = std::exp(lq.first);
    s.ppl_err = s.ppl * lq.second;
    s.ppl_base = std::exp(lb.first);
    s.ppl_base_err = s.ppl_base * lb.second;
    s.cor = cov / (lq.second * lb.second);
    s.ln_ratio = lq.first - lb.first;
    s.ln_ratio_err = std::sqrt(lq.second * lq.second + lb.second * lb.second - 2.0 * cov);
    s.ratio = std::exp(s.ln_ratio);
    s.ratio_err = s.ratio * s.ln_ratio_err;
    s.diff = s.ppl - s.ppl_base;
    s.diff_err = std::sqrt(s.ppl_err * s.ppl_err + s.ppl_base_err * s.ppl_base_err - 2.0 * s.ppl * s.ppl_base * cov);
    std::tie(s.kld, s.kld_err) = mean_and_uncertainty(kld_, kld2_, n_);
    std::tie(s.dp, s.dp_err) = mean_and_uncertainty(dp_, dp2_, n_);
    const auto msq = mean_and_uncertainty(dp2_, dp4_, n_);
    s.rms_dp = std::sqrt(msq.first);
    s.rms_dp_err = s.rms_dp > 0 ? 0.5 / s.rms_dp * msq.second : 0.0;
    s.same_top = n_ ? double(n_same_top_) / double(n_) : 0.0;
    s.same_top_err = n_ > 1 ? std::sqrt(s.same_top * (1 - s.same_top) / double(n_ - 1)) : 0.0;
    std::tie(s.kld_top, s.kld_top_err) = mean_and_uncertainty(kld_top_, kld_top2_, n_);
    return s;
}

const char* KldStats::chunk_header() {
    return "chunk             PPL               ln(PPL(Q)/PPL(base))          KL Divergence              "
           "\xce\x94p RMS            Same top p";
}

std::string KldStats::chunk_line(int chunk) const {
    const Summary s = summary();
    char buf[256];
    std::snprintf(buf, sizeof buf,
                  "%4d    %9.4lf \xc2\xb1 %9.4lf    %10.5lf \xc2\xb1 %10.5lf    %10.5lf \xc2\xb1 %10.5lf"
                  "    %6.3lf \xc2\xb1 %6.3lf %%    %6.3lf \xc2\xb1 %6.3lf %%",
                  chunk, s.ppl, s.ppl_err, s.ln_ratio, s.ln_ratio_err, s.kld, s.kld_err, 100.0 * s.rms_dp,
                  100.0 * s.rms_dp_err, 100.0 * s.same_top, 100.0 * s.same_top_err);
    return buf;
}

namespace {

void print_kld_block(std::FILE* out, std::vector<double> v, double mean, double err) {
    std::sort(v.begin(), v.end());
    std::fprintf(out, "Mean    KLD: %10.6lf \xc2\xb1 %10.6lf\n", mean, err);
    std::fprintf(out, "Maximum KLD: %10.6f\n", v.back());
    std::fprintf(out, "99.9%%   KLD: %10.6f\n", percentile(v, 0.999));
    std::fprintf(out, "99.0%%   KLD: %10.6f\n", percentile(v, 0.990));
    std::fprintf(out, "95.0%%   KLD: %10.6f\n", percentile(v, 0.950));
    std::fprintf(out, "90.0%%   KLD: %10.6f\n", percentile(v, 0.900));
    std::fprintf(out, "Median  KLD: %10.6f\n", median(v));
    std::fprintf(out, "10.0%%   KLD: %10.6f\n", percentile(v, 0.100));
    std::fprintf(out, " 5.0%%   KLD: %10.6f\n", percentile(v, 0.050));
    std::fprintf(out, " 1.0%%   KLD: %10.6f\n", percentile(v, 0.010));
    std::fprintf(out, " 0.1%%   KLD: %10.6f\n", percentile(v, 0.001));
    std::fprintf(out, "Minimum KLD: %10.6f\n", v.front());
}

nlohmann::json distribution_json(std::vector<double> v, double mean, double err, double scale) {
    std::sort(v.begin(), v.end());
    return {{"mean", mean * scale},
            {"err", err * scale},
            {"max", v.back() * scale},
            {"p99.9", percentile(v, 0.999) * scale},
            {"p99", percentile(v, 0.99) * scale},
            {"p95", percentile(v, 0.95) * scale},
            {"p90", percentile(v, 0.90) * scale},
            {"median", median(v) * scale},
            {"p10", percentile(v, 0.10) * scale},
            {"p5", percentile(v, 0.05) * scale},
            {"p1", percentile(v, 0.01) * scale},
            {"p0.1", percentile(v, 0.001) * scale},
            {"min", v.front() * scale}};
}

}  // namespace

void KldStats::print_report(std::FILE* out) const {
    if (n_ < 100) return;
    const Summary s = summary();
    std::fprintf(out, "\n====== Perplexity statistics ======\n");
    std::fprintf(out, "Mean PPL(Q)                   : %10.6lf \xc2\xb1 %10.6lf\n", s.ppl, s.ppl_err);
    std::fprintf(out, "Mean PPL(base)                : %10.6lf \xc2\xb1 %10.6lf\n", s.ppl_base, s.ppl_base_err);
    std::fprintf(out, "Cor(ln(PPL(Q)), ln(PPL(base))): %6.2lf%%\n", 100.0 * s.cor);
    std::fprintf(out, "Mean ln(PPL(Q)/PPL(base))     : %10.6lf \xc2\xb1 %10.6lf\n", s.ln_ratio, s.ln_ratio_err);
    std::fprintf(out, "Mean PPL(Q)/PPL(base)         : %10.6lf \xc2\xb1 %10.6lf\n", s.ratio, s.ratio_err);
    std::fprintf(out, "Mean PPL(Q)-PPL(base)         : %10.6lf \xc2\xb1 %10.6lf\n", s.diff, s.diff_err);

    std::fprintf(out, "\n====== KL divergence statistics ======\n");
    print_kld_block(out, kld_values_, s.kld, s.kld_err);

    std::vector<double> dp = dp_values_;
    std::sort(dp.begin(), dp.end());
    std::fprintf(out, "\n====== Token probability statistics ======\n");
    std::fprintf(out, "Mean    \xce\x94p: %6.3lf \xc2\xb1 %5.3lf %%\n", 100.0 * s.dp, 100.0 * s.dp_err);
    std::fprintf(out, "Maximum \xce\x94p: %6.3lf%%\n", 100.0 * dp.back());
    const struct {
        const char* label;
        double f;
    } rows[] = {{"99.9%", 0.999}, {"99.0%", 0.990}, {"95.0%", 0.950}, {"90.0%", 0.900},
                {"75.0%", 0.750}, {"Median", -1},   {"25.0%", 0.250}, {"10.0%", 0.100},
                {" 5.0%", 0.050}, {" 1.0%", 0.010}, {" 0.1%", 0.001}};
    for (const auto& r : rows)
        std::fprintf(out, "%-7s \xce\x94p: %6.3lf%%\n", r.label, 100.0 * (r.f < 0 ? median(dp) : percentile(dp, r.f)));
    std::fprintf(out, "Minimum \xce\x94p: %6.3lf%%\n", 100.0 * dp.front());
    std::fprintf(out, "RMS \xce\x94p    : %6.3lf \xc2\xb1 %5.3lf %%\n", 100.0 * s.rms_dp, 100.0 * s.rms_dp_err);
    std::fprintf(out, "Same top p: %6.3lf \xc2\xb1 %5.3lf %%\n", 100.0 * s.same_top, 100.0 * s.same_top_err);

    if (top_k_ > 0) {
        std::fprintf(out, "\n====== Top-%d KL divergence statistics (base's top %d, both renormalized) ======\n",
                     top_k_, top_k_);
        print_kld_block(out, kld_top_values_, s.kld_top, s.kld_top_err);
    }
}

nlohmann::json KldStats::json() const {
    const Summary s = summary();
    nlohmann::json j = {{"tokens", n_},
                        {"ppl_q", s.ppl},
                        {"ppl_q_err", s.ppl_err},
                        {"ppl_base", s.ppl_base},
                        {"ppl_base_err", s.ppl_base_err},
                        {"cor_ln_ppl", s.cor},
                        {"ln_ppl_ratio", s.ln_ratio},
                        {"ln_ppl_ratio_err", s.ln_ratio_err},
                        {"ppl_ratio", s.ratio},
                        {"ppl_ratio_err", s.ratio_err},
                        {"ppl_diff", s.diff},
                        {"ppl_diff_err", s.diff_err},
                        {"rms_dp_percent", 100.0 * s.rms_dp},
                        {"rms_dp_err_percent", 100.0 * s.rms_dp_err},
                        {"same_top_percent", 100.0 * s.same_top},
                        {"same_top_err_percent", 100.0 * s.same_top_err}};
    if (n_ == 0) return j;
    j["kld"] = distribution_json(kld_values_, s.kld, s.kld_err, 1.0);
    j["dp_percent"] = distribution_json(dp_values_, s.dp, s.dp_err, 100.0);
    if (top_k_ > 0) {
        j["kld_top_k"] = distribution_json(kld_top_values_, s.kld_top, s.kld_top_err, 1.0);
        j["kld_top_k"]["k"] = top_k_;
    }
    return j;
}

}  // namespace common
