// elementwise.cu — the small ops: embedding gather, RMSNorm, RoPE (1-D and Pixtral's 2-D), SwiGLU, GELU,
// ADD, the patch im2col and merge of the vision tower, row scatter, row argmax, and type conversions. Grid-stride
// loops over output elements (each first lets the next kernel launch and waits for the one before, see
// pdl_start), F32 math matching the CPU backend's formulas.
#include <cmath>
#include <type_traits>

#include "kernels.cuh"
#include "nvfp4.cuh"
#include "rope.cuh"

namespace fp4::cuda {

constexpr int kThreads = 256;

static unsigned grid_for(int64_t n) {
    return unsigned(std::min<int64_t>((n + kThreads - 1) / kThreads, int64_t(1) << 20));
}
#define FOR_EACH(i, n) \
    pdl_start();       \
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); i += int64_t(gridDim.x) * blockDim.x)

__global__ void get_rows_kernel(const void* table, Type t, const int32_t* ids, int64_t T, int64_t D, float* out) {
    FOR_EACH(i, T * D) out[i] = load_f32(table, t, int64_t(ids[i / D]) * D + i % D);
}
__global__ void get_rows_nvfp4_kernel(const uint8_t* codes, const uint8_t* scales, float gscale, const int32_t* ids,
                                      int64_t T, int64_t D, float* out) {
    const int64_t KT = nvfp4::col_tiles(D);
    FOR_EACH(i, T * D) out[i] = nvfp4::element(codes, scales, KT, gscale, ids[i / D], i % D);
}

void get_rows(const Ctx& c, const Tensor& table, const int32_t* ids, int64_t T, float* out) {
    const int64_t D = table.ne[0];
    if (table.type == Type::NVFP4)
        launch_kernel("get_rows", get_rows_nvfp4_kernel, grid_for(T * D), kThreads, 0, c,
                      static_cast<const uint8_t*>(table.data), static_cast<const uint8_t*>(table.scale), table.gscale,
                      ids, T, D, out);
    else
        launch_kernel("get_rows", get_rows_kernel, grid_for(T * D), kThreads, 0, c, table.data, table.type, ids,
                      T, D, out);
}

// One block per row: sum of squares in F32, then scale.
template <typename T>
__global__ void rms_norm_kernel(const float* x, const void* w, Type wt, int64_t D, float eps, T* out) {
    __shared__ float part[32];
    pdl_start();
    const float* xr = x + blockIdx.x * D;
    float ss = 0.f;
    for (int64_t i = threadIdx.x; i < D; i += blockDim.x) ss += xr[i] * xr[i];
    ss = warp_sum(ss);
    if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = ss;
    __syncthreads();
    if (threadIdx.x < 32) {
        ss = threadIdx.x < (blockDim.x >> 5) ? part[threadIdx.x] : 0.f;
        ss = warp_sum(ss);
        if (threadIdx.x == 0) part[0] = 1.0f / sqrtf(ss / float(D) + eps);
    }
    __syncthreads();
    const float inv = part[0];
    for (int64_t i = threadIdx.x; i < D; i += blockDim.x) {
        const float y = xr[i] * inv * load_f32(w, wt, i);
        if constexpr (std::is_same_v<T, float>) out[blockIdx.x * D + i] = y;
        else out[blockIdx.x * D + i] = __float2bfloat16_rn(y);
    }
}

void rms_norm(const Ctx& c, const float* x, const void* w, Type wt, int64_t M, int64_t D, float eps, void* out,
              bool out_bf16) {
    if (M == 0) return;
    if (out_bf16)
        launch_kernel("rms_norm (to bf16)", rms_norm_kernel<__nv_bfloat16>, unsigned(M), 512, 0, c, x, w, wt, D, eps,
                      static_cast<__nv_bfloat16*>(out));
    else
        launch_kernel("rms_norm", rms_norm_kernel<float>, unsigned(M), 512, 0, c, x, w, wt, D, eps,
                      static_cast<float*>(out));
}

// Rotates the pair (i, i + Dh/2) of the head at `base` by `angle`.
__device__ __forceinline__ void rotate(const float* x, float* y, int64_t base, int i, int half, float angle) {
    const float2 r = rotate_pair(x[base + i], x[base + i + half], angle);
    y[base + i] = r.x;
    y[base + i + half] = r.y;
}

__global__ void rope_kernel(const float* x, const int32_t* pos, int64_t M, int H, int Dh, float theta, float* out) {
    const int half = Dh / 2;
    FOR_EACH(e, M * H * half) {
        const int j = int(e % half);
        const int64_t mh = e / half, m = mh / H;
        rotate(x, out, mh * Dh, j, half, float(pos[m]) * inv_freq(theta, j, Dh));
    }
}

void rope(const Ctx& c, const float* x, const int32_t* pos, int64_t M, int H, int Dh, float theta, float* out) {
    launch_kernel("rope", rope_kernel, grid_for(M * H * (Dh / 2)), kThreads, 0, c, x, pos, M, H, Dh, theta, out);
}

__global__ void rope_2d_kernel(const float* x, const int32_t* rc, int64_t M, int H, int Dh, float theta, float* out) {
    const int half = Dh / 2, quarter = Dh / 4;
    FOR_EACH(e, M * H * half) {
        const int i = int(e % half);
        const int64_t mh = e / half, m = mh / H;
        const float angle = i < quarter ? float(rc[2 * m]) * inv_freq(theta, 2 * i, Dh)
                                        : float(rc[2 * m + 1]) * inv_freq(theta, 2 * (i - quarter) + 1, Dh);
        rotate(x, out, mh * Dh, i, half, angle);
    }
}

void rope_2d(const Ctx& c, const float* x, const int32_t* pos_rc, int64_t M, int H, int Dh, float theta,
             float* out) {
    launch_kernel("rope_2d", rope_2d_kernel, grid_for(M * H * (Dh / 2)), kThreads, 0, c, x, pos_rc, M, H, Dh,
                  theta, out);
}

__global__ void swiglu_kernel(const float* g, const float* u, int64_t n, float* out) {
    FOR_EACH(i, n) out[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}
__global__ void gelu_kernel(const float* x, int64_t n, float* out) {
    const float inv_sqrt2 = 0.70710678118654752f;
    FOR_EACH(i, n) out[i] = 0.5f * x[i] * (1.0f + erff(x[i] * inv_sqrt2));
}
__global__ void add_kernel(const float* a, const float* b, int64_t n, float* out) {
    FOR_EACH(i, n) out[i] = a[i] + b[i];
}

void swiglu(const Ctx& c, const float* gate, const float* up, int64_t n, float* out) {
    launch_kernel("swiglu", swiglu_kernel, grid_for(n), kThreads, 0, c, gate, up, n, out);
}
void gelu(const Ctx& c, const float* x, int64_t n, float* out) {
    launch_kernel("gelu", gelu_kernel, grid_for(n), kThreads, 0, c, x, n, out);
}
void add(const Ctx& c, const float* a, const float* b, int64_t n, float* out) {
    launch_kernel("add", add_kernel, grid_for(n), kThreads, 0, c, a, b, n, out);
}

// out[py·(W/p) + px, (ch·p + ky)·p + kx] = pixels[ch, py·p + ky, px·p + kx]
__global__ void im2col_kernel(const float* px, int64_t C, int64_t H, int64_t W, int p, float* out) {
    const int64_t row_len = C * p * p, pw = W / p, n = (H / p) * pw * row_len;
    FOR_EACH(i, n) {
        const int64_t r = i / row_len, e = i % row_len;
        const int64_t ch = e / (p * p), ky = (e / p) % p, kx = e % p;
        out[i] = px[(ch * H + (r / pw) * p + ky) * W + (r % pw) * p + kx];
    }
}

void im2col_patch(const Ctx& c, const float* px, int64_t C, int64_t H, int64_t W, int p, float* out) {
    launch_kernel("im2col_patch", im2col_kernel, grid_for(C * H * W), kThreads, 0, c, px, C, H, W, p, out);
}

// out[R·(w/2) + Q, 4ch + 2a + b] = x[(2R + a)·w + 2Q + b, ch]
__global__ void patch_merge_kernel(const float* x, int h, int w, int64_t C, float* out) {
    const int64_t hw2 = int64_t(h / 2) * (w / 2), n = hw2 * 4 * C;
    FOR_EACH(i, n) {
        const int64_t row = i / (4 * C), e = i % (4 * C), ch = e / 4;
        const int a = int(e / 2 % 2), b = int(e % 2);
        const int64_t R = row / (w / 2), Q = row % (w / 2);
        out[i] = x[((2 * R + a) * w + 2 * Q + b) * C + ch];
    }
}

void patch_merge(const Ctx& c, const float* x, int h, int w, int64_t C, float* out) {
    launch_kernel("patch_merge", patch_merge_kernel, grid_for(int64_t(h) * w * C), kThreads, 0, c, x, h, w, C,
                  out);
}

__global__ void scatter_rows_kernel(const float* rows, const int32_t* idx, int64_t N, int64_t D, float* out) {
    FOR_EACH(i, N * D) out[int64_t(idx[i / D]) * D + i % D] = rows[i];
}

void scatter_rows(const Ctx& c, const float* rows, const int32_t* idx, int64_t N, int64_t D, float* out) {
    if (N == 0) return;
    launch_kernel("scatter_rows", scatter_rows_kernel, grid_for(N * D), kThreads, 0, c, rows, idx, N, D, out);
}

__global__ void to_bf16_kernel(const float* x, int64_t n, __nv_bfloat16* out) {
    FOR_EACH(i, n) out[i] = __float2bfloat16_rn(x[i]);
}
__global__ void to_f32_kernel(const void* x, Type t, int64_t n, float* out) {
    FOR_EACH(i, n) out[i] = load_f32(x, t, i);
}

void to_bf16(const Ctx& c, const float* x, int64_t n, __nv_bfloat16* out) {
    launch_kernel("to_bf16", to_bf16_kernel, grid_for(n), kThreads, 0, c, x, n, out);
}
void to_f32(const Ctx& c, const void* x, Type t, int64_t n, float* out) {
    launch_kernel("to_f32", to_f32_kernel, grid_for(n), kThreads, 0, c, x, t, n, out);
}

// One block per row: each thread keeps the first index of its largest non-NaN element, then the block
// reduces (larger value, or equal value and smaller index, wins), as the CPU's left-to-right scan decides.
__global__ void argmax_kernel(const float* x, int64_t N, int32_t* out) {
    __shared__ float best_v[32];
    __shared__ int64_t best_i[32];
    pdl_start();
    const float* row = x + int64_t(blockIdx.x) * N;
    float v = 0.f;
    int64_t idx = -1;
    for (int64_t i = threadIdx.x; i < N; i += blockDim.x)
        if (row[i] == row[i] && (idx < 0 || row[i] > v)) v = row[i], idx = i;
    auto better = [](float av, int64_t ai, float bv, int64_t bi) {
        return bi < 0 || (ai >= 0 && (av > bv || (av == bv && ai < bi)));
    };
    for (int o = 16; o > 0; o >>= 1) {
        const float ov = __shfl_xor_sync(0xffffffffu, v, o);
        const int64_t oi = __shfl_xor_sync(0xffffffffu, idx, o);
        if (better(ov, oi, v, idx)) v = ov, idx = oi;
    }
    if ((threadIdx.x & 31) == 0) best_v[threadIdx.x >> 5] = v, best_i[threadIdx.x >> 5] = idx;
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int w = 1; w < int(blockDim.x >> 5); ++w)
            if (better(best_v[w], best_i[w], v, idx)) v = best_v[w], idx = best_i[w];
        out[blockIdx.x] = int32_t(idx < 0 ? 0 : idx);
    }
}

void argmax(const Ctx& c, const float* x, int64_t M, int64_t N, int32_t* out) {
    if (M == 0) return;
    launch_kernel("argmax", argmax_kernel, unsigned(M), 1024, 0, c, x, N, out);
}

}  // namespace fp4::cuda
