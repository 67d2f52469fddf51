// thread_pool.h — the CPU backend's persistent worker threads: run one function on every thread,
// split a range statically, or hand out chunks dynamically. The calling thread is worker 0.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace fp4::cpu {

class ThreadPool {
public:
    explicit ThreadPool(int n_threads);  // n_threads <= 0: hardware concurrency
    ~ThreadPool();
    ThreadPool(const ThreadPool&) = delete;
    ThreadPool& operator=(const ThreadPool&) = delete;

    int size() const { return n_threads_; }
    void resize(int n_threads);

    // Calls fn(ith, nth) once on each of the nth threads and returns when all have finished.
    // An exception thrown by any call is rethrown here.
    void run(const std::function<void(int ith, int nth)>& fn);
    // Splits [0, n) into one contiguous range per thread: fn(begin, end).
    void parallel_for(int64_t n, const std::function<void(int64_t begin, int64_t end)>& fn);
    // Hands chunks 0..n_chunks-1 to whichever thread is free: fn(chunk, ith).
    void parallel_chunks(int64_t n_chunks, const std::function<void(int64_t chunk, int ith)>& fn);

private:
    void start(int n_threads);
    void stop();
    void worker(int ith, uint64_t seen);
    void call(int ith);

    int n_threads_ = 1;
    std::vector<std::thread> threads_;
    std::mutex mutex_;
    std::condition_variable wake_, done_;
    std::atomic<uint64_t> generation_{0};
    std::atomic<int> pending_{0};
    bool stopping_ = false;
    const std::function<void(int, int)>* job_ = nullptr;
    std::exception_ptr error_;
};

}  // namespace fp4::cpu
