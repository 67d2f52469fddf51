// gemv.cu — small-M matrix products y[M, N] = x[M, K]·Wᵀ (decode), each weight byte read once.
//  * NVFP4 (M ≤ 64, fused groups M ≤ 32): tensor cores with the weights as the A operand ("swap AB"): a
//    warp walks the K tiles of 16-row tiles, decodes each lane's fragment in registers (nvfp4_tile.h) and
//    issues one m16n8k16 per 16 columns and per 8 activation rows, so M = 1..8 costs the same. A lane takes
//    one scale group of a tile: four 16-byte loads of activations and one pair of scales for all its
//    fragments, ~89 instructions per tile at M ≤ 8 (scripts/gemv-sass.sh). Each warp keeps P tiles per row tile
//    in flight (a register ring) so that a multiprocessor has ~50-70 KB of loads outstanding. The warps of a
//    block split K and add their partial sums in shared memory; the global scale is applied once per output.
//    The warp count is the largest that keeps every block resident at once (no tail wave).
//    One launch serves a fused group (fusion.h): up to three weights of the same K one after another in
//    the grid (q/k/v), an RMSNorm folded into the activations (x·w rounded to BF16 for the MMA, the row's
//    1/rms applied to the sums: each warp adds up x² over the columns it reads anyway), and an epilogue
//    that adds a residual or, with the block taking row tile b of both gate and up, applies SwiGLU.
//    Activations come as F32 (rounded to BF16 pairs for the MMAs) or, where the kernel before already
//    rounded them (fusion.h's BF16 links: a norm run alone, a SwiGLU epilogue), as BF16: two 16-byte loads
//    per activation row and tile instead of four, and no conversions (10 instructions fewer per tile and 8
//    activation rows, scripts/gemv-sass.sh; half the activation bytes a block reads from L2). The epilogue
//    can store BF16 too.
//    With FP4_CUDA_PDL=1 the kernel is launched with programmatic dependent launch: its first weight tiles
//    are in flight before the kernel that writes its activations has finished.
//  * F32/BF16/F16 (M ≤ 8): CUDA cores, one warp per pair of rows, 16-byte loads, F32 accumulation.
#include <algorithm>
#include <array>
#include <type_traits>

#include "kernels.cuh"
#include "mma.cuh"
#include "nvfp4.cuh"

namespace fp4::cuda {

using namespace nvfp4;

// One product of a group: its tiles, its output and its scale, and the first block that works on it.
struct GemvSegment {
    const uint4* codes;
    const uint16_t* scales;
    void* y;  // [M, N], F32 or (GemvArgs::y_bf16) BF16
    int64_t N, row_tiles;
    float out_scale;  // 2^8 / gscale
    int first_block;
};
struct GemvArgs {
    GemvSegment seg[kMaxGroupProducts];
    int n_seg;
    const void* x;  // [M, K], F32 or (the kernel's XB) BF16
    int M, K, KT;
    bool y_bf16;  // the outputs are stored as BF16 (rounded to nearest even)
    const float* norm_w;  // RMSNorm weight [K] folded into x
    float eps;
    const float* residual;  // Epilogue::kAdd: [M, N] added to seg[0]'s product
};
// What a block does with its sums: store them, add a residual (one product), or store silu(gate)·up of
// segments 0 and 1 (the block then takes row tile b of both). Compile-time, as is the folded norm: the
// plain product keeps the registers (and occupancy) of a kernel without either.
enum class Epilogue { kStore, kAdd, kSwiglu };

// Shared memory of a block: partial sums [warps][R·NB·4][32], then the warps' x² sums [warps][NB·8] and
// the rows' 1/rms [NB·8].
template <int NB, int R>
constexpr size_t gemv_smem(int warps) {
    return (size_t(warps) * (R * NB * 4 * 32 + NB * 8) + NB * 8) * sizeof(float);
}

// An opaque copy of a pointer: ptxas can no longer recompute it from the kernel's parameters, which it
// otherwise does inside the main loop at ~5 integer instructions per load.
template <typename T>
__device__ __forceinline__ void keep_in_register(T*& p) {
#ifndef FP4_CUDA_EMU
    asm("" : "+l"(p));
#else
    (void)p;
#endif
}

template <int NB, int R, int P, Epilogue E, bool NORM, bool XB>
__global__ void __launch_bounds__(512) gemv_nvfp4_kernel(const __grid_constant__ GemvArgs a) {
    using X = std::conditional_t<XB, __nv_bfloat16, float>;
    float* red = dynamic_smem<float>();
    static_assert(E != Epilogue::kSwiglu || R == 2, "SwiGLU pairs two row tiles");
    static_assert(!(XB && NORM), "a folded norm reads the F32 activations");
    constexpr int V = R * NB * 4;
    constexpr bool kSw = E == Epilogue::kSwiglu;
    const int W = blockDim.x >> 5, warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int K = a.K, KT = a.KT, col0 = tile_col(t, 0, 0, 0);  // this lane's first column in a tile
    int s = 0;
    if (!kSw)
        while (s + 1 < a.n_seg && int(blockIdx.x) >= a.seg[s + 1].first_block) ++s;
    const int64_t b = int64_t(blockIdx.x) - a.seg[s].first_block;
    // Row tile r of this block: tile_of(r) of segment s, or with SwiGLU tile b of segment r; past the last
    // tile, the first one of the block is read (and its results dropped). Each lane walks its own 16 bytes
    // of codes and 2 bytes of scales per tile, 32 of each apart.
    auto tile_of = [&](int r) { return kSw ? b : b * R + r; };
    const uint4* codes[R];
    const uint16_t* scales[R];
#pragma unroll
    for (int r = 0; r < R; ++r) {
        const GemvSegment& S = a.seg[kSw ? r : s];
        const int64_t first = (tile_of(r) < S.row_tiles ? tile_of(r) : tile_of(0)) * KT * 32 + lane;
        codes[r] = S.codes + first, scales[r] = S.scales + first;
        keep_in_register(codes[r]), keep_in_register(scales[r]);
    }
    // This lane's activations: 16 consecutive columns (its scale group t) of row 8nb + g of each tile; rows
    // m ≥ M of the product are never stored, so their lanes may read any valid row.
    const X* xr[NB];
#pragma unroll
    for (int nb = 0; nb < NB; ++nb) {
        xr[nb] = static_cast<const X*>(a.x) + int64_t(min(nb * 8 + g, a.M - 1)) * K + col0;
        keep_in_register(xr[nb]);
    }
    const float* nw = NORM ? a.norm_w + col0 : nullptr;  // norm weights of the same columns
    float acc[R][NB][4] = {};
    float ss[NB] = {};  // x² over the columns this lane reads, when a norm is folded
    auto load = [&](int kt, uint4* qd, uint16_t* sd) {
#pragma unroll
        for (int r = 0; r < R; ++r) {
            qd[r] = __ldcs(codes[r] + kt * 32);
            sd[r] = __ldg(scales[r] + kt * 32);
        }
    };
    // `in`: this lane's scale group lies within K (false only in a last, partial tile: K is a multiple of 16).
    auto compute = [&](int kt, const uint4* q, const uint16_t* sc, bool in) {
        uint32_t bf[4][NB][2];  // B fragments of MMA kk: activation row 8nb + g, columns tile_col(t, kk, ..)
#pragma unroll
        for (int nb = 0; nb < NB; ++nb) {
            if constexpr (XB) {  // BF16 pairs already: columns 4kk, 4kk + 1 in word 2kk, 4kk + 2, 4kk + 3 next
                uint4 h[2];
#pragma unroll
                for (int i = 0; i < 2; ++i)
                    h[i] = in ? __ldca(reinterpret_cast<const uint4*>(xr[nb] + kt * kTileCols) + i)
                              : make_uint4(0u, 0u, 0u, 0u);
#pragma unroll
                for (int i = 0; i < 2; ++i) {
                    bf[2 * i][nb][0] = h[i].x, bf[2 * i][nb][1] = h[i].y;
                    bf[2 * i + 1][nb][0] = h[i].z, bf[2 * i + 1][nb][1] = h[i].w;
                }
            } else {
                float4 v[4];
#pragma unroll
                for (int kk = 0; kk < 4; ++kk)  // not __ldg: under PDL the kernel before writes x while this one runs
                    v[kk] = in ? __ldca(reinterpret_cast<const float4*>(xr[nb] + kt * kTileCols) + kk)
                               : make_float4(0.f, 0.f, 0.f, 0.f);
                if (NORM)  // x² of the raw values; the MMA gets them times the norm weights
#pragma unroll
                    for (int kk = 0; kk < 4; ++kk) {
                        const float4 w = in ? __ldg(reinterpret_cast<const float4*>(nw + kt * kTileCols) + kk)
                                            : make_float4(0.f, 0.f, 0.f, 0.f);
                        ss[nb] = fmaf(v[kk].w, v[kk].w,
                                      fmaf(v[kk].z, v[kk].z, fmaf(v[kk].y, v[kk].y, fmaf(v[kk].x, v[kk].x, ss[nb]))));
                        v[kk].x *= w.x, v[kk].y *= w.y, v[kk].z *= w.z, v[kk].w *= w.w;
                    }
#pragma unroll
                for (int kk = 0; kk < 4; ++kk)
                    b_fragments(v[kk].x, v[kk].y, v[kk].z, v[kk].w, bf[kk][nb][0], bf[kk][nb][1]);
            }
        }
#pragma unroll
        for (int r = 0; r < R; ++r) {
            uint32_t sg, sg8;
            scale_pairs(sc[r], sg, sg8);
            const uint32_t words[4] = {q[r].x, q[r].y, q[r].z, q[r].w};
#pragma unroll
            for (int kk = 0; kk < 4; ++kk) {
                uint32_t af[4];
                a_fragments(words[kk], sg, sg8, af);
#pragma unroll
                for (int nb = 0; nb < NB; ++nb) mma_bf16(acc[r][nb], af, bf[kk][nb][0], bf[kk][nb][1]);
            }
        }
    };

    // A ring of P tiles per row tile in flight over the whole tiles: stage j is consumed, then refilled with
    // the tile P·W ahead. The first weight tiles are requested before waiting for the kernel that writes x
    // (launched with programmatic dependent launch, this overlaps that kernel's tail). A last, partial
    // tile is done on its own after the ring, so the ring's activation loads need no bounds checks.
    const int whole = K / kTileCols;
    uint4 q[P][R];
    uint16_t sc[P][R];
#pragma unroll
    for (int j = 0; j < P; ++j)
        if (warp + j * W < whole) load(warp + j * W, q[j], sc[j]);
    pdl_wait();
    for (int kt0 = warp; kt0 < whole; kt0 += P * W) {
#pragma unroll
        for (int j = 0; j < P; ++j) {
            const int kt = kt0 + j * W;
            if (kt < whole) {
                compute(kt, q[j], sc[j], true);
                if (kt + P * W < whole) load(kt + P * W, q[j], sc[j]);
            }
        }
    }
    if (whole < KT && warp == whole % W) {
        load(whole, q[0], sc[0]);
        compute(whole, q[0], sc[0], whole * kTileCols + col0 < K);
    }

    pdl_trigger();
    float* mine = red + warp * V * 32;
#pragma unroll
    for (int r = 0; r < R; ++r)
#pragma unroll
        for (int nb = 0; nb < NB; ++nb)
#pragma unroll
            for (int c = 0; c < 4; ++c) mine[((r * NB + nb) * 4 + c) * 32 + lane] = acc[r][nb][c];
    float* ssq = red + W * V * 32;  // [W][NB·8]
    float* inv = ssq + W * NB * 8;  // [NB·8]
    if (NORM)
#pragma unroll
        for (int nb = 0; nb < NB; ++nb) {
            float v = ss[nb];
            v += __shfl_xor_sync(0xffffffffu, v, 1);
            v += __shfl_xor_sync(0xffffffffu, v, 2);
            if (t == 0) ssq[warp * NB * 8 + nb * 8 + g] = v;
        }
    __syncthreads();
    // The sums over warps, in place in warp 0's slots (each thread reads and writes only its own e).
    for (int e = threadIdx.x; e < V * 32; e += blockDim.x) {
        float sum = 0.f;
        for (int w = 0; w < W; ++w) sum += red[w * V * 32 + e];
        red[e] = sum;
    }
    if (NORM)
        for (int m = threadIdx.x; m < NB * 8; m += blockDim.x) {
            float sq = 0.f;
            for (int w = 0; w < W; ++w) sq += ssq[w * NB * 8 + m];
            inv[m] = 1.0f / sqrtf(sq / float(K) + a.eps);
        }
    __syncthreads();
    // With SwiGLU the values of row tile 1 (up) pair with those of row tile 0 (gate), V/2·32 apart.
    const int values = kSw ? V / 2 * 32 : V * 32;
    for (int e = threadIdx.x; e < values; e += blockDim.x) {
        const int l = e & 31, v = e >> 5, c = v & 3, nb = (v >> 2) % NB, r = (v >> 2) / NB;
        const GemvSegment& S = a.seg[kSw ? 0 : s];
        const int64_t rt = tile_of(r), n = rt * kTileRows + (l >> 2) + (c >= 2 ? 8 : 0);
        const int m = nb * 8 + 2 * (l & 3) + (c & 1);
        if (rt >= S.row_tiles || n >= S.N || m >= a.M) continue;
        const float norm = NORM ? inv[m] : 1.0f;
        const int64_t o = int64_t(m) * S.N + n;
        float y = red[e] * S.out_scale * norm;
        if (kSw) {
            const float up = red[e + V / 2 * 32] * a.seg[1].out_scale * norm;
            y = y / (1.0f + expf(-y)) * up;
        } else if (E == Epilogue::kAdd) {
            y += a.residual[o];
        }
        if (a.y_bf16) static_cast<__nv_bfloat16*>(S.y)[o] = __float2bfloat16_rn(y);
        else static_cast<float*>(S.y)[o] = y;
    }
}

// Warps per block: the most that still let every block be resident at once (no tail wave: down has only
// 320 row tiles, so a second partial wave cost ~20% there), found with the occupancy calculator once per
// kernel and warp count.
template <int NB, int R, int P, Epilogue E, bool NORM, bool XB>
static void launch_nvfp4(const Ctx& c, const GemvArgs& a, int64_t blocks) {
    constexpr auto kernel = gemv_nvfp4_kernel<NB, R, P, E, NORM, XB>;
    const GemvSegment& last = a.seg[a.n_seg - 1];
    if (blocks != (E == Epilogue::kSwiglu ? a.seg[0].row_tiles : last.first_block + (last.row_tiles + R - 1) / R))
        fail("gemv_nvfp4: the grid was sized for another number of row tiles per block");
    static const std::array<int, 17> occ = [&] {
        std::array<int, 17> o{};
        FP4_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(gemv_smem<NB, R>(16))));
        for (int w = 1; w <= 16; ++w)
            FP4_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&o[w], kernel, w * 32, gemv_smem<NB, R>(w)));
        return o;
    }();
    int warps = std::clamp(a.KT, 1, 4);  // more blocks than fit at once anyway
    for (int w = std::min(16, a.KT); w >= 1; --w)
        if (blocks <= int64_t(c.sms) * occ[w]) {
            warps = w;
            break;
        }
    launch_kernel("gemv_nvfp4", kernel, dim3(unsigned(blocks)), dim3(unsigned(warps * 32)), gemv_smem<NB, R>(warps), c,
                  a);
}

// The kernel for M rows: 8 activation rows per MMA column block (NB), R row tiles per block (two_tiles:
// R = 2, as gemv_nvfp4_group sized the grid; launch_nvfp4 checks that they agree); XB: BF16 activations.
template <Epilogue E, bool NORM, bool XB>
static void launch_for_rows(const Ctx& c, const GemvArgs& a, int64_t blocks, bool two_tiles) {
    if constexpr (E == Epilogue::kSwiglu) {
        if (a.M <= 8) launch_nvfp4<1, 2, 4, E, NORM, XB>(c, a, blocks);
        else if (a.M <= 16) launch_nvfp4<2, 2, 2, E, NORM, XB>(c, a, blocks);
        else launch_nvfp4<4, 2, 1, E, NORM, XB>(c, a, blocks);  // a deeper ring would spill
    } else if constexpr (E == Epilogue::kStore && !NORM) {
        if (a.M <= 8 && two_tiles) launch_nvfp4<1, 2, 4, E, NORM, XB>(c, a, blocks);
        else if (a.M <= 8) launch_nvfp4<1, 1, 4, E, NORM, XB>(c, a, blocks);
        else if (a.M <= 16 && two_tiles) launch_nvfp4<2, 2, 2, E, NORM, XB>(c, a, blocks);
        else if (a.M <= 16) launch_nvfp4<2, 1, 4, E, NORM, XB>(c, a, blocks);
        else if (a.M <= 32) launch_nvfp4<4, 1, 2, E, NORM, XB>(c, a, blocks);
        else if constexpr (!XB) launch_nvfp4<8, 1, 1, E, NORM, XB>(c, a, blocks);  // a second stage would spill
        else fail("gemv_nvfp4: BF16 activations come from fused groups, of at most 32 rows");
    } else {  // fused groups of q/k/v, o or down size: one row tile per block
        if (a.M <= 8) launch_nvfp4<1, 1, 4, E, NORM, XB>(c, a, blocks);
        else if (a.M <= 16) launch_nvfp4<2, 1, 4, E, NORM, XB>(c, a, blocks);
        else launch_nvfp4<4, 1, NORM ? 1 : 2, E, NORM, XB>(c, a, blocks);
    }
}

// The kernels of one epilogue: with the norm folded (F32 activations), or on F32 or BF16 activations.
template <Epilogue E>
static void launch_epilogue(const Ctx& c, const GemvArgs& a, int64_t blocks, bool two_tiles, bool norm, bool xb) {
    if (norm) launch_for_rows<E, true, false>(c, a, blocks, two_tiles);
    else if (xb) launch_for_rows<E, false, true>(c, a, blocks, two_tiles);
    else launch_for_rows<E, false, false>(c, a, blocks, two_tiles);
}

void gemv_nvfp4_group(const Ctx& c, const GemvGroup& grp) {
    if (grp.n < 1 || grp.n > kMaxGroupProducts || (grp.swiglu && grp.n != 2) || (grp.residual && grp.n != 1))
        fail("gemv_nvfp4: malformed product group");
    const bool fused = grp.norm || grp.residual || grp.swiglu;
    if (grp.M > (fused ? kGemvMaxRowsFused : kGemvMaxRowsNvfp4)) fail("gemv_nvfp4: too many rows");
    if (grp.M <= 0) return;  // the kernel reads activation row min(m, M - 1)
    if (grp.x_bf16 && grp.norm) fail("gemv_nvfp4: a folded norm reads F32 activations");
    if (grp.y_bf16 && grp.residual) fail("gemv_nvfp4: a sum with the residual is stored as F32");
    GemvArgs a{};
    a.n_seg = grp.n, a.x = grp.x, a.M = int(grp.M), a.y_bf16 = grp.y_bf16;
    const int64_t K = grp.w[0]->ne[0];
    if (K % 16 != 0 || K > (int64_t(1) << 24)) fail("gemv_nvfp4: K must be a multiple of 16 below 2^24");
    if (reinterpret_cast<uintptr_t>(grp.x) % 16 != 0 || (grp.norm && reinterpret_cast<uintptr_t>(grp.norm->data) % 16))
        fail("gemv_nvfp4: activations and norm weights must be 16-byte aligned");
    a.K = int(K), a.KT = int(col_tiles(K));
    if (grp.norm) {
        if (grp.norm->type != Type::F32) fail("gemv_nvfp4: a folded norm weight must be F32 (upload widens it)");
        a.norm_w = static_cast<const float*>(grp.norm->data), a.eps = grp.eps;
    }
    a.residual = grp.residual;
    int64_t row_tiles = 0;
    for (int i = 0; i < grp.n; ++i) {
        const Tensor& w = *grp.w[i];
        if (w.type != Type::NVFP4 || w.ne[0] != K) fail("gemv_nvfp4: weights of one group differ");
        a.seg[i] = {static_cast<const uint4*>(w.data), static_cast<const uint16_t*>(w.scale), grp.y[i], w.ne[1],
                    padded_rows(w.ne[1]) / kTileRows, kOutScale / w.gscale, 0};
        row_tiles += a.seg[i].row_tiles;
    }
    if (grp.swiglu && a.seg[0].N != a.seg[1].N) fail("gemv_nvfp4: gate and up differ in rows");
    // Plain products of up to 16 rows take two row tiles per block once there are enough to fill the GPU
    // eight times over (launch_for_rows has R = 2 kernels for exactly these cases); SwiGLU always pairs two.
    const bool two_tiles =
        !grp.norm && !grp.residual && !grp.swiglu && grp.M <= 16 && row_tiles >= 8 * int64_t(c.sms);
    const int R = grp.swiglu || two_tiles ? 2 : 1;
    int64_t blocks = 0;
    for (int i = 0; i < grp.n; ++i) {
        a.seg[i].first_block = int(blocks);
        if (!grp.swiglu || i == 0) blocks += grp.swiglu ? a.seg[i].row_tiles : (a.seg[i].row_tiles + R - 1) / R;
    }
    const bool norm = grp.norm != nullptr;
    if (grp.swiglu) launch_epilogue<Epilogue::kSwiglu>(c, a, blocks, true, norm, grp.x_bf16);
    else if (grp.residual) launch_epilogue<Epilogue::kAdd>(c, a, blocks, false, norm, grp.x_bf16);
    else launch_epilogue<Epilogue::kStore>(c, a, blocks, two_tiles, norm, grp.x_bf16);
}

void gemv_nvfp4(const Ctx& c, const Tensor& w, const float* x, int64_t M, float* y) {
    GemvGroup grp;
    grp.w[0] = &w, grp.y[0] = y, grp.n = 1, grp.x = x, grp.M = M;
    gemv_nvfp4_group(c, grp);
}

// Dense weights. E elements of type T per 16-byte chunk; MT activation rows at most, R weight rows per warp.
template <typename T> __device__ __forceinline__ float to_float(T v);
template <> __device__ __forceinline__ float to_float(float v) { return v; }
template <> __device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }
template <> __device__ __forceinline__ float to_float(__half v) { return __half2float(v); }

template <typename T, int MT, int R>
__global__ void gemv_dense_kernel(const T* __restrict__ w, const float* __restrict__ x, float* __restrict__ y,
                                  int M, int64_t N, int64_t K) {
    constexpr int E = 16 / sizeof(T);
    pdl_start();
    const int lane = threadIdx.x & 31;
    const int64_t n0 = (int64_t(blockIdx.x) * (blockDim.x >> 5) + (threadIdx.x >> 5)) * R;
    if (n0 >= N) return;
    float acc[R][MT] = {};
    const int64_t chunks = K % E == 0 ? K / E : 0;  // rows are 16-byte aligned only then
    for (int64_t ch = lane; ch < chunks; ch += 32) {
        float xv[MT][E];
#pragma unroll
        for (int m = 0; m < MT; ++m)
#pragma unroll
            for (int e = 0; e < E; e += 4) {
                float4 v = m < M ? *reinterpret_cast<const float4*>(x + m * K + ch * E + e) : make_float4(0, 0, 0, 0);
                xv[m][e] = v.x, xv[m][e + 1] = v.y, xv[m][e + 2] = v.z, xv[m][e + 3] = v.w;
            }
#pragma unroll
        for (int r = 0; r < R; ++r) {
            if (n0 + r >= N) break;
            uint4 raw = __ldcs(reinterpret_cast<const uint4*>(w + (n0 + r) * K) + ch);
            const T* wv = reinterpret_cast<const T*>(&raw);
#pragma unroll
            for (int e = 0; e < E; ++e) {
                const float wf = to_float(wv[e]);
#pragma unroll
                for (int m = 0; m < MT; ++m) acc[r][m] += wf * xv[m][e];
            }
        }
    }
    for (int64_t k = chunks * E + lane; k < K; k += 32)
#pragma unroll
        for (int r = 0; r < R; ++r) {
            if (n0 + r >= N) break;
            const float wf = to_float(w[(n0 + r) * K + k]);
#pragma unroll
            for (int m = 0; m < MT; ++m)
                if (m < M) acc[r][m] += wf * x[m * K + k];
        }
#pragma unroll
    for (int r = 0; r < R; ++r)
#pragma unroll
        for (int m = 0; m < MT; ++m) {
            const float v = warp_sum(acc[r][m]);
            if (lane == 0 && m < M && n0 + r < N) y[m * N + n0 + r] = v;
        }
}

template <typename T, int MT>
static void launch_dense(const Ctx& c, const Tensor& w, const float* x, int M, float* y) {
    constexpr int R = 2, kWarps = 8;
    const int64_t N = w.ne[1], K = w.ne[0];
    launch_kernel("gemv dense", gemv_dense_kernel<T, MT, R>, blocks_for((N + R - 1) / R, kWarps), kWarps * 32, 0,
                  c, static_cast<const T*>(w.data), x, y, M, N, K);
}

template <typename T>
static void dense_rows(const Ctx& c, const Tensor& w, const float* x, int M, float* y) {
    if (M == 1) launch_dense<T, 1>(c, w, x, M, y);
    else if (M == 2) launch_dense<T, 2>(c, w, x, M, y);
    else if (M <= 4) launch_dense<T, 4>(c, w, x, M, y);
    else launch_dense<T, 8>(c, w, x, M, y);
}

void gemv_dense(const Ctx& c, const Tensor& w, const float* x, int64_t M, float* y) {
    if (M > kGemvMaxRowsDense) fail("gemv_dense: too many rows");
    switch (w.type) {
        case Type::F32: return dense_rows<float>(c, w, x, int(M), y);
        case Type::BF16: return dense_rows<__nv_bfloat16>(c, w, x, int(M), y);
        case Type::F16: return dense_rows<__half>(c, w, x, int(M), y);
        default: fail(std::string("gemv_dense: unsupported weight type ") + type_name(w.type));
    }
}

}  // namespace fp4::cuda
