// test_loader.cpp — the model loader: the four fixture folders, NVFP4 binding and dequant, the older
// name layout, MistralForCausalLM, tied embeddings, synthetic weights of the same layout, text-only, shards,
// and one clear error for each kind of broken checkpoint (written at test time into a temp dir by the small
// safetensors writer below).
#include <doctest/doctest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "checkpoint.h"
#include "config.h"
#include "numeric.h"
#include "synthetic.h"

using namespace mistral;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

const char* kFixtures[] = {"tests/data/tiny-kjv/nvfp4", "tests/data/tiny-kjv/bf16", "tests/data/tiny-a/nvfp4",
                           "tests/data/tiny-a/bf16"};

struct Entry {
    std::string name, dtype;
    std::vector<int64_t> shape;
    std::vector<uint8_t> bytes;
};

struct Model {
    json config;
    std::vector<Entry> tensors;

    Entry& at(const std::string& name) {
        for (Entry& e : tensors)
            if (e.name == name) return e;
        throw std::runtime_error("test: no tensor " + name);
    }
    void erase(const std::string& name) {
        tensors.erase(std::remove_if(tensors.begin(), tensors.end(), [&](const Entry& e) { return e.name == name; }),
                      tensors.end());
    }
};

// A fresh directory under the system temp dir, removed with everything in it at scope exit.
struct TempDir {
    fs::path path;
    TempDir() {
        static int counter = 0;
        path = fs::temp_directory_path() / ("test_loader_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
        fs::remove_all(path);
        fs::create_directories(path);
    }
    ~TempDir() { fs::remove_all(path); }
    std::string str() const { return path.string(); }
};

void write_raw(const fs::path& p, const std::string& header, const std::vector<uint8_t>& data, bool len_prefix = true) {
    std::ofstream f(p, std::ios::binary);
    if (len_prefix) {
        uint64_t n = header.size();
        f.write(reinterpret_cast<const char*>(&n), 8);
    }
    f.write(header.data(), std::streamsize(header.size()));
    f.write(reinterpret_cast<const char*>(data.data()), std::streamsize(data.size()));
}

// Tensors laid out back to back in the given order.
void write_safetensors(const fs::path& p, const std::vector<Entry>& es) {
    json h = json::object();
    h["__metadata__"] = {{"format", "pt"}};
    std::vector<uint8_t> data;
    for (const Entry& e : es) {
        h[e.name] = {{"dtype", e.dtype}, {"shape", e.shape}, {"data_offsets", {data.size(), data.size() + e.bytes.size()}}};
        data.insert(data.end(), e.bytes.begin(), e.bytes.end());
    }
    std::string s = h.dump();
    while (s.size() % 8) s += ' ';
    write_raw(p, s, data);
}

Model read_model(const std::string& dir) {
    Model m;
    std::ifstream in(dir + "/config.json");
    m.config = json::parse(in);
    SafeTensorFile f(dir + "/model.safetensors");
    for (const TensorView& t : f.tensors())
        m.tensors.push_back({t.name, dtype_name(t.dtype), t.shape, std::vector<uint8_t>(t.data, t.data + t.nbytes)});
    return m;
}

void write_model(const TempDir& d, const Model& m) {
    std::ofstream(d.path / "config.json") << m.config.dump(2);
    write_safetensors(d.path / "model.safetensors", m.tensors);
}

// The message of the runtime_error `f` throws ("" when it does not throw).
template <class F>
std::string error_of(F f) {
    try {
        f();
    } catch (const std::runtime_error& e) {
        return e.what();
    }
    return "";
}

std::string load_error(const TempDir& d) {
    return error_of([&] { Checkpoint::open(d.str()); });
}

// One line that contains every one of `parts`.
void check_message(const std::string& msg, std::initializer_list<const char*> parts) {
    INFO("message: " << msg);
    CHECK(!msg.empty());
    CHECK(msg.find('\n') == std::string::npos);
    for (const char* p : parts) CHECK(msg.find(p) != std::string::npos);
}

const std::string kQ0 = "model.language_model.layers.0.self_attn.q_proj";

}  // namespace

TEST_CASE("the four fixture folders load with the shapes and types the config implies") {
    for (const char* dir : kFixtures) {
        CAPTURE(dir);
        size_t calls = 0, last_done = 0, last_total = 0;
        LoadOptions opt;
        opt.progress = [&](size_t done, size_t total) { ++calls, last_done = done, last_total = total; };
        auto ck = Checkpoint::open(dir, opt);
        const Config& c = ck->config();
        const Weights& w = ck->weights();
        const bool nvfp4 = std::string(dir).find("nvfp4") != std::string::npos;

        CHECK(c.architecture == "Mistral3ForConditionalGeneration");
        CHECK(c.quant_format == (nvfp4 ? "nvfp4-pack-quantized" : ""));
        CHECK(c.text.head_dim == 128);
        CHECK(c.text.n_head == 8);
        CHECK(c.text.n_kv_head == 2);
        CHECK(c.text.vocab == 5120);
        CHECK(c.text.rope_theta == 1e9f);
        CHECK(c.text.norm_eps == 1e-5f);
        CHECK(c.has_vision);
        CHECK(c.vision.patch == 14);
        CHECK(c.vision.head_dim == 64);
        CHECK(c.vision.rope_theta == 10000.0f);
        CHECK(c.vision.norm_eps == 1e-5f);
        CHECK(c.spatial_merge == 2);
        CHECK_FALSE(c.tie_embeddings);

        const int64_t D = c.text.hidden, d = c.vision.hidden;
        REQUIRE(w.layers.size() == size_t(c.text.n_layer));
        REQUIRE(w.vision_layers.size() == size_t(c.vision.n_layer));
        const fp4::Tensor* wq = w.layers[0].wq;
        CHECK(wq->ne[0] == D);
        CHECK(wq->ne[1] == 8 * 128);
        CHECK(w.layers[0].w_down->ne[0] == c.text.intermediate);
        CHECK(w.layers[0].w_down->ne[1] == D);
        CHECK(wq->type == (nvfp4 ? fp4::Type::NVFP4 : fp4::Type::BF16));
        if (nvfp4) {
            CHECK(wq->scale != nullptr);
            CHECK(std::isfinite(wq->gscale));
            CHECK(wq->gscale > 0);
        }
        CHECK(w.tok_embd->type == fp4::Type::BF16);
        CHECK(w.tok_embd->ne[0] == D);
        CHECK(w.tok_embd->ne[1] == 5120);
        CHECK(w.lm_head != w.tok_embd);
        CHECK(w.out_norm->ne[0] == D);
        CHECK(w.patch_conv->ne[0] == 3 * 14 * 14);
        CHECK(w.patch_conv->ne[1] == d);
        CHECK(w.vision_layers[1].wq->type == fp4::Type::BF16);
        CHECK(w.mm_merge->ne[0] == 4 * d);
        CHECK(w.mm_merge->ne[1] == d);
        CHECK(w.mm_linear1->ne[0] == d);
        CHECK(w.mm_linear1->ne[1] == D);
        CHECK(w.mm_linear2->ne[0] == D);

        const size_t n_weights = 3 + 9 * w.layers.size() + 2 + 9 * w.vision_layers.size() + 4;
        CHECK(w.all().size() == n_weights);
        CHECK(w.owned.size() == n_weights);
        const size_t n_nvfp4 = nvfp4 ? 7 * w.layers.size() : 0;  // global scales are not weight bytes
        CHECK(w.bytes() == ck->tensors().total_bytes() - 4 * n_nvfp4);
        CHECK(ck->unused().empty());
        CHECK(ck->describe().size() == ck->tensors().count());
        CHECK(calls >= 2);
        CHECK(last_done == last_total);
        CHECK(last_total == w.bytes());
    }
}

TEST_CASE("NVFP4 dequant of a row matches the BF16 weights it was quantized from") {
    auto q = Checkpoint::open("tests/data/tiny-kjv/nvfp4");
    auto b = Checkpoint::open("tests/data/tiny-kjv/bf16");
    const fp4::Tensor* wq = q->weights().layers[0].wq;
    const fp4::Tensor* ref = b->weights().layers[0].wq;
    const int64_t K = wq->ne[0];
    for (int64_t row : {int64_t(0), wq->ne[1] - 1}) {
        std::vector<float> out(static_cast<size_t>(K));
        fp4::dequant_nvfp4_row(static_cast<const uint8_t*>(wq->data) + row * K / 2,
                               static_cast<const uint8_t*>(wq->scale) + row * K / 16, wq->gscale, K, out.data());
        const uint16_t* r = static_cast<const uint16_t*>(ref->data) + row * K;
        double err = 0, norm = 0, amax = 0;
        for (int64_t k = 0; k < K; ++k) {
            REQUIRE(std::isfinite(out[size_t(k)]));
            const double x = fp4::bf16_to_f32(r[k]);
            err += (out[size_t(k)] - x) * (out[size_t(k)] - x);
            norm += x * x;
            amax = std::max(amax, std::fabs(double(out[size_t(k)])));
        }
        CHECK(norm > 0);
        CHECK(std::sqrt(err / norm) < 0.2);  // FP4 with per-16 scales: ~10% rms error
        CHECK(amax <= 6.0 * 448.0 / wq->gscale * 1.0001);
    }
}

TEST_CASE("the older transformers layout loads under normalised names") {
    Model m = read_model("tests/data/tiny-a/nvfp4");
    const std::pair<std::string, std::string> renames[] = {{"model.language_model.", "language_model.model."},
                                                           {"lm_head.", "language_model.lm_head."},
                                                           {"model.vision_tower.", "vision_tower."},
                                                           {"model.multi_modal_projector.", "multi_modal_projector."}};
    for (Entry& e : m.tensors)
        for (const auto& [from, to] : renames)
            if (e.name.rfind(from, 0) == 0) {
                e.name = to + e.name.substr(from.size());
                break;
            }
    CHECK(canonical_name("language_model.model.norm.weight") == "model.language_model.norm.weight");
    CHECK(canonical_name("language_model.lm_head.weight") == "lm_head.weight");
    TempDir d;
    write_model(d, m);

    auto orig = Checkpoint::open("tests/data/tiny-a/nvfp4");
    auto ck = Checkpoint::open(d.str());
    CHECK(ck->unused().empty());
    const Weights &a = orig->weights(), &b = ck->weights();
    REQUIRE(a.all().size() == b.all().size());
    for (size_t i = 0; i < a.all().size(); ++i) {
        const fp4::Tensor *x = a.all()[i], *y = b.all()[i];
        CAPTURE(x->name);
        CHECK(x->name == y->name);
        CHECK(x->type == y->type);
        CHECK(x->gscale == y->gscale);
        REQUIRE(x->nbytes() == y->nbytes());
        CHECK(std::memcmp(x->data, y->data, x->nbytes()) == 0);
        if (x->scale) CHECK(std::memcmp(x->scale, y->scale, x->scale_bytes()) == 0);
    }
}

TEST_CASE("a text-only MistralForCausalLM folder loads") {
    Model m = read_model("tests/data/tiny-a/bf16");
    json flat = m.config["text_config"];
    flat["architectures"] = {"MistralForCausalLM"};
    flat.erase("rope_theta");  // only rope_parameters.rope_theta left
    m.config = flat;
    std::vector<Entry> kept;
    for (Entry& e : m.tensors) {
        if (e.name.rfind("model.language_model.", 0) == 0) e.name = "model." + e.name.substr(21);
        if (e.name.find("vision_tower") == std::string::npos && e.name.find("multi_modal") == std::string::npos)
            kept.push_back(e);
    }
    m.tensors = kept;
    TempDir d;
    write_model(d, m);
    auto ck = Checkpoint::open(d.str());
    CHECK(ck->config().architecture == "MistralForCausalLM");
    CHECK_FALSE(ck->config().has_vision);
    CHECK(ck->config().text.rope_theta == 1e9f);
    CHECK(ck->weights().patch_conv == nullptr);
    CHECK(ck->weights().layers.size() == 2);
    CHECK(ck->unused().empty());
}

TEST_CASE("lm_head is tied to the embeddings only when no lm_head tensor exists") {
    Model m = read_model("tests/data/tiny-a/nvfp4");
    m.erase("lm_head.weight");
    TempDir d;
    write_model(d, m);
    auto ck = Checkpoint::open(d.str());
    CHECK(ck->config().tie_embeddings);
    CHECK(ck->weights().lm_head == ck->weights().tok_embd);
    CHECK(ck->weights().all().size() == ck->weights().owned.size());
}

// bench --synthetic measures the model it stands in for only if its weights have the checkpoint's names,
// types and shapes, vision tower included.
TEST_CASE("synthetic weights have the fixtures' names, types and shapes") {
    for (const char* dir : kFixtures) {
        CAPTURE(dir);
        auto ck = Checkpoint::open(dir);
        const SyntheticWeights sw = make_synthetic_weights(ck->config(), 7, 2);
        const std::vector<fp4::Tensor*> real = ck->weights().all(), made = sw.weights.all();
        REQUIRE(made.size() == real.size());
        REQUIRE(sw.weights.vision_layers.size() == ck->weights().vision_layers.size());
        for (size_t i = 0; i < real.size(); ++i) {
            CAPTURE(real[i]->name);
            CHECK(made[i]->name == real[i]->name);
            CHECK(made[i]->type == real[i]->type);
            CHECK(std::equal(made[i]->ne, made[i]->ne + fp4::kMaxDims, real[i]->ne));
            CHECK(made[i]->data != nullptr);
            if (made[i]->type == fp4::Type::NVFP4) CHECK(made[i]->gscale > 0);
        }
    }
    Config text_only = Checkpoint::open(kFixtures[0])->config();
    text_only.has_vision = false;
    const SyntheticWeights sw = make_synthetic_weights(text_only, 7, 1);
    CHECK(sw.weights.patch_conv == nullptr);
    CHECK(sw.weights.vision_layers.empty());
}

TEST_CASE("text_only skips the vision weights and extra tensors are listed as unused") {
    Model m = read_model("tests/data/tiny-a/nvfp4");
    m.tensors.push_back({"model.language_model.layers.0.self_attn.q_proj.bias", "BF16", {1024}, std::vector<uint8_t>(2048)});
    TempDir d;
    write_model(d, m);
    LoadOptions opt;
    opt.text_only = true;
    auto ck = Checkpoint::open(d.str(), opt);
    CHECK_FALSE(ck->config().has_vision);
    CHECK(ck->weights().patch_conv == nullptr);
    CHECK(ck->weights().vision_layers.empty());
    CHECK(ck->weights().mm_linear2 == nullptr);
    const auto unused = ck->unused();
    CHECK(std::find(unused.begin(), unused.end(), kQ0 + ".bias") != unused.end());
    CHECK(std::find(unused.begin(), unused.end(), "model.vision_tower.ln_pre.weight") != unused.end());
    bool described = false;
    for (const std::string& line : ck->describe())
        described |= line.rfind(kQ0 + ".bias", 0) == 0 && line.find("unused") != std::string::npos;
    CHECK(described);
}

TEST_CASE("a sharded checkpoint loads through its index") {
    Model m = read_model("tests/data/tiny-a/nvfp4");
    TempDir d;
    std::ofstream(d.path / "config.json") << m.config.dump();
    const size_t half = m.tensors.size() / 2;
    std::vector<Entry> a(m.tensors.begin(), m.tensors.begin() + long(half)), b(m.tensors.begin() + long(half), m.tensors.end());
    write_safetensors(d.path / "model-00001-of-00002.safetensors", a);
    write_safetensors(d.path / "model-00002-of-00002.safetensors", b);
    json index = {{"metadata", {{"total_size", 0}}}, {"weight_map", json::object()}};
    for (const Entry& e : a) index["weight_map"][e.name] = "model-00001-of-00002.safetensors";
    for (const Entry& e : b) index["weight_map"][e.name] = "model-00002-of-00002.safetensors";
    std::ofstream(d.path / "model.safetensors.index.json") << index.dump();

    auto ck = Checkpoint::open(d.str());
    CHECK(ck->tensors().files().size() == 2);
    CHECK(ck->tensors().count() == m.tensors.size());
    CHECK(ck->unused().empty());
    CHECK(ck->weights().layers[1].w_down->type == fp4::Type::NVFP4);

    SUBCASE("an index entry naming a missing shard is an error naming it") {
        index["weight_map"][kQ0 + ".weight_packed"] = "model-00003-of-00003.safetensors";
        std::ofstream(d.path / "model.safetensors.index.json") << index.dump();
        check_message(load_error(d), {"model-00003-of-00003.safetensors", "missing", "model.safetensors.index.json"});
    }
    SUBCASE("an index entry pointing at the wrong shard") {
        index["weight_map"][a.front().name] = "model-00002-of-00002.safetensors";
        std::ofstream(d.path / "model.safetensors.index.json") << index.dump();
        check_message(load_error(d), {a.front().name.c_str()});
    }
}

TEST_CASE("corrupt safetensors files give one clear error") {
    TempDir d;
    const fs::path p = d.path / "model.safetensors";
    const std::string ps = p.string();
    auto err = [&] { return error_of([&] { SafeTensorFile f(ps); }); };
    auto header = [](const std::string& dtype, const std::string& shape, size_t b, size_t e) {
        return "{\"t\":{\"dtype\":\"" + dtype + "\",\"shape\":" + shape + ",\"data_offsets\":[" + std::to_string(b) + "," +
               std::to_string(e) + "]}}";
    };

    SUBCASE("shorter than the length field") {
        write_raw(p, "abc", {}, false);
        check_message(err(), {ps.c_str(), "too short"});
    }
    SUBCASE("truncated: a tensor runs past the end") {
        Model m = read_model("tests/data/tiny-a/bf16");
        write_safetensors(p, m.tensors);
        fs::resize_file(p, fs::file_size(p) - 1000);
        check_message(err(), {ps.c_str(), "outside"});
    }
    SUBCASE("header length beyond the file") {
        std::string h = header("F32", "[2]", 0, 8);
        std::ofstream f(p, std::ios::binary);
        uint64_t n = h.size() + 100;
        f.write(reinterpret_cast<const char*>(&n), 8);
        f << h;
        f.close();
        check_message(err(), {ps.c_str(), "header length", "past the end"});
    }
    SUBCASE("absurd header length") {
        std::ofstream f(p, std::ios::binary);
        uint64_t n = ~uint64_t(0);
        f.write(reinterpret_cast<const char*>(&n), 8);
        f.close();
        check_message(err(), {ps.c_str(), "header length"});
    }
    SUBCASE("bad JSON") {
        write_raw(p, "{\"t\": {\"dtype\": \"F32\", ", {});
        check_message(err(), {ps.c_str(), "not valid JSON"});
    }
    SUBCASE("header not an object") {
        write_raw(p, "[1, 2]", {});
        check_message(err(), {ps.c_str(), "not a JSON object"});
    }
    SUBCASE("unknown dtype") {
        write_raw(p, header("F4", "[2]", 0, 1), std::vector<uint8_t>(1));
        check_message(err(), {ps.c_str(), "'t'", "unknown dtype 'F4'"});
    }
    SUBCASE("shape x dtype size differs from the span") {
        write_raw(p, header("F32", "[3]", 0, 8), std::vector<uint8_t>(8));
        check_message(err(), {ps.c_str(), "'t'", "[3]", "8-byte"});
    }
    SUBCASE("overlapping spans") {
        write_raw(p,
                  "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                  "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
                  std::vector<uint8_t>(12));
        check_message(err(), {ps.c_str(), "'b'", "overlaps", "'a'"});
    }
    SUBCASE("span outside the file") {
        write_raw(p, header("F32", "[4]", 0, 16), std::vector<uint8_t>(8));
        check_message(err(), {ps.c_str(), "'t'", "outside"});
    }
    SUBCASE("rank above 8") {
        write_raw(p, header("U8", "[1,1,1,1,1,1,1,1,1]", 0, 1), std::vector<uint8_t>(1));
        check_message(err(), {ps.c_str(), "'t'", "rank 9"});
    }
    SUBCASE("negative dimension") {
        write_raw(p, header("U8", "[-1]", 0, 1), std::vector<uint8_t>(1));
        check_message(err(), {ps.c_str(), "'t'", "negative"});
    }
    SUBCASE("huge shape overflows") {
        write_raw(p, header("F32", "[4294967296,4294967296]", 0, 8), std::vector<uint8_t>(8));
        check_message(err(), {ps.c_str(), "'t'", "does not match"});
    }
    SUBCASE("__metadata__ is allowed, empty and zero-size tensors are fine") {
        write_raw(p, "{\"__metadata__\":{\"format\":\"pt\"},\"z\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]}}", {});
        SafeTensorFile f(ps);
        CHECK(f.metadata().at("format") == "pt");
        CHECK(f.tensors().size() == 1);
    }
}

TEST_CASE("broken model folders give one clear error naming the file and tensor") {
    TempDir d;
    Model q = read_model("tests/data/tiny-a/nvfp4");
    Model b = read_model("tests/data/tiny-a/bf16");

    SUBCASE("no config.json") {
        write_safetensors(d.path / "model.safetensors", q.tensors);
        check_message(load_error(d), {"config.json", "cannot open"});
    }
    SUBCASE("no safetensors") {
        std::ofstream(d.path / "config.json") << q.config.dump();
        check_message(load_error(d), {d.str().c_str(), "model.safetensors"});
    }
    SUBCASE("corrupt file inside a folder names the file") {
        std::ofstream(d.path / "config.json") << q.config.dump();
        write_raw(d.path / "model.safetensors", "{oops", {});
        check_message(load_error(d), {"model.safetensors", "not valid JSON"});
    }
    SUBCASE("missing NVFP4 linear") {
        for (const char* s : {".weight_packed", ".weight_scale", ".weight_global_scale"})
            q.erase("model.language_model.layers.1.mlp.up_proj" + std::string(s));
        write_model(d, q);
        check_message(load_error(d), {"model.language_model.layers.1.mlp.up_proj.weight", "missing", "[256, 128]"});
    }
    SUBCASE("missing NVFP4 scale") {
        q.erase(kQ0 + ".weight_scale");
        write_model(d, q);
        check_message(load_error(d), {(kQ0 + ".weight_scale").c_str(), "missing", "F8_E4M3 [1024, 8]"});
    }
    SUBCASE("missing norm") {
        b.erase("model.vision_tower.ln_pre.weight");
        write_model(d, b);
        check_message(load_error(d), {"model.vision_tower.ln_pre.weight", "missing"});
    }
    SUBCASE("mis-shaped dense tensor") {
        b.at(kQ0 + ".weight").shape = {128, 1024};
        write_model(d, b);
        check_message(load_error(d), {"model.safetensors", (kQ0 + ".weight").c_str(), "[128, 1024]", "expected [1024, 128]"});
    }
    SUBCASE("mis-shaped NVFP4 codes") {
        q.at(kQ0 + ".weight_packed").shape = {512, 128};
        write_model(d, q);
        check_message(load_error(d), {(kQ0 + ".weight_packed").c_str(), "[512, 128]", "expected [1024, 64]"});
    }
    SUBCASE("wrong dtype") {
        q.at(kQ0 + ".weight_scale").dtype = "U8";
        write_model(d, q);
        check_message(load_error(d), {(kQ0 + ".weight_scale").c_str(), "dtype U8", "expected F8_E4M3"});
    }
    SUBCASE("integer dense weight") {
        Entry& e = b.at("model.language_model.norm.weight");
        e.dtype = "I16";
        write_model(d, b);
        check_message(load_error(d), {"model.language_model.norm.weight", "dtype I16"});
    }
    SUBCASE("NaN E4M3 scale") {
        q.at(kQ0 + ".weight_scale").bytes[37] = 0x7f;
        write_model(d, q);
        check_message(load_error(d), {"model.safetensors", (kQ0 + ".weight_scale").c_str(), "NaN", "row 4"});
    }
    SUBCASE("non-finite or non-positive global scale") {
        for (float g : {NAN, INFINITY, 0.0f, -1.0f}) {
            std::memcpy(q.at(kQ0 + ".weight_global_scale").bytes.data(), &g, 4);
            write_model(d, q);
            check_message(load_error(d), {(kQ0 + ".weight_global_scale").c_str(), "global scale"});
        }
    }
    SUBCASE("two names for one tensor") {
        Entry dup = b.at("lm_head.weight");
        dup.name = "language_model.lm_head.weight";
        b.tensors.push_back(dup);
        write_model(d, b);
        check_message(load_error(d), {"language_model.lm_head.weight", "lm_head.weight", "both map"});
    }
}

TEST_CASE("config.json: accepted spellings") {
    json base;
    std::ifstream("tests/data/tiny-a/nvfp4/config.json") >> base;
    auto parse = [](const json& j) { return parse_config(j.dump(), "cfg.json"); };

    json j = base;
    j["text_config"].erase("rope_theta");
    j["text_config"].erase("rope_parameters");
    j["text_config"]["rope_scaling"] = {{"rope_type", "default"}, {"rope_theta", 5e8}};
    CHECK(parse(j).text.rope_theta == 5e8f);

    j = base;
    j["text_config"].erase("head_dim");
    CHECK(parse(j).text.head_dim == 128 / 8);

    j = base;
    j["text_config"]["head_dim"] = nullptr;
    j["text_config"]["sliding_window"] = 131072;
    CHECK(parse(j).text.head_dim == 16);

    j = base;
    j.erase("architectures");
    CHECK(parse(j).architecture == "Mistral3ForConditionalGeneration");
    CHECK(parse(j).projector_eps == 1e-5f);

    j = base;
    j["quantization_config"]["format"] = "mixed-precision";  // per-group format decides
    CHECK(parse(j).quant_format == "nvfp4-pack-quantized");
    CHECK(parse(j).quant.ignore.size() == 3);

    // What compressed-tensors itself writes around the groups when it applied no transform or sparsity.
    for (const json& none : {json::object(), json{{"config_groups", json::object()}}, json(nullptr)}) {
        j = base;
        j["quantization_config"]["version"] = "0.13.0";
        j["quantization_config"]["sparsity_config"] = json::object();
        j["quantization_config"]["transform_config"] = none;
        CAPTURE(none.dump());
        CHECK(parse(j).quant_format == "nvfp4-pack-quantized");
    }

    // NVFP4 W4A4 (activations quantized too): its weights load, the activations stay unquantized (A16), and
    // the config's summary says so.
    j = base;
    CHECK(!parse(j).activations_quantized);
    j["quantization_config"]["config_groups"]["group_0"]["input_activations"] = {
        {"num_bits", 4}, {"type", "float"}, {"strategy", "tensor_group"}, {"group_size", 16}, {"dynamic", "local"}};
    CHECK(parse(j).activations_quantized);
    CHECK(config_summary(parse(j)).find("activation quantization, not applied") != std::string::npos);

    j = base;
    j["quantization_config"]["config_groups"]["group_0"].erase("format");  // top-level format decides
    CHECK(parse(j).quant_format == "nvfp4-pack-quantized");
}

TEST_CASE("config.json: what the engine cannot run is refused by name") {
    json base;
    std::ifstream("tests/data/tiny-a/nvfp4/config.json") >> base;
    auto err = [](const json& j) { return error_of([&] { parse_config(j.dump(), "cfg.json"); }); };
    json j;

    for (const char* fmt : {"pack-quantized", "float-quantized", "mxfp4-pack-quantized", "int-quantized"}) {
        CAPTURE(fmt);
        j = base;
        j["quantization_config"]["format"] = fmt;
        j["quantization_config"]["config_groups"]["group_0"]["format"] = fmt;
        check_message(err(j), {"cfg.json", "quantization_config", fmt, "not supported"});
        j["quantization_config"]["format"] = "mixed-precision";
        check_message(err(j), {"cfg.json", "group_0", fmt});
    }
    j = base;
    j["quantization_config"]["quant_method"] = "fp8";
    check_message(err(j), {"cfg.json", "quant_method", "'fp8'"});
    j = base;
    j["quantization_config"]["config_groups"]["group_0"]["weights"]["group_size"] = 32;
    check_message(err(j), {"cfg.json", "group_size"});
    j = base;
    j["quantization_config"]["transform_config"] = {{"config_groups", {{"u", {{"type", "hadamard"}}}}}};
    check_message(err(j), {"cfg.json", "transform_config"});
    j["quantization_config"]["transform_config"] = "hadamard";
    check_message(err(j), {"cfg.json", "transform_config"});

    j = base;
    j["text_config"]["model_type"] = "ministral3";
    check_message(err(j), {"cfg.json", "text_config.model_type", "ministral3"});
    j = base;
    j["text_config"]["rope_parameters"] = {{"rope_type", "yarn"}, {"rope_theta", 1e6}, {"factor", 16}};
    check_message(err(j), {"cfg.json", "rope_type", "yarn"});
    j = base;
    j["text_config"]["sliding_window"] = 4096;
    check_message(err(j), {"cfg.json", "sliding_window"});
    j = base;
    j["architectures"] = {"LlamaForCausalLM"};
    check_message(err(j), {"cfg.json", "LlamaForCausalLM"});
    j = base;
    j["vision_config"].erase("patch_size");
    check_message(err(j), {"cfg.json", "vision_config.patch_size", "missing"});
    j = base;
    j["vision_config"].erase("hidden_act");
    check_message(err(j), {"cfg.json", "vision_config.hidden_act"});
    j = base;
    j["vision_config"].erase("rope_theta");
    j["vision_config"].erase("rope_parameters");
    check_message(err(j), {"cfg.json", "vision_config.rope_theta"});
    j = base;
    j["text_config"]["hidden_size"] = -5;
    check_message(err(j), {"cfg.json", "text_config.hidden_size"});
    check_message(error_of([] { parse_config("{nope", "cfg.json"); }), {"cfg.json", "not valid JSON"});
}

TEST_CASE("quantization refusal reaches the user through Checkpoint::open") {
    TempDir d;
    Model q = read_model("tests/data/tiny-a/nvfp4");
    q.config["quantization_config"]["format"] = "pack-quantized";
    q.config["quantization_config"]["config_groups"]["group_0"]["format"] = "pack-quantized";
    write_model(d, q);
    check_message(load_error(d), {"config.json", "pack-quantized", "not supported"});
}
