// ngram_draft.cpp — the suffix match behind prompt-lookup drafting; see ngram_draft.h.
#include "ngram_draft.h"

#include <algorithm>

namespace common {

std::vector<int32_t> ngram_draft(const std::vector<int32_t>& tokens, const DraftParams& p) {
    std::vector<int32_t> draft;
    const int64_t size = int64_t(tokens.size());
    if (p.n_draft <= 0) return draft;
    for (int64_t n = std::min<int64_t>(p.ngram_max, size - 1); n >= std::max(1, p.ngram_min); --n) {
        const int32_t* suffix = tokens.data() + size - n;
        for (int64_t i = size - n - 1; i >= 0; --i) {  // latest first: the most recent context predicts best
            if (!std::equal(suffix, suffix + n, tokens.data() + i)) continue;
            // tokens[i, i + n) == the suffix: draft[j] (position size + j) is what stood at i + n + j,
            // which, past the end of `tokens`, is an earlier draft token (the period size - n - i repeats).
            for (int64_t j = 0; j < p.n_draft; ++j) {
                const int64_t at = i + n + j;
                draft.push_back(at < size ? tokens[size_t(at)] : draft[size_t(at - size)]);
            }
            return draft;
        }
    }
    return draft;
}

}  // namespace common
