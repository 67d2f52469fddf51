// config.h — Hugging Face config.json -> mistral::Config. Reads Mistral3ForConditionalGeneration
// (text_config + vision_config) and text-only MistralForCausalLM (flat), and the compressed-tensors
// quantization_config. Anything this engine cannot run (ministral3/YaRN, sliding window, other quant
// formats, ...) is refused with a one-line std::runtime_error naming the file, key and value.
#pragma once

#include <string>

#include "mistral3.h"

namespace mistral {

// `source` names the file in error messages.
Config parse_config(const std::string& json_text, const std::string& source);
// Reads and parses `path` (e.g. MODEL_DIR/config.json).
Config load_config(const std::string& path);

// One line: architecture, text and vision sizes, quantization.
std::string config_summary(const Config& c);

}  // namespace mistral
