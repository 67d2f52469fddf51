// nvfp4_layout.cu — converts a checkpoint NVFP4 weight (row-major codes, row-major E4M3 scales) into the
// tiled device layout of nvfp4_tile.h once at load time, and expands a tiled weight into a row-major BF16
// matrix (values · 2^-8, exact) for the cuBLAS prefill path.
#include "kernels.cuh"
#include "nvfp4.cuh"

namespace fp4::cuda {

using namespace nvfp4;

// One thread per (tile, lane): gathers the lane's 32 codes and 2 scales from the checkpoint layout.
__global__ void repack_kernel(const uint8_t* codes, const uint8_t* scales, int64_t N, int64_t K, int64_t KT,
                              int64_t ntiles, uint4* out_codes, uint16_t* out_scales, int* bad_scale) {
    pdl_start();
    const int64_t id = int64_t(blockIdx.x) * blockDim.x + threadIdx.x, tile = id >> 5;
    if (tile >= ntiles) return;
    const int lane = int(id & 31);
    uint32_t w[4];
    uint16_t s;
    bool nan_scale = false;
    repack_lane(codes, scales, N, K, tile / KT, tile % KT, lane, w, &s, &nan_scale);
    if (nan_scale) atomicOr(bad_scale, 1);
    out_codes[tile * 32 + lane] = make_uint4(w[0], w[1], w[2], w[3]);
    out_scales[tile * 32 + lane] = s;
}

void nvfp4_repack(const Ctx& c, const uint8_t* codes, const uint8_t* scales, int64_t N, int64_t K,
                  uint8_t* tiled_codes, uint8_t* tiled_scales, int* bad_scale) {
    const int64_t KT = col_tiles(K), ntiles = int64_t(tiles(N, K));
    launch_kernel("nvfp4 repack", repack_kernel, blocks_for(ntiles * 32, 256), 256, 0, c, codes, scales, N, K,
                  KT, ntiles, reinterpret_cast<uint4*>(tiled_codes), reinterpret_cast<uint16_t*>(tiled_scales),
                  bad_scale);
}

// One warp per tile: decode the fragments as the GEMV does. A lane then holds 16 consecutive columns (its
// scale group) of rows g and g+8 and writes each row's 32 bytes with two 16-byte stores.
__global__ void expand_kernel(const uint4* codes, const uint16_t* scales, int64_t N, int64_t K, int64_t KT,
                               int64_t ntiles, __nv_bfloat16* out) {
    pdl_start();
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int64_t tile = int64_t(blockIdx.x) * 8 + warp;
    if (tile >= ntiles) return;
    const int64_t rt = tile / KT, k = (tile % KT) * kTileCols + tile_col(t, 0, 0, 0);
    if (k >= K) return;  // K is a multiple of 16: a group is all in or all out
    const uint4 q = codes[tile * 32 + lane];
    uint32_t sg, sg8;
    scale_pairs(scales[tile * 32 + lane], sg, sg8);
    const uint32_t w[4] = {q.x, q.y, q.z, q.w};
    uint32_t row[2][8];  // rows g and g+8: the BF16 pairs of columns k, k+2, .., k+14
#pragma unroll
    for (int kk = 0; kk < 4; ++kk) {
        uint32_t a[4];
        a_fragments(w[kk], sg, sg8, a);
#pragma unroll
        for (int i = 0; i < 4; ++i)  // register i: row g + 8·(i & 1), the column pair of half i >> 1
            row[i & 1][(tile_col(t, kk, i >> 1, 0) - tile_col(t, 0, 0, 0)) / 2] = a[i];
    }
#pragma unroll
    for (int h = 0; h < 2; ++h) {
        const int64_t n = rt * kTileRows + g + 8 * h;
        if (n >= N) continue;
        uint4* dst = reinterpret_cast<uint4*>(out + n * K + k);
        dst[0] = make_uint4(row[h][0], row[h][1], row[h][2], row[h][3]);
        dst[1] = make_uint4(row[h][4], row[h][5], row[h][6], row[h][7]);
    }
}

void nvfp4_to_bf16(const Ctx& c, const Tensor& w, __nv_bfloat16* out) {
    const int64_t N = w.ne[1], K = w.ne[0], KT = col_tiles(K), ntiles = int64_t(tiles(N, K));
    launch_kernel("nvfp4 to bf16", expand_kernel, blocks_for(ntiles, 8), 256, 0, c,
                  static_cast<const uint4*>(w.data), static_cast<const uint16_t*>(w.scale), N, K, KT, ntiles, out);
}

}  // namespace fp4::cuda
