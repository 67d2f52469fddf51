// test_nvfp4_tile.cpp — the CUDA backend's NVFP4 tile layout (cuda/nvfp4_tile.h) on the host: the load-time
// repack and the GEMV's fragment decode are the very functions the kernels call, so a change of layout is
// checked here without a GPU. Every decoded fragment must equal the reference e2m1 · e4m3 exactly.
#include <doctest/doctest.h>

#include <cstring>
#include <set>
#include <vector>

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

TEST_CASE("repacked tiles decode to the checkpoint's values, padding to zero") {
    // Rows and columns that are not whole tiles; every code, and scales that are zero, subnormal, negative.
    const int64_t N = 40, K = 80, KT = col_tiles(K), row_tiles = padded_rows(N) / kTileRows;
    Rng r{20260101};
    std::vector<uint8_t> codes(size_t(N * K / 2)), scales(size_t(N * K / 16));
    for (auto& b : codes) b = uint8_t(r.integer(0, 255));
    for (size_t i = 0; i < scales.size(); ++i) {
        uint8_t b = uint8_t(r.integer(0, 255));
        if ((b & 0x7f) == 0x7f) b = 0x38;  // no NaN
        scales[i] = i % 7 == 0 ? 0 : i % 11 == 0 ? uint8_t(b & 0x87) : b;  // zeros and subnormals too
    }
    std::vector<float> ref(size_t(N * K));
    for (int64_t n = 0; n < N; ++n)
        fp4::dequant_nvfp4_row(&codes[size_t(n * K / 2)], &scales[size_t(n * K / 16)], 1.0f, K, &ref[size_t(n * K)]);

    int checked = 0;
    for (int64_t rt = 0; rt < row_tiles; ++rt)
        for (int64_t kt = 0; kt < KT; ++kt)
            for (int lane = 0; lane < 32; ++lane) {
                // The lane's code words; the scale words its group's t = 0 lane stores (and every lane reads).
                uint32_t w[4], s[2], s0[2], unused[4];
                bool nan_scale = false;
                repack_lane(codes.data(), scales.data(), N, K, rt, kt, lane, w, s, &nan_scale);
                repack_lane(codes.data(), scales.data(), N, K, rt, kt, lane & ~3, unused, s0, &nan_scale);
                CHECK_FALSE(nan_scale);
                const int g = lane >> 2, t = lane & 3;
                for (int kk = 0; kk < 4; ++kk) {
                    uint32_t a[4], sg, sg8;
                    decode_word(w[kk], a);
                    scale_pairs(s0[0], s0[1], kk, sg, sg8);
                    for (int i = 0; i < 4; ++i)
                        for (int odd = 0; odd < 2; ++odd) {
                            const int64_t n = rt * kTileRows + g + 8 * (i & 1);
                            const int64_t k = kt * kTileCols + kk * 16 + (i >> 1) * 8 + 2 * t + odd;
                            const uint32_t sc = (i & 1) ? sg8 : sg;
                            // The BF16 product the kernel forms (exact), times the 2^8 it applies at the end.
                            const float got = bf16_bits(a[i] >> (16 * odd)) * bf16_bits(sc >> (16 * odd)) * kOutScale;
                            const float want = n < N && k < K ? ref[size_t(n * K + k)] : 0.0f;
                            if (got != want) {
                                INFO("n=" << n << " k=" << k << " lane=" << lane << " kk=" << kk << " i=" << i);
                                CHECK(got == want);
                            }
                            ++checked;
                        }
                }
            }
    CHECK(checked == int(row_tiles * KT * kTileRows * kTileCols));
}

TEST_CASE("a NaN scale is reported by the repack") {
    std::vector<uint8_t> codes(8, 0x11), scales = {0x7f};
    uint32_t w[4], s[2];
    bool nan_scale = false;
    repack_lane(codes.data(), scales.data(), 1, 16, 0, 0, 0, w, s, &nan_scale);
    CHECK(nan_scale);
}
