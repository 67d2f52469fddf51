// nvfp4_layout.cu — converts a checkpoint NVFP4 weight (row-major codes, row-major E4M3 scales) into the
// tiled device layout of nvfp4_tile.h once at load time, and expands a tiled weight into a row-major BF16
// matrix (values · 2^-8, exact) for the cuBLAS prefill path.
#include "kernels.cuh"
#include "nvfp4.cuh"

namespace fp4::cuda {

using namespace nvfp4;

// One thread per (tile, lane): gathers the lane's 32 codes and 8 scales from the checkpoint layout.
__global__ void repack_kernel(const uint8_t* codes, const uint8_t* scales, int64_t N, int64_t K, int64_t KT,
                              int64_t ntiles, uint4* out_codes, uint2* out_scales, int* bad_scale) {
    const int64_t id = int64_t(blockIdx.x) * blockDim.x + threadIdx.x, tile = id >> 5;
    if (tile >= ntiles) return;
    const int lane = int(id & 31);
    uint32_t w[4], s[2];
    bool nan_scale = false;
    repack_lane(codes, scales, N, K, tile / KT, tile % KT, lane, w, s, &nan_scale);
    if (nan_scale) atomicOr(bad_scale, 1);
    out_codes[tile * 32 + lane] = make_uint4(w[0], w[1], w[2], w[3]);
    if ((lane & 3) == 0) out_scales[tile * 8 + (lane >> 2)] = make_uint2(s[0], s[1]);
}

void nvfp4_repack(const Ctx& c, const uint8_t* codes, const uint8_t* scales, int64_t N, int64_t K,
                  uint8_t* tiled_codes, uint8_t* tiled_scales, int* bad_scale) {
    const int64_t KT = col_tiles(K), ntiles = int64_t(tiles(N, K));
    repack_kernel<<<blocks_for(ntiles * 32, 256), 256, 0, c.stream>>>(
        codes, scales, N, K, KT, ntiles, reinterpret_cast<uint4*>(tiled_codes),
        reinterpret_cast<uint2*>(tiled_scales), bad_scale);
    check_launch("nvfp4 repack");
}

// One warp per tile: decode the fragments as the GEMV does, stage the 16×64 tile in shared memory, then
// write it row by row with 16-byte stores.
__global__ void expand_kernel(const uint4* codes, const uint2* scales, int64_t N, int64_t K, int64_t KT,
                               int64_t ntiles, __nv_bfloat16* out) {
    constexpr int kPitch = kTileCols + 8;  // bf16 elements per staged row
    __shared__ __align__(16) __nv_bfloat16 stage[8][kTileRows * kPitch];
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    int64_t tile = int64_t(blockIdx.x) * 8 + warp;
    if (tile >= ntiles) return;
    int64_t rt = tile / KT, kt = tile % KT;
    uint4 q = codes[tile * 32 + lane];
    uint2 s = scales[tile * 8 + g];
    const uint32_t w[4] = {q.x, q.y, q.z, q.w};
    uint32_t* st = reinterpret_cast<uint32_t*>(stage[warp]);
#pragma unroll
    for (int kk = 0; kk < 4; ++kk) {
        uint32_t a[4];
        dequant_fragment(w[kk], s, kk, a);
        int col = kk * 16 + 2 * t;  // a0: (g, col), a1: (g+8, col), a2: (g, col+8), a3: (g+8, col+8)
        st[(g * kPitch + col) / 2] = a[0];
        st[((g + 8) * kPitch + col) / 2] = a[1];
        st[(g * kPitch + col + 8) / 2] = a[2];
        st[((g + 8) * kPitch + col + 8) / 2] = a[3];
    }
    __syncwarp();
#pragma unroll
    for (int j = 0; j < 4; ++j) {
        int chunk = lane + 32 * j, r = chunk >> 3, c8 = (chunk & 7) * 8;
        int64_t n = rt * kTileRows + r, k = kt * kTileCols + c8;
        if (n < N && k < K)
            *reinterpret_cast<uint4*>(out + n * K + k) = *reinterpret_cast<const uint4*>(&stage[warp][r * kPitch + c8]);
    }
}

void nvfp4_to_bf16(const Ctx& c, const Tensor& w, __nv_bfloat16* out) {
    const int64_t N = w.ne[1], K = w.ne[0], KT = col_tiles(K), ntiles = int64_t(tiles(N, K));
    expand_kernel<<<blocks_for(ntiles, 8), 256, 0, c.stream>>>(static_cast<const uint4*>(w.data),
                                                               static_cast<const uint2*>(w.scale), N, K, KT,
                                                               ntiles, out);
    check_launch("nvfp4 to bf16");
}

}  // namespace fp4::cuda
