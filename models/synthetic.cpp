// synthetic.cpp — fills host buffers with random NVFP4 codes and BF16 values of the config's shapes.
#include "synthetic.h"

#include <array>
#include <cmath>
#include <cstring>
#include <thread>
#include <vector>

#include "numeric.h"

namespace mistral {

namespace {

struct Arena {
    std::vector<std::unique_ptr<uint8_t[]>> blocks;
    uint8_t* alloc(size_t n) {
        blocks.emplace_back(new uint8_t[n]);
        return blocks.back().get();
    }
};

uint64_t splitmix(uint64_t& s) {
    uint64_t z = (s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

// Calls fill(begin, end, seed) on `threads` slices of [0, n).
template <class F>
void parallel_fill(size_t n, uint64_t seed, int threads, F fill) {
    std::vector<std::thread> pool;
    const size_t step = (n + size_t(threads) - 1) / size_t(threads);
    for (int t = 0; t < threads; ++t) {
        size_t b = std::min(n, step * size_t(t)), e = std::min(n, b + step);
        pool.emplace_back(fill, b, e, seed * 1000003 + uint64_t(t));
    }
    for (auto& th : pool) th.join();
}

class Builder {
public:
    Builder(Weights& w, Arena& a, uint64_t seed, int threads) : w_(w), a_(a), seed_(seed), threads_(threads) {}

    // Uniform BF16 values in [−amp, amp].
    fp4::Tensor* bf16(std::vector<int64_t> ne, float amp, const std::string& name) {
        fp4::Tensor* t = add(fp4::Type::BF16, ne, name);
        uint16_t* p = reinterpret_cast<uint16_t*>(a_.alloc(t->nbytes()));
        parallel_fill(size_t(t->nelements()), ++seed_, threads_, [=](size_t b, size_t e, uint64_t s) {
            for (size_t i = b; i < e; ++i) {
                float u = float(splitmix(s) >> 40) * (1.0f / 16777216.0f);
                p[i] = fp4::f32_to_bf16((2 * u - 1) * amp);
            }
        });
        t->data = p;
        return t;
    }

    fp4::Tensor* ones(int64_t n, const std::string& name) {
        fp4::Tensor* t = add(fp4::Type::BF16, {n}, name);
        uint16_t* p = reinterpret_cast<uint16_t*>(a_.alloc(t->nbytes()));
        for (int64_t i = 0; i < n; ++i) p[i] = 0x3f80;
        t->data = p;
        return t;
    }

    // Random codes; scales near 1 and a global scale giving weights of about 1/sqrt(K) in size.
    fp4::Tensor* linear(int64_t out, int64_t in, bool nvfp4, const std::string& name) {
        const float amp = 1.0f / std::sqrt(float(in));
        if (!nvfp4) return bf16({in, out}, amp, name);
        fp4::Tensor* t = add(fp4::Type::NVFP4, {in, out}, name);
        uint8_t* codes = a_.alloc(t->nbytes());
        uint8_t* scales = a_.alloc(t->scale_bytes());
        parallel_fill(t->nbytes() / 8, ++seed_, threads_, [=](size_t b, size_t e, uint64_t s) {
            for (size_t i = b; i < e; ++i) {
                uint64_t r = splitmix(s);
                std::memcpy(codes + 8 * i, &r, 8);
            }
        });
        std::array<uint8_t, 256> lut;  // E4M3 scales spread over [0.75, 1.25]
        for (size_t i = 0; i < lut.size(); ++i) lut[i] = fp4::f32_to_e4m3(0.75f + 0.5f * float(i) / 255);
        parallel_fill(t->scale_bytes(), ++seed_, threads_, [=](size_t b, size_t e, uint64_t s) {
            for (size_t i = b; i < e; ++i) scales[i] = lut[splitmix(s) & 255];
        });
        t->data = codes;
        t->scale = scales;
        t->gscale = 2.0f / amp;  // |code| averages ~2
        return t;
    }

private:
    fp4::Tensor* add(fp4::Type type, std::vector<int64_t> ne, const std::string& name) {
        w_.owned.push_back(fp4::make_tensor(type, std::move(ne), name));
        return w_.owned.back().get();
    }
    Weights& w_;
    Arena& a_;
    uint64_t seed_;
    int threads_;
};

}  // namespace

SyntheticWeights make_synthetic_weights(const Config& cfg, uint64_t seed, int threads) {
    auto arena = std::make_shared<Arena>();
    SyntheticWeights out;
    Weights& w = out.weights;
    Builder b(w, *arena, seed, std::max(1, threads));
    const TextConfig& c = cfg.text;
    const bool q = !cfg.quant_format.empty();
    const int64_t D = c.hidden, F = c.intermediate, qd = int64_t(c.n_head) * c.head_dim,
                  kvd = int64_t(c.n_kv_head) * c.head_dim;
    w.tok_embd = b.bf16({D, c.vocab}, 0.05f, "embed_tokens");
    for (int il = 0; il < c.n_layer; ++il) {
        const std::string p = "layers." + std::to_string(il) + ".";
        Block L;
        L.attn_norm = b.ones(D, p + "input_layernorm");
        L.wq = b.linear(qd, D, q, p + "q_proj");
        L.wk = b.linear(kvd, D, q, p + "k_proj");
        L.wv = b.linear(kvd, D, q, p + "v_proj");
        L.wo = b.linear(D, qd, q, p + "o_proj");
        L.ffn_norm = b.ones(D, p + "post_attention_layernorm");
        L.w_gate = b.linear(F, D, q, p + "gate_proj");
        L.w_up = b.linear(F, D, q, p + "up_proj");
        L.w_down = b.linear(D, F, q, p + "down_proj");
        w.layers.push_back(L);
    }
    w.out_norm = b.ones(D, "norm");
    w.lm_head = b.linear(c.vocab, D, false, "lm_head");
    out.storage = arena;
    return out;
}

}  // namespace mistral
