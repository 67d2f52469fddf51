// test_backend_ops.cpp — every op on the CUDA backend against the CPU backend: the same graph is built on
// random inputs for each backend, run, and compared by relative error ‖cuda − cpu‖ / ‖cpu‖.
// Tolerances:
//   * data movement (GET_ROWS of F32/BF16/F16, IM2COL, PATCH_MERGE, SCATTER/VIEW_ROWS, NVFP4 dequant): 1e-6;
//     ARGMAX: the same indices;
//   * elementwise F32 math (RMS_NORM, ROPE at small positions, SWIGLU, GELU, ADD): 1e-5;
//   * F32 matrix products (F32/F16 weights; another summation order): 1e-4;
//   * attention: 3e-3 (many query rows go through TF32 GEMMs, ~5e-4 expected; the decode path is F32);
//   * products through BF16 (NVFP4 weights at any M, BF16 weights in the cuBLAS path, activations rounded
//     to BF16): 1e-2 — the contract is 2e-2, the expected error ~2e-3; fused groups (FP4_CUDA_FUSE=1) too,
//     where a folded norm's 1/rms multiplies the sums instead of the activations before their rounding;
//   * ROPE at large positions: 1e-3 (the angle pos·inv_freq is F32 on both sides, sin/cos of it differ).
// Without a CUDA device (or in a build without CUDA) every case passes with a message saying it was skipped.
// The "bench:" case (skipped by default; run with --no-skip -tc="bench*") times the GEMVs and the prefill GEMM
// on the 24B model's shapes.
#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <functional>
#include <initializer_list>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "rng.h"
#include "fp4.h"
#include "numeric.h"

using namespace fp4;

namespace {

// The CUDA backend's speed-ups (on by default); the tests name each one they want on, every other one is off.
const char* const kSpeedUps[] = {"FP4_CUDA_FUSE", "FP4_CUDA_PDL", "FP4_CUDA_FLASH", "FP4_CUDA_GRAPHS",
                                 "FP4_CUDA_BF16_X"};

std::unique_ptr<Backend> make_cuda_with(std::initializer_list<const char*> on, std::string* why) {
    for (const char* v : kSpeedUps)
        setenv(v, std::find_if(on.begin(), on.end(), [&](const char* o) { return std::strcmp(o, v) == 0; }) != on.end() ? "1" : "0", 1);
    std::unique_ptr<Backend> b = make_cuda_backend(why);
    for (const char* v : kSpeedUps) unsetenv(v);
    return b;
}

// The plain backend: none of the speed-ups.
Backend* cuda_backend() {
    static std::string why;
    static std::unique_ptr<Backend> b = make_cuda_with({}, &why);
    if (!b) MESSAGE("CUDA backend unavailable, skipped: " << why);
    return b.get();
}

Backend& cpu_backend() {
    static std::unique_ptr<Backend> b = make_cpu_backend(2);
    return *b;
}

// A CUDA backend with just the speed-ups `on` (the variables are read when it is made).
std::unique_ptr<Backend> cuda_backend_with(std::initializer_list<const char*> on) {
    std::unique_ptr<Backend> b = make_cuda_with(on, nullptr);
    REQUIRE(b);
    return b;
}

Backend& fusing_backend() {
    static std::unique_ptr<Backend> b = cuda_backend_with({"FP4_CUDA_FUSE"});
    return *b;
}

// Fusing, with every group's RMSNorm folded into its products (by default only up to kGemvFoldNormRows rows).
Backend& folding_backend() {
    static std::unique_ptr<Backend> b = [] {
        setenv("FP4_CUDA_FOLD_NORM_ROWS", "32", 1);
        std::unique_ptr<Backend> f = cuda_backend_with({"FP4_CUDA_FUSE"});
        unsetenv("FP4_CUDA_FOLD_NORM_ROWS");
        return f;
    }();
    return *b;
}

// Fusing, with BF16 links (fusion.h) between a lone norm or a SwiGLU epilogue and the products they feed.
Backend& linking_backend() {
    static std::unique_ptr<Backend> b = cuda_backend_with({"FP4_CUDA_FUSE", "FP4_CUDA_BF16_X"});
    return *b;
}

Backend& flash_backend() {
    static std::unique_ptr<Backend> b = cuda_backend_with({"FP4_CUDA_FLASH"});
    return *b;
}

// Flash attention for many query rows and GQA-group blocks for few: both new attention paths.
Backend& new_attention_backend() {
    static std::unique_ptr<Backend> b = cuda_backend_with({"FP4_CUDA_FLASH", "FP4_CUDA_FUSE"});
    return *b;
}

#define REQUIRE_CUDA() \
    if (!cuda_backend()) return

// Host bytes of one weight, in any type; the per-backend leaves point at them.
struct HostWeight {
    Type type = Type::F32;
    std::vector<int64_t> ne;
    std::vector<uint8_t> data, scale;
    float gscale = 1.0f;
};

HostWeight random_weight(Rng& r, Type t, int64_t rows, int64_t cols) {
    HostWeight w{t, {cols, rows}, {}, {}, 1.0f};
    const size_t n = size_t(rows * cols);
    switch (t) {
        case Type::F32: {
            auto f = r.floats(n);
            w.data.resize(n * 4);
            std::memcpy(w.data.data(), f.data(), n * 4);
            break;
        }
        case Type::BF16:
        case Type::F16: {
            w.data.resize(n * 2);
            for (size_t i = 0; i < n; ++i) {
                const float f = r.uniform();
                uint16_t h = t == Type::BF16 ? f32_to_bf16(f) : uint16_t(0);
                if (t == Type::F16) {  // |f| < 1: exact through a normal F16 with 10 mantissa bits
                    int e;
                    const float m = std::frexp(std::fabs(f), &e);
                    h = (e + 14 <= 0) ? uint16_t(0) : uint16_t(((e + 14) << 10) | (int(std::ldexp(m, 11)) & 0x3ff));
                    if (f < 0) h |= 0x8000;
                }
                std::memcpy(&w.data[i * 2], &h, 2);
            }
            break;
        }
        case Type::NVFP4: {
            w.data.resize(n / 2);
            w.scale.resize(n / 16);
            for (auto& b : w.data) b = uint8_t(r.integer(0, 255));
            for (auto& b : w.scale) b = uint8_t(r.integer(0x20, 0x7e));  // positive, normal, no NaN
            w.gscale = 1234.5f;
            break;
        }
        default: FAIL("unsupported weight type");
    }
    return w;
}

// A graph build: leaves it creates (weights, caches) are owned here, one set per backend.
struct Env {
    Backend& backend;
    Graph graph;
    std::vector<std::unique_ptr<Tensor>> leaves;
    Tensor* weight(HostWeight& w, const char* name = "w") {
        leaves.push_back(make_tensor(w.type, w.ne, name));
        Tensor* t = leaves.back().get();
        t->data = w.data.data();
        t->scale = w.scale.empty() ? nullptr : w.scale.data();
        t->gscale = w.gscale;
        backend.upload_weight(*t);
        return t;
    }
    Tensor* persistent(std::vector<int64_t> ne, const char* name, Type type = Type::F32) {
        leaves.push_back(make_tensor(type, std::move(ne), name));
        backend.alloc_persistent(*leaves.back());
        return leaves.back().get();
    }
    Tensor* input(const std::vector<float>& v, std::vector<int64_t> ne) {
        return graph.input(Type::F32, std::move(ne), v.data(), "x");
    }
    Tensor* ids(const std::vector<int32_t>& v, std::vector<int64_t> ne) {
        return graph.input(Type::I32, std::move(ne), v.data(), "ids");
    }
    std::vector<float> run(Tensor* out) {
        graph.mark_output(out);
        backend.compute(graph);
        return read(*out);
    }
    std::vector<float> read(const Tensor& t) {
        std::vector<float> y(size_t(t.nelements()));
        backend.read(t, y.data(), y.size() * sizeof(float));
        return y;
    }
    std::vector<uint8_t> bytes(const Tensor& t) {
        std::vector<uint8_t> b(t.nbytes());
        backend.read(t, b.data(), b.size());
        return b;
    }
};

using Build = std::function<Tensor*(Env&)>;

double rel_err(const std::vector<float>& got, const std::vector<float>& ref) {
    REQUIRE(got.size() == ref.size());
    double num = 0, den = 0;
    for (size_t i = 0; i < ref.size(); ++i) {
        if (!std::isfinite(got[i])) return INFINITY;
        num += (double(got[i]) - ref[i]) * (double(got[i]) - ref[i]);
        den += double(ref[i]) * ref[i];
    }
    return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

void compare(const Build& build, double tol, const std::string& what, Backend* on = nullptr) {
    Env cpu{cpu_backend(), {}, {}}, gpu{on ? *on : *cuda_backend(), {}, {}};
    const auto ref = cpu.run(build(cpu));
    const auto got = gpu.run(build(gpu));
    const double err = rel_err(got, ref);
    INFO(what << ": relative error " << err << " (tolerance " << tol << ")");
    CHECK(err <= tol);
}

}  // namespace

TEST_CASE("GET_ROWS from F32, BF16, F16 and NVFP4 tables") {
    REQUIRE_CUDA();
    Rng r{20260101};
    for (Type t : {Type::F32, Type::BF16, Type::F16, Type::NVFP4})
        for (int64_t D : {64, 80, 5120}) {
            HostWeight table = random_weight(r, t, 37, D);
            auto ids = r.ints(9, 0, 36);
            compare([&](Env& e) { return e.graph.get_rows(e.weight(table), e.ids(ids, {9})); }, 1e-6,
                    std::string("get_rows ") + type_name(t) + " D=" + std::to_string(D));
        }
}

TEST_CASE("MUL_MAT for every weight type, GEMV and GEMM sizes") {
    REQUIRE_CUDA();
    Rng r{20260101};
    struct Shape { int64_t N, K; };
    for (Type t : {Type::F32, Type::BF16, Type::F16, Type::NVFP4})
        // 25600 rows: enough row tiles (1600) that products of up to 16 rows take two per block on any GPU
        // of up to 200 multiprocessors.
        for (Shape s : {Shape{48, 64}, Shape{100, 80}, Shape{300, 1024}, Shape{1027, 5120}, Shape{25600, 64}}) {
            HostWeight w = random_weight(r, t, s.N, s.K);
            for (int64_t M : {1, 2, 3, 5, 8, 9, 13, 16, 17, 32, 33, 64, 65, 100}) {
                auto x = r.floats(size_t(M * s.K));
                const bool bf16_path = t == Type::NVFP4 || (t == Type::BF16 && M > 8);
                compare([&](Env& e) { return e.graph.mul_mat(e.weight(w), e.input(x, {s.K, M})); },
                        bf16_path ? 1e-2 : 1e-4,
                        std::string("mul_mat ") + type_name(t) + " N=" + std::to_string(s.N) +
                            " K=" + std::to_string(s.K) + " M=" + std::to_string(M));
            }
        }
}

// The 24B model's decode products as they run: down (K = 32768, 2048 K tiles split over a block's warps,
// each keeping P in flight) and gate/up (2048 row tiles: more blocks than fit at once on any GPU).
TEST_CASE("MUL_MAT NVFP4 at the 24B model's MLP shapes, decode rows") {
    REQUIRE_CUDA();
    Rng r{20261206};
    struct Shape { int64_t N, K; };
    for (Shape s : {Shape{5120, 32768}, Shape{32768, 5120}}) {
        HostWeight w = random_weight(r, Type::NVFP4, s.N, s.K);
        for (int64_t M : {1, 5}) {
            auto x = r.floats(size_t(M * s.K));
            compare([&](Env& e) { return e.graph.mul_mat(e.weight(w), e.input(x, {s.K, M})); }, 1e-2,
                    "mul_mat NVFP4 N=" + std::to_string(s.N) + " K=" + std::to_string(s.K) + " M=" + std::to_string(M));
        }
    }
}

// The fused decode MLP at the 24B shapes: RMSNorm → gate/up → SwiGLU (two 32768 x 5120 weights, the block
// taking row tile b of both) and down + residual (5120 x 32768).
TEST_CASE("fused MLP groups at the 24B model's shapes") {
    REQUIRE_CUDA();
    Rng r{20261207};
    const int64_t D = 5120, F = 32768, M = 1;
    HostWeight norm = random_weight(r, Type::BF16, 1, D);
    norm.ne = {D};
    HostWeight wg = random_weight(r, Type::NVFP4, F, D), wu = random_weight(r, Type::NVFP4, F, D),
               wd = random_weight(r, Type::NVFP4, D, F);
    auto x = r.floats(size_t(M * D), -2, 2), h = r.floats(size_t(M * F));
    compare([&](Env& e) {
        Tensor* n = e.graph.rms_norm(e.input(x, {D, M}), e.weight(norm), 1e-5f);
        return e.graph.swiglu(e.graph.mul_mat(e.weight(wg), n), e.graph.mul_mat(e.weight(wu), n));
    }, 1e-2, "norm -> gate/up -> swiglu, 24B", &fusing_backend());
    compare([&](Env& e) { return e.graph.add(e.input(x, {D, M}), e.graph.mul_mat(e.weight(wd), e.input(h, {F, M}))); },
            1e-2, "down + residual, 24B", &fusing_backend());
}

TEST_CASE("NVFP4 decode is exact for every code and scale (one-hot activations)") {
    REQUIRE_CUDA();
    // Rows walk through all 16 codes and every non-NaN E4M3 scale byte (zero, subnormal, negative).
    const int64_t N = 64, K = 256;
    HostWeight w{Type::NVFP4, {K, N}, std::vector<uint8_t>(size_t(N * K / 2)), std::vector<uint8_t>(size_t(N * K / 16)), 3.0f};
    for (size_t i = 0; i < w.data.size(); ++i) w.data[i] = uint8_t((i * 37 + (i >> 4)) & 0xff);
    for (size_t i = 0; i < w.scale.size(); ++i) {
        uint8_t b = uint8_t(i & 0xff);
        w.scale[i] = (b & 0x7f) == 0x7f ? 0x38 : b;
    }
    for (int64_t M : {8, 40, 72}) {  // GEMVs of 8 and 64 rows, and the BF16 expansion + cuBLAS path
        std::vector<float> x(size_t(M * K), 0.0f);
        Rng r{20260101};
        for (int64_t m = 0; m < M; ++m) x[size_t(m * K + r.integer(0, int(K) - 1))] = 1.0f;
        compare([&](Env& e) { return e.graph.mul_mat(e.weight(w), e.input(x, {K, M})); }, 1e-6,
                "one-hot NVFP4 M=" + std::to_string(M));
    }
    std::vector<int32_t> all(N);
    for (int64_t i = 0; i < N; ++i) all[size_t(i)] = int32_t(i);
    compare([&](Env& e) { return e.graph.get_rows(e.weight(w), e.ids(all, {N})); }, 1e-6, "NVFP4 gather of every row");
}

TEST_CASE("RMS_NORM with F32 and BF16 weights") {
    REQUIRE_CUDA();
    Rng r{20260101};
    for (Type t : {Type::F32, Type::BF16})
        for (int64_t D : {100, 5120}) {
            HostWeight w = random_weight(r, t, 1, D);
            w.ne = {D};
            auto x = r.floats(size_t(5 * D), -3, 3);
            compare([&](Env& e) { return e.graph.rms_norm(e.input(x, {D, 5}), e.weight(w), 1e-5f); }, 1e-5,
                    std::string("rms_norm ") + type_name(t));
        }
}

TEST_CASE("ROPE and ROPE_2D") {
    REQUIRE_CUDA();
    Rng r{20260101};
    const int H = 4, Dh = 64;
    const int64_t M = 6;
    auto x = r.floats(size_t(M * H * Dh));
    for (int max_pos : {100, 20000}) {
        auto pos = r.ints(size_t(M), 0, max_pos);
        const double tol = max_pos > 100 ? 1e-3 : 1e-5;
        compare([&](Env& e) { return e.graph.rope(e.input(x, {H * Dh, M}), e.ids(pos, {M}), H, Dh, 1e6f); }, tol,
                "rope, positions up to " + std::to_string(max_pos));
    }
    auto rc = r.ints(size_t(2 * M), 0, 63);
    compare([&](Env& e) { return e.graph.rope_2d(e.input(x, {H * Dh, M}), e.ids(rc, {2, M}), H, Dh, 1e4f); }, 1e-5,
            "rope_2d");
}

TEST_CASE("SWIGLU, GELU, ADD") {
    REQUIRE_CUDA();
    Rng r{20260101};
    auto a = r.floats(3000, -8, 8), b = r.floats(3000, -8, 8);
    compare([&](Env& e) { return e.graph.swiglu(e.input(a, {300, 10}), e.input(b, {300, 10})); }, 1e-5, "swiglu");
    compare([&](Env& e) { return e.graph.gelu(e.input(a, {300, 10})); }, 1e-5, "gelu");
    compare([&](Env& e) { return e.graph.add(e.input(a, {300, 10}), e.input(b, {300, 10})); }, 1e-6, "add");
}

TEST_CASE("ARGMAX: the same indices, ties, NaN and rows of every length") {
    REQUIRE_CUDA();
    Rng r{20260101};
    for (int64_t N : {1, 5, 1000, 131072}) {
        const int64_t M = 7;
        std::vector<float> x = r.floats(size_t(M * N));
        for (int64_t m = 0; m < M; ++m) {
            if (N > 3 && m == 1) x[size_t(m * N + N - 1)] = x[size_t(m * N + 2)] = 5.0f;  // a tie
            if (N > 3 && m == 2) x[size_t(m * N)] = NAN, x[size_t(m * N + 3)] = 9.0f;
            if (m == 3)
                for (int64_t i = 0; i < N; ++i) x[size_t(m * N + i)] = NAN;
        }
        std::vector<int32_t> ids[2];
        for (int b = 0; b < 2; ++b) {
            Env e{b ? *cuda_backend() : cpu_backend(), {}, {}};
            Tensor* y = e.graph.mark_output(e.graph.argmax(e.input(x, {N, M})));
            e.backend.compute(e.graph);
            ids[b].resize(size_t(M));
            e.backend.read(*y, ids[b].data(), ids[b].size() * sizeof(int32_t));
        }
        INFO("N=" << N);
        CHECK(ids[1] == ids[0]);
    }
}

TEST_CASE("IM2COL_PATCH, PATCH_MERGE, SCATTER_ROWS, VIEW_ROWS") {
    REQUIRE_CUDA();
    Rng r{20260101};
    auto px = r.floats(3 * 32 * 48);
    compare([&](Env& e) { return e.graph.im2col_patch(e.input(px, {48, 32, 3}), 16); }, 1e-6, "im2col_patch");
    auto grid = r.floats(4 * 6 * 10);
    compare([&](Env& e) { return e.graph.patch_merge(e.input(grid, {10, 24}), 4, 6); }, 1e-6, "patch_merge");
    auto dst = r.floats(10 * 16), rows = r.floats(3 * 16);
    std::vector<int32_t> idx = {7, 0, 4};
    compare([&](Env& e) { return e.graph.scatter_rows(e.input(dst, {16, 10}), e.input(rows, {16, 3}), e.ids(idx, {3})); },
            1e-6, "scatter_rows");
    compare([&](Env& e) { return e.graph.view_rows(e.graph.add(e.input(dst, {16, 10}), e.input(dst, {16, 10})), 3, 4); },
            1e-6, "view_rows");
}

// With FP4_CUDA_FLASH=1, head_dim 64 and 128 go through flash attention: Q, K, V and P rounded to BF16, so
// the products' tolerance (1e-2); other head sizes keep the cuBLAS path.
TEST_CASE("ATTN_FULL, through cuBLAS and through flash attention") {
    REQUIRE_CUDA();
    Rng r{20260101};
    struct Case { int64_t M; int H, Dh; };
    for (Case c : {Case{50, 4, 32}, Case{300, 16, 64}, Case{130, 2, 128}, Case{1, 1, 64}}) {
        const int64_t W = int64_t(c.H) * c.Dh;
        auto q = r.floats(size_t(c.M * W), -3, 3), k = r.floats(size_t(c.M * W)), v = r.floats(size_t(c.M * W));
        const Build build = [&](Env& e) {
            return e.graph.attn_full(e.input(q, {W, c.M}), e.input(k, {W, c.M}), e.input(v, {W, c.M}), c.H, c.Dh,
                                     1.0f / std::sqrt(float(c.Dh)));
        };
        const std::string what = "attn_full M=" + std::to_string(c.M) + " Dh=" + std::to_string(c.Dh);
        compare(build, 3e-3, what);
        compare(build, c.Dh == 32 ? 3e-3 : 1e-2, what + " (flash)", &flash_backend());
    }
}

// The product groups a fusing backend runs as one kernel (fusion.h) against the CPU's separate nodes:
// norm → q/k/v, product + residual, norm → product + residual, [norm →] gate/up → SwiGLU; K not a multiple
// of the 64-column tile, N not a multiple of the 16-row tile, odd tile counts, every M of the GEMV. Then
// the rope group against the unfused CUDA nodes, bit for bit.
TEST_CASE("fused groups (FP4_CUDA_FUSE=1) equal the separate nodes") {
    REQUIRE_CUDA();
    Rng r{20260101};
    struct Shape { int64_t K, Nq, Nkv, F; };
    for (Shape s : {Shape{80, 72, 24, 200}, Shape{1024, 256, 64, 1040}}) {
        HostWeight norm = random_weight(r, Type::BF16, 1, s.K);  // widened to F32 by the upload
        norm.ne = {s.K};
        HostWeight wq = random_weight(r, Type::NVFP4, s.Nq, s.K), wk = random_weight(r, Type::NVFP4, s.Nkv, s.K),
                   wv = random_weight(r, Type::NVFP4, s.Nkv, s.K), wo = random_weight(r, Type::NVFP4, s.K, s.K),
                   wg = random_weight(r, Type::NVFP4, s.F, s.K), wu = random_weight(r, Type::NVFP4, s.F, s.K);
        HostWeight wd = random_weight(r, Type::NVFP4, s.K, s.F);  // NVFP4's K: whole scale groups (F = 1040 only)
        wk.gscale = 77.0f;  // products of one group need not share a global scale
        for (int64_t M : {1, 3, 8, 9, 16, 17, 32, 64}) {  // 64: beyond kGemvMaxRowsFused, the nodes run apart
            auto x = r.floats(size_t(M * s.K), -2, 2), res = r.floats(size_t(M * s.K));
            const std::string at = " K=" + std::to_string(s.K) + " M=" + std::to_string(M);
            compare([&](Env& e) { return e.graph.add(e.input(res, {s.K, M}), e.graph.mul_mat(e.weight(wo), e.input(x, {s.K, M}))); },
                    1e-2, "product + residual" + at, &fusing_backend());
            compare([&](Env& e) {
                Tensor* in = e.input(x, {s.K, M});
                Tensor* gate = e.graph.mul_mat(e.weight(wg), in);
                return e.graph.swiglu(gate, e.graph.mul_mat(e.weight(wu), in));
            }, 1e-2, "gate/up -> swiglu" + at, &fusing_backend());
            // With a norm: folded up to kGemvFoldNormRows rows and apart above (the default), or folded at every M.
            for (Backend* b : {&fusing_backend(), &folding_backend()}) {
                const std::string how = at + (b == &folding_backend() ? ", folded at every M" : "");
                for (int i = 0; i < 3; ++i)
                    compare([&](Env& e) {
                        Tensor* n = e.graph.rms_norm(e.input(x, {s.K, M}), e.weight(norm), 1e-5f);
                        Tensor* p[3] = {e.graph.mul_mat(e.weight(wq), n), e.graph.mul_mat(e.weight(wk), n),
                                        e.graph.mul_mat(e.weight(wv), n)};
                        for (Tensor* t : p) e.graph.mark_output(t);
                        return p[i];
                    }, 1e-2, "norm -> q/k/v, product " + std::to_string(i) + how, b);
                compare([&](Env& e) {
                    Tensor* in = e.input(x, {s.K, M});
                    return e.graph.add(in, e.graph.mul_mat(e.weight(wo), e.graph.rms_norm(in, e.weight(norm), 1e-5f)));
                }, 1e-2, "norm -> product + residual" + how, b);
                compare([&](Env& e) {
                    Tensor* in = e.graph.rms_norm(e.input(x, {s.K, M}), e.weight(norm), 1e-5f);
                    Tensor* gate = e.graph.mul_mat(e.weight(wg), in);
                    return e.graph.swiglu(gate, e.graph.mul_mat(e.weight(wu), in));
                }, 1e-2, "norm -> gate/up -> swiglu" + how, b);
            }
            // The whole MLP: with BF16 links (SwiGLU -> down at every M, the norm -> gate/up where it runs
            // alone) within the tolerance of the CPU, and bit for bit what the F32 links give (the producers
            // round as the products did). Down's K = 1040 ends in a partial column tile.
            if (s.F % 16 != 0) continue;
            const Build mlp = [&](Env& e) {
                Tensor* in = e.input(x, {s.K, M});
                Tensor* h = e.graph.rms_norm(in, e.weight(norm), 1e-5f);
                Tensor* act = e.graph.swiglu(e.graph.mul_mat(e.weight(wg), h), e.graph.mul_mat(e.weight(wu), h));
                return e.graph.add(in, e.graph.mul_mat(e.weight(wd), act));
            };
            compare(mlp, 1e-2, "norm -> gate/up -> swiglu -> down + residual, BF16 links" + at, &linking_backend());
            Env f32_links{fusing_backend(), {}, {}}, bf16_links{linking_backend(), {}, {}};
            INFO("MLP" << at);
            CHECK(bf16_links.run(mlp(bf16_links)) == f32_links.run(mlp(f32_links)));
        }
    }
    // ROPE(q), ROPE(k) -> ATTN_CACHED as one rope group: the rotation joins the cache store, with the very
    // code of the ROPE kernel, so outputs and caches keep the separate nodes' bits. Rows of one sequence
    // take a store kernel before the attention; rows of distinct sequences (a decode step) rotate and store
    // inside it, in whichever of the key slices (3 here, C = 300) holds the new position.
    for (Type type : {Type::F32, Type::BF16}) {
        const int Hq = 8, Hkv = 2, Dh = 64, C = 300, S = 3;
        const int64_t Wq = Hq * Dh, Wkv = Hkv * Dh;
        Env plain_cache{*cuda_backend(), {}, {}}, fused_cache{fusing_backend(), {}, {}};
        Tensor* caches[2][2] = {{plain_cache.persistent({Wkv, S * C}, "kc", type), plain_cache.persistent({Wkv, S * C}, "vc", type)},
                                {fused_cache.persistent({Wkv, S * C}, "kc", type), fused_cache.persistent({Wkv, S * C}, "vc", type)}};
        const std::vector<std::vector<std::pair<int32_t, int32_t>>> steps = {
            {{0, 0}, {1, 0}, {2, 0}, {3, 0}, {4, 0}}, {{5, 0}}, {{40, 1}, {200, 2}, {3, 0}}, {{201, 2}, {6, 0}},
            {{0, 1}, {7, 0}}};
        for (const auto& step : steps) {
            const int64_t M = int64_t(step.size());
            std::vector<int32_t> pos, seq;
            for (auto [p, s] : step) pos.push_back(p), seq.push_back(s);
            auto q = r.floats(size_t(M * Wq)), k = r.floats(size_t(M * Wkv)), v = r.floats(size_t(M * Wkv));
            std::vector<float> outs[2];
            for (int b = 0; b < 2; ++b) {
                Env e{b ? fusing_backend() : *cuda_backend(), {}, {}};
                Tensor* p = e.ids(pos, {M});
                Tensor* rq = e.graph.rope(e.input(q, {Wq, M}), p, Hq, Dh, 1e6f);
                Tensor* rk = e.graph.rope(e.input(k, {Wkv, M}), p, Hkv, Dh, 1e6f);
                outs[b] = e.run(e.graph.attn_cached(rq, rk, e.input(v, {Wkv, M}), caches[b][0], caches[b][1], p,
                                                    e.ids(seq, {M}), Hq, Hkv, Dh, C, 0.125f));
            }
            INFO("rope group, " << type_name(type) << " cache, M=" << M);
            CHECK(outs[1] == outs[0]);
        }
        for (int i = 0; i < 2; ++i) CHECK(fused_cache.bytes(*caches[1][i]) == plain_cache.bytes(*caches[0][i]));
    }

    // The groups above did run fused: the profile names them.
    Backend& b = fusing_backend();
    HostWeight w = random_weight(r, Type::NVFP4, 48, 64), up = random_weight(r, Type::NVFP4, 48, 64);
    auto x = r.floats(64);
    Env e{b, {}, {}};
    Tensor* in = e.input(x, {64, 1});
    Tensor* out = e.graph.swiglu(e.graph.mul_mat(e.weight(w), in), e.graph.mul_mat(e.weight(up), in));
    b.set_profiling(true);
    e.run(out);
    b.set_profiling(false);
    const std::vector<OpProfile> prof = b.profile();
    REQUIRE(prof.size() == 1);
    CHECK(prof[0].what == "MUL_MAT NVFP4 48x64,48x64+SWIGLU");
    // A norm before them folds up to kGemvFoldNormRows rows, above only when told to; run alone, it hands
    // its output over as BF16 with FP4_CUDA_BF16_X=1.
    HostWeight nw = random_weight(r, Type::BF16, 1, 64);
    nw.ne = {64};
    for (int64_t M : {8, 9})
        for (Backend* fb : {&b, &folding_backend(), &linking_backend()}) {
            auto xm = r.floats(size_t(64 * M));
            Env em{*fb, {}, {}};
            Tensor* n = em.graph.rms_norm(em.input(xm, {64, M}), em.weight(nw), 1e-5f);
            Tensor* o = em.graph.swiglu(em.graph.mul_mat(em.weight(w), n), em.graph.mul_mat(em.weight(up), n));
            fb->set_profiling(true);
            em.run(o);
            fb->set_profiling(false);
            std::vector<std::string> names;
            for (const OpProfile& p : fb->profile()) names.push_back(p.what);
            std::sort(names.begin(), names.end());
            INFO("M=" << M << (fb == &folding_backend() ? ", folded at every M" : fb == &b ? "" : ", BF16 links"));
            if (M <= 8 || fb == &folding_backend())
                CHECK(names == std::vector<std::string>{"RMS_NORM+MUL_MAT NVFP4 48x64,48x64+SWIGLU"});
            else if (fb == &b)
                CHECK(names == std::vector<std::string>{"MUL_MAT NVFP4 48x64,48x64+SWIGLU", "RMS_NORM"});
            else
                CHECK(names == std::vector<std::string>{"MUL_MAT NVFP4 48x64,48x64 (bf16 in)+SWIGLU",
                                                        "RMS_NORM (bf16 out)"});
        }
}

// The ceilings bench reports against: a copy's bandwidth, and cuBLAS's BF16 GEMM rate (a prefill's ceiling),
// measured on square products that grow until one takes 20 ms (here, on the emulator, the smallest few).
TEST_CASE("the backend measures its bandwidth and compute peak") {
    REQUIRE_CUDA();
    Backend& gpu = *cuda_backend();
    CHECK(gpu.measure_bandwidth() > 0);
    const double peak = gpu.measure_compute_peak();
    MESSAGE("BF16 GEMM peak " << peak / 1e12 << " TFLOP/s");
    CHECK(peak > 0);
    CHECK(std::string(gpu.compute_peak_what()) == "a large cuBLAS BF16 GEMM");
}

// A setting with a value it does not take is the user's mistake: an error naming it, never a default or a
// backend refused (which --device auto would quietly replace by the CPU).
TEST_CASE("bad FP4_CUDA_* values are refused by name") {
    REQUIRE_CUDA();
    auto refused = [](const char* name, const char* value, const char* expected) {
        setenv(name, value, 1);
        std::string why;
        CHECK_THROWS_WITH_AS(make_cuda_backend(&why), (std::string(name) + "=" + value + ": " + expected).c_str(),
                             SettingError);
        unsetenv(name);
    };
    for (const char* bad : {"33", "-1", "8x", "", " 8"})
        refused("FP4_CUDA_FOLD_NORM_ROWS", bad, "expected a number of rows from 0 to 32");
    for (const char* name : kSpeedUps)
        for (const char* bad : {"off", "true", "2", "", "1 "}) refused(name, bad, "expected 1 (on) or 0 (off)");
    for (const char* good : {"0", "32"}) {
        setenv("FP4_CUDA_FOLD_NORM_ROWS", good, 1);
        CHECK(make_cuda_backend(nullptr) != nullptr);
        unsetenv("FP4_CUDA_FOLD_NORM_ROWS");
    }
}

// Steps of rows (pos, seq) through one KV cache per backend and cache type, on the plain backend and on one
// with the new attention paths (flash attention, GQA-group decode blocks); outputs agree and the final
// caches are identical to the bit (both round to nearest even, FP8 saturating).
TEST_CASE("ATTN_CACHED: prefill, decode, several sequences, long context, F32/BF16/FP8 caches") {
    REQUIRE_CUDA();
    struct Config { int Hq, Hkv, Dh, C, S; std::vector<std::vector<std::pair<int, int>>> steps; };
    auto prefill = [](int seq, int from, int n) {
        std::vector<std::pair<int, int>> rows;
        for (int p = from; p < from + n; ++p) rows.push_back({p, seq});
        return rows;
    };
    const std::vector<Config> configs = {
        {8, 2, 64, 64, 2, {prefill(0, 0, 20), prefill(0, 20, 1), {{21, 0}, {0, 1}, {1, 1}}, prefill(1, 2, 17)}},
        {32, 8, 128, 1024, 1, {prefill(0, 0, 600), prefill(0, 600, 1), prefill(0, 601, 3)}},
        {4, 4, 16, 40, 3, {prefill(2, 0, 5), {{5, 2}, {0, 0}, {0, 1}}, prefill(0, 1, 30)}},
    };
    Rng r{20260101};
    for (Type type : {Type::F32, Type::BF16, Type::F8_E4M3})
    for (const Config& c : configs) {
        const int64_t Wq = int64_t(c.Hq) * c.Dh, Wkv = int64_t(c.Hkv) * c.Dh;
        Backend* backends[3] = {&cpu_backend(), cuda_backend(), &new_attention_backend()};
        std::unique_ptr<Env> cache_envs[3];
        Tensor* caches[3][2];
        for (int b = 0; b < 3; ++b) {
            cache_envs[b].reset(new Env{*backends[b], {}, {}});
            caches[b][0] = cache_envs[b]->persistent({Wkv, int64_t(c.S) * c.C}, "kcache", type);
            caches[b][1] = cache_envs[b]->persistent({Wkv, int64_t(c.S) * c.C}, "vcache", type);
        }
        for (const auto& step : c.steps) {
            const int64_t M = int64_t(step.size());
            std::vector<int32_t> pos, seq;
            for (auto [p, s] : step) pos.push_back(p), seq.push_back(s);
            auto q = r.floats(size_t(M * Wq)), k = r.floats(size_t(M * Wkv)), v = r.floats(size_t(M * Wkv));
            std::vector<float> outs[3];
            for (int b = 0; b < 3; ++b) {
                Env e{*backends[b], {}, {}};
                outs[b] = e.run(e.graph.attn_cached(e.input(q, {Wq, M}), e.input(k, {Wkv, M}), e.input(v, {Wkv, M}),
                                                    caches[b][0], caches[b][1], e.ids(pos, {M}), e.ids(seq, {M}), c.Hq,
                                                    c.Hkv, c.Dh, c.C, 1.0f / std::sqrt(float(c.Dh))));
            }
            const double err = rel_err(outs[1], outs[0]), new_err = rel_err(outs[2], outs[0]);
            INFO("attn_cached " << type_name(type) << " Hq=" << c.Hq << " Dh=" << c.Dh << " M=" << M
                                << ": relative error " << err << ", flash attention / GQA blocks " << new_err);
            CHECK(err <= 3e-3);
            // Many rows of one sequence with Dh 64/128 go through flash attention (BF16), the rest through
            // GQA-group blocks (F32, as the plain path).
            CHECK(new_err <= (M >= 16 && c.Dh >= 64 ? 1e-2 : 3e-3));
        }
        for (int b = 1; b < 3; ++b)
            for (int i = 0; i < 2; ++i) CHECK(cache_envs[b]->bytes(*caches[b][i]) == cache_envs[0]->bytes(*caches[0][i]));
    }
}

// A small decoder block (NVFP4 projections, BF16 head) through prefill and decode: many nodes, so the
// arena's reuse of buffers is exercised, and the graph is rebuilt for each step as the model does. The
// speed-ups that must not change a bit: FP4_CUDA_GRAPHS=1 (decode steps captured on the second one and
// replayed after that) and FP4_CUDA_PDL=1 (GEMVs overlapping the kernel before them). FP4_CUDA_FUSE=1 runs
// decode steps as fused product groups, within the model-level tolerance; with the other two on top and
// BF16 links (FP4_CUDA_BF16_X=1: the 24-row prefill's norms and every SwiGLU hand BF16 to their products),
// bit for bit the same again.
TEST_CASE("a transformer block: prefill then decode steps, plain, replayed, overlapped and fused") {
    REQUIRE_CUDA();
    Rng r{20260101};
    const int D = 256, F = 512, Hq = 8, Hkv = 2, Dh = 32, V = 300, C = 64;
    HostWeight emb = random_weight(r, Type::BF16, V, D), head = random_weight(r, Type::BF16, V, D);
    HostWeight norm = random_weight(r, Type::F32, 1, D);
    norm.ne = {D};
    HostWeight wq = random_weight(r, Type::NVFP4, Hq * Dh, D), wk = random_weight(r, Type::NVFP4, Hkv * Dh, D),
               wv = random_weight(r, Type::NVFP4, Hkv * Dh, D), wo = random_weight(r, Type::NVFP4, D, Hq * Dh),
               wg = random_weight(r, Type::NVFP4, F, D), wu = random_weight(r, Type::NVFP4, F, D),
               wd = random_weight(r, Type::NVFP4, D, F);
    struct Model {
        Env weights;
        Tensor *emb = nullptr, *head = nullptr, *norm = nullptr, *wq = nullptr, *wk = nullptr, *wv = nullptr,
               *wo = nullptr, *wg = nullptr, *wu = nullptr, *wd = nullptr, *kc = nullptr, *vc = nullptr;
    };
    auto load = [&](Backend& b) {
        std::unique_ptr<Model> m(new Model{Env{b, {}, {}}});
        Env& e = m->weights;
        m->emb = e.weight(emb), m->head = e.weight(head), m->norm = e.weight(norm);
        m->wq = e.weight(wq), m->wk = e.weight(wk), m->wv = e.weight(wv), m->wo = e.weight(wo);
        m->wg = e.weight(wg), m->wu = e.weight(wu), m->wd = e.weight(wd);
        m->kc = e.persistent({int64_t(Hkv) * Dh, C}, "kc"), m->vc = e.persistent({int64_t(Hkv) * Dh, C}, "vc");
        return m;
    };
    auto forward = [&](Model& m, const std::vector<int32_t>& ids, const std::vector<int32_t>& pos,
                       const std::vector<int32_t>& seq) {
        Env e{m.weights.backend, {}, {}};
        Graph& g = e.graph;
        const int64_t T = int64_t(ids.size());
        Tensor* p = e.ids(pos, {T});
        Tensor* x = g.get_rows(m.emb, e.ids(ids, {T}));
        Tensor* h = g.rms_norm(x, m.norm, 1e-5f);  // in the order the Mistral builder makes (fusable)
        Tensor* q = g.mul_mat(m.wq, h);
        Tensor* k = g.mul_mat(m.wk, h);
        Tensor* v = g.mul_mat(m.wv, h);
        q = g.rope(q, p, Hq, Dh, 1e6f);
        k = g.rope(k, p, Hkv, Dh, 1e6f);
        Tensor* a = g.attn_cached(q, k, v, m.kc, m.vc, p, e.ids(seq, {T}), Hq, Hkv, Dh, C, 1.0f / std::sqrt(float(Dh)));
        x = g.add(x, g.mul_mat(m.wo, a));
        h = g.rms_norm(x, m.norm, 1e-5f);
        Tensor* gate = g.mul_mat(m.wg, h);
        Tensor* up = g.mul_mat(m.wu, h);
        x = g.add(x, g.mul_mat(m.wd, g.swiglu(gate, up)));
        return e.run(g.mul_mat(m.head, g.rms_norm(x, m.norm, 1e-5f)));
    };
    std::unique_ptr<Backend> replaying = cuda_backend_with({"FP4_CUDA_GRAPHS"});
    std::unique_ptr<Backend> overlapping = cuda_backend_with({"FP4_CUDA_PDL"});
    std::unique_ptr<Backend> fast =
        cuda_backend_with({"FP4_CUDA_FUSE", "FP4_CUDA_PDL", "FP4_CUDA_GRAPHS", "FP4_CUDA_BF16_X"});
    auto cpu = load(cpu_backend()), gpu = load(*cuda_backend()), gpu_graphs = load(*replaying);
    auto gpu_pdl = load(*overlapping), gpu_fused = load(fusing_backend()), gpu_fast = load(*fast);
    std::vector<int32_t> ids = r.ints(24, 0, V - 1), pos(24), seq(24, 0);
    for (int i = 0; i < 24; ++i) pos[size_t(i)] = i;
    for (int step = 0; step < 6; ++step) {
        const std::vector<float> ref = forward(*cpu, ids, pos, seq), got = forward(*gpu, ids, pos, seq);
        const std::vector<float> fused = forward(*gpu_fused, ids, pos, seq);
        INFO("step " << step << " (" << ids.size() << " tokens): relative error " << rel_err(got, ref)
                     << ", fused " << rel_err(fused, ref));
        // The model-level contract (as for the goldens): BF16-rounded activations compound over a block.
        CHECK(rel_err(got, ref) <= 2e-2);
        CHECK(rel_err(fused, ref) <= 2e-2);
        CHECK(forward(*gpu_graphs, ids, pos, seq) == got);
        CHECK(forward(*gpu_pdl, ids, pos, seq) == got);
        CHECK(forward(*gpu_fast, ids, pos, seq) == fused);
        const int next = pos.back() + 1;
        ids = {r.integer(0, V - 1)}, pos = {next}, seq = {0};
    }
}

namespace {

double seconds(const std::function<void()>& fn, int reps) {
    fn();  // warm-up
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < reps; ++i) fn();
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / reps;
}

void fill_bytes(std::vector<uint8_t>& v, uint64_t seed, uint8_t lo, uint8_t hi) {
    for (auto& b : v) {
        seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
        b = uint8_t(lo + seed % uint64_t(hi - lo + 1));
    }
}

}  // namespace

// Each shape is uploaded as enough copies (~3 GB) that the weights stream from memory, and one graph runs
// a product with every copy, so the time per product includes the gaps between kernels.
TEST_CASE("bench: NVFP4 GEMV and prefill GEMM, BF16 GEMV, on the 24B shapes" * doctest::skip()) {
    REQUIRE_CUDA();
    Backend& gpu = *cuda_backend();
    std::printf("device copy: %.0f GB/s (bytes read + written)\n", gpu.measure_bandwidth() / 1e9);
    struct Shape { const char* name; Type type; int64_t N, K; };
    const Shape shapes[] = {{"q_proj", Type::NVFP4, 4096, 5120},     {"k/v_proj", Type::NVFP4, 1024, 5120},
                            {"o_proj", Type::NVFP4, 5120, 4096},     {"gate/up", Type::NVFP4, 32768, 5120},
                            {"down", Type::NVFP4, 5120, 32768},      {"lm_head", Type::BF16, 131072, 5120}};
    std::printf("%-9s %6s %6s %4s %10s %9s %9s\n", "shape", "N", "K", "M", "us/product", "GB/s", "TFLOP/s");
    for (const Shape& s : shapes) {
        HostWeight w{s.type, {s.K, s.N}, {}, {}, 1000.0f};
        w.data.resize(row_bytes(s.type, s.K) * size_t(s.N));
        fill_bytes(w.data, 42, 0, 255);
        if (s.type == Type::NVFP4) {
            w.scale.resize(size_t(s.N * s.K / 16));
            fill_bytes(w.scale, 7, 0x20, 0x7e);
        } else {
            for (size_t i = 1; i < w.data.size(); i += 2) w.data[i] = uint8_t(0x3c + (w.data[i] & 1));  // |bf16| ~ 0.01
        }
        const size_t bytes = w.data.size() + w.scale.size();
        const int copies = int(std::max<size_t>(2, (size_t(3) << 30) / bytes));
        Env weights{gpu, {}, {}};
        std::vector<Tensor*> ws;
        for (int i = 0; i < copies; ++i) ws.push_back(weights.weight(w));
        for (int64_t M : {1, 2, 4, 8, 16, 32, 512}) {
            if (M == 512 && s.type != Type::NVFP4) continue;
            std::vector<float> x(size_t(M * s.K), 0.01f);
            Env e{gpu, {}, {}};
            Tensor* xin = e.input(x, {s.K, M});
            for (Tensor* wt : ws) e.graph.mul_mat(wt, xin);
            const double t = seconds([&] { gpu.compute(e.graph); }, 3) / copies;
            std::printf("%-9s %6lld %6lld %4lld %10.1f %9.0f %9.1f\n", s.name, (long long)s.N, (long long)s.K,
                        (long long)M, t * 1e6, double(bytes) / t / 1e9, 2.0 * double(M * s.N * s.K) / t / 1e12);
        }
    }
}
