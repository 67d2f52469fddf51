// synthetic.cpp — fills host buffers with random NVFP4 codes and BF16 values of the config's shapes.
#include "synthetic.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <thread>
#include <vector>

#include "numeric.h"
#include "weight_layout.h"

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

// Random tensors of the shapes the layout asks for: norms all ones, NVFP4 linears where the config's
// quantization_config quantizes them (random codes; scales near 1 and a global scale giving weights of
// about 1/sqrt(in)), every other weight uniform BF16 of that size.
class RandomSource final : public WeightSource {
public:
    RandomSource(const Config& cfg, Weights& w, Arena& a, uint64_t seed, int threads)
        : cfg_(cfg), w_(w), a_(a), seed_(seed), threads_(threads) {}

    bool has(const std::string&) const override { return true; }

protected:
    fp4::Tensor* make_dense(const std::string& canon, const std::vector<int64_t>& shape, const std::string&,
                            const std::vector<int64_t>& ne) override {
        if (shape.size() == 1) return ones(canon, ne);
        return bf16(canon, ne, 1.0f / std::sqrt(float(ne[0])));
    }

    fp4::Tensor* make_linear(const std::string& x, int64_t out, int64_t in, const std::string&,
                             const std::string& cls) override {
        std::string why;
        const bool nvfp4 = !cfg_.quant_format.empty() && in % 16 == 0 && cfg_.quant.quantizes({x}, cls, &why);
        if (!nvfp4) return bf16(x + ".weight", {in, out}, 1.0f / std::sqrt(float(in)));
        fp4::Tensor* t = add(fp4::Type::NVFP4, {in, out}, x + ".weight_packed");
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
        t->gscale = 2.0f * std::sqrt(float(in));  // |code| averages ~2
        return t;
    }

private:
    // Uniform BF16 values in [−amp, amp].
    fp4::Tensor* bf16(const std::string& name, const std::vector<int64_t>& ne, float amp) {
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

    fp4::Tensor* ones(const std::string& name, const std::vector<int64_t>& ne) {
        fp4::Tensor* t = add(fp4::Type::BF16, ne, name);
        uint16_t* p = reinterpret_cast<uint16_t*>(a_.alloc(t->nbytes()));
        std::fill(p, p + t->nelements(), uint16_t(0x3f80));
        t->data = p;
        return t;
    }

    fp4::Tensor* add(fp4::Type type, std::vector<int64_t> ne, const std::string& name) {
        w_.owned.push_back(fp4::make_tensor(type, std::move(ne), name));
        return w_.owned.back().get();
    }
    const Config& cfg_;
    Weights& w_;
    Arena& a_;
    uint64_t seed_;
    int threads_;
};

}  // namespace

SyntheticWeights make_synthetic_weights(const Config& cfg, uint64_t seed, int threads) {
    auto arena = std::make_shared<Arena>();
    SyntheticWeights out;
    RandomSource src(cfg, out.weights, *arena, seed, std::max(1, threads));
    Config layout = cfg;
    bind_text(src, layout, out.weights);
    if (cfg.has_vision) bind_vision(src, cfg, out.weights);
    out.storage = arena;
    return out;
}

}  // namespace mistral
