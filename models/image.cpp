// image.cpp — image decoding (stb_image), RGB conversion on white, mistral-common's size rule, the
// OpenCV-compatible INTER_CUBIC resize and CLIP normalisation; see spec/mistral-format.md §4.
#include "image.h"

#include <stb_image.h>

#include <algorithm>
#include <cerrno>
#include <climits>
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

// The format named by the file's first bytes, or nullptr when it is none the engine decodes.
const char* sniff_format(const uint8_t* b, size_t n) {
    auto starts = [&](const char* magic, size_t len) { return n >= len && std::memcmp(b, magic, len) == 0; };
    if (starts("\x89PNG\r\n\x1a\n", 8)) return "PNG";
    if (starts("\xff\xd8\xff", 3)) return "JPEG";
    if (starts("GIF87a", 6) || starts("GIF89a", 6)) return "GIF";
    if (starts("BM", 2)) return "BMP";
    return nullptr;
}

// A PNG whose IHDR (always the first chunk) declares a width or height of 0.
bool png_has_zero_side(const uint8_t* b, size_t n) {
    if (n < 24 || std::memcmp(b + 12, "IHDR", 4) != 0) return false;
    auto be32 = [&](size_t at) {
        return uint32_t(b[at]) << 24 | uint32_t(b[at + 1]) << 16 | uint32_t(b[at + 2]) << 8 | b[at + 3];
    };
    return be32(16) == 0 || be32(20) == 0;
}

// Whether every Huffman table of a JPEG declares at most 256 codes. The stb_image Debian ships (2022-09-08)
// trusts the 16 code counts of a DHT segment and writes past its 257-entry tables when they sum higher
// (upstream stb_image 2.28 refuses such files); this walks the markers as stb does, scan data included,
// so that no such table reaches it.
bool jpeg_huffman_tables_ok(const uint8_t* b, size_t n) {
    auto at = [&](size_t i) -> size_t { return i < n ? b[i] : 0; };  // stb reads 0 past the end
    for (size_t i = 2; i + 1 < n;) {
        if (b[i] != 0xff) {  // scan data, or junk stb skips
            ++i;
            continue;
        }
        const uint8_t m = b[i + 1];
        if (m == 0xff || m == 0x00 || m == 0x01 || (m >= 0xd0 && m <= 0xd8)) {  // fill, stuffing, no length
            i += m == 0xff ? 1 : 2;
            continue;
        }
        if (m == 0xd9) break;  // EOI
        const int64_t len = int64_t(at(i + 2) << 8 | at(i + 3));
        i += 4;
        if (m != 0xc4) {
            i += size_t(std::max<int64_t>(len - 2, 0));
            continue;
        }
        for (int64_t left = len - 2; left > 0;) {  // DHT: tables of class/id, 16 counts, the codes
            size_t count = 0;
            for (size_t k = 1; k <= 16; ++k) count += at(i + k);
            if (count > 256) return false;
            i += 17 + count;
            left -= int64_t(17 + count);
        }
    }
    return true;
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
    if (n == 0) fail(name, "empty file, not an image");
    if (n > size_t(INT_MAX)) fail(name, "file too large");
    const char* format = sniff_format(bytes, n);
    if (!format) fail(name, "not an image (PNG, JPEG, BMP or GIF expected)");
    if (std::strcmp(format, "JPEG") == 0 && !jpeg_huffman_tables_ok(bytes, n))
        fail(name, "corrupt JPEG: a Huffman table declares more than 256 codes");
    int w = 0, h = 0, comp = 0;
    if (!stbi_info_from_memory(bytes, int(n), &w, &h, &comp)) {
        // stbi_info's own reason is always "unknown image type" once every decoder has refused the bytes.
        if (png_has_zero_side(bytes, n)) fail(name, "empty image (0 pixels wide or high)");
        fail(name, std::string("corrupt or truncated ") + format + " header");
    }
    if (w <= 0 || h <= 0) fail(name, "empty image (" + std::to_string(w) + "x" + std::to_string(h) + ")");
    if (int64_t(w) * h > opt.max_pixels)
        fail(name, std::to_string(w) + "x" + std::to_string(h) + " exceeds the limit of " +
                       std::to_string(opt.max_pixels) + " pixels");
    // A header that says RGB decodes straight to RGB: Pillow keeps such images in mode RGB and ignores a PNG
    // tRNS colour key, so mistral-common never composites them (stb would add an alpha channel).
    const int want = comp == 3 ? 3 : 0;
    int channels = 0;
    std::unique_ptr<stbi_uc, void (*)(void*)> px(
        stbi_load_from_memory(bytes, int(n), &w, &h, &channels, want), stbi_image_free);
    if (!px) {
        const char* why = stbi_failure_reason();
        fail(name, std::string("corrupt or truncated image (") + (why ? why : "unknown error") + ")");
    }
    return preprocess_named(px.get(), w, h, want ? want : channels, opt, name);
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
