// bf16_pairs_avx512.h — BF16 pairs in 32-bit slots (the first value in the low half), made from F32 by
// vcvtne2ps2bf16 (round to nearest even), for the files built with AVX512-BF16: the pair panels' x
// (matmul_avx512bf16.cpp) and the attention tile's blocks and queries (attention_avx512bf16.cpp).
// Internal linkage, as in nvfp4_avx512.h.
#pragma once

#include <immintrin.h>

#include <cstdint>

namespace fp4::cpu {
namespace {

inline __mmask16 lanes_below(int64_t n) { return n >= 16 ? __mmask16(0xffff) : n > 0 ? __mmask16((1u << n) - 1) : 0; }

// 32 floats from p (zero past n) as 16 pairs: slot i = (p[2i], p[2i + 1]).
inline __m512i pairs32(const float* p, int64_t n) {
    const __m512 lo = _mm512_maskz_loadu_ps(lanes_below(n), p);
    const __m512 hi = _mm512_maskz_loadu_ps(lanes_below(n - 16), p + 16);
    return (__m512i)_mm512_cvtne2ps_pbh(hi, lo);
}

// Two vectors as 16 pairs: slot i = (a[i], b[i]).
inline __m512i interleave_pairs(__m512 a, __m512 b) {
    static const __m512i order = [] {  // word 2i from word i (a's), word 2i + 1 from word 16 + i (b's)
        alignas(64) uint16_t idx[32];
        for (int i = 0; i < 16; ++i) idx[2 * i] = uint16_t(i), idx[2 * i + 1] = uint16_t(16 + i);
        return _mm512_load_si512(idx);
    }();
    return _mm512_permutexvar_epi16(order, (__m512i)_mm512_cvtne2ps_pbh(b, a));
}

}  // namespace
}  // namespace fp4::cpu
