// test_quantize.cpp — BF16 → NVFP4 quantization: rounding ties, byte-identical output against the
// fixtures made with compressed-tensors, sharding, the check, and the error cases leaving no output.
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <doctest/doctest.h>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "numeric.h"
#include "quantize.h"
#include "safetensors.h"
#include "safetensors_writer.h"

using namespace mistral;
namespace fs = std::filesystem;

namespace {

struct TmpDir {
    fs::path path;
    TmpDir() {
        std::string t = (fs::temp_directory_path() / "test_quantize-XXXXXX").string();
        REQUIRE(mkdtemp(t.data()) != nullptr);
        path = t;
    }
    ~TmpDir() { fs::remove_all(path); }
};

std::string slurp(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

// Nothing named OUT nor OUT.tmp-* next to it.
bool no_output(const fs::path& out) {
    if (fs::exists(out)) return false;
    for (const auto& e : fs::directory_iterator(out.parent_path()))
        if (e.path().filename().string().rfind(out.filename().string() + ".tmp-", 0) == 0) return false;
    return true;
}

// The names in a folder.
std::vector<std::string> entries(const fs::path& dir) {
    std::vector<std::string> v;
    for (const auto& e : fs::directory_iterator(dir)) v.push_back(e.path().filename().string());
    std::sort(v.begin(), v.end());
    return v;
}

// Same names, and every tensor with the same dtype, shape and bytes.
void require_same_tensors(const SafeTensorSet& got, const SafeTensorSet& want) {
    REQUIRE(got.names() == want.names());
    for (const std::string& n : want.names()) {
        const TensorView& a = got.get(n);
        const TensorView& b = want.get(n);
        INFO(n);
        CHECK(a.dtype == b.dtype);
        CHECK(a.shape == b.shape);
        REQUIRE(a.nbytes == b.nbytes);
        CHECK(std::memcmp(a.data, b.data, a.nbytes) == 0);
    }
}

void check_fixture(const std::string& model) {
    fs::path src = "tests/data/" + model;
    TmpDir tmp;
    fs::path out = tmp.path / "out";
    QuantizeOptions opt;
    opt.threads = 2;
    uint64_t last_done = 0, last_total = 0;
    opt.progress = [&](uint64_t done, uint64_t total) { last_done = done, last_total = total; };
    QuantizeSummary s = quantize_checkpoint((src / "bf16").string(), out.string(), opt);
    CHECK(s.shards == 1);
    CHECK(last_done == last_total);
    CHECK(last_total == SafeTensorSet::open((src / "bf16").string())->total_bytes());

    auto got = SafeTensorSet::open(out.string());
    auto want = SafeTensorSet::open((src / "nvfp4").string());
    require_same_tensors(*got, *want);
    CHECK(s.quantized * 3 + s.copied == want->count());
    CHECK(slurp(out / "config.json") == slurp(src / "nvfp4/config.json"));
    CHECK(slurp(out / "tekken.json") == slurp(src / "bf16/tekken.json"));
    CHECK(slurp(out / "generation_config.json") == slurp(src / "bf16/generation_config.json"));
    CHECK(entries(tmp.path) == std::vector<std::string>{"out"});
    CHECK(entries(out) == entries(src / "nvfp4"));
    fs::create_directory(tmp.path / "plain");  // the output folder gets a new folder's permissions
    CHECK(fs::status(out).permissions() == fs::status(tmp.path / "plain").permissions());
}

// A checkpoint folder with a minimal config and the given tensors (all zero-filled except `fill`).
struct SynthTensor {
    std::string name, dtype;
    std::vector<int64_t> shape;
};
void write_checkpoint(const fs::path& dir, const std::vector<SynthTensor>& ts) {
    fs::create_directories(dir);
    std::ofstream(dir / "config.json") << R"({"model_type": "mistral"})";
    SafetensorsWriter w;
    for (const auto& t : ts) w.declare(t.name, t.dtype, t.shape);
    w.open((dir / "model.safetensors").string());
    std::mt19937 rng(1);
    for (const auto& t : ts) {
        size_t n = SafetensorsWriter::dtype_size(t.dtype);
        for (int64_t d : t.shape) n *= size_t(d);
        std::vector<uint8_t> bytes(n);
        for (size_t i = 0; i + 1 < n; i += 2) {  // small normal values whatever the 2/4-byte dtype
            bytes[i] = uint8_t(rng());
            bytes[i + 1] = uint8_t(0x3c + rng() % 2);
        }
        w.write(t.name, bytes.data(), n);
    }
    w.close();
}

uint16_t bf(float f) { return fp4::f32_to_bf16(f); }

}  // namespace

TEST_CASE("E2M1 rounding: ties to even, sign of values that round to zero") {
    CHECK(fp4::f32_to_e2m1(0.25f) == 0);
    CHECK(fp4::f32_to_e2m1(0.2500001f) == 1);
    CHECK(fp4::f32_to_e2m1(0.75f) == 2);
    CHECK(fp4::f32_to_e2m1(0.7499999f) == 1);
    CHECK(fp4::f32_to_e2m1(1.25f) == 2);
    CHECK(fp4::f32_to_e2m1(1.75f) == 4);
    CHECK(fp4::f32_to_e2m1(2.5f) == 4);
    CHECK(fp4::f32_to_e2m1(3.5f) == 6);
    CHECK(fp4::f32_to_e2m1(5.0f) == 6);
    CHECK(fp4::f32_to_e2m1(5.0001f) == 7);
    CHECK(fp4::f32_to_e2m1(-3.5f) == 14);
    CHECK(fp4::f32_to_e2m1(-0.1f) == 8);   // torch: 0 · sign(−0.1) = −0 → sign bit set
    CHECK(fp4::f32_to_e2m1(-0.0f) == 0);   // torch.sign(−0) = 0
    CHECK(fp4::f32_to_e2m1(0.0f) == 0);
}

TEST_CASE("scales: global 448·6/amax, group scale rounding, zero → 0.125, saturation") {
    CHECK(nvfp4_global_scale(0.1982421875f) == 13559.1728515625f);  // as in the tiny-kjv fixture
    CHECK(nvfp4_global_scale(6.0f) == 448.0f);
    CHECK(nvfp4_group_scale(0.0f, 448.0f) == 0x20);
    CHECK(nvfp4_group_scale(1e-6f, 1.0f) == 0x20);       // rounds to an E4M3 zero
    CHECK(nvfp4_group_scale(6.375f, 1.0f) == 0x38);      // 1.0625: tie between 1 and 1.125 → 1
    CHECK(nvfp4_group_scale(7.125f, 1.0f) == 0x3a);      // 1.1875: tie between 1.125 and 1.25 → 1.25
    CHECK(nvfp4_group_scale(6.0f, 1000.0f) == 0x7e);     // clamped to 448
    CHECK(nvfp4_group_scale(6.0f, 448.0f) == 0x7e);
}

TEST_CASE("quantize_nvfp4: codes, packing order, zero groups, threads") {
    // Row 0: amax 6 → global 448, group scale 448, divisor 1: the codes are E2M1 of the values.
    const float row0[16] = {6,      0.25f,  0.75f, 1.25f, 1.75f, 2.5f, 3.5f, 5,
                            -0.25f, -0.75f, -5,    -0.0f, -0.1f, 0.3f, 5.5f, -6};
    const uint8_t codes0[16] = {7, 0, 2, 2, 4, 4, 6, 6, 8, 10, 14, 0, 8, 1, 7, 15};
    std::vector<uint16_t> w(32, 0);
    for (int k = 0; k < 16; ++k) w[size_t(k)] = bf(row0[k]);
    Nvfp4Weight q = quantize_nvfp4(w.data(), 2, 16, 1);
    CHECK(q.global_scale == 448.0f);
    REQUIRE(q.packed.size() == 16);
    REQUIRE(q.scales.size() == 2);
    CHECK(q.scales[0] == 0x7e);
    CHECK(q.scales[1] == 0x20);  // all-zero group
    for (int k = 0; k < 8; ++k) {
        INFO(k);
        CHECK(q.packed[size_t(k)] == uint8_t(codes0[2 * k] | (codes0[2 * k + 1] << 4)));
        CHECK(q.packed[size_t(8 + k)] == 0);
    }

    std::mt19937 rng(7);
    std::normal_distribution<float> nd(0.0f, 0.02f);
    std::vector<uint16_t> big(size_t(37 * 64));
    for (auto& x : big) x = bf(nd(rng));
    Nvfp4Weight a = quantize_nvfp4(big.data(), 37, 64, 1), b = quantize_nvfp4(big.data(), 37, 64, 5);
    CHECK(a.packed == b.packed);
    CHECK(a.scales == b.scales);
    CHECK(a.global_scale == b.global_scale);

    CHECK_THROWS_WITH_AS(quantize_nvfp4(big.data(), 2, 40, 1), doctest::Contains("multiple of 16"), std::runtime_error);
    std::vector<uint16_t> zeros(32, 0);
    CHECK_THROWS_WITH_AS(quantize_nvfp4(zeros.data(), 2, 16, 1), doctest::Contains("zero"), std::runtime_error);
}

TEST_CASE("which tensors are quantized") {
    std::string m;
    CHECK(is_decoder_linear("model.language_model.layers.3.mlp.down_proj.weight", &m));
    CHECK(m == "model.language_model.layers.3.mlp.down_proj");
    CHECK(is_decoder_linear("model.layers.0.self_attn.q_proj.weight", &m));
    CHECK(m == "model.layers.0.self_attn.q_proj");
    CHECK(is_decoder_linear("language_model.model.layers.12.self_attn.o_proj.weight", &m));
    CHECK_FALSE(is_decoder_linear("model.vision_tower.transformer.layers.0.attention.q_proj.weight", &m));
    CHECK_FALSE(is_decoder_linear("model.language_model.layers.0.input_layernorm.weight", &m));
    CHECK_FALSE(is_decoder_linear("model.language_model.layers.0.mlp.down_proj.bias", &m));
    CHECK_FALSE(is_decoder_linear("model.language_model.embed_tokens.weight", &m));
    CHECK_FALSE(is_decoder_linear("lm_head.weight", &m));

    auto ig = default_ignore();
    CHECK(first_match({"lm_head"}, ig));
    CHECK(first_match({"model.vision_tower.transformer.layers.0.attention.q_proj"}, ig));
    CHECK(first_match({"model.multi_modal_projector.linear_1"}, ig));
    CHECK_FALSE(first_match({"model.language_model.layers.0.mlp.up_proj"}, ig));
    CHECK_FALSE(first_match({"model.lm_head"}, ig));  // exact names are exact
    // `re:` is Python's re.match: anchored at the start only.
    CHECK(first_match({"model.layers.0.mlp.up_proj"}, {"re:model\\.layers\\.0\\."}));
    CHECK_FALSE(first_match({"model.layers.0.mlp.up_proj"}, {"re:layers\\.0"}));
}

TEST_CASE("QuantScheme: targets by class, name or regex; ignore wins; hostile patterns fail cleanly") {
    const std::string q = "model.language_model.layers.0.self_attn.q_proj";
    QuantScheme s{{"Linear"}, default_ignore()};
    std::string why;
    CHECK(s.quantizes({q}, "Linear", &why));
    CHECK_FALSE(s.quantizes({"lm_head"}, "Linear", &why));
    CHECK(why == "'lm_head' is in its ignore list");
    CHECK_FALSE(s.quantizes({"model.vision_tower.transformer.layers.0.attention.q_proj"}, "Linear", &why));
    CHECK_FALSE(s.quantizes({"model.language_model.embed_tokens"}, "Embedding", &why));
    CHECK(why == "no config group targets it");
    // Any of a module's names may match: the stored one (old layout) or the canonical one.
    CHECK_FALSE(s.quantizes({"language_model.lm_head", "lm_head"}, "Linear", &why));

    QuantScheme mlp{{"re:.*mlp\\.(gate|up)_proj$"}, {}};
    CHECK_FALSE(mlp.quantizes({q}, "Linear", &why));
    CHECK(mlp.quantizes({"model.layers.0.mlp.up_proj"}, "Linear", &why));
    CHECK_FALSE(mlp.quantizes({"model.layers.0.mlp.down_proj"}, "Linear", &why));

    CHECK_THROWS_AS(module_matches(q, "re:" + std::string(300, '(') + std::string(300, ')')), std::invalid_argument);
    CHECK_THROWS_AS(module_matches(q, "re:[a-"), std::invalid_argument);
    // Catastrophic backtracking ends at the match limit instead of stalling the load.
    CHECK_THROWS_AS(module_matches(std::string(64, 'a') + "!", "re:(a|aa|aaa)*(a|aa|aaa)*$"), std::invalid_argument);
}

TEST_CASE("tiny-kjv: byte-identical to compressed-tensors' output") { check_fixture("tiny-kjv"); }

TEST_CASE("tiny-a: byte-identical to compressed-tensors' output") { check_fixture("tiny-a"); }

TEST_CASE("sharded BF16 input") {
    TmpDir tmp;
    fs::path in = tmp.path / "in";
    fs::create_directories(in);
    for (const char* f : {"config.json", "tekken.json", "generation_config.json"})
        fs::copy_file(fs::path("tests/data/tiny-kjv/bf16") / f, in / f);
    auto src = SafeTensorSet::open("tests/data/tiny-kjv/bf16");
    std::vector<std::string> names = src->names();
    std::string index = R"({"metadata": {}, "weight_map": {)";
    for (size_t part = 0; part < 2; ++part) {
        std::string file = "model-0000" + std::to_string(part + 1) + "-of-00002.safetensors";
        SafetensorsWriter w;
        for (size_t i = part; i < names.size(); i += 2) {
            const TensorView& v = src->get(names[i]);
            w.declare(v.name, dtype_name(v.dtype), v.shape);
            index += (index.back() == '{' ? "\"" : ", \"") + v.name + "\": \"" + file + "\"";
        }
        w.open((in / file).string());
        for (size_t i = part; i < names.size(); i += 2) {
            const TensorView& v = src->get(names[i]);
            w.write(v.name, v.data, v.nbytes);
        }
        w.close();
    }
    std::ofstream(in / "model.safetensors.index.json") << index << "}}";
    quantize_checkpoint(in.string(), (tmp.path / "out").string(), {});
    CHECK(entries(tmp.path / "out") == entries("tests/data/tiny-kjv/nvfp4"));
    require_same_tensors(*SafeTensorSet::open((tmp.path / "out").string()),
                         *SafeTensorSet::open("tests/data/tiny-kjv/nvfp4"));
}

TEST_CASE("sharded output, extra ignores, check") {
    TmpDir tmp;
    QuantizeOptions opt;
    opt.threads = 3;
    opt.max_shard_bytes = 1000000;
    QuantizeSummary s = quantize_checkpoint("tests/data/tiny-kjv/bf16", (tmp.path / "sharded").string(), opt);
    CHECK(s.shards > 2);
    CHECK_FALSE(fs::exists(tmp.path / "sharded/model.safetensors"));
    CHECK(fs::exists(tmp.path / ("sharded/model-00001-of-0000" + std::to_string(s.shards) + ".safetensors")));
    auto got = SafeTensorSet::open((tmp.path / "sharded").string());
    CHECK(got->files().size() == s.shards);
    for (const auto& f : got->files()) CHECK((f->file_size() < 1100000 || f->tensors().size() == 1));
    require_same_tensors(*got, *SafeTensorSet::open("tests/data/tiny-kjv/nvfp4"));

    CheckReport rep = check_checkpoint("tests/data/tiny-kjv/bf16", (tmp.path / "sharded").string(), 2);
    CHECK(rep.linears.size() == 28);
    CHECK(rep.copied_same == 35);
    CHECK(rep.copied_differ.empty());
    CHECK(rep.missing.empty());
    for (const auto& l : rep.linears) {
        INFO(l.name);
        CHECK(l.rel_error > 0.01);
        CHECK(l.rel_error < 0.2);
    }

    QuantizeOptions more;
    more.ignore.push_back("re:.*layers\\.3\\.mlp\\..*");
    more.ignore.push_back("model.language_model.layers.0.self_attn.q_proj");
    quantize_checkpoint("tests/data/tiny-kjv/bf16", (tmp.path / "more").string(), more);
    auto m = SafeTensorSet::open((tmp.path / "more").string());
    auto bf16 = SafeTensorSet::open("tests/data/tiny-kjv/bf16");
    for (const char* n : {"model.language_model.layers.3.mlp.up_proj.weight",
                          "model.language_model.layers.0.self_attn.q_proj.weight"}) {
        INFO(n);
        REQUIRE(m->find(n));
        CHECK(std::memcmp(m->get(n).data, bf16->get(n).data, bf16->get(n).nbytes) == 0);
    }
    CHECK(m->find("model.language_model.layers.0.self_attn.k_proj.weight_packed"));
    CHECK(slurp(tmp.path / "more/config.json").find("model.language_model.layers.0.self_attn.q_proj") !=
          std::string::npos);
}

TEST_CASE("errors leave no output folder") {
    TmpDir tmp;
    fs::path out = tmp.path / "out";

    SUBCASE("input dimension not divisible by 16") {
        write_checkpoint(tmp.path / "odd", {{"model.layers.0.mlp.up_proj.weight", "BF16", {32, 40}},
                                            {"model.norm.weight", "BF16", {40}}});
        CHECK_THROWS_WITH_AS(quantize_checkpoint((tmp.path / "odd").string(), out.string(), {}),
                             doctest::Contains("not a multiple of the group size 16"), std::runtime_error);
    }
    SUBCASE("F32 checkpoint") {
        write_checkpoint(tmp.path / "f32", {{"model.layers.0.self_attn.q_proj.weight", "F32", {16, 32}}});
        CHECK_THROWS_WITH_AS(quantize_checkpoint((tmp.path / "f32").string(), out.string(), {}),
                             doctest::Contains("is F32; quantize reads BF16 checkpoints only"), std::runtime_error);
    }
    SUBCASE("already quantized") {
        CHECK_THROWS_WITH_AS(quantize_checkpoint("tests/data/tiny-a/nvfp4", out.string(), {}),
                             doctest::Contains("already has a quantization_config"), std::runtime_error);
    }
    SUBCASE("bad ignore regex") {
        QuantizeOptions opt;
        opt.ignore.push_back("re:(");
        CHECK_THROWS_WITH_AS(quantize_checkpoint("tests/data/tiny-a/bf16", out.string(), opt),
                             doctest::Contains("ignore pattern re:("), std::runtime_error);
    }
    SUBCASE("no linears") {
        write_checkpoint(tmp.path / "none", {{"model.norm.weight", "BF16", {32}}});
        CHECK_THROWS_WITH_AS(quantize_checkpoint((tmp.path / "none").string(), out.string(), {}),
                             doctest::Contains("no text-decoder Linear"), std::runtime_error);
    }
    SUBCASE("full disk (file size limit: writes fail with EFBIG)") {
        struct rlimit old;
        REQUIRE(getrlimit(RLIMIT_FSIZE, &old) == 0);
        struct rlimit lim = old;
        lim.rlim_cur = 1 << 20;
        auto old_handler = signal(SIGXFSZ, SIG_IGN);
        REQUIRE(setrlimit(RLIMIT_FSIZE, &lim) == 0);
        bool threw = false;
        try {
            quantize_checkpoint("tests/data/tiny-a/bf16", out.string(), {});
        } catch (const std::runtime_error& e) {
            threw = true;
            CHECK(std::string(e.what()).find("write failed") != std::string::npos);
        }
        setrlimit(RLIMIT_FSIZE, &old);
        signal(SIGXFSZ, old_handler);
        CHECK(threw);
    }
    CHECK(no_output(out));
}

TEST_CASE("existing output folder") {
    TmpDir tmp;
    fs::path out = tmp.path / "out";
    fs::create_directories(out);
    QuantizeOptions opt;
    quantize_checkpoint("tests/data/tiny-a/bf16", out.string(), opt);  // empty: fine
    CHECK(fs::exists(out / "model.safetensors"));

    std::ofstream(out / "keep.txt") << "x";
    CHECK_THROWS_WITH_AS(quantize_checkpoint("tests/data/tiny-a/bf16", out.string(), opt),
                         doctest::Contains("exists and is not empty"), std::runtime_error);
    CHECK(fs::exists(out / "keep.txt"));
    CHECK(entries(tmp.path) == std::vector<std::string>{"out"});

    CHECK_THROWS_WITH_AS(quantize_checkpoint("tests/data/tiny-a/bf16", "tests/data/tiny-a/bf16/", opt),
                         doctest::Contains("is the input folder"), std::runtime_error);

    opt.force = true;
    quantize_checkpoint("tests/data/tiny-a/bf16", out.string() + "/", opt);
    CHECK_FALSE(fs::exists(out / "keep.txt"));
    require_same_tensors(*SafeTensorSet::open(out.string()), *SafeTensorSet::open("tests/data/tiny-a/nvfp4"));
}

TEST_CASE("quantize binary: success, --check, one error line") {
    const char* bin = std::getenv("FP4_BIN");
    if (!bin || !fs::exists(fs::path(bin) / "quantize")) {
        MESSAGE("FP4_BIN/quantize not built; CLI test skipped");
        return;
    }
    TmpDir tmp;
    std::string exe = (fs::path(bin) / "quantize").string(), out = (tmp.path / "out").string();
    std::string err = (tmp.path / "err.txt").string(), res = (tmp.path / "out.txt").string();
    auto run = [&](const std::string& args) {
        int rc = std::system((exe + " " + args + " >" + res + " 2>" + err).c_str());
        return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
    };
    CHECK(run("tests/data/tiny-a/bf16 " + out + " -t 2") == 0);
    require_same_tensors(*SafeTensorSet::open(out), *SafeTensorSet::open("tests/data/tiny-a/nvfp4"));

    CHECK(run("--check tests/data/tiny-a/bf16 " + out) == 0);
    std::string report = slurp(res);
    CHECK(report.find("model.language_model.layers.0.mlp.down_proj ") != std::string::npos);
    CHECK(report.find("14 quantized linears") != std::string::npos);

    CHECK(run("tests/data/tiny-a/bf16 " + out) == 1);
    std::string e = slurp(err);
    CHECK(e.rfind("error: ", 0) == 0);
    CHECK(e.find("not empty") != std::string::npos);
    CHECK(std::count(e.begin(), e.end(), '\n') == 1);
}
