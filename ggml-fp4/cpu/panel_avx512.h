// panel_avx512.h — the AVX-512 panel product (matmul.h's GemmPanelFn) as outer products, shared by the F32
// panels (matmul_avx512.cpp) and the BF16 column pairs (matmul_avx512bf16.cpp): a Step says how a slot of
// x and of the panel is loaded and multiplied. Internal linkage, as in nvfp4_avx512.h: the two files are
// compiled with different instruction sets.
#pragma once

#include <immintrin.h>

#include <cstdint>

#include "cpu/matmul.h"

namespace fp4::cpu {
namespace {

// One F32 column per slot: broadcast panel value × 16 x rows, FMA.
struct F32Step {
    static constexpr int kCols = 1;
    using X = __m512;
    using W = __m512;
    static X load_x(const float* p) { return _mm512_loadu_ps(p); }
    static W broadcast(const float* p) { return _mm512_set1_ps(*p); }
    static __m512 madd(__m512 acc, W w, X x) { return _mm512_fmadd_ps(w, x, acc); }
};

// NR panel rows × MV groups of 16 x rows: each panel slot is broadcast and multiplies MV vectors of x rows
// (at 8 × 2: 16 sums in registers; MV vector loads and NR broadcasts per NR·MV multiply-adds). The pragmas
// keep the sums in registers at -O2.
template <class Step, int NR, int MV>
void panel_tile(const float* panel, int64_t ldp, const float* x, int64_t ldg, int64_t slots, float* sums,
                int64_t lds) {
    __m512 acc[NR][MV];
#pragma GCC unroll 8
    for (int r = 0; r < NR; ++r)
#pragma GCC unroll 2
        for (int v = 0; v < MV; ++v) acc[r][v] = _mm512_loadu_ps(sums + r * lds + 16 * v);
    for (int64_t j = 0; j < slots; ++j) {
        typename Step::X xv[MV];
#pragma GCC unroll 2
        for (int v = 0; v < MV; ++v) xv[v] = Step::load_x(x + v * ldg + 16 * j);
#pragma GCC unroll 8
        for (int r = 0; r < NR; ++r) {
            const typename Step::W w = Step::broadcast(panel + r * ldp + j);
#pragma GCC unroll 2
            for (int v = 0; v < MV; ++v) acc[r][v] = Step::madd(acc[r][v], w, xv[v]);
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < NR; ++r)
#pragma GCC unroll 2
        for (int v = 0; v < MV; ++v) _mm512_storeu_ps(sums + r * lds + 16 * v, acc[r][v]);
}

template <class Step, int MV>
void panel_rows(const float* panel, int64_t ldp, int nr, const float* x, int64_t ldg, int64_t slots, float* sums,
                int64_t lds) {
    static_assert(kPanelRows == 8, "panel_rows takes up to 8 panel rows");
    switch (nr) {
        case 1: return panel_tile<Step, 1, MV>(panel, ldp, x, ldg, slots, sums, lds);
        case 2: return panel_tile<Step, 2, MV>(panel, ldp, x, ldg, slots, sums, lds);
        case 3: return panel_tile<Step, 3, MV>(panel, ldp, x, ldg, slots, sums, lds);
        case 4: return panel_tile<Step, 4, MV>(panel, ldp, x, ldg, slots, sums, lds);
        case 5: return panel_tile<Step, 5, MV>(panel, ldp, x, ldg, slots, sums, lds);
        case 6: return panel_tile<Step, 6, MV>(panel, ldp, x, ldg, slots, sums, lds);
        case 7: return panel_tile<Step, 7, MV>(panel, ldp, x, ldg, slots, sums, lds);
        default: return panel_tile<Step, 8, MV>(panel, ldp, x, ldg, slots, sums, lds);
    }
}

// A GemmPanelFn on slots of Step::kCols columns, 16 x rows per group, two groups at a time.
template <class Step>
void gemm_panel(const float* panel, int64_t ldp, int nr, const float* x, int64_t ldg, int64_t mpad, int64_t kb,
                float* sums, int64_t lds) {
    const int64_t slots = kb / Step::kCols;
    int64_t m = 0;
    for (; m + 32 <= mpad; m += 32) panel_rows<Step, 2>(panel, ldp, nr, x + m / 16 * ldg, ldg, slots, sums + m, lds);
    if (m < mpad) panel_rows<Step, 1>(panel, ldp, nr, x + m / 16 * ldg, ldg, slots, sums + m, lds);
}

}  // namespace
}  // namespace fp4::cpu
