// sampling.cpp — penalties, truncation (top-k, top-p, min-p), temperature and the seeded draw.
#include "sampling.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <stdexcept>
#include <unordered_map>

namespace common {

Sampler::Sampler(const SamplingParams& p) : p_(p), state_(p.seed) {
    if (p.top_k < 0) throw std::runtime_error("--top-k must be >= 0");
    if (!(p.top_p > 0 && p.top_p <= 1)) throw std::runtime_error("--top-p must be in (0, 1]");
    if (!(p.min_p >= 0 && p.min_p <= 1)) throw std::runtime_error("--min-p must be in [0, 1]");
    if (!(p.repeat_penalty > 0)) throw std::runtime_error("--repeat-penalty must be > 0");
    if (p.repeat_last_n < 0) throw std::runtime_error("--repeat-last-n must be >= 0");
    if (!std::isfinite(p.frequency_penalty)) throw std::runtime_error("--frequency-penalty must be a finite number");
    if (!std::isfinite(p.presence_penalty)) throw std::runtime_error("--presence-penalty must be a finite number");
}

std::string Sampler::describe() const {
    char buf[256];
    std::snprintf(buf, sizeof buf,
                  "temp = %.3f, top_k = %d, top_p = %.3f, min_p = %.3f, repeat_penalty = %.3f, frequency_penalty = "
                  "%.3f, presence_penalty = %.3f (last %d), seed = %llu",
                  double(p_.temp), p_.top_k, double(p_.top_p), double(p_.min_p), double(p_.repeat_penalty),
                  double(p_.frequency_penalty), double(p_.presence_penalty), p_.repeat_last_n,
                  (unsigned long long)p_.seed);
    return buf;
}

double Sampler::uniform() {
    // splitmix64
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return double(z >> 11) * 0x1.0p-53;
}

const float* Sampler::penalized(const float* logits, int64_t n_vocab, const std::vector<int32_t>& recent) {
    if (!penalizes() || recent.empty()) return logits;
    work_.assign(logits, logits + n_vocab);
    const size_t n = std::min(recent.size(), size_t(p_.repeat_last_n));
    std::unordered_map<int32_t, int> count;
    for (auto it = recent.end() - long(n); it != recent.end(); ++it) ++count[*it];
    for (const auto& [id, times] : count) {
        if (id < 0 || id >= n_vocab) continue;
        float& l = work_[size_t(id)];
        l = l > 0 ? l / p_.repeat_penalty : l * p_.repeat_penalty;
        l -= float(times) * p_.frequency_penalty + p_.presence_penalty;
    }
    return work_.data();
}

namespace {

struct Cand {
    int32_t id;
    float logit;
};

// Best first; ties by lowest id so that every choice is deterministic.
bool better(const Cand& a, const Cand& b) { return a.logit > b.logit || (a.logit == b.logit && a.id < b.id); }

// The first index in [i, n) whose logit is above t, or n. Most are not (of 131072 logits only ~k·ln(n/k)
// enter a top-k heap), so whole groups of 16 are compared at once, in vector registers (on x86-64 compiled
// for AVX-512 and AVX2 too, picked at load time): 57 → 21 µs per draw on this project's CI machine.
#ifdef __x86_64__
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
int64_t next_above(const float* logits, int64_t i, int64_t n, float t) {
    for (; i + 16 <= n; i += 16) {
        int above = 0;  // a count, not a bool, and not unrolled first: GCC vectorizes this reduction
#pragma GCC unroll 1
        for (int j = 0; j < 16; ++j) above += logits[i + j] > t;
        if (above) break;
    }
    while (i < n && !(logits[i] > t)) ++i;
    return i;
}

// The k best of logits[0, n), best first, in one pass: a candidate enters the heap of the k best so far
// (worst on top) only when its logit is above the worst's; an equal one comes later, so it has the higher
// id and loses the tie.
std::vector<Cand> top_k(const float* logits, int64_t n, int k) {
    std::vector<Cand> heap;
    heap.reserve(size_t(k));
    for (int64_t i = 0; i < n && int64_t(heap.size()) < k; ++i) heap.push_back({int32_t(i), logits[i]});
    std::make_heap(heap.begin(), heap.end(), better);
    for (int64_t i = next_above(logits, k, n, heap.front().logit); i < n;
         i = next_above(logits, i + 1, n, heap.front().logit)) {
        std::pop_heap(heap.begin(), heap.end(), better);
        heap.back() = {int32_t(i), logits[i]};
        std::push_heap(heap.begin(), heap.end(), better);
    }
    std::sort(heap.begin(), heap.end(), better);
    return heap;
}

}  // namespace

int32_t Sampler::sample(const float* logits_in, int64_t n_vocab, const std::vector<int32_t>& recent) {
    if (n_vocab <= 0) throw std::runtime_error("sampler: empty logits");
    const float* logits = penalized(logits_in, n_vocab, recent);
    if (p_.temp <= 0) return int32_t(std::max_element(logits, logits + n_vocab) - logits);  // first of the best
    return draw(choose(logits, n_vocab), -1);
}

Sampler::Verdict Sampler::verify(const float* logits_in, int64_t n_vocab, const std::vector<int32_t>& recent,
                                 int32_t draft) {
    if (p_.temp <= 0) {
        const int32_t id = sample(logits_in, n_vocab, recent);
        return {id, id == draft};
    }
    if (n_vocab <= 0) throw std::runtime_error("sampler: empty logits");
    const float* logits = penalized(logits_in, n_vocab, recent);
    const double total = choose(logits, n_vocab);
    double w_draft = 0;
    for (size_t i = 0; i < kept_.size(); ++i)
        if (kept_[i] == draft) w_draft = weight_[i];
    // Kept with probability p(draft); otherwise a draw from the rest, renormalised: any other token t then
    // comes with (1 - p(draft))·p(t)/(1 - p(draft)) = p(t), as from sample().
    if (w_draft > 0 && uniform() * total < w_draft) return {draft, true};
    return {draw(total - w_draft, draft), false};
}

int32_t Sampler::draw(double total, int32_t except) {
    double r = uniform() * total;
    for (size_t i = 0; i < kept_.size(); ++i) {
        if (kept_[i] == except) continue;
        r -= weight_[i];
        if (r < 0) return kept_[i];
    }
    for (size_t i = kept_.size(); i-- > 0;)  // rounding left r >= 0: the last one that may be drawn
        if (kept_[i] != except) return kept_[i];
    return except;  // nothing else was kept (then p(except) was 1 and verify() kept it)
}

double Sampler::choose(const float* logits, int64_t n_vocab) {
    // Untempered probabilities exp(logit - top) and their sum, over the top-k survivors when top-k is on.
    // Without top-k only the tokens top-p and min-p could keep are sorted: those above a probability floor.
    std::vector<Cand> c;
    double sum = 0;
    float top;
    if (p_.top_k > 0 && int64_t(p_.top_k) < n_vocab) {
        c = top_k(logits, n_vocab, p_.top_k);
        top = c.front().logit;
        for (const Cand& x : c) sum += std::exp(double(x.logit) - double(top));
    } else {
        c.resize(static_cast<size_t>(n_vocab));
        for (int64_t i = 0; i < n_vocab; ++i) c[size_t(i)] = {int32_t(i), logits[i]};
        top = *std::max_element(logits, logits + n_vocab);
        std::vector<float> q(c.size());  // c[i].id == i here
        for (size_t i = 0; i < c.size(); ++i) sum += q[i] = std::exp(c[i].logit - top);
        float floor = p_.min_p;
        if (p_.top_p < 1)
            for (float f = 1e-3f; f > 1e-30f; f *= 1.0f / 32) {
                double mass = 0;
                for (float v : q) mass += v >= f ? v : 0;
                if (mass >= double(p_.top_p) * sum) {
                    floor = std::max(floor, f);
                    break;
                }
            }
        if (floor > 0)
            c.erase(std::remove_if(c.begin(), c.end(), [&](const Cand& x) { return q[size_t(x.id)] < floor; }), c.end());
        if (c.size() < size_t(n_vocab) || p_.top_p < 1 || p_.min_p > 0) std::sort(c.begin(), c.end(), better);
    }
    const size_t k = c.size();

    // Top-p and min-p cut the sorted list (unsorted only when neither is on: nothing to cut).
    std::vector<double> prob(k);
    for (size_t i = 0; i < k; ++i) prob[i] = std::exp(double(c[i].logit) - double(top));
    size_t keep = k;
    if (p_.top_p < 1) {
        double acc = 0;
        for (size_t i = 0; i < k; ++i) {
            acc += prob[i] / sum;
            if (acc >= double(p_.top_p)) {
                keep = i + 1;
                break;
            }
        }
    }
    if (p_.min_p > 0)
        for (size_t i = 1; i < keep; ++i)
            if (prob[i] < double(p_.min_p) * prob[0]) {
                keep = i;
                break;
            }

    // Temperature.
    kept_.resize(keep);
    weight_.resize(keep);
    double total = 0;
    for (size_t i = 0; i < keep; ++i) {
        kept_[i] = c[i].id;
        total += weight_[i] = std::exp((double(c[i].logit) - double(top)) / double(p_.temp));
    }
    return total;
}

}  // namespace common
