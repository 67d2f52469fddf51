// perplexity.cpp — chunking, batched chunk evaluation, log-softmax/NLL and the PPL estimate.
#include "perplexity.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "log.h"

namespace common {

std::string read_text_file(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    if (!f) throw std::runtime_error("cannot open " + path);
    std::ostringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

std::vector<int32_t> tokenize_corpus(const mistral::Tokenizer& tok, const std::string& text) {
    std::vector<int32_t> ids{tok.bos()};
    tok.encode(text, ids);
    return ids;
}

ChunkPlan make_plan(int n_ctx, int n_chunk, int n_batch, bool score_all) {
    if (n_ctx <= 0) throw std::runtime_error("perplexity tool requires '--ctx-size' > 0");
    if (n_batch <= 0) throw std::runtime_error("--batch-size must be positive");
    if (n_chunk < 1) throw std::runtime_error("no chunk to evaluate");
    ChunkPlan p;
    p.n_ctx = n_ctx;
    p.n_chunk = n_chunk;
    p.first = score_all ? 0 : n_ctx / 2;
    if (p.rows() < 1) throw std::runtime_error("--ctx-size " + std::to_string(n_ctx) + " leaves no token to score");
    p.n_seq = std::min(std::max(1, n_batch / n_ctx), n_chunk);
    p.n_batch = n_batch < n_ctx ? n_batch : p.n_seq * n_ctx;
    return p;
}

ChunkPlan plan_chunks(size_t n_tokens, int n_ctx, int n_batch, int max_chunks, bool score_all) {
    if (n_ctx <= 0) throw std::runtime_error("perplexity tool requires '--ctx-size' > 0");
    if (n_tokens < 2 * size_t(n_ctx))
        throw std::runtime_error("you need at least " + std::to_string(2 * size_t(n_ctx)) +
                                 " tokens to evaluate perplexity with a context of " + std::to_string(n_ctx) +
                                 "; the data file you provided tokenizes to only " + std::to_string(n_tokens) +
                                 " tokens");
    int n_chunk = int(n_tokens / size_t(n_ctx));
    if (max_chunks >= 0) n_chunk = std::min(n_chunk, max_chunks);
    return make_plan(n_ctx, n_chunk, n_batch, score_all);
}

std::vector<float> eval_chunks(mistral::Context& ctx, const std::vector<int32_t>& tokens, const ChunkPlan& plan, int c0,
                               int n, int32_t bos) {
    const int64_t V = ctx.model().config().text.vocab;
    const int C = plan.n_ctx, F = plan.first, R = plan.rows();
    if (n < 1 || n > ctx.n_seq() || c0 < 0 || c0 + n > plan.n_chunk)
        throw std::runtime_error("eval_chunks: chunks out of range");
    if (tokens.size() < size_t(c0 + n) * C) throw std::runtime_error("eval_chunks: token stream too short");
    auto push = [&](mistral::Batch& b, int c, int p) {
        b.ids.push_back(p == 0 ? bos : tokens[size_t(c0 + c) * C + p]);
        b.pos.push_back(p);
        b.seq.push_back(c);
    };

    if (plan.n_batch < C) {  // one chunk in pieces of n_batch tokens, rows from the pieces reaching `first`
        std::vector<float> out(size_t(R) * V);
        for (int p0 = 0; p0 < C; p0 += plan.n_batch) {
            const int p1 = std::min(C, p0 + plan.n_batch), lo = std::max(p0, F), hi = std::min(p1, C - 1);
            mistral::Batch b;
            for (int p = p0; p < p1; ++p) push(b, 0, p);
            if (hi > lo) {
                b.logits_first = lo - p0;
                b.logits_count = hi - lo;
            }
            mistral::BatchResult r = ctx.eval(b);
            if (hi > lo) std::memcpy(out.data() + size_t(lo - F) * V, r.logits.data(), r.logits.size() * sizeof(float));
        }
        return out;
    }

    mistral::Batch b;
    for (int c = 0; c < n; ++c)
        for (int p = 0; p < F; ++p) push(b, c, p);
    for (int c = 0; c < n; ++c)
        for (int p = F; p < C; ++p) push(b, c, p);
    const int tail = C - F;  // rows per chunk in the batch; the last one (position C−1) predicts nothing
    b.logits_count = int64_t(n) * tail;
    b.logits_first = int64_t(b.ids.size()) - b.logits_count;
    std::vector<float> logits = std::move(ctx.eval(b).logits);
    for (int c = 1; c < n; ++c)
        std::memmove(logits.data() + size_t(c) * R * V, logits.data() + size_t(c) * tail * V,
                     size_t(R) * V * sizeof(float));
    logits.resize(size_t(n) * R * V);
    return logits;
}

RowNorm row_norm(const float* logits, int64_t n_vocab) {
    RowNorm r;
    r.max = *std::max_element(logits, logits + n_vocab);
    double sum = 0;
    for (int64_t i = 0; i < n_vocab; ++i) sum += std::exp(double(logits[i]) - r.max);
    r.lse = std::log(sum);
    return r;
}

double token_nll(const float* logits, int64_t n_vocab, int32_t target) {
    const RowNorm r = row_norm(logits, n_vocab);
    return r.max + r.lse - double(logits[target]);
}

std::vector<double> chunk_nll(const std::vector<float>& logits, int64_t n_vocab, const std::vector<int32_t>& tokens,
                              const ChunkPlan& plan, int c0, int n) {
    const int R = plan.rows();
    std::vector<double> nll(size_t(n) * R);
    parallel_for(int64_t(nll.size()), [&](int64_t i) {
        const int c = int(i / R), k = int(i % R);
        nll[size_t(i)] = token_nll(logits.data() + size_t(i) * n_vocab, n_vocab, chunk_target(tokens, plan, c0 + c, k));
    });
    return nll;
}

double NllSum::ppl() const { return std::exp(mean()); }

double NllSum::ppl_err() const {
    const double m = mean(), var = count > 1 ? sum2 / double(count) - m * m : 0.0;
    if (!(var > 0)) return NAN;
    return ppl() * std::sqrt(var / double(count - 1));
}

void parallel_for(int64_t n, const std::function<void(int64_t)>& fn) {
    const int64_t n_thread = std::min<int64_t>(n, std::max(1u, std::thread::hardware_concurrency()));
    if (n_thread <= 1) {
        for (int64_t i = 0; i < n; ++i) fn(i);
        return;
    }
    std::atomic<int64_t> next{0};
    auto work = [&] {
        for (int64_t i = next++; i < n; i = next++) fn(i);
    };
    std::vector<std::thread> pool;
    for (int64_t t = 1; t < n_thread; ++t) pool.emplace_back(work);
    work();
    for (std::thread& t : pool) t.join();
}

void for_each_chunk_group(const ChunkPlan& plan, const char* tag, const std::function<void(int c0, int n)>& fn) {
    ProgressBar bar(tag, plan.n_chunk, " chunks");
    for (int c0 = 0; c0 < plan.n_chunk; c0 += plan.n_seq) {
        const auto t0 = std::chrono::steady_clock::now();
        fn(c0, std::min(plan.n_seq, plan.n_chunk - c0));
        if (c0 == 0) {
            const double pass = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
            int eta = int(pass * plan.n_chunk / plan.n_seq);
            std::string hours = eta >= 3600 ? std::to_string(eta / 3600) + " hours " : "";
            log_info("%s: %.2f seconds per pass - ETA %s%.2f minutes", tag, pass, hours.c_str(), (eta % 3600) / 60.0);
        }
        bar.update(std::min(plan.n_chunk, c0 + plan.n_seq));
    }
    bar.finish();
}

nlohmann::json run_perplexity(mistral::Context& ctx, const std::vector<int32_t>& tokens, const ChunkPlan& plan,
                              int32_t bos,
                              const std::function<void(int c0, int n, const std::vector<float>& logits)>& on_logits) {
    const int64_t V = ctx.model().config().text.vocab;
    const auto t0 = std::chrono::steady_clock::now();
    log_info("perplexity: calculating perplexity over %d chunks, n_ctx=%d, batch_size=%d, n_seq=%d", plan.n_chunk,
             plan.n_ctx, plan.n_batch, plan.n_seq);
    if (plan.first == 0)
        log_info(
            "perplexity: --score-all: every position after the first of a chunk is scored (%d per chunk), "
            "unlike llama.cpp's second half",
            plan.rows());
    NllSum total;
    nlohmann::json chunks = nlohmann::json::array();
    for_each_chunk_group(plan, "perplexity", [&](int c0, int n) {
        const std::vector<float> logits = eval_chunks(ctx, tokens, plan, c0, n, bos);
        if (on_logits) on_logits(c0, n, logits);
        const std::vector<double> nll = chunk_nll(logits, V, tokens, plan, c0, n);
        for (int c = 0; c < n; ++c) {
            NllSum chunk;
            for (int k = 0; k < plan.rows(); ++k) chunk.add(nll[size_t(c) * plan.rows() + k]);
            total.sum += chunk.sum;
            total.sum2 += chunk.sum2;
            total.count += chunk.count;
            std::printf("[%d]%.4lf,", c0 + c + 1, total.ppl());
            std::fflush(stdout);
            chunks.push_back({{"chunk", c0 + c + 1},
                              {"mean_nll", chunk.mean()},
                              {"ppl", chunk.ppl()},
                              {"running_ppl", total.ppl()}});
        }
    });
    std::printf("\n");
    const double err = total.ppl_err();
    if (!std::isfinite(err)) log_error("Unexpected negative standard deviation of log(prob)");
    std::printf("Final estimate: PPL = %.4lf +/- %.5lf%s\n", total.ppl(), err,
                plan.first == 0 ? " (--score-all: every position after the first scored)" : "");
    std::fflush(stdout);
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    log_info("perplexity: %lld tokens scored in %.2f s", (long long)total.count, secs);
    return {{"n_ctx", plan.n_ctx},
            {"n_batch", plan.n_batch},
            {"n_seq", plan.n_seq},
            {"n_chunk", plan.n_chunk},
            {"first_scored", plan.first},
            {"score_all", plan.first == 0},
            {"tokens", total.count},
            {"mean_nll", total.mean()},
            {"ppl", total.ppl()},
            {"ppl_err", err},
            {"seconds", secs},
            {"chunks", chunks}};
}

}  // namespace common
