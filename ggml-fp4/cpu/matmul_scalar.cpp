// matmul_scalar.cpp — portable matmul kernels: the fallback on CPUs without AVX2 and the plainest
// statement of what the SIMD kernels compute. Weights are decoded 16 columns at a time.
#include <algorithm>
#include <cstring>

#include "cpu/attention_tile.h"
#include "cpu/matmul.h"
#include "numeric.h"

namespace fp4::cpu {
namespace {

// The 16 weights W[n, k0 .. k0+15] as F32 (NVFP4: e2m1·e4m3, global scale not applied); zero past K.
template <Type T>
void decode16(const WeightRef& w, int64_t n, int64_t k0, float* out) {
    const int64_t count = std::min<int64_t>(16, w.K - k0);
    std::fill(out, out + 16, 0.0f);
    if constexpr (T == Type::NVFP4) {
        const uint8_t* codes = w.data + n * (w.K / 2) + k0 / 2;
        const float scale = e4m3_to_f32(w.scale[n * (w.K / 16) + k0 / 16]);
        for (int64_t i = 0; i < count; ++i) out[i] = e2m1_to_f32((codes[i / 2] >> (4 * (i & 1))) & 0xf) * scale;
    } else {
        for (int64_t i = 0; i < count; ++i) {
            const int64_t k = n * w.K + k0 + i;
            if constexpr (T == Type::F32) std::memcpy(&out[i], w.data + 4 * k, 4);
            if constexpr (T == Type::F16 || T == Type::BF16) {
                uint16_t h;
                std::memcpy(&h, w.data + 2 * k, 2);
                out[i] = T == Type::F16 ? f16_to_f32(h) : bf16_to_f32(h);
            }
        }
    }
}

template <Type T>
void gemv(const WeightRef& w, int64_t n0, int64_t n1, const float* x, int64_t ldx, int M, float* y, int64_t ldy) {
    float v[16];
    for (int64_t n = n0; n < n1; ++n) {
        float acc[kGemvRows] = {};
        for (int64_t k0 = 0; k0 < w.K; k0 += 16) {
            decode16<T>(w, n, k0, v);
            for (int m = 0; m < M; ++m)
                for (int i = 0; i < 16; ++i) acc[m] += v[i] * x[m * ldx + k0 + i];
        }
        for (int m = 0; m < M; ++m) y[m * ldy + n] = acc[m];
    }
}

template <Type T>
void decode(const WeightRef& w, int64_t n0, int nr, int64_t k0, int64_t kb, float* panel, int64_t ldp) {
    for (int r = 0; r < nr; ++r)
        for (int64_t j = 0; j < kb; j += 16) decode16<T>(w, n0 + r, k0 + j, panel + r * ldp + j);
}

void gemm_panel(const float* panel, int64_t ldp, int nr, const float* x, int64_t ldg, int64_t mpad, int64_t kb,
                float* sums, int64_t lds) {
    for (int64_t m = 0; m < mpad; ++m)  // one lane: x rows are row-major
        for (int r = 0; r < nr; ++r) {
            float acc = 0.0f;
            for (int64_t j = 0; j < kb; ++j) acc += panel[r * ldp + j] * x[m * ldg + j];
            sums[r * lds + m] += acc;
        }
}

float dot(const float* a, const float* b, int64_t n) {
    float acc = 0.0f;
    for (int64_t i = 0; i < n; ++i) acc += a[i] * b[i];
    return acc;
}

void axpy(float alpha, const float* x, float* y, int64_t n) {
    for (int64_t i = 0; i < n; ++i) y[i] += alpha * x[i];
}

float fma_chains(int64_t iters) {
    float a[kFmaChains];
#pragma GCC unroll 12
    for (int j = 0; j < kFmaChains; ++j) a[j] = 1.0f + float(j) * 1e-3f;
    for (int64_t i = 0; i < iters; ++i)
#pragma GCC unroll 12
        for (int j = 0; j < kFmaChains; ++j) a[j] = a[j] * 0.999f + 1e-3f;
    float sum = 0.0f;
#pragma GCC unroll 12
    for (int j = 0; j < kFmaChains; ++j) sum += a[j];
    return sum;
}

}  // namespace

const Kernels& kernels_scalar() {
    static const Kernels k{16, pack_x_natural, pack_x_natural,
                           gemv<Type::F32>, gemv<Type::F16>, gemv<Type::BF16>, gemv<Type::NVFP4>,
                           decode<Type::F32>, decode<Type::F16>, decode<Type::BF16>, decode<Type::NVFP4>,
                           gemm_panel, 1, dot, axpy, attend_tile<4>, swiglu<4>, fma_chains};
    return k;
}

}  // namespace fp4::cpu
