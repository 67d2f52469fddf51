// test_numeric.cpp — the scalar number formats and the reference NVFP4 dequantization, on hand-computed values.
#include <doctest/doctest.h>

#include "numeric.h"

using namespace fp4;

TEST_CASE("bf16 round trip and rounding") {
    CHECK(bf16_to_f32(0x3f80) == 1.0f);
    CHECK(f32_to_bf16(1.0f) == 0x3f80);
    CHECK(f32_to_bf16(bits_to_f32(0x3f808000u)) == 0x3f80);  // tie -> even
    CHECK(f32_to_bf16(bits_to_f32(0x3f818000u)) == 0x3f82);  // tie -> even (up)
    CHECK(f16_to_f32(0x3c00) == 1.0f);
    CHECK(f16_to_f32(0xc000) == -2.0f);
    CHECK(f16_to_f32(0x0001) == doctest::Approx(5.9604645e-8));
}

TEST_CASE("e4m3 decode and encode") {
    CHECK(e4m3_to_f32(0x38) == 1.0f);     // exp 7, man 0
    CHECK(e4m3_to_f32(0x7e) == 448.0f);   // max
    CHECK(e4m3_to_f32(0x01) == 0.001953125f);  // smallest subnormal 2^-9
    CHECK(e4m3_to_f32(0xb8) == -1.0f);
    CHECK(std::isnan(e4m3_to_f32(0x7f)));
    for (int b = 0; b < 256; ++b) {
        if ((b & 0x7f) == 0x7f) continue;
        float v = e4m3_to_f32(uint8_t(b));
        if (b == 0x80) continue;  // -0 encodes as 0x80
        CHECK(f32_to_e4m3(v) == b);
    }
    CHECK(f32_to_e4m3(1000.0f) == 0x7e);
    CHECK(f32_to_e4m3(1.0625f) == 0x38);  // halfway 1 and 1.125 -> even mantissa (1.0)
    CHECK(f32_to_e4m3(1.1875f) == 0x3a);  // halfway 1.125 and 1.25 -> 1.25
}

TEST_CASE("e2m1 values and round half to even") {
    const float mags[8] = {0, 0.5f, 1, 1.5f, 2, 3, 4, 6};
    for (int c = 0; c < 8; ++c) {
        CHECK(e2m1_to_f32(uint8_t(c)) == mags[c]);
        CHECK(e2m1_to_f32(uint8_t(c | 8)) == -mags[c]);
        CHECK(f32_to_e2m1(mags[c]) == c);
    }
    CHECK(f32_to_e2m1(0.25f) == 0);
    CHECK(f32_to_e2m1(0.75f) == 2);
    CHECK(f32_to_e2m1(1.25f) == 2);
    CHECK(f32_to_e2m1(1.75f) == 4);
    CHECK(f32_to_e2m1(2.5f) == 4);
    CHECK(f32_to_e2m1(3.5f) == 6);
    CHECK(f32_to_e2m1(5.0f) == 6);
    CHECK(f32_to_e2m1(100.0f) == 7);
    CHECK(f32_to_e2m1(-0.8f) == (8 | 2));
}

TEST_CASE("nvfp4 reference dequantization") {
    // 16 columns: codes 0..15 in order, packed low nibble = even column.
    uint8_t codes[8];
    for (int i = 0; i < 8; ++i) codes[i] = uint8_t((2 * i) | ((2 * i + 1) << 4));
    uint8_t scale = 0x40;  // e4m3 2.0
    float out[16];
    dequant_nvfp4_row(codes, &scale, 4.0f, 16, out);  // factor 2 / 4 = 0.5
    CHECK(out[0] == 0.0f);
    CHECK(out[1] == 0.25f);   // 0.5 * 0.5
    CHECK(out[7] == 3.0f);    // 6 * 0.5
    CHECK(out[9] == -0.25f);  // code 9 = -0.5
    CHECK(out[15] == -3.0f);
}
