// bench — llama-bench-style speed tests (ppN prefill in passes of -ub tokens, tgN decode, each after -d
// tokens already in the cache, -np N concurrent sequences, imgN vision encode) on a model folder or on
// synthetic weights with a config's shapes, with the bandwidth ceiling beside every decode figure and the
// backend's compute peak beside every prefill and image (the CPU's multiply-adds: FMA, or BF16 dot
// products with --cpu-bf16; a GPU's large cuBLAS BF16 GEMM).
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <thread>

#include "args.h"
#include "config.h"
#include "log.h"
#include "synthetic.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Result {
    std::string test;
    int n_prompt = 0, n_gen = 0, n_par = 1, n_depth = 0, n_ubatch = 0;
    std::vector<double> rates;  // tokens/s of each measured repetition
    double ttft_ms = 0;         // mean time to the first token (prefill + one decode step); imgN: per image
    double flops = 0;           // FLOPs per unit of the rate: per prompt token (pp), per [IMG] token (imgN)
    double mean() const {
        double s = 0;
        for (double r : rates) s += r;
        return rates.empty() ? 0 : s / double(rates.size());
    }
    double stddev() const {
        if (rates.size() < 2) return 0;
        double m = mean(), s = 0;
        for (double r : rates) s += (r - m) * (r - m);
        return std::sqrt(s / double(rates.size() - 1));
    }
};

std::vector<int> parse_list(const std::string& s, const char* flag) {
    std::vector<int> v;
    std::stringstream in(s);
    std::string item;
    while (std::getline(in, item, ',')) {
        try {
            size_t used = 0;
            int x = std::stoi(item, &used);
            if (used != item.size() || x < 0) throw std::invalid_argument("");
            v.push_back(x);
        } catch (const std::exception&) {
            throw std::runtime_error(std::string(flag) + ": '" + item + "' is not a non-negative number");
        }
    }
    return v;
}

// [IMG] tokens per side of the square image bench encodes for --image-size `size` (sides rounded up to cells).
int image_cells(const mistral::Config& c, int size) {
    const int cell = c.vision.patch * c.spatial_merge;
    return (size + cell - 1) / cell;
}

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// The breakdown of `steps` runs (decode steps, or one image: `what` says which, `per` names one run in the
// columns), per run, most time first; products also with the rate they read their weights at, against the
// measured bandwidth `bw` (bytes/s).
void print_profile(const std::vector<fp4::OpProfile>& prof, const std::string& what, int steps, const char* per,
                   double bw, FILE* out) {
    double total = 0, bytes = 0;
    for (const auto& p : prof) total += p.ms, bytes += p.weight_bytes;
    std::fprintf(out, "\n| kernel (%s, each timed alone) | calls/%s | us/%s | share | weights GB/s | of BW |\n",
                 what.c_str(), per, per);
    std::fprintf(out, "| --- | ---: | ---: | ---: | ---: | ---: |\n");
    auto rate = [&](double b, double ms, char* buf, size_t n) {
        if (b > 0 && ms > 0) std::snprintf(buf, n, "%.0f | %.0f%%", b / ms / 1e6, 100.0 * b / (ms * 1e-3) / bw);
        else std::snprintf(buf, n, " | ");
    };
    char r[64];
    for (const auto& p : prof) {
        rate(p.weight_bytes, p.ms, r, sizeof r);
        std::fprintf(out, "| %s | %.1f | %.1f | %.1f%% | %s |\n", p.what.c_str(), double(p.calls) / steps,
                     p.ms * 1e3 / steps, total > 0 ? 100.0 * p.ms / total : 0.0, r);
    }
    rate(bytes, total, r, sizeof r);
    std::fprintf(out, "| total | | %.1f | 100%% | %s |\n", total * 1e3 / steps, r);
}

class Runner {
public:
    Runner(mistral::Model& m, uint64_t seed, std::optional<fp4::Type> kv_type)
        : model_(m), rng_(seed), kv_type_(kv_type) {}

    std::vector<int32_t> random_tokens(int n) {
        std::uniform_int_distribution<int32_t> d(1000, int32_t(model_.config().text.vocab - 1));
        std::vector<int32_t> v(static_cast<size_t>(n));
        for (int32_t& t : v) t = d(rng_);
        return v;
    }

    // Prefill of n random tokens after `depth` already in the cache, `ub` per pass (the last pass's last
    // token with logits, as chat's -ub): tokens/s.
    double prefill(int n, int depth, int ub) {
        mistral::Context ctx(model_, depth + n, 1, kv_type_, std::max(ub, 512));
        fill(ctx, depth);
        auto ids = random_tokens(n);
        auto t0 = Clock::now();
        for (int at = 0; at < n; at += ub) {
            const int len = std::min(ub, n - at);
            std::vector<int32_t> part(ids.begin() + at, ids.begin() + at + len);
            ctx.eval(mistral::Batch::sequence(part, depth + at, 0, at + len == n ? 1 : 0));
        }
        return n / seconds_since(t0);
    }

    // n single-token decode steps after a one-token prompt (which follows `depth` tokens already in the
    // cache): tokens/s; ttft_ms gets prompt + first step.
    double decode(int n, int depth, double* ttft_ms) {
        mistral::Context ctx(model_, depth + n + 1, 1, kv_type_);
        fill(ctx, depth);
        auto ids = random_tokens(n + 1);
        auto t0 = Clock::now();
        ctx.eval(mistral::Batch::sequence({ids[0]}, depth));
        auto t1 = Clock::now();
        for (int i = 1; i <= n; ++i) {
            ctx.eval(mistral::Batch::sequence({ids[size_t(i)]}, depth + i));
            if (i == 1) *ttft_ms = seconds_since(t0) * 1e3;
        }
        return n / seconds_since(t1);
    }

    // n steps decoding np sequences together after a `prompt`-token prompt each, with the backend timing
    // every kernel: the per-kernel table.
    std::vector<fp4::OpProfile> profile_decode(int n, int np, int prompt) {
        mistral::Context ctx(model_, prompt + n, np, kv_type_);
        prefill_each(ctx, np, prompt);
        model_.backend().set_profiling(true);
        for (int i = 0; i < n; ++i) ctx.eval(decode_step(np, prompt + i, np > 1));  // as parallel() decodes
        model_.backend().set_profiling(false);
        return model_.backend().profile();
    }

    // The kernels of one size×size image through the tower and projector, each timed alone.
    std::vector<fp4::OpProfile> profile_vision(int size) {
        double ms = 0;
        model_.backend().set_profiling(true);
        vision(size, &ms);
        model_.backend().set_profiling(false);
        return model_.backend().profile();
    }

    // One random size×size image (already preprocessed) through the vision tower and projector: [IMG]
    // tokens/s; ms_per_image gets the time of one image.
    double vision(int size, double* ms_per_image) {
        const mistral::Config& cfg = model_.config();
        mistral::Image im;
        im.cell = cfg.vision.patch * cfg.spatial_merge;
        im.width = im.height = image_cells(cfg, size) * im.cell;
        std::normal_distribution<float> d(0.0f, 1.0f);
        im.pixels.resize(size_t(3) * size_t(im.width) * size_t(im.height));
        for (float& p : im.pixels) p = d(rng_);
        mistral::Context ctx(model_, 1, 1, kv_type_);
        auto t0 = Clock::now();
        ctx.encode_images({im});
        const double s = seconds_since(t0);
        *ms_per_image = s * 1e3;
        return double(im.rows()) * im.cols() / s;
    }

    // np sequences: each prefilled with `prompt` tokens, then n steps decoding all of them together, the
    // next tokens chosen on the device (greedy ARGMAX) as a serving engine does, so only their ids come
    // back. Returns the aggregate decode tokens/s; ttft_ms gets the time until every sequence has its first
    // token.
    double parallel(int np, int prompt, int n, double* ttft_ms) {
        mistral::Context ctx(model_, prompt + n, np, kv_type_);
        auto t0 = Clock::now();
        prefill_each(ctx, np, prompt);
        *ttft_ms = seconds_since(t0) * 1e3;
        auto t1 = Clock::now();
        for (int i = 0; i < n; ++i) ctx.eval(decode_step(np, prompt + i, true));
        return double(np) * n / seconds_since(t1);
    }

private:
    // The first n positions of sequence 0 filled with random tokens, 512 per pass (untimed: the depth of
    // a test, as llama-bench's -d).
    void fill(mistral::Context& ctx, int n) {
        for (int p = 0; p < n; p += 512)
            ctx.eval(mistral::Batch::sequence(random_tokens(std::min(512, n - p)), p));
    }

    // Each of np sequences prefilled with `prompt` random tokens.
    void prefill_each(mistral::Context& ctx, int np, int prompt) {
        for (int s = 0; s < np; ++s) ctx.eval(mistral::Batch::sequence(random_tokens(prompt), 0, s));
    }

    // One random token for each of np sequences at position pos, with every row's logits (or its argmax).
    mistral::Batch decode_step(int np, int pos, bool argmax_only) {
        mistral::Batch b;
        b.ids = random_tokens(np);
        for (int s = 0; s < np; ++s) b.pos.push_back(pos), b.seq.push_back(s);
        b.logits_count = np;
        b.argmax_only = argmax_only;
        return b;
    }

    mistral::Model& model_;
    std::mt19937_64 rng_;
    std::optional<fp4::Type> kv_type_;
};

// Bytes of weights one decode step reads: everything but the embedding table, of which one row.
double bytes_per_token(const mistral::Model& m) {
    const mistral::Weights& w = m.weights();
    double b = 0;
    for (const fp4::Tensor* t : w.text())
        b += t == w.tok_embd && t != w.lm_head ? double(fp4::row_bytes(t->type, t->ne[0]))
                                                : double(t->nbytes() + t->scale_bytes());
    return b;
}

// FLOPs of one token of an n-token prefill after `depth` cached ones: 2 per weight of every product (the
// logits' only for the pass's last token) and 4 per query and key element of attention, over the keys it
// sees on average.
double flops_per_prefill_token(const mistral::Model& m, int n, int depth) {
    const mistral::Weights& w = m.weights();
    const mistral::TextConfig& c = m.config().text;
    double f = 0;
    for (const fp4::Tensor* t : w.text())
        if (t != w.tok_embd && t->ne[1] > 1) f += 2.0 * double(t->nelements()) / (t == w.lm_head ? n : 1);
    if (w.lm_head == w.tok_embd) f += 2.0 * double(w.tok_embd->nelements()) / n;  // tied embeddings
    return f + 4.0 * c.n_layer * c.n_head * c.head_dim * (depth + (n + 1) / 2.0);
}

// FLOPs of one square image of `size` pixels per side per [IMG] token: 2 per weight and patch through the
// patch convolution and the tower, 2 per weight and merged token through the projector, and 4 per pair of
// patches and hidden dimension in each layer's attention (one image attends to all of its patches).
double flops_per_image_token(const mistral::Model& m, int size) {
    const mistral::Config& c = m.config();
    const mistral::Weights& w = m.weights();
    const int side = image_cells(c, size);
    const double tokens = double(side) * side, patches = tokens * c.spatial_merge * c.spatial_merge;
    double f = 2.0 * double(w.patch_conv->nelements()) * patches;
    for (const mistral::Block& b : w.vision_layers)
        for (const fp4::Tensor* t : {b.wq, b.wk, b.wv, b.wo, b.w_gate, b.w_up, b.w_down})
            f += 2.0 * double(t->nelements()) * patches;
    for (const fp4::Tensor* t : {w.mm_merge, w.mm_linear1, w.mm_linear2})
        if (t) f += 2.0 * double(t->nelements()) * tokens;
    f += 4.0 * c.vision.n_layer * patches * patches * c.vision.n_head * c.vision.head_dim;
    return f / tokens;
}

double peak_rss_gb() {
    struct rusage ru {};
    getrusage(RUSAGE_SELF, &ru);
    return double(ru.ru_maxrss) * 1024 / 1e9;
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"bench: llama-bench-style prefill/decode speed, on a model folder or synthetic weights"};
    common::CommonOptions opt;
    std::string synthetic, pp_list = "512", tg_list = "128", depth_list = "0", ub_list = "512", output = "md";
    int reps = 5, n_par = 1, prompt_len = 128, image_size = 0;
    bool progress = false, profile = false;
    common::add_common_options(app, opt, false);
    app.add_option("--synthetic", synthetic, "random weights with the shapes of this config.json (no checkpoint)");
    app.add_option("-p,--n-prompt", pp_list, "prefill test sizes, comma-separated (0 skips)")->capture_default_str();
    app.add_option("-n,--n-gen", tg_list, "decode test sizes, comma-separated (0 skips)")->capture_default_str();
    app.add_option("-d,--n-depth", depth_list, "tokens already in the cache before each pp/tg test, comma-separated")
        ->capture_default_str();
    app.add_option("--ubatch-size", ub_list, "(-ub) prompt tokens per prefill pass, comma-separated (each pp test "
                                             "runs with each)")
        ->capture_default_str();
    app.add_option("-r,--repetitions", reps, "measured repetitions after one warm-up")
        ->check(common::whole_number(1))
        ->capture_default_str();
    app.add_option("--parallel", n_par, "(-np) also run N sequences decoding together (batched decode)")
        ->check(common::whole_number(1));
    app.add_option("--prompt-len", prompt_len, "prompt tokens of each sequence with -np")
        ->check(common::whole_number(1))
        ->capture_default_str();
    app.add_option("--image-size", image_size, "also encode a random N x N image through the vision tower (0: no)")
        ->check(common::whole_number(0));
    app.add_option("-o,--output", output, "md, csv, json or jsonl")
        ->check(CLI::IsMember({"md", "csv", "json", "jsonl"}))
        ->capture_default_str();
    app.add_flag("--progress", progress, "report each test on stderr as it runs");
    app.add_flag("--profile", profile, "also time every kernel of 16 decode steps (and, with -np, of 4 batched "
                                       "steps; with --image-size, of one image) and print the breakdown, products with "
                                       "their weight-read rate against the measured bandwidth (stderr unless -o md)");

    // llama.cpp spells them -np and -ub, two-letter short flags CLI11 cannot declare.
    std::vector<std::string> args(argv, argv + argc);
    std::vector<char*> argp;
    for (std::string& a : args) {
        if (a == "-np") a = "--parallel";
        if (a == "-ub") a = "--ubatch-size";
        argp.push_back(a.data());
    }
    return common::run_main(app, argc, argp.data(), [&] {
        if (opt.model.empty() == synthetic.empty()) throw std::runtime_error("give exactly one of -m DIR or --synthetic CONFIG");
        const std::vector<int> pps = parse_list(pp_list, "-p"), tgs = parse_list(tg_list, "-n"),
                               depths = parse_list(depth_list, "-d"), ubs = parse_list(ub_list, "-ub");
        if (std::find(ubs.begin(), ubs.end(), 0) != ubs.end()) throw std::runtime_error("-ub: 0 tokens per pass");
        // Like llama-bench, the table names -ub only where it was given (blank for tests without a prefill).
        const bool show_ub = ubs != std::vector<int>{512};
        auto ub_cell = [](int ub) { return ub > 0 ? std::to_string(ub) : std::string(); };

        std::unique_ptr<mistral::Model> model;
        std::string model_name;
        if (!synthetic.empty()) {
            mistral::Config cfg = mistral::load_config(synthetic);
            cfg.has_vision = cfg.has_vision && image_size > 0;
            auto backend = common::make_backend(opt);
            common::log_info("building synthetic weights for %s ...", synthetic.c_str());
            int threads = opt.threads > 0 ? opt.threads : int(std::thread::hardware_concurrency());
            mistral::SyntheticWeights sw = mistral::make_synthetic_weights(cfg, opt.seed, threads);
            common::ProgressBar bar(std::string("upload ") + backend->name(), double(sw.weights.bytes()) / 1e9, " GB");
            model = std::make_unique<mistral::Model>(cfg, std::move(sw.weights), sw.storage, std::move(backend),
                                                     [&](size_t d, size_t) { bar.update(double(d) / 1e9); });
            bar.finish();
            model_name = "synthetic " + synthetic.substr(synthetic.find_last_of('/') + 1);
        } else {
            model = common::load_model(opt, image_size == 0);
            model_name = opt.model;
        }
        const double bpt = bytes_per_token(*model);
        const fp4::Type kv_type = common::cache_type_of(opt).value_or(model->backend().cache_type());
        const double kv_per_token = double(mistral::context_memory(model->config().text, 1, 1, kv_type).kv);
        common::log_info("measuring the memory bandwidth of %s ...", model->backend().name());
        const double bw = model->backend().measure_bandwidth();
        // The compute peak only matters to prefill and image tests (a GPU times several cuBLAS GEMMs for it).
        const bool compute_bound = image_size > 0 || std::any_of(pps.begin(), pps.end(), [](int n) { return n > 0; });
        const double peak = compute_bound ? model->backend().measure_compute_peak() : 0.0;  // 0: not measured

        Runner run(*model, opt.seed, kv_type);
        std::vector<Result> results;
        size_t device_mem = 0;  // bytes the backend holds, the most seen after a test
        auto measure = [&](Result r, const std::function<double(double*)>& once) {
            double ttft = 0, sum_ttft = 0;
            once(&ttft);  // warm-up
            for (int i = 0; i < reps; ++i) {
                r.rates.push_back(once(&ttft));
                sum_ttft += ttft;
            }
            r.ttft_ms = sum_ttft / reps;
            device_mem = std::max(device_mem, model->backend().memory_used());
            if (progress) common::log_info("%s: %.2f t/s", r.test.c_str(), r.mean());
            results.push_back(r);
        };
        // llama-bench's names: "pp512", or "pp512 @ d4096" after 4096 tokens.
        auto name = [](const char* kind, int n, int depth) {
            return kind + std::to_string(n) + (depth > 0 ? " @ d" + std::to_string(depth) : "");
        };
        for (int d : depths) {
            for (int n : pps)
                for (int ub : ubs)
                    if (n > 0)
                        measure({name("pp", n, d), n, 0, 1, d, ub, {}, 0, flops_per_prefill_token(*model, n, d)},
                                [&](double* ttft) {
                                    const double r = run.prefill(n, d, ub);
                                    *ttft = 1e3 * n / r;  // the prompt's passes (not the depth's)
                                    return r;
                                });
            for (int n : tgs)
                if (n > 0)
                    measure({name("tg", n, d), 0, n, 1, d, 0, {}, 0},
                            [&](double* ttft) { return run.decode(n, d, ttft); });
        }
        if (n_par > 1)
            for (int n : tgs)
                if (n > 0)
                    measure({"np" + std::to_string(n_par) + " pp" + std::to_string(prompt_len) + "+tg" + std::to_string(n),
                             prompt_len, n, n_par, 0, 0, {}, 0},
                            [&](double* ttft) { return run.parallel(n_par, prompt_len, n, ttft); });

        if (image_size > 0) {
            if (!model->config().has_vision) throw std::runtime_error("--image-size: this model has no vision tower");
            const double flops = flops_per_image_token(*model, image_size);
            measure({"img" + std::to_string(image_size), 0, 0, 1, 0, 0, {}, 0, flops},
                    [&](double* ms) { return run.vision(image_size, ms); });
        }

        const double size_gb = double(model->weights().bytes()) / 1e9, mem_gb = peak_rss_gb();
        double params = 0;
        for (const fp4::Tensor* t : model->weights().all()) params += double(t->nelements());
        const int threads = opt.threads > 0 ? opt.threads : int(std::thread::hardware_concurrency());
        nlohmann::ordered_json rows = nlohmann::json::array();
        for (const Result& r : results) {
            const bool decode = r.n_gen > 0;
            // A decode step reads the weights once and each sequence's cache up to its position (on average
            // the depth, the prompt and half the generated tokens): bytes/step × steps/s (t/s ÷ sequences).
            const double kv_bytes = decode ? kv_per_token * r.n_par * (r.n_depth + r.n_prompt + (r.n_gen + 1) / 2.0) : 0;
            const double eff = decode ? (bpt + kv_bytes) * r.mean() / r.n_par : 0;
            // A prefill or an image is compute bound: its FLOPs per second against the backend's peak.
            const double ratio = decode ? eff / bw : r.flops > 0 && peak > 0 ? r.flops * r.mean() / peak : 0.0;
            rows.push_back({{"model", model_name},
                            {"size_gb", size_gb},
                            {"params_b", params / 1e9},
                            {"backend", model->backend().name()},
                            {"threads", threads},
                            {"type_kv", fp4::type_name(kv_type)},
                            {"test", r.test},
                            {"n_prompt", r.n_prompt},
                            {"n_gen", r.n_gen},
                            {"n_parallel", r.n_par},
                            {"n_depth", r.n_depth},
                            {"n_ubatch", r.n_ubatch},
                            {"avg_ts", r.mean()},
                            {"stddev_ts", r.stddev()},
                            {"samples_ts", r.rates},
                            {"ttft_ms", r.ttft_ms},
                            {"weight_bytes_per_token", bpt},
                            {"kv_bytes_per_step", kv_bytes},
                            {"bandwidth_gbs", bw / 1e9},
                            {"effective_gbs", eff / 1e9},
                            {"flops_per_token", r.flops},
                            {"compute_peak_gflops", peak / 1e9},
                            {"ceiling_ratio", ratio},
                            {"peak_host_mem_gb", mem_gb},
                            {"device_mem_gb", double(device_mem) / 1e9}});
        }
        if (output == "json") {
            std::cout << rows.dump(2) << "\n";
        } else if (output == "jsonl") {
            for (const auto& r : rows) std::cout << r.dump() << "\n";
        } else if (output == "csv") {
            std::cout << "model,size_gb,backend,threads,test,n_depth,n_ubatch,avg_ts,stddev_ts,ttft_ms,"
                         "weight_bytes_per_token,"
                         "kv_bytes_per_step,bandwidth_gbs,effective_gbs,ceiling_ratio,peak_host_mem_gb\n";
            for (const auto& r : rows)
                std::printf("\"%s\",%.3f,%s,%d,%s,%d,%d,%.3f,%.3f,%.2f,%.0f,%.0f,%.2f,%.2f,%.4f,%.2f\n",
                            r["model"].get<std::string>().c_str(), size_gb, r["backend"].get<std::string>().c_str(),
                            threads, r["test"].get<std::string>().c_str(), r["n_depth"].get<int>(),
                            r["n_ubatch"].get<int>(),
                            r["avg_ts"].get<double>(), r["stddev_ts"].get<double>(), r["ttft_ms"].get<double>(), bpt,
                            r["kv_bytes_per_step"].get<double>(), bw / 1e9, r["effective_gbs"].get<double>(),
                            r["ceiling_ratio"].get<double>(), mem_gb);
        } else {
            // GB/step: the weights, and for decode the caches each step reads too.
            std::printf("| model | size | backend | threads |%s test | t/s | TTFT ms | GB/step | BW GB/s | eff GB/s "
                        "| of ceiling |\n",
                        show_ub ? " n_ubatch |" : "");
            std::printf("| --- | ---: | --- | ---: |%s ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
                        show_ub ? " ---: |" : "");
            for (const auto& r : rows)
                std::printf("| %s | %.2f GB | %s | %d |%s %s | %.2f ± %.2f | %.1f | %.3f | %.1f | %.1f | %s |\n",
                            r["model"].get<std::string>().c_str(), size_gb, r["backend"].get<std::string>().c_str(),
                            threads,
                            !show_ub ? "" : (" " + ub_cell(r["n_ubatch"].get<int>()) + " |").c_str(),
                            r["test"].get<std::string>().c_str(), r["avg_ts"].get<double>(),
                            r["stddev_ts"].get<double>(), r["ttft_ms"].get<double>(),
                            (bpt + r["kv_bytes_per_step"].get<double>()) / 1e9, bw / 1e9,
                            r["effective_gbs"].get<double>(),
                            r["ceiling_ratio"].get<double>() > 0
                                ? (std::to_string(int(std::lround(r["ceiling_ratio"].get<double>() * 100))) + "%").c_str()
                                : "-");
            std::printf("\nKV cache %s, peak host memory %.2f GB, backend memory %.2f GB\n", fp4::type_name(kv_type),
                        mem_gb, double(device_mem) / 1e9);
            if (peak > 0)
                std::printf("of ceiling: decode against the bandwidth, prefill and images against the compute peak (%.1f "
                            "GFLOP/s: %s)\n",
                            peak / 1e9, model->backend().compute_peak_what());
        }
        if (profile) {
            FILE* out = output == "md" ? stdout : stderr;
            print_profile(run.profile_decode(16, 1, 1), "16 decode steps of 1 sequence", 16, "step", bw, out);
            if (n_par > 1)
                print_profile(run.profile_decode(4, n_par, prompt_len),
                              "4 decode steps of " + std::to_string(n_par) + " sequences", 4, "step", bw, out);
            if (image_size > 0)
                print_profile(run.profile_vision(image_size),
                              "one " + std::to_string(image_size) + "x" + std::to_string(image_size) + " image", 1,
                              "image", bw, out);
        }
        return 0;
    });
}
