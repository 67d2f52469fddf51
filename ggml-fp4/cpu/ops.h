// ops.h — the CPU implementations of the graph ops, one function per op: element-wise and data
// movement ops in ops.cpp, attention in attention.cpp, MUL_MAT in matmul.cpp. Each reads its node's
// sources and writes the node's (already allocated) data; VIEW_ROWS needs no code (an alias).
#pragma once

#include "cpu/buffer.h"
#include "cpu/matmul.h"
#include "cpu/thread_pool.h"
#include "fp4.h"

namespace fp4::cpu {

struct OpContext {
    ThreadPool& pool;
    const Kernels& kern;
    AlignedBuffer& scratch;  // per-op temporary memory (packed activations, scores, panels)
    bool bf16_activations;   // MUL_MAT rounds x to BF16 for NVFP4 and BF16 weights (matmul.h)
};

void op_get_rows(OpContext& ctx, Tensor& dst);
void op_mul_mat(OpContext& ctx, Tensor& dst);
void op_rms_norm(OpContext& ctx, Tensor& dst);
void op_rope(OpContext& ctx, Tensor& dst);
void op_rope_2d(OpContext& ctx, Tensor& dst);
void op_attn_cached(OpContext& ctx, Tensor& dst);
void op_attn_full(OpContext& ctx, Tensor& dst);
void op_swiglu(OpContext& ctx, Tensor& dst);
void op_gelu(OpContext& ctx, Tensor& dst);
void op_add(OpContext& ctx, Tensor& dst);
void op_im2col_patch(OpContext& ctx, Tensor& dst);
void op_patch_merge(OpContext& ctx, Tensor& dst);
void op_scatter_rows(OpContext& ctx, Tensor& dst);
void op_argmax(OpContext& ctx, Tensor& dst);

// Throws unless `t` is F32 (the only activation type of this backend).
void require_f32(const Tensor& t, Op op);

}  // namespace fp4::cpu
