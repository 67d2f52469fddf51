// flash_attention.cu — attention of many query rows without a score matrix in memory (FlashAttention-2
// style): a block takes 64 query rows of one head, 16 per warp, and walks the keys 64 at a time. K and V
// tiles are rounded to BF16 in shared memory; S = Q·Kᵀ and O += P·V are m16n8k16 BF16 MMAs with F32
// accumulators, the softmax is online in F32 (exp2 with the scale folded in), and P goes from the S
// accumulators straight into the A fragments of P·V. Serves ATTN_FULL (the vision tower) and the prefill
// of ATTN_CACHED (causal through a per-row key limit, GQA by kv head = head / group, F32/BF16/FP8 caches).
#include "cache_types.cuh"
#include "kernels.cuh"
#include "mma.cuh"

namespace fp4::cuda {

namespace {

constexpr int kRows = 64, kKeys = 64, kWarps = 4;

// Four 8x8 BF16 matrices from shared memory; lanes 8i..8i+7 give the row addresses of matrix i. Without
// .trans lane (g, t) gets row g, columns 2t and 2t+1 of each; with .trans rows 2t, 2t+1 of column g.
__device__ __forceinline__ void ldmatrix_x4(uint32_t r[4], const void* row, bool trans) {
#ifdef FP4_CUDA_EMU
    emu::ldmatrix_x4(r, row, trans);
#else
    const uint32_t a = uint32_t(__cvta_generic_to_shared(row));
    if (trans)
        asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                     : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(a));
    else
        asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                     : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(a));
#endif
}

// Row stride of the K and V tiles in BF16 elements: 16-byte rows, conflict-free. Shared memory of a block:
// the K tile, the V tile, then the last key its rows may see.
constexpr int tile_stride(int DH) { return DH + 8; }
constexpr size_t flash_smem(int DH) { return 2 * kKeys * tile_stride(DH) * sizeof(__nv_bfloat16) + sizeof(int32_t); }

template <typename T>
struct FlashParams {
    const float* q;
    const T *k, *v;
    float* o;
    int64_t ldq, ldkv, ldo, M, L;
    int H, group;        // query heads, query heads per kv head
    float scale_log2;    // softmax scale · log2(e)
    const int32_t* limit;  // per query row: the last key it may see, or null for all keys
};

template <int DH, typename T>
__global__ void __launch_bounds__(kWarps * 32) flash_attn_kernel(const __grid_constant__ FlashParams<T> a) {
    constexpr int KS = tile_stride(DH);
    __nv_bfloat16* ks = dynamic_smem<__nv_bfloat16>();  // [key][dim]
    __nv_bfloat16* vs = ks + kKeys * KS;
    int32_t& last_key = *reinterpret_cast<int32_t*>(vs + kKeys * KS);
    pdl_start();
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int h = blockIdx.y, hk = h / a.group;
    const int64_t row0 = int64_t(blockIdx.x) * kRows, wrow = row0 + warp * 16;

    // The keys this block needs: all, or up to the largest limit among its rows.
    if (threadIdx.x == 0) last_key = a.limit ? -1 : int32_t(a.L - 1);
    __syncthreads();
    if (a.limit && threadIdx.x < kRows && row0 + threadIdx.x < a.M)
        atomicMax(&last_key, int32_t(min(int64_t(a.limit[row0 + threadIdx.x]), a.L - 1)));
    // Q as A fragments, rounded to BF16: rows wrow + g and + 8, dimensions 16kk + 2t.. and + 8..
    uint32_t qa[DH / 16][4];
#pragma unroll
    for (int kk = 0; kk < DH / 16; ++kk)
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const int64_t r = wrow + g + (i & 1) * 8;
            float2 v = make_float2(0.f, 0.f);
            const int64_t col = int64_t(h) * DH + kk * 16 + 2 * t + (i >> 1) * 8;
            if (r < a.M) v = *reinterpret_cast<const float2*>(a.q + r * a.ldq + col);
            qa[kk][i] = pack_bf16x2(v.x, v.y);
        }
    int32_t lim[2] = {INT32_MAX, INT32_MAX};  // of rows g and g + 8
    if (a.limit)
        for (int i = 0; i < 2; ++i) lim[i] = wrow + g + i * 8 < a.M ? a.limit[wrow + g + i * 8] : -1;
    __syncthreads();
    const int64_t n_keys = int64_t(last_key) + 1;

    float o[DH / 8][4] = {};
    float mx[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};  // per row; l is this lane's part of the sum
    for (int64_t k0 = 0; k0 < n_keys; k0 += kKeys) {
        __syncthreads();  // the previous tiles are consumed
        for (int e = threadIdx.x; e < kKeys * DH / 4; e += blockDim.x) {
            const int key = e / (DH / 4), d = (e % (DH / 4)) * 4;
            float4 kv = make_float4(0.f, 0.f, 0.f, 0.f), vv = kv;
            if (k0 + key < n_keys) {
                const int64_t off = (k0 + key) * a.ldkv + int64_t(hk) * DH + d;
                kv = load4(a.k + off), vv = load4(a.v + off);
            }
            *reinterpret_cast<uint2*>(&ks[key * KS + d]) = make_uint2(pack_bf16x2(kv.x, kv.y), pack_bf16x2(kv.z, kv.w));
            *reinterpret_cast<uint2*>(&vs[key * KS + d]) = make_uint2(pack_bf16x2(vv.x, vv.y), pack_bf16x2(vv.z, vv.w));
        }
        __syncthreads();
        if (wrow >= a.M) continue;  // a warp past the last row only helps load

        // S = Q·Kᵀ for 16 rows × 64 keys: B fragments of keys 8nb.. are rows of ks.
        float s[kKeys / 8][4] = {};
#pragma unroll
        for (int kk = 0; kk < DH / 16; ++kk)
#pragma unroll
            for (int nb = 0; nb < kKeys / 8; nb += 2) {
                uint32_t b[4];  // (keys nb, dims 16kk..+7), (nb, +8..), (nb+1, 16kk..), (nb+1, +8..)
                const int m = lane >> 3, key = nb * 8 + (m >> 1) * 8 + (lane & 7), dim = kk * 16 + (m & 1) * 8;
                ldmatrix_x4(b, &ks[key * KS + dim], false);
                mma_bf16(s[nb], qa[kk], b[0], b[1]);
                mma_bf16(s[nb + 1], qa[kk], b[2], b[3]);
            }
        // Online softmax: mask, new row maxima (over the 4 lanes of a row), rescale what came before.
        float tile_max[2] = {-INFINITY, -INFINITY};
#pragma unroll
        for (int nb = 0; nb < kKeys / 8; ++nb)
#pragma unroll
            for (int c = 0; c < 4; ++c) {
                const int64_t key = k0 + nb * 8 + 2 * t + (c & 1);
                const bool ok = key < n_keys && key <= lim[c >> 1];
                s[nb][c] = ok ? s[nb][c] * a.scale_log2 : -INFINITY;
                tile_max[c >> 1] = fmaxf(tile_max[c >> 1], s[nb][c]);
            }
        float base[2], corr[2];
#pragma unroll
        for (int i = 0; i < 2; ++i) {
            tile_max[i] = fmaxf(tile_max[i], __shfl_xor_sync(0xffffffffu, tile_max[i], 1));
            tile_max[i] = fmaxf(tile_max[i], __shfl_xor_sync(0xffffffffu, tile_max[i], 2));
            const float nm = fmaxf(mx[i], tile_max[i]);
            base[i] = nm == -INFINITY ? 0.f : nm;  // a row that has seen no key yet stays at zero
            corr[i] = exp2f(mx[i] - base[i]);
            mx[i] = nm;
            l[i] *= corr[i];
        }
#pragma unroll
        for (int nd = 0; nd < DH / 8; ++nd)
#pragma unroll
            for (int c = 0; c < 4; ++c) o[nd][c] *= corr[c >> 1];
        // O += P·V: the S accumulators of key blocks 2kk and 2kk+1 are the A fragment of keys 16kk..
#pragma unroll
        for (int kk = 0; kk < kKeys / 16; ++kk) {
            float p[2][4];
#pragma unroll
            for (int j = 0; j < 2; ++j)
#pragma unroll
                for (int c = 0; c < 4; ++c) {
                    p[j][c] = exp2f(s[2 * kk + j][c] - base[c >> 1]);
                    l[c >> 1] += p[j][c];
                }
            const uint32_t pa[4] = {pack_bf16x2(p[0][0], p[0][1]), pack_bf16x2(p[0][2], p[0][3]),
                                    pack_bf16x2(p[1][0], p[1][1]), pack_bf16x2(p[1][2], p[1][3])};
#pragma unroll
            for (int nd = 0; nd < DH / 8; nd += 2) {
                uint32_t b[4];  // transposed: (keys 16kk.., dims 8nd..), (keys +8.., 8nd..), then dims 8nd+8..
                const int m = lane >> 3, key = kk * 16 + (m & 1) * 8 + (lane & 7), dim = nd * 8 + (m >> 1) * 8;
                ldmatrix_x4(b, &vs[key * KS + dim], true);
                mma_bf16(o[nd], pa, b[0], b[1]);
                mma_bf16(o[nd + 1], pa, b[2], b[3]);
            }
        }
    }
    if (wrow >= a.M) return;
#pragma unroll
    for (int i = 0; i < 2; ++i) {
        l[i] += __shfl_xor_sync(0xffffffffu, l[i], 1);
        l[i] += __shfl_xor_sync(0xffffffffu, l[i], 2);
    }
#pragma unroll
    for (int i = 0; i < 2; ++i) {
        const int64_t r = wrow + g + i * 8;
        if (r >= a.M) continue;
        const float inv = l[i] > 0.f ? 1.0f / l[i] : 0.f;
        float* out = a.o + r * a.ldo + int64_t(h) * DH + 2 * t;
#pragma unroll
        for (int nd = 0; nd < DH / 8; ++nd)
            *reinterpret_cast<float2*>(out + nd * 8) = make_float2(o[nd][2 * i] * inv, o[nd][2 * i + 1] * inv);
    }
}

template <int DH, typename T>
void launch(const Ctx& c, const FlashAttnArgs& a) {
    FlashParams<T> p{a.q, static_cast<const T*>(a.k), static_cast<const T*>(a.v), a.o, a.ldq, a.ldkv, a.ldo, a.M,
                     a.L, a.n_head, a.n_head / a.n_kv_head, a.scale * 1.4426950408889634f, a.limit};
    launch_kernel("flash attention", flash_attn_kernel<DH, T>,
                  dim3(unsigned((a.M + kRows - 1) / kRows), unsigned(a.n_head)), kWarps * 32, flash_smem(DH), c, p);
}

template <typename T>
void launch_typed(const Ctx& c, const FlashAttnArgs& a) {
    if (a.head_dim == 64) return launch<64, T>(c, a);
    if (a.head_dim == 128) return launch<128, T>(c, a);
    fail("flash attention: head_dim " + std::to_string(a.head_dim));
}

}  // namespace

bool flash_attn_supports(int head_dim) { return head_dim == 64 || head_dim == 128; }

void flash_attn(const Ctx& c, const FlashAttnArgs& a) {
    if (a.M == 0) return;
    if (a.n_kv_head <= 0 || a.n_head % a.n_kv_head != 0) fail("flash attention: bad head counts");
    switch (a.kv_type) {
        case Type::F32: return launch_typed<float>(c, a);
        case Type::BF16: return launch_typed<__nv_bfloat16>(c, a);
        case Type::F8_E4M3: return launch_typed<__nv_fp8_e4m3>(c, a);
        default: fail(std::string("flash attention: keys of type ") + type_name(a.kv_type));
    }
}

}  // namespace fp4::cuda
