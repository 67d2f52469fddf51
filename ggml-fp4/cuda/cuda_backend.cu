// cuda_backend.cu — the CUDA Backend: weights and KV caches in device memory, graph intermediates in one
// device arena planned by liveness (regrown only when a graph needs more), one stream, the dispatch of
// every op to its kernel file, and five speed-ups, each on unless its variable is 0 (any value but 0 or 1
// is an error): (FP4_CUDA_FUSE) decode-sized products run as fused groups (fusion.h: norm → q/k/v, o +
// residual, norm → gate/up → SwiGLU, down + residual; a norm folds into its products for up to
// FP4_CUDA_FOLD_NORM_ROWS rows, 8 unless set), the q/k rotations join the KV-cache store and decode
// attention takes a GQA group per block, (FP4_CUDA_PDL) every kernel is scheduled while the kernel before
// it finishes (the NVFP4 GEMVs load their first weight tiles meanwhile), (FP4_CUDA_FLASH) flash attention
// for prefills and the vision tower, and (FP4_CUDA_GRAPHS) CUDA-graph replay of decode steps; with fused
// groups, (FP4_CUDA_BF16_X) the activations a lone norm or a SwiGLU epilogue makes for the next group are
// stored as BF16 (fusion.h's BF16 links: the same bits, half the bytes). The KV cache is BF16 unless the
// user names another type.
#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "arena_plan.h"
#include "fusion.h"
#include "graph_replay.cuh"
#include "kernels.cuh"
#include "numeric.h"
#include "nvfp4.cuh"
#include "profile.h"

namespace fp4 {
namespace cuda {

void fail(const std::string& what) { throw std::runtime_error("CUDA backend: " + what); }

Scratch::~Scratch() {
    for (void* p : ptr_) cudaFree(p);
}

void* Scratch::get(Slot slot, size_t bytes, bool zeroed) {
    if (bytes > size_[slot]) {
        FP4_CHECK(cudaDeviceSynchronize());  // earlier kernels may still use the old buffer
        FP4_CHECK(cudaFree(ptr_[slot]));
        ptr_[slot] = nullptr, size_[slot] = 0;
        FP4_CHECK(cudaMalloc(&ptr_[slot], bytes));
        if (zeroed) FP4_CHECK(cudaMemset(ptr_[slot], 0, bytes));
        size_[slot] = bytes;
        ++generation_;
    }
    return ptr_[slot];
}

__global__ void probe_kernel(int* flag) { *flag = 1; }

// The backend's settings, read once from the environment before anything is allocated. A bad value is a
// SettingError (an error even under --device auto, never a silent default or a fall-back to the CPU).
struct Settings {
    // The speed-ups: NAME=1 on, NAME=0 off (to compare without one, or to rule it out), unset: on.
    bool fuse = flag("FP4_CUDA_FUSE"), pdl = flag("FP4_CUDA_PDL"), flash = flag("FP4_CUDA_FLASH"),
         graphs = flag("FP4_CUDA_GRAPHS"), bf16_x = flag("FP4_CUDA_BF16_X");
    int fold_norm_rows = rows("FP4_CUDA_FOLD_NORM_ROWS", kGemvFoldNormRows, kGemvMaxRowsFused);

    static bool flag(const char* name) {
        const char* v = std::getenv(name);
        if (!v) return true;
        if (std::strcmp(v, "0") == 0 || std::strcmp(v, "1") == 0) return *v == '1';
        throw SettingError(std::string(name) + "=" + v + ": expected 1 (on) or 0 (off)");
    }
    // Unset: the default; else an integer in [0, most].
    static int rows(const char* name, int by_default, int most) {
        const char* v = std::getenv(name);
        if (!v) return by_default;
        const char* end = v + std::strlen(v);
        int n = 0;
        const auto [ptr, ec] = std::from_chars(v, end, n);
        if (ec != std::errc() || ptr != end || n < 0 || n > most)
            throw SettingError(std::string(name) + "=" + v + ": expected a number of rows from 0 to " +
                               std::to_string(most));
        return n;
    }
};

class CudaBackend final : public Backend {
public:
    CudaBackend() {
        fusion_.max_norm_rows = settings_.fold_norm_rows;
        FP4_CHECK(cudaSetDevice(0));
        cudaDeviceProp prop;
        FP4_CHECK(cudaGetDeviceProperties(&prop, 0));
        const int major = prop.major, minor = prop.minor;
        name_ = std::string("CUDA (") + prop.name + ")";  // the card, in every table and log line
        if (major < 8)  // the BF16 mma.sync of the GEMV and flash attention
            fail(std::string("this GPU (") + prop.name + ") has compute capability " + std::to_string(major) + "." +
                 std::to_string(minor) + "; the CUDA backend needs 8.0 or newer (Ampere, Ada, Hopper, Blackwell)");
        ctx_.sms = prop.multiProcessorCount;
        FP4_CHECK(cudaStreamCreateWithFlags(&ctx_.stream, cudaStreamNonBlocking));
        FP4_CHECK(cublasCreate(&ctx_.blas));
        FP4_CHECK(cublasSetStream(ctx_.blas, ctx_.stream));
        ctx_.scratch = &scratch_;
        ctx_.pdl = major >= 9 && settings_.pdl;  // programmatic dependent launch: Hopper on
        ctx_.flash = settings_.flash;
        ctx_.fuse = settings_.fuse;
        fusion_.max_rows = ctx_.fuse ? kGemvMaxRowsFused : 0;
        fusion_.bf16_links = settings_.bf16_x;
        // A kernel must run: fails here when the build has no code for this GPU.
        int* flag = static_cast<int*>(device_alloc(sizeof(int)));
        launch_kernel("probe kernel (is this GPU's architecture in FP4_CUDA_ARCHS?)", probe_kernel, 1, 1, 0,
                      ctx_.stream, flag);
        FP4_CHECK(cudaStreamSynchronize(ctx_.stream));
    }
    ~CudaBackend() override {
        cudaStreamSynchronize(ctx_.stream);
        for (void* p : owned_) cudaFree(p);
        cudaFree(arena_);
        cudaFreeHost(staging_);
        cublasDestroy(ctx_.blas);
        cudaStreamDestroy(ctx_.stream);
    }

    const char* name() const override { return name_.c_str(); }

    void upload_weight(Tensor& t) override {
        if (!t.data) fail("weight '" + t.name + "' has no bytes to upload");
        if (t.type != Type::NVFP4) {
            // Vectors (norm scales) are widened to F32, exactly: the fused products read them as F32.
            std::vector<float> wide;
            if (t.rows() == 1 && (t.type == Type::BF16 || t.type == Type::F16)) {
                const auto* bytes = static_cast<const unsigned char*>(t.data);  // a checkpoint may misalign it
                for (int64_t i = 0; i < t.ne[0]; ++i) {
                    uint16_t h;
                    std::memcpy(&h, bytes + 2 * i, 2);
                    wide.push_back(t.type == Type::BF16 ? bf16_to_f32(h) : f16_to_f32(h));
                }
                t.type = Type::F32;
                t.data = wide.data();
            }
            void* d = device_alloc(t.nbytes());
            FP4_CHECK(cudaMemcpyAsync(d, t.data, t.nbytes(), cudaMemcpyHostToDevice, ctx_.stream));
            FP4_CHECK(cudaStreamSynchronize(ctx_.stream));
            t.data = d;
            return;
        }
        if (!t.scale) fail("NVFP4 weight '" + t.name + "' has no scales");
        const int64_t N = t.rows(), K = t.ne[0];
        void *codes = nullptr, *scales = nullptr;
        int* bad = nullptr;
        FP4_CHECK(cudaMalloc(&codes, t.nbytes()));
        FP4_CHECK(cudaMalloc(&scales, t.scale_bytes()));
        FP4_CHECK(cudaMalloc(&bad, sizeof(int)));
        FP4_CHECK(cudaMemcpyAsync(codes, t.data, t.nbytes(), cudaMemcpyHostToDevice, ctx_.stream));
        FP4_CHECK(cudaMemcpyAsync(scales, t.scale, t.scale_bytes(), cudaMemcpyHostToDevice, ctx_.stream));
        FP4_CHECK(cudaMemsetAsync(bad, 0, sizeof(int), ctx_.stream));
        void* tiled_codes = device_alloc(nvfp4::code_bytes(N, K));
        void* tiled_scales = device_alloc(nvfp4::scale_bytes(N, K));
        nvfp4_repack(ctx_, static_cast<const uint8_t*>(codes), static_cast<const uint8_t*>(scales), N, K,
                     static_cast<uint8_t*>(tiled_codes), static_cast<uint8_t*>(tiled_scales), bad);
        int bad_h = 0;
        FP4_CHECK(cudaMemcpyAsync(&bad_h, bad, sizeof(int), cudaMemcpyDeviceToHost, ctx_.stream));
        FP4_CHECK(cudaStreamSynchronize(ctx_.stream));
        FP4_CHECK(cudaFree(codes));
        FP4_CHECK(cudaFree(scales));
        FP4_CHECK(cudaFree(bad));
        if (bad_h) fail("NVFP4 weight '" + t.name + "' has NaN E4M3 scales");
        t.data = tiled_codes;
        t.scale = tiled_scales;
    }

    void alloc_persistent(Tensor& t) override {
        if (t.type == Type::NVFP4) fail("persistent NVFP4 tensors are not supported ('" + t.name + "')");
        t.data = device_alloc(t.nbytes());
        FP4_CHECK(cudaMemsetAsync(t.data, 0, t.nbytes(), ctx_.stream));
        FP4_CHECK(cudaStreamSynchronize(ctx_.stream));
    }

    void compute(Graph& g) override {
        if (g.id() != planned_id_ || g.revision() != planned_revision_) plan(g);  // else the same graph again
        for (const Tensor* t : g.inputs()) {
            if (!t->host) fail("graph input '" + t->name + "' has no host data");
            std::memcpy(static_cast<char*>(staging_) + arena_plan_.offset_of(*t), t->host, t->nbytes());
        }
        for (Tensor* t : g.nodes()) validate(*t);
        if (profiling_) return run_timed(steps_, span_);
        if (settings_.graphs && key_generation_ != scratch_.generation()) {  // scratch buffers moved: a new key
            key_ = replay_key(g);
            key_generation_ = scratch_.generation();
        }
        replay_.run(ctx_.stream, settings_.graphs ? key_ : std::string(), [&] {
            if (span_) FP4_CHECK(cudaMemcpyAsync(arena_, staging_, span_, cudaMemcpyHostToDevice, ctx_.stream));
            for (const Step& st : steps_) run(st);
        });
        FP4_CHECK(cudaStreamSynchronize(ctx_.stream));
    }

    void set_profiling(bool on) override {
        if (on) profiler_.reset();
        profiling_ = on;
    }
    std::vector<OpProfile> profile() const override { return profiler_.report(); }

    void read(const Tensor& t, void* dst, size_t nbytes, size_t offset) override {
        if (!t.data || offset > t.nbytes() || nbytes > t.nbytes() - offset)
            fail("read of '" + t.name + "': no storage or too many bytes");
        FP4_CHECK(cudaMemcpyAsync(dst, static_cast<const uint8_t*>(t.data) + offset, nbytes, cudaMemcpyDeviceToHost,
                                  ctx_.stream));
        FP4_CHECK(cudaStreamSynchronize(ctx_.stream));
    }

    void write(Tensor& t, const void* src, size_t nbytes, size_t offset) override {
        if (!t.data || offset > t.nbytes() || nbytes > t.nbytes() - offset)
            fail("write of '" + t.name + "': no storage or too many bytes");
        FP4_CHECK(cudaMemcpyAsync(static_cast<uint8_t*>(t.data) + offset, src, nbytes, cudaMemcpyHostToDevice,
                                  ctx_.stream));
        FP4_CHECK(cudaStreamSynchronize(ctx_.stream));
    }

    void free_persistent(Tensor& t) override {
        auto it = std::find(owned_.begin(), owned_.end(), t.data);
        if (it == owned_.end()) fail("free_persistent: '" + t.name + "' was not allocated by this backend");
        FP4_CHECK(cudaStreamSynchronize(ctx_.stream));
        FP4_CHECK(cudaFree(*it));
        owned_.erase(it);
        t.data = nullptr;
    }

    // Device-to-device copies of 1 GiB, best of 5, counting bytes read and written.
    double measure_bandwidth() override {
        const size_t n = size_t(1) << 30;
        void *a = nullptr, *b = nullptr;
        FP4_CHECK(cudaMalloc(&a, n));
        FP4_CHECK(cudaMalloc(&b, n));
        const float best =
            best_ms(5, [&] { FP4_CHECK(cudaMemcpyAsync(b, a, n, cudaMemcpyDeviceToDevice, ctx_.stream)); });
        FP4_CHECK(cudaFree(a));
        FP4_CHECK(cudaFree(b));
        return 2.0 * double(n) / (double(best) * 1e-3);
    }

    // A prefill's ceiling: the rate of cuBLAS's BF16 GEMM with F32 sums (what prefill products run) on
    // square problems, n doubling from 256 until one product takes 20 ms or n is 8192 (the size of
    // performance.md's 750 TFLOP/s on an H200, its PyTorch figure); best of 3 at the last size. A size that
    // does not fit the free memory ends the search with the rate before it.
    double measure_compute_peak() override {
        double rate = 0;
        for (int64_t n = 256; n <= 8192; n *= 2) {
            void *a = nullptr, *b = nullptr, *c = nullptr;
            const size_t bytes = size_t(n * n) * 2;
            if (cudaMalloc(&a, bytes) != cudaSuccess || cudaMalloc(&b, bytes) != cudaSuccess ||
                cudaMalloc(&c, 2 * bytes) != cudaSuccess) {
                (void)cudaGetLastError();  // out of memory: keep the rate of the size before
                cudaFree(a), cudaFree(b), cudaFree(c);
                break;
            }
            FP4_CHECK(cudaMemsetAsync(a, 0x3c, bytes, ctx_.stream));  // BF16 0x3c3c ≈ 0.0115 everywhere
            FP4_CHECK(cudaMemsetAsync(b, 0x3c, bytes, ctx_.stream));
            const float alpha = 1.0f, beta = 0.0f;
            const float best = best_ms(3, [&] {
                FP4_CHECK(cublasGemmEx(ctx_.blas, CUBLAS_OP_T, CUBLAS_OP_N, int(n), int(n), int(n), &alpha, a,
                                       CUDA_R_16BF, int(n), b, CUDA_R_16BF, int(n), &beta, c, CUDA_R_32F, int(n),
                                       CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
            });
            FP4_CHECK(cudaFree(a));
            FP4_CHECK(cudaFree(b));
            FP4_CHECK(cudaFree(c));
            rate = 2.0 * double(n) * double(n) * double(n) / (double(best) * 1e-3);
            if (best >= 20.0f) break;
        }
        return rate;
    }
    const char* compute_peak_what() const override { return "a large cuBLAS BF16 GEMM"; }

    size_t memory_used() const override {
        size_t free_b = 0, total_b = 0;
        FP4_CHECK(cudaMemGetInfo(&free_b, &total_b));
        return total_b - free_b;
    }

    size_t memory_free() const override {
        size_t free_b = 0, total_b = 0;
        FP4_CHECK(cudaMemGetInfo(&free_b, &total_b));
        return free_b;
    }

    // Half the bytes of F32 per token, read by every decode step: the cache the issue's 131072-token
    // context on an 80 GB card assumes (20 GiB at the 24B shapes).
    Type cache_type() const override { return Type::BF16; }
    // Up to 8 rows the products run as one MMA row block of the GEMV (and decode attention, replayable).
    int decode_rows_free() const override { return kGemvMaxRowsDense; }

private:
    // The fastest of `runs` timed runs of what `enqueue` puts on the stream, in ms, after one warm-up.
    template <typename F>
    float best_ms(int runs, F&& enqueue) {
        cudaEvent_t e0, e1;
        FP4_CHECK(cudaEventCreate(&e0));
        FP4_CHECK(cudaEventCreate(&e1));
        float best = 1e30f;
        for (int i = 0; i <= runs; ++i) {
            FP4_CHECK(cudaEventRecord(e0, ctx_.stream));
            enqueue();
            FP4_CHECK(cudaEventRecord(e1, ctx_.stream));
            FP4_CHECK(cudaEventSynchronize(e1));
            float ms = 0;
            FP4_CHECK(cudaEventElapsedTime(&ms, e0, e1));
            if (i > 0) best = std::min(best, ms);
        }
        cudaEventDestroy(e0);
        cudaEventDestroy(e1);
        return best;
    }

    void* device_alloc(size_t n) {
        void* p = nullptr;
        FP4_CHECK(cudaMalloc(&p, std::max<size_t>(n, 1)));
        owned_.push_back(p);
        return p;
    }

    static const float* f32(const Tensor* t) {
        if (t->type != Type::F32) fail(std::string(op_name(t->op)) + " input '" + t->name + "' must be F32");
        if (!t->data) fail("tensor '" + t->name + "' has no device storage (upload or allocate it first)");
        return static_cast<const float*>(t->data);
    }
    // The storage of a BF16 link (an F32 graph tensor whose producer stores BF16: fusion.h).
    static const void* stored(const Tensor* t) {
        if (!t->data) fail("tensor '" + t->name + "' has no device storage");
        return t->data;
    }
    static const int32_t* i32(const Tensor* t) {
        if (t->type != Type::I32 || !t->data) fail("'" + t->name + "' must be an I32 graph input");
        return static_cast<const int32_t*>(t->data);
    }
    // Host copy of an I32 graph input, for index checks and launch decisions.
    static const int32_t* i32_host(const Tensor* t, Op op) {
        if (t->type != Type::I32 || !t->host) fail(std::string(op_name(op)) + ": indices must be an I32 graph input");
        return static_cast<const int32_t*>(t->host);
    }
    static void check_indices(const Tensor* idx, Op op, int64_t count, int64_t limit) {
        const int32_t* h = i32_host(idx, op);
        for (int64_t i = 0; i < count; ++i)
            if (h[i] < 0 || h[i] >= limit) fail(std::string(op_name(op)) + ": index out of range");
    }

    // Steps, arena offsets and staging of a graph not planned before (or changed since): nodes get their
    // buffers in the arena (regrown when too small) and inputs their place in the pinned staging copy.
    void plan(Graph& g) {
        planned_id_ = 0;  // until planned
        steps_ = plan_steps(g, fusion_);
        arena_plan_ = plan_arena(g, steps_);
        if (arena_plan_.bytes > arena_bytes_) {
            FP4_CHECK(cudaStreamSynchronize(ctx_.stream));
            FP4_CHECK(cudaFree(arena_));
            arena_ = nullptr, arena_bytes_ = 0;
            FP4_CHECK(cudaMalloc(&arena_, arena_plan_.bytes));
            arena_bytes_ = arena_plan_.bytes;
        }
        auto place = [&](Tensor* t) {  // nodes inside a fused step have no buffer
            const size_t off = arena_plan_.offset_of(*t);
            t->data = off == ArenaPlan::kNone ? nullptr : static_cast<char*>(arena_) + off;
        };
        for (Tensor* t : g.inputs()) place(t);
        for (Tensor* t : g.nodes()) place(t);
        // Inputs are gathered in pinned memory at their arena offsets and go over in one copy.
        span_ = 0;
        for (const Tensor* t : g.inputs()) span_ = std::max(span_, arena_plan_.offset_of(*t) + t->nbytes());
        if (span_ > staging_bytes_) {
            FP4_CHECK(cudaStreamSynchronize(ctx_.stream));
            FP4_CHECK(cudaFreeHost(staging_));
            staging_ = nullptr, staging_bytes_ = 0;
            FP4_CHECK(cudaMallocHost(&staging_, span_));
            staging_bytes_ = span_;
        }
        key_generation_ = ~uint64_t(0);  // the replay key is made again on the next run
        planned_id_ = g.id(), planned_revision_ = g.revision();
    }

    // compute() while profiling: every step between two events, waiting for each (no replay).
    void run_timed(const std::vector<Step>& steps, size_t span) {
        if (span) FP4_CHECK(cudaMemcpyAsync(arena_, staging_, span, cudaMemcpyHostToDevice, ctx_.stream));
        cudaEvent_t e0, e1;
        FP4_CHECK(cudaEventCreate(&e0));
        FP4_CHECK(cudaEventCreate(&e1));
        try {
            for (const Step& st : steps) {
                FP4_CHECK(cudaEventRecord(e0, ctx_.stream));
                run(st);
                FP4_CHECK(cudaEventRecord(e1, ctx_.stream));
                FP4_CHECK(cudaEventSynchronize(e1));
                float ms = 0;
                FP4_CHECK(cudaEventElapsedTime(&ms, e0, e1));
                profiler_.add(st, double(ms));
            }
        } catch (...) {
            cudaEventDestroy(e0);
            cudaEventDestroy(e1);
            throw;
        }
        cudaEventDestroy(e0);
        cudaEventDestroy(e1);
    }

    // Host-side checks of a node's index inputs (kept out of run(): a replayed graph skips run()).
    static void validate(const Tensor& t) {
        Tensor* const* s = t.src;
        switch (t.op) {
            case Op::GET_ROWS: return check_indices(s[1], t.op, s[1]->ne[0], s[0]->rows());
            case Op::ATTN_CACHED: {
                const int64_t M = s[0]->rows(), C = t.ip[3];
                check_indices(s[5], t.op, M, C);
                return check_indices(s[6], t.op, M, s[3]->rows() / C);
            }
            case Op::SCATTER_ROWS: return check_indices(s[2], t.op, s[2]->ne[0], s[0]->rows());
            default: return;
        }
    }

    // What the work enqueued for `g` depends on besides its inputs' bytes: every node's op, shapes and
    // parameters, the addresses of its buffers (arena, staging, scratch, weights, caches). Empty when `g`
    // takes a path that reads host values to choose its launches or calls cuBLAS (products of more than
    // kGemvMaxRowsDense rows, prefill attention, ATTN_FULL): those graphs are not captured.
    std::string replay_key(const Graph& g) const {
        std::string k;
        k.reserve(g.nodes().size() * 160);
        auto put = [&k](const auto& v) { k.append(reinterpret_cast<const char*>(&v), sizeof v); };
        put(arena_), put(staging_), put(scratch_.generation());
        for (const Tensor* t : g.inputs()) put(t->type), put(t->ne), put(t->data);
        for (const Tensor* t : g.nodes()) {
            if ((t->op == Op::MUL_MAT && t->src[1]->rows() > kGemvMaxRowsDense) ||
                (t->op == Op::ATTN_CACHED && t->src[0]->rows() >= kAttnGemmRowsMin) || t->op == Op::ATTN_FULL)
                return {};
            put(t->op), put(t->type), put(t->ne), put(t->ip), put(t->fp), put(t->data);
            for (const Tensor* s : t->src) {
                if (s && (s->op != Op::NONE || s->host)) {  // a graph tensor, by kind and index
                    put(s->op == Op::NONE), put(s->index);
                } else {  // a leaf: weight or cache (or no source)
                    put(s);
                    if (s) put(s->data), put(s->scale), put(s->gscale), put(s->type), put(s->ne);
                }
            }
        }
        return k;
    }

    void run(const Step& st) {
        if (!st.fused()) return run(*st.nodes.front(), st.bf16_out);
        if (st.attention) return run_attention(*st.attention, st.attention->src[0]->src[0],
                                               st.attention->src[1]->src[0], st.attention->src[0]->fp[0]);
        GemvGroup grp;
        for (const Tensor* p : st.products) {
            if (!p->src[0]->data) fail("MUL_MAT weight '" + p->src[0]->name + "' was not uploaded");
            grp.w[grp.n] = p->src[0], grp.y[grp.n++] = p->data;
        }
        grp.x = st.bf16_in ? stored(st.input()) : f32(st.input()), grp.M = st.input()->rows();
        grp.x_bf16 = st.bf16_in, grp.y_bf16 = st.bf16_out;
        if (st.norm) {
            if (!st.norm->src[1]->data) fail("RMS_NORM weight '" + st.norm->src[1]->name + "' was not uploaded");
            grp.norm = st.norm->src[1], grp.eps = st.norm->fp[0];
        }
        if (st.epilogue) {
            grp.y[0] = st.epilogue->data;
            grp.swiglu = st.epilogue->op == Op::SWIGLU;
            if (!grp.swiglu) grp.residual = f32(st.residual());
        }
        gemv_nvfp4_group(ctx_, grp);
    }

    // ATTN_CACHED of node t with queries q and keys k; a non-zero theta means they are not rotated yet
    // (a rope group: the rotation by t's positions joins the cache store).
    void run_attention(const Tensor& t, const Tensor* q, const Tensor* k, float theta) {
        Tensor* const* s = t.src;
        if (s[4]->type != s[3]->type) fail("ATTN_CACHED: the K and V caches differ in type");
        if (!s[3]->data || !s[4]->data) fail("ATTN_CACHED: the caches have no device storage");
        AttnCachedArgs a{f32(q), f32(k), f32(s[2]), s[3]->data, s[4]->data, s[3]->type,
                         i32(s[5]), i32(s[6]), i32_host(s[5], t.op), i32_host(s[6], t.op),
                         s[0]->rows(), t.ip[0], t.ip[1], t.ip[2], t.ip[3], t.fp[0], theta};
        attn_cached(ctx_, a, static_cast<float*>(t.data));
    }

    // A node alone; bf16_out: its output is a BF16 link (RMS_NORM only).
    void run(Tensor& t, bool bf16_out = false) {
        Tensor* const* s = t.src;
        float* out = static_cast<float*>(t.data);
        if (bf16_out && t.op != Op::RMS_NORM) fail(std::string(op_name(t.op)) + " cannot store BF16");
        switch (t.op) {
            case Op::GET_ROWS:
                if (!s[0]->data) fail("GET_ROWS table '" + s[0]->name + "' was not uploaded");
                return get_rows(ctx_, *s[0], i32(s[1]), s[1]->ne[0], out);
            case Op::MUL_MAT:
                if (!s[0]->data) fail("MUL_MAT weight '" + s[0]->name + "' was not uploaded");
                return mul_mat(ctx_, *s[0], f32(s[1]), s[1]->rows(), out);
            case Op::RMS_NORM:
                if (!s[1]->data) fail("RMS_NORM weight '" + s[1]->name + "' was not uploaded");
                return rms_norm(ctx_, f32(s[0]), s[1]->data, s[1]->type, s[0]->rows(), s[0]->ne[0], t.fp[0], out,
                                bf16_out);
            case Op::ROPE:
                return rope(ctx_, f32(s[0]), i32(s[1]), s[0]->rows(), t.ip[0], t.ip[1], t.fp[0], out);
            case Op::ROPE_2D:
                return rope_2d(ctx_, f32(s[0]), i32(s[1]), s[0]->rows(), t.ip[0], t.ip[1], t.fp[0], out);
            case Op::ATTN_CACHED: return run_attention(t, s[0], s[1], 0.0f);
            case Op::ATTN_FULL:
                return attn_full(ctx_, f32(s[0]), f32(s[1]), f32(s[2]), s[0]->rows(), t.ip[0], t.ip[1], t.fp[0], out);
            case Op::SWIGLU: return swiglu(ctx_, f32(s[0]), f32(s[1]), t.nelements(), out);
            case Op::GELU: return gelu(ctx_, f32(s[0]), t.nelements(), out);
            case Op::ADD: return add(ctx_, f32(s[0]), f32(s[1]), t.nelements(), out);
            case Op::IM2COL_PATCH:
                return im2col_patch(ctx_, f32(s[0]), s[0]->ne[2], s[0]->ne[1], s[0]->ne[0], t.ip[0], out);
            case Op::PATCH_MERGE: return patch_merge(ctx_, f32(s[0]), t.ip[0], t.ip[1], s[0]->ne[0], out);
            case Op::SCATTER_ROWS:
                FP4_CHECK(cudaMemcpyAsync(out, f32(s[0]), t.nbytes(), cudaMemcpyDeviceToDevice, ctx_.stream));
                return scatter_rows(ctx_, f32(s[1]), i32(s[2]), s[1]->rows(), s[1]->ne[0], out);
            case Op::ARGMAX:
                return argmax(ctx_, f32(s[0]), s[0]->rows(), s[0]->ne[0], static_cast<int32_t*>(t.data));
            case Op::VIEW_ROWS:
                FP4_CHECK(cudaMemcpyAsync(out, f32(s[0]) + int64_t(t.ip[0]) * s[0]->ne[0], t.nbytes(),
                                          cudaMemcpyDeviceToDevice, ctx_.stream));
                return;
            case Op::NONE:
            case Op::COUNT: break;
        }
        fail(std::string("unsupported op ") + op_name(t.op));
    }

    const Settings settings_;  // first: read before any other member is made
    std::string name_;  // "CUDA (" + the card's name + ")"
    Ctx ctx_;
    Scratch scratch_;
    GraphReplay replay_;
    bool profiling_ = false;
    Profiler profiler_;
    FusionRules fusion_{Type::NVFP4, 0, kMaxGroupProducts};  // max_rows: set unless FP4_CUDA_FUSE=0
    std::vector<void*> owned_;
    // The graph last planned: its steps, arena offsets, staged input bytes and CUDA-graph replay key (made
    // for the scratch buffers of key_generation_).
    uint64_t planned_id_ = 0, planned_revision_ = 0;
    std::vector<Step> steps_;
    ArenaPlan arena_plan_;
    size_t span_ = 0;
    std::string key_;
    uint64_t key_generation_ = 0;
    void* arena_ = nullptr;
    size_t arena_bytes_ = 0;
    void* staging_ = nullptr;  // pinned host copy of the inputs
    size_t staging_bytes_ = 0;
};

}  // namespace cuda

bool cuda_available() {
    int n = 0;
    return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

std::unique_ptr<Backend> make_cuda_backend(std::string* why) {
    int n = 0;
    const cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n == 0) {
        if (why) *why = e != cudaSuccess ? std::string("no usable CUDA device: ") + cudaGetErrorString(e)
                                         : std::string("no CUDA device");
        return nullptr;
    }
    try {
        return std::make_unique<cuda::CudaBackend>();
    } catch (const SettingError&) {
        throw;
    } catch (const std::exception& ex) {
        if (why) *why = ex.what();
        return nullptr;
    }
}

}  // namespace fp4
