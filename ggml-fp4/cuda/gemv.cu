// gemv.cu — small-M matrix products y[M, N] = x[M, K]·Wᵀ (decode), each weight byte read once.
//  * NVFP4 (M ≤ 32): tensor cores with the weights as the A operand ("swap AB"): a warp walks the K tiles of
//    16-row tiles, decodes each lane's fragment in registers (nvfp4.cuh) and issues one m16n8k16 per
//    16 columns and per 8 activation rows, so M = 1..8 costs the same. Each warp keeps P tiles per row tile
//    in flight (a register ring) so that a multiprocessor has ~50-70 KB of loads outstanding. The warps of a
//    block split K and add their partial sums in shared memory; the global scale is applied once per output.
//    The warp count is the largest that keeps every block resident at once (no tail wave).
//    FP4_GEMV=old selects the previous schedule (one tile ahead, ~40 warps per multiprocessor) for A/B.
//  * F32/BF16/F16 (M ≤ 8): CUDA cores, one warp per pair of rows, 16-byte loads, F32 accumulation.
#include <algorithm>
#include <array>
#include <cstdlib>
#include <cstring>

#include "kernels.cuh"
#include "nvfp4.cuh"

namespace fp4::cuda {

using namespace nvfp4;

template <int NB, int R, int P>
__global__ void __launch_bounds__(512) gemv_nvfp4_kernel(const uint4* __restrict__ codes,
                                                         const uint2* __restrict__ scales,
                                                         const float* __restrict__ x, float* __restrict__ y,
                                                         int M, int64_t N, int64_t K, int64_t KT,
                                                         int64_t row_tiles, float out_scale) {
    extern __shared__ float red[];  // [warps][R·NB·4 values][32 lanes]
    constexpr int V = R * NB * 4;
    const int W = blockDim.x >> 5, warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int64_t rt0 = int64_t(blockIdx.x) * R;

    float acc[R][NB][4] = {};
    auto load = [&](int64_t kt, uint4* qd, uint2* sd) {
#pragma unroll
        for (int r = 0; r < R; ++r) {
            int64_t tile = (rt0 + r < row_tiles ? rt0 + r : rt0) * KT + kt;
            qd[r] = __ldcs(codes + tile * 32 + lane);
            sd[r] = __ldg(scales + tile * 8 + g);
        }
    };
    auto compute = [&](int64_t kt, const uint4* q, const uint2* s) {
        uint32_t b[4][NB][2];  // activations as B fragments: x[m = 8nb + g][k = 2t.., 2t+8..]
#pragma unroll
        for (int nb = 0; nb < NB; ++nb) {
            // Columns m ≥ M of the product are never stored, so their lanes may read any valid row.
            const int m = min(nb * 8 + g, M - 1);
            const float* xr = x + int64_t(m) * K + kt * kTileCols + 2 * t;
#pragma unroll
            for (int kk = 0; kk < 4; ++kk) {
                const int64_t k = kt * kTileCols + kk * 16 + 2 * t;
                float2 v0 = make_float2(0.f, 0.f), v1 = v0;
                if (k < K) v0 = *reinterpret_cast<const float2*>(xr + kk * 16);
                if (k + 8 < K) v1 = *reinterpret_cast<const float2*>(xr + kk * 16 + 8);
                b[kk][nb][0] = pack_bf16x2(v0.x, v0.y);
                b[kk][nb][1] = pack_bf16x2(v1.x, v1.y);
            }
        }
#pragma unroll
        for (int r = 0; r < R; ++r) {
            const uint32_t words[4] = {q[r].x, q[r].y, q[r].z, q[r].w};
#pragma unroll
            for (int kk = 0; kk < 4; ++kk) {
                uint32_t a[4];
                dequant_fragment(words[kk], s[r], kk, a);
#pragma unroll
                for (int nb = 0; nb < NB; ++nb) mma_bf16(acc[r][nb], a, b[kk][nb][0], b[kk][nb][1]);
            }
        }
    };

    // A ring of P tiles per row tile in flight: stage j is consumed, then refilled with the tile P·W ahead.
    uint4 q[P][R];
    uint2 s[P][R];
#pragma unroll
    for (int j = 0; j < P; ++j)
        if (warp + int64_t(j) * W < KT) load(warp + int64_t(j) * W, q[j], s[j]);
    for (int64_t kt0 = warp; kt0 < KT; kt0 += int64_t(P) * W) {
#pragma unroll
        for (int j = 0; j < P; ++j) {
            const int64_t kt = kt0 + int64_t(j) * W;
            if (kt < KT) {
                compute(kt, q[j], s[j]);
                if (kt + int64_t(P) * W < KT) load(kt + int64_t(P) * W, q[j], s[j]);
            }
        }
    }

    float* mine = red + warp * V * 32;
#pragma unroll
    for (int r = 0; r < R; ++r)
#pragma unroll
        for (int nb = 0; nb < NB; ++nb)
#pragma unroll
            for (int c = 0; c < 4; ++c) mine[((r * NB + nb) * 4 + c) * 32 + lane] = acc[r][nb][c];
    __syncthreads();
    for (int e = threadIdx.x; e < V * 32; e += blockDim.x) {
        float sum = 0.f;
        for (int w = 0; w < W; ++w) sum += red[w * V * 32 + e];
        const int l = e & 31, v = e >> 5, c = v & 3, nb = (v >> 2) % NB, r = (v >> 2) / NB;
        const int64_t n = (rt0 + r) * kTileRows + (l >> 2) + (c >= 2 ? 8 : 0);
        const int m = nb * 8 + 2 * (l & 3) + (c & 1);
        if (rt0 + r < row_tiles && n < N && m < M) y[int64_t(m) * N + n] = sum * out_scale;
    }
}

// Warps per block. Old heuristic (FP4_GEMV=old): about 40 warps per multiprocessor. New: the most warps
// that still let every block be resident at once (no tail wave: down has only 320 row tiles, so a second
// partial wave cost ~20% there), found with the occupancy calculator once per kernel and warp count.
template <int NB, int R, int P>
static int pick_warps(const Ctx& c, int64_t blocks, int64_t KT, bool old) {
    constexpr int V = R * NB * 4;
    if (old) return int(std::clamp<int64_t>((int64_t(c.sms) * 40 + blocks - 1) / blocks, 1, std::min<int64_t>(16, KT)));
    static const std::array<int, 17> occ = [] {
        std::array<int, 17> o{};
        for (int w = 1; w <= 16; ++w)
            FP4_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&o[w], gemv_nvfp4_kernel<NB, R, P>, w * 32,
                                                                    size_t(w) * V * 32 * sizeof(float)));
        return o;
    }();
    for (int w = int(std::min<int64_t>(16, KT)); w >= 1; --w)
        if (blocks <= int64_t(c.sms) * occ[w]) return w;
    return int(std::clamp<int64_t>(KT, 1, 4));  // more blocks than fit at once anyway
}

template <int NB, int R, int P>
static void launch_nvfp4(const Ctx& c, const Tensor& w, const float* x, int M, float* y, bool old) {
    const int64_t N = w.ne[1], K = w.ne[0], KT = col_tiles(K), row_tiles = padded_rows(N) / kTileRows;
    const int64_t blocks = (row_tiles + R - 1) / R;
    const int warps = pick_warps<NB, R, P>(c, blocks, KT, old);
    const size_t smem = size_t(warps) * R * NB * 4 * 32 * sizeof(float);
    gemv_nvfp4_kernel<NB, R, P><<<unsigned(blocks), warps * 32, smem, c.stream>>>(
        static_cast<const uint4*>(w.data), static_cast<const uint2*>(w.scale), x, y, M, N, K, KT, row_tiles,
        kOutScale / w.gscale);
    check_launch("gemv nvfp4");
}

void gemv_nvfp4(const Ctx& c, const Tensor& w, const float* x, int64_t M, float* y) {
    static const bool old = [] {
        const char* e = std::getenv("FP4_GEMV");
        return e && std::strcmp(e, "old") == 0;
    }();
    const bool two_tiles = padded_rows(w.ne[1]) / kTileRows >= 8 * int64_t(c.sms);
    const int m = int(M);
    if (M > kGemvMaxRowsNvfp4) fail("gemv_nvfp4: too many rows");
    if (M <= 0) return;  // the kernel reads activation row min(m, M - 1)
    if (old) {  // the previous kernel: one tile ahead, ~40 warps per multiprocessor
        if (M <= 8) two_tiles ? launch_nvfp4<1, 2, 1>(c, w, x, m, y, true) : launch_nvfp4<1, 1, 1>(c, w, x, m, y, true);
        else if (M <= 16) two_tiles ? launch_nvfp4<2, 2, 1>(c, w, x, m, y, true) : launch_nvfp4<2, 1, 1>(c, w, x, m, y, true);
        else launch_nvfp4<4, 1, 1>(c, w, x, m, y, true);
        return;
    }
    if (M <= 8) two_tiles ? launch_nvfp4<1, 2, 4>(c, w, x, m, y, false) : launch_nvfp4<1, 1, 4>(c, w, x, m, y, false);
    else if (M <= 16) two_tiles ? launch_nvfp4<2, 2, 2>(c, w, x, m, y, false) : launch_nvfp4<2, 1, 4>(c, w, x, m, y, false);
    else launch_nvfp4<4, 1, 2>(c, w, x, m, y, false);
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
    gemv_dense_kernel<T, MT, R><<<blocks_for((N + R - 1) / R, kWarps), kWarps * 32, 0, c.stream>>>(
        static_cast<const T*>(w.data), x, y, M, N, K);
    check_launch("gemv dense");
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
