// ngram_draft.h — prompt-lookup drafting (llama.cpp's lookup decoding, vLLM's "ngram" speculation): the
// tokens that followed the latest earlier occurrence of the context's last n tokens are proposed as the
// next ones, and the model checks them all in one pass. Answers that quote the prompt or repeat
// themselves (code edits, summaries, lists) then take several tokens per pass.
#pragma once

#include <cstdint>
#include <vector>

namespace common {

struct DraftParams {
    int n_draft = 0;    // tokens proposed per pass (0: off)
    int ngram_min = 2;  // the shortest suffix that counts as a match
    int ngram_max = 4;  // the longest suffix tried first
};

// Up to p.n_draft tokens to follow `tokens`: for n from ngram_max down to ngram_min, the latest earlier
// occurrence of the last n tokens, and what came after it. A match close to the end continues its own
// period (after "a b c a b" the draft for "a b" is "c a b c ..."). Empty when nothing matches.
std::vector<int32_t> ngram_draft(const std::vector<int32_t>& tokens, const DraftParams& p);

}  // namespace common
