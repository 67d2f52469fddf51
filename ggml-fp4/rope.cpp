// rope.cpp — RoPE frequencies and the host-side turn of stored keys to another position.
#include "rope.h"

#include <cmath>

namespace fp4 {

std::vector<float> rope_inv_freq(float theta, int head_dim) {
    std::vector<float> f(size_t(head_dim / 2));
    for (int j = 0; j < head_dim / 2; ++j) f[size_t(j)] = 1.0f / std::pow(theta, float(2 * j) / float(head_dim));
    return f;
}

void rope_shift_rows(Type t, void* rows, int64_t n_rows, int n_head, int head_dim, float theta, int64_t delta) {
    const int half = head_dim / 2;
    const int64_t width = int64_t(n_head) * head_dim;
    const std::vector<float> inv_freq = rope_inv_freq(theta, head_dim);
    std::vector<double> c(static_cast<size_t>(half)), s(c.size());
    for (int i = 0; i < half; ++i) {
        const double angle = double(delta) * double(inv_freq[size_t(i)]);
        c[size_t(i)] = std::cos(angle);
        s[size_t(i)] = std::sin(angle);
    }
    std::vector<float> x(static_cast<size_t>(width));
    for (int64_t r = 0; r < n_rows; ++r) {
        void* row = static_cast<uint8_t*>(rows) + size_t(r) * row_bytes(t, width);
        load_cache_values(t, row, width, x.data());
        for (int h = 0; h < n_head; ++h) {
            float* xh = x.data() + int64_t(h) * head_dim;
            for (int i = 0; i < half; ++i) {
                const double a = xh[i], b = xh[i + half];
                xh[i] = float(a * c[size_t(i)] - b * s[size_t(i)]);
                xh[i + half] = float(b * c[size_t(i)] + a * s[size_t(i)]);
            }
        }
        store_cache_values(t, x.data(), width, row);
    }
}

}  // namespace fp4
