// image.cpp — image loading (decoding lives in image_decode.cpp), RGB conversion on white, mistral-common's
// size rule, the OpenCV-compatible INTER_CUBIC resize and CLIP normalisation; see spec/mistral-format.md §4.
#include "image.h"

#include "image_decode.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <stdexcept>

namespace mistral {

namespace {

constexpr float kMean[3] = {0.48145466f, 0.4578275f, 0.40821073f};
constexpr float kStd[3] = {0.26862954f, 0.26130258f, 0.27577711f};

[[noreturn]] void fail(const std::string& name, const std::string& what) {
    throw std::runtime_error("image '" + name + "': " + what);
}

// Pillow's DIV255 blend of a white canvas with `src` under mask `a` (Paste.c BLEND): rounds exactly as
// Image.paste(im, mask=im) onto an opaque white RGBA image does.
uint8_t blend_on_white(unsigned src, unsigned a) {
    unsigned t = 255u * (255u - a) + src * a + 128u;
    return uint8_t(((t >> 8) + t) >> 8);
}

// Interleaved 8-bit pixels of 1, 2 or 4 channels → interleaved RGB, alpha composited on white.
std::vector<uint8_t> to_rgb(const uint8_t* px, int w, int h, int channels) {
    const size_t n = size_t(w) * size_t(h);
    std::vector<uint8_t> rgb(3 * n);
    for (size_t i = 0; i < n; ++i) {
        const uint8_t* p = px + i * size_t(channels);
        uint8_t* q = &rgb[3 * i];
        switch (channels) {
            case 1: q[0] = q[1] = q[2] = p[0]; break;
            case 2: q[0] = q[1] = q[2] = blend_on_white(p[0], p[1]); break;
            default:
                for (int c = 0; c < 3; ++c) q[c] = blend_on_white(p[c], p[3]);
        }
    }
    return rgb;
}

// Keys cubic weights (A = −0.75) of the 4 taps around a source position with fractional part t.
void cubic_coeffs(double t, float* k) {
    const double A = -0.75;
    const double k0 = ((A * (t + 1) - 5 * A) * (t + 1) + 8 * A) * (t + 1) - 4 * A;
    const double k1 = ((A + 2) * t - (A + 3)) * t * t + 1;
    const double k2 = ((A + 2) * (1 - t) - (A + 3)) * (1 - t) * (1 - t) + 1;
    k[0] = float(k0), k[1] = float(k1), k[2] = float(k2), k[3] = float(1 - k0 - k1 - k2);
}

// The 4 source indices (clamped to the edge) and weights of every destination index along one axis.
// Source position (d + 0.5)·(1/(dst/src)) − 0.5 as cv::resize computes it, kept in double: OpenCV's generic
// path rounds it to float, but the reference pixels come from OpenCV's IPP path (opencv-python wheels), which
// does not; rounding to float costs up to 2e-5 against them on a 1100 → 1036 downscale, double about 1e-6.
struct Taps {
    std::vector<int> idx;
    std::vector<float> w;
};

Taps cubic_taps(int src, int dst) {
    Taps t;
    t.idx.resize(size_t(dst) * 4);
    t.w.resize(size_t(dst) * 4);
    const double scale = 1.0 / (double(dst) / src);
    for (int d = 0; d < dst; ++d) {
        const double f = (d + 0.5) * scale - 0.5;
        const int s = int(std::floor(f));
        cubic_coeffs(f - s, &t.w[size_t(d) * 4]);
        for (int k = 0; k < 4; ++k) t.idx[size_t(d) * 4 + k] = std::clamp(s - 1 + k, 0, src - 1);
    }
    return t;
}

}  // namespace

ImageGrid image_grid(int w, int h, const ImageOptions& opt) {
    const double ratio = std::max(double(h) / opt.max_image_size, double(w) / opt.max_image_size);
    double ws = w, hs = h;
    if (ratio > 1) {  // Python round(): half to even, which nearbyint gives in the default rounding mode
        ws = std::nearbyint(w / ratio);
        hs = std::nearbyint(h / ratio);
    }
    const int cell = opt.patch * opt.merge;
    if (ws < 1 || hs < 1)
        throw std::runtime_error("image " + std::to_string(w) + "x" + std::to_string(h) +
                                 " is too thin: a side scales below one pixel");
    return {(int(ws) - 1) / cell + 1, (int(hs) - 1) / cell + 1};
}

// resize_cubic on one channel of interleaved pixels: sample (x, y) is src[(y·w + x)·step].
template <typename T>
static std::vector<float> resize_channel(const T* src, size_t step, int w, int h, int W, int H) {
    const Taps tx = cubic_taps(w, W), ty = cubic_taps(h, H);
    // Horizontal pass over every source row, then the vertical pass, summing taps in order as OpenCV does.
    std::vector<float> rows(size_t(h) * size_t(W));
    for (int y = 0; y < h; ++y) {
        const T* s = src + size_t(y) * size_t(w) * step;
        float* d = rows.data() + size_t(y) * W;
        for (int x = 0; x < W; ++x) {
            const int* i = &tx.idx[size_t(x) * 4];
            const float* k = &tx.w[size_t(x) * 4];
            d[x] = float(s[i[0] * step]) * k[0] + float(s[i[1] * step]) * k[1] + float(s[i[2] * step]) * k[2] +
                   float(s[i[3] * step]) * k[3];
        }
    }
    std::vector<float> out(size_t(H) * size_t(W));
    for (int y = 0; y < H; ++y) {
        const int* i = &ty.idx[size_t(y) * 4];
        const float* k = &ty.w[size_t(y) * 4];
        const float *r0 = &rows[size_t(i[0]) * W], *r1 = &rows[size_t(i[1]) * W];
        const float *r2 = &rows[size_t(i[2]) * W], *r3 = &rows[size_t(i[3]) * W];
        float* d = out.data() + size_t(y) * W;
        for (int x = 0; x < W; ++x) d[x] = r0[x] * k[0] + r1[x] * k[1] + r2[x] * k[2] + r3[x] * k[3];
    }
    return out;
}

std::vector<float> resize_cubic(const float* src, int w, int h, int W, int H) {
    if (W == w && H == h) return std::vector<float>(src, src + size_t(w) * size_t(h));  // cv::resize copies
    return resize_channel(src, 1, w, h, W, H);
}

static Image preprocess_named(const uint8_t* pixels, int w, int h, int channels, const ImageOptions& opt,
                              const std::string& name) {
    if (w <= 0 || h <= 0) fail(name, "empty image (" + std::to_string(w) + "x" + std::to_string(h) + ")");
    if (channels < 1 || channels > 4) fail(name, "unsupported channel count " + std::to_string(channels));
    if (int64_t(w) * h > opt.max_pixels)
        fail(name, std::to_string(w) + "x" + std::to_string(h) + " exceeds the limit of " +
                       std::to_string(opt.max_pixels) + " pixels");
    ImageGrid grid;
    try {
        grid = image_grid(w, h, opt);
    } catch (const std::runtime_error& e) {
        fail(name, e.what());
    }
    Image img;
    img.cell = opt.patch * opt.merge;
    img.width = grid.cols * img.cell;
    img.height = grid.rows * img.cell;
    const size_t n_out = size_t(img.width) * size_t(img.height);
    std::vector<uint8_t> converted;
    if (channels != 3) converted = to_rgb(pixels, w, h, channels);
    const uint8_t* rgb = channels == 3 ? pixels : converted.data();
    img.pixels.resize(3 * n_out);
    for (int c = 0; c < 3; ++c) {
        // uint8 → float is exact, so resampling the bytes equals resampling OpenCV's float32 copy of them.
        const std::vector<float> r = resize_channel(rgb + c, 3, w, h, img.width, img.height);
        float* dst = img.pixels.data() + c * n_out;
        // float32 throughout, as the reference pixels were made (bit-exact on images that need no resize);
        // mistral-common's NumPy code subtracts and divides in float64, which differs by at most 1 ulp.
        for (size_t i = 0; i < n_out; ++i) dst[i] = (r[i] / 255.0f - kMean[c]) / kStd[c];
    }
    return img;
}

Image preprocess(const uint8_t* pixels, int w, int h, int channels, const ImageOptions& opt) {
    return preprocess_named(pixels, w, h, channels, opt, "<pixels>");
}

Image load_image_memory(const uint8_t* bytes, size_t n, const ImageOptions& opt, const std::string& name) {
    DecodedPixels px;
    try {
        px = decode_image(bytes, n, opt.max_pixels);
    } catch (const std::runtime_error& e) {
        fail(name, e.what());
    }
    Image img = preprocess_named(px.data.get(), px.width, px.height, px.channels, opt, name);
    img.orientation = px.orientation;
    return img;
}

Image load_image(const std::string& path, const ImageOptions& opt) {
    std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(path.c_str(), "rb"), std::fclose);
    if (!f) fail(path, std::string("cannot open: ") + std::strerror(errno));
    std::vector<uint8_t> bytes;
    uint8_t buf[1 << 16];
    size_t got;
    while ((got = std::fread(buf, 1, sizeof buf, f.get())) > 0) bytes.insert(bytes.end(), buf, buf + got);
    if (std::ferror(f.get())) fail(path, std::string("cannot read: ") + std::strerror(errno));
    return load_image_memory(bytes.data(), bytes.size(), opt, path);
}

std::vector<int32_t> image_token_layout(int rows, int cols, int32_t img, int32_t brk, int32_t end) {
    if (rows <= 0 || cols <= 0)
        throw std::runtime_error("image token layout needs rows and cols > 0, got " + std::to_string(rows) +
                                 "x" + std::to_string(cols));
    std::vector<int32_t> ids;
    ids.reserve(size_t(rows) * size_t(cols + 1));
    for (int r = 0; r < rows; ++r) {
        ids.insert(ids.end(), size_t(cols), img);
        ids.push_back(brk);
    }
    ids.back() = end;
    return ids;
}

}  // namespace mistral
