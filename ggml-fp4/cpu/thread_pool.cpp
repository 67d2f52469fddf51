// thread_pool.cpp — workers spin briefly on a generation counter (ops follow each other quickly during
// decode), then sleep on a condition variable.
#include "cpu/thread_pool.h"

#include <algorithm>
#include <utility>

namespace fp4::cpu {

static constexpr int kSpinIterations = 2000;

static inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

ThreadPool::ThreadPool(int n_threads) { start(n_threads); }

ThreadPool::~ThreadPool() { stop(); }

void ThreadPool::resize(int n_threads) {
    stop();
    start(n_threads);
}

void ThreadPool::start(int n_threads) {
    if (n_threads <= 0) n_threads = int(std::max(1u, std::thread::hardware_concurrency()));
    n_threads_ = n_threads;
    stopping_ = false;
    const uint64_t generation = generation_.load(std::memory_order_acquire);  // jobs after this one are new
    for (int i = 1; i < n_threads_; ++i) threads_.emplace_back([this, i, generation] { worker(i, generation); });
}

void ThreadPool::stop() {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        stopping_ = true;
        generation_.fetch_add(1, std::memory_order_release);
    }
    wake_.notify_all();
    for (auto& t : threads_) t.join();
    threads_.clear();
}

void ThreadPool::call(int ith) {
    try {
        (*job_)(ith, n_threads_);
    } catch (...) {
        std::lock_guard<std::mutex> lock(mutex_);
        if (!error_) error_ = std::current_exception();
    }
}

void ThreadPool::worker(int ith, uint64_t seen) {
    for (;;) {
        for (int spin = 0; spin < kSpinIterations && generation_.load(std::memory_order_acquire) == seen; ++spin)
            cpu_relax();
        if (generation_.load(std::memory_order_acquire) == seen) {
            std::unique_lock<std::mutex> lock(mutex_);
            wake_.wait(lock, [&] { return generation_.load(std::memory_order_acquire) != seen; });
        }
        seen = generation_.load(std::memory_order_acquire);
        {
            std::lock_guard<std::mutex> lock(mutex_);
            if (stopping_) return;
        }
        call(ith);
        if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
            std::lock_guard<std::mutex> lock(mutex_);
            done_.notify_one();
        }
    }
}

void ThreadPool::run(const std::function<void(int, int)>& fn) {
    job_ = &fn;
    error_ = nullptr;
    if (n_threads_ > 1) {
        pending_.store(n_threads_ - 1, std::memory_order_relaxed);
        {
            std::lock_guard<std::mutex> lock(mutex_);
            generation_.fetch_add(1, std::memory_order_release);
        }
        wake_.notify_all();
    }
    call(0);
    if (n_threads_ > 1) {
        for (int spin = 0; spin < kSpinIterations && pending_.load(std::memory_order_acquire) != 0; ++spin)
            cpu_relax();
        std::unique_lock<std::mutex> lock(mutex_);
        done_.wait(lock, [&] { return pending_.load(std::memory_order_acquire) == 0; });
    }
    job_ = nullptr;
    if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
}

void ThreadPool::parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn) {
    if (n <= 0) return;
    run([&](int ith, int nth) {
        int64_t begin = n * ith / nth, end = n * (ith + 1) / nth;
        if (begin < end) fn(begin, end);
    });
}

void ThreadPool::parallel_chunks(int64_t n_chunks, const std::function<void(int64_t, int)>& fn) {
    if (n_chunks <= 0) return;
    std::atomic<int64_t> next{0};
    run([&](int ith, int) {
        for (int64_t c; (c = next.fetch_add(1, std::memory_order_relaxed)) < n_chunks;) fn(c, ith);
    });
}

}  // namespace fp4::cpu
