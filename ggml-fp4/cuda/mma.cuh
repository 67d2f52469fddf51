// mma.cuh — the BF16 tensor-core instruction shared by the GEMV and flash attention: one m16n8k16 MMA with
// F32 accumulators (its operands are BF16 pairs, bf16_pair.h).
#pragma once

#include "bf16_pair.h"
#include "common.cuh"

namespace fp4::cuda {

// D += A·B for one m16n8k16 BF16 MMA with F32 accumulators.
__device__ __forceinline__ void mma_bf16(float d[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
#ifdef FP4_CUDA_EMU
    emu::mma_bf16_m16n8k16(d, a, b0, b1);
#else
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#endif
}

}  // namespace fp4::cuda
