// buffer.h — 64-byte aligned host memory owned by the CPU backend: persistent tensors, the arena that
// holds a graph's inputs and intermediates, and the grow-only scratch that kernels borrow.
#pragma once

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <new>

namespace fp4::cpu {

constexpr size_t kAlign = 64;

inline size_t align_up(size_t n, size_t a = kAlign) { return (n + a - 1) / a * a; }

class AlignedBuffer {
public:
    AlignedBuffer() = default;
    explicit AlignedBuffer(size_t bytes, bool zero = false) { grow(bytes, zero); }
    ~AlignedBuffer() { std::free(data_); }
    AlignedBuffer(const AlignedBuffer&) = delete;
    AlignedBuffer& operator=(const AlignedBuffer&) = delete;

    // Makes room for at least `bytes` (old contents are not kept) and returns the start.
    void* grow(size_t bytes, bool zero = false) {
        if (bytes > size_) {
            std::free(data_);
            data_ = std::aligned_alloc(kAlign, align_up(bytes));
            if (!data_) {
                size_ = 0;
                throw std::bad_alloc();
            }
            size_ = align_up(bytes);
        }
        if (zero) std::memset(data_, 0, bytes);
        return data_;
    }
    void* data() const { return data_; }
    size_t size() const { return size_; }

private:
    void* data_ = nullptr;
    size_t size_ = 0;
};

}  // namespace fp4::cpu
