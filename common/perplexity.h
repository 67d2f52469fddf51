// perplexity.h — llama.cpp's perplexity methodology, shared by `perplexity` and `kld`: the token stream of
// a text (BOS once), its cut into chunks, evaluation of several chunks per batch with BOS forced at each
// chunk start, log-softmax in double, per-token NLL, and PPL with llama.cpp's error estimate.
#pragma once

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "context.h"
#include "tokenizer.h"

namespace common {

std::string read_text_file(const std::string& path);

// [BOS] + the text's tokens; special-token names in the text stay plain text.
std::vector<int32_t> tokenize_corpus(const mistral::Tokenizer& tok, const std::string& text);

// Chunk c covers tokens [c·n_ctx, (c+1)·n_ctx) and is fed with its first token replaced by BOS. Logits at
// positions first .. n_ctx−2 predict tokens first+1 .. n_ctx−1: those are the scored predictions.
struct ChunkPlan {
    int n_ctx = 0;                                  // tokens per chunk
    int n_chunk = 0;                                // chunks evaluated
    int first = 0;                                  // first scored position: n_ctx/2 (llama.cpp), or 0 with --score-all
    int n_seq = 1;                                  // chunks per eval call (sequences of the context)
    int n_batch = 0;                                // tokens per eval call; below n_ctx a chunk takes several calls
    int rows() const { return n_ctx - 1 - first; }  // scored predictions per chunk
};

// n_chunk chunks of n_ctx tokens, n_seq = max(1, n_batch / n_ctx) capped by n_chunk.
ChunkPlan make_plan(int n_ctx, int n_chunk, int n_batch, bool score_all);
// llama.cpp's rules for a token stream: n_ctx > 0, at least 2·n_ctx tokens, n_chunk = n_tokens / n_ctx
// capped by max_chunks (< 0: all).
ChunkPlan plan_chunks(size_t n_tokens, int n_ctx, int n_batch, int max_chunks, bool score_all);

// Logits of the scored predictions of chunks [c0, c0+n), n <= ctx.n_seq(): [n·plan.rows(), vocab], chunk-major.
// The n chunks share one batch laid out as [positions < first of every chunk][positions >= first of every
// chunk], so the rows asked for form one contiguous range at the end of the batch.
std::vector<float> eval_chunks(mistral::Context& ctx, const std::vector<int32_t>& tokens, const ChunkPlan& plan, int c0,
                               int n, int32_t bos);

// Target token of scored row k of chunk c.
inline int32_t chunk_target(const std::vector<int32_t>& tokens, const ChunkPlan& plan, int c, int k) {
    return tokens[size_t(c) * plan.n_ctx + plan.first + k + 1];
}

// max and log Σ exp(l − max) of one logits row, the sum in double.
struct RowNorm {
    double max = 0, lse = 0;
};
RowNorm row_norm(const float* logits, int64_t n_vocab);

// −log softmax(logits)[target] = max + lse − logits[target].
double token_nll(const float* logits, int64_t n_vocab, int32_t target);

// NLL of every scored prediction of chunks [c0, c0+n) from eval_chunks' logits, chunk-major.
std::vector<double> chunk_nll(const std::vector<float>& logits, int64_t n_vocab, const std::vector<int32_t>& tokens,
                              const ChunkPlan& plan, int c0, int n);

// Σnll and Σnll² of the scored tokens: PPL = exp(mean) and llama.cpp's uncertainty
// PPL·sqrt((⟨nll²⟩ − ⟨nll⟩²)/(N−1)) (NaN when that variance is not positive).
struct NllSum {
    double sum = 0, sum2 = 0;
    int64_t count = 0;
    void add(double nll) {
        sum += nll;
        sum2 += nll * nll;
        ++count;
    }
    double mean() const { return count ? sum / double(count) : 0.0; }
    double ppl() const;
    double ppl_err() const;
};

// Runs fn(i) for i in [0, n) on all cores.
void parallel_for(int64_t n, const std::function<void(int64_t)>& fn);

// Calls fn(c0, n) for each group of up to plan.n_seq chunks in order, drawing a progress bar and logging
// llama.cpp's "<tag>: %.2f seconds per pass - ETA ..." after the first group.
void for_each_chunk_group(const ChunkPlan& plan, const char* tag, const std::function<void(int c0, int n)>& fn);

// The whole perplexity pass: prints `[i]ppl,` (running PPL) per chunk and `Final estimate: PPL = X +/- Y` on
// stdout; `on_logits(c0, n, logits)` sees each group's scored logits (kld --save-base stores them). Returns
// the per-chunk and final figures as JSON.
nlohmann::json run_perplexity(
    mistral::Context& ctx, const std::vector<int32_t>& tokens, const ChunkPlan& plan, int32_t bos,
    const std::function<void(int c0, int n, const std::vector<float>& logits)>& on_logits = {});

}  // namespace common
