// microbench — the CPU backend's speed against the machine's ceilings: (a) plain read and copy bandwidth
// over a buffer much larger than the caches and the kernel set's FMA peak, (b) the NVFP4 matmul and (c) the
// BF16 matmul of a given shape, each reported as time, weight bandwidth (and its share of the read
// bandwidth) and GFLOP/s (and its share of the FMA peak).
// Weights rotate through enough copies to exceed the last-level cache, so they stream from DRAM. Every
// figure is the best of its repetitions (and the median time too), which is robust on a shared machine.
// FP4_CPU_ISA=scalar|avx2|avx512|avx512bf16 picks the kernel set, --cpu-bf16 the BF16 activations.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <memory>
#include <vector>

#include "args.h"
#include "cpu/bandwidth.h"
#include "cpu/buffer.h"
#include "cpu/thread_pool.h"
#include "fp4.h"

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// Fills with pseudo-random bytes (xorshift), each thread its own range.
void fill_random(fp4::cpu::ThreadPool& pool, uint8_t* p, size_t n, uint64_t seed) {
    pool.parallel_for(int64_t(n / 8), [&](int64_t b, int64_t e) {
        uint64_t s = seed * 0x9E3779B97F4A7C15ull + uint64_t(b) + 1;
        for (int64_t i = b; i < e; ++i) {
            s ^= s << 13, s ^= s >> 7, s ^= s << 17;
            std::memcpy(p + 8 * i, &s, 8);
        }
    });
}

// One weight matrix with its own storage, and a graph computing x·Wᵀ with it.
struct WeightCopy {
    std::unique_ptr<fp4::Tensor> w;
    fp4::cpu::AlignedBuffer codes, scales;
    fp4::Graph graph;
};

struct MatmulResult {
    double best_s, median_s;  // seconds per matmul
};

MatmulResult measure_matmul(fp4::Backend& be, fp4::cpu::ThreadPool& pool, fp4::Type type, int64_t N, int64_t K,
                            int64_t M, size_t weight_bytes, size_t min_total_bytes, double min_seconds) {
    const size_t n_copies = std::max<size_t>(1, (min_total_bytes + weight_bytes - 1) / weight_bytes);
    std::vector<float> x(size_t(M * K));
    for (size_t i = 0; i < x.size(); ++i) x[i] = float(int(i % 13) - 6) * 0.125f;
    std::vector<std::unique_ptr<WeightCopy>> copies;
    for (size_t c = 0; c < n_copies; ++c) {
        auto wc = std::make_unique<WeightCopy>();
        wc->w = fp4::make_tensor(type, {K, N}, "w");
        const size_t code_bytes = wc->w->nbytes();
        auto* data = static_cast<uint8_t*>(wc->codes.grow(code_bytes));
        fill_random(pool, data, code_bytes, c + 2);
        if (type == fp4::Type::BF16)  // keep the values finite: exponent bits of every bf16 in [0x3c, 0x3f]
            for (size_t i = 1; i < code_bytes; i += 2) data[i] = uint8_t(0x3c | (data[i] & 0x83));
        wc->w->data = data;
        if (type == fp4::Type::NVFP4) {
            auto* s = static_cast<uint8_t*>(wc->scales.grow(wc->w->scale_bytes()));
            for (size_t i = 0; i < wc->w->scale_bytes(); ++i) s[i] = uint8_t(0x30 + i % 16);
            wc->w->scale = s;
            wc->w->gscale = 1000.0f;
        }
        be.upload_weight(*wc->w);
        wc->graph.mark_output(wc->graph.mul_mat(wc->w.get(), wc->graph.input(fp4::Type::F32, {K, M}, x.data(), "x")));
        copies.push_back(std::move(wc));
    }
    for (auto& wc : copies) be.compute(wc->graph);  // warm-up: page in, size the arena
    std::vector<double> times;
    const auto start = Clock::now();
    do {
        const auto t0 = Clock::now();
        be.compute(copies[times.size() % copies.size()]->graph);
        times.push_back(seconds_since(t0));
    } while (seconds_since(start) < min_seconds || times.size() < copies.size());
    std::sort(times.begin(), times.end());
    return {times.front(), times[times.size() / 2]};
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"microbench: memory bandwidth and CPU matmul speed"};
    int threads = 0;
    int64_t N = 32768, K = 5120;
    std::vector<int64_t> rows = {1};
    int64_t buffer_mib = 1024;
    double seconds = 2.0;
    bool bf16_activations = false;
    app.add_option("-t,--threads", threads, "threads (default: all cores)")->check(common::whole_number(0));
    app.add_option("-N", N, "weight rows (outputs)")->check(common::whole_number(1));
    app.add_option("-K", K, "weight columns (inputs), a multiple of 16")->check(common::whole_number(1));
    app.add_option("--rows", rows, "activation rows M, one run each (e.g. --rows 1,16,64)")
        ->delimiter(',')
        ->check(common::whole_number(1));
    app.add_option("--buffer-mib", buffer_mib, "bandwidth buffer and minimum weight working set, MiB")
        ->check(common::whole_number(1));
    app.add_option("--seconds", seconds, "minimum time per measurement");
    app.add_flag("--cpu-bf16", bf16_activations, "activations rounded to BF16 (the chat binaries' --cpu-bf16)");
    return common::run_main(app, argc, argv, [&] {
        auto be = fp4::make_cpu_backend(threads, bf16_activations);
        fp4::cpu::ThreadPool pool(threads);
        const size_t bytes = size_t(buffer_mib * 1024 * 1024);
        const fp4::cpu::MemoryBandwidth bw = fp4::cpu::measure_memory_bandwidth(pool, bytes, 10);
        std::printf("backend %s, %d threads\n", be->name(), pool.size());
        std::printf("memory  %lld MiB: read %.1f GB/s, copy %.1f GB/s (read + written bytes)\n", (long long)buffer_mib,
                    bw.read / 1e9, bw.copy / 1e9);
        const double peak = be->measure_compute_peak();
        std::printf("FMA peak %.1f GFLOP/s (the kernel set's vector %s on every thread)\n", peak / 1e9,
                    bf16_activations ? "FMAs, or BF16 dot products where it has them," : "FMAs");
        for (fp4::Type type : {fp4::Type::NVFP4, fp4::Type::BF16})
            for (int64_t M : rows) {
                const double weight_bytes =
                    double(fp4::row_bytes(type, K)) * double(N) + (type == fp4::Type::NVFP4 ? double(N * K / 16) : 0);
                const double flops = 2.0 * double(M * N * K);
                const MatmulResult r = measure_matmul(*be, pool, type, N, K, M, size_t(weight_bytes), bytes, seconds);
                std::printf("%-5s N=%lld K=%lld M=%-3lld best %8.3f ms (median %8.3f): %5.1f GB/s of weights = %3.0f%% "
                            "of read bandwidth, %6.1f GFLOP/s = %3.0f%% of FMA peak\n",
                            fp4::type_name(type), (long long)N, (long long)K, (long long)M, r.best_s * 1e3,
                            r.median_s * 1e3, weight_bytes / r.best_s / 1e9, 100.0 * weight_bytes / r.best_s / bw.read,
                            flops / r.best_s / 1e9, 100.0 * flops / r.best_s / peak);
            }
        return 0;
    });
}
