// main.cpp — the `quantize` binary: a BF16 Hugging Face checkpoint folder → an NVFP4A16 one
// (compressed-tensors `nvfp4-pack-quantized`), and `--check`, the per-linear error of such a result.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <memory>
#include <stdexcept>
#include <thread>

#include "args.h"
#include "log.h"
#include "quantize.h"

namespace {

volatile std::sig_atomic_t g_interrupted = 0;

// A progress report after an interrupt stops the work by throwing, so that the temporary output
// folder is removed on the way out.
void throw_if_interrupted() {
    if (g_interrupted) throw std::runtime_error("interrupted");
}

// A progress bar in GB, made at the first report, when the total is known.
class LazyBar {
public:
    explicit LazyBar(const char* label) : label_(label) {}
    std::function<void(uint64_t, uint64_t)> callback() {
        return [this](uint64_t done, uint64_t total) {
            throw_if_interrupted();
            if (!bar_) bar_ = std::make_unique<common::ProgressBar>(label_, double(total) / 1e9, " GB");
            bar_->update(double(done) / 1e9);
        };
    }
    void finish() {
        if (bar_) bar_->finish();
    }

private:
    const char* label_;
    std::unique_ptr<common::ProgressBar> bar_;
};

int check(const std::string& bf16_dir, const std::string& nvfp4_dir, int threads) {
    LazyBar bar("check");
    mistral::CheckReport rep = mistral::check_checkpoint(bf16_dir, nvfp4_dir, threads, bar.callback());
    bar.finish();
    double worst = 0, sum = 0;
    for (const auto& l : rep.linears) {
        std::printf("%-64s %.6f\n", l.name.c_str(), l.rel_error);
        worst = std::max(worst, l.rel_error);
        sum += l.rel_error;
    }
    for (const auto& n : rep.copied_differ) std::printf("%-64s differs from the BF16 tensor\n", n.c_str());
    for (const auto& n : rep.missing) std::printf("%-64s missing\n", n.c_str());
    std::printf("%zu quantized linears: relative error mean %.6f, max %.6f; %zu other tensors identical, "
                "%zu differ, %zu missing\n",
                rep.linears.size(), rep.linears.empty() ? 0.0 : sum / double(rep.linears.size()), worst,
                rep.copied_same, rep.copied_differ.size(), rep.missing.size());
    return rep.copied_differ.empty() && rep.missing.empty() ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"quantize: BF16 checkpoint -> NVFP4A16 (compressed-tensors nvfp4-pack-quantized)"};
    std::string in_dir, out_dir;
    std::vector<std::string> ignore;
    int threads = int(std::max(1u, std::thread::hardware_concurrency()));
    bool force = false, do_check = false;
    app.add_option("BF16_DIR", in_dir, "BF16 Hugging Face checkpoint folder")->required();
    app.add_option("OUT_DIR", out_dir, "folder to write (with --check: the NVFP4 folder to compare)")->required();
    app.add_option("--ignore", ignore,
                   "also leave this module in BF16: an exact module name or re:REGEX (repeatable); "
                   "lm_head, the vision tower and the projector are always left");
    app.add_option("-t,--threads", threads, "threads")->check(common::whole_number(1));
    app.add_flag("--force", force, "replace a non-empty OUT_DIR");
    app.add_flag("--check", do_check,
                 "do not quantize: print the relative error of every NVFP4 linear in OUT_DIR against BF16_DIR");
    return common::run_main(app, argc, argv, [&] {
        std::signal(SIGINT, [](int) { g_interrupted = 1; });
        std::signal(SIGTERM, [](int) { g_interrupted = 1; });

        if (do_check) return check(in_dir, out_dir, threads);

        mistral::QuantizeOptions opt;
        for (const auto& p : ignore)
            if (std::find(opt.ignore.begin(), opt.ignore.end(), p) == opt.ignore.end()) opt.ignore.push_back(p);
        opt.threads = threads;
        opt.force = force;
        LazyBar bar("quantize");
        opt.progress = bar.callback();
        auto t0 = std::chrono::steady_clock::now();
        mistral::QuantizeSummary s = mistral::quantize_checkpoint(in_dir, out_dir, opt);
        bar.finish();
        double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        common::log_info("wrote %s: %zu linears quantized, %zu tensors copied, %zu file(s), %.1f MB -> %.1f MB "
                         "in %.1f s (%.0f MB/s)",
                         out_dir.c_str(), s.quantized, s.copied, s.shards, double(s.in_bytes) / 1e6,
                         double(s.out_bytes) / 1e6, secs, double(s.in_bytes) / 1e6 / secs);
        return 0;
    });
}
