// kld — KL divergence of a model against a BF16 base, llama.cpp's methodology and statistics:
//   kld -m BF16_DIR -f FILE -c 512 --save-base base.kld     base run: PPL, and the `_logits_` file
//   kld -m NVFP4_DIR --base base.kld                        against the file (tokens and n_ctx from it)
//   kld -m NVFP4_DIR --base-model BF16_DIR -f FILE -c 512   both models in one run, exact fp32 base
//   kld -m NVFP4_DIR --base-model BF16_DIR -f FILE --gen N  generation mode (see gen.h)
#include <chrono>
#include <cstdio>
#include <fstream>

#include "args.h"
#include "compare.h"
#include "gen.h"
#include "kld_file.h"
#include "log.h"

namespace {

struct Loaded {
    mistral::Tokenizer tok;
    std::unique_ptr<mistral::Model> model;
};

Loaded load(const common::CommonOptions& opt) {
    Loaded l{mistral::Tokenizer(opt.model), common::load_model(opt, true)};
    if (l.tok.vocab_size() != l.model->config().text.vocab)
        throw std::runtime_error(opt.model + ": tekken.json has " + std::to_string(l.tok.vocab_size()) +
                                 " tokens but the model's vocabulary has " +
                                 std::to_string(l.model->config().text.vocab));
    return l;
}

std::vector<int32_t> tokenize_file(const mistral::Tokenizer& tok, const std::string& path) {
    const auto t0 = std::chrono::steady_clock::now();
    common::log_info("kld: tokenizing %s ..", path.c_str());
    std::vector<int32_t> ids = common::tokenize_corpus(tok, common::read_text_file(path));
    common::log_info("kld: tokenization took %g ms",
                     std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    return ids;
}

// The first position where two token streams differ over their first n tokens, or -1.
int64_t first_mismatch(const std::vector<int32_t>& a, const std::vector<int32_t>& b, size_t n) {
    for (size_t i = 0; i < n; ++i)
        if (i >= a.size() || i >= b.size() || a[i] != b[i]) return int64_t(i);
    return -1;
}

void check_vocab(const mistral::Model& a, const mistral::Model& b, const std::string& what) {
    if (a.config().text.vocab != b.config().text.vocab)
        throw std::runtime_error("vocabulary mismatch: the model has " + std::to_string(a.config().text.vocab) +
                                 " entries, " + what + " " + std::to_string(b.config().text.vocab));
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"kld: KL divergence against a BF16 base, llama.cpp's methodology and statistics"};
    common::CommonOptions opt;
    std::string file, save_base, base_file, base_model, json_path;
    int n_batch = 2048, max_chunks = -1, top_k = 0, n_gen = 0;
    bool score_all = false;
    common::add_common_options(app, opt);
    app.add_option("-f,--file", file, "text file (with --base: checked against the file's tokens)");
    app.add_option("-b,--batch-size", n_batch, "tokens per pass; max(1, b/c) chunks share one pass")
        ->capture_default_str();
    app.add_option("--chunks", max_chunks, "evaluate at most this many chunks (-1: all)")->capture_default_str();
    auto* o_save = app.add_option("--save-base", save_base,
                                  "write the base log-probs (llama.cpp's "
                                  "--kl-divergence-base format) to this file");
    auto* o_base = app.add_option("--base", base_file, "compare against this --save-base / llama.cpp logits file");
    auto* o_model = app.add_option("--base-model", base_model, "compare against this model (both loaded, exact base)");
    o_save->excludes(o_base)->excludes(o_model);
    o_base->excludes(o_model);
    app.add_option("--top-k-only", top_k, "also report KLD over the base's top K entries, both renormalized")
        ->check(common::whole_number(0))
        ->excludes(o_save);
    app.add_option("--gen", n_gen,
                   "generation mode: greedy-decode N tokens after each chunk's first half and "
                   "compare with --base-model step by step")
        ->check(common::whole_number(1))
        ->needs(o_model);
    app.add_flag("--score-all", score_all, "score every position after the first (not with files or --gen)");
    app.add_option("--json", json_path, "also write the figures to this JSON file");

    return common::run_main(app, argc, argv, [&] {
        if (save_base.empty() && base_file.empty() && base_model.empty())
            throw std::runtime_error("give --save-base FILE (base run), --base FILE or --base-model DIR");
        if (score_all && (!save_base.empty() || !base_file.empty() || n_gen > 0))
            throw std::runtime_error("--score-all does not fit the file format (second half only) or --gen");
        if (file.empty() && base_file.empty()) throw std::runtime_error("-f FILE is required");
        const int n_ctx = opt.ctx > 0 ? opt.ctx : 512;
        nlohmann::json j;

        if (!save_base.empty()) {
            Loaded m = load(opt);
            const std::vector<int32_t> tokens = tokenize_file(m.tok, file);
            const common::ChunkPlan plan = common::plan_chunks(tokens.size(), n_ctx, n_batch, max_chunks, false);
            const common::KldHeader h{plan.n_ctx, int32_t(m.model->config().text.vocab), plan.n_chunk};
            common::log_info("kld: saving all logits to %s (%.2f GiB)", save_base.c_str(),
                             double(h.file_size()) / (1 << 30));
            common::KldWriter w(
                save_base, h, std::vector<int32_t>(tokens.begin(), tokens.begin() + size_t(plan.n_chunk) * plan.n_ctx));
            mistral::Context ctx(*m.model, plan.n_ctx, plan.n_seq, common::cache_type_of(opt), n_batch);
            j = common::run_perplexity(ctx, tokens, plan, m.tok.bos(), [&](int, int n, const std::vector<float>& l) {
                w.write_rows(l.data(), int64_t(n) * plan.rows());
            });
            w.close();
        } else if (!base_file.empty()) {
            common::KldReader reader(base_file);
            const common::KldHeader& h = reader.header();
            if (opt.ctx > 0 && opt.ctx != h.n_ctx)
                throw std::runtime_error("-c " + std::to_string(opt.ctx) + " differs from the context of " + base_file +
                                         " (" + std::to_string(h.n_ctx) + ")");
            Loaded m = load(opt);
            if (h.n_vocab != m.model->config().text.vocab)
                throw std::runtime_error("vocabulary mismatch: " + base_file + " has " + std::to_string(h.n_vocab) +
                                         " entries, the model " + std::to_string(m.model->config().text.vocab));
            const common::ChunkPlan plan = common::make_plan(
                h.n_ctx, max_chunks < 0 ? h.n_chunk : std::min(max_chunks, h.n_chunk), n_batch, false);
            if (!file.empty()) {
                const int64_t at = first_mismatch(tokenize_file(m.tok, file), reader.tokens(), reader.tokens().size());
                if (at >= 0)
                    throw std::runtime_error("token stream mismatch: " + file +
                                             " tokenizes differently from the "
                                             "tokens stored in " +
                                             base_file + " (first difference at token " + std::to_string(at) + ")");
            }
            mistral::Context ctx(*m.model, plan.n_ctx, plan.n_seq, common::cache_type_of(opt), n_batch);
            CompareSetup s;
            s.ctx = &ctx;
            s.base_file = &reader;
            s.tokens = &reader.tokens();
            s.plan = plan;
            s.bos = m.tok.bos();
            s.top_k = top_k;
            j = run_compare(s);
        } else {
            Loaded m = load(opt);
            common::CommonOptions bopt = opt;
            bopt.model = base_model;
            Loaded b = load(bopt);
            check_vocab(*m.model, *b.model, "the base model");
            const std::vector<int32_t> tokens = tokenize_file(m.tok, file);
            const int64_t at = first_mismatch(tokens, tokenize_file(b.tok, file), tokens.size());
            if (at >= 0)
                throw std::runtime_error("token stream mismatch: the two models' tokenizers differ on " + file +
                                         " (first difference at token " + std::to_string(at) + ")");
            if (m.tok.bos() != b.tok.bos()) throw std::runtime_error("the two tokenizers have different BOS ids");
            const common::ChunkPlan plan = common::plan_chunks(tokens.size(), n_ctx, n_batch, max_chunks, score_all);
            if (n_gen > 0) {
                mistral::Context ctx(*m.model, plan.first + n_gen, plan.n_seq, common::cache_type_of(opt), n_batch);
                mistral::Context bctx(*b.model, plan.first + n_gen, plan.n_seq, common::cache_type_of(opt), n_batch);
                j = run_generation_kld(ctx, bctx, tokens, plan, m.tok.bos(), n_gen, top_k);
            } else {
                mistral::Context ctx(*m.model, plan.n_ctx, plan.n_seq, common::cache_type_of(opt), n_batch);
                mistral::Context bctx(*b.model, plan.n_ctx, plan.n_seq, common::cache_type_of(opt), n_batch);
                CompareSetup s;
                s.ctx = &ctx;
                s.base_ctx = &bctx;
                s.tokens = &tokens;
                s.plan = plan;
                s.bos = m.tok.bos();
                s.top_k = top_k;
                j = run_compare(s);
            }
        }

        if (!json_path.empty()) {
            j["model"] = opt.model;
            if (!base_model.empty()) j["base_model"] = base_model;
            if (!base_file.empty()) j["base_file"] = base_file;
            if (!file.empty()) j["file"] = file;
            std::ofstream out(json_path);
            if (!(out << j.dump(1) << "\n")) throw std::runtime_error("cannot write " + json_path);
        }
        return 0;
    });
}
