// rope.cpp — RoPE frequencies and the host-side turn of stored keys to another position.
#include "rope.h"

#include <cmath>
#include <stdexcept>
#include <string>

#include "numeric.h"

namespace fp4 {

std::vector<float> rope_inv_freq(float theta, int head_dim) {
    std::vector<float> f(size_t(head_dim / 2));
    for (int j = 0; j < head_dim / 2; ++j) f[size_t(j)] = 1.0f / std::pow(theta, float(2 * j) / float(head_dim));
    return f;
}

namespace {

float load(Type t, const void* p, int64_t i) {
    switch (t) {
        case Type::F32: return static_cast<const float*>(p)[i];
        case Type::BF16: return bf16_to_f32(static_cast<const uint16_t*>(p)[i]);
        default: return e4m3_to_f32(static_cast<const uint8_t*>(p)[i]);
    }
}

void store(Type t, void* p, int64_t i, double v) {
    switch (t) {
        case Type::F32: static_cast<float*>(p)[i] = float(v); break;
        case Type::BF16: static_cast<uint16_t*>(p)[i] = f32_to_bf16(float(v)); break;
        default: static_cast<uint8_t*>(p)[i] = f32_to_e4m3(float(v)); break;
    }
}

}  // namespace

void rope_shift_rows(Type t, void* rows, int64_t n_rows, int n_head, int head_dim, float theta, int64_t delta) {
    if (t != Type::F32 && t != Type::BF16 && t != Type::F8_E4M3)
        throw std::invalid_argument(std::string("rope_shift_rows: no KV cache stores ") + type_name(t));
    const int half = head_dim / 2;
    const std::vector<float> inv_freq = rope_inv_freq(theta, head_dim);
    std::vector<double> c(static_cast<size_t>(half)), s(c.size());
    for (int i = 0; i < half; ++i) {
        const double angle = double(delta) * double(inv_freq[size_t(i)]);
        c[size_t(i)] = std::cos(angle);
        s[size_t(i)] = std::sin(angle);
    }
    for (int64_t r = 0; r < n_rows; ++r)
        for (int h = 0; h < n_head; ++h) {
            const int64_t at = (r * n_head + h) * head_dim;
            for (int i = 0; i < half; ++i) {
                const double a = load(t, rows, at + i), b = load(t, rows, at + i + half);
                store(t, rows, at + i, a * c[size_t(i)] - b * s[size_t(i)]);
                store(t, rows, at + i + half, b * c[size_t(i)] + a * s[size_t(i)]);
            }
        }
}

}  // namespace fp4
