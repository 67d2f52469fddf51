// cublas.cpp — the cuBLAS GEMMs the backend calls, for the emulator: column-major C = α·op(A)·op(B) + β·C
// on the handle's stream (so a capture records them), F32 accumulation over BF16/F16/F32 operands, and
// with CUBLAS_COMPUTE_32F_FAST_TF32 the operands rounded to TF32 first (the most a GPU may round them).
#include <vector>

#include "cuda_emu.h"

struct cublasContext {
    cudaStream_t stream = nullptr;
};

namespace {

float load(const void* p, cudaDataType t, int64_t i) {
    switch (t) {
        case CUDA_R_16BF: return __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]);
        case CUDA_R_16F: return __half2float(static_cast<const __half*>(p)[i]);
        default: return static_cast<const float*>(p)[i];
    }
}
void store(void* p, cudaDataType t, int64_t i, float v) {
    switch (t) {
        case CUDA_R_16BF: static_cast<__nv_bfloat16*>(p)[i] = __float2bfloat16_rn(v); break;
        case CUDA_R_16F: static_cast<__half*>(p)[i] = __float2half_rn(v); break;
        default: static_cast<float*>(p)[i] = v;
    }
}
float tf32(float v) {  // round to nearest even at 10 mantissa bits
    uint32_t u;
    std::memcpy(&u, &v, 4);
    if ((u & 0x7f800000u) != 0x7f800000u) u = (u + 0xfffu + ((u >> 13) & 1)) & ~0x1fffu;
    std::memcpy(&v, &u, 4);
    return v;
}
bool supported(cudaDataType t) { return t == CUDA_R_16BF || t == CUDA_R_16F || t == CUDA_R_32F; }

struct Gemm {
    cublasOperation_t ta, tb;
    int m, n, k;
    float alpha, beta;
    const void* A;
    cudaDataType at;
    int lda;
    const void* B;
    cudaDataType bt;
    int ldb;
    void* C;
    cudaDataType ct;
    int ldc;
    bool round_tf32;
    int64_t sa = 0, sb = 0, sc = 0;
    int batch = 1;

    void operator()() const {
        std::vector<float> a(size_t(m) * k), b(size_t(n) * k);  // op(A) by rows, op(B) by columns
        for (int bi = 0; bi < batch; ++bi) {
            for (int i = 0; i < m; ++i)
                for (int p = 0; p < k; ++p) {
                    const float v =
                        load(A, at, bi * sa + (ta == CUBLAS_OP_N ? i + int64_t(p) * lda : p + int64_t(i) * lda));
                    a[size_t(i) * k + p] = round_tf32 ? tf32(v) : v;
                }
            for (int j = 0; j < n; ++j)
                for (int p = 0; p < k; ++p) {
                    const float v =
                        load(B, bt, bi * sb + (tb == CUBLAS_OP_N ? p + int64_t(j) * ldb : j + int64_t(p) * ldb));
                    b[size_t(j) * k + p] = round_tf32 ? tf32(v) : v;
                }
            for (int j = 0; j < n; ++j)
                for (int i = 0; i < m; ++i) {
                    float s = 0;
                    const float *ar = &a[size_t(i) * k], *bc = &b[size_t(j) * k];
                    for (int p = 0; p < k; ++p) s += ar[p] * bc[p];
                    const int64_t ci = bi * sc + i + int64_t(j) * ldc;
                    store(C, ct, ci, alpha * s + (beta != 0.f ? beta * load(C, ct, ci) : 0.f));
                }
        }
    }
};

cublasStatus_t submit(cublasHandle_t h, const Gemm& g) {
    if (!supported(g.at) || !supported(g.bt) || !supported(g.ct) || g.m < 0 || g.n < 0 || g.k < 0)
        return CUBLAS_STATUS_NOT_SUPPORTED;
    fp4::emu::submit(h->stream, [g] {
        fp4::emu::guard_other_work();
        g();
    });
    return CUBLAS_STATUS_SUCCESS;
}

}  // namespace

cublasStatus_t cublasCreate(cublasHandle_t* h) {
    *h = new cublasContext;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasDestroy(cublasHandle_t h) {
    delete h;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetStream(cublasHandle_t h, cudaStream_t s) {
    h->stream = s;
    return CUBLAS_STATUS_SUCCESS;
}
const char* cublasGetStatusString(cublasStatus_t s) {
    return s == CUBLAS_STATUS_SUCCESS ? "CUBLAS_STATUS_SUCCESS" : "cuBLAS error (cuda-emu)";
}

cublasStatus_t cublasSgemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                           const float* alpha, const float* A, int lda, const float* B, int ldb, const float* beta,
                           float* C, int ldc) {
    return submit(h, Gemm{ta, tb, m, n, k, *alpha, *beta, A, CUDA_R_32F, lda, B, CUDA_R_32F, ldb, C, CUDA_R_32F, ldc,
                          false});
}

cublasStatus_t cublasGemmEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                            const void* alpha, const void* A, cudaDataType at, int lda, const void* B, cudaDataType bt,
                            int ldb, const void* beta, void* C, cudaDataType ct, int ldc, cublasComputeType_t compute,
                            cublasGemmAlgo_t) {
    return submit(h, Gemm{ta, tb, m, n, k, *static_cast<const float*>(alpha), *static_cast<const float*>(beta), A, at,
                          lda, B, bt, ldb, C, ct, ldc, compute == CUBLAS_COMPUTE_32F_FAST_TF32});
}

cublasStatus_t cublasGemmStridedBatchedEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                                          int k, const void* alpha, const void* A, cudaDataType at, int lda,
                                          long long sa, const void* B, cudaDataType bt, int ldb, long long sb,
                                          const void* beta, void* C, cudaDataType ct, int ldc, long long sc,
                                          int batch, cublasComputeType_t compute, cublasGemmAlgo_t) {
    Gemm g{ta, tb, m, n, k, *static_cast<const float*>(alpha), *static_cast<const float*>(beta), A, at, lda, B, bt,
           ldb, C, ct, ldc, compute == CUBLAS_COMPUTE_32F_FAST_TF32};
    g.sa = sa, g.sb = sb, g.sc = sc, g.batch = batch;
    return submit(h, g);
}
