// image_decode.h — bytes → 8-bit pixels: PNG, BMP and GIF with stb_image behind the checks it lacks (the
// format by its magic, the pixel budget on the header before decoding, truncated files, which stb would pad
// with black, and PNG data that inflates far beyond its header), JPEG with libjpeg-turbo and WebP with
// libwebp as Pillow decodes them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

namespace mistral {

struct DecodedPixels {
    std::unique_ptr<uint8_t, void (*)(void*)> data{nullptr, nullptr};  // interleaved, rows top to bottom
    int width = 0, height = 0;
    int channels = 0;  // 1 grey, 2 grey+alpha, 3 RGB, 4 RGBA
    int orientation = 1;  // the EXIF orientation the pixels were turned upright by (1: shown as stored)
};

// Decodes a PNG, JPEG, WebP, BMP or GIF (of an animation the first frame), turned upright by its EXIF
// orientation (JPEG, PNG and WebP: a portrait phone photo comes out portrait, as a viewer shows it). Throws std::runtime_error with a one-line
// reason (without the file's name) on anything it cannot decode exactly.
DecodedPixels decode_image(const uint8_t* bytes, size_t n, int64_t max_pixels);

// Throws "WxH exceeds the limit of N pixels" when a declared size is over the budget (each decoder checks the
// size its header declares before decoding anything).
void check_pixel_budget(int64_t width, int64_t height, int64_t max_pixels);

}  // namespace mistral
