// context.h — a model bound to a backend (weights uploaded once) and an inference context over it:
// the KV cache of one or more sequences, text passes (prefill, decode, batched decode) and image encoding.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "fp4.h"
#include "image.h"
#include "mistral3.h"
#include "mistral3_graph.h"

namespace mistral {

class Model {
public:
    // Uploads every weight to `backend`; `storage` keeps the bytes the weights point at alive (the
    // checkpoint's mappings, or synthetic buffers). `progress(done, total)` reports uploaded bytes.
    Model(Config cfg, Weights weights, std::shared_ptr<void> storage, std::unique_ptr<fp4::Backend> backend,
          const std::function<void(size_t, size_t)>& progress = {});

    const Config& config() const { return cfg_; }
    const Weights& weights() const { return weights_; }
    fp4::Backend& backend() { return *backend_; }

private:
    Config cfg_;
    Weights weights_;
    std::shared_ptr<void> storage_;
    std::unique_ptr<fp4::Backend> backend_;
};

// One pass over a batch of tokens. Every token belongs to a sequence and sits at a position; tokens of
// one sequence must come in order and be contiguous with what the cache already holds for it.
struct Batch {
    std::vector<int32_t> ids, pos, seq;
    std::vector<float> image_rows;   // [n, D] rows replacing the batch's [IMG] tokens, in order
    int64_t logits_first = 0, logits_count = 0;
    bool want_hidden = false;
    bool argmax_only = false;  // return only each logits row's argmax (greedy tokens, chosen on the device)

    // Tokens `ids` of sequence `s` starting at position `p0`, logits for the last `n_logits` of them.
    static Batch sequence(const std::vector<int32_t>& ids, int32_t p0, int32_t s = 0, int64_t n_logits = 1);
};

struct BatchResult {
    std::vector<float> logits;                // [logits_count, vocab]
    std::vector<int32_t> argmax;              // [logits_count] instead, with argmax_only
    std::vector<std::vector<float>> hidden;   // [n_layer + 1][T·D] when asked
};

// Device memory a context needs besides the weights: its KV cache and a reserve for the activations of a
// pass of up to `batch` tokens.
struct ContextMemory {
    size_t kv = 0, activations = 0;
};
ContextMemory context_memory(const TextConfig& c, int n_ctx, int n_seq, fp4::Type kv_type, int64_t batch = 512);
// The largest context of at most `wanted` tokens (below it, a multiple of 256) whose cache and
// activations fit in `free` bytes, or 0 when not even 256 tokens do: what a default context shrinks to
// on a card too small for it.
int fitting_context(const TextConfig& c, int wanted, int n_seq, fp4::Type kv_type, size_t free, int64_t batch = 512);

class Context {
public:
    // A KV cache of `kv_type` (default: the backend's) for n_seq sequences of n_ctx positions, for passes of
    // up to `batch` tokens. Refuses, naming the sizes, a context whose cache and activations do not fit the
    // backend's free memory.
    Context(Model& model, int n_ctx, int n_seq = 1, std::optional<fp4::Type> kv_type = std::nullopt,
            int64_t batch = 512);
    ~Context();
    Context(const Context&) = delete;
    Context& operator=(const Context&) = delete;

    int n_ctx() const { return cache_.n_ctx; }
    int n_seq() const { return cache_.n_seq; }
    fp4::Type kv_type() const { return cache_.k.front()->type; }
    Model& model() { return model_; }

    BatchResult eval(const Batch& b);

    // Projected rows [rows·cols, D] of each image, concatenated in order.
    std::vector<float> encode_images(const std::vector<Image>& images);

    // Sequence 0's cache at positions [0, n), as stored (kv_type()): layer 0's K rows, its V rows, then
    // layer 1's, and so on. write_cache(n, bytes, stored) puts back the first n positions of what
    // read_cache(stored) gave, in this context or another of the same model and cache type (a prompt cache).
    std::vector<uint8_t> read_cache(int n);
    void write_cache(int n, const std::vector<uint8_t>& bytes, int stored);
    size_t cache_row_bytes() const;  // one position of one layer's K (or V)

    // Positions [at, at + count) leave sequence 0's cache of n positions, and those after them move down
    // by `count`, their keys turned back as many positions (llama.cpp's context shift): what stays is what
    // the shorter prompt would have stored to rounding in layer 0, while deeper layers keep what the
    // dropped tokens contributed through attention. One host round trip of the moved rows.
    void drop_positions(int at, int count, int n);

private:
    // The last text pass's graph with its own copy of the inputs: a batch of the same shape (the next
    // decode step) runs it again with new ids and positions instead of building it anew, and the backend
    // then skips planning it.
    struct TextPass;
    BatchResult run(fp4::Graph& g, const TextOutputs& out);

    Model& model_;
    KvCache cache_;
    std::unique_ptr<TextPass> last_;
};

// Checks that the [IMG] tokens of `ids` equal the images' rows·cols in total (a clear error otherwise).
void check_image_tokens(const Config& cfg, const std::vector<int32_t>& ids, const std::vector<Image>& images);

}  // namespace mistral
