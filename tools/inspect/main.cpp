// inspect — open a model folder with the loader and print what it holds: the config summary, files,
// weight totals, and with --verbose every tensor (name, dtype, shape, bytes, and the weight it became).
#include <CLI/CLI.hpp>
#include <cstdio>
#include <exception>
#include <memory>

#include "checkpoint.h"
#include "config.h"
#include "log.h"

int main(int argc, char** argv) {
    CLI::App app{"inspect: print a checkpoint's config and tensors"};
    std::string dir;
    bool verbose = false, text_only = false;
    app.add_option("-m,--model", dir, "model folder (config.json + safetensors)")->required();
    app.add_flag("-v,--verbose", verbose, "list every tensor");
    app.add_flag("--text-only", text_only, "skip the vision tower and projector");
    CLI11_PARSE(app, argc, argv);

    try {
        mistral::LoadOptions opt;
        opt.text_only = text_only;
        opt.prefault = false;  // inspection needs the headers and scales, not every page
        std::unique_ptr<common::ProgressBar> bar;
        opt.progress = [&](size_t done, size_t total) {
            if (!bar) bar = std::make_unique<common::ProgressBar>("validate", double(total) / 1e9, " GB");
            bar->update(double(done) / 1e9);
        };
        auto ck = mistral::Checkpoint::open(dir, opt);
        if (bar) bar->finish();

        const mistral::Config& c = ck->config();
        std::printf("%s\n", mistral::config_summary(c).c_str());
        if (!c.quant_format.empty()) {
            std::printf("quantization targets:");
            for (const auto& s : c.quant.targets) std::printf(" %s", s.c_str());
            std::printf("; ignore:");
            for (const auto& s : c.quant.ignore) std::printf(" %s", s.c_str());
            std::printf("\n");
        }
        for (const auto& f : ck->tensors().files())
            std::printf("file %s: %zu tensors, %zu bytes\n", f->path().c_str(), f->tensors().size(), f->file_size());
        const auto& w = ck->weights();
        size_t nvfp4 = 0;
        for (const fp4::Tensor* t : w.all()) nvfp4 += t->type == fp4::Type::NVFP4;
        std::printf("weights: %zu tensors (%zu NVFP4), %.3f GB; lm_head %s; %zu unused file tensors\n", w.all().size(),
                    nvfp4, double(w.bytes()) / 1e9, c.tie_embeddings ? "tied to embeddings" : "separate",
                    ck->unused().size());
        if (verbose)
            for (const std::string& line : ck->describe()) std::printf("%s\n", line.c_str());
    } catch (const std::exception& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
    return 0;
}
