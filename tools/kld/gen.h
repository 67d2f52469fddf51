// gen.h — generation-mode KLD (`kld --gen N`): from each chunk's first half as the prompt the model
// greedy-decodes N tokens; the base model is fed the same tokens, and the two next-token distributions are
// compared at every step (KL(base ‖ model) over the full vocabulary, top-1 agreement, Δp of the chosen token).
#pragma once

#include <nlohmann/json.hpp>

#include "context.h"
#include "perplexity.h"

// `ctx` and `base_ctx` need n_seq >= plan.n_seq and n_ctx >= plan.first + n_gen. Prints a per-step table and
// the llama.cpp-style report over all steps (PPL(Q) and PPL(base) there are of the generated tokens).
nlohmann::json run_generation_kld(mistral::Context& ctx, mistral::Context& base_ctx, const std::vector<int32_t>& tokens,
                                  const common::ChunkPlan& plan, int32_t bos, int n_gen, int top_k);
