// fma_peak.cpp — every thread runs the kernel set's independent FMA chains for a fixed number of
// iterations; the run is timed as a whole (so the slowest thread counts), calibrated once to ~20 ms,
// and the best of several runs is the peak: on a shared machine short samples find the moments when
// every thread has a core.
#include "cpu/fma_peak.h"

#include <algorithm>
#include <atomic>
#include <chrono>

namespace fp4::cpu {

double measure_fma_peak(const Kernels& kern, ThreadPool& pool, int reps, bool pairs) {
    float (*chains)(int64_t) = pairs && kern.pair_chains ? kern.pair_chains : kern.fma_chains;
    std::atomic<float> sink{0.0f};  // keeps the chains' results live
    auto run = [&](int64_t iters) {
        const auto t0 = std::chrono::steady_clock::now();
        pool.run([&](int, int) { sink.store(chains(iters), std::memory_order_relaxed); });
        return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    };
    int64_t iters = 1 << 12;
    while (run(iters) < 0.02 && iters < (int64_t(1) << 30)) iters *= 2;
    double best = 0.0;
    for (int r = 0; r < std::max(1, reps); ++r) best = std::max(best, 1.0 / run(iters));
    const double flops_per_lane = chains == kern.pair_chains ? 4.0 : 2.0;
    const double flops_per_run = double(iters) * kFmaChains * flops_per_lane * double(kern.gemm_lanes) * pool.size();
    return flops_per_run * best;
}

}  // namespace fp4::cpu
