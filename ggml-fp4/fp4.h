// fp4.h — the tensor/graph API of ggml-fp4: types, tensors, the ops a graph is built from, and the
// backend interface (CPU and CUDA implement it). Knows nothing about any particular model.
//
// Conventions (read these first):
//  * Tensors are dense and row-major. `ne[0]` is the innermost (column) extent, `ne[1]` rows, `ne[2]`,
//    `ne[3]` outer. A weight stored by Hugging Face as [out, in] has ne[0] = in, ne[1] = out.
//    Activations are [tokens, features]: ne[0] = features, ne[1] = tokens.
//  * Activations are always F32 on the CPU backend. Weights may be F32, BF16, F16 or NVFP4.
//  * NVFP4 weight [N rows, K cols]: `data` = packed E2M1 codes, N × K/2 bytes, even column in the low
//    nibble; `scale` = E4M3 bytes, N × K/16; `gscale` = the checkpoint's global scale (a divisor):
//    W[n,k] = e2m1(code) · e4m3(scale[n, k/16]) / gscale.
//  * A graph is built once per shape by calling the op functions on a Graph; nodes are appended in
//    creation order, which is a valid execution order. A backend allocates the intermediates and runs it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace fp4 {

enum class Type : uint8_t { F32, F16, BF16, F8_E4M3, I32, U8, NVFP4 };

const char* type_name(Type t);
// Bytes of `n` elements of type t in one row (NVFP4: n/2 code bytes; scales are separate).
size_t row_bytes(Type t, int64_t n);

// `n` F32 values stored as a KV cache's type t (F32, BF16 or F8_E4M3: round to nearest even, FP8
// saturating at ±448), and n stored values widened to F32. Other types throw std::invalid_argument.
void store_cache_values(Type t, const float* src, int64_t n, void* dst);
void load_cache_values(Type t, const void* src, int64_t n, float* dst);

enum class Op : uint8_t {
    NONE,          // leaf: a weight, an input or a persistent buffer (KV cache)
    GET_ROWS,      // src0 table [V, D] (F32/BF16/F16/NVFP4), src1 I32 ids [T]            -> F32 [T, D]
    MUL_MAT,       // src0 weight W [N, K], src1 x [M, K] F32                              -> F32 [M, N] = x·Wᵀ
    RMS_NORM,      // src0 x [M, D], src1 w [D] (F32/BF16); f[0] = eps                     -> x·rsqrt(mean(x²)+eps)·w
    ROPE,          // src0 x [M, H·Dh], src1 I32 pos [M]; i[0]=H, i[1]=Dh; f[0]=theta
                   //   rotate-half ("NeoX"): lanes (j, j+Dh/2) of every head rotate by pos·theta^(−2j/Dh)
    ROPE_2D,       // src0 x [M, H·Dh], src1 I32 [M, 2] = (row, col); i[0]=H, i[1]=Dh; f[0]=theta
                   //   f[m] = theta^(−2m/Dh), m < Dh/2; angle A[i] = row·f[2i] for i < Dh/4,
                   //   A[Dh/4+i] = col·f[2i+1]; lanes (i, i+Dh/2) rotate by A[i]
    ATTN_CACHED,   // causal attention through a KV cache; sources:
                   //   0 q [M, Hq·Dh], 1 k [M, Hkv·Dh], 2 v [M, Hkv·Dh] (new rows, already roped),
                   //   3 kcache [S·C, Hkv·Dh], 4 vcache [same] (leaves of one type: F32, BF16 or
                   //   F8_E4M3; rows are rounded to it, to nearest even, FP8 saturating at ±448),
                   //   5 I32 pos [M], 6 I32 seq [M]
                   //   i[0]=Hq, i[1]=Hkv, i[2]=Dh, i[3]=C (context per sequence); f[0] = scale
                   //   First stores row m of k/v at cache row seq[m]·C + pos[m]; then row m of q attends
                   //   cache rows seq[m]·C + [0, pos[m]] (softmax in F32). Head h uses kv head h/(Hq/Hkv).
                   //   -> F32 [M, Hq·Dh]
    ATTN_FULL,     // bidirectional attention, no cache: src0 q, src1 k, src2 v, all [M, H·Dh];
                   //   i[0]=H, i[1]=Dh; f[0]=scale                                         -> F32 [M, H·Dh]
    SWIGLU,        // src0 gate [M, F], src1 up [M, F]                                      -> silu(gate)·up
    GELU,          // src0 x: exact erf GELU 0.5·x·(1+erf(x/√2))
    ADD,           // src0 a, src1 b (same shape)                                           -> a + b
    IM2COL_PATCH,  // src0 pixels F32 [C, H, W] (ne = {W, H, C}); i[0] = patch p
                   //   -> F32 [(H/p)·(W/p), C·p·p], patches row-major, element (c·p + ky)·p + kx
    PATCH_MERGE,   // src0 x [h·w, C] (patch grid row-major); i[0]=h, i[1]=w
                   //   -> F32 [(h/2)·(w/2), 4C], v[4c + 2a + b] = x[(2R+a)·w + 2C'+b, c]
    SCATTER_ROWS,  // src0 dst [T, D], src1 rows [N, D], src2 I32 idx [N]   -> copy of dst, row idx[n] = rows[n]
    VIEW_ROWS,     // src0 x [T, D]; i[0] = first row, i[1] = count                         -> F32 [count, D]
    ARGMAX,        // src0 x [M, N] F32 -> I32 [M]: the first index of each row's largest element (NaN is
                   //   never the largest; a row of NaN gives 0)
    COUNT
};

const char* op_name(Op op);

constexpr int kMaxDims = 4;
constexpr int kMaxSrc = 7;

struct Tensor {
    Type type = Type::F32;
    int64_t ne[kMaxDims] = {1, 1, 1, 1};
    Op op = Op::NONE;
    Tensor* src[kMaxSrc] = {};
    int32_t ip[4] = {};   // integer op parameters (meaning per op, see Op)
    float fp[2] = {};     // float op parameters

    // Storage. For leaves: set by the loader (weights), by the graph (inputs, `host`), or by a backend
    // (persistent buffers). For nodes: set by the backend while it runs a graph.
    void* data = nullptr;
    void* scale = nullptr;       // NVFP4 only: E4M3 group scales on the same device as data
    float gscale = 1.0f;         // NVFP4 only: global scale (divisor)
    const void* host = nullptr;  // graph inputs: host bytes copied in by the backend before running
    bool is_output = false;      // keep after compute, readable with Backend::read
    int32_t index = -1;          // in the graph that made it: position in nodes() (ops) or inputs() (inputs)
    std::string name;

    int64_t nelements() const { return ne[0] * ne[1] * ne[2] * ne[3]; }
    int64_t rows() const { return ne[1] * ne[2] * ne[3]; }
    size_t nbytes() const;  // bytes of `data` (NVFP4: the codes only)
    size_t scale_bytes() const { return type == Type::NVFP4 ? size_t(nelements() / 16) : 0; }
};

// A graph owns its nodes and input leaves; weights and caches live elsewhere and are only referenced.
class Graph {
public:
    Graph();
    Graph(const Graph&) = delete;
    Graph& operator=(const Graph&) = delete;

    // Unique to this graph object, and a count of the changes made to it: a backend may keep what it
    // planned for one (id, revision) and run the graph again, with new input bytes, without planning anew.
    uint64_t id() const { return id_; }
    uint64_t revision() const { return revision_; }

    // Leaf whose bytes are copied from `host` when the graph runs (the caller keeps them alive).
    Tensor* input(Type t, std::vector<int64_t> ne, const void* host, const char* name = "");
    Tensor* mark_output(Tensor* t) {
        t->is_output = true;
        ++revision_;
        return t;
    }

    Tensor* get_rows(Tensor* table, Tensor* ids);
    Tensor* mul_mat(Tensor* w, Tensor* x);
    Tensor* rms_norm(Tensor* x, Tensor* w, float eps);
    Tensor* rope(Tensor* x, Tensor* pos, int n_head, int head_dim, float theta);
    Tensor* rope_2d(Tensor* x, Tensor* pos_rc, int n_head, int head_dim, float theta);
    Tensor* attn_cached(Tensor* q, Tensor* k, Tensor* v, Tensor* kcache, Tensor* vcache, Tensor* pos,
                        Tensor* seq, int n_head, int n_kv_head, int head_dim, int n_ctx, float scale);
    Tensor* attn_full(Tensor* q, Tensor* k, Tensor* v, int n_head, int head_dim, float scale);
    Tensor* swiglu(Tensor* gate, Tensor* up);
    Tensor* gelu(Tensor* x);
    Tensor* add(Tensor* a, Tensor* b);
    Tensor* im2col_patch(Tensor* pixels, int patch);
    Tensor* patch_merge(Tensor* x, int h, int w);
    Tensor* scatter_rows(Tensor* dst, Tensor* rows, Tensor* idx);
    Tensor* view_rows(Tensor* x, int64_t first, int64_t count);
    Tensor* argmax(Tensor* x);

    const std::vector<Tensor*>& nodes() const { return nodes_; }   // ops, in execution order
    const std::vector<Tensor*>& inputs() const { return inputs_; }  // leaves with `host` set

private:
    Tensor* new_node(Op op, Type type, std::vector<int64_t> ne, std::initializer_list<Tensor*> src);
    uint64_t id_, revision_ = 0;
    std::vector<std::unique_ptr<Tensor>> owned_;
    std::vector<Tensor*> nodes_;
    std::vector<Tensor*> inputs_;
};

// Makes a standalone leaf tensor (weights, caches): shape and type only, no storage.
std::unique_ptr<Tensor> make_tensor(Type t, std::vector<int64_t> ne, std::string name = "");

// Time spent on one kind of node while profiling (see Backend::set_profiling).
struct OpProfile {
    std::string what;  // op name; for MUL_MAT and GET_ROWS also the table's type and [rows x cols]
    long long calls = 0;
    double ms = 0;
    double weight_bytes = 0;  // bytes of MUL_MAT weights read (codes and scales), summed over the calls
};

// A backend: where tensors live and graphs run.
class Backend {
public:
    virtual ~Backend() = default;
    virtual const char* name() const = 0;
    // Give a weight leaf device storage and copy its bytes in. `t.data` (and `t.scale`) point at host
    // bytes on entry (e.g. an mmap) and at the backend's copy on return; the CPU backend keeps the
    // host pointers as they are (zero copy).
    virtual void upload_weight(Tensor& t) = 0;
    // Allocate zeroed persistent storage for a leaf (KV caches). Freed with the backend.
    virtual void alloc_persistent(Tensor& t) = 0;
    // Run a graph: copy inputs in, allocate intermediates, execute every node.
    virtual void compute(Graph& g) = 0;
    // Copy an output of the last computed graph, or any persistent tensor, to host memory: nbytes from
    // byte `offset` of the tensor on.
    virtual void read(const Tensor& t, void* dst, size_t nbytes, size_t offset = 0) = 0;
    // Copy host bytes into a persistent tensor (e.g. restoring a KV cache), from byte `offset` of it on.
    virtual void write(Tensor& t, const void* src, size_t nbytes, size_t offset = 0) = 0;
    virtual void set_threads(int n) { (void)n; }
    // The streaming bandwidth memory-bound kernels are measured against, bytes per second: the read
    // bandwidth of host memory on the CPU, a device-to-device copy (bytes read + written) on a GPU.
    virtual double measure_bandwidth() = 0;
    // The multiply-add rate compute-bound passes (prefill) are measured against, FLOP/s: the FMA peak of
    // the CPU's kernel set (its BF16 dot products' with BF16 activations), a GPU's rate in a large cuBLAS BF16
    // GEMM (the routine its prefill products run); 0 where it is not measured.
    virtual double measure_compute_peak() { return 0; }
    // What measure_compute_peak times, in a few words for a report.
    virtual const char* compute_peak_what() const { return "not measured"; }
    // Bytes of device (or host) memory this backend holds now: weights, caches and graph arena.
    virtual size_t memory_used() const = 0;
    // Bytes this backend could still allocate: free device memory on a GPU; on the CPU the memory the
    // kernel reports available (MemAvailable), capped by the address-space limit (ulimit -v) if any.
    virtual size_t memory_free() const = 0;
    // Returns a persistent tensor's storage (from alloc_persistent) to the backend.
    virtual void free_persistent(Tensor& t) = 0;
    // While on, compute() times every node (a GPU then waits after each, so the totals are kernel times
    // without the gaps between launches) and adds them to profile(); switching it on clears the totals.
    virtual void set_profiling(bool on) = 0;
    virtual std::vector<OpProfile> profile() const = 0;  // most time first
    // KV-cache type when the user names none (F32 on the CPU, the reference; BF16 on CUDA).
    virtual Type cache_type() const { return Type::F32; }
    // Whether upload_weight keeps using the caller's bytes instead of allocating a copy.
    virtual bool zero_copy_weights() const { return false; }
    // Rows a decode pass takes for about the cost of one (its products stay bound by reading the weights,
    // and its graph can be replayed): 1 on the CPU, where each row of a GEMV costs its own FMAs.
    virtual int decode_rows_free() const { return 1; }
};

// A backend setting from the environment (FP4_CPU_ISA, FP4_CUDA_*) with a value it does not take: the
// user's mistake, so an error wherever it is read, never a reason to fall back to another backend.
struct SettingError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// Throws SettingError for a bad FP4_CPU_ISA. With bf16_activations, products with NVFP4 and BF16 weights
// take their activations rounded to BF16, as a GPU's do: prefill and images about twice as fast where
// the CPU has AVX512-BF16 (same numerics, no gain elsewhere), at a GPU's accuracy instead of F32's.
std::unique_ptr<Backend> make_cpu_backend(int n_threads, bool bf16_activations = false);
// Null when the build has no CUDA, no GPU is present or the GPU cannot run it; `why` says which.
// Throws SettingError for a bad FP4_CUDA_* value.
std::unique_ptr<Backend> make_cuda_backend(std::string* why);
bool cuda_available();

}  // namespace fp4
