// bandwidth.h — the host's memory bandwidth, measured with a thread pool: a parallel read and a parallel
// copy over buffers much larger than the caches. The backend's measure_bandwidth() and tools/microbench
// report it; memory-bound kernels (the decode GEMV) are judged against it.
#pragma once

#include <cstddef>

#include "cpu/thread_pool.h"

namespace fp4::cpu {

struct MemoryBandwidth {
    double read;  // bytes read per second
    double copy;  // bytes read + bytes written per second, copying
};

// Best of `reps` passes, in 64 MiB segments, over two buffers of `bytes` each.
MemoryBandwidth measure_memory_bandwidth(ThreadPool& pool, size_t bytes, int reps);

}  // namespace fp4::cpu
