// quant_scheme.h — which modules a compressed-tensors quantization_config quantizes: those a config group
// targets (by class name, exact module name or `re:REGEX`) that no `ignore` entry names. Patterns follow
// compressed-tensors: an exact name, or `re:REGEX` matched at the start of the name (Python's re.match).
#pragma once

#include <string>
#include <vector>

namespace mistral {

// Whether one pattern names `module`. Throws std::invalid_argument for a `re:` pattern that does not compile
// or that needs more than a bounded effort to match.
bool module_matches(const std::string& module, const std::string& pattern);

// Throws std::invalid_argument when a `re:` pattern does not compile.
void check_pattern(const std::string& pattern);

// The first of `patterns` naming any of `names`, or nullptr.
const std::string* first_match(const std::vector<std::string>& names, const std::vector<std::string>& patterns);

struct QuantScheme {
    std::vector<std::string> targets;  // union of config_groups.*.targets
    std::vector<std::string> ignore;

    // Whether a module of class `cls` known by `names` (as stored, and canonical) is quantized; when it is
    // not, `why` says so in words ("'lm_head' is in ignore", "no config group targets it").
    bool quantizes(const std::vector<std::string>& names, const std::string& cls, std::string* why) const;
};

}  // namespace mistral
