// context.cpp — weight upload, KV cache allocation (after checking both fit the backend's free memory),
// running text and vision graphs on a backend, and reading, writing and shifting the cache.
#include "context.h"

#include <algorithm>
#include <cstdio>
#include <stdexcept>
#include <string>

#include "rope.h"

namespace mistral {

namespace {

std::string gib(size_t bytes) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.2f GiB", double(bytes) / double(1ull << 30));
    return buf;
}

}  // namespace

Model::Model(Config cfg, Weights weights, std::shared_ptr<void> storage, std::unique_ptr<fp4::Backend> backend,
             const std::function<void(size_t, size_t)>& progress)
    : cfg_(std::move(cfg)), weights_(std::move(weights)), storage_(std::move(storage)), backend_(std::move(backend)) {
    const size_t total = weights_.bytes();
    if (!backend_->zero_copy_weights()) {
        const size_t free = backend_->memory_free();
        if (total > free)
            throw std::runtime_error("the weights need " + gib(total) + " but only " + gib(free) + " of " +
                                     backend_->name() + " memory is free");
    }
    size_t done = 0;
    for (fp4::Tensor* t : weights_.all()) {
        backend_->upload_weight(*t);
        done += t->nbytes() + t->scale_bytes();
        if (progress) progress(done, total);
    }
}

Batch Batch::sequence(const std::vector<int32_t>& ids, int32_t p0, int32_t s, int64_t n_logits) {
    Batch b;
    b.ids = ids;
    for (size_t i = 0; i < ids.size(); ++i) {
        b.pos.push_back(p0 + int32_t(i));
        b.seq.push_back(s);
    }
    b.logits_count = std::min<int64_t>(n_logits, int64_t(ids.size()));
    b.logits_first = int64_t(ids.size()) - b.logits_count;
    return b;
}

ContextMemory context_memory(const TextConfig& c, int n_ctx, int n_seq, fp4::Type kv_type, int64_t batch) {
    const int64_t width = int64_t(c.n_kv_head) * c.head_dim, q = int64_t(c.n_head) * c.head_dim;
    const int64_t tokens = std::min<int64_t>(batch, int64_t(n_ctx) * n_seq);
    ContextMemory m;
    m.kv = 2 * size_t(c.n_layer) * size_t(n_ctx) * size_t(n_seq) * fp4::row_bytes(kv_type, width);
    // Live at once in a pass: the residual, a norm output, q/k/v and attention output, gate/up/SwiGLU,
    // and one row of logits, all F32.
    m.activations = 4 * size_t(tokens) * size_t(3 * c.hidden + 2 * q + 2 * width + 3 * c.intermediate) +
                    4 * size_t(c.vocab);
    return m;
}

int fitting_context(const TextConfig& c, int wanted, int n_seq, fp4::Type kv_type, size_t free, int64_t batch) {
    auto fits = [&](int n) {
        const ContextMemory m = context_memory(c, n, n_seq, kv_type, batch);
        return m.kv + m.activations <= free;
    };
    if (fits(wanted)) return wanted;
    int lo = 0, hi = (wanted - 1) / 256;  // the largest k ≤ hi whose k·256 tokens fit, 0 when none does
    while (lo < hi) {
        const int mid = (lo + hi + 1) / 2;
        if (fits(mid * 256)) lo = mid;
        else hi = mid - 1;
    }
    return lo * 256;
}

// A text pass without images or hidden states, kept for the next batch of the same shape.
struct Context::TextPass {
    fp4::Graph graph;
    TextOutputs out;
    std::vector<int32_t> ids, pos, seq;  // the graph's inputs
    int64_t logits_first = 0, logits_count = 0;
    bool argmax_only = false;
    bool fits(const Batch& b) const {
        return b.ids.size() == ids.size() && b.logits_first == logits_first && b.logits_count == logits_count &&
               b.argmax_only == argmax_only;
    }
};

Context::Context(Model& model, int n_ctx, int n_seq, std::optional<fp4::Type> kv_type, int64_t batch)
    : model_(model) {
    const TextConfig& c = model.config().text;
    if (n_ctx <= 0 || n_seq <= 0) throw std::runtime_error("context size and sequence count must be positive");
    if (n_ctx > c.max_pos)
        throw std::runtime_error("context size " + std::to_string(n_ctx) + " exceeds the model's maximum of " +
                                 std::to_string(c.max_pos) + " tokens");
    const fp4::Type type = kv_type.value_or(model.backend().cache_type());
    if (type != fp4::Type::F32 && type != fp4::Type::BF16 && type != fp4::Type::F8_E4M3)
        throw std::runtime_error(std::string("a KV cache of type ") + fp4::type_name(type) +
                                 " is not supported (F32, BF16 or F8_E4M3)");
    const ContextMemory need = context_memory(c, n_ctx, n_seq, type, batch);
    const int64_t pass = std::min<int64_t>(batch, int64_t(n_ctx) * n_seq);
    const size_t free = model.backend().memory_free();
    if (need.kv + need.activations > free)
        throw std::runtime_error(
            "the " + std::string(fp4::type_name(type)) + " KV cache for " + std::to_string(n_ctx) + " tokens x " +
            std::to_string(n_seq) + " sequence(s) needs " + gib(need.kv) + " (" +
            std::to_string(need.kv / (size_t(n_ctx) * size_t(n_seq)) / 1024) + " KiB per token) and activations " +
            "about " + gib(need.activations) + " for passes of " + std::to_string(pass) + " tokens, but only " +
            gib(free) + " of " + model.backend().name() +
            " memory is free (lower -c, -ub or the sequence count, or pick a smaller --kv-type)");
    cache_.n_ctx = n_ctx;
    cache_.n_seq = n_seq;
    const int64_t width = int64_t(c.n_kv_head) * c.head_dim, rows = int64_t(n_ctx) * n_seq;
    for (int il = 0; il < c.n_layer; ++il) {
        cache_.k.push_back(fp4::make_tensor(type, {width, rows}, "k_cache." + std::to_string(il)));
        cache_.v.push_back(fp4::make_tensor(type, {width, rows}, "v_cache." + std::to_string(il)));
        model.backend().alloc_persistent(*cache_.k.back());
        model.backend().alloc_persistent(*cache_.v.back());
    }
}

Context::~Context() {
    for (auto* list : {&cache_.k, &cache_.v})
        for (auto& t : *list) model_.backend().free_persistent(*t);
}

BatchResult Context::eval(const Batch& b) {
    const Config& cfg = model_.config();
    const int64_t T = int64_t(b.ids.size());
    if (T == 0) throw std::runtime_error("empty batch");
    if (b.pos.size() != b.ids.size() || b.seq.size() != b.ids.size())
        throw std::runtime_error("batch: ids, pos and seq differ in length");
    for (int64_t t = 0; t < T; ++t) {
        if (b.ids[t] < 0 || b.ids[t] >= cfg.text.vocab)
            throw std::runtime_error("token id " + std::to_string(b.ids[t]) + " is outside the vocabulary (0.." +
                                     std::to_string(cfg.text.vocab - 1) + ")");
        if (b.pos[t] < 0 || b.pos[t] >= cache_.n_ctx)
            throw std::runtime_error("position " + std::to_string(b.pos[t]) + " does not fit the context of " +
                                     std::to_string(cache_.n_ctx) + " tokens (raise -c)");
        if (b.seq[t] < 0 || b.seq[t] >= cache_.n_seq) throw std::runtime_error("sequence id out of range");
    }
    if (b.logits_first < 0 || b.logits_count < 0 || b.logits_first + b.logits_count > T)
        throw std::runtime_error("batch: logits rows out of range");

    std::vector<int32_t> slots;
    for (int64_t t = 0; t < T; ++t)
        if (b.ids[t] == cfg.image_token) slots.push_back(int32_t(t));
    const int64_t n_img = int64_t(b.image_rows.size()) / cfg.text.hidden;
    if (n_img != int64_t(slots.size()))
        throw std::runtime_error("the batch has " + std::to_string(slots.size()) + " [IMG] tokens but " +
                                 std::to_string(n_img) + " image rows");

    auto inputs = [&](const int32_t* ids, const int32_t* pos, const int32_t* seq) {
        TextInputs in;
        in.n_tokens = T;
        in.ids = ids, in.pos = pos, in.seq = seq;
        in.n_image_rows = n_img;
        in.image_rows = b.image_rows.data();
        in.image_slots = slots.data();
        in.logits_first = b.logits_first;
        in.logits_count = b.logits_count;
        in.argmax_only = b.argmax_only;
        return in;
    };
    if (n_img > 0 || b.want_hidden) {  // a one-off pass (a prompt with images, or hidden states)
        fp4::Graph g;
        const TextOutputs out =
            build_text_graph(g, cfg, model_.weights(), cache_, inputs(b.ids.data(), b.pos.data(), b.seq.data()),
                             b.want_hidden);
        return run(g, out);
    }
    if (last_ && last_->fits(b)) {
        std::copy(b.ids.begin(), b.ids.end(), last_->ids.begin());
        std::copy(b.pos.begin(), b.pos.end(), last_->pos.begin());
        std::copy(b.seq.begin(), b.seq.end(), last_->seq.begin());
    } else {
        last_.reset();
        auto pass = std::make_unique<TextPass>();
        pass->ids = b.ids, pass->pos = b.pos, pass->seq = b.seq;
        pass->logits_first = b.logits_first, pass->logits_count = b.logits_count, pass->argmax_only = b.argmax_only;
        pass->out = build_text_graph(pass->graph, cfg, model_.weights(), cache_,
                                     inputs(pass->ids.data(), pass->pos.data(), pass->seq.data()), false);
        last_ = std::move(pass);
    }
    return run(last_->graph, last_->out);
}

BatchResult Context::run(fp4::Graph& g, const TextOutputs& out) {
    fp4::Backend& be = model_.backend();
    be.compute(g);
    BatchResult r;
    if (out.logits) {
        r.logits.resize(size_t(out.logits->nelements()));
        be.read(*out.logits, r.logits.data(), r.logits.size() * sizeof(float));
    }
    if (out.argmax) {
        r.argmax.resize(size_t(out.argmax->nelements()));
        be.read(*out.argmax, r.argmax.data(), r.argmax.size() * sizeof(int32_t));
    }
    for (fp4::Tensor* h : out.hidden) {
        r.hidden.emplace_back(size_t(h->nelements()));
        be.read(*h, r.hidden.back().data(), r.hidden.back().size() * sizeof(float));
    }
    return r;
}

std::vector<float> Context::encode_images(const std::vector<Image>& images) {
    const Config& cfg = model_.config();
    if (!images.empty() && !cfg.has_vision) throw std::runtime_error("this model has no vision tower");
    std::vector<float> rows;
    for (const Image& im : images) {
        const int p = cfg.vision.patch, gh = im.height / p, gw = im.width / p;
        std::vector<int32_t> pos_rc;
        pos_rc.reserve(size_t(gh) * gw * 2);
        for (int y = 0; y < gh; ++y)
            for (int x = 0; x < gw; ++x) pos_rc.insert(pos_rc.end(), {y, x});
        fp4::Graph g;
        fp4::Tensor* out = build_vision_graph(g, cfg, model_.weights(), im.pixels.data(), im.height, im.width,
                                              pos_rc.data());
        model_.backend().compute(g);
        const size_t at = rows.size();
        rows.resize(at + size_t(out->nelements()));
        model_.backend().read(*out, rows.data() + at, size_t(out->nelements()) * sizeof(float));
    }
    return rows;
}

size_t Context::cache_row_bytes() const {
    const fp4::Tensor& k = *cache_.k.front();
    return k.nbytes() / size_t(k.rows());
}

std::vector<uint8_t> Context::read_cache(int n) {
    if (n < 0 || n > n_ctx()) throw std::out_of_range("read_cache: " + std::to_string(n) + " positions");
    const size_t part = size_t(n) * cache_row_bytes();
    std::vector<uint8_t> bytes(2 * cache_.k.size() * part);
    uint8_t* at = bytes.data();
    for (size_t l = 0; l < cache_.k.size(); ++l)
        for (const fp4::Tensor* t : {cache_.k[l].get(), cache_.v[l].get()}) {
            model_.backend().read(*t, at, part);
            at += part;
        }
    return bytes;
}

void Context::write_cache(int n, const std::vector<uint8_t>& bytes, int stored) {
    const size_t row = cache_row_bytes();
    if (n < 0 || n > stored || n > n_ctx() || bytes.size() != 2 * cache_.k.size() * size_t(stored) * row)
        throw std::out_of_range("write_cache: " + std::to_string(n) + " of " + std::to_string(stored) +
                                " positions in " + std::to_string(bytes.size()) + " bytes");
    const uint8_t* at = bytes.data();
    for (size_t l = 0; l < cache_.k.size(); ++l)
        for (fp4::Tensor* t : {cache_.k[l].get(), cache_.v[l].get()}) {
            model_.backend().write(*t, at, size_t(n) * row);
            at += size_t(stored) * row;
        }
}

void Context::drop_positions(int at, int count, int n) {
    if (at < 0 || count <= 0 || n > n_ctx() || at + count > n)
        throw std::out_of_range("drop_positions: [" + std::to_string(at) + ", +" + std::to_string(count) + ") of " +
                                std::to_string(n) + " positions");
    const size_t row = cache_row_bytes(), moved = size_t(n - at - count);
    if (moved == 0) return;
    const TextConfig& c = model_.config().text;
    std::vector<uint8_t> rows(moved * row);
    for (size_t l = 0; l < cache_.k.size(); ++l)
        for (fp4::Tensor* t : {cache_.k[l].get(), cache_.v[l].get()}) {
            model_.backend().read(*t, rows.data(), rows.size(), size_t(at + count) * row);
            if (t == cache_.k[l].get())
                fp4::rope_shift_rows(t->type, rows.data(), int64_t(moved), c.n_kv_head, c.head_dim, c.rope_theta,
                                     -int64_t(count));
            model_.backend().write(*t, rows.data(), rows.size(), size_t(at) * row);
        }
}

void check_image_tokens(const Config& cfg, const std::vector<int32_t>& ids, const std::vector<Image>& images) {
    int64_t n_tok = 0, n_rows = 0;
    for (int32_t id : ids) n_tok += id == cfg.image_token;
    for (const Image& im : images) n_rows += int64_t(im.rows()) * im.cols();
    if (n_tok != n_rows)
        throw std::runtime_error("the prompt has " + std::to_string(n_tok) + " [IMG] tokens but the " +
                                 std::to_string(images.size()) + " image(s) given need " + std::to_string(n_rows));
}

}  // namespace mistral
