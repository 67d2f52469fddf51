// fma_peak.h — the host's multiply-add rate with a kernel set's vectors, measured with a thread pool:
// the compute ceiling that the matmul panels (prefill, the vision tower) are judged against, as the
// decode GEMV is against the memory bandwidth (bandwidth.h).
#pragma once

#include "cpu/matmul.h"
#include "cpu/thread_pool.h"

namespace fp4::cpu {

// FLOP/s (2 per lane of each FMA) of every pool thread running `kern`'s FMA chains at once: the best of
// `reps` runs of ~20 ms. With `pairs` (a set with pair_chains) its BF16 dot products (4 per lane).
double measure_fma_peak(const Kernels& kern, ThreadPool& pool, int reps, bool pairs = false);

}  // namespace fp4::cpu
