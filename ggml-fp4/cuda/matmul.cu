// matmul.cu — MUL_MAT: y[M, N] = x[M, K]·Wᵀ. Small M goes to the GEMVs of gemv.cu; larger M (prefill)
// goes to cuBLAS: NVFP4 and BF16 weights as a BF16×BF16→F32 GEMM (NVFP4 expanded to a BF16 scratch copy
// first, activations rounded to BF16), F32 and F16 weights as an F32 SGEMM.
#include "kernels.cuh"
#include "nvfp4.cuh"

namespace fp4::cuda {

// Row-major y[M, N] = x[M, K]·W[N, K]ᵀ is column-major yᵀ = Wᵀ·x with W and x both "K-major".
static void gemm_bf16(const Ctx& c, const __nv_bfloat16* w, const __nv_bfloat16* x, int64_t M, int64_t N,
                      int64_t K, float alpha, float* y) {
    const float beta = 0.0f;
    FP4_CHECK(cublasGemmEx(c.blas, CUBLAS_OP_T, CUBLAS_OP_N, int(N), int(M), int(K), &alpha, w, CUDA_R_16BF,
                           int(K), x, CUDA_R_16BF, int(K), &beta, y, CUDA_R_32F, int(N), CUBLAS_COMPUTE_32F,
                           CUBLAS_GEMM_DEFAULT));
}

static void gemm_f32(const Ctx& c, const float* w, const float* x, int64_t M, int64_t N, int64_t K, float* y) {
    const float alpha = 1.0f, beta = 0.0f;
    FP4_CHECK(cublasSgemm(c.blas, CUBLAS_OP_T, CUBLAS_OP_N, int(N), int(M), int(K), &alpha, w, int(K), x, int(K),
                          &beta, y, int(N)));
}

void mul_mat(const Ctx& c, const Tensor& w, const float* x, int64_t M, float* y) {
    const int64_t N = w.ne[1], K = w.ne[0];
    if (M == 0 || N == 0) return;
    if (w.type == Type::NVFP4 && M <= kGemvMaxRowsNvfp4) return gemv_nvfp4(c, w, x, M, y);
    if (w.type != Type::NVFP4 && M <= kGemvMaxRowsDense) return gemv_dense(c, w, x, M, y);
    switch (w.type) {
        case Type::NVFP4: {
            auto* wb = static_cast<__nv_bfloat16*>(c.scratch->get(kWeightTmp, size_t(N * K) * 2));
            auto* xb = static_cast<__nv_bfloat16*>(c.scratch->get(kActBf16, size_t(M * K) * 2));
            nvfp4_to_bf16(c, w, wb);
            to_bf16(c, x, M * K, xb);
            return gemm_bf16(c, wb, xb, M, N, K, nvfp4::kOutScale / w.gscale, y);
        }
        case Type::BF16: {
            auto* xb = static_cast<__nv_bfloat16*>(c.scratch->get(kActBf16, size_t(M * K) * 2));
            to_bf16(c, x, M * K, xb);
            return gemm_bf16(c, static_cast<const __nv_bfloat16*>(w.data), xb, M, N, K, 1.0f, y);
        }
        case Type::F16: {
            auto* wf = static_cast<float*>(c.scratch->get(kWeightTmp, size_t(N * K) * 4));
            to_f32(c, w.data, Type::F16, N * K, wf);
            return gemm_f32(c, wf, x, M, N, K, y);
        }
        case Type::F32: return gemm_f32(c, static_cast<const float*>(w.data), x, M, N, K, y);
        default: fail(std::string("MUL_MAT: unsupported weight type ") + type_name(w.type));
    }
}

}  // namespace fp4::cuda
