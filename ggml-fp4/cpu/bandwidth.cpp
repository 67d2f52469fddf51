// bandwidth.cpp — read: each thread sums the 64-bit words of its share of a segment, prefetching ahead
// as the matmul kernels do; copy: each thread copies its share of a segment into a second buffer with
// streaming stores (no read-for-ownership of the destination, as a large memcpy does). The
// buffers are walked in segments of a few milliseconds each, timed separately, and the best segment
// counts: short samples find the moments when every thread has a core on a shared machine, and a
// segment comes round again only after the whole buffer has pushed it out of the caches.
#include "cpu/bandwidth.h"

#include <emmintrin.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>

#include "cpu/buffer.h"
#include "cpu/matmul.h"

namespace fp4::cpu {

MemoryBandwidth measure_memory_bandwidth(ThreadPool& pool, size_t bytes, int reps) {
    const size_t segment = std::min(align_up(bytes), size_t(64) << 20);
    const size_t n_segments = (bytes + segment - 1) / segment;
    bytes = n_segments * segment;
    AlignedBuffer src(bytes), dst(bytes);
    auto* s = static_cast<uint64_t*>(src.data());
    auto* d = static_cast<char*>(dst.data());
    pool.parallel_for(int64_t(bytes / 8), [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) s[i] = uint64_t(i) * 0x9E3779B97F4A7C15ull;
        std::memset(d + 8 * b, 0, size_t(e - b) * 8);
    });

    using Clock = std::chrono::steady_clock;
    const int64_t lines = int64_t(segment / 64);
    std::atomic<uint64_t> sink{0};
    MemoryBandwidth best{0, 0};
    for (int r = 0; r < reps; ++r)
        for (size_t seg = 0; seg < n_segments; ++seg) {
            const uint64_t* words = s + seg * segment / 8;
            auto t0 = Clock::now();
            pool.parallel_for(lines, [&](int64_t b, int64_t e) {
                uint64_t acc[8] = {};
                for (int64_t i = 8 * b; i < 8 * e; i += 8) {
                    __builtin_prefetch(words + i + kPrefetchBytes / 8);
                    for (int j = 0; j < 8; ++j) acc[j] += words[i + j];
                }
                sink += acc[0] + acc[1] + acc[2] + acc[3] + acc[4] + acc[5] + acc[6] + acc[7];
            });
            best.read = std::max(best.read, double(segment) / std::chrono::duration<double>(Clock::now() - t0).count());
        }
    for (int r = 0; r < reps; ++r)
        for (size_t seg = 0; seg < n_segments; ++seg) {
            const char* from = reinterpret_cast<const char*>(s) + seg * segment;
            char* to = d + seg * segment;
            auto t0 = Clock::now();
            pool.parallel_for(lines, [&](int64_t b, int64_t e) {
                for (int64_t i = 64 * b; i < 64 * e; i += 64) {
                    __builtin_prefetch(from + i + kPrefetchBytes);
                    for (int j = 0; j < 64; j += 16)
                        _mm_stream_si128(reinterpret_cast<__m128i*>(to + i + j),
                                         _mm_load_si128(reinterpret_cast<const __m128i*>(from + i + j)));
                }
                _mm_sfence();
            });
            best.copy =
                std::max(best.copy, 2.0 * double(segment) / std::chrono::duration<double>(Clock::now() - t0).count());
        }
    return best;
}

}  // namespace fp4::cpu
