// test_ops.cpp — every CPU-backend op against a plain scalar reference written here, on random data
// with odd and model-like sizes, for each kernel set this machine runs (scalar, AVX2, AVX-512); plus
// KV-cache behaviour (decode == prefill, sequences isolated) and the arena's buffer reuse.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <stdexcept>
#include <tuple>
#include <string>
#include <vector>

#include "rng.h"
#include "cpu/buffer.h"
#include "cpu/cpu_backend.h"
#include "cpu/fma_peak.h"
#include "cpu/graph_plan.h"
#include "fp4.h"
#include "numeric.h"
#include "rope.h"

using namespace fp4;
using cpu::Isa;

namespace {

std::vector<Isa> machine_isas() {
    std::vector<Isa> out;
    for (Isa isa : {Isa::Scalar, Isa::Avx2, Isa::Avx512, Isa::Avx512Bf16})
        if (cpu::isa_supported(isa)) out.push_back(isa);
    return out;
}


// A weight/table of N rows × K columns with host bytes, and its values as F32 (the reference).
struct HostWeight {
    std::unique_ptr<Tensor> t;
    std::vector<uint8_t> bytes, scales;
    std::vector<float> values;
};

HostWeight make_weight(Type type, int64_t N, int64_t K, Rng& rng) {
    HostWeight w;
    w.t = make_tensor(type, {K, N}, "w");
    w.values.resize(size_t(N * K));
    w.bytes.resize(w.t->nbytes());
    if (type == Type::NVFP4) {
        for (auto& b : w.bytes) b = uint8_t(rng.integer(0, 255));
        w.scales.resize(w.t->scale_bytes());
        for (auto& s : w.scales) {  // mostly normal E4M3 scales, some subnormal or zero; never NaN
            const int r = rng.integer(0, 9);
            s = uint8_t(r == 0 ? rng.integer(0, 7) : rng.integer(0x20, 0x50));
        }
        w.t->gscale = 2688.0f / 3.0f;
        for (int64_t n = 0; n < N; ++n)
            dequant_nvfp4_row(&w.bytes[size_t(n * K / 2)], &w.scales[size_t(n * K / 16)], w.t->gscale, K,
                              &w.values[size_t(n * K)]);
        w.t->scale = w.scales.data();
    } else {
        for (size_t i = 0; i < w.values.size(); ++i) {
            const float v = rng.uniform();
            if (type == Type::F32) {
                std::memcpy(&w.bytes[4 * i], &v, 4);
                w.values[i] = v;
            } else {  // F16: a random finite half (sign, exponent 1..16, mantissa)
                const uint16_t bits =
                    type == Type::BF16
                        ? f32_to_bf16(v)
                        : uint16_t((rng.integer(0, 1) << 15) | (rng.integer(1, 16) << 10) | rng.integer(0, 1023));
                std::memcpy(&w.bytes[2 * i], &bits, 2);
                w.values[i] = type == Type::BF16 ? bf16_to_f32(bits) : f16_to_f32(bits);
            }
        }
    }
    w.t->data = w.bytes.data();
    return w;
}

std::vector<float> read_output(Backend& be, const Tensor* t) {
    std::vector<float> out(size_t(t->nelements()));
    be.read(*t, out.data(), out.size() * 4);
    return out;
}

// Checks |got − want| <= tol·(scale + |want|) element-wise (scale: a per-element magnitude, e.g. Σ|a·b|).
void check_close(const std::vector<float>& got, const std::vector<double>& want, double tol,
                 const std::vector<double>& scale = {}) {
    REQUIRE(got.size() == want.size());
    size_t bad = 0;
    double worst = 0;
    for (size_t i = 0; i < got.size(); ++i) {
        const double bound = tol * ((scale.empty() ? 0.0 : scale[i]) + std::fabs(want[i])) + 1e-30;
        const double err = std::fabs(double(got[i]) - want[i]);
        worst = std::max(worst, err / bound * tol);
        if (!(err <= bound)) ++bad;
    }
    INFO("worst relative error " << worst);
    CHECK(bad == 0);
}

std::vector<double> to_double(const std::vector<float>& v) { return {v.begin(), v.end()}; }

}  // namespace

TEST_CASE("MUL_MAT matches a double reference for every weight type, shape and kernel set") {
    struct Shape { int64_t M, N, K; };
    const Shape shapes[] = {{1, 37, 48},  {5, 37, 48},   {3, 19, 16},    {4, 64, 256},   {7, 33, 400},
                            {2, 5, 1040}, {70, 9, 272},  {16, 40, 2320}, {64, 24, 512},  {1, 300, 5120},
                            {8, 31, 37},  {13, 17, 588}, {1, 7, 3},     {1, 9, 400},    {4, 11, 912},
                            {2, 6, 144},  {33, 12, 1040}, {130, 21, 160}};
    // With BF16 activations the reference takes x rounded to BF16 for NVFP4 and BF16 weights (not rounding
    // would miss the 1e-5 bound by ~2^-9/√K of Σ|w·x|), F32 and F16 weights keep x as it is.
    for (Isa isa : machine_isas())
        for (bool bf16_x : {false, true}) {
            auto be = cpu::make_backend(2, isa, bf16_x);
            for (Type type : {Type::F32, Type::F16, Type::BF16, Type::NVFP4})
                for (const Shape& s : shapes) {
                    if (type == Type::NVFP4 && s.K % 16) continue;
                    const std::string isa_str = cpu::isa_name(isa);
                    CAPTURE(isa_str);
                    CAPTURE(bf16_x);
                    CAPTURE(type_name(type));
                    CAPTURE(s.M);
                    CAPTURE(s.N);
                    CAPTURE(s.K);
                    Rng rng;
                    HostWeight w = make_weight(type, s.N, s.K, rng);
                    std::vector<float> x = rng.floats(size_t(s.M * s.K));
                    std::vector<float> xr = x;
                    if (bf16_x && (type == Type::NVFP4 || type == Type::BF16))
                        for (float& v : xr) v = bf16_to_f32(f32_to_bf16(v));
                    be->upload_weight(*w.t);
                    Graph g;
                    Tensor* xt = g.input(Type::F32, {s.K, s.M}, x.data(), "x");
                    Tensor* y = g.mark_output(g.mul_mat(w.t.get(), xt));
                    be->compute(g);
                    std::vector<double> want(size_t(s.M * s.N)), mag(want.size());
                    for (int64_t m = 0; m < s.M; ++m)
                        for (int64_t n = 0; n < s.N; ++n) {
                            double acc = 0, abs = 0;
                            for (int64_t k = 0; k < s.K; ++k) {
                                const double p = double(w.values[size_t(n * s.K + k)]) * xr[size_t(m * s.K + k)];
                                acc += p, abs += std::fabs(p);
                            }
                            want[size_t(m * s.N + n)] = acc, mag[size_t(m * s.N + n)] = abs;
                        }
                    check_close(read_output(*be, y), want, 1e-5, mag);
                }
        }
}

TEST_CASE("MUL_MAT results do not depend on the thread count") {
    Rng rng;
    HostWeight w = make_weight(Type::NVFP4, 53, 384, rng);
    for (bool bf16_x : {false, true}) {
        CAPTURE(bf16_x);
        auto be = make_cpu_backend(1, bf16_x);
        be->upload_weight(*w.t);
        for (int64_t M : {1, 3, 9, 40, 140}) {
            std::vector<float> x = rng.floats(size_t(M * 384));
            Graph g;
            Tensor* y = g.mark_output(g.mul_mat(w.t.get(), g.input(Type::F32, {384, M}, x.data())));
            std::vector<std::vector<float>> results;
            for (int threads : {1, 2, 5, 2}) {
                be->set_threads(threads);
                be->compute(g);
                results.push_back(read_output(*be, y));
            }
            for (size_t i = 1; i < results.size(); ++i) CHECK(results[0] == results[i]);
        }
    }
}

TEST_CASE("each kernel set's FMA chains run gemm_lanes lanes, as the FMA peak counts them") {
    // Chain j: a ← 0.999·a + 0.001 from 1 + j/1000, the same in every lane: the sum over lanes is
    // gemm_lanes times the scalar sum of the chains.
    const int64_t iters = 1000;
    double want = 0;
    for (int j = 0; j < cpu::kFmaChains; ++j) {
        double a = 1.0 + j * 1e-3;
        for (int64_t i = 0; i < iters; ++i) a = a * 0.999 + 1e-3;
        want += a;
    }
    cpu::ThreadPool pool(2);
    for (Isa isa : machine_isas()) {
        const std::string isa_str = cpu::isa_name(isa);
        CAPTURE(isa_str);
        const cpu::Kernels& kern = cpu::kernels_for(isa);
        CHECK(kern.fma_chains(iters) == doctest::Approx(want * double(kern.gemm_lanes)).epsilon(1e-4));
        const double peak = cpu::measure_fma_peak(kern, pool, 1);
        CHECK(std::isfinite(peak));
        CHECK(peak > 0);
        if (!kern.pair_chains) continue;
        // BF16 dot products: every step adds 2 · 2^-5 · 2^-5 to each lane of every chain.
        double pair_want = 0;
        for (int j = 0; j < cpu::kFmaChains; ++j) pair_want += double(1.0f + float(j) * 1e-3f) + iters * 0x1p-9;
        CHECK(kern.pair_chains(iters) == doctest::Approx(pair_want * double(kern.gemm_lanes)).epsilon(1e-6));
        CHECK(cpu::measure_fma_peak(kern, pool, 1, true) > 0);
    }
}

TEST_CASE("GET_ROWS decodes F32, BF16, F16 and NVFP4 tables exactly") {
    for (Isa isa : machine_isas())
        for (Type type : {Type::F32, Type::BF16, Type::F16, Type::NVFP4}) {
            const std::string isa_str = cpu::isa_name(isa);
            CAPTURE(isa_str);
            CAPTURE(type_name(type));
            auto be = cpu::make_backend(2, isa);
            Rng rng;
            HostWeight table = make_weight(type, 29, 48, rng);
            be->upload_weight(*table.t);
            const std::vector<int32_t> ids = {3, 0, 28, 3, 17};
            Graph g;
            Tensor* y = g.mark_output(g.get_rows(table.t.get(), g.input(Type::I32, {5}, ids.data())));
            be->compute(g);
            std::vector<float> got = read_output(*be, y), want;
            for (int32_t id : ids)
                want.insert(want.end(), &table.values[size_t(id * 48)], &table.values[size_t(id * 48 + 48)]);
            CHECK(got == want);
        }
}

TEST_CASE("GET_ROWS rejects an id outside the table") {
    auto be = make_cpu_backend(2);
    Rng rng;
    HostWeight table = make_weight(Type::F32, 4, 16, rng);
    be->upload_weight(*table.t);
    const int32_t ids[] = {4};
    Graph g;
    g.mark_output(g.get_rows(table.t.get(), g.input(Type::I32, {1}, ids)));
    CHECK_THROWS_AS(be->compute(g), std::out_of_range);
}

TEST_CASE("RMS_NORM with F32 and BF16 weights") {
    for (Type wtype : {Type::F32, Type::BF16}) {
        auto be = make_cpu_backend(2);
        Rng rng;
        const int64_t M = 6, D = 333;
        HostWeight w = make_weight(wtype, 1, D, rng);
        std::vector<float> x = rng.floats(size_t(M * D), -3, 3);
        Graph g;
        Tensor* y = g.mark_output(g.rms_norm(g.input(Type::F32, {D, M}, x.data()), w.t.get(), 1e-5f));
        be->compute(g);
        std::vector<double> want(x.size());
        for (int64_t m = 0; m < M; ++m) {
            double ss = 0;
            for (int64_t i = 0; i < D; ++i) ss += double(x[size_t(m * D + i)]) * x[size_t(m * D + i)];
            const double inv = 1.0 / std::sqrt(ss / D + 1e-5);
            for (int64_t i = 0; i < D; ++i) want[size_t(m * D + i)] = x[size_t(m * D + i)] * inv * w.values[size_t(i)];
        }
        check_close(read_output(*be, y), want, 1e-6);
    }
}

// Reference rotation of lanes (i, i + Dh/2) of each head by angle[i].
static std::vector<double> rotate_ref(const std::vector<float>& x, int64_t M, int H, int Dh,
                                      const std::vector<std::vector<double>>& angle) {
    std::vector<double> y(x.size());
    for (int64_t m = 0; m < M; ++m)
        for (int h = 0; h < H; ++h)
            for (int i = 0; i < Dh / 2; ++i) {
                const size_t a = size_t(m * H * Dh + h * Dh + i), b = a + size_t(Dh / 2);
                const double c = std::cos(angle[size_t(m)][size_t(i)]), s = std::sin(angle[size_t(m)][size_t(i)]);
                y[a] = x[a] * c - x[b] * s;
                y[b] = x[b] * c + x[a] * s;
            }
    return y;
}

TEST_CASE("ROPE rotates half-split lanes by pos / theta^(2j/Dh)") {
    auto be = make_cpu_backend(2);
    Rng rng;
    const int H = 3, Dh = 24;
    const float theta = 1e6f;
    const std::vector<int32_t> pos = {0, 1, 7, 100, 4095};
    const int64_t M = int64_t(pos.size());
    std::vector<float> x = rng.floats(size_t(M * H * Dh));
    Graph g;
    Tensor* y = g.mark_output(
        g.rope(g.input(Type::F32, {H * Dh, M}, x.data()), g.input(Type::I32, {M}, pos.data()), H, Dh, theta));
    be->compute(g);
    std::vector<std::vector<double>> angle(size_t(M), std::vector<double>(Dh / 2));
    for (int64_t m = 0; m < M; ++m)
        for (int j = 0; j < Dh / 2; ++j) {
            const float inv_freq = 1.0f / std::pow(theta, float(2 * j) / float(Dh));  // float, as torch
            angle[size_t(m)][size_t(j)] = double(float(pos[size_t(m)]) * inv_freq);
        }
    std::vector<float> got = read_output(*be, y);
    check_close(got, rotate_ref(x, M, H, Dh, angle), 1e-5, std::vector<double>(x.size(), 1.0));
    for (int i = 0; i < H * Dh; ++i) CHECK(got[size_t(i)] == x[size_t(i)]);  // pos 0 is the identity
}

TEST_CASE("rope_shift_rows turns keys stored with ROPE at p into those at p - d, in every cache type") {
    auto be = make_cpu_backend(2);
    Rng rng;
    const int H = 2, Dh = 128;
    const float theta = 1e9f;  // the 24B model's
    const std::vector<int32_t> at = {5, 700, 4100, 131000}, back = {1, 300, 4000, 100000};
    const int64_t M = int64_t(at.size());
    std::vector<int32_t> moved(at.size());
    for (size_t m = 0; m < at.size(); ++m) moved[m] = at[m] - back[m];
    std::vector<float> x = rng.floats(size_t(M * H * Dh));
    auto roped = [&](const std::vector<int32_t>& pos) {
        Graph g;
        Tensor* y = g.mark_output(
            g.rope(g.input(Type::F32, {H * Dh, M}, x.data()), g.input(Type::I32, {M}, pos.data()), H, Dh, theta));
        be->compute(g);
        return read_output(*be, y);
    };
    const std::vector<float> stored = roped(at), want = roped(moved);
    // Relative rms errors: F32 ~4e-8 near position 0, growing as p·3e-9 (the ROPE op's angles are float
    // products, p·inv_freq rounded, ~4e-4 at position 131000); BF16 ~2e-3 and FP8 ~3e-2, the rounding of
    // the stored and of the turned values.
    for (auto [type, tol] : {std::pair{Type::F32, 1e-6}, {Type::BF16, 4e-3}, {Type::F8_E4M3, 5e-2}}) {
        CAPTURE(std::string(type_name(type)));
        auto t = make_tensor(type, {H * Dh, M}, "k");
        std::vector<uint8_t> bytes(t->nbytes());
        store_cache_values(type, stored.data(), int64_t(stored.size()), bytes.data());
        for (int64_t m = 0; m < M; ++m)  // each row by its own distance
            rope_shift_rows(type, bytes.data() + size_t(m) * t->nbytes() / size_t(M), 1, H, Dh, theta,
                            -int64_t(back[size_t(m)]));
        std::vector<float> turned(stored.size());
        load_cache_values(type, bytes.data(), int64_t(turned.size()), turned.data());
        for (int64_t m = 0; m < M; ++m) {
            CAPTURE(at[size_t(m)]);
            double err = 0, norm = 0;
            for (int64_t i = m * H * Dh; i < (m + 1) * H * Dh; ++i) {
                const float got = turned[size_t(i)];
                err += (got - want[size_t(i)]) * double(got - want[size_t(i)]);
                norm += double(want[size_t(i)]) * want[size_t(i)];
            }
            CHECK(std::sqrt(err / norm) <= tol + 1e-8 * at[size_t(m)]);
        }
    }
    CHECK_THROWS(rope_shift_rows(Type::F16, x.data(), 1, H, Dh, theta, 1));
}

TEST_CASE("ROPE_2D uses even frequencies for rows and odd ones for columns") {
    auto be = make_cpu_backend(2);
    Rng rng;
    const int H = 2, Dh = 16;
    const float theta = 10000.0f;
    const std::vector<int32_t> rc = {0, 0, 0, 5, 3, 0, 7, 11};
    const int64_t M = 4;
    std::vector<float> x = rng.floats(size_t(M * H * Dh));
    Graph g;
    Tensor* y = g.mark_output(
        g.rope_2d(g.input(Type::F32, {H * Dh, M}, x.data()), g.input(Type::I32, {2, M}, rc.data()), H, Dh, theta));
    be->compute(g);
    std::vector<std::vector<double>> angle(size_t(M), std::vector<double>(Dh / 2));
    for (int64_t m = 0; m < M; ++m)
        for (int i = 0; i < Dh / 4; ++i) {
            auto freq = [&](int j) { return 1.0f / std::pow(theta, float(2 * j) / float(Dh)); };
            angle[size_t(m)][size_t(i)] = double(float(rc[size_t(2 * m)]) * freq(2 * i));
            angle[size_t(m)][size_t(Dh / 4 + i)] = double(float(rc[size_t(2 * m + 1)]) * freq(2 * i + 1));
        }
    check_close(read_output(*be, y), rotate_ref(x, M, H, Dh, angle), 1e-5, std::vector<double>(x.size(), 1.0));
}

// Reference attention of one query row over key/value rows [0, n) (row stride ld), one head.
static void attend_ref(const float* q, const float* k, const float* v, int64_t ld, int64_t n, int Dh, double scale,
                       double* out) {
    std::vector<double> s(static_cast<size_t>(n));
    double mx = -1e300, sum = 0;
    for (int64_t i = 0; i < n; ++i) {
        double d = 0;
        for (int j = 0; j < Dh; ++j) d += double(q[j]) * k[i * ld + j];
        s[size_t(i)] = d * scale;
        mx = std::max(mx, s[size_t(i)]);
    }
    for (auto& e : s) sum += (e = std::exp(e - mx));
    for (int j = 0; j < Dh; ++j) {
        double acc = 0;
        for (int64_t i = 0; i < n; ++i) acc += s[size_t(i)] / sum * v[i * ld + j];
        out[j] = acc;
    }
}

namespace {

// A KV cache for S sequences of C positions on a backend, and one-call attention through it.
struct CachedAttention {
    int Hq = 4, Hkv = 2, Dh = 20, C = 16, S = 2;
    float scale = 0.3f;
    Backend& be;
    std::unique_ptr<Tensor> kc, vc;

    explicit CachedAttention(Backend& backend, Type cache_type = Type::F32, int positions = 16)
        : C(positions), be(backend) {
        kc = make_tensor(cache_type, {int64_t(Hkv) * Dh, int64_t(S) * C}, "kcache");
        vc = make_tensor(cache_type, {int64_t(Hkv) * Dh, int64_t(S) * C}, "vcache");
        be.alloc_persistent(*kc);
        be.alloc_persistent(*vc);
    }

    std::vector<float> run(const std::vector<float>& q, const std::vector<float>& k, const std::vector<float>& v,
                           const std::vector<int32_t>& pos, const std::vector<int32_t>& seq) {
        const int64_t M = int64_t(pos.size());
        Graph g;
        Tensor* y = g.mark_output(g.attn_cached(g.input(Type::F32, {int64_t(Hq) * Dh, M}, q.data()),
                                                g.input(Type::F32, {int64_t(Hkv) * Dh, M}, k.data()),
                                                g.input(Type::F32, {int64_t(Hkv) * Dh, M}, v.data()), kc.get(),
                                                vc.get(), g.input(Type::I32, {M}, pos.data()),
                                                g.input(Type::I32, {M}, seq.data()), Hq, Hkv, Dh, C, scale));
        be.compute(g);
        return read_output(be, y);
    }
};

// Reference causal GQA attention of T rows of one sequence at positions 0..T−1, with att's head layout.
std::vector<double> causal_ref(const CachedAttention& att, const std::vector<float>& q, const std::vector<float>& k,
                               const std::vector<float>& v, int64_t T) {
    const int64_t wq = int64_t(att.Hq) * att.Dh, wk = int64_t(att.Hkv) * att.Dh;
    std::vector<double> want(size_t(T * wq));
    for (int64_t t = 0; t < T; ++t)
        for (int h = 0; h < att.Hq; ++h) {
            const int64_t kv = h / (att.Hq / att.Hkv) * att.Dh;
            attend_ref(&q[size_t(t * wq + h * att.Dh)], &k[size_t(kv)], &v[size_t(kv)], wk, t + 1, att.Dh, att.scale,
                       &want[size_t(t * wq + h * att.Dh)]);
        }
    return want;
}

// Rows [r0, r1) of a row-major matrix of width w.
std::vector<float> rows(const std::vector<float>& a, int64_t w, int64_t r0, int64_t r1) {
    return {a.begin() + r0 * w, a.begin() + r1 * w};
}

}  // namespace

TEST_CASE("ATTN_CACHED: causal GQA prefill matches the reference, decode steps match prefill") {
    for (Isa isa : machine_isas()) {
        const std::string isa_str = cpu::isa_name(isa);
        CAPTURE(isa_str);
        auto be = cpu::make_backend(2, isa);
        Rng rng;
        CachedAttention att(*be);
        const int64_t T = 9, wq = int64_t(att.Hq) * att.Dh, wk = int64_t(att.Hkv) * att.Dh;
        std::vector<float> q = rng.floats(size_t(T * wq), -2, 2), k = rng.floats(size_t(T * wk), -2, 2),
                           v = rng.floats(size_t(T * wk));
        std::vector<int32_t> pos(T), seq(T, 1);
        for (int64_t t = 0; t < T; ++t) pos[size_t(t)] = int32_t(t);
        const std::vector<float> prefill = att.run(q, k, v, pos, seq);

        const std::vector<double> want = causal_ref(att, q, k, v, T);
        check_close(prefill, want, 1e-5, std::vector<double>(want.size(), 1.0));

        // The same sequence again in a fresh cache: 4 tokens of prefill, then one token per step.
        CachedAttention again(*be);
        std::vector<float> stepped = again.run(rows(q, wq, 0, 4), rows(k, wk, 0, 4), rows(v, wk, 0, 4),
                                               {0, 1, 2, 3}, {1, 1, 1, 1});
        for (int64_t t = 4; t < T; ++t) {
            std::vector<float> out = again.run(rows(q, wq, t, t + 1), rows(k, wk, t, t + 1), rows(v, wk, t, t + 1),
                                               {int32_t(t)}, {1});
            stepped.insert(stepped.end(), out.begin(), out.end());
        }
        check_close(stepped, to_double(prefill), 1e-6, std::vector<double>(want.size(), 1.0));

        // The cache holds the new rows at seq·C + pos.
        std::vector<float> cache(size_t(att.S * att.C * wk));
        be->read(*again.kc, cache.data(), cache.size() * 4);
        CHECK(std::vector<float>(cache.begin() + att.C * wk, cache.begin() + (att.C + T) * wk) == k);
        CHECK(std::all_of(cache.begin(), cache.begin() + att.C * wk, [](float f) { return f == 0.0f; }));
    }
}

TEST_CASE("ATTN_CACHED: two sequences in one batch do not see each other") {
    auto be = make_cpu_backend(2);
    Rng rng;
    CachedAttention both(*be), a(*be), b(*be);
    const int64_t wq = int64_t(both.Hq) * both.Dh, wk = int64_t(both.Hkv) * both.Dh;
    // Rows alternate between sequence 0 (3 tokens) and sequence 1 (4 tokens).
    const std::vector<int32_t> seq = {0, 1, 0, 1, 0, 1, 1}, pos = {0, 0, 1, 1, 2, 2, 3};
    const int64_t M = int64_t(seq.size());
    std::vector<float> q = rng.floats(size_t(M * wq)), k = rng.floats(size_t(M * wk)), v = rng.floats(size_t(M * wk));
    const std::vector<float> mixed = both.run(q, k, v, pos, seq);
    for (int32_t s : {0, 1}) {
        std::vector<float> qs, ks, vs, want_rows;
        std::vector<int32_t> ps, ss;
        for (int64_t m = 0; m < M; ++m)
            if (seq[size_t(m)] == s) {
                for (auto [dst, src, w] : {std::tuple{&qs, &q, wq}, {&ks, &k, wk}, {&vs, &v, wk}}) {
                    auto r = rows(*src, w, m, m + 1);
                    dst->insert(dst->end(), r.begin(), r.end());
                }
                ps.push_back(pos[size_t(m)]);
                ss.push_back(0);
                auto r = rows(mixed, wq, m, m + 1);
                want_rows.insert(want_rows.end(), r.begin(), r.end());
            }
        CachedAttention& alone = s == 0 ? a : b;
        check_close(alone.run(qs, ks, vs, ps, ss), to_double(want_rows), 1e-6,
                    std::vector<double>(want_rows.size(), 1.0));
    }
}

TEST_CASE("ATTN_CACHED: BF16 and FP8 caches attend over the K/V rows rounded to their type") {
    auto be = make_cpu_backend(2);
    Rng rng;
    for (Type t : {Type::BF16, Type::F8_E4M3}) {
        CAPTURE(type_name(t));
        auto round = [&](float f) {
            return t == Type::BF16 ? bf16_to_f32(f32_to_bf16(f)) : e4m3_to_f32(f32_to_e4m3(f));
        };
        CachedAttention att(*be, t);
        const int64_t T = 7, wq = int64_t(att.Hq) * att.Dh, wk = int64_t(att.Hkv) * att.Dh;
        std::vector<float> q = rng.floats(size_t(T * wq), -2, 2), k = rng.floats(size_t(T * wk), -2, 2),
                           v = rng.floats(size_t(T * wk));
        std::vector<int32_t> pos(T), seq(T, 1);
        for (int64_t i = 0; i < T; ++i) pos[size_t(i)] = int32_t(i);
        // Prefill of 3 rows, then decode steps: later steps read rows stored by earlier passes.
        std::vector<float> got = att.run(rows(q, wq, 0, 3), rows(k, wk, 0, 3), rows(v, wk, 0, 3), {0, 1, 2}, {1, 1, 1});
        for (int64_t i = 3; i < T; ++i) {
            std::vector<float> out = att.run(rows(q, wq, i, i + 1), rows(k, wk, i, i + 1), rows(v, wk, i, i + 1),
                                             {int32_t(i)}, {1});
            got.insert(got.end(), out.begin(), out.end());
        }
        std::vector<float> kr = k, vr = v;
        for (float& f : kr) f = round(f);
        for (float& f : vr) f = round(f);
        const std::vector<double> want = causal_ref(att, q, kr, vr, T);
        check_close(got, want, 1e-5, std::vector<double>(want.size(), 1.0));
    }
}

TEST_CASE("ATTN_CACHED: long prefills of two sequences (packed tiles) match the reference, every cache type") {
    // 150 and 70 rows: several 64-key blocks and 64-vector tiles per sequence, the last ones partial.
    // With BF16 activations on a set with a pair tile: q, k and v rounded to BF16 in the reference, and
    // the probabilities' rounding within 5e-3.
    const int64_t T0 = 150, T1 = 70;
    for (Isa isa : machine_isas())
        for (bool bf16_x : {false, true})
        for (Type t : {Type::F32, Type::BF16, Type::F8_E4M3}) {
            const std::string isa_str = cpu::isa_name(isa);
            const bool pairs = bf16_x && cpu::kernels_for(isa).attend_tile_pairs;
            CAPTURE(isa_str);
            CAPTURE(bf16_x);
            CAPTURE(type_name(t));
            auto be = cpu::make_backend(2, isa, bf16_x);
            auto round = [&](float f) {
                f = t == Type::BF16      ? bf16_to_f32(f32_to_bf16(f))
                    : t == Type::F8_E4M3 ? e4m3_to_f32(f32_to_e4m3(f))
                                         : f;
                return pairs ? bf16_to_f32(f32_to_bf16(f)) : f;
            };
            Rng rng;
            CachedAttention att(*be, t, 160);
            const int64_t wq = int64_t(att.Hq) * att.Dh, wk = int64_t(att.Hkv) * att.Dh, M = T0 + T1;
            std::vector<float> q = rng.floats(size_t(M * wq), -2, 2), k = rng.floats(size_t(M * wk), -2, 2),
                               v = rng.floats(size_t(M * wk));
            std::vector<int32_t> pos, seq;  // sequence 1's rows first, then sequence 0's
            for (int64_t i = 0; i < M; ++i) pos.push_back(int32_t(i < T1 ? i : i - T1)), seq.push_back(i < T1);
            const std::vector<float> got = att.run(q, k, v, pos, seq);
            std::vector<float> qr = q, kr = k, vr = v;
            for (float& f : kr) f = round(f);
            for (float& f : vr) f = round(f);
            if (pairs)
                for (float& f : qr) f = bf16_to_f32(f32_to_bf16(f));
            for (auto [r0, r1] : {std::pair{int64_t(0), T1}, {T1, M}}) {
                const std::vector<double> want = causal_ref(att, rows(qr, wq, r0, r1), rows(kr, wk, r0, r1),
                                                            rows(vr, wk, r0, r1), r1 - r0);
                check_close(rows(got, wq, r0, r1), want, pairs ? 5e-3 : 1e-5, std::vector<double>(want.size(), 1.0));
            }
        }
}

TEST_CASE("ATTN_CACHED rejects positions outside the cache") {
    auto be = make_cpu_backend(2);
    CachedAttention att(*be);
    std::vector<float> q(size_t(att.Hq * att.Dh)), kv(size_t(att.Hkv * att.Dh));
    CHECK_THROWS_AS(att.run(q, kv, kv, {att.C}, {0}), std::out_of_range);
    CHECK_THROWS_AS(att.run(q, kv, kv, {0}, {att.S}), std::out_of_range);
}

TEST_CASE("ATTN_FULL is bidirectional attention per head") {
    struct Shape { int H, Dh; int64_t M; };  // one tile; several key blocks and tiles at a vision head's size
    // and at the language model's (128: outputs in two 64-wide passes); with BF16 activations on a set with
    // a pair tile: as ATTN_CACHED's long prefills; an odd head size leaves half a pair.
    for (Isa isa : machine_isas())
        for (bool bf16_x : {false, true})
        for (const Shape& sh : {Shape{3, 36, 11}, Shape{2, 64, 150}, Shape{1, 128, 130}, Shape{1, 20, 65},
                                Shape{2, 19, 70}}) {
            const std::string isa_str = cpu::isa_name(isa);
            const bool pairs = bf16_x && cpu::kernels_for(isa).attend_tile_pairs;
            CAPTURE(isa_str);
            CAPTURE(bf16_x);
            CAPTURE(sh.M);
            auto be = cpu::make_backend(2, isa, bf16_x);
            Rng rng;
            const int H = sh.H, Dh = sh.Dh;
            const int64_t M = sh.M, w = int64_t(H) * Dh;
            std::vector<float> q = rng.floats(size_t(M * w), -2, 2), k = rng.floats(size_t(M * w), -2, 2),
                               v = rng.floats(size_t(M * w));
            Graph g;
            Tensor* y =
                g.mark_output(g.attn_full(g.input(Type::F32, {w, M}, q.data()), g.input(Type::F32, {w, M}, k.data()),
                                          g.input(Type::F32, {w, M}, v.data()), H, Dh, 0.125f));
            be->compute(g);
            if (pairs)
                for (auto* a : {&q, &k, &v})
                    for (float& f : *a) f = bf16_to_f32(f32_to_bf16(f));
            std::vector<double> want(size_t(M * w));
            for (int64_t m = 0; m < M; ++m)
                for (int h = 0; h < H; ++h)
                    attend_ref(&q[size_t(m * w + h * Dh)], &k[size_t(h * Dh)], &v[size_t(h * Dh)], w, M, Dh, 0.125,
                               &want[size_t(m * w + h * Dh)]);
            check_close(read_output(*be, y), want, pairs ? 5e-3 : 1e-5, std::vector<double>(want.size(), 1.0));
        }
}

TEST_CASE("SWIGLU on every kernel set: silu(g)·u through the vector exp, tails and extremes included") {
    // Rows of 1001 split over 2 threads leave tails of every length; the extremes take both branches of
    // σ and the clamp below −126 in exp2.
    Rng rng;
    const int64_t M = 3, F = 1001;
    std::vector<float> a = rng.floats(size_t(M * F), -8, 8), b = rng.floats(size_t(M * F), -8, 8);
    const float extremes[] = {0.0f, -0.0f, 1e-20f, -1e-20f, 20.0f, -20.0f, 88.0f, -88.0f, 100.0f, -100.0f, 1e30f};
    for (size_t i = 0; i < std::size(extremes); ++i) a[i * 97] = extremes[i];
    std::vector<double> want(a.size());
    for (size_t i = 0; i < a.size(); ++i) want[i] = double(a[i]) / (1.0 + std::exp(-double(a[i]))) * b[i];
    for (Isa isa : machine_isas()) {
        const std::string isa_str = cpu::isa_name(isa);
        CAPTURE(isa_str);
        auto be = cpu::make_backend(2, isa);
        Graph g;
        Tensor* sw =
            g.mark_output(g.swiglu(g.input(Type::F32, {F, M}, a.data()), g.input(Type::F32, {F, M}, b.data())));
        be->compute(g);
        check_close(read_output(*be, sw), want, 1e-6, std::vector<double>(a.size(), 1e-3));
    }
}

TEST_CASE("GELU and ADD element-wise") {
    auto be = make_cpu_backend(2);
    Rng rng;
    const int64_t M = 3, F = 1001;
    std::vector<float> a = rng.floats(size_t(M * F), -8, 8), b = rng.floats(size_t(M * F), -8, 8);
    Graph g;
    Tensor* ta = g.input(Type::F32, {F, M}, a.data());
    Tensor* tb = g.input(Type::F32, {F, M}, b.data());
    Tensor* ge = g.mark_output(g.gelu(ta));
    Tensor* ad = g.mark_output(g.add(ta, tb));
    be->compute(g);
    std::vector<double> want_ge(a.size()), want_ad(a.size());
    for (size_t i = 0; i < a.size(); ++i) {
        const double x = a[i];
        want_ge[i] = 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0)));
        want_ad[i] = double(a[i] + b[i]);
    }
    // 1 + erf(x/√2) cancels for negative x in float (as in PyTorch): an absolute bound there.
    check_close(read_output(*be, ge), want_ge, 1e-6, std::vector<double>(a.size(), 1.0));
    check_close(read_output(*be, ad), want_ad, 0.0);
}

TEST_CASE("IM2COL_PATCH, PATCH_MERGE, SCATTER_ROWS and VIEW_ROWS move data exactly") {
    auto be = make_cpu_backend(2);
    Rng rng;
    SUBCASE("im2col") {
        const int64_t C = 3, H = 6, W = 9, p = 3;
        std::vector<float> px = rng.floats(size_t(C * H * W));
        Graph g;
        Tensor* y = g.mark_output(g.im2col_patch(g.input(Type::F32, {W, H, C}, px.data()), int(p)));
        be->compute(g);
        std::vector<float> got = read_output(*be, y);
        REQUIRE(y->ne[0] == C * p * p);
        REQUIRE(y->ne[1] == (H / p) * (W / p));
        for (int64_t py = 0; py < H / p; ++py)
            for (int64_t pxl = 0; pxl < W / p; ++pxl)
                for (int64_t c = 0; c < C; ++c)
                    for (int64_t ky = 0; ky < p; ++ky)
                        for (int64_t kx = 0; kx < p; ++kx)
                            CHECK(got[size_t((py * (W / p) + pxl) * C * p * p + (c * p + ky) * p + kx)] ==
                                  px[size_t((c * H + py * p + ky) * W + pxl * p + kx)]);
    }
    SUBCASE("patch merge") {
        const int64_t h = 4, w = 6, C = 5;
        std::vector<float> x = rng.floats(size_t(h * w * C));
        Graph g;
        Tensor* y = g.mark_output(g.patch_merge(g.input(Type::F32, {C, h * w}, x.data()), int(h), int(w)));
        be->compute(g);
        std::vector<float> got = read_output(*be, y);
        for (int64_t R = 0; R < h / 2; ++R)
            for (int64_t Cc = 0; Cc < w / 2; ++Cc)
                for (int64_t c = 0; c < C; ++c)
                    for (int a = 0; a < 2; ++a)
                        for (int b = 0; b < 2; ++b)
                            CHECK(got[size_t((R * (w / 2) + Cc) * 4 * C + 4 * c + 2 * a + b)] ==
                                  x[size_t(((2 * R + a) * w + 2 * Cc + b) * C + c)]);
    }
    SUBCASE("scatter and view") {
        const int64_t T = 7, D = 5;
        std::vector<float> base = rng.floats(size_t(T * D)), repl = rng.floats(size_t(2 * D));
        const int32_t idx[] = {6, 2};
        Graph g;
        Tensor* tb = g.input(Type::F32, {D, T}, base.data());
        Tensor* sc =
            g.mark_output(g.scatter_rows(tb, g.input(Type::F32, {D, 2}, repl.data()), g.input(Type::I32, {2}, idx)));
        Tensor* view = g.mark_output(g.view_rows(sc, 2, 3));
        be->compute(g);
        std::vector<float> want = base;
        std::copy(repl.begin(), repl.begin() + D, want.begin() + 6 * D);
        std::copy(repl.begin() + D, repl.end(), want.begin() + 2 * D);
        CHECK(read_output(*be, sc) == want);
        CHECK(read_output(*be, view) == std::vector<float>(want.begin() + 2 * D, want.begin() + 5 * D));
    }
}

TEST_CASE("ARGMAX picks the first largest element of each row, never NaN") {
    auto be = make_cpu_backend(2);
    const float inf = INFINITY, nan = NAN;
    const int64_t N = 5;
    const std::vector<float> x = {1, 3, 2, 3, 0,             // a tie: the first wins
                                  nan, -1, nan, -0.5f, -2,   // NaN is never the largest
                                  -inf, -inf, -inf, -inf, -inf,
                                  nan, nan, nan, nan, nan,   // nothing but NaN: 0
                                  0, 0, 0, 0, 7};
    Graph g;
    Tensor* y = g.mark_output(g.argmax(g.input(Type::F32, {N, 5}, x.data())));
    be->compute(g);
    std::vector<int32_t> got(5);
    be->read(*y, got.data(), got.size() * sizeof(int32_t));
    CHECK(got == std::vector<int32_t>{1, 3, 0, 0, 4});
    CHECK(y->type == Type::I32);
}

TEST_CASE("buffers are reused by liveness without corrupting outputs or views") {
    Rng rng;
    const int64_t D = 64, M = 4;
    std::vector<float> x = rng.floats(size_t(M * D));
    Graph g;
    Tensor* in = g.input(Type::F32, {D, M}, x.data());
    Tensor* a = g.add(in, in);                  // 2x
    Tensor* view = g.view_rows(a, 1, 2);        // keeps `a` alive until its last reader
    Tensor* mid = g.mark_output(g.gelu(a));     // an output in the middle of the graph
    Tensor* t = mid;
    for (int i = 0; i < 10; ++i) t = g.add(t, in);  // a chain of short-lived intermediates
    Tensor* last = g.mark_output(t);
    Tensor* late = g.mark_output(g.add(view, view));  // reads `a` through the view at the very end
    // in, a, mid, the chain (two buffers at a time), last and late: far fewer than the 15 tensors.
    CHECK(cpu::plan_graph(g).arena_bytes <= 8 * cpu::align_up(size_t(M * D * 4)));
    auto be = make_cpu_backend(2);
    be->compute(g);
    std::vector<float> want_mid(x.size()), want_last(x.size()), want_late;
    for (size_t i = 0; i < x.size(); ++i) {
        const float twice = x[i] + x[i];
        want_mid[i] = 0.5f * twice * (1.0f + std::erf(twice * float(M_SQRT1_2)));
        float v = want_mid[i];
        for (int r = 0; r < 10; ++r) v = v + x[i];
        want_last[i] = v;
    }
    for (int64_t i = D; i < 3 * D; ++i) want_late.push_back((x[size_t(i)] + x[size_t(i)]) * 2.0f);
    check_close(read_output(*be, mid), to_double(want_mid), 1e-6, std::vector<double>(x.size(), 1e-6));
    CHECK(read_output(*be, last) == want_last);
    CHECK(read_output(*be, late) == want_late);
    std::vector<float> scratch(size_t(M * D));
    CHECK_THROWS(be->read(*a, scratch.data(), scratch.size() * 4));  // not an output: its memory was reused
}

TEST_CASE("persistent tensors are zeroed, aligned, writable and readable") {
    auto be = make_cpu_backend(2);
    auto cache = make_tensor(Type::F32, {24, 10}, "cache");
    be->alloc_persistent(*cache);
    CHECK(reinterpret_cast<uintptr_t>(cache->data) % 64 == 0);
    std::vector<float> got(240, 1.0f);
    be->read(*cache, got.data(), got.size() * 4);
    CHECK(std::all_of(got.begin(), got.end(), [](float f) { return f == 0.0f; }));
    std::vector<float> src(240);
    for (size_t i = 0; i < src.size(); ++i) src[i] = float(i);
    be->write(*cache, src.data(), src.size() * 4);
    be->read(*cache, got.data(), got.size() * 4);
    CHECK(got == src);
    CHECK_THROWS(be->write(*cache, src.data(), src.size() * 8));
    // Byte offsets: rows 3..5 read, then written back at row 1 (a cache shift's move).
    std::vector<float> part(72);
    be->read(*cache, part.data(), part.size() * 4, 3 * 24 * 4);
    CHECK(part == std::vector<float>(src.begin() + 72, src.begin() + 144));
    be->write(*cache, part.data(), part.size() * 4, 24 * 4);
    be->read(*cache, got.data(), got.size() * 4);
    CHECK(std::equal(got.begin() + 24, got.begin() + 96, src.begin() + 72));
    CHECK(std::equal(got.begin() + 96, got.end(), src.begin() + 96));
    CHECK_THROWS(be->read(*cache, part.data(), part.size() * 4, 8 * 24 * 4));  // past the end
    CHECK_THROWS(be->write(*cache, part.data(), 4, 241 * 4));
    CHECK(be->memory_used() >= 240 * 4);
    be->free_persistent(*cache);
    CHECK(cache->data == nullptr);
    CHECK(be->memory_used() == 0);
    CHECK_THROWS(be->free_persistent(*cache));
}

TEST_CASE("FP4_CPU_ISA names the kernel set") {
    for (Isa isa : machine_isas()) {
        setenv("FP4_CPU_ISA", cpu::isa_name(isa), 1);
        CHECK(cpu::isa_from_env() == isa);
        CHECK(std::string(make_cpu_backend(1)->name()).find(cpu::isa_name(isa)) != std::string::npos);
    }
    setenv("FP4_CPU_ISA", "sse9", 1);
    CHECK_THROWS_WITH_AS(cpu::isa_from_env(), "FP4_CPU_ISA=sse9: expected scalar, avx2, avx512 or avx512bf16", SettingError);
    unsetenv("FP4_CPU_ISA");
}

TEST_CASE("profiling times every node, grouped by op and weight shape") {
    auto be = make_cpu_backend(2);
    Rng rng;
    std::vector<float> w = rng.floats(64 * 32), x = rng.floats(32 * 3);
    auto wt = make_tensor(Type::F32, {32, 64}, "w");
    wt->data = w.data();
    be->upload_weight(*wt);
    auto run = [&] {
        Graph g;
        Tensor* in = g.input(Type::F32, {32, 3}, x.data());
        Tensor* y = g.mul_mat(wt.get(), g.add(in, in));
        g.mark_output(g.gelu(g.mul_mat(wt.get(), g.view_rows(g.add(in, in), 0, 2))));
        g.mark_output(y);
        be->compute(g);
    };
    run();
    CHECK(be->profile().empty());  // off by default
    be->set_profiling(true);
    run();
    run();
    be->set_profiling(false);
    run();
    std::map<std::string, OpProfile> by;
    for (const OpProfile& p : be->profile()) by[p.what] = p;
    CHECK(by.size() == 4);
    CHECK(by["MUL_MAT F32 64x32"].calls == 4);
    CHECK(by["ADD"].calls == 4);
    CHECK(by["GELU"].calls == 2);
    CHECK(by["VIEW_ROWS"].calls == 2);
    for (const auto& [what, p] : by) CHECK(p.ms >= 0);
    const std::vector<OpProfile> sorted = be->profile();
    for (size_t i = 1; i < sorted.size(); ++i) CHECK(sorted[i - 1].ms >= sorted[i].ms);
    be->set_profiling(true);  // switching on starts over
    CHECK(be->profile().empty());
}
