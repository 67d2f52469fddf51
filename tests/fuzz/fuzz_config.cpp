// fuzz_config.cpp — libFuzzer target: config.json text through parse_config. Either a std::runtime_error,
// or a Config whose sizes the graphs can rely on (positive, divisible where they must be) and whose
// quantization_config patterns match module names without crashing or stalling (std::invalid_argument at
// PCRE2's limits is the only allowed failure).
#include <cstdlib>
#include <stdexcept>
#include <string>

#include "config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    mistral::Config c;
    try {
        c = mistral::parse_config(std::string(reinterpret_cast<const char*>(data), size), "config.json");
    } catch (const std::runtime_error&) {
        return 0;
    }
    const mistral::TextConfig& t = c.text;
    if (t.hidden <= 0 || t.intermediate <= 0 || t.vocab <= 0 || t.n_layer <= 0 || t.max_pos <= 0) std::abort();
    if (t.n_head <= 0 || t.n_kv_head <= 0 || t.head_dim <= 0 || t.n_head % t.n_kv_head || t.head_dim % 2) std::abort();
    if (c.has_vision) {
        const mistral::VisionConfig& v = c.vision;
        if (v.hidden <= 0 || v.intermediate <= 0 || v.n_layer <= 0 || v.n_head <= 0 || v.patch <= 0) std::abort();
        if (v.channels <= 0 || v.head_dim <= 0 || v.head_dim % 4 || c.spatial_merge <= 0) std::abort();
    }
    (void)mistral::config_summary(c);
    std::string why;
    for (const char* m : {"lm_head", "model.language_model.layers.0.self_attn.q_proj",
                          "model.vision_tower.transformer.layers.23.feed_forward.down_proj"}) {
        try {
            (void)c.quant.quantizes({m, std::string("language_model.") + m}, "Linear", &why);
        } catch (const std::invalid_argument&) {
        }
    }
    return 0;
}
