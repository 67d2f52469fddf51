// matmul.cpp — the matmul driver: packs x, picks the kernel set's GEMV (few rows, taken kGemvRows at a
// time) or panel GEMM (many rows) path for the weight type, spreads the work over the thread pool, applies
// NVFP4's global scale.
#include "cpu/matmul.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>

#include "numeric.h"

namespace fp4::cpu {

const Kernels& kernels_for(Isa isa) {
    switch (isa) {
        case Isa::Avx512Bf16: return kernels_avx512bf16();
        case Isa::Avx512: return kernels_avx512();
        case Isa::Avx2: return kernels_avx2();
        case Isa::Scalar: break;
    }
    return kernels_scalar();
}

void pack_x_nibble_order(const float* x, int64_t K, int64_t kpad, float* out) {
    for (int64_t b = 0; b < kpad; b += 128)
        for (int j = 0; j < 8; ++j)
            for (int d = 0; d < 16; ++d) {
                int64_t k = b + 8 * d + j;
                out[b + 16 * j + d] = k < K ? x[k] : 0.0f;
            }
}

void pack_x_natural(const float* x, int64_t K, int64_t kpad, float* out) {
    std::memcpy(out, x, size_t(K) * sizeof(float));
    std::fill(out + K, out + kpad, 0.0f);
}

void store_sums_scalar(const float* sums, int64_t lds, int nc, int64_t rows, float f, float* out, int64_t ldo) {
    for (int64_t m = 0; m < rows; ++m)
        for (int r = 0; r < nc; ++r) out[m * ldo + r] = sums[r * lds + m] * f;
}

namespace {

// BF16 weight rows as pair panels where they do not fill the last block (K not a multiple of 32): copied,
// zero past K.
void copy_bf16_pairs(const WeightRef& w, int64_t n0, int nr, int64_t k0, int64_t kb, float* panel, int64_t ldp) {
    for (int r = 0; r < nr; ++r) {
        auto* dst = reinterpret_cast<uint16_t*>(panel + r * ldp);
        const int64_t n = std::max<int64_t>(0, std::min(kb, w.K - k0));
        std::memcpy(dst, w.data + ((n0 + r) * w.K + k0) * 2, size_t(n) * 2);
        std::fill(dst + n, dst + kb, uint16_t(0));
    }
}

struct Path {
    GemvFn gemv;
    DecodeFn decode;
};

Path path_for(const Kernels& kern, Type t) {
    switch (t) {
        case Type::F32: return {kern.gemv_f32, kern.decode_f32};
        case Type::F16: return {kern.gemv_f16, kern.decode_f16};
        case Type::BF16: return {kern.gemv_bf16, kern.decode_bf16};
        case Type::NVFP4: return {kern.gemv_nvfp4, kern.decode_nvfp4};
        default: throw std::invalid_argument(std::string("MUL_MAT: unsupported weight type ") + type_name(t));
    }
}

// Output columns [n0, n1) of rows [m0, m1) divided by the NVFP4 global scale.
void apply_gscale(float gscale, float* y, int64_t ldy, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
    if (gscale == 1.0f) return;
    for (int64_t m = m0; m < m1; ++m)
        for (int64_t n = n0; n < n1; ++n) y[m * ldy + n] /= gscale;
}

}  // namespace

void mul_mat(const Kernels& kern, ThreadPool& pool, AlignedBuffer& scratch, const Tensor& w, const float* x,
             int64_t M, float* y, bool bf16_x) {
    if (!w.data || (w.type == Type::NVFP4 && !w.scale))
        throw std::invalid_argument("MUL_MAT: weight '" + w.name + "' has no storage");
    const Path path = path_for(kern, w.type);
    const WeightRef wr{w.type, static_cast<const uint8_t*>(w.data), static_cast<const uint8_t*>(w.scale), w.rows(),
                       w.ne[0]};
    const int64_t N = wr.N, K = wr.K;
    const bool nvfp4 = w.type == Type::NVFP4;
    const float gscale = nvfp4 ? w.gscale : 1.0f, inv_gscale = 1.0f / gscale;

    // BF16 activations: on pairs of columns where the kernel set can (and the panels run), else x rounded.
    const bool round_x = bf16_x && (nvfp4 || w.type == Type::BF16);
    const bool pair_set = round_x && kern.gemm_panel_pairs;
    const int gemv_rows = nvfp4 ? (pair_set ? kern.nvfp4_pair_gemv_rows : kern.nvfp4_gemv_rows)
                                : (pair_set ? kern.dense_pair_gemv_rows : kern.dense_gemv_rows);
    const bool use_gemv = M <= gemv_rows;
    const bool pairs = pair_set && !use_gemv;
    const bool bf16_gemv = use_gemv && round_x && nvfp4 && kern.gemv_nvfp4_pairs;
    const int64_t block = std::max<int64_t>(nvfp4 ? kern.nvfp4_block : 16, pairs ? 32 : 16);
    const int64_t kpad = (K + block - 1) / block * block;
    auto pack = !nvfp4 ? pack_x_natural : use_gemv ? kern.pack_nvfp4_gemv_x : kern.pack_nvfp4_x;

    // Scratch: x rounded to BF16 where F32 kernels take it (the pair panels and the BF16 GEMV round as they
    // pack: the GEMV reads only the high halves, bf16(x)), packed x, and per panel thread a decoded panel, a
    // packed row and the panel rows' sums for its block of x rows. Panels take x interleaved in groups of L
    // rows: x(m, k) at xp[(m / L)·ldg + k·L + m % L] (pairs: k / 2), rows past M zero.
    const int nth = pool.size();
    const int64_t L = kern.gemm_lanes, groups = (M + L - 1) / L, ldg = kpad * L / (pairs ? 2 : 1);
    const size_t rounded_bytes = round_x && !pairs && !bf16_gemv ? align_up(size_t(M * K) * sizeof(float)) : 0;
    const size_t x_bytes = align_up(size_t(use_gemv ? M * kpad : groups * ldg) * sizeof(float));
    const size_t per_thread = use_gemv ? 0 : size_t(kPanelRows * kPanelCols + kpad + kChunkRows * kRowBlock);
    auto* base = static_cast<char*>(scratch.grow(rounded_bytes + x_bytes + nth * per_thread * sizeof(float)));
    if (rounded_bytes) {
        float* xr = reinterpret_cast<float*>(base);
        pool.parallel_for(M * K, [&](int64_t i0, int64_t i1) {
            for (int64_t i = i0; i < i1; ++i) xr[i] = bf16_to_f32(f32_to_bf16(x[i]));
        });
        x = xr;
    }
    float* xp = reinterpret_cast<float*>(base + rounded_bytes);

    if (use_gemv) {
        const GemvFn gemv = bf16_gemv ? kern.gemv_nvfp4_pairs : path.gemv;
        pool.parallel_for(M, [&](int64_t m0, int64_t m1) {
            for (int64_t m = m0; m < m1; ++m) pack(x + m * K, K, kpad, xp + m * kpad);
        });
        const int64_t chunk = std::max<int64_t>(16, N / (int64_t(nth) * 16));
        pool.parallel_chunks((N + chunk - 1) / chunk, [&](int64_t c, int) {
            const int64_t n0 = c * chunk, n1 = std::min(N, n0 + chunk);
            for (int64_t m0 = 0; m0 < M; m0 += kGemvRows)
                gemv(wr, n0, n1, xp + m0 * kpad, kpad, int(std::min<int64_t>(kGemvRows, M - m0)), y + m0 * N, N);
            apply_gscale(gscale, y, N, 0, M, n0, n1);
        });
        return;
    }

    auto thread_floats = [&](int ith) { return xp + x_bytes / sizeof(float) + ith * per_thread; };
    pool.parallel_chunks(groups, [&](int64_t g, int ith) {
        float* row = L == 1 ? xp + g * ldg : thread_floats(ith) + kPanelRows * kPanelCols;
        float* dst = xp + g * ldg;
        for (int64_t i = 0; i < L; ++i) {
            const int64_t m = g * L + i;
            if (m < M) pack(x + m * K, K, kpad, row);
            else std::fill(row, row + kpad, 0.0f);
            if (pairs) kern.pair_x(row, kpad, nvfp4, reinterpret_cast<uint32_t*>(dst) + i, L);
            else if (L > 1)
                for (int64_t k = 0; k < kpad; ++k) dst[k * L + i] = row[k];
        }
    });

    // A chunk is kChunkRows weight rows (kPanelRows at a time) × a block of x rows, so that the chunks of two
    // threads never write the same cache line of y (16 floats: 64 bytes).
    // BF16 weights whose rows fill their last block are their own pair panels (no copy).
    const DecodeFn decode = !pairs ? path.decode : nvfp4 ? kern.decode_nvfp4_pairs : copy_bf16_pairs;
    const bool in_place = pairs && !nvfp4 && K == kpad;
    const GemmPanelFn gemm_panel = pairs ? kern.gemm_panel_pairs : kern.gemm_panel;
    const int64_t cols_per_slot = pairs ? 2 : 1, ldp = kPanelCols / cols_per_slot;
    const int64_t n_chunks = (N + kChunkRows - 1) / kChunkRows;
    const int64_t m_blocks = (M + kRowBlock - 1) / kRowBlock;
    pool.parallel_chunks(m_blocks * n_chunks, [&](int64_t c, int ith) {
        const int64_t m0 = c / n_chunks * kRowBlock, m1 = std::min(M, m0 + kRowBlock);
        const int64_t n0 = c % n_chunks * kChunkRows, mpad = (m1 - m0 + L - 1) / L * L;
        const int nc = int(std::min<int64_t>(kChunkRows, N - n0));
        float* panel = thread_floats(ith);
        float* sums = panel + kPanelRows * kPanelCols + kpad;  // [nc][kRowBlock]
        std::fill(sums, sums + kChunkRows * kRowBlock, 0.0f);
        for (int p = 0; p < nc; p += kPanelRows) {
            const int nr = std::min(kPanelRows, nc - p);
            for (int64_t k0 = 0; k0 < kpad; k0 += kPanelCols) {
                const int64_t kb = std::min(kPanelCols, kpad - k0);
                const float* x0 = xp + m0 / L * ldg + k0 / cols_per_slot * L;
                if (in_place) {
                    const auto* rows = reinterpret_cast<const float*>(wr.data + ((n0 + p) * K + k0) * 2);
                    gemm_panel(rows, K / 2, nr, x0, ldg, mpad, kb, sums + p * kRowBlock, kRowBlock);
                    continue;
                }
                decode(wr, n0 + p, nr, k0, kb, panel, ldp);
                gemm_panel(panel, ldp, nr, x0, ldg, mpad, kb, sums + p * kRowBlock, kRowBlock);
            }
        }
        // y times 1 / the global scale: a divide per output cost ~10% of a vision product (K = 1024).
        kern.store_sums(sums, kRowBlock, nc, m1 - m0, inv_gscale, y + m0 * N + n0, N);
    });
}

}  // namespace fp4::cpu
