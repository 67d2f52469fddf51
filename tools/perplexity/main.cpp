// perplexity — llama.cpp's perplexity over a text file: the file tokenized once with BOS, cut into chunks of
// -c tokens each fed with BOS first, the second half of every chunk scored; `[i]ppl,` per chunk and
// `Final estimate: PPL = X +/- Y` on stdout, logs and progress on stderr.
#include <chrono>
#include <cstdio>
#include <fstream>

#include "args.h"
#include "log.h"
#include "perplexity.h"

int main(int argc, char** argv) {
    CLI::App app{"perplexity: llama.cpp's perplexity methodology (default -c 512, second half of each chunk scored)"};
    common::CommonOptions opt;
    std::string file, json_path;
    int n_batch = 2048, max_chunks = -1;
    bool score_all = false;
    common::add_common_options(app, opt);
    app.add_option("-f,--file", file, "text file to evaluate (e.g. wikitext-2-raw/wiki.test.raw)")->required();
    app.add_option("-b,--batch-size", n_batch, "tokens per pass; max(1, b/c) chunks share one pass")
        ->capture_default_str();
    app.add_option("--chunks", max_chunks, "evaluate at most this many chunks (-1: all)")->capture_default_str();
    app.add_flag("--score-all", score_all, "score every position after the first of a chunk, not just the second half");
    app.add_option("--json", json_path, "also write per-chunk and final figures to this JSON file");

    return common::run_main(app, argc, argv, [&] {
        const auto t0 = std::chrono::steady_clock::now();
        mistral::Tokenizer tok(opt.model);
        common::log_info("perplexity: tokenizing the input ..");
        const std::vector<int32_t> tokens = common::tokenize_corpus(tok, common::read_text_file(file));
        common::log_info("perplexity: tokenization took %g ms",
                         std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
        const common::ChunkPlan plan =
            common::plan_chunks(tokens.size(), opt.ctx > 0 ? opt.ctx : 512, n_batch, max_chunks, score_all);

        auto model = common::load_model(opt, true);
        if (tok.vocab_size() != model->config().text.vocab)
            throw std::runtime_error("tekken.json has " + std::to_string(tok.vocab_size()) +
                                     " tokens but the model's vocabulary has " +
                                     std::to_string(model->config().text.vocab));
        mistral::Context ctx(*model, plan.n_ctx, plan.n_seq, common::cache_type_of(opt), n_batch);
        nlohmann::json j = common::run_perplexity(ctx, tokens, plan, tok.bos());

        if (!json_path.empty()) {
            j["model"] = opt.model;
            j["file"] = file;
            j["n_tokens"] = tokens.size();
            std::ofstream out(json_path);
            if (!(out << j.dump(1) << "\n")) throw std::runtime_error("cannot write " + json_path);
        }
        return 0;
    });
}
