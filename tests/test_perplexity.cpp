// test_perplexity.cpp — perplexity and KLD: per-token NLL and KLD against the transformers goldens, PPL of a
// chunked run, batch-layout invariance, the `_logits_` file (round trip, truncated and foreign files), the
// statistics helpers, and the perplexity/kld binaries through FP4_BIN.
#include <doctest/doctest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "checkpoint.h"
#include "context.h"
#include "golden.h"
#include "kld_file.h"
#include "kld_stats.h"
#include "perplexity.h"

using namespace mistral;
namespace fs = std::filesystem;

namespace {

struct Fixture {
    const char* name;    // golden case
    const char* golden;  // golden folder
    const char* root;    // model folder holding nvfp4/ and bf16/
};
const Fixture kFixtures[] = {{"long", "tests/data/tiny-a", "tests/data/tiny-a"},
                             {"ppl", "tests/data/tiny-kjv/golden", "tests/data/tiny-kjv"}};

std::unique_ptr<Model> open_cpu_model(const std::string& dir) {
    std::shared_ptr<Checkpoint> ck = Checkpoint::open(dir, LoadOptions{});
    Weights w = std::move(ck->weights());
    return std::make_unique<Model>(ck->config(), std::move(w), ck, fp4::make_cpu_backend(2));
}

std::vector<float> to_float(const std::vector<double>& v) { return std::vector<float>(v.begin(), v.end()); }

std::vector<float> slice(const std::vector<float>& v, size_t a, size_t b) {
    return std::vector<float>(v.begin() + long(a), v.begin() + long(b));
}

double mean_nll(const std::vector<float>& v, size_t a, size_t b) {
    double s = 0;
    for (size_t i = a; i < b; ++i) s += v[i];
    return s / double(b - a);
}

// Scored logits of every chunk of `plan` over `ids`, chunk-major.
std::vector<float> all_logits(Model& m, const std::vector<int32_t>& ids, const common::ChunkPlan& plan) {
    Context ctx(m, plan.n_ctx, plan.n_seq);
    std::vector<float> out;
    for (int c0 = 0; c0 < plan.n_chunk; c0 += plan.n_seq) {
        std::vector<float> l = common::eval_chunks(ctx, ids, plan, c0, std::min(plan.n_seq, plan.n_chunk - c0), ids[0]);
        out.insert(out.end(), l.begin(), l.end());
    }
    return out;
}

struct TmpDir {
    fs::path path;
    TmpDir() {
        path =
            fs::temp_directory_path() / ("fp4-ppl-" + std::to_string(::getpid()) + "-" + std::to_string(std::rand()));
        fs::create_directories(path);
    }
    ~TmpDir() { fs::remove_all(path); }
};

std::string slurp(const fs::path& p) {
    std::ifstream f(p, std::ios::binary);
    std::ostringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

}  // namespace

TEST_CASE("log-softmax, NLL and KLD on the golden logits rows") {
    for (const Fixture& fx : kFixtures) {
        INFO(fx.golden << " " << fx.name);
        Golden gold(fx.golden);
        const std::string n = fx.name;
        const std::vector<int32_t> ids = gold.i32(n + ".ids");
        const std::vector<float> lq = gold.f32(n + ".logits_nvfp4"), lb = gold.f32(n + ".logits_bf16");
        const std::vector<float> nll_q = gold.f32(n + ".nll_nvfp4"), nll_b = gold.f32(n + ".nll_bf16"),
                                 kld = gold.f32(n + ".kld");
        const int64_t T = int64_t(ids.size()), V = 5120, R = int64_t(lq.size()) / V;
        for (int64_t r = 0; r < R; ++r) {
            const int64_t t = T - R + r;  // position of this row
            const common::TokenScore s =
                common::score_token(lb.data() + r * V, lq.data() + r * V, V, r + 1 < R ? ids[size_t(t + 1)] : 0, 0);
            CHECK(s.kld == doctest::Approx(kld[size_t(t)]).epsilon(1e-4));
            if (r + 1 < R) {
                CHECK(common::token_nll(lq.data() + r * V, V, ids[size_t(t + 1)]) ==
                      doctest::Approx(nll_q[size_t(t)]).epsilon(1e-5));
                CHECK(s.nll == doctest::Approx(nll_q[size_t(t)]).epsilon(1e-5));
                CHECK(s.nll_base == doctest::Approx(nll_b[size_t(t)]).epsilon(1e-5));
            }
            // the top-k KLD over the whole vocabulary is the full KLD
            const common::TokenScore all = common::score_token(lb.data() + r * V, lq.data() + r * V, V, 0, int(V));
            CHECK(all.kld_top_k == doctest::Approx(s.kld).epsilon(1e-6));
        }
    }
}

TEST_CASE("per-token NLL and KLD of both models match the goldens; PPL of a run matches them") {
    for (const Fixture& fx : kFixtures) {
        INFO(fx.golden << " " << fx.name);
        Golden gold(fx.golden);
        const std::string n = fx.name;
        const std::vector<int32_t> ids = gold.i32(n + ".ids");
        const int T = int(ids.size());
        auto q = open_cpu_model(std::string(fx.root) + "/nvfp4");
        auto b = open_cpu_model(std::string(fx.root) + "/bf16");
        const int64_t V = q->config().text.vocab;

        // one chunk of the whole case, every position scored: the goldens' full-context predictions
        const common::ChunkPlan all = common::make_plan(T, 1, T, true);
        const std::vector<float> lq = all_logits(*q, ids, all), lb = all_logits(*b, ids, all);
        const std::vector<double> nq = common::chunk_nll(lq, V, ids, all, 0, 1),
                                  nb = common::chunk_nll(lb, V, ids, all, 0, 1);
        std::vector<double> kld(size_t(T - 1));
        for (int t = 0; t + 1 < T; ++t)
            kld[size_t(t)] = common::score_token(lb.data() + t * V, lq.data() + t * V, V, ids[size_t(t + 1)], 0).kld;
        const std::vector<float> gq = gold.f32(n + ".nll_nvfp4"), gb = gold.f32(n + ".nll_bf16");
        CHECK(rel_err(to_float(nq), gq) <= 1e-3);
        CHECK(rel_err(to_float(nb), gb) <= 1e-3);
        CHECK(rel_err(to_float(kld), slice(gold.f32(n + ".kld"), 0, size_t(T - 1))) <= 1e-3);

        // llama.cpp's run: one chunk of T tokens, its second half scored
        const common::ChunkPlan half = common::make_plan(T, 1, 2048, false);
        Context ctx(*q, T, 1);
        const nlohmann::json j = common::run_perplexity(ctx, ids, half, ids[0]);
        const double want = std::exp(mean_nll(gq, size_t(half.first), size_t(T - 1)));
        CHECK(double(j["ppl"]) == doctest::Approx(want).epsilon(1e-3));
        CHECK(int64_t(j["tokens"]) == T - 1 - T / 2);
    }
}

TEST_CASE("chunked runs: BOS per chunk, the batch layout and batch size do not change the NLLs") {
    Golden gold("tests/data/tiny-kjv/golden");
    const std::vector<int32_t> ids = gold.i32("ppl.ids");
    auto q = open_cpu_model("tests/data/tiny-kjv/nvfp4");
    const int64_t V = q->config().text.vocab;
    const common::ChunkPlan one = common::plan_chunks(ids.size(), 128, 128, -1, false);
    const common::ChunkPlan four = common::plan_chunks(ids.size(), 128, 512, -1, false);
    const common::ChunkPlan pieces = common::plan_chunks(ids.size(), 128, 48, 3, false);
    REQUIRE(one.n_chunk == 4);
    REQUIRE(one.n_seq == 1);
    REQUIRE(four.n_seq == 4);
    REQUIRE(pieces.n_seq == 1);
    REQUIRE(pieces.n_chunk == 3);
    const std::vector<float> a = all_logits(*q, ids, one), b = all_logits(*q, ids, four),
                             c = all_logits(*q, ids, pieces);
    CHECK(rel_err(b, a) <= 1e-5);
    CHECK(rel_err(c, slice(a, 0, c.size())) <= 1e-5);
    // chunk 0 starts at the real BOS: its scored rows are the goldens' positions 64 .. 126
    const std::vector<double> nll = common::chunk_nll(a, V, ids, one, 0, 4);
    CHECK(rel_err(to_float(std::vector<double>(nll.begin(), nll.begin() + one.rows())),
                  slice(gold.f32("ppl.nll_nvfp4"), 64, 127)) <= 1e-3);

    CHECK_THROWS_WITH_AS(common::plan_chunks(200, 128, 512, -1, false),
                         doctest::Contains("you need at least 256 tokens"), std::runtime_error);
    CHECK_THROWS_AS(common::plan_chunks(1000, 0, 512, -1, false), std::runtime_error);
}

TEST_CASE("_logits_ file: round trip, exact size, truncated and foreign files") {
    Golden gold("tests/data/tiny-kjv/golden");
    const std::vector<int32_t> ids = gold.i32("ppl.ids");
    auto b = open_cpu_model("tests/data/tiny-kjv/bf16");
    const int64_t V = b->config().text.vocab;
    const common::ChunkPlan plan = common::plan_chunks(ids.size(), 128, 256, 2, false);
    const std::vector<float> logits = all_logits(*b, ids, plan);
    const std::vector<int32_t> toks(ids.begin(), ids.begin() + 256);

    TmpDir tmp;
    const fs::path file = tmp.path / "base.kld";
    const common::KldHeader h{128, int32_t(V), 2};
    {
        common::KldWriter w(file.string(), h, toks);
        w.write_rows(logits.data(), 2 * plan.rows());
        w.close();
    }
    CHECK(int64_t(fs::file_size(file)) == 20 + 4 * 256 + 2 * 63 * (V + 4) * 2);
    CHECK(slurp(file).substr(0, 8) == "_logits_");

    common::KldReader r(file.string());
    CHECK(r.header().n_ctx == 128);
    CHECK(r.header().n_vocab == V);
    CHECK(r.header().n_chunk == 2);
    CHECK(r.tokens() == toks);
    for (int c = 0; c < 2; ++c) {
        const std::vector<uint16_t> rows = r.read_chunk(c);
        for (int k = 0; k < plan.rows(); k += 7) {
            const float* l = logits.data() + (c * plan.rows() + k) * V;
            const common::LogProbRow row = common::decode_row(rows.data() + k * r.header().row_slots());
            const common::RowNorm norm = common::row_norm(l, V);
            const int64_t top = std::max_element(l, l + V) - l;
            CHECK(row.q[top] == 65535);
            CHECK(row.logp(top) == doctest::Approx(-norm.lse).epsilon(1e-5));
            for (int64_t i = 0; i < V; i += 97)
                if (double(l[i]) > norm.max - 16) CHECK(std::fabs(row.logp(i) - (l[i] - norm.max - norm.lse)) <= 2e-4);
            // the stored row against the exact logits: a small KLD, the same top token
            const common::TokenScore s = common::score_token(row, l, V, common::chunk_target(ids, plan, c, k), 0);
            CHECK(std::fabs(s.kld) < 1e-4);
            CHECK(s.same_top);
        }
    }

    // a truncated copy, one with trailing bytes, and a foreign file
    const std::string bytes = slurp(file);
    auto write = [&](const char* name, const std::string& data) {
        std::ofstream(tmp.path / name, std::ios::binary) << data;
        return (tmp.path / name).string();
    };
    CHECK_THROWS_WITH_AS(common::KldReader(write("short.kld", bytes.substr(0, bytes.size() - 10))),
                         doctest::Contains("is truncated"), std::runtime_error);
    CHECK_THROWS_WITH_AS(common::KldReader(write("long.kld", bytes + "x")), doctest::Contains("more than its header"),
                         std::runtime_error);
    CHECK_THROWS_WITH_AS(common::KldReader(write("foreign.kld", std::string(4096, 'a'))),
                         doctest::Contains("does not look like a file containing log-probabilities"),
                         std::runtime_error);
    CHECK_THROWS_WITH_AS(common::KldReader(write("tiny.kld", "_log")), doctest::Contains("does not look like"),
                         std::runtime_error);
    CHECK_THROWS_AS(common::KldReader((tmp.path / "missing.kld").string()), std::runtime_error);

    // a writer stopped early reports the incomplete file
    common::KldWriter w((tmp.path / "partial.kld").string(), h, toks);
    w.write_rows(logits.data(), plan.rows());
    CHECK_THROWS_WITH_AS(w.close(), doctest::Contains("incomplete"), std::runtime_error);
}

TEST_CASE("statistics helpers follow llama.cpp") {
    const std::vector<double> v{1, 2, 3, 4};
    CHECK(common::median(v) == 2.5);
    CHECK(common::median({1, 2, 3}) == 2);
    CHECK(common::percentile(v, 0.5) == doctest::Approx(2.5));
    CHECK(common::percentile(v, 0.9) == doctest::Approx(3.7));
    CHECK(common::percentile(v, 0) == 1);
    CHECK(common::percentile(v, 1) == 4);
    auto mu = common::mean_and_uncertainty(10, 30, 4);  // too few values for an uncertainty
    CHECK(mu.first == 2.5);
    CHECK(mu.second == 0);
    mu = common::mean_and_uncertainty(55, 385, 10 + 1);  // 0..10
    CHECK(mu.first == 5);
    CHECK(mu.second == doctest::Approx(1.0));  // var 10, sqrt(10/10)
    CHECK(common::covariance(1, 1, 1, 5) == 0);

    common::NllSum s;
    for (double x : {1.0, 2.0, 3.0}) s.add(x);
    CHECK(s.ppl() == doctest::Approx(std::exp(2.0)));
    CHECK(s.ppl_err() == doctest::Approx(std::exp(2.0) * std::sqrt((14.0 / 3 - 4) / 2)));

    common::KldStats st;
    common::TokenScore t;
    t.nll = t.nll_base = 1;
    t.same_top = true;
    st.add(t);
    CHECK(st.chunk_line(1).rfind("   1       2.7183 \xc2\xb1    0.0000", 0) == 0);
}

TEST_CASE("perplexity and kld binaries") {
    const char* bin = std::getenv("FP4_BIN");
    if (!bin || !fs::exists(fs::path(bin) / "perplexity") || !fs::exists(fs::path(bin) / "kld")) {
        MESSAGE("FP4_BIN/perplexity or kld not built; CLI test skipped");
        return;
    }
    TmpDir tmp;
    const fs::path text = tmp.path / "ruth.txt", out = tmp.path / "out.txt", err = tmp.path / "err.txt";
    Golden gold("tests/data/tiny-kjv/golden");
    {
        std::ofstream f(text, std::ios::binary);
        for (const auto& part : gold.find_case("ppl")["parts"])
            if (part[0] == "t") f << std::string(part[1]);
    }
    auto run = [&](const std::string& tool, const std::string& args) {
        const std::string cmd =
            (fs::path(bin) / tool).string() + " --device cpu -t 2 " + args + " >" + out.string() + " 2>" + err.string();
        const int rc = std::system(cmd.c_str());
        return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
    };
    auto json = [&](const char* name) { return nlohmann::json::parse(slurp(tmp.path / name)); };
    const std::string q = "-m tests/data/tiny-kjv/nvfp4 ", b = "-m tests/data/tiny-kjv/bf16 ";
    const std::string f = "-f " + text.string() + " ", base = (tmp.path / "base.kld").string();

    // perplexity: llama.cpp's output, and the library's number for the same chunks
    REQUIRE(run("perplexity", q + f + "-c 128 --json " + (tmp.path / "ppl.json").string()) == 0);
    const std::string res = slurp(out);
    CHECK(res.rfind("[1]", 0) == 0);
    CHECK(res.find("[4]") != std::string::npos);
    CHECK(res.find("Final estimate: PPL = ") != std::string::npos);
    const nlohmann::json pj = json("ppl.json");
    CHECK(pj["n_chunk"] == 4);
    CHECK(pj["tokens"] == 4 * 63);
    const std::vector<int32_t> ids = gold.i32("ppl.ids");
    auto qm = open_cpu_model("tests/data/tiny-kjv/nvfp4");
    const common::ChunkPlan plan = common::plan_chunks(ids.size(), 128, 2048, -1, false);
    const std::vector<double> nll = common::chunk_nll(all_logits(*qm, ids, plan), 5120, ids, plan, 0, 4);
    double sum = 0;
    for (double x : nll) sum += x;
    CHECK(double(pj["ppl"]) == doctest::Approx(std::exp(sum / double(nll.size()))).epsilon(1e-4));
    // --cpu-bf16 reaches the backend: another PPL (the products' inputs rounded), within 1% of F32's
    REQUIRE(run("perplexity", q + f + "-c 128 --cpu-bf16 --json " + (tmp.path / "ppl_bf16.json").string()) == 0);
    CHECK(slurp(err).find("bf16 activations") != std::string::npos);
    const double ppl_bf16 = json("ppl_bf16.json")["ppl"];
    CHECK(ppl_bf16 != double(pj["ppl"]));
    CHECK(ppl_bf16 == doctest::Approx(double(pj["ppl"])).epsilon(0.01));
    CHECK(run("perplexity", q + f + "-c 128 --score-all") == 0);
    CHECK(slurp(out).find("(--score-all") != std::string::npos);
    CHECK(run("perplexity", q + f + "-c 512") == 1);
    CHECK(slurp(err).find("you need at least 1024 tokens") != std::string::npos);

    // base file, then the model against it, then both models in one run
    REQUIRE(run("kld", b + f + "-c 128 --save-base " + base) == 0);
    CHECK(slurp(out).find("Final estimate: PPL = ") != std::string::npos);
    REQUIRE(run("kld", q + "--base " + base + " --top-k-only 20 --json " + (tmp.path / "kf.json").string()) == 0);
    const std::string kres = slurp(out);
    CHECK(kres.find("chunk             PPL               ln(PPL(Q)/PPL(base))") != std::string::npos);
    CHECK(kres.find("====== KL divergence statistics ======") != std::string::npos);
    CHECK(kres.find("Same top p: ") != std::string::npos);
    CHECK(kres.find("====== Top-20 KL divergence statistics") != std::string::npos);
    REQUIRE(run("kld", q + "--base-model tests/data/tiny-kjv/bf16 " + f + "-c 128 --json " +
                           (tmp.path / "km.json").string()) == 0);
    const nlohmann::json kf = json("kf.json"), km = json("km.json");
    CHECK(kf["tokens"] == 4 * 63);
    CHECK(km["tokens"] == 4 * 63);
    CHECK(double(kf["kld"]["mean"]) == doctest::Approx(double(km["kld"]["mean"])).epsilon(0.02));
    CHECK(double(kf["ppl_q"]) == doctest::Approx(double(km["ppl_q"])).epsilon(1e-6));
    CHECK(double(kf["ppl_base"]) == doctest::Approx(double(km["ppl_base"])).epsilon(1e-3));
    CHECK(double(kf["kld_top_k"]["mean"]) <= double(kf["kld"]["mean"]) * 1.5);

    // mismatches are errors
    CHECK(run("kld", q + "--base " + base + " -c 64") == 1);
    CHECK(slurp(err).find("differs from the context") != std::string::npos);
    {
        const std::vector<float> small(size_t(63) * 100, 0.0f);
        common::KldWriter w((tmp.path / "v100.kld").string(), common::KldHeader{128, 100, 1},
                            std::vector<int32_t>(128, 1));
        w.write_rows(small.data(), 63);
        w.close();
    }
    CHECK(run("kld", q + "--base " + (tmp.path / "v100.kld").string()) == 1);
    CHECK(slurp(err).find("vocabulary mismatch") != std::string::npos);
    {
        std::ofstream g(tmp.path / "other.txt");
        g << "In the beginning God created the heaven and the earth. " << slurp(text);
    }
    CHECK(run("kld", q + "--base " + base + " -f " + (tmp.path / "other.txt").string()) == 1);
    CHECK(slurp(err).find("token stream mismatch") != std::string::npos);
    fs::resize_file(base, fs::file_size(base) - 1000);
    CHECK(run("kld", q + "--base " + base) == 1);
    CHECK(slurp(err).find("is truncated") != std::string::npos);

    // generation mode
    REQUIRE(run("kld", q + "--base-model tests/data/tiny-kjv/bf16 " + f + "-c 128 --gen 8 --json " +
                           (tmp.path / "gen.json").string()) == 0);
    const nlohmann::json gj = json("gen.json");
    CHECK(gj["steps"].size() == 8);
    CHECK(gj["tokens"] == 4 * 8);
    CHECK(double(gj["kld"]["mean"]) >= 0);
}
