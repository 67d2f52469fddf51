// cpu_backend.cpp — the CPU Backend: zero-copy weights, zeroed persistent buffers, and compute(), which
// plans the arena, copies the inputs in and runs the nodes in order on the thread pool.
#include "cpu/cpu_backend.h"

#include <chrono>
#include <cstring>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <unordered_set>

#include "cpu/bandwidth.h"
#include "cpu/buffer.h"
#include "cpu/fma_peak.h"
#include "cpu/graph_plan.h"
#include "cpu/host_memory.h"
#include "cpu/matmul.h"
#include "cpu/ops.h"
#include "cpu/thread_pool.h"
#include "profile.h"

namespace fp4::cpu {

namespace {

void run_node(OpContext& ctx, Tensor& t) {
    switch (t.op) {
        case Op::GET_ROWS: return op_get_rows(ctx, t);
        case Op::MUL_MAT: return op_mul_mat(ctx, t);
        case Op::RMS_NORM: return op_rms_norm(ctx, t);
        case Op::ROPE: return op_rope(ctx, t);
        case Op::ROPE_2D: return op_rope_2d(ctx, t);
        case Op::ATTN_CACHED: return op_attn_cached(ctx, t);
        case Op::ATTN_FULL: return op_attn_full(ctx, t);
        case Op::SWIGLU: return op_swiglu(ctx, t);
        case Op::GELU: return op_gelu(ctx, t);
        case Op::ADD: return op_add(ctx, t);
        case Op::IM2COL_PATCH: return op_im2col_patch(ctx, t);
        case Op::PATCH_MERGE: return op_patch_merge(ctx, t);
        case Op::SCATTER_ROWS: return op_scatter_rows(ctx, t);
        case Op::ARGMAX: return op_argmax(ctx, t);
        case Op::VIEW_ROWS:
            require_f32(*t.src[0], Op::VIEW_ROWS);
            t.data = static_cast<float*>(t.src[0]->data) + int64_t(t.ip[0]) * t.ne[0];
            return;
        case Op::NONE:
        case Op::COUNT: break;
    }
    throw std::logic_error(std::string("CPU backend: cannot run op ") + op_name(t.op));
}

class CpuBackend final : public Backend {
public:
    CpuBackend(int n_threads, Isa isa, bool bf16_activations)
        : pool_(n_threads),
          kern_(kernels_for(isa)),
          bf16_activations_(bf16_activations),
          name_(std::string("cpu (") + isa_name(isa) + (bf16_activations ? ", bf16 activations)" : ")")) {}

    const char* name() const override { return name_.c_str(); }

    void upload_weight(Tensor& t) override {
        if (!t.data || (t.type == Type::NVFP4 && !t.scale))
            throw std::invalid_argument("upload_weight: '" + t.name + "' has no host bytes");
    }

    void alloc_persistent(Tensor& t) override {
        const size_t codes = align_up(t.nbytes()), bytes = codes + t.scale_bytes();
        auto buf = std::make_unique<AlignedBuffer>(bytes, true);
        t.data = buf->data();
        if (t.type == Type::NVFP4) t.scale = static_cast<char*>(buf->data()) + codes;
        persistent_[t.data] = std::move(buf);
    }

    void compute(Graph& g) override {
        outputs_.clear();
        if (g.id() != planned_id_ || g.revision() != planned_revision_) {  // else the same graph runs again
            plan_ = plan_graph(g);
            planned_id_ = g.id(), planned_revision_ = g.revision();
        }
        char* arena = static_cast<char*>(arena_.grow(plan_.arena_bytes));
        for (auto& [t, offset] : plan_.slots) t->data = arena + offset;
        for (Tensor* t : g.inputs()) {
            if (!t->host) throw std::invalid_argument("graph input '" + t->name + "' has no host data");
            std::memcpy(t->data, t->host, t->nbytes());
        }
        OpContext ctx{pool_, kern_, scratch_, bf16_activations_};
        for (Tensor* t : g.nodes()) {
            for (Tensor* s : t->src)
                if (s && !s->data)
                    throw std::invalid_argument(std::string(op_name(t->op)) + ": source '" + s->name +
                                                "' has no storage");
            const auto t0 = std::chrono::steady_clock::now();
            run_node(ctx, *t);
            if (profiling_)
                profiler_.add(*t, std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0)
                                      .count());
        }
        // Outputs stay readable until the next compute; the other buffers are reused, so forget them.
        for (const auto* list : {&g.inputs(), &g.nodes()})
            for (Tensor* t : *list)
                if (t->is_output) outputs_.insert(t);
                else t->data = nullptr;
    }

    void read(const Tensor& t, void* dst, size_t nbytes, size_t offset) override {
        if (!outputs_.count(&t) && !persistent_.count(t.data))
            throw std::invalid_argument("read: '" + t.name + "' is neither an output of the last graph nor persistent");
        if (offset > t.nbytes() || nbytes > t.nbytes() - offset)
            throw std::invalid_argument("read: asked for more bytes than '" + t.name + "' holds");
        std::memcpy(dst, static_cast<const uint8_t*>(t.data) + offset, nbytes);
    }

    void write(Tensor& t, const void* src, size_t nbytes, size_t offset) override {
        if (!persistent_.count(t.data)) throw std::invalid_argument("write: '" + t.name + "' is not persistent");
        if (offset > t.nbytes() || nbytes > t.nbytes() - offset)
            throw std::invalid_argument("write: more bytes than '" + t.name + "' holds");
        std::memcpy(static_cast<uint8_t*>(t.data) + offset, src, nbytes);
    }

    void set_threads(int n) override { pool_.resize(n); }

    void set_profiling(bool on) override {
        if (on) profiler_.reset();
        profiling_ = on;
    }
    std::vector<OpProfile> profile() const override { return profiler_.report(); }

    double measure_bandwidth() override { return measure_memory_bandwidth(pool_, size_t(512) << 20, 3).read; }
    // With BF16 activations on a set with BF16 dot products the panels' ceiling is their rate.
    double measure_compute_peak() override { return measure_fma_peak(kern_, pool_, 10, bf16_activations_); }
    const char* compute_peak_what() const override {
        return bf16_activations_ && kern_.pair_chains ? "the CPU's BF16 dot products" : "the CPU's FMAs";
    }

    // What this backend allocated: persistent tensors, the graph arena and kernel scratch. Weights are
    // not counted: they stay in the caller's memory (zero copy).
    size_t memory_used() const override {
        size_t bytes = arena_.size() + scratch_.size();
        for (const auto& [ptr, buf] : persistent_) bytes += buf->size();
        return bytes;
    }

    size_t memory_free() const override { return host_memory_free(); }
    bool zero_copy_weights() const override { return true; }

    void free_persistent(Tensor& t) override {
        if (!persistent_.erase(t.data))
            throw std::invalid_argument("free_persistent: '" + t.name + "' is not persistent");
        t.data = nullptr;
        t.scale = nullptr;
    }

private:
    ThreadPool pool_;
    const Kernels& kern_;
    bool bf16_activations_;
    std::string name_;
    std::unordered_map<const void*, std::unique_ptr<AlignedBuffer>> persistent_;
    AlignedBuffer arena_, scratch_;
    std::unordered_set<const Tensor*> outputs_;  // of the last graph; their data points into the arena
    GraphPlan plan_;                              // of the graph last planned
    uint64_t planned_id_ = 0, planned_revision_ = 0;
    bool profiling_ = false;
    Profiler profiler_;
};

}  // namespace

std::unique_ptr<Backend> make_backend(int n_threads, Isa isa, bool bf16_activations) {
    if (!isa_supported(isa)) throw std::runtime_error(std::string("CPU backend: this CPU cannot run ") + isa_name(isa));
    return std::make_unique<CpuBackend>(n_threads, isa, bf16_activations);
}

}  // namespace fp4::cpu

namespace fp4 {

std::unique_ptr<Backend> make_cpu_backend(int n_threads, bool bf16_activations) {
    return cpu::make_backend(n_threads, cpu::isa_from_env(), bf16_activations);
}

}  // namespace fp4
