// bandwidth.cpp — read: each thread sums the 64-bit words of its share of a buffer; copy: each thread
// memcpys its share into a second buffer. Both buffers are written once beforehand so that their pages
// exist.
#include "cpu/bandwidth.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>

#include "cpu/buffer.h"

namespace fp4::cpu {

MemoryBandwidth measure_memory_bandwidth(ThreadPool& pool, size_t bytes, int reps) {
    bytes = align_up(bytes);
    AlignedBuffer src(bytes), dst(bytes);
    auto* s = static_cast<uint64_t*>(src.data());
    auto* d = static_cast<char*>(dst.data());
    const int64_t words = int64_t(bytes / 8), lines = int64_t(bytes / 64);
    pool.parallel_for(words, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) s[i] = uint64_t(i) * 0x9E3779B97F4A7C15ull;
        std::memset(d + 8 * b, 0, size_t(e - b) * 8);
    });
    using Clock = std::chrono::steady_clock;
    auto seconds = [](Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); };
    std::atomic<uint64_t> sink{0};
    MemoryBandwidth best{0, 0};
    for (int r = 0; r < reps; ++r) {
        auto t0 = Clock::now();
        pool.parallel_for(lines, [&](int64_t b, int64_t e) {
            uint64_t acc[8] = {};
            for (int64_t i = 8 * b; i < 8 * e; i += 8)
                for (int j = 0; j < 8; ++j) acc[j] += s[i + j];
            sink += acc[0] + acc[1] + acc[2] + acc[3] + acc[4] + acc[5] + acc[6] + acc[7];
        });
        best.read = std::max(best.read, double(bytes) / seconds(t0));
        t0 = Clock::now();
        pool.parallel_for(lines, [&](int64_t b, int64_t e) {
            std::memcpy(d + 64 * b, reinterpret_cast<const char*>(s) + 64 * b, size_t(e - b) * 64);
        });
        best.copy = std::max(best.copy, 2.0 * double(bytes) / seconds(t0));
    }
    return best;
}

}  // namespace fp4::cpu
