// kernels.cuh — the host-side entry points of the kernel files; cuda_backend.cu calls these for each node.
// All pointers are device pointers; every call is asynchronous on ctx.stream.
#pragma once

#include "common.cuh"

namespace fp4::cuda {

// nvfp4_layout.cu: load-time repack of a checkpoint NVFP4 weight into the tiled layout of nvfp4_tile.h,
// and its expansion to a row-major BF16 copy (times 2^-8, see nvfp4_tile.h) for cuBLAS.
void nvfp4_repack(const Ctx& c, const uint8_t* codes, const uint8_t* scales, int64_t N, int64_t K,
                  uint8_t* tiled_codes, uint8_t* tiled_scales, int* bad_scale);
void nvfp4_to_bf16(const Ctx& c, const Tensor& w, __nv_bfloat16* out);

// gemv.cu: small-M products y[M, N] = x[M, K]·Wᵀ that read every weight byte once.
constexpr int kGemvMaxRowsNvfp4 = 64;
constexpr int kGemvMaxRowsFused = 32;  // a group with a folded norm, a residual or SwiGLU (more would spill)
// Rows up to which a group folds its RMSNorm by default. The fold recomputes x·w and x² for every row
// tile, which costs little at 8 activation rows per MMA but, with 16 or 32, more instructions per weight
// tile than the bytes leave time for (scripts/gemv-sass.sh: q/k/v 181 and 272 instead of 107 and 144;
// gate/up 125 and 176, spilling, instead of 89 and 108): above it the norm is one small kernel of its own.
constexpr int kGemvFoldNormRows = 8;
constexpr int kGemvMaxRowsDense = 8;
constexpr int kMaxGroupProducts = 3;
void gemv_nvfp4(const Ctx& c, const Tensor& w, const float* x, int64_t M, float* y);
// A fused product group (fusion.h) in one launch: NVFP4 weights of the same K, all reading x [M, K].
struct GemvGroup {
    const Tensor* w[kMaxGroupProducts] = {};
    void* y[kMaxGroupProducts] = {};  // y[i] = x·W[i]ᵀ, [M, N_i]; with an epilogue only y[0] is written
    int n = 0;
    const void* x = nullptr;
    bool x_bf16 = false;  // x is BF16 (a BF16 link, fusion.h), else F32
    bool y_bf16 = false;  // y is stored as BF16, rounded to nearest even (not with a residual)
    int64_t M = 0;
    const Tensor* norm = nullptr;       // RMSNorm weight [K]: x is normalised (eps below) before the products
    float eps = 0;
    const float* residual = nullptr;    // one product: y[0] = residual + x·W[0]ᵀ
    bool swiglu = false;                // two products: y[0] = silu(x·W[0]ᵀ)·(x·W[1]ᵀ)
};
void gemv_nvfp4_group(const Ctx& c, const GemvGroup& group);
void gemv_dense(const Ctx& c, const Tensor& w, const float* x, int64_t M, float* y);

// matmul.cu: MUL_MAT for any M and weight type (GEMV for small M, cuBLAS otherwise).
void mul_mat(const Ctx& c, const Tensor& w, const float* x, int64_t M, float* y);

// attention.cu
constexpr int kAttnGemmRowsMin = 16;  // query rows of one sequence from which ATTN_CACHED uses cuBLAS GEMMs
struct AttnCachedArgs {
    const float *q, *k, *v;
    void *kcache, *vcache;           // rows of `cache_type`: F32, BF16 or F8_E4M3
    Type cache_type;
    const int32_t *pos, *seq;        // device
    const int32_t *pos_h, *seq_h;    // host copies of the same (for the split and path choices)
    int64_t M;
    int n_head, n_kv_head, head_dim, n_ctx;
    float scale;
    float rope_theta = 0;            // when set, q and k are not rotated yet: ROPE by pos joins the cache store
};
void attn_cached(const Ctx& c, const AttnCachedArgs& a, float* out);
void attn_full(const Ctx& c, const float* q, const float* k, const float* v, int64_t M, int n_head,
               int head_dim, float scale, float* out);

// flash_attention.cu: attention of M query rows over L keys without a score matrix (used with
// FP4_CUDA_FLASH=1 for ATTN_FULL and cached prefills). Row r, head h: q[r·ldq + h·Dh ..]; key j of kv head
// h / (n_head / n_kv_head): k[j·ldkv + hk·Dh ..] (F32, BF16 or FP8 E4M3, v alike); keys beyond limit[r]
// (when given) are masked.
struct FlashAttnArgs {
    const float* q;
    const void *k, *v;
    Type kv_type;
    float* o;
    int64_t ldq, ldkv, ldo, M, L;
    int n_head, n_kv_head, head_dim;
    float scale;
    const int32_t* limit;  // device, per query row, or null
};
bool flash_attn_supports(int head_dim);
void flash_attn(const Ctx& c, const FlashAttnArgs& a);

// elementwise.cu
void get_rows(const Ctx& c, const Tensor& table, const int32_t* ids, int64_t T, float* out);
// out is F32, or BF16 (rounded to nearest even) when out_bf16.
void rms_norm(const Ctx& c, const float* x, const void* w, Type wt, int64_t M, int64_t D, float eps, void* out,
              bool out_bf16 = false);
void rope(const Ctx& c, const float* x, const int32_t* pos, int64_t M, int H, int Dh, float theta, float* out);
void rope_2d(const Ctx& c, const float* x, const int32_t* pos_rc, int64_t M, int H, int Dh, float theta,
             float* out);
void swiglu(const Ctx& c, const float* gate, const float* up, int64_t n, float* out);
void gelu(const Ctx& c, const float* x, int64_t n, float* out);
void add(const Ctx& c, const float* a, const float* b, int64_t n, float* out);
void im2col_patch(const Ctx& c, const float* px, int64_t C, int64_t H, int64_t W, int p, float* out);
void patch_merge(const Ctx& c, const float* x, int h, int w, int64_t C, float* out);
void scatter_rows(const Ctx& c, const float* rows, const int32_t* idx, int64_t N, int64_t D, float* out);
void argmax(const Ctx& c, const float* x, int64_t M, int64_t N, int32_t* out);
void to_bf16(const Ctx& c, const float* x, int64_t n, __nv_bfloat16* out);
void to_f32(const Ctx& c, const void* x, Type t, int64_t n, float* out);

}  // namespace fp4::cuda
