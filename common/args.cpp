// args.cpp — shared options, backend choice, model loading with progress, and the error convention.
#include "args.h"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <thread>

#include "checkpoint.h"
#include "log.h"

namespace common {

CLI::Validator whole_number(int64_t lo, int64_t hi) {
    const bool open = hi == INT64_MAX;
    const std::string a = std::to_string(lo), b = std::to_string(hi);
    const std::string want = open ? ">= " + a : "from " + a + " to " + b;
    const std::string name = open && lo == 0   ? "NONNEGATIVE"
                             : open && lo == 1 ? "POSITIVE"
                                               : "in [" + a + ", " + b + "]";
    return CLI::Validator(
        [lo, hi, want](std::string& s) -> std::string {
            errno = 0;
            char* end = nullptr;
            const long long v = std::strtoll(s.c_str(), &end, 10);
            if (s.empty() || *end != '\0' || errno == ERANGE || v < lo || v > hi)
                return s + " is not a whole number " + want;
            return {};
        },
        name);
}

void add_common_options(CLI::App& app, CommonOptions& o, bool model_required) {
    CLI::Option* m = app.add_option("-m,--model", o.model, "model folder (Hugging Face layout: config.json, "
                                                           "*.safetensors, tekken.json)");
    if (model_required) m->required();
    app.add_option("--device", o.device, "where to run: auto (CUDA when a GPU is present), cuda or cpu")
        ->check(CLI::IsMember({"auto", "cuda", "cpu"}))
        ->capture_default_str();
    app.add_option("-t,--threads", o.threads, "CPU threads (0: all cores)")->check(whole_number(0));
    app.add_option("-c,--ctx-size", o.ctx, "context size in tokens (0: the tool's default)")
        ->check(whole_number(0));
    app.add_option("--kv-type", o.kv_type,
                   "KV-cache type: auto (the backend's: f32 on the CPU, bf16 on CUDA), f32, bf16, fp8 (E4M3)")
        ->check(CLI::IsMember({"auto", "f32", "bf16", "fp8"}))
        ->capture_default_str();
    app.add_flag("--cpu-bf16", o.cpu_bf16,
                 "CPU: round activations to BF16 before products with NVFP4 and BF16 weights, as a GPU does: "
                 "prompts and images ~2x faster with AVX512-BF16, logits within ~1e-2 of the default F32 "
                 "(no effect on CUDA, which always does)");
    app.add_option("--seed", o.seed, "random seed")->capture_default_str();
    app.add_flag("-v,--verbose", o.verbose, "more logging on stderr")->each([](const std::string&) {
        set_log_level(LogLevel::Debug);
    });
}

void add_image_options(CLI::App& app, ImageArgs& a, const std::string& help) {
    app.add_option("--image", a.paths, help);
    app.add_option("--max-image-pixels", a.max_pixels,
                   "refuse images of more pixels than this, checked on the header before decoding")
        ->check(whole_number(1))
        ->capture_default_str();
}

mistral::ImageOptions image_options(const ImageArgs& a, const mistral::Config& cfg, const mistral::Tokenizer& tok) {
    mistral::ImageOptions io;
    io.patch = cfg.vision.patch;
    io.merge = cfg.spatial_merge;
    if (tok.image()) io.max_image_size = tok.image()->max_image_size;
    io.max_pixels = a.max_pixels;
    return io;
}

std::optional<fp4::Type> cache_type_of(const CommonOptions& o) {
    if (o.kv_type == "f32") return fp4::Type::F32;
    if (o.kv_type == "bf16") return fp4::Type::BF16;
    if (o.kv_type == "fp8") return fp4::Type::F8_E4M3;
    return std::nullopt;
}

std::unique_ptr<fp4::Backend> make_backend(const CommonOptions& o) {
    if (o.device != "cpu") {
        std::string why;
        if (auto be = fp4::make_cuda_backend(&why)) return be;
        if (o.device == "cuda") throw std::runtime_error("--device cuda: " + why);
        // A GPU that is there but cannot run the backend (too old, no code for it) is worth a line; a bad
        // FP4_CUDA_* value is not a reason to fall back, it throws.
        if (fp4::cuda_available()) log_warn("not using the GPU (%s); running on the CPU", why.c_str());
        else log_debug("no CUDA backend (%s); using the CPU", why.c_str());
    }
    int n = o.threads > 0 ? o.threads : int(std::thread::hardware_concurrency());
    return fp4::make_cpu_backend(n > 0 ? n : 1, o.cpu_bf16);
}

std::unique_ptr<mistral::Model> load_model(const CommonOptions& o, bool text_only) {
    mistral::LoadOptions lo;
    lo.text_only = text_only;
    std::unique_ptr<ProgressBar> check_bar;
    lo.progress = [&](size_t done, size_t total) {
        if (!check_bar) check_bar = std::make_unique<ProgressBar>("check", double(total) / 1e9, " GB");
        check_bar->update(double(done) / 1e9);
    };
    std::shared_ptr<mistral::Checkpoint> ckpt = mistral::Checkpoint::open(o.model, lo);
    if (check_bar) check_bar->finish();
    if (o.verbose)
        for (const std::string& line : ckpt->describe()) log_debug("%s", line.c_str());
    auto backend = make_backend(o);
    mistral::Weights w = std::move(ckpt->weights());
    const double gb = double(w.bytes()) / 1e9;
    ProgressBar bar(std::string("load ") + backend->name(), gb, " GB");
    auto model = std::make_unique<mistral::Model>(ckpt->config(), std::move(w), ckpt, std::move(backend),
                                                  [&](size_t done, size_t) { bar.update(double(done) / 1e9); });
    bar.finish();
    const mistral::Config& c = model->config();
    if (c.activations_quantized)
        log_warn("%s quantizes activations too (NVFP4 W4A4): they are not quantized here, so results are those of "
                 "its weights with BF16/F32 activations (NVFP4A16), not an FP4-activation engine's",
                 o.model.c_str());
    log_info("model: %s, %d layers, hidden %lld, vocab %lld, %s%s, %.2f GB of weights on %s", o.model.c_str(),
             c.text.n_layer, (long long)c.text.hidden, (long long)c.text.vocab,
             c.quant_format.empty() ? "dense" : c.quant_format.c_str(), c.has_vision ? ", vision" : "", gb,
             model->backend().name());
    return model;
}

int run_main(CLI::App& app, int argc, char** argv, const std::function<int()>& body) {
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        if (e.get_exit_code() == 0) return app.exit(e);  // --help
        std::fprintf(stderr, "error: %s (see --help)\n", e.what());  // one line and exit code 1, as for bad files
        return 1;
    }
    try {
        return body();
    } catch (const std::exception& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
}

}  // namespace common
