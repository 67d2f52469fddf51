// args.h — the options every binary shares (-m, --device, -t, -c, --seed, -v; --image and --max-image-pixels
// where images are read), backend selection, model loading with a progress bar, and the error convention:
// one `error: ...` line and exit code 1.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "context.h"
#include "image.h"
#include "tokenizer.h"

namespace common {

struct CommonOptions {
    std::string model;         // model folder
    std::string device = "auto";
    int threads = 0;           // 0: all cores
    int ctx = 0;               // 0: the binary's default
    std::string kv_type = "auto";  // auto (the backend's), f32, bf16, fp8
    bool cpu_bf16 = false;         // the CPU backend's BF16 activations (fp4::make_cpu_backend)
    uint64_t seed = 0xC0FFEE;
    bool verbose = false;
};

// A whole number in [lo, hi], for ->check(): its help says NONNEGATIVE or POSITIVE where hi is unbounded, and a
// bad value reads "--ctx-size: -5 is not a whole number >= 0" (CLI11 2.1's NonNegativeNumber prints DBL_MAX).
CLI::Validator whole_number(int64_t lo, int64_t hi = INT64_MAX);

// Adds -m/--model (required unless `model_required` is false), --device, -t, -c, --kv-type, --cpu-bf16,
// --seed, -v.
void add_common_options(CLI::App& app, CommonOptions& o, bool model_required = true);

// The KV-cache type --kv-type names; nullopt for auto.
std::optional<fp4::Type> cache_type_of(const CommonOptions& o);

struct ImageArgs {
    std::vector<std::string> paths;
    int64_t max_pixels = mistral::ImageOptions{}.max_pixels;
};

// Adds --image (described by `help`) and --max-image-pixels.
void add_image_options(CLI::App& app, ImageArgs& a, const std::string& help);

// The preprocessing the model and its tokenizer ask for, under the user's pixel budget.
mistral::ImageOptions image_options(const ImageArgs& a, const mistral::Config& cfg, const mistral::Tokenizer& tok);

// auto: CUDA when a GPU is present, else the CPU. An explicit `cuda` without a GPU is an error.
std::unique_ptr<fp4::Backend> make_backend(const CommonOptions& o);

// Opens the checkpoint in o.model, validates it and uploads it to a backend, drawing a progress bar.
std::unique_ptr<mistral::Model> load_model(const CommonOptions& o, bool text_only = false);

// Parses the command line and runs `body`: a bad flag (CLI11's parse errors) or any exception from `body`
// is one `error: <what>` line on stderr and exit code 1; --help prints the help and exits with 0.
int run_main(CLI::App& app, int argc, char** argv, const std::function<int()>& body);

}  // namespace common
