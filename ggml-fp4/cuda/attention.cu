// attention.cu — ATTN_CACHED and ATTN_FULL, softmax in F32; the KV cache holds F32, BF16 or FP8 E4M3 rows
// (rounded to nearest even when stored, FP8 saturating at ±448, as the CPU backend does).
//  * Few query rows (decode, or rows of different sequences): flash-decoding. A block takes one
//    (row, head, slice of the keys) — with FP4_CUDA_FUSE=1 one GQA group of 4 query heads, so each key and
//    value row is read once per group; each warp runs an online softmax over 32 keys at a time (one key
//    per lane for the scores, a few consecutive head dimensions per lane for the values, 8 loads in flight
//    per lane); warps merge in shared memory, and when the keys were split the last block of a row and
//    group to finish merges the slices (a counter per row and group, returned to zero by that block).
//    With a fused rope group (one row per sequence, GQA groups) the rotations and the store of the new
//    key and value happen in the same kernel; otherwise a small kernel does them first.
//  * Many query rows of one sequence (prefill) and ATTN_FULL: scores = Q·Kᵀ and out = P·V as batched
//    GEMMs through cuBLAS in TF32 (one batch per KV head covers its GQA group), with a masked row softmax
//    in between; the query rows are processed in chunks that bound the score buffer, and each chunk only
//    looks at the keys its last position can see. A BF16/FP8 cache is first widened to F32 over those keys.
//    With FP4_CUDA_FLASH=1 (head_dim 64 or 128) both go to flash_attention.cu instead: no score matrix.
#include <algorithm>
#include <cmath>
#include <type_traits>

#include "cache_types.cuh"
#include "kernels.cuh"
#include "rope.cuh"

namespace fp4::cuda {

constexpr int kAttnWarps = 4;
constexpr size_t kScoreBytes = size_t(256) << 20;  // score buffer per query chunk

template <typename T>
__global__ void store_kv_kernel(const float* k, const float* v, const int32_t* pos, const int32_t* seq, int64_t M,
                                int64_t HD, int64_t C, T* kc, T* vc) {
    pdl_start();
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < M * HD; i += int64_t(gridDim.x) * blockDim.x) {
        const int64_t m = i / HD, row = int64_t(seq[m]) * C + pos[m];
        kc[row * HD + i % HD] = to_cache<T>(k[i]);
        vc[row * HD + i % HD] = to_cache<T>(v[i]);
    }
}

// The same store with the rotary embedding applied on the way: k rotated into the cache, q rotated into
// q_out (a pair (i, i + Dh/2) per thread, as the ROPE kernel computes it), v stored as it is.
template <typename T>
__global__ void rope_store_kernel(const float* q, const float* k, const float* v, const int32_t* pos,
                                  const int32_t* seq, int64_t M, int Hq, int Hkv, int Dh, int64_t C, float theta,
                                  float* q_out, T* kc, T* vc) {
    pdl_start();
    const int half = Dh / 2, H = Hq + Hkv;
    const int64_t HD = int64_t(Hkv) * Dh, stride = int64_t(gridDim.x) * blockDim.x;
    for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < M * H * half; e += stride) {
        const int i = int(e % half), hh = int((e / half) % H);
        const int64_t m = e / (int64_t(half) * H);
        const float angle = float(pos[m]) * inv_freq(theta, i, Dh);
        if (hh < Hq) {
            const int64_t b = (m * Hq + hh) * Dh;
            const float2 r = rotate_pair(q[b + i], q[b + i + half], angle);
            q_out[b + i] = r.x, q_out[b + i + half] = r.y;
        } else {
            const int64_t head = int64_t(hh - Hq) * Dh, b = m * HD + head;
            const int64_t row = (int64_t(seq[m]) * C + pos[m]) * HD + head;
            const float2 r = rotate_pair(k[b + i], k[b + i + half], angle);
            kc[row + i] = to_cache<T>(r.x), kc[row + i + half] = to_cache<T>(r.y);
        }
    }
    for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < M * HD; e += stride) {
        const int64_t m = e / HD;
        vc[(int64_t(seq[m]) * C + pos[m]) * HD + e % HD] = to_cache<T>(v[e]);
    }
}

template <typename T>
__global__ void widen_kernel(const T* src, int64_t n, float* dst) {
    pdl_start();
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
        dst[i] = from_cache(src[i]);
}

// DPL consecutive elements of a cache row as floats, or zeros when `in` is false: one load of 4·DPL bytes
// (F32), 2·DPL (BF16) or DPL (FP8) when DPL is a multiple of 4.
template <int DPL, typename T>
__device__ __forceinline__ void load_part(const T* p, bool in, float v[DPL]) {
    if constexpr (DPL % 4 == 0) {
#pragma unroll
        for (int i = 0; i < DPL; i += 4) {
            const float4 f = in ? load4(p + i) : make_float4(0.f, 0.f, 0.f, 0.f);
            v[i] = f.x, v[i + 1] = f.y, v[i + 2] = f.z, v[i + 3] = f.w;
        }
    } else {
#pragma unroll
        for (int i = 0; i < DPL; ++i) v[i] = in ? from_cache(p[i]) : 0.f;
    }
}

// DPL = head dimensions per lane (Dh ≤ 32·DPL, a multiple of 4 and of DPL; lane l holds DPL·l ..). G =
// query heads per block: the G heads of one GQA group (G > 1: each key and value row is read once for all
// of them) or one head (G = 1, any grouping). The S slices of a row's keys are sized on the device from its
// position, so a launch does not depend on host values. Output: the final row when S = 1, else the partial
// (unnormalised out[Dh], max, sum) of this slice in part[(m·Hq + h)·S + s]. Memory latency is the limit at
// decode sizes, so a key row's dimensions and a chunk's 32 value rows are read in batches of 8 loads per
// lane, all in flight at once. With S > 1 the last of the S blocks of (row, head or group) to finish
// (count[m·gridDim.x + blockIdx.x] counts them) merges the partials into the final rows.
// ROPE (a GQA group per block, every row of its own sequence): q and the row's new key and value (knew,
// vnew) come unrotated. q is rotated into shared memory, and the block whose slice holds position pos[m]
// rotates the key and stores it and the value there first: that block alone reads the row, so the cache
// is read without the read-only path (its pointers are not const __restrict__ then).
template <typename T, bool ROPE>
using CachePtr = std::conditional_t<ROPE, T*, const T* __restrict__>;
template <int DPL, int G, typename T, bool ROPE>
__global__ void __launch_bounds__(kAttnWarps * 32) attn_split_kernel(
    const float* __restrict__ q, CachePtr<T, ROPE> kc, CachePtr<T, ROPE> vc,
    const int32_t* __restrict__ pos, const int32_t* __restrict__ seq, int Hq, int Hkv, int Dh, int64_t C,
    float scale, const float* __restrict__ knew, const float* __restrict__ vnew, float theta,
    float* __restrict__ part, int* __restrict__ count, float* __restrict__ out) {
    float* sm = dynamic_smem<float>();  // q[G][Dh], then per warp and head: max, sum, out[Dh]; a flag
    pdl_start();
    float* qs = sm;
    float* wst = sm + G * Dh;
    const int S = gridDim.z, s = blockIdx.z, warp = threadIdx.x >> 5, lane = threadIdx.x & 31, half = Dh / 2;
    const int h0 = G > 1 ? int(blockIdx.x) * G : int(blockIdx.x), hk = G > 1 ? int(blockIdx.x) : h0 / (Hq / Hkv);
    const int64_t m = blockIdx.y, HD = int64_t(Hkv) * Dh;
    const int64_t n_keys = int64_t(pos[m]) + 1, per_split = (n_keys + S - 1) / S;
    const int64_t j0 = s * per_split, j1 = std::min(n_keys, j0 + per_split);
    // Rotations as rope_store_kernel computes them (the same bits).
    auto rotated = [&](const float* x, int i) {
        const float2 r = rotate_pair(x[i % half], x[i % half + half], float(pos[m]) * inv_freq(theta, i % half, Dh));
        return i < half ? r.x : r.y;
    };
    for (int e = threadIdx.x; e < G * Dh; e += blockDim.x) {
        const float* qh = q + (m * Hq + h0 + e / Dh) * Dh;
        qs[e] = (ROPE ? rotated(qh, e % Dh) : qh[e % Dh]) * scale;
    }
    if constexpr (ROPE)
        if (pos[m] / per_split == s) {
            const int64_t src = m * HD + int64_t(hk) * Dh, dst = (int64_t(seq[m]) * C + pos[m]) * HD + int64_t(hk) * Dh;
            for (int i = threadIdx.x; i < Dh; i += blockDim.x) {
                kc[dst + i] = to_cache<T>(rotated(knew + src, i));
                vc[dst + i] = to_cache<T>(vnew[src + i]);
            }
        }
    __syncthreads();

    const int64_t base = int64_t(seq[m]) * C * HD + int64_t(hk) * Dh;
    const int d0 = DPL * lane;  // this lane's value dimensions: d0 .. d0 + DPL (Dh is a multiple of DPL)
    float mx[G], l[G], o[G][DPL] = {};
#pragma unroll
    for (int g = 0; g < G; ++g) mx[g] = -INFINITY, l[g] = 0.f;
    for (int64_t c0 = j0 + 32 * warp; c0 < j1; c0 += 32 * kAttnWarps) {
        const int64_t j = c0 + lane;
        float sc[G];
#pragma unroll
        for (int g = 0; g < G; ++g) sc[g] = j < j1 ? 0.f : -INFINITY;
        // This lane's key: q·k over the dimensions, 4 at a time in batches of 8 loads (all in flight at once).
        const T* kr = kc + base + j * HD;
        for (int dk = 0; dk < Dh; dk += 32) {
            float4 kv[8];
#pragma unroll
            for (int u = 0; u < 8; ++u)
                kv[u] = j < j1 && dk + 4 * u < Dh ? load4(kr + dk + 4 * u) : make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll
            for (int u = 0; u < 8; ++u)
                if (dk + 4 * u < Dh)
#pragma unroll
                    for (int g = 0; g < G; ++g) {
                        const float4 qg = *reinterpret_cast<const float4*>(qs + g * Dh + dk + 4 * u);
                        sc[g] += qg.x * kv[u].x + qg.y * kv[u].y + qg.z * kv[u].z + qg.w * kv[u].w;
                    }
        }
        float p[G];
#pragma unroll
        for (int g = 0; g < G; ++g) {
            const float nm = fmaxf(mx[g], warp_max(sc[g])), corr = expf(mx[g] - nm);
            p[g] = j < j1 ? expf(sc[g] - nm) : 0.f;
            l[g] = l[g] * corr + warp_sum(p[g]);
            mx[g] = nm;
#pragma unroll
            for (int i = 0; i < DPL; ++i) o[g][i] *= corr;
        }
        // The chunk's value rows weighted by their probabilities (lane jj's p, broadcast; 0 past the keys),
        // 8 rows' loads at a time.
        const int cnt = int(std::min<int64_t>(32, j1 - c0));
        for (int jb = 0; jb < cnt; jb += 8) {
            float v[8][DPL];
#pragma unroll
            for (int u = 0; u < 8; ++u)
                load_part<DPL>(vc + base + (c0 + jb + u) * HD + d0, jb + u < cnt && d0 < Dh, v[u]);
#pragma unroll
            for (int u = 0; u < 8; ++u)
#pragma unroll
                for (int g = 0; g < G; ++g) {
                    const float pj = __shfl_sync(0xffffffffu, p[g], jb + u);
#pragma unroll
                    for (int i = 0; i < DPL; ++i) o[g][i] += pj * v[u][i];
                }
        }
    }
#pragma unroll
    for (int g = 0; g < G; ++g) {
        float* mine = wst + (warp * G + g) * (Dh + 2);
        if (lane == 0) mine[0] = mx[g], mine[1] = l[g];
#pragma unroll
        for (int i = 0; i < DPL; ++i)
            if (d0 < Dh) mine[2 + d0 + i] = o[g][i];
    }
    __syncthreads();

    // Per head: the warps' partial softmaxes merged (a warp that saw no key has sum 0).
    for (int e = threadIdx.x; e < G * Dh; e += blockDim.x) {
        const int g = e / Dh, d = e % Dh;
        auto at = [&](int w) { return wst + (w * G + g) * (Dh + 2); };
        float M = -INFINITY;
        for (int w = 0; w < kAttnWarps; ++w) M = fmaxf(M, at(w)[0]);
        float L = 0.f, O = 0.f;
        for (int w = 0; w < kAttnWarps; ++w)
            if (at(w)[1] > 0.f) {
                const float f = expf(at(w)[0] - M);
                L += at(w)[1] * f;
                O += at(w)[2 + d] * f;
            }
        const int64_t mh = m * Hq + h0 + g;
        if (S == 1) {
            out[mh * Dh + d] = O / L;
        } else {
            float* pp = part + (mh * S + s) * (Dh + 2);
            pp[2 + d] = O;
            if (d == 0) pp[0] = M, pp[1] = L;
        }
    }
    if (S == 1) return;

    // The last of the S blocks to finish merges the slices (their partials are read from L2).
    int& last = *reinterpret_cast<int*>(wst + kAttnWarps * G * (Dh + 2));
    int* cnt = count + m * gridDim.x + blockIdx.x;
    __threadfence();  // this block's partials before its count
    __syncthreads();
    if (threadIdx.x == 0) last = atomicAdd(cnt, 1) == S - 1;
    __syncthreads();
    if (!last) return;
    __threadfence();
    // Each head's largest slice max and the sum of its slices' weights, once per head (thread g, in slice
    // order), into the shared memory the warps' partials used; then every output element.
    float* head = wst;  // [G]: M, L
    if (threadIdx.x < G) {
        const float* pp = part + (m * Hq + h0 + threadIdx.x) * S * (Dh + 2);
        float M = -INFINITY, L = 0.f;
        for (int t = 0; t < S; ++t)
            if (__ldcg(pp + t * (Dh + 2) + 1) > 0.f) M = fmaxf(M, __ldcg(pp + t * (Dh + 2)));
        for (int t = 0; t < S; ++t) {
            const float l = __ldcg(pp + t * (Dh + 2) + 1);
            if (l > 0.f) L += l * expf(__ldcg(pp + t * (Dh + 2)) - M);
        }
        head[2 * threadIdx.x] = M, head[2 * threadIdx.x + 1] = L;
    }
    __syncthreads();
    for (int e = threadIdx.x; e < G * Dh; e += blockDim.x) {
        const int g = e / Dh, d = e % Dh;
        const int64_t mh = m * Hq + h0 + g;
        const float* pp = part + mh * S * (Dh + 2);
        float O = 0.f;
        for (int t = 0; t < S; ++t) {
            const float* ps = pp + t * (Dh + 2);
            if (__ldcg(ps + 1) > 0.f) O += __ldcg(ps + 2 + d) * expf(__ldcg(ps) - head[2 * g]);
        }
        out[mh * Dh + d] = O / head[2 * g + 1];
    }
    if (threadIdx.x == 0) *cnt = 0;  // ready for the next launch
}

template <int DPL, int G, typename T, bool ROPE = false>
static void launch_split(const Ctx& c, const AttnCachedArgs& a, int splits, float* part, int* count, float* out) {
    const size_t smem = sizeof(float) * (size_t(G) * (a.head_dim + kAttnWarps * (a.head_dim + 2)) + 1);
    dim3 grid(unsigned(G > 1 ? a.n_kv_head : a.n_head), unsigned(a.M), unsigned(splits));
    launch_kernel(ROPE ? "attention (rope, store kv, split)" : "attention (split)", attn_split_kernel<DPL, G, T, ROPE>,
                  grid, kAttnWarps * 32, smem, c, a.q, static_cast<CachePtr<T, ROPE>>(a.kcache),
                  static_cast<CachePtr<T, ROPE>>(a.vcache), a.pos, a.seq, a.n_head, a.n_kv_head, a.head_dim, a.n_ctx, a.scale,
                  a.k, a.v, a.rope_theta, part, count, out);
}

// With fused kernels on, groups of 4 query heads (Mistral's GQA) take one block for head_dim 64 or 128.
static bool gqa_blocks(const Ctx& c, const AttnCachedArgs& a) {
    const int dpl = (a.head_dim + 31) / 32;
    return c.fuse && a.n_head == 4 * a.n_kv_head && (dpl == 2 || dpl == 4);
}

// Whether the rotations and the KV store can join the attention kernel (see attn_split_kernel): GQA-group
// blocks, and no row's keys include another row's new one.
static bool rope_in_attention(const Ctx& c, const AttnCachedArgs& a) {
    if (!gqa_blocks(c, a) || a.M > 64) return false;
    for (int64_t i = 0; i < a.M; ++i)
        for (int64_t j = 0; j < i; ++j)
            if (a.seq_h[i] == a.seq_h[j]) return false;
    return true;
}

template <typename T>
static void attn_rows(const Ctx& c, const AttnCachedArgs& a, float* out) {
    // A block per GQA group (gqa_blocks) or per query head. Enough blocks for two waves; at most one slice
    // per 128 keys (a chunk of 32 for each of the block's warps).
    const int dpl = (a.head_dim + 31) / 32, lane_dims = dpl <= 1 ? 1 : dpl <= 2 ? 2 : dpl <= 4 ? 4 : 8;
    if (dpl > 8) fail("attention: head_dim above 256 is not supported");
    if (a.head_dim % 4 != 0 || a.head_dim % lane_dims != 0)
        fail("attention: head_dim " + std::to_string(a.head_dim) + " is not a multiple of 4 (of 8 above 128)");
    const bool grouped = gqa_blocks(c, a);
    const int64_t blocks = a.M * (grouped ? a.n_kv_head : a.n_head);
    const int splits = int(std::clamp<int64_t>((2 * c.sms + blocks - 1) / blocks, 1, (a.n_ctx + 127) / 128));
    float* part = nullptr;
    int* count = nullptr;
    if (splits > 1) {
        part = static_cast<float*>(
            c.scratch->get(kAttn, sizeof(float) * size_t(a.M * a.n_head) * splits * (a.head_dim + 2)));
        count = static_cast<int*>(c.scratch->get(kAttnCount, sizeof(int) * size_t(a.M * a.n_head), true));
    }
    if (a.rope_theta != 0) {  // rope_in_attention said yes
        if (dpl == 2) launch_split<2, 4, T, true>(c, a, splits, part, count, out);
        else launch_split<4, 4, T, true>(c, a, splits, part, count, out);
    } else if (grouped && dpl == 2) launch_split<2, 4, T>(c, a, splits, part, count, out);
    else if (grouped) launch_split<4, 4, T>(c, a, splits, part, count, out);
    else if (lane_dims == 1) launch_split<1, 1, T>(c, a, splits, part, count, out);
    else if (lane_dims == 2) launch_split<2, 1, T>(c, a, splits, part, count, out);
    else if (lane_dims == 4) launch_split<4, 1, T>(c, a, splits, part, count, out);
    else launch_split<8, 1, T>(c, a, splits, part, count, out);
}

// Row softmax of scores [rows, L] in place; row r of query i keeps keys j ≤ limit[i] (all when no limit).
__global__ void softmax_rows_kernel(float* sc, int64_t L, int64_t mq, const int32_t* limit, int64_t r0) {
    __shared__ float red[32];
    pdl_start();
    float* row = sc + int64_t(blockIdx.x) * L;
    const int64_t n = limit ? std::min<int64_t>(L, int64_t(limit[r0 + blockIdx.x % mq]) + 1) : L;
    auto block_reduce = [&](float v, bool is_max) {
        v = is_max ? warp_max(v) : warp_sum(v);
        __syncthreads();
        if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = v;
        __syncthreads();
        // Every warp reduces the per-warp partials, so every thread gets the block's result.
        const unsigned lane = threadIdx.x & 31;
        v = lane < (blockDim.x >> 5) ? red[lane] : (is_max ? -INFINITY : 0.f);
        return is_max ? warp_max(v) : warp_sum(v);
    };
    float mx = -INFINITY;
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) mx = fmaxf(mx, row[j]);
    mx = block_reduce(mx, true);
    float sum = 0.f;
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) sum += expf(row[j] - mx);
    const float inv = 1.0f / block_reduce(sum, false);
    for (int64_t j = threadIdx.x; j < L; j += blockDim.x) row[j] = j < n ? expf(row[j] - mx) * inv : 0.f;
}

// Attention of query rows [0, M) over keys [0, L) through cuBLAS; see the file comment.
struct GemmAttn {
    const float *q, *k, *v;
    float* o;
    int64_t ldq, ldkv, ldo, M, L;
    int H, Hkv, Dh;
    float scale;
    const int32_t* limit;    // device, per query row: last key it may see; null for all keys
    const int32_t* limit_h;  // host copy of limit
};

static void gemm_tf32(const Ctx& c, cublasOperation_t ta, int m, int n, int k, float alpha, const float* A, int lda,
                      long long sa, const float* B, int ldb, long long sb, float* C, int ldc, long long sc, int batch) {
    const float beta = 0.0f;
    FP4_CHECK(cublasGemmStridedBatchedEx(c.blas, ta, CUBLAS_OP_N, m, n, k, &alpha, A, CUDA_R_32F, lda, sa, B,
                                         CUDA_R_32F, ldb, sb, &beta, C, CUDA_R_32F, ldc, sc, batch,
                                         CUBLAS_COMPUTE_32F_FAST_TF32, CUBLAS_GEMM_DEFAULT));
}

static void attn_gemm(const Ctx& c, const GemmAttn& a) {
    const int G = a.H / a.Hkv;
    const int64_t mq = std::clamp<int64_t>(int64_t(kScoreBytes / (sizeof(float) * size_t(a.H) * size_t(a.L))), 1, a.M);
    float* sc = static_cast<float*>(c.scratch->get(kAttn, sizeof(float) * size_t(a.H) * size_t(mq) * size_t(a.L)));
    // G == 1: one batch over all heads; otherwise one batch per KV head over its G query heads.
    const int groups = G == 1 ? 1 : a.Hkv, batch = G == 1 ? a.H : G;
    const long long kv_stride = G == 1 ? a.Dh : 0;
    for (int64_t r0 = 0; r0 < a.M; r0 += mq) {
        const int64_t n = std::min(mq, a.M - r0);
        int64_t L = a.L;
        if (a.limit_h) {
            L = 0;
            for (int64_t i = r0; i < r0 + n; ++i) L = std::max<int64_t>(L, int64_t(a.limit_h[i]) + 1);
        }
        for (int gi = 0; gi < groups; ++gi) {  // query heads gi·G.. use KV head gi (or head h0 when G == 1)
            const int64_t h0 = int64_t(gi) * G;
            gemm_tf32(c, CUBLAS_OP_T, int(L), int(n), a.Dh, a.scale, a.k + gi * a.Dh, int(a.ldkv), kv_stride,
                      a.q + r0 * a.ldq + h0 * a.Dh, int(a.ldq), a.Dh, sc + h0 * n * L, int(L), n * L, batch);
        }
        launch_kernel("attention softmax", softmax_rows_kernel, unsigned(int64_t(a.H) * n), 256, 0, c, sc, L, n,
                      a.limit, r0);
        for (int gi = 0; gi < groups; ++gi) {
            const int64_t h0 = int64_t(gi) * G;
            gemm_tf32(c, CUBLAS_OP_N, a.Dh, int(n), int(L), 1.0f, a.v + gi * a.Dh, int(a.ldkv), kv_stride,
                      sc + h0 * n * L, int(L), n * L, a.o + r0 * a.ldo + h0 * a.Dh, int(a.ldo), a.Dh, batch);
        }
    }
}

template <typename T>
static void attn_cached_typed(const Ctx& c, const AttnCachedArgs& args, float* out) {
    AttnCachedArgs a = args;
    const int64_t HD = int64_t(a.n_kv_head) * a.head_dim;
    T* kc = static_cast<T*>(a.kcache);
    T* vc = static_cast<T*>(a.vcache);
    bool one_seq = true;
    for (int64_t m = 0; m < a.M; ++m) one_seq = one_seq && a.seq_h[m] == a.seq_h[0];
    const bool rows = a.M < kAttnGemmRowsMin || !one_seq;
    if (a.rope_theta != 0 && rows && rope_in_attention(c, a)) return attn_rows<T>(c, a, out);
    if (a.rope_theta != 0) {  // rotate q into scratch and k into the cache
        float* q = static_cast<float*>(c.scratch->get(kRopeQ, sizeof(float) * size_t(a.M * a.n_head * a.head_dim)));
        const int64_t n = a.M * (a.n_head + a.n_kv_head) * (a.head_dim / 2);
        launch_kernel("attention (rope and store kv)", rope_store_kernel<T>,
                      blocks_for(std::min<int64_t>(std::max(n, a.M * HD), int64_t(1) << 24), 256), 256, 0, c,
                      a.q, a.k, a.v, a.pos, a.seq, a.M, a.n_head, a.n_kv_head, a.head_dim, a.n_ctx, a.rope_theta, q, kc,
                      vc);
        a.q = q, a.rope_theta = 0;
    } else {
        launch_kernel("attention (store kv)", store_kv_kernel<T>,
                      blocks_for(std::min<int64_t>(a.M * HD, int64_t(1) << 24), 256), 256, 0, c, a.k, a.v, a.pos,
                      a.seq, a.M, HD, a.n_ctx, kc, vc);
    }
    if (rows) return attn_rows<T>(c, a, out);
    int64_t max_keys = 0;
    for (int64_t m = 0; m < a.M; ++m) max_keys = std::max<int64_t>(max_keys, int64_t(a.pos_h[m]) + 1);
    const int64_t ld = int64_t(a.n_head) * a.head_dim;
    const int64_t cache0 = int64_t(a.seq_h[0]) * a.n_ctx * HD;
    if (c.flash && flash_attn_supports(a.head_dim))
        return flash_attn(c, FlashAttnArgs{a.q, kc + cache0, vc + cache0, a.cache_type, out, ld, HD, ld, a.M, max_keys,
                                           a.n_head, a.n_kv_head, a.head_dim, a.scale, a.pos});
    const float *keys = nullptr, *values = nullptr;
    if constexpr (std::is_same_v<T, float>) {
        keys = kc + cache0, values = vc + cache0;
    } else {  // the GEMMs read F32: widen the keys this pass can see
        const int64_t n = max_keys * HD;
        float* wide = static_cast<float*>(c.scratch->get(kAttnKv, 2 * sizeof(float) * size_t(n)));
        const unsigned blocks = blocks_for(std::min<int64_t>(n, int64_t(1) << 24), 256);
        launch_kernel("attention (widen k)", widen_kernel<T>, blocks, 256, 0, c, kc + cache0, n, wide);
        launch_kernel("attention (widen v)", widen_kernel<T>, blocks, 256, 0, c, vc + cache0, n, wide + n);
        keys = wide, values = wide + n;
    }
    attn_gemm(c, GemmAttn{a.q, keys, values, out, ld, HD, ld, a.M, max_keys, a.n_head, a.n_kv_head, a.head_dim,
                          a.scale, a.pos, a.pos_h});
}

void attn_cached(const Ctx& c, const AttnCachedArgs& a, float* out) {
    if (a.M == 0) return;
    switch (a.cache_type) {
        case Type::F32: return attn_cached_typed<float>(c, a, out);
        case Type::BF16: return attn_cached_typed<__nv_bfloat16>(c, a, out);
        case Type::F8_E4M3: return attn_cached_typed<__nv_fp8_e4m3>(c, a, out);
        default: fail(std::string("attention: a KV cache of type ") + type_name(a.cache_type));
    }
}

void attn_full(const Ctx& c, const float* q, const float* k, const float* v, int64_t M, int n_head, int head_dim,
               float scale, float* out) {
    if (M == 0) return;
    const int64_t ld = int64_t(n_head) * head_dim;
    if (c.flash && flash_attn_supports(head_dim))
        return flash_attn(c, FlashAttnArgs{q, k, v, Type::F32, out, ld, ld, ld, M, M, n_head, n_head, head_dim, scale,
                                           nullptr});
    attn_gemm(c, GemmAttn{q, k, v, out, ld, ld, ld, M, M, n_head, n_head, head_dim, scale, nullptr, nullptr});
}

}  // namespace fp4::cuda
