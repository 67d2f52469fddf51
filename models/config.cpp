// config.cpp — parsing and validation of config.json (text, vision, projector, quantization_config).
#include "config.h"

#include <cmath>
#include <cstdint>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>

namespace mistral {

using json = nlohmann::json;

namespace {

// Typed reads from one JSON object; errors name the file and the dotted key.
struct Reader {
    const json& j;
    std::string file, prefix;  // prefix: "" or "text_config." etc.

    [[noreturn]] void fail(const std::string& key, const std::string& what) const {
        throw std::runtime_error(file + ": " + prefix + key + " " + what);
    }
    bool has(const std::string& key) const { return j.contains(key) && !j[key].is_null(); }

    int64_t integer(const std::string& key) const {
        if (!has(key)) fail(key, "is missing");
        const json& v = j[key];
        if (v.is_number_integer()) return v.get<int64_t>();
        if (v.is_number_float() && std::floor(v.get<double>()) == v.get<double>() && std::fabs(v.get<double>()) < 9e15)
            return int64_t(v.get<double>());
        fail(key, "must be an integer");
    }
    int64_t positive(const std::string& key) const {
        int64_t v = integer(key);
        if (v <= 0 || v > INT32_MAX) fail(key, "= " + std::to_string(v) + " is not a sane positive size");
        return v;
    }
    int64_t positive_or(const std::string& key, int64_t def) const { return has(key) ? positive(key) : def; }
    // A count stored as int (layers, heads, patch size, ...): positive and at most 65536, so that it neither
    // wraps when narrowed nor sizes a huge allocation before the tensors are checked.
    int count(const std::string& key) const {
        int64_t v = integer(key);
        if (v <= 0 || v > 65536) fail(key, "= " + std::to_string(v) + " is not a sane positive size");
        return int(v);
    }
    int count_or(const std::string& key, int def) const { return has(key) ? count(key) : def; }
    double number(const std::string& key) const {
        if (!has(key) || !j[key].is_number()) fail(key, "must be a number");
        double v = j[key].get<double>();
        if (!std::isfinite(v)) fail(key, "is not finite");
        return v;
    }
    std::string str(const std::string& key, const std::string& def = "") const {
        if (!has(key)) return def;
        if (!j[key].is_string()) fail(key, "must be a string");
        return j[key].get<std::string>();
    }
    Reader child(const std::string& key) const {
        if (!has(key) || !j[key].is_object()) fail(key, "is missing or not an object");
        return Reader{j[key], file, prefix + key + "."};
    }
};

// rope_theta from any of the spellings transformers has used; refuses non-default rope types (YaRN, ...).
float rope_theta(const Reader& r, float fallback, bool required) {
    for (const char* key : {"rope_parameters", "rope_scaling"}) {
        if (!r.has(key)) continue;
        if (!r.j[key].is_object()) r.fail(key, "must be an object or null");
        Reader p = r.child(key);
        std::string type = p.str("rope_type", p.str("type", "default"));
        if (type != "default")
            p.fail("rope_type", "= '" + type + "': only the default rope is supported (YaRN/scaled rope is not)");
    }
    if (r.has("rope_theta")) return float(r.number("rope_theta"));
    for (const char* key : {"rope_parameters", "rope_scaling"})
        if (r.has(key) && r.child(key).has("rope_theta")) return float(r.child(key).number("rope_theta"));
    if (required) r.fail("rope_theta", "is missing (also looked in rope_parameters and rope_scaling)");
    return fallback;
}

TextConfig parse_text(const Reader& r) {
    const std::string mt = r.str("model_type", "mistral");
    if (mt == "ministral3")
        r.fail("model_type", "= 'ministral3' (Ministral-3 family: YaRN rope and llama-4 query scaling) is not supported");
    if (mt != "mistral") r.fail("model_type", "= '" + mt + "' is not supported (expected 'mistral')");
    const std::string act = r.str("hidden_act", "silu");
    if (act != "silu") r.fail("hidden_act", "= '" + act + "' is not supported (expected 'silu')");

    TextConfig t;
    t.hidden = r.positive("hidden_size");
    t.intermediate = r.positive("intermediate_size");
    t.vocab = r.positive("vocab_size");
    t.n_layer = r.count("num_hidden_layers");
    t.n_head = r.count("num_attention_heads");
    t.n_kv_head = r.count_or("num_key_value_heads", t.n_head);
    if (r.has("head_dim")) t.head_dim = r.count("head_dim");
    else if (t.hidden % t.n_head == 0) t.head_dim = int(t.hidden / t.n_head);
    else r.fail("head_dim", "is missing and hidden_size is not a multiple of num_attention_heads");
    if (t.head_dim % 2) r.fail("head_dim", "= " + std::to_string(t.head_dim) + " must be even for rope");
    if (t.n_head % t.n_kv_head)
        r.fail("num_key_value_heads", "= " + std::to_string(t.n_kv_head) + " does not divide num_attention_heads");
    t.max_pos = r.positive_or("max_position_embeddings", 32768);  // MistralConfig's default
    t.norm_eps = r.has("rms_norm_eps") ? float(r.number("rms_norm_eps")) : 1e-6f;  // MistralConfig's default
    t.rope_theta = rope_theta(r, 10000.0f, false);                                  // MistralConfig's default
    if (r.has("sliding_window")) {
        int64_t w = r.integer("sliding_window");
        if (w < t.max_pos)
            r.fail("sliding_window", "= " + std::to_string(w) + " (sliding-window attention) is not supported");
    }
    return t;
}

// Pixtral defaults differ from Mistral-Small's values, so every size is read from the file.
VisionConfig parse_vision(const Reader& r) {
    const std::string mt = r.str("model_type", "pixtral");
    if (mt != "pixtral") r.fail("model_type", "= '" + mt + "' is not supported (expected 'pixtral')");
    if (!r.has("hidden_act")) r.fail("hidden_act", "is missing (the Pixtral default 'gelu' is not what Mistral uses)");
    const std::string act = r.str("hidden_act");
    if (act != "silu") r.fail("hidden_act", "= '" + act + "' is not supported (expected 'silu')");

    VisionConfig v;
    v.hidden = r.positive("hidden_size");
    v.intermediate = r.positive("intermediate_size");
    v.n_layer = r.count("num_hidden_layers");
    v.n_head = r.count("num_attention_heads");
    v.patch = r.count("patch_size");
    v.image_size = r.count("image_size");
    v.channels = r.count_or("num_channels", 3);
    if (v.hidden % v.n_head) r.fail("num_attention_heads", "does not divide hidden_size");
    v.head_dim = int(v.hidden / v.n_head);  // what the reference code uses, whatever head_dim says
    if (r.has("head_dim") && r.count("head_dim") != v.head_dim)
        r.fail("head_dim", "= " + std::to_string(r.integer("head_dim")) + " differs from hidden_size/num_attention_heads = " +
                               std::to_string(v.head_dim));
    if (v.head_dim % 4) r.fail("head_dim", "must be a multiple of 4 for the 2-D rope");
    v.rope_theta = rope_theta(r, 0, true);
    v.norm_eps = 1e-5f;  // hard-coded in the reference implementations
    return v;
}

// A list of module patterns (names, class names or `re:REGEX`), each regex compiled once to prove it valid.
void read_patterns(const Reader& r, const std::string& key, std::vector<std::string>& out) {
    if (!r.has(key) || !r.j[key].is_array()) r.fail(key, "must be a list");
    for (const json& s : r.j[key]) {
        if (!s.is_string()) r.fail(key, "must hold strings");
        const std::string p = s.get<std::string>();
        try {
            check_pattern(p);
        } catch (const std::invalid_argument& e) {
            r.fail(key, "holds '" + p + "', not a valid regular expression (" + e.what() + ")");
        }
        out.push_back(p);
    }
}

void parse_quantization(const Reader& top, Config& c) {
    if (!top.has("quantization_config")) return;
    Reader q = top.child("quantization_config");
    const std::string method = q.str("quant_method", "");
    if (method != "compressed-tensors")
        q.fail("quant_method", "= '" + method + "' is not supported (only compressed-tensors nvfp4-pack-quantized)");
    const std::string kNvfp4 = "nvfp4-pack-quantized";
    const std::string fmt = q.str("format", "");
    if (!fmt.empty() && fmt != kNvfp4 && fmt != "mixed-precision")
        q.fail("format", "= '" + fmt + "' is not supported (only " + kNvfp4 + ")");
    // compressed-tensors writes "transform_config": {} and "sparsity_config": {} when it applied neither.
    if (q.has("transform_config")) {
        const json& t = q.j["transform_config"];
        const bool no_groups = t.size() == 1 && t.contains("config_groups") && t["config_groups"].is_object() &&
                               t["config_groups"].empty();
        const bool none = t.is_object() && (t.empty() || no_groups);
        if (!none) q.fail("transform_config", "is set: transformed (rotated) weights are not supported");
    }
    if (q.has("sparsity_config") && q.child("sparsity_config").str("format", "dense") != "dense")
        q.fail("sparsity_config", "is set: sparse compressed weights are not supported");

    Reader groups = q.child("config_groups");
    if (groups.j.empty()) q.fail("config_groups", "is empty");
    for (auto it = groups.j.begin(); it != groups.j.end(); ++it) {
        Reader g = groups.child(it.key());
        const std::string gfmt = g.str("format", fmt);
        if (gfmt != kNvfp4) g.fail("format", "= '" + gfmt + "' is not supported (only " + kNvfp4 + ")");
        Reader w = g.child("weights");
        if (w.integer("num_bits") != 4) w.fail("num_bits", "must be 4 for " + kNvfp4);
        if (w.str("type") != "float") w.fail("type", "must be 'float' for " + kNvfp4);
        if (w.str("strategy") != "tensor_group") w.fail("strategy", "must be 'tensor_group' for " + kNvfp4);
        if (w.integer("group_size") != 16) w.fail("group_size", "must be 16 for " + kNvfp4);
        if (g.has("input_activations")) c.activations_quantized = true;
        read_patterns(g, "targets", c.quant.targets);
    }
    if (q.has("ignore")) read_patterns(q, "ignore", c.quant.ignore);
    c.quant_format = kNvfp4;
}

}  // namespace

Config parse_config(const std::string& json_text, const std::string& source) {
    json j;
    try {
        j = json::parse(json_text);
    } catch (const json::exception& e) {
        throw std::runtime_error(source + ": not valid JSON: " + e.what());
    }
    if (!j.is_object()) throw std::runtime_error(source + ": not a JSON object");
    Reader top{j, source, ""};

    Config c;
    if (top.has("architectures")) {
        if (!j["architectures"].is_array() || j["architectures"].empty() || !j["architectures"][0].is_string())
            top.fail("architectures", "must be a non-empty list of names");
        c.architecture = j["architectures"][0].get<std::string>();
    } else {
        const std::string mt = top.str("model_type");
        c.architecture = mt == "mistral3" ? "Mistral3ForConditionalGeneration"
                         : mt == "mistral" ? "MistralForCausalLM"
                                           : mt;
    }

    if (c.architecture == "Mistral3ForConditionalGeneration") {
        c.text = parse_text(top.child("text_config"));
        c.has_vision = true;
        c.vision = parse_vision(top.child("vision_config"));
        c.image_token = int(top.has("image_token_index") ? top.integer("image_token_index")
                                                         : top.has("image_token_id") ? top.integer("image_token_id") : 10);
        c.image_break_token = int(top.has("image_break_token_id") ? top.integer("image_break_token_id") : 12);
        c.image_end_token = int(top.has("image_end_token_id") ? top.integer("image_end_token_id") : 13);
        c.spatial_merge = top.count_or("spatial_merge_size", 2);
        if (top.has("vision_feature_layer") &&
            (!j["vision_feature_layer"].is_number_integer() || top.integer("vision_feature_layer") != -1))
            top.fail("vision_feature_layer", "must be -1 (the last vision layer)");
        if (top.has("multimodal_projector_bias") && j["multimodal_projector_bias"] == true)
            top.fail("multimodal_projector_bias", "= true is not supported");
        const std::string pact = top.str("projector_hidden_act", "gelu");
        if (pact != "gelu") top.fail("projector_hidden_act", "= '" + pact + "' is not supported (expected 'gelu')");
        c.projector_eps = c.text.norm_eps;  // transformers ≥ 4.52 uses text_config.rms_norm_eps
    } else if (c.architecture == "MistralForCausalLM") {
        c.text = parse_text(top);
        c.has_vision = false;
    } else {
        throw std::runtime_error(source + ": architecture '" + c.architecture +
                                 "' is not supported (expected Mistral3ForConditionalGeneration or MistralForCausalLM)");
    }
    parse_quantization(top, c);
    return c;
}

Config load_config(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw std::runtime_error(path + ": cannot open (is this a model folder?)");
    std::ostringstream ss;
    ss << in.rdbuf();
    return parse_config(ss.str(), path);
}

std::string config_summary(const Config& c) {
    const TextConfig& t = c.text;
    std::ostringstream s;
    s << c.architecture << ": text " << t.n_layer << " layers, hidden " << t.hidden << ", ffn " << t.intermediate
      << ", heads " << t.n_head << "/" << t.n_kv_head << " x " << t.head_dim << ", vocab " << t.vocab << ", rope theta "
      << t.rope_theta << ", eps " << t.norm_eps;
    if (c.has_vision) {
        const VisionConfig& v = c.vision;
        s << "; vision " << v.n_layer << " layers, hidden " << v.hidden << ", ffn " << v.intermediate << ", heads "
          << v.n_head << " x " << v.head_dim << ", patch " << v.patch << ", image " << v.image_size << ", merge "
          << c.spatial_merge;
    }
    s << "; weights " << (c.quant_format.empty() ? "dense" : c.quant_format);
    if (c.activations_quantized) s << " (with activation quantization, not applied: activations stay BF16/F32)";
    return s.str();
}

}  // namespace mistral
