// image_webp.h — WebP files (lossy, lossless, with alpha; of an animation the first frame) decoded as Pillow
// decodes them: libwebp's animation decoder with its default options renders the RGBA canvas, kept as RGB
// when the file declares no alpha. The canvas size is checked against the pixel budget before decoding.
#pragma once

#include <cstddef>
#include <cstdint>

#include "image_decode.h"

namespace mistral {

// Whether the bytes start as a WebP file does ("RIFF", a size, "WEBP").
bool is_webp(const uint8_t* bytes, size_t n);

// Throws std::runtime_error with a one-line reason (without the file's name) on a file libwebp cannot decode
// whole, and on a canvas of more than max_pixels pixels.
DecodedPixels decode_webp(const uint8_t* bytes, size_t n, int64_t max_pixels);

}  // namespace mistral
