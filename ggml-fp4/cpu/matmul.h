// matmul.h — the CPU matrix product y = x·Wᵀ: the table of kernels each instruction set provides
// (matmul_scalar.cpp, matmul_avx2.cpp, matmul_avx512.cpp) and the driver that threads them.
//
// How the kernels see the data:
//  * x is first copied into a zero-padded buffer with rows of `kpad` floats (kpad a multiple of 16;
//    of `nvfp4_block` for NVFP4 weights, whose kernels may also want x reordered: by `pack_nvfp4_x`
//    for the panels, by `pack_nvfp4_gemv_x` for the GEMV, which may store other than F32 in those
//    4·kpad bytes).
//  * Few rows (M <= kGemvRows, decode): `gemv_*` decodes weight rows in registers and dots them with
//    every x row (the AVX-512 NVFP4 ones a few rows at a time, each x vector loaded serving them all).
//    Memory bound; the weights stream through once. A kernel set may take products of more rows (up to
//    `nvfp4_gemv_rows` / `dense_gemv_rows`) through its GEMV too, kGemvRows x rows per pass over the weights.
//  * More rows (prefill): `decode_*` expands a panel of kPanelRows weight rows × a block of columns to
//    F32 (in x's column order) in L1, and `gemm_panel` multiplies it with a block of x rows, so every
//    weight is decoded once per block of kRowBlock x rows. For the panels x is also interleaved in groups
//    of `gemm_lanes` rows, so that one vector load takes a column of a group: the kernel broadcasts a
//    panel value and multiplies it with vectors of x rows (outer products, no horizontal sums).
//  * NVFP4: kernels compute Σ_k e2m1·e4m3·x; the global scale is applied once per output (the GEMV
//    divides by it, the panels multiply by its inverse).
//  * BF16 activations (a backend option, off by default): products with NVFP4 and BF16 weights, whose
//    values are exact in BF16, take x rounded to BF16, the numerics of a GPU. Sets with BF16 dot products
//    run their panels on pairs of columns (`gemm_panel_pairs`); the others round x and run the F32 kernels.
#pragma once

#include <cstdint>

#include "cpu/buffer.h"
#include "cpu/cpu_features.h"
#include "cpu/thread_pool.h"
#include "fp4.h"

namespace fp4::cpu {

struct AttnTile;  // attention_tile.h

constexpr int kFmaChains = 12;  // enough independent FMAs in flight for two pipes of latency 4 (and more)
constexpr int kGemvRows = 4;      // at most this many x rows take the fused GEMV path
constexpr int kPanelRows = 8;     // weight rows decoded together
constexpr int64_t kPanelCols = 1024;  // columns per decoded panel (a multiple of 128): 32 KB, in L1
constexpr int64_t kRowBlock = 128;    // x rows that share one decoded panel
constexpr int kChunkRows = 16;        // weight rows of one thread's share of a product: 64 bytes of each y row
// Streaming kernels prefetch weight bytes this far ahead (NVFP4 scales: an eighth of it), which
// keeps enough cache misses in flight for one core to approach its share of DRAM bandwidth.
constexpr int kPrefetchBytes = 4096;

// A weight matrix of N rows × K columns as stored (NVFP4: codes, E4M3 scales, global scale).
struct WeightRef {
    Type type;
    const uint8_t* data;
    const uint8_t* scale;
    int64_t N, K;
};

// y[m·ldy + n] = Σ_k W[n, k]·x[m·ldx + k] for n in [n0, n1), m < M <= kGemvRows.
using GemvFn = void (*)(const WeightRef& w, int64_t n0, int64_t n1, const float* x, int64_t ldx, int M, float* y,
                        int64_t ldy);
// The kernel of one number of x rows: y[m·ldy + n] for n in [n0, n1), m below that number.
using GemvRowsFn = void (*)(const WeightRef& w, int64_t n0, int64_t n1, const float* x, int64_t ldx, float* y,
                            int64_t ldy);
// A GemvFn from the kernels for 1, 2, 3 and 4 x rows.
template <GemvRowsFn K1, GemvRowsFn K2, GemvRowsFn K3, GemvRowsFn K4>
void gemv_by_rows(const WeightRef& w, int64_t n0, int64_t n1, const float* x, int64_t ldx, int M, float* y,
                  int64_t ldy) {
    static_assert(kGemvRows == 4, "gemv_by_rows takes kernels for 1..4 rows");
    switch (M) {
        case 1: return K1(w, n0, n1, x, ldx, y, ldy);
        case 2: return K2(w, n0, n1, x, ldx, y, ldy);
        case 3: return K3(w, n0, n1, x, ldx, y, ldy);
        default: return K4(w, n0, n1, x, ldx, y, ldy);
    }
}
// panel[r·ldp + j] = W[n0 + r, k0 + j] (in x's column order) for r < nr, j < kb; zero past K.
using DecodeFn = void (*)(const WeightRef& w, int64_t n0, int nr, int64_t k0, int64_t kb, float* panel, int64_t ldp);
// sums[r·lds + m] += Σ_{j<kb} panel[r·ldp + j]·x(m, j) for r < nr, m < mpad (a multiple of gemm_lanes L),
// where x(m, j) = x[(m / L)·ldg + j·L + m % L]; kb a multiple of 16.
using GemmPanelFn = void (*)(const float* panel, int64_t ldp, int nr, const float* x, int64_t ldg, int64_t mpad,
                             int64_t kb, float* sums, int64_t lds);

// Pairs of columns: two BF16 values in one 32-bit slot, the first in the low half (x rounded to nearest
// even). NVFP4: in every 32 columns of the F32 order (the pack's, the decode's) slot d < 16 holds columns
// d and 16 + d. BF16 weights: slot s holds columns 2s and 2s + 1, the weights' own layout, so that their
// panels are the weight rows themselves. A pair panel has ldp slots per row and kb / 2 per block;
// x(m, slot s) = x[(m / L)·ldg + s·L + m % L].

// A thread's panel sums, sums[r·lds + m] for nc ≤ kChunkRows weight rows and `rows` x rows, times f into
// y: out[m·ldo + r]. Scalar; the AVX-512 sets transpose 16 × 16 blocks in registers instead.
void store_sums_scalar(const float* sums, int64_t lds, int nc, int64_t rows, float f, float* out, int64_t ldo);

struct Kernels {
    int64_t nvfp4_block;                                   // kpad multiple for NVFP4 weights
    void (*pack_nvfp4_x)(const float* x, int64_t K, int64_t kpad, float* out);       // x row -> decode_nvfp4's order
    void (*pack_nvfp4_gemv_x)(const float* x, int64_t K, int64_t kpad, float* out);  // x row -> gemv_nvfp4's
    GemvFn gemv_f32, gemv_f16, gemv_bf16, gemv_nvfp4;
    DecodeFn decode_f32, decode_f16, decode_bf16, decode_nvfp4;
    GemmPanelFn gemm_panel;
    int64_t gemm_lanes;  // x rows interleaved per group for gemm_panel (its vector width; 1: row-major)
    // Attention: Σ a·b and y += alpha·x for one query at a time (decode), and a flash-attention tile over
    // packed keys and values (prefill, the vision tower) with attn_tile_scratch(D) floats of scratch.
    float (*dot)(const float* a, const float* b, int64_t n);
    void (*axpy)(float alpha, const float* x, float* y, int64_t n);
    void (*attend_tile)(const AttnTile& t, float* scratch);
    void (*swiglu)(const float* g, const float* u, float* y, int64_t n);  // y = silu(g)·u (vec_math.h)
    // kFmaChains independent chains of `iters` vector FMAs each, gemm_lanes floats wide: the multiply-add
    // rate the panels can reach (fma_peak.h); returns a sum of the results, so that none is dropped.
    float (*fma_chains)(int64_t iters);
    // Products of up to this many x rows run the GEMV, kGemvRows rows at a time (one pass over the weights
    // each), instead of the panels, whose cost rises in steps of two vectors of x rows: where the GEMV's
    // passes cost less (microbench on this machine, per kernel set).
    int nvfp4_gemv_rows = kGemvRows, dense_gemv_rows = kGemvRows;
    void (*store_sums)(const float* sums, int64_t lds, int nc, int64_t rows, float f, float* out,
                       int64_t ldo) = store_sums_scalar;
    // BF16 activations on pairs of columns (null where the set has no BF16 dot product): the NVFP4 panel
    // decoded to pairs, a panel's product with x pairs (32-bit slots in float buffers, kb columns = kb / 2
    // slots), kFmaChains chains of BF16 dot products (2 multiply-adds per lane), the attention tile on
    // pairs (attention_tile.h), and the GEMV limits with these panels.
    GemvFn gemv_nvfp4_pairs = nullptr;  // gemv_nvfp4 for x already rounded to BF16
    // A packed F32 x row (n columns, a multiple of 32) as n / 2 pair slots, slot s at out[s·stride] (a lane
    // of interleaved x): columns d and 16 + d of every 32 in NVFP4's order, else 2s and 2s + 1.
    void (*pair_x)(const float* in, int64_t n, bool nvfp4, uint32_t* out, int64_t stride) = nullptr;
    DecodeFn decode_nvfp4_pairs = nullptr;
    GemmPanelFn gemm_panel_pairs = nullptr;
    float (*pair_chains)(int64_t iters) = nullptr;
    void (*attend_tile_pairs)(const AttnTile& t, float* scratch) = nullptr;  // on attn_pair_block_floats blocks
    void (*pack_pair_block)(const float* k, const float* v, int64_t ld, int64_t k0, int64_t n, int D,
                            float* out) = nullptr;  // its blocks, packed (attention_tile.h)
    int nvfp4_pair_gemv_rows = kGemvRows, dense_pair_gemv_rows = kGemvRows;
};

const Kernels& kernels_scalar();
const Kernels& kernels_avx2();
const Kernels& kernels_avx512();
const Kernels& kernels_avx512bf16();
const Kernels& kernels_for(Isa isa);

// The column order of the SIMD NVFP4 kernels: within each block of 128 columns, lane d (0..15) of
// vector j (0..7) holds column 8d + j, i.e. nibble j of the d-th 32-bit word of the block's codes.
void pack_x_nibble_order(const float* x, int64_t K, int64_t kpad, float* out);
// Natural column order, zero padded.
void pack_x_natural(const float* x, int64_t K, int64_t kpad, float* out);

// y [M, N] = x [M, K] · Wᵀ for a weight tensor of any supported type; with `bf16_x`, x rounded to BF16
// where W is NVFP4 or BF16.
void mul_mat(const Kernels& kern, ThreadPool& pool, AlignedBuffer& scratch, const Tensor& w, const float* x,
             int64_t M, float* y, bool bf16_x = false);

}  // namespace fp4::cpu
