// fuzz_image.cpp — libFuzzer target: file bytes through load_image_memory (stb_image decode, RGB on
// white, size rule, cubic resize, normalisation) under a 1-megapixel budget. Either a std::runtime_error,
// or an image of whole cells, no larger than the size rule allows, with finite pixels.
#include <cmath>
#include <cstdlib>
#include <stdexcept>

#include "image.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    mistral::ImageOptions opt;
    opt.max_pixels = 1'000'000;  // keeps each run fast; the check is the same as for the default
    opt.max_image_size = 256;
    try {
        const mistral::Image img = mistral::load_image_memory(data, size, opt, "fuzz");
        const int cells = (opt.max_image_size - 1) / img.cell + 1;
        if (img.width <= 0 || img.height <= 0 || img.width % img.cell || img.height % img.cell) std::abort();
        if (img.cols() > cells || img.rows() > cells) std::abort();
        if (img.pixels.size() != 3 * size_t(img.width) * size_t(img.height)) std::abort();
        for (float v : img.pixels)
            if (!std::isfinite(v)) std::abort();
    } catch (const std::runtime_error&) {
    }
    return 0;
}
