// compare.h — the KL-divergence pass of `kld`: every chunk through the model, its scored rows against the
// base (rows of a `_logits_` file, or logits of a second model), llama.cpp's per-chunk lines and final report.
#pragma once

#include <nlohmann/json.hpp>

#include "context.h"
#include "kld_file.h"
#include "perplexity.h"

// Exactly one of base_file and base_ctx is set. With a file the stored 16-bit rows are the base (llama.cpp's
// computation); with a second model the base is its fp32 logits, exact over the whole vocabulary.
struct CompareSetup {
    mistral::Context* ctx = nullptr;
    common::KldReader* base_file = nullptr;
    mistral::Context* base_ctx = nullptr;
    const std::vector<int32_t>* tokens = nullptr;
    common::ChunkPlan plan;
    int32_t bos = 1;
    int top_k = 0;  // also report the top-k KLD (0: off)
};

// Prints the chunk table and the final statistics on stdout; returns them as JSON.
nlohmann::json run_compare(const CompareSetup& s);
