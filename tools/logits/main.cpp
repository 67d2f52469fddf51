// logits — one forward pass over a prompt (ids or text, with images), written as F32 safetensors:
// `logits` [T, vocab] and, with --hidden, `hidden.L` [T, D] (the residual stream after layer L).
#include <cstdio>

#include "args.h"
#include "log.h"
#include "safetensors_writer.h"
#include "tokenizer.h"

static std::vector<int32_t> parse_ids(const std::string& s) {
    std::vector<int32_t> ids;
    size_t i = 0;
    while (i < s.size()) {
        size_t j = s.find(',', i);
        if (j == std::string::npos) j = s.size();
        std::string tok = s.substr(i, j - i);
        size_t used = 0;
        long v = 0;
        try {
            v = std::stol(tok, &used);
        } catch (const std::exception&) {
            used = 0;
        }
        if (used != tok.size() || tok.empty() || v < 0 || v > INT32_MAX)
            throw std::runtime_error("--ids: '" + tok + "' is not a token id");
        ids.push_back(int32_t(v));
        i = j + 1;
    }
    if (ids.empty()) throw std::runtime_error("--ids: no ids given");
    return ids;
}

int main(int argc, char** argv) {
    CLI::App app{"logits: run one forward pass and write the logits (and hidden states) as safetensors"};
    common::CommonOptions opt;
    std::string ids_arg, prompt, out_path;
    common::ImageArgs images_arg;
    bool hidden = false;
    common::add_common_options(app, opt);
    auto* ids_opt = app.add_option("--ids", ids_arg, "comma-separated token ids; may hold [IMG] runs for the images");
    app.add_option("-p,--prompt", prompt, "text, tokenized with BOS; images come first")->excludes(ids_opt);
    common::add_image_options(app, images_arg, "image file(s) filling the [IMG] tokens in order");
    app.add_option("-o,--output", out_path, "output .safetensors")->required();
    app.add_flag("--hidden", hidden, "also write hidden.L for every layer");

    return common::run_main(app, argc, argv, [&] {
        if (ids_arg.empty() && prompt.empty()) throw std::runtime_error("give --ids or -p");
        mistral::Tokenizer tok(opt.model);
        auto model = common::load_model(opt, images_arg.paths.empty());
        const mistral::Config& cfg = model->config();

        const mistral::ImageOptions io = common::image_options(images_arg, cfg, tok);
        std::vector<mistral::Image> images;
        for (const std::string& p : images_arg.paths) images.push_back(mistral::load_image(p, io));

        std::vector<int32_t> ids;
        if (!ids_arg.empty()) {
            ids = parse_ids(ids_arg);
        } else {
            ids.push_back(tok.bos());
            for (const mistral::Image& im : images) {
                auto lay = mistral::image_token_layout(im.rows(), im.cols(), cfg.image_token, cfg.image_break_token,
                                                       cfg.image_end_token);
                ids.insert(ids.end(), lay.begin(), lay.end());
            }
            auto text = tok.encode(prompt);
            ids.insert(ids.end(), text.begin(), text.end());
        }
        mistral::check_image_tokens(cfg, ids, images);
        const int64_t T = int64_t(ids.size());
        const int n_ctx = opt.ctx > 0 ? opt.ctx : int(T);
        if (T > n_ctx)
            throw std::runtime_error("the prompt has " + std::to_string(T) + " tokens, more than the context of " +
                                     std::to_string(n_ctx) + " (-c)");

        mistral::Context ctx(*model, n_ctx, 1, common::cache_type_of(opt), T);
        mistral::Batch b = mistral::Batch::sequence(ids, 0, 0, T);
        b.image_rows = ctx.encode_images(images);
        b.want_hidden = hidden;
        mistral::BatchResult r = ctx.eval(b);

        mistral::SafetensorsWriter w;
        w.declare("logits", "F32", {T, cfg.text.vocab});
        for (size_t l = 0; l < r.hidden.size(); ++l)
            w.declare("hidden." + std::to_string(l), "F32", {T, cfg.text.hidden});
        w.open(out_path);
        w.write("logits", r.logits.data(), r.logits.size() * sizeof(float));
        for (size_t l = 0; l < r.hidden.size(); ++l)
            w.write("hidden." + std::to_string(l), r.hidden[l].data(), r.hidden[l].size() * sizeof(float));
        w.close();
        common::log_info("wrote %lld x %lld logits to %s", (long long)T, (long long)cfg.text.vocab, out_path.c_str());
        return 0;
    });
}
