// sampling.h — the token sampler: repeat, frequency and presence penalties, top-k, top-p, min-p and
// temperature (llama.cpp's order and defaults), seeded and reproducible; temperature 0 is a deterministic
// argmax.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace common {

struct SamplingParams {
    float temp = 0.15f;           // <= 0: greedy (argmax, lowest id on ties); Mistral recommends 0.15
    int top_k = 40;               // keep the k most likely tokens (0: off)
    float top_p = 0.95f;          // keep the smallest set with this much probability (1: off)
    float min_p = 0.05f;          // drop tokens below min_p × the top probability (0: off)
    float repeat_penalty = 1.0f;  // divide positive / multiply negative logits of recent tokens (1: off)
    float frequency_penalty = 0;  // subtracted from a recent token's logit once per occurrence (0: off)
    float presence_penalty = 0;   // subtracted from the logit of every token that occurs recently (0: off)
    int repeat_last_n = 64;       // how many recent tokens the penalties look at
    uint64_t seed = 0;
};

class Sampler {
public:
    explicit Sampler(const SamplingParams& p);

    // Picks the next token from `logits` [n_vocab]; `recent` are the tokens so far (the penalties read the
    // last repeat_last_n of them). Penalties, then top-k, top-p, min-p on the untempered distribution,
    // then temperature, then a draw.
    int32_t sample(const float* logits, int64_t n_vocab, const std::vector<int32_t>& recent);

    // Speculative decoding: the token at a position for which `draft` was proposed, and whether it is the
    // draft. Greedy: the argmax. Otherwise the draft is kept with its probability under sample()'s
    // distribution, else a token is drawn from that distribution without it, so that every token comes
    // with sample()'s probability (speculative sampling's rule for a draft proposed with certainty).
    struct Verdict {
        int32_t id;
        bool accepted;
    };
    Verdict verify(const float* logits, int64_t n_vocab, const std::vector<int32_t>& recent, int32_t draft);

    const SamplingParams& params() const { return p_; }
    // sample() is then the logits' argmax (lowest id on ties), which a backend can pick on the device.
    bool greedy() const { return p_.temp <= 0 && !penalizes(); }
    std::string describe() const;  // "temp = 0.15, top_k = 40, ..." for logs

private:
    double uniform();  // [0, 1), 53 bits of splitmix64: same draws on every platform
    bool penalizes() const {
        return (p_.repeat_penalty != 1.0f || p_.frequency_penalty != 0 || p_.presence_penalty != 0) &&
               p_.repeat_last_n != 0;
    }
    // `logits`, or a copy in work_ with the penalties applied to the recent tokens.
    const float* penalized(const float* logits, int64_t n_vocab, const std::vector<int32_t>& recent);
    // Top-k, top-p, min-p and temperature: the tokens a draw may pick (kept_) with their weights; returns
    // the weights' sum.
    double choose(const float* logits, int64_t n_vocab);
    // One of kept_ other than `except`, by weight; `total` is the sum of their weights.
    int32_t draw(double total, int32_t except);

    SamplingParams p_;
    uint64_t state_;
    std::vector<float> work_;
    std::vector<int32_t> kept_;
    std::vector<double> weight_;
};

}  // namespace common
