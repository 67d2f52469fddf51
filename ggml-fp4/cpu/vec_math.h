// vec_math.h — vectors of L floats with GCC's vector extensions, and the vector math the kernel files
// share: loads and stores, a lane maximum, 2^x for x ≤ 0, and the SiLU-gated product of SWIGLU. Each
// instruction set's kernel file compiles them with L = its vector width (AVX-512 16, AVX2 8, SSE2 4),
// with internal linkage there.
#pragma once

#include <array>
#include <cstdint>
#include <cstring>
#include <utility>

namespace fp4::cpu {

constexpr float kLog2e = 1.44269504f;

namespace {

// Vectors of L floats and of L ints (explicit specialisations: GCC drops vector_size from an alias
// template whose size depends on its parameter).
template <int L>
struct Lanes;
template <>
struct Lanes<16> {
    typedef float F __attribute__((vector_size(64)));
    typedef int32_t I __attribute__((vector_size(64)));
};
template <>
struct Lanes<8> {
    typedef float F __attribute__((vector_size(32)));
    typedef int32_t I __attribute__((vector_size(32)));
};
template <>
struct Lanes<4> {
    typedef float F __attribute__((vector_size(16)));
    typedef int32_t I __attribute__((vector_size(16)));
};
template <int L>
using Vec = typename Lanes<L>::F;
template <int L>
using IVec = typename Lanes<L>::I;

template <int L>
inline Vec<L> vload(const float* p) {
    Vec<L> v;
    std::memcpy(&v, p, sizeof v);
    return v;
}
template <int L>
inline void vstore(float* p, Vec<L> v) {
    std::memcpy(p, &v, sizeof v);
}

// 2^x for x ≤ 0: 2^n·e^(f·ln 2) with n = round(x), f = x − n in [−½, ½] and e^y Taylor's polynomial of
// degree Deg (relative error below 1.2e-7 at 6; 4.2e-5 at 4, a fiftieth of BF16's rounding); below −126,
// where 2^x leaves the normal floats, 2^−126 (beside a softmax row's largest weight, 1, one no sum can see).
template <int L, int Deg>
inline Vec<L> exp2_nonpositive(Vec<L> x) {
    constexpr auto coef = [] {  // (ln 2)^k / k!
        std::array<float, Deg + 1> c{};
        double term = 1.0;
        for (int k = 0; k <= Deg; ++k, term *= 0.6931471805599453 / k) c[size_t(k)] = float(term);
        return c;
    }();
    const Vec<L> floor = Vec<L>{} - 126.0f;
    x = x < floor ? floor : x;
    // Adding 1.5·2^23 rounds x to an integer n and leaves it in the low mantissa bits.
    const Vec<L> shifted = x + 12582912.0f, f = x - (shifted - 12582912.0f);
    Vec<L> p = Vec<L>{} + coef[Deg];
    for (int k = Deg - 1; k >= 0; --k) p = p * f + coef[size_t(k)];
    IVec<L> bits;
    std::memcpy(&bits, &shifted, sizeof bits);
    bits = (bits - 0x4b400000 + 127) << 23;  // 2^n
    Vec<L> scale;
    std::memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

// Lane l of v swapped with lane l xor W, for every l.
template <int W, class V, int... I>
inline V swap_lanes(V v, std::integer_sequence<int, I...>) {
    return __builtin_shufflevector(v, v, (I ^ W)...);
}

// Every lane of the result holds the largest of v's lanes (a butterfly: log2 L swaps).
template <int L, int W = L / 2>
inline Vec<L> lanes_max(Vec<L> v) {
    const Vec<L> u = swap_lanes<W>(v, std::make_integer_sequence<int, L>{});
    v = u > v ? u : v;
    if constexpr (W > 1)
        return lanes_max<L, W / 2>(v);
    else
        return v;
}

// y = silu(g)·u element by element, silu(g) = g·σ(g) with σ from e = e^−|g| (one exp2 of a non-positive
// argument): 1 / (1 + e) for g ≥ 0, e / (1 + e) below (relative error ~1e-7 + 6e-8·|g|; for g < −87,
// where σ(g) leaves the normal floats, g·2^−126 instead of a denormal). The last n % L through a padded copy.
template <int L>
void swiglu(const float* g, const float* u, float* y, int64_t n) {
    auto one = [](Vec<L> x, Vec<L> up) {
        const Vec<L> neg = x > 0 ? -x : x;
        const Vec<L> e = exp2_nonpositive<L, 6>(neg * kLog2e), ones = Vec<L>{} + 1.0f;
        return x * ((x >= 0 ? ones : e) / (ones + e)) * up;
    };
    int64_t i = 0;
    for (; i + L <= n; i += L) vstore<L>(y + i, one(vload<L>(g + i), vload<L>(u + i)));
    if (i == n) return;
    float gt[L] = {}, ut[L] = {}, yt[L];
    std::memcpy(gt, g + i, size_t(n - i) * 4);
    std::memcpy(ut, u + i, size_t(n - i) * 4);
    vstore<L>(yt, one(vload<L>(gt), vload<L>(ut)));
    std::memcpy(y + i, yt, size_t(n - i) * 4);
}

}  // namespace
}  // namespace fp4::cpu
