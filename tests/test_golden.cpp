// test_golden.cpp — the model path against the Hugging Face transformers goldens: pixels, image features,
// hidden states and logits of every case (NVFP4 and BF16 checkpoints) and greedy continuations, on the CPU
// (1e-3) and, when a GPU is present, on CUDA (2e-2); KV-cache decode against a full recompute.
#include <doctest/doctest.h>

#include <cmath>
#include <fstream>
#include <functional>
#include <optional>
#include <nlohmann/json.hpp>

#include "checkpoint.h"
#include "config.h"
#include "context.h"
#include "golden.h"
#include "tokenizer.h"

using namespace mistral;

namespace {

struct Variant {
    const char* root;     // folder the case parts' image paths are relative to
    const char* model;    // checkpoint folder
    const char* golden;   // golden.safetensors / golden.json folder
    const char* suffix;   // nvfp4 or bf16
};

const Variant kVariants[] = {
    {"tests/data/tiny-a", "tests/data/tiny-a/nvfp4", "tests/data/tiny-a", "nvfp4"},
    {"tests/data/tiny-a", "tests/data/tiny-a/bf16", "tests/data/tiny-a", "bf16"},
    {"tests/data/tiny-kjv", "tests/data/tiny-kjv/nvfp4", "tests/data/tiny-kjv/golden", "nvfp4"},
    {"tests/data/tiny-kjv", "tests/data/tiny-kjv/bf16", "tests/data/tiny-kjv/golden", "bf16"},
};

std::unique_ptr<Model> open_model(const std::string& dir, std::unique_ptr<fp4::Backend> backend) {
    std::shared_ptr<Checkpoint> ck = Checkpoint::open(dir, LoadOptions{});
    Weights w = std::move(ck->weights());
    return std::make_unique<Model>(ck->config(), std::move(w), ck, std::move(backend));
}

std::unique_ptr<Model> open_cpu_model(const std::string& dir) { return open_model(dir, fp4::make_cpu_backend(2)); }

int32_t argmax(const float* v, int64_t n) {
    return int32_t(std::max_element(v, v + n) - v);
}

// Runs every case of every variant on backends made by `make` with a KV cache of `kv` (default: the
// backend's); logits, features and hidden states within `tol` relative. Greedy continuations: with tie = 0
// identical (the first token from the prompt's logits, the rest chosen by the backend's ARGMAX); with
// tie > 0 the golden tokens are fed back and each must be the top logit or within `tie` of it (roundings
// that move logits by ~tol flip near-ties, and a flip would change every later token).
void check_goldens(const std::function<std::unique_ptr<fp4::Backend>()>& make, double tol,
                   std::optional<fp4::Type> kv = std::nullopt, float tie = 0) {
    for (const Variant& var : kVariants) {
        Golden gold(var.golden);
        auto model = open_model(var.model, make());
        const Config& cfg = model->config();
        Tokenizer tok(var.model);
        ImageOptions io;
        if (tok.image()) io.max_image_size = tok.image()->max_image_size;
        io.patch = cfg.vision.patch;
        io.merge = cfg.spatial_merge;
        const std::string sfx = var.suffix;
        const int64_t V = cfg.text.vocab;

        for (const auto& c : gold.cases()) {
            const std::string name = c["name"];
            INFO(std::string(var.model) << " case " << name);
            std::vector<int32_t> ids = gold.i32(name + ".ids");
            std::vector<Image> images;
            for (const auto& part : c["parts"])
                if (part[0] == "i") images.push_back(load_image(std::string(var.root) + "/" + std::string(part[1]), io));

            for (size_t i = 0; i < images.size(); ++i)
                CHECK(max_abs_diff(images[i].pixels, gold.f32(name + ".pixels." + std::to_string(i))) <= 1e-4);

            Context ctx(*model, 1024, 1, kv);
            Batch b = Batch::sequence(ids, 0, 0, int64_t(ids.size()));
            b.image_rows = ctx.encode_images(images);
            if (gold.has(name + ".image_features"))
                CHECK(rel_err(b.image_rows, gold.f32(name + ".image_features")) <= tol);
            b.want_hidden = sfx == "nvfp4";
            BatchResult r = ctx.eval(b);

            for (size_t l = 0; b.want_hidden && l < r.hidden.size(); ++l) {
                const std::string key = name + ".hidden_nvfp4." + std::to_string(l);
                if (gold.has(key)) CHECK_MESSAGE(rel_err(r.hidden[l], gold.f32(key)) <= tol, key);
            }
            std::vector<float> want = gold.f32(name + ".logits_" + sfx);
            const int64_t R = int64_t(want.size()) / V;
            std::vector<float> got(r.logits.end() - R * V, r.logits.end());
            const double err = rel_err(got, want);
            MESSAGE(std::string(model->backend().name()) << " KV " << std::string(fp4::type_name(ctx.kv_type())) << " "
                                                         << std::string(var.model) << " " << name << " logits rel err "
                                                         << err);
            CHECK(err <= tol);

            if (sfx == "nvfp4" && gold.has(name + ".greedy_nvfp4") && tie > 0) {
                const std::vector<int32_t> expect = gold.i32(name + ".greedy_nvfp4");
                const float* l = &r.logits[size_t(ids.size() - 1) * V];
                std::vector<float> last;
                int32_t p = int32_t(ids.size());
                for (size_t i = 0; i < expect.size(); ++i) {
                    const float top = *std::max_element(l, l + V);
                    CHECK_MESSAGE(l[expect[i]] >= top - tie, "greedy step " << i << ": token " << expect[i] << " at "
                                                                           << l[expect[i]] << ", top " << top);
                    if (expect[i] == tok.eos()) break;
                    last = ctx.eval(Batch::sequence({expect[i]}, p++)).logits;
                    l = last.data();
                }
            } else if (sfx == "nvfp4" && gold.has(name + ".greedy_nvfp4")) {
                std::vector<int32_t> expect = gold.i32(name + ".greedy_nvfp4"), got_ids;
                int32_t next = argmax(&r.logits[size_t(ids.size() - 1) * V], V);
                int32_t p = int32_t(ids.size());
                while (got_ids.size() < expect.size()) {  // the next tokens chosen on the backend (ARGMAX)
                    got_ids.push_back(next);
                    if (next == tok.eos()) break;
                    Batch step = Batch::sequence({next}, p++);
                    step.argmax_only = true;
                    BatchResult s = ctx.eval(step);
                    REQUIRE(s.logits.empty());
                    REQUIRE(s.argmax.size() == 1);
                    next = s.argmax[0];
                }
                CHECK(got_ids == expect);
            }
        }
    }
}

}  // namespace

TEST_CASE("every golden case matches transformers on the CPU") {
    check_goldens([] { return fp4::make_cpu_backend(2); }, 1e-3);
}

// A BF16 cache rounds every key and value (and FP8 far more): within 1e-2 and the same greedy tokens.
TEST_CASE("every golden case with a BF16 KV cache on the CPU") {
    check_goldens([] { return fp4::make_cpu_backend(2); }, 1e-2, fp4::Type::BF16);
}

// BF16 activations (--cpu-bf16) round the input of every product with NVFP4 and BF16 weights, as a GPU
// does: the GPU's contract (2e-2, golden greedy tokens within 0.05 of the top logit).
TEST_CASE("every golden case with BF16 activations on the CPU") {
    check_goldens([] { return fp4::make_cpu_backend(2, true); }, 2e-2, std::nullopt, 0.05f);
}

TEST_CASE("a context that does not fit the backend's memory is refused, naming the sizes") {
    auto model = open_cpu_model("tests/data/tiny-kjv/nvfp4");
    const ContextMemory m = context_memory(model->config().text, 131072, 1000, fp4::Type::F32);
    CHECK(m.kv == size_t(2) * 4 * 131072 * 1000 * 256 * 4);  // K and V, 4 layers, 2 heads x 128, F32
    CHECK(context_memory(model->config().text, 131072, 1000, fp4::Type::BF16).kv == m.kv / 2);
    CHECK(context_memory(model->config().text, 131072, 1000, fp4::Type::F8_E4M3).kv == m.kv / 4);
    CHECK_THROWS_WITH_AS(Context(*model, 131072, 1000), doctest::Contains("needs 1000.00 GiB (8 KiB per token)"),
                         std::runtime_error);
    CHECK_THROWS_WITH_AS(Context(*model, 64, 1, fp4::Type::F16), doctest::Contains("not supported"),
                         std::runtime_error);
    // Activations grow with the tokens a pass takes (-ub), up to all the context's positions.
    const TextConfig& c = model->config().text;
    const size_t logits = 4 * size_t(c.vocab);
    CHECK(context_memory(c, 8192, 1, fp4::Type::F32, 2048).activations - logits ==
          4 * (context_memory(c, 8192, 1, fp4::Type::F32).activations - logits));
    CHECK(context_memory(c, 100, 1, fp4::Type::F32, 2048).activations ==
          context_memory(c, 100, 1, fp4::Type::F32, 100).activations);
    const ContextMemory at512 = context_memory(c, 4096, 1, fp4::Type::F32);
    const size_t free = at512.kv + at512.activations;
    CHECK(fitting_context(c, 4096, 1, fp4::Type::F32, free) == 4096);
    CHECK(fitting_context(c, 4096, 1, fp4::Type::F32, free, 4096) < 4096);
    CHECK_THROWS_WITH_AS(Context(*model, 131072, 1000, std::nullopt, 4096),
                         doctest::Contains("for passes of 4096 tokens"), std::runtime_error);
}

TEST_CASE("the 24B model's full 131072-token context: 20 GiB of BF16 cache, 10 GiB of FP8") {
    const Config cfg = load_config("tests/data/configs/mistral-small-3.2-24b-nvfp4a16.config.json");
    const size_t per_token = 2 * 40 * 8 * 128;  // K and V, 40 layers, 8 KV heads of 128
    CHECK(context_memory(cfg.text, 131072, 1, fp4::Type::BF16).kv == per_token * 2 * 131072);  // 160 KiB/token
    CHECK(context_memory(cfg.text, 131072, 1, fp4::Type::BF16).kv == size_t(20) << 30);
    CHECK(context_memory(cfg.text, 131072, 1, fp4::Type::F8_E4M3).kv == size_t(10) << 30);
    // With 15.2 GB of weights, a 512-token pass stays within an 80 GB card (BF16) and a 32 GB card (FP8).
    const ContextMemory bf16 = context_memory(cfg.text, 131072, 1, fp4::Type::BF16);
    const ContextMemory fp8 = context_memory(cfg.text, 131072, 1, fp4::Type::F8_E4M3);
    CHECK(15.2e9 + double(bf16.kv + bf16.activations) < 80e9);
    CHECK(15.2e9 + double(fp8.kv + fp8.activations) < 32e9);
}

TEST_CASE("a default context shrinks to the largest multiple of 256 tokens that fits") {
    const Config cfg = load_config("tests/data/configs/mistral-small-3.2-24b-nvfp4a16.config.json");
    const auto need = [&](int n) {
        const ContextMemory m = context_memory(cfg.text, n, 1, fp4::Type::BF16);
        return m.kv + m.activations;
    };
    CHECK(fitting_context(cfg.text, 32768, 1, fp4::Type::BF16, need(32768)) == 32768);  // fits as asked
    // 4 GB free (a 24 GB card with the vision tower and another program's share): 32768 tokens of BF16 cache
    // need 5 GiB at 160 KiB per token.
    const size_t free = size_t(4.0e9);
    const int fit = fitting_context(cfg.text, 32768, 1, fp4::Type::BF16, free);
    CHECK(fit < 32768);
    CHECK(fit % 256 == 0);
    CHECK(need(fit) <= free);
    CHECK(need(fit + 256) > free);
    CHECK(fitting_context(cfg.text, 32768, 1, fp4::Type::BF16, need(1000)) == 768);
    CHECK(fitting_context(cfg.text, 32768, 1, fp4::Type::BF16, need(255)) == 0);
    CHECK(fitting_context(cfg.text, 1000, 1, fp4::Type::BF16, need(999)) == 768);  // below `wanted`: 256s
}

// check_goldens on CUDA within 2e-2, or a skip message when there is no GPU. Its MMAs take activations in
// BF16 (and a fused norm rounds x·w), which moves logits by ~1e-2: greedy tokens within 0.05 of the top one
// count as ties (psalm step 33 is one: 7.9853 vs 7.9837 on the CPU).
void check_goldens_cuda(std::optional<fp4::Type> kv = std::nullopt) {
    std::string why;
    if (!fp4::make_cuda_backend(&why)) {
        MESSAGE("skipped: " << why);
        return;
    }
    check_goldens([] { return fp4::make_cuda_backend(nullptr); }, 2e-2, kv, 0.05f);
}

TEST_CASE("every golden case matches transformers on CUDA") { check_goldens_cuda(); }

TEST_CASE("every golden case with an F32 KV cache on CUDA") { check_goldens_cuda(fp4::Type::F32); }

TEST_CASE("decode through the KV cache equals a full recompute") {
    auto model = open_cpu_model("tests/data/tiny-kjv/nvfp4");
    const int64_t V = model->config().text.vocab;
    Golden gold("tests/data/tiny-kjv/golden");
    std::vector<int32_t> ids = gold.i32("psalm.ids");

    Context step(*model, 256);
    std::vector<float> stepwise;
    BatchResult r = step.eval(Batch::sequence(ids, 0));
    stepwise.insert(stepwise.end(), r.logits.begin(), r.logits.end());
    std::vector<int32_t> all = ids;
    for (int i = 0; i < 12; ++i) {
        int32_t next = argmax(r.logits.data(), V);
        all.push_back(next);
        r = step.eval(Batch::sequence({next}, int32_t(all.size() - 1)));
        stepwise.insert(stepwise.end(), r.logits.begin(), r.logits.end());
    }
    Context full(*model, 256);
    BatchResult f = full.eval(Batch::sequence(all, 0, 0, 13));
    CHECK(rel_err(stepwise, f.logits) <= 1e-5);
}

// Drops positions [4, 4 + 9) of a 40-token prompt's cache. Layer 0's keys and values depend on their token
// and position alone, so there the cache must hold what the 31-token prompt without them stores: values
// moved as they are, keys turned back 9 positions (to the cache type's rounding). Deeper layers also keep
// what the dropped tokens contributed through attention; they are checked to have moved (their first 4
// positions untouched, the rest those of the long prompt 9 rows further on, values exactly).
void check_drop_positions(const std::function<std::unique_ptr<fp4::Backend>()>& make, fp4::Type kv, double tol) {
    auto model = open_model("tests/data/tiny-kjv/nvfp4", make());
    Golden gold("tests/data/tiny-kjv/golden");
    std::vector<int32_t> ids = gold.i32("psalm.ids");
    while (ids.size() < 40) ids.push_back(ids[ids.size() % 7 + 1]);
    ids.resize(40);
    std::vector<int32_t> shorter(ids.begin(), ids.begin() + 4);
    shorter.insert(shorter.end(), ids.begin() + 13, ids.end());

    Context a(*model, 64, 1, kv), b(*model, 64, 1, kv);
    a.eval(Batch::sequence(ids, 0));
    const std::vector<uint8_t> before = a.read_cache(40);
    a.drop_positions(4, 9, 40);
    b.eval(Batch::sequence(shorter, 0));
    const std::vector<uint8_t> shifted = a.read_cache(31), fresh = b.read_cache(31);
    const size_t row = a.cache_row_bytes(), part = 31 * row, whole = 40 * row;
    auto values = [&](const std::vector<uint8_t>& bytes, size_t at, size_t n) {
        std::vector<float> v(n * row / fp4::row_bytes(kv, 1));
        fp4::load_cache_values(kv, bytes.data() + at, int64_t(v.size()), v.data());
        return v;
    };
    // Layer 0: K within the rounding of one more turn, V equal.
    CHECK(rel_err(values(shifted, 0, 31), values(fresh, 0, 31)) <= tol);
    CHECK(std::equal(shifted.begin() + long(part), shifted.begin() + long(2 * part), fresh.begin() + long(part)));
    // Every layer: positions below 4 as they were, V rows 13.. moved down by 9.
    const int n_layer = model->config().text.n_layer;
    for (int l = 0; l < n_layer; ++l) {
        const size_t k_at = size_t(2 * l) * part, k_was = size_t(2 * l) * whole;
        CHECK(std::equal(shifted.begin() + long(k_at), shifted.begin() + long(k_at + 4 * row),
                         before.begin() + long(k_was)));
        CHECK(std::equal(shifted.begin() + long(k_at + part + 4 * row), shifted.begin() + long(k_at + 2 * part),
                         before.begin() + long(k_was + whole + 13 * row)));
    }
    CHECK_THROWS_AS(a.drop_positions(30, 5, 31), std::out_of_range);
    CHECK_THROWS_AS(a.drop_positions(3, 0, 31), std::out_of_range);
}

TEST_CASE("dropped cache positions: what stays moves down, its keys turned back, on the CPU") {
    check_drop_positions([] { return fp4::make_cpu_backend(2); }, fp4::Type::F32, 1e-6);
    check_drop_positions([] { return fp4::make_cpu_backend(2); }, fp4::Type::BF16, 4e-3);
    check_drop_positions([] { return fp4::make_cpu_backend(2); }, fp4::Type::F8_E4M3, 5e-2);
}

TEST_CASE("dropped cache positions on CUDA") {
    std::string why;
    if (!fp4::make_cuda_backend(&why)) {
        MESSAGE("skipped: " << why);
        return;
    }
    check_drop_positions([] { return fp4::make_cuda_backend(nullptr); }, fp4::Type::BF16, 4e-3);
}

TEST_CASE("a pass over drafted tokens: each row as a one-row pass gives it, keys of rejected ones unseen") {
    auto model = open_cpu_model("tests/data/tiny-kjv/nvfp4");
    const size_t V = size_t(model->config().text.vocab);
    Golden gold("tests/data/tiny-kjv/golden");
    const std::vector<int32_t> prompt = gold.i32("psalm.ids");
    const int32_t p = int32_t(prompt.size());
    // One token a pass: the greedy continuation x[0..4] and the logits after each.
    Context one(*model, 64);
    std::vector<int32_t> x{argmax(one.eval(Batch::sequence(prompt, 0)).logits.data(), int64_t(V))};
    std::vector<std::vector<float>> after;
    for (int i = 0; i < 4; ++i) {
        after.push_back(one.eval(Batch::sequence({x.back()}, p + i)).logits);
        x.push_back(argmax(after.back().data(), int64_t(V)));
    }
    auto row = [&](const BatchResult& r, size_t i) {
        return std::vector<float>(r.logits.begin() + long(i * V), r.logits.begin() + long((i + 1) * V));
    };
    // Up to 4 rows (the CPU's GEMV, per-row decode attention): the same bits as one row at a time.
    for (size_t rows = 2; rows <= 4; ++rows) {
        Context spec(*model, 64);
        spec.eval(Batch::sequence(prompt, 0));
        const BatchResult r = spec.eval(
            Batch::sequence(std::vector<int32_t>(x.begin(), x.begin() + long(rows)), p, 0, int64_t(rows)));
        for (size_t i = 0; i < rows; ++i) {
            INFO(rows << " rows, row " << i);
            CHECK(row(r, i) == after[i]);
        }
    }
    // Drafts 7, 8, 9 rejected after x[0]: the next pass writes over their positions, and no row reads the
    // keys of the one left beyond it.
    Context spec(*model, 64);
    spec.eval(Batch::sequence(prompt, 0));
    CHECK(row(spec.eval(Batch::sequence({x[0], 7, 8, 9}, p, 0, 4)), 0) == after[0]);
    const BatchResult r = spec.eval(Batch::sequence({x[1], x[2]}, p + 1, 0, 2));
    CHECK(row(r, 0) == after[1]);
    CHECK(row(r, 1) == after[2]);
    // 8 rows take attention tiles and the dense lm_head's panels: other sums, within F32 rounding.
    Context wide(*model, 64);
    wide.eval(Batch::sequence(prompt, 0));
    const BatchResult w = wide.eval(Batch::sequence({x[0], x[1], x[2], x[3], 5, 6, 7, 8}, p, 0, 8));
    for (size_t i = 0; i < 4; ++i) CHECK(rel_err(row(w, i), after[i]) <= 1e-5);
}

TEST_CASE("two sequences decoded in one batch match each decoded alone") {
    auto model = open_cpu_model("tests/data/tiny-kjv/nvfp4");
    Golden gold("tests/data/tiny-kjv/golden");
    std::vector<int32_t> a = gold.i32("psalm.ids"), bb = gold.i32("raw.ids");
    Context solo(*model, 64);
    std::vector<float> la = solo.eval(Batch::sequence(a, 0)).logits;
    Context solo2(*model, 64);
    std::vector<float> lb = solo2.eval(Batch::sequence(bb, 0)).logits;

    Context both(*model, 64, 2);
    both.eval(Batch::sequence(std::vector<int32_t>(a.begin(), a.end() - 1), 0, 0, 0));
    both.eval(Batch::sequence(std::vector<int32_t>(bb.begin(), bb.end() - 1), 0, 1, 0));
    Batch step;
    step.ids = {a.back(), bb.back()};
    step.pos = {int32_t(a.size() - 1), int32_t(bb.size() - 1)};
    step.seq = {0, 1};
    step.logits_first = 0;
    step.logits_count = 2;
    std::vector<float> l2 = both.eval(step).logits;
    const size_t V = size_t(model->config().text.vocab);
    CHECK(rel_err(std::vector<float>(l2.begin(), l2.begin() + V), la) <= 1e-5);
    CHECK(rel_err(std::vector<float>(l2.begin() + V, l2.end()), lb) <= 1e-5);
}

TEST_CASE("decode steps of two sequences taking turns (one graph, run again with new inputs) match each alone") {
    auto model = open_cpu_model("tests/data/tiny-kjv/nvfp4");
    const int64_t V = model->config().text.vocab;
    Golden gold("tests/data/tiny-kjv/golden");
    const std::vector<int32_t> prompts[2] = {gold.i32("psalm.ids"), gold.i32("raw.ids")};
    Context both(*model, 64, 2), solo0(*model, 64), solo1(*model, 64);
    Context* solo[2] = {&solo0, &solo1};
    int32_t next[2], at[2];
    for (int s = 0; s < 2; ++s) {
        both.eval(Batch::sequence(prompts[s], 0, s));
        next[s] = argmax(solo[s]->eval(Batch::sequence(prompts[s], 0)).logits.data(), V);
        at[s] = int32_t(prompts[s].size());
    }
    for (int i = 0; i < 8; ++i) {
        const int s = i % 2;
        const std::vector<float> shared = both.eval(Batch::sequence({next[s]}, at[s], s)).logits;
        const std::vector<float> alone = solo[s]->eval(Batch::sequence({next[s]}, at[s])).logits;
        INFO("step " << i << ", sequence " << s);
        CHECK(rel_err(shared, alone) <= 1e-5);
        next[s] = argmax(alone.data(), V);
        ++at[s];
    }
}

TEST_CASE("a wrong image count and a prompt beyond the context are clear errors") {
    auto model = open_cpu_model("tests/data/tiny-kjv/nvfp4");
    Golden gold("tests/data/tiny-kjv/golden");
    std::vector<int32_t> ids = gold.i32("shape_red_circle.ids");
    CHECK_THROWS_WITH_AS(check_image_tokens(model->config(), ids, {}), doctest::Contains("[IMG] tokens"),
                         std::runtime_error);
    Context ctx(*model, 4);
    CHECK_THROWS_WITH_AS(ctx.eval(Batch::sequence(gold.i32("psalm.ids"), 0)), doctest::Contains("context"),
                         std::runtime_error);
    Context ctx2(*model, 64);
    CHECK_THROWS_WITH_AS(ctx2.eval(Batch::sequence(ids, 0)), doctest::Contains("image rows"), std::runtime_error);
}
