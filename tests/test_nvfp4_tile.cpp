// test_nvfp4_tile.cpp — the CUDA backend's NVFP4 tile layout (cuda/nvfp4_tile.h) on the host: the load-time
// repack and the GEMV's fragment decode are the very functions the kernels call, so a change of layout is
// checked here without a GPU. Every decoded fragment must equal the reference e2m1 · e4m3 exactly, and a warp's
// MMAs (emulated as PTX defines their fragments) over the lanes' A and B fragments must give x·Wᵀ.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstring>
#include <set>
#include <vector>

#include "cuda-emu/mma_reference.h"
#include "cuda/nvfp4_tile.h"
#include "numeric.h"
#include "rng.h"

using namespace fp4::cuda::nvfp4;

namespace {

float bf16_bits(uint32_t half) { return fp4::bf16_to_f32(uint16_t(half)); }

}  // namespace

TEST_CASE("every element of a tile has its own four code bits, and 16 columns share a scale byte") {
    std::set<std::pair<int, int>> bits;
    for (int r = 0; r < kTileRows; ++r)
        for (int c = 0; c < kTileCols; ++c) {
            const Place p = place_of(r, c);
            CHECK(p.word >= 0);
            CHECK(p.word < kTileCodeBytes / 4);
            for (int b : p.bits.bit) {
                CHECK((b >= 0 && b < 32));
                CHECK(bits.insert({p.word, b}).second);
            }
            for (uint32_t code = 0; code < 16; ++code) CHECK(code_at(place_code(code, p.bits), p.bits) == code);
            CHECK(p.scale == place_of(r, c & ~15).scale);
            CHECK(p.scale < kTileScaleBytes);
        }
    CHECK(bits.size() == size_t(kTileCodeBytes) * 8);
}

TEST_CASE("the re-encoded scale of every non-NaN positive E4M3 byte decodes to its value") {
    for (int b = 1; b < 0x7f; ++b) CHECK(decode_scale(encode_scale(uint8_t(b))) == fp4::e4m3_to_f32(uint8_t(b)));
}

namespace {

// A random NVFP4 weight whose rows and columns are not whole tiles, with every code and scales that are
// zero, subnormal and negative; `ref` is its reference dequantization (global scale 1).
struct Weight {
    int64_t N, K;
    std::vector<uint8_t> codes, scales;
    std::vector<float> ref;
    Weight(int64_t n, int64_t k, uint32_t seed) : N(n), K(k), codes(size_t(n * k / 2)), scales(size_t(n * k / 16)) {
        Rng r{seed};
        for (auto& b : codes) b = uint8_t(r.integer(0, 255));
        for (size_t i = 0; i < scales.size(); ++i) {
            uint8_t b = uint8_t(r.integer(0, 255));
            if ((b & 0x7f) == 0x7f) b = 0x38;  // no NaN
            scales[i] = i % 7 == 0 ? 0 : i % 11 == 0 ? uint8_t(b & 0x87) : b;
        }
        ref.resize(size_t(N * K));
        for (int64_t row = 0; row < N; ++row)
            fp4::dequant_nvfp4_row(&codes[size_t(row * K / 2)], &scales[size_t(row * K / 16)], 1.0f, K,
                                   &ref[size_t(row * K)]);
    }
    int64_t row_tiles() const { return padded_rows(N) / kTileRows; }
};

// The scaled A fragments a lane feeds MMA kk of tile (rt, kt), as the GEMV computes them.
void lane_fragments(const Weight& w, int64_t rt, int64_t kt, int lane, uint32_t a[4][4]) {
    uint32_t words[4], sg, sg8;
    uint16_t scale_pair;
    bool nan_scale = false;
    repack_lane(w.codes.data(), w.scales.data(), w.N, w.K, rt, kt, lane, words, &scale_pair, &nan_scale);
    CHECK_FALSE(nan_scale);
    scale_pairs(scale_pair, sg, sg8);
    for (int kk = 0; kk < 4; ++kk) a_fragments(words[kk], sg, sg8, a[kk]);
}

}  // namespace

TEST_CASE("a lane's columns of MMA kk are 4 consecutive ones of its scale group, as the GEMV loads them") {
    std::set<int> cols;
    for (int t = 0; t < 4; ++t)
        for (int kk = 0; kk < 4; ++kk)
            for (int half = 0; half < 2; ++half)
                for (int odd = 0; odd < 2; ++odd) {
                    const int c = tile_col(t, kk, half, odd);
                    CHECK(c == tile_col(t, 0, 0, 0) + 4 * kk + 2 * half + odd);
                    CHECK(c / 16 == t);
                    cols.insert(c);
                }
    CHECK(cols.size() == size_t(kTileCols));
}

TEST_CASE("repacked tiles decode to the checkpoint's values, padding to zero") {
    const Weight w(40, 80, 20260101);
    int checked = 0;
    for (int64_t rt = 0; rt < w.row_tiles(); ++rt)
        for (int64_t kt = 0; kt < col_tiles(w.K); ++kt)
            for (int lane = 0; lane < 32; ++lane) {
                uint32_t a[4][4];
                lane_fragments(w, rt, kt, lane, a);
                const int g = lane >> 2, t = lane & 3;
                for (int kk = 0; kk < 4; ++kk)
                    for (int i = 0; i < 4; ++i)
                        for (int odd = 0; odd < 2; ++odd) {
                            const int64_t n = rt * kTileRows + g + 8 * (i & 1);
                            const int64_t k = kt * kTileCols + tile_col(t, kk, i >> 1, odd);
                            // The BF16 product the kernel forms (exact), times the 2^8 it applies at the end.
                            const float got = bf16_bits(a[kk][i] >> (16 * odd)) * kOutScale;
                            const float want = n < w.N && k < w.K ? w.ref[size_t(n * w.K + k)] : 0.0f;
                            if (got != want) {
                                INFO("n=" << n << " k=" << k << " lane=" << lane << " kk=" << kk << " i=" << i);
                                CHECK(got == want);
                            }
                            ++checked;
                        }
            }
    CHECK(checked == int(w.row_tiles() * col_tiles(w.K) * kTileRows * kTileCols));
}

TEST_CASE("a warp's MMAs over the repacked tiles give x·Wᵀ (the GEMV's fragments, any M up to 8)") {
    const Weight w(40, 80, 7);
    const int M = 3;
    Rng r{99};
    const std::vector<float> x = r.floats(size_t(M * w.K), -2.0f, 2.0f);
    for (int64_t rt = 0; rt < w.row_tiles(); ++rt) {
        double d[16][8] = {};
        for (int64_t kt = 0; kt < col_tiles(w.K); ++kt) {
            uint32_t a[4][32][4], b[4][32][2];
            for (int lane = 0; lane < 32; ++lane) {
                uint32_t frag[4][4];
                lane_fragments(w, rt, kt, lane, frag);
                // Activation row g (rows from M on repeat the last one, as in the kernel), this lane's columns.
                const int g = lane >> 2, t = lane & 3, m = std::min(g, M - 1);
                for (int kk = 0; kk < 4; ++kk) {
                    float v[4];
                    for (int j = 0; j < 4; ++j) {
                        const int64_t k = kt * kTileCols + tile_col(t, kk, j >> 1, j & 1);
                        v[j] = k < w.K ? x[size_t(m * w.K + k)] : 0.0f;
                    }
                    std::memcpy(a[kk][lane], frag[kk], sizeof frag[kk]);
                    b_fragments(v[0], v[1], v[2], v[3], b[kk][lane][0], b[kk][lane][1]);
                }
            }
            for (int kk = 0; kk < 4; ++kk) fp4::emu::mma_m16n8k16(a[kk], b[kk], d);
        }
        for (int row = 0; row < kTileRows && rt * kTileRows + row < w.N; ++row)
            for (int m = 0; m < M; ++m) {
                const int64_t n = rt * kTileRows + row;
                double want = 0;
                for (int64_t k = 0; k < w.K; ++k)
                    want += double(w.ref[size_t(n * w.K + k)]) *
                            double(bf16_bits(fp4::f32_to_bf16(x[size_t(m * w.K + k)])));
                INFO("n=" << n << " m=" << m);
                CHECK(d[row][m] * kOutScale == doctest::Approx(want).epsilon(1e-12));
            }
    }
}

TEST_CASE("a NaN scale is reported by the repack") {
    std::vector<uint8_t> codes(8, 0x11), scales = {0x7f};
    uint32_t w[4];
    uint16_t s;
    bool nan_scale = false;
    repack_lane(codes.data(), scales.data(), 1, 16, 0, 0, 0, w, &s, &nan_scale);
    CHECK(nan_scale);
}
