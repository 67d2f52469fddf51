// image.h — image loading and preprocessing exactly as mistral-common does it: decode (stb_image: PNG, BMP,
// GIF first frame; libjpeg-turbo: JPEG; libwebp: WebP; turned upright by EXIF orientation, as vLLM and
// transformers load images before mistral-common sees them) → RGB with alpha composited on white → size rule
// (longest side ≤ max_image_size, sides rounded up to whole 28-px token cells) → one OpenCV-compatible
// INTER_CUBIC resize on float32 → CLIP mean/std, channels first. Also the [IMG]/[IMG_BREAK]/[IMG_END] token layout.
// Every failure throws std::runtime_error with one line naming the file.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace mistral {

struct ImageOptions {
    int max_image_size = 1024;        // longest side before rounding up to cells (tekken.json "image")
    int patch = 14;                   // vision patch size in pixels
    int merge = 2;                    // spatial merge: one [IMG] token = merge×merge patches
    // Refuse larger images before decoding them: Pillow's DecompressionBombError threshold (2 × its
    // MAX_IMAGE_PIXELS), so whatever transformers and vLLM open, such as a 108 MP phone photo, opens here.
    int64_t max_pixels = 178'956'970;
};

// A preprocessed image: [3, height, width] floats, channels R, G, B, each (v/255 − mean)/std.
struct Image {
    int width = 0, height = 0;
    int cell = 28;                    // pixels per [IMG] token side = patch·merge
    int orientation = 1;              // EXIF orientation the file's pixels were turned upright by (1: none)
    std::vector<float> pixels;
    int rows() const { return height / cell; }
    int cols() const { return width / cell; }
};

// Token grid of a w×h input (mistral-common's _image_to_num_tokens): cols × rows [IMG] cells.
// Throws when a side would get no cell at all (an extremely thin image, which mistral-common rejects too).
struct ImageGrid {
    int cols = 0, rows = 0;
};
ImageGrid image_grid(int w, int h, const ImageOptions& opt);

Image load_image(const std::string& path, const ImageOptions& opt);
Image load_image_memory(const uint8_t* bytes, size_t n, const ImageOptions& opt,
                        const std::string& name_for_errors);

// Interleaved 8-bit pixels, rows top to bottom; channels: 1 grey, 2 grey+alpha, 3 RGB, 4 RGBA.
Image preprocess(const uint8_t* pixels, int w, int h, int channels, const ImageOptions& opt);

// OpenCV cv::resize(INTER_CUBIC) of one float plane (w×h, row-major) to W×H: a = −0.75, half-pixel centres,
// replicated edges, no antialiasing, no clamping of the result; source positions and weights are computed in
// double (as OpenCV's IPP path does), the taps summed in float, horizontal pass first.
std::vector<float> resize_cubic(const float* src, int w, int h, int W, int H);

// rows × ([IMG]×cols + [IMG_BREAK]) with the last [IMG_BREAK] replaced by [IMG_END].
std::vector<int32_t> image_token_layout(int rows, int cols, int32_t img, int32_t brk, int32_t end);

}  // namespace mistral
