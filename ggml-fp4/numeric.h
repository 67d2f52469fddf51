// numeric.h — scalar conversions between the number formats ggml-fp4 stores (BF16, F16, FP8 E4M3,
// FP4 E2M1) and F32, plus the reference NVFP4 dequantization every fast path is tested against.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

namespace fp4 {

inline float bits_to_f32(uint32_t u) { float f; std::memcpy(&f, &u, 4); return f; }
inline uint32_t f32_to_bits(float f) { uint32_t u; std::memcpy(&u, &f, 4); return u; }

inline float bf16_to_f32(uint16_t h) { return bits_to_f32(uint32_t(h) << 16); }

// Round to nearest even; NaN stays NaN.
inline uint16_t f32_to_bf16(float f) {
    uint32_t u = f32_to_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1u);
    return uint16_t(u >> 16);
}

inline float f16_to_f32(uint16_t h) {
    uint32_t sign = uint32_t(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
    if (exp == 0) {
        float v = std::ldexp(float(man), -24);
        return sign ? -v : v;
    }
    if (exp == 31) return bits_to_f32(sign | 0x7f800000u | (man << 13));
    return bits_to_f32(sign | ((exp + 112) << 23) | (man << 13));
}

// FP8 E4M3 "fn" (as torch.float8_e4m3fn): bias 7, no infinities, 0x7f/0xff are NaN, max 448.
inline float e4m3_to_f32(uint8_t b) {
    uint32_t sign = b >> 7, exp = (b >> 3) & 0xfu, man = b & 0x7u;
    float v;
    if (exp == 0xf && man == 0x7) v = NAN;
    else if (exp == 0) v = std::ldexp(float(man), -9);
    else v = std::ldexp(float(8 + man), int(exp) - 10);
    return sign ? -v : v;
}

// Round to nearest even, saturating to ±448 (what torch's .to(float8_e4m3fn) gives after a clamp).
inline uint8_t f32_to_e4m3(float f) {
    uint8_t sign = std::signbit(f) ? 0x80 : 0;
    float a = std::fabs(f);
    if (std::isnan(f)) return 0x7f;
    if (a >= 448.0f) return sign | 0x7e;
    int e;
    std::frexp(a, &e);                 // a = m·2^e, m in [0.5, 1)
    int exp = e - 1 + 7;               // biased exponent of a
    float step = exp <= 0 ? std::ldexp(1.0f, -9) : std::ldexp(1.0f, e - 1 - 3);
    float q = std::nearbyint(a / step) * step;  // default rounding mode: ties to even
    if (q == 0.0f) return sign;
    std::frexp(q, &e);
    exp = e - 1 + 7;
    if (exp <= 0) return sign | uint8_t(q / std::ldexp(1.0f, -9));
    uint8_t man = uint8_t(q / std::ldexp(1.0f, e - 1 - 3)) - 8;
    return sign | uint8_t(exp << 3) | man;
}

// FP4 E2M1: bit 3 is the sign, bits 0..2 index {0, 0.5, 1, 1.5, 2, 3, 4, 6}.
inline float e2m1_to_f32(uint8_t code) {
    static constexpr float kMag[8] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f};
    float v = kMag[code & 7];
    return (code & 8) ? -v : v;
}

// Nearest E2M1 code with ties to the even code (0.25→0, 0.75→1, 1.25→1, 1.75→2, 2.5→2, 3.5→4, 5→4),
// clamped to ±6. As compressed-tensors' cast_to_fp4 (|x| rounded, times torch.sign(x)): a negative
// value that rounds to zero keeps the sign bit (code 8), while −0 itself gives code 0.
// Branch-free so that loops over it vectorize.
inline uint8_t f32_to_e2m1(float f) {
    float a = std::fabs(f);
    int m = (a > 0.25f) + (a >= 0.75f) + (a > 1.25f) + (a >= 1.75f) + (a > 2.5f) + (a >= 3.5f) + (a > 5.0f);
    return uint8_t(((f < 0.0f) << 3) | m);
}

// Reference dequantization of one NVFP4 row of K elements (K a multiple of 16).
inline void dequant_nvfp4_row(const uint8_t* codes, const uint8_t* scales, float gscale, int64_t K,
                              float* out) {
    for (int64_t k = 0; k < K; ++k) {
        uint8_t byte = codes[k / 2];
        uint8_t code = (k & 1) ? (byte >> 4) : (byte & 0xf);
        out[k] = e2m1_to_f32(code) * (e4m3_to_f32(scales[k / 16]) / gscale);
    }
}

}  // namespace fp4
