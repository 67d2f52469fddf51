// image_jpeg.h — JPEG files decoded as Pillow decodes them: libjpeg-turbo with its defaults (the accurate
// integer IDCT, fancy upsampling), grey as one channel, YCbCr and RGB as RGB, and four-component files as
// Pillow's inverted CMYK converted to RGB. So the pixels are those transformers and vLLM see.
#pragma once

#include <cstddef>
#include <cstdint>

#include "image_decode.h"

namespace mistral {

// Throws std::runtime_error with a one-line reason (without the file's name) on a file that ends before its
// image data does, one libjpeg refuses, more than max_pixels pixels (checked on the header) or more than
// kMaxJpegScans scans (a progressive file of thousands of scans would take minutes).
constexpr int kMaxJpegScans = 1000;
DecodedPixels decode_jpeg(const uint8_t* bytes, size_t n, int64_t max_pixels);

}  // namespace mistral
