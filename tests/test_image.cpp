// test_image.cpp — image preprocessing against the fixtures' golden pixels (mistral-common + OpenCV), the size
// rule, RGB-on-white compositing, the [IMG] token layout and every load error.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <stdexcept>
#include <string>
#include <vector>

#include <stb_image.h>
#include <cstdio>  // jpeglib.h needs FILE
#include <jpeglib.h>
#include <webp/decode.h>
#include <webp/encode.h>
#include <webp/mux.h>

#include "image.h"
#include "image_decode.h"
#include "image_jpeg.h"

using namespace mistral;
namespace fs = std::filesystem;

namespace {

std::vector<uint8_t> read_bytes(const fs::path& p) {
    std::ifstream f(p, std::ios::binary);
    REQUIRE(f.good());
    return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

void write_bytes(const fs::path& p, const uint8_t* data, size_t n) {
    std::ofstream f(p, std::ios::binary);
    f.write(reinterpret_cast<const char*>(data), std::streamsize(n));
    REQUIRE(f.good());
}

// Just enough of safetensors for the goldens: F32 tensors by name (the engine's loader is tested elsewhere).
struct Golden {
    std::vector<uint8_t> bytes;
    nlohmann::json header;
    size_t data_start = 0;

    explicit Golden(const fs::path& p) : bytes(read_bytes(p)) {
        REQUIRE(bytes.size() >= 8);
        uint64_t len = 0;
        for (int i = 7; i >= 0; --i) len = (len << 8) | bytes[size_t(i)];
        REQUIRE(8 + len <= bytes.size());
        header = nlohmann::json::parse(bytes.begin() + 8, bytes.begin() + 8 + std::ptrdiff_t(len));
        data_start = 8 + len;
    }
    bool has(const std::string& name) const { return header.contains(name); }
    std::vector<float> f32(const std::string& name, std::vector<int64_t>& shape) const {
        const auto& t = header.at(name);
        REQUIRE(t.at("dtype") == "F32");
        shape = t.at("shape").get<std::vector<int64_t>>();
        const size_t b = t.at("data_offsets")[0], e = t.at("data_offsets")[1];
        std::vector<float> v((e - b) / 4);
        std::memcpy(v.data(), bytes.data() + data_start + b, e - b);
        return v;
    }
};

// Every image of every case in one golden file: load, preprocess, compare with NAME.pixels.I.
void check_golden(const fs::path& json_path, const fs::path& st_path, const fs::path& model_dir, int min_images) {
    std::ifstream jf(json_path);
    REQUIRE(jf.good());
    const auto cases = nlohmann::json::parse(jf).at("cases");
    const Golden g(st_path);
    int checked = 0;
    for (const auto& c : cases) {
        int index = 0;
        for (const auto& part : c.at("parts")) {
            if (part[0] != "i") continue;
            const std::string name = c.at("name").get<std::string>() + ".pixels." + std::to_string(index++);
            const std::string file = part[1];
            CAPTURE(name);
            REQUIRE(g.has(name));
            std::vector<int64_t> shape;
            const std::vector<float> want = g.f32(name, shape);
            const Image img = load_image((model_dir / file).string(), ImageOptions{});
            REQUIRE(shape == std::vector<int64_t>{3, img.height, img.width});
            REQUIRE(img.pixels.size() == want.size());
            float max_diff = 0;
            for (size_t i = 0; i < want.size(); ++i)
                max_diff = std::max(max_diff, std::fabs(img.pixels[i] - want[i]));
            MESSAGE(name << " (" << file << ", " << img.width << "x" << img.height
                         << "): max |diff| = " << max_diff);
            CHECK(max_diff <= 1e-5f);  // brief: 1e-4; measured ≤ 1.5e-6 (float source positions: 1.8e-5)
            ++checked;
        }
    }
    CHECK(checked >= min_images);
}

// The expected normalised value of one 0..255 channel value, in float32 as the reference pixels were made.
float normalised(int v, int c) {
    const float mean[3] = {0.48145466f, 0.4578275f, 0.40821073f};
    const float stdev[3] = {0.26862954f, 0.26130258f, 0.27577711f};
    return (float(v) / 255.0f - mean[c]) / stdev[c];
}

std::string error_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const std::runtime_error& e) {
        return e.what();
    }
    return "";
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

fs::path temp_file(const std::string& name) { return fs::temp_directory_path() / ("fp4_test_image_" + name); }

// Offsets into a PNG: 8-byte signature, IHDR chunk (length, type, then width and height big-endian).
void set_png_size(std::vector<uint8_t>& png, uint32_t w, uint32_t h) {
    REQUIRE(std::memcmp(&png[12], "IHDR", 4) == 0);
    for (int i = 0; i < 4; ++i) {
        png[16 + size_t(i)] = uint8_t(w >> (24 - 8 * i));
        png[20 + size_t(i)] = uint8_t(h >> (24 - 8 * i));
    }
}

// A bottom-up 24-bit BMP of interleaved RGB pixels.
std::vector<uint8_t> make_bmp(int w, int h, const std::vector<uint8_t>& rgb) {
    const int stride = (w * 3 + 3) / 4 * 4;
    std::vector<uint8_t> b(54 + size_t(stride) * h, 0);
    auto le32 = [&](size_t at, uint32_t v) {
        for (int i = 0; i < 4; ++i) b[at + size_t(i)] = uint8_t(v >> (8 * i));
    };
    b[0] = 'B', b[1] = 'M';
    le32(2, uint32_t(b.size()));
    le32(10, 54);
    le32(14, 40);
    le32(18, uint32_t(w));
    le32(22, uint32_t(h));
    b[26] = 1, b[28] = 24;
    for (int y = 0; y < h; ++y)
        for (int x = 0; x < w; ++x)
            for (int c = 0; c < 3; ++c)
                b[54 + size_t(h - 1 - y) * stride + size_t(x) * 3 + size_t(2 - c)] =
                    rgb[(size_t(y) * w + x) * 3 + c];
    return b;
}

// A greyscale PNG of 16-bit samples (big-endian, filter 0), its zlib stream one stored block; chunk CRCs
// are computed, as a strict reader checks them.
std::vector<uint8_t> make_png_grey16(int w, int h, const std::vector<uint16_t>& v) {
    std::vector<uint8_t> raw;
    for (int y = 0; y < h; ++y) {
        raw.push_back(0);
        for (int x = 0; x < w; ++x) {
            const uint16_t s = v[size_t(y) * w + x];
            raw.push_back(uint8_t(s >> 8));
            raw.push_back(uint8_t(s));
        }
    }
    uint32_t a = 1, b = 0;
    for (uint8_t c : raw) a = (a + c) % 65521, b = (b + a) % 65521;
    const uint16_t n = uint16_t(raw.size());
    std::vector<uint8_t> z = {0x78, 0x01, 1, uint8_t(n), uint8_t(n >> 8), uint8_t(~n), uint8_t(~n >> 8)};
    z.insert(z.end(), raw.begin(), raw.end());
    const uint32_t adler = b << 16 | a;
    for (int i = 3; i >= 0; --i) z.push_back(uint8_t(adler >> (8 * i)));
    std::vector<uint8_t> png = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    auto chunk = [&](const char* type, const std::vector<uint8_t>& data) {
        for (int i = 3; i >= 0; --i) png.push_back(uint8_t(data.size() >> (8 * i)));
        const size_t start = png.size();
        png.insert(png.end(), type, type + 4);
        png.insert(png.end(), data.begin(), data.end());
        uint32_t crc = 0xffffffffu;
        for (size_t i = start; i < png.size(); ++i) {
            crc ^= png[i];
            for (int k = 0; k < 8; ++k) crc = crc >> 1 ^ (0xedb88320u & (0u - (crc & 1)));
        }
        crc = ~crc;
        for (int i = 3; i >= 0; --i) png.push_back(uint8_t(crc >> (8 * i)));
    };
    chunk("IHDR", {0, 0, 0, uint8_t(w), 0, 0, 0, uint8_t(h), 16, 0, 0, 0, 0});
    chunk("IDAT", z);
    chunk("IEND", {});
    return png;
}

// A 1x1 GIF89a whose single pixel is palette colour 0 = (200, 30, 60), transparent or not.
std::vector<uint8_t> make_gif(bool transparent) {
    return {'G', 'I', 'F', '8', '9', 'a', 1, 0, 1, 0, 0x80, 0, 0,          // screen, 2-colour global table
            200, 30, 60, 0, 0, 255,                                         // palette
            0x21, 0xF9, 4, uint8_t(transparent ? 1 : 0), 0, 0, 0, 0,        // graphic control: key = index 0
            0x2C, 0, 0, 0, 0, 1, 0, 1, 0, 0,                                // image descriptor
            2, 2, 0x44, 0x01, 0,                                            // LZW: one pixel of index 0
            0x3B};
}

// TIFF-structured EXIF (byte order `le`) whose IFD0 holds a Make entry and then the orientation entry
// (tag 0x0112) of the given type, count and value.
std::vector<uint8_t> exif_tiff(bool le, uint32_t orientation, uint16_t type = 3, uint32_t count = 1) {
    std::vector<uint8_t> t;
    auto put = [&](uint32_t v, int bytes) {
        for (int i = 0; i < bytes; ++i) t.push_back(uint8_t(v >> 8 * (le ? i : bytes - 1 - i)));
    };
    auto u16 = [&](uint32_t v) { put(v, 2); };
    auto u32 = [&](uint32_t v) { put(v, 4); };
    t.insert(t.end(), {uint8_t(le ? 'I' : 'M'), uint8_t(le ? 'I' : 'M')});
    u16(42), u32(8), u16(2);                       // IFD0 right after the header, two entries
    u16(0x010f), u16(2), u32(4), t.insert(t.end(), {'a', 'b', 'c', 0});  // Make = "abc"
    u16(0x0112), u16(type), u32(count);
    if (type == 3) u16(orientation), u16(0);
    else u32(orientation);
    u32(0);  // no next IFD
    return t;
}

// A JPEG with an APP1 segment holding `payload` right after its SOI marker.
std::vector<uint8_t> with_app1(std::vector<uint8_t> jpeg, const std::vector<uint8_t>& payload) {
    std::vector<uint8_t> seg = {0xff, 0xe1, uint8_t((payload.size() + 2) >> 8), uint8_t(payload.size() + 2)};
    seg.insert(seg.end(), payload.begin(), payload.end());
    jpeg.insert(jpeg.begin() + 2, seg.begin(), seg.end());
    return jpeg;
}

std::vector<uint8_t> exif_app1(const std::vector<uint8_t>& tiff) {
    std::vector<uint8_t> p(6 + tiff.size());
    std::memcpy(p.data(), "Exif\0\0", 6);
    std::copy(tiff.begin(), tiff.end(), p.begin() + 6);
    return p;
}

// A PNG with an eXIf chunk (zero CRC: stb_image does not check them) right after IHDR.
std::vector<uint8_t> with_exif_chunk(std::vector<uint8_t> png, const std::vector<uint8_t>& data) {
    const uint32_t n = uint32_t(data.size());
    std::vector<uint8_t> c = {uint8_t(n >> 24), uint8_t(n >> 16), uint8_t(n >> 8), uint8_t(n), 'e', 'X', 'I', 'f'};
    c.insert(c.end(), data.begin(), data.end());
    c.insert(c.end(), 4, 0);
    png.insert(png.begin() + 33, c.begin(), c.end());
    return png;
}

// Checks that `shown` is `stored` as a viewer displays EXIF orientation o, from the EXIF table of which
// sides of the displayed picture the stored 0th row and 0th column lie on: the stored corners (0, 0),
// (w−1, 0) and (0, h−1) go to the corners (row side, column side), (row side, opposite of the column
// side) and (opposite of the row side, column side), and every pixel follows them.
void check_shown_as(const DecodedPixels& stored, const DecodedPixels& shown, int o) {
    enum Side { kTop, kBottom, kLeft, kRight };
    const Side row_side[9] = {kTop, kTop, kTop, kBottom, kBottom, kLeft, kRight, kRight, kLeft};
    const Side col_side[9] = {kLeft, kLeft, kRight, kRight, kLeft, kTop, kTop, kBottom, kBottom};
    auto opposite = [](Side s) { return s == kTop ? kBottom : s == kBottom ? kTop : s == kLeft ? kRight : kLeft; };
    const int w = stored.width, h = stored.height, W = shown.width, H = shown.height;
    REQUIRE(shown.channels == stored.channels);
    REQUIRE(W == (o >= 5 ? h : w));
    REQUIRE(H == (o >= 5 ? w : h));
    auto corner = [&](Side a, Side b) {
        const bool left = a == kLeft || b == kLeft, top = a == kTop || b == kTop;
        return std::make_pair(left ? 0 : W - 1, top ? 0 : H - 1);
    };
    const auto p00 = corner(row_side[o], col_side[o]);
    const auto p10 = corner(row_side[o], opposite(col_side[o]));
    const auto p01 = corner(opposite(row_side[o]), col_side[o]);
    const int c = stored.channels;
    int wrong = 0;
    for (int y = 0; y < h; ++y)
        for (int x = 0; x < w; ++x) {
            const int X = p00.first + x * (p10.first - p00.first) / (w - 1) + y * (p01.first - p00.first) / (h - 1);
            const int Y = p00.second + x * (p10.second - p00.second) / (w - 1) + y * (p01.second - p00.second) / (h - 1);
            wrong += std::memcmp(stored.data.get() + (size_t(y) * w + x) * c, shown.data.get() + (size_t(Y) * W + X) * c,
                                 size_t(c)) != 0;
        }
    CHECK(wrong == 0);
}

// WebP files made by libwebp itself: a still picture of `channels` interleaved channels (lossless or at
// quality 75), and an animation of solid frames.
std::vector<uint8_t> webp_still(const std::vector<uint8_t>& px, int w, int h, int channels, bool lossless) {
    uint8_t* out = nullptr;
    const size_t n = channels == 4 ? (lossless ? WebPEncodeLosslessRGBA(px.data(), w, h, 4 * w, &out)
                                               : WebPEncodeRGBA(px.data(), w, h, 4 * w, 75, &out))
                                   : (lossless ? WebPEncodeLosslessRGB(px.data(), w, h, 3 * w, &out)
                                               : WebPEncodeRGB(px.data(), w, h, 3 * w, 75, &out));
    REQUIRE(n > 0);
    std::vector<uint8_t> file(out, out + n);
    WebPFree(out);
    return file;
}

std::vector<uint8_t> webp_animation(int w, int h, const std::vector<std::array<uint8_t, 3>>& colours) {
    WebPAnimEncoderOptions opt;
    REQUIRE(WebPAnimEncoderOptionsInit(&opt));
    WebPAnimEncoder* enc = WebPAnimEncoderNew(w, h, &opt);
    REQUIRE(enc);
    WebPConfig config;
    REQUIRE(WebPConfigInit(&config));
    config.lossless = 1;
    int t = 0;
    for (const auto& c : colours) {
        std::vector<uint8_t> rgb;
        for (int i = 0; i < w * h; ++i) rgb.insert(rgb.end(), c.begin(), c.end());
        WebPPicture pic;
        REQUIRE(WebPPictureInit(&pic));
        pic.use_argb = 1, pic.width = w, pic.height = h;
        REQUIRE(WebPPictureImportRGB(&pic, rgb.data(), 3 * w));
        REQUIRE(WebPAnimEncoderAdd(enc, &pic, t, &config));
        WebPPictureFree(&pic);
        t += 100;
    }
    REQUIRE(WebPAnimEncoderAdd(enc, nullptr, t, nullptr));
    WebPData data;
    WebPDataInit(&data);
    REQUIRE(WebPAnimEncoderAssemble(enc, &data));
    WebPAnimEncoderDelete(enc);
    std::vector<uint8_t> file(data.bytes, data.bytes + data.size);
    WebPDataClear(&data);
    return file;
}

// A WebP with an EXIF chunk holding `exif` (libwebp's muxer writes the extended VP8X layout).
std::vector<uint8_t> webp_with_exif(const std::vector<uint8_t>& webp, const std::vector<uint8_t>& exif) {
    const WebPData image{webp.data(), webp.size()}, chunk{exif.data(), exif.size()};
    WebPMux* mux = WebPMuxCreate(&image, 1);
    REQUIRE(mux);
    REQUIRE(WebPMuxSetChunk(mux, "EXIF", &chunk, 1) == WEBP_MUX_OK);
    WebPData out;
    WebPDataInit(&out);
    REQUIRE(WebPMuxAssemble(mux, &out) == WEBP_MUX_OK);
    WebPMuxDelete(mux);
    std::vector<uint8_t> file(out.bytes, out.bytes + out.size);
    WebPDataClear(&out);
    return file;
}

// A JPEG of `components` interleaved channels (grey, YCbCr from RGB, or CMYK stored as CMYK) at quality 90,
// baseline, or progressive with `scans` (libjpeg's simple progression when empty).
std::vector<uint8_t> make_jpeg(const std::vector<uint8_t>& px, int w, int h, int components, bool progressive = false,
                               const std::vector<jpeg_scan_info>& scans = {}) {
    jpeg_compress_struct c;
    jpeg_error_mgr err;
    c.err = jpeg_std_error(&err);
    jpeg_create_compress(&c);
    unsigned char* out = nullptr;
    unsigned long size = 0;
    jpeg_mem_dest(&c, &out, &size);
    c.image_width = JDIMENSION(w), c.image_height = JDIMENSION(h), c.input_components = components;
    c.in_color_space = components == 1 ? JCS_GRAYSCALE : components == 3 ? JCS_RGB : JCS_CMYK;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, 90, TRUE);
    if (progressive && scans.empty()) jpeg_simple_progression(&c);
    if (!scans.empty()) c.scan_info = scans.data(), c.num_scans = int(scans.size());
    jpeg_start_compress(&c, TRUE);
    while (c.next_scanline < c.image_height) {
        JSAMPROW row = const_cast<uint8_t*>(&px[size_t(c.next_scanline) * size_t(w) * size_t(components)]);
        jpeg_write_scanlines(&c, &row, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    std::vector<uint8_t> file(out, out + size);
    std::free(out);
    return file;
}

// libjpeg's own decode with its defaults (ISLOW IDCT, fancy upsampling), in the file's colour space
// (YCbCr as RGB) — what Pillow asks libjpeg for.
std::vector<uint8_t> libjpeg_pixels(const std::vector<uint8_t>& file, int& components) {
    jpeg_decompress_struct d;
    jpeg_error_mgr err;
    d.err = jpeg_std_error(&err);
    jpeg_create_decompress(&d);
    jpeg_mem_src(&d, file.data(), static_cast<unsigned long>(file.size()));
    jpeg_read_header(&d, TRUE);
    d.out_color_space = d.num_components == 1 ? JCS_GRAYSCALE : d.num_components == 3 ? JCS_RGB : JCS_CMYK;
    jpeg_start_decompress(&d);
    components = d.output_components;
    std::vector<uint8_t> px(size_t(d.output_width) * d.output_height * size_t(components));
    while (d.output_scanline < d.output_height) {
        JSAMPROW row = &px[size_t(d.output_scanline) * d.output_width * size_t(components)];
        jpeg_read_scanlines(&d, &row, 1);
    }
    jpeg_finish_decompress(&d);
    jpeg_destroy_decompress(&d);
    return px;
}

std::vector<uint8_t> pixels_of(const DecodedPixels& p) {
    return std::vector<uint8_t>(p.data.get(), p.data.get() + size_t(p.width) * p.height * p.channels);
}

bool same_pixels(const DecodedPixels& a, const DecodedPixels& b) {
    return a.width == b.width && a.height == b.height && a.channels == b.channels && pixels_of(a) == pixels_of(b);
}

}  // namespace

TEST_CASE("golden pixels: tiny-a") {
    check_golden("tests/data/tiny-a/golden.json", "tests/data/tiny-a/golden.safetensors", "tests/data/tiny-a", 4);
}

TEST_CASE("golden pixels: tiny-kjv") {
    check_golden("tests/data/tiny-kjv/golden/golden.json", "tests/data/tiny-kjv/golden/golden.safetensors",
                 "tests/data/tiny-kjv", 6);
}

TEST_CASE("jpeg decodes (the fixtures have no JPEG golden; libjpeg's pixels are checked below)") {
    const Image img = load_image("tests/data/tiny-a/images/photo.jpg", ImageOptions{});
    CHECK(img.width == 224);  // 200x150 → 8x6 cells
    CHECK(img.height == 168);
    CHECK(img.pixels.size() == size_t(3) * 224 * 168);
    const auto [lo, hi] = std::minmax_element(img.pixels.begin(), img.pixels.end());
    CHECK(*lo > -2.5f);  // cubic overshoot stays small: 0..255 maps to about −1.8..2.2
    CHECK(*hi < 2.5f);
}

TEST_CASE("size rule") {
    const ImageOptions o;  // max side 1024, 28-px cells
    auto grid = [](int w, int h, int max_side) {
        ImageOptions opt;
        opt.max_image_size = max_side;
        const ImageGrid g = image_grid(w, h, opt);
        return std::make_pair(g.cols, g.rows);
    };
    CHECK(grid(60, 45, 1024) == std::make_pair(3, 2));      // 84x56
    CHECK(grid(1100, 300, 1024) == std::make_pair(37, 10));  // 1024x279 → 1036x280
    CHECK(grid(112, 112, 1024) == std::make_pair(4, 4));
    CHECK(grid(333, 251, 1024) == std::make_pair(12, 9));
    CHECK(grid(1, 1, 1024) == std::make_pair(1, 1));
    CHECK(grid(28, 29, 1024) == std::make_pair(1, 2));
    // spec/mistral-format.md §4.2 examples (max side 1540)
    CHECK(grid(1024, 768, 1540) == std::make_pair(37, 28));
    CHECK(grid(1920, 1080, 1540) == std::make_pair(55, 31));
    CHECK(grid(4000, 3000, 1540) == std::make_pair(55, 42));
    CHECK(grid(1540, 1540, 1540) == std::make_pair(55, 55));
    CHECK(grid(4620, 1682, 1540) == std::make_pair(55, 21));  // round(560.67) = 561, HF's floor would give 20
    // Python round is half-to-even: 57/2 = 28.5 → 28 (one row); round-half-up would give 29 (two rows).
    CHECK(grid(2048, 57, 1024) == std::make_pair(37, 1));
    CHECK(grid(2048, 59, 1024) == std::make_pair(37, 2));  // 29.5 → 30
    // A side that rounds to 0 pixels gets no cell; mistral-common rejects it, so do we.
    CHECK(contains(error_of([&] { image_grid(5000, 2, o); }), "too thin"));

    const Image small = load_image("tests/data/tiny-a/images/small.png", o);
    CHECK(small.width == 84);
    CHECK(small.height == 56);
    CHECK(small.cols() == 3);
    CHECK(small.rows() == 2);
    const Image wide = load_image("tests/data/tiny-a/images/wide.png", o);
    CHECK(wide.width == 1036);
    CHECK(wide.height == 280);
    const Image odd = load_image("tests/data/tiny-a/images/odd.png", o);
    CHECK(odd.width == 336);
    CHECK(odd.height == 252);
}

TEST_CASE("uniform grey survives the cubic resize (weights sum to 1)") {
    const int w = 208, h = 320;  // → 224x336 (8x12 cells)
    const std::vector<uint8_t> grey(size_t(w) * h * 3, 128);
    const Image img = preprocess(grey.data(), w, h, 3, ImageOptions{});
    REQUIRE(img.width == 224);
    REQUIRE(img.height == 336);
    const size_t n = size_t(img.width) * img.height;
    for (int c = 0; c < 3; ++c) {
        float worst = 0;
        for (size_t i = 0; i < n; ++i)
            worst = std::max(worst, std::fabs(img.pixels[c * n + i] - normalised(128, c)));
        CHECK(worst < 1e-6f);
    }
    CHECK(normalised(128, 0) == doctest::Approx(0.076336).epsilon(1e-5));
    CHECK(normalised(128, 1) == doctest::Approx(0.168897).epsilon(1e-5));
    CHECK(normalised(128, 2) == doctest::Approx(0.339949).epsilon(1e-5));
}

TEST_CASE("resize_cubic: identity, edges and OpenCV's kernel") {
    const std::vector<float> src = {0, 10, 20, 30};
    CHECK(resize_cubic(src.data(), 4, 1, 4, 1) == src);
    // 4 → 8 (scale 0.5): output 0 sits at source −0.25 → taps −2..1 clamped to 0,0,0,1, t = 0.75.
    const std::vector<float> up = resize_cubic(src.data(), 4, 1, 8, 1);
    REQUIRE(up.size() == 8);
    // Keys weights at t = 0.75 (A = −0.75): −0.03515625, 0.26171875, 0.87890625, −0.10546875.
    CHECK(up[0] == doctest::Approx(10 * -0.10546875));
    CHECK(up[0] < 0);  // overshoot below the data survives (no clamping on float)
    // symmetric data → symmetric output
    for (int i = 0; i < 8; ++i) CHECK(up[size_t(i)] + up[size_t(7 - i)] == doctest::Approx(30));
    // 2-D: the vertical pass follows the horizontal one on a 2x2 → 4x4 upscale
    const std::vector<float> sq = {0, 100, 100, 0};
    const std::vector<float> big = resize_cubic(sq.data(), 2, 2, 4, 4);
    REQUIRE(big.size() == 16);
    CHECK(big[0] == doctest::Approx(big[15]));
    CHECK(big[3] == doctest::Approx(big[12]));
}

TEST_CASE("alpha is composited on white with Pillow's rounding") {
    // 28x28 uniform images: the resize is the identity, so the composite itself is visible.
    const int n = 28 * 28;
    auto first = [](const Image& img, int c) { return img.pixels[size_t(c) * 28 * 28]; };
    std::vector<uint8_t> rgba;
    for (int i = 0; i < n; ++i) rgba.insert(rgba.end(), {10, 200, 77, 128});
    const Image a = preprocess(rgba.data(), 28, 28, 4, ImageOptions{});
    // (255·127 + v·128 + 128) → DIV255: 10 → 132, 200 → 227, 77 → 166
    CHECK(first(a, 0) == normalised(132, 0));
    CHECK(first(a, 1) == normalised(227, 1));
    CHECK(first(a, 2) == normalised(166, 2));

    std::vector<uint8_t> clear;
    for (int i = 0; i < n; ++i) clear.insert(clear.end(), {0, 0, 0, 0});
    const Image w = preprocess(clear.data(), 28, 28, 4, ImageOptions{});
    for (int c = 0; c < 3; ++c) CHECK(first(w, c) == normalised(255, c));

    std::vector<uint8_t> grey_alpha;
    for (int i = 0; i < n; ++i) grey_alpha.insert(grey_alpha.end(), {50, 1});
    const Image ga = preprocess(grey_alpha.data(), 28, 28, 2, ImageOptions{});
    for (int c = 0; c < 3; ++c) CHECK(first(ga, c) == normalised(254, c));  // 255·254 + 50 = 64820 → 254

    const std::vector<uint8_t> grey(size_t(n), 90);
    const Image g = preprocess(grey.data(), 28, 28, 1, ImageOptions{});
    for (int c = 0; c < 3; ++c) CHECK(first(g, c) == normalised(90, c));
}

TEST_CASE("other formats and PNG colour keys") {
    const ImageOptions o;
    SUBCASE("BMP decodes to the same pixels as the raw RGB") {
        std::vector<uint8_t> rgb(size_t(30) * 20 * 3);
        for (size_t i = 0; i < rgb.size(); ++i) rgb[i] = uint8_t(i * 37 % 251);
        const std::vector<uint8_t> bmp = make_bmp(30, 20, rgb);
        const Image a = load_image_memory(bmp.data(), bmp.size(), o, "test.bmp");
        const Image b = preprocess(rgb.data(), 30, 20, 3, o);
        CHECK(a.width == 56);
        CHECK(a.pixels == b.pixels);
    }
    SUBCASE("GIF: first frame, transparency composited on white") {
        const std::vector<uint8_t> solid = make_gif(false), clear = make_gif(true);
        const Image s = load_image_memory(solid.data(), solid.size(), o, "solid.gif");
        const Image c = load_image_memory(clear.data(), clear.size(), o, "clear.gif");
        CHECK(s.width == 28);
        CHECK(s.height == 28);
        // 1x1 → 28x28: every tap reads the one pixel; the float weights sum to 1 within rounding.
        auto near = [](float v) { return doctest::Approx(v).epsilon(1e-6); };
        CHECK(s.pixels[0] == near(normalised(200, 0)));
        CHECK(s.pixels[size_t(28) * 28] == near(normalised(30, 1)));
        CHECK(s.pixels[size_t(2) * 28 * 28] == near(normalised(60, 2)));
        for (int ch = 0; ch < 3; ++ch) CHECK(c.pixels[size_t(ch) * 28 * 28] == near(normalised(255, ch)));
    }
    SUBCASE("empty IDAT chunks are allowed and add nothing (stb_image alone misbehaves on a first one)") {
        std::vector<uint8_t> png = read_bytes("tests/data/tiny-a/images/small.png");
        const Image plain = load_image_memory(png.data(), png.size(), o, "small.png");
        const uint8_t empty_idat[] = {0, 0, 0, 0, 'I', 'D', 'A', 'T', 0x35, 0xaf, 0x06, 0x1e};  // IHDR ends at 33
        png.insert(png.begin() + 33, std::begin(empty_idat), std::end(empty_idat));
        const Image padded = load_image_memory(png.data(), png.size(), o, "padded.png");
        CHECK(padded.pixels == plain.pixels);
        // One whose CRC the end of the file cuts off (fuzz_image): an error, and stb_image never sees it.
        std::vector<uint8_t> cut(png.begin(), png.begin() + 33 + 8);
        CHECK_THROWS_AS(load_image_memory(cut.data(), cut.size(), o, "cut.png"), std::runtime_error);
    }
    SUBCASE("16-bit grey PNG: each sample's high byte, as stb_image and llama.cpp read it") {
        // Pillow opens it in mode I and its convert("RGB") clips every sample above 255 to white
        // (python-pillow #3011, "hasn't worked in 20 years"): transformers and vLLM would see a white
        // page. The picture as drawn is what is sent here.
        const std::vector<uint16_t> v = {0x0000, 0x0100, 0x1234, 0x80ff, 0xffff, 0x7f80};
        const std::vector<uint8_t> png = make_png_grey16(3, 2, v);
        const Image got = load_image_memory(png.data(), png.size(), o, "grey16.png");
        std::vector<uint8_t> rgb;
        for (uint16_t s : v) rgb.insert(rgb.end(), 3, uint8_t(s >> 8));
        const Image want = preprocess(rgb.data(), 3, 2, 3, o);
        CHECK(got.width == want.width);
        CHECK(got.pixels == want.pixels);
    }
    SUBCASE("an RGB PNG's tRNS colour key is ignored, as Pillow keeps mode RGB") {
        std::vector<uint8_t> png = read_bytes("tests/data/tiny-a/images/small.png");
        const Image plain = load_image_memory(png.data(), png.size(), o, "small.png");
        int w = 0, h = 0, n = 0;
        stbi_uc* px = stbi_load_from_memory(png.data(), int(png.size()), &w, &h, &n, 3);
        REQUIRE(px);
        const uint8_t r = px[0], g = px[1], b = px[2];  // colour key = the first pixel's colour
        stbi_image_free(px);
        // stb_image does not check chunk CRCs, so a zero CRC will do; IHDR ends at byte 8 + 25.
        const uint8_t trns[] = {0, 0, 0, 6, 't', 'R', 'N', 'S', 0, r, 0, g, 0, b, 0, 0, 0, 0};
        png.insert(png.begin() + 33, std::begin(trns), std::end(trns));
        px = stbi_load_from_memory(png.data(), int(png.size()), &w, &h, &n, 4);
        REQUIRE(px);
        CHECK(px[3] == 0);  // stb_image itself would make the keyed pixels transparent
        stbi_image_free(px);
        const Image keyed = load_image_memory(png.data(), png.size(), o, "keyed.png");
        CHECK(keyed.pixels == plain.pixels);
    }
}

TEST_CASE("EXIF orientation turns the pixels upright, as vLLM and transformers load images") {
    const std::vector<uint8_t> jpeg = read_bytes("tests/data/tiny-a/images/photo.jpg");
    const std::vector<uint8_t> png = read_bytes("tests/data/tiny-a/images/small.png");
    const int64_t budget = 1'000'000;
    const DecodedPixels stored_jpeg = decode_image(jpeg.data(), jpeg.size(), budget);
    const DecodedPixels stored_png = decode_image(png.data(), png.size(), budget);
    REQUIRE(stored_jpeg.width != stored_jpeg.height);
    for (bool le : {true, false})
        for (int o = 1; o <= 8; ++o) {
            CAPTURE(le);
            CAPTURE(o);
            const std::vector<uint8_t> tagged = with_app1(jpeg, exif_app1(exif_tiff(le, uint32_t(o))));
            check_shown_as(stored_jpeg, decode_image(tagged.data(), tagged.size(), budget), o);
        }
    SUBCASE("PNG eXIf chunk, with or without the Exif prefix; LONG and BYTE values") {
        for (int o : {3, 6, 7}) {
            CAPTURE(o);
            const std::vector<uint8_t> bare = with_exif_chunk(png, exif_tiff(false, uint32_t(o)));
            check_shown_as(stored_png, decode_image(bare.data(), bare.size(), budget), o);
            const std::vector<uint8_t> prefixed = with_exif_chunk(png, exif_app1(exif_tiff(true, uint32_t(o), 4)));
            check_shown_as(stored_png, decode_image(prefixed.data(), prefixed.size(), budget), o);
        }
        const std::vector<uint8_t> byte = with_app1(jpeg, exif_app1(exif_tiff(true, 8, 1)));
        check_shown_as(stored_jpeg, decode_image(byte.data(), byte.size(), budget), 8);
    }
    SUBCASE("a tag Pillow would not act on leaves the pixels as stored") {
        std::vector<std::vector<uint8_t>> files = {
            with_app1(jpeg, exif_app1(exif_tiff(true, 0))),
            with_app1(jpeg, exif_app1(exif_tiff(true, 9))),
            with_app1(jpeg, exif_app1(exif_tiff(false, 6, 3, 2))),    // a count of 2: Pillow sees a tuple
            with_app1(jpeg, exif_app1(exif_tiff(false, 6, 7))),       // UNDEFINED: bytes, not a number
            with_app1(jpeg, {'E', 'x', 'i', 'f', 0, 0, 'I', 'I', 42, 0, 0xff, 0xff, 0, 0}),  // IFD0 past the end
        };
        std::vector<uint8_t> cut = exif_app1(exif_tiff(true, 6));
        cut.resize(cut.size() - 10);  // the orientation entry cut short
        files.push_back(with_app1(jpeg, cut));
        // The first Exif segment is the one Pillow keeps; a second one is not read.
        files.push_back(with_app1(with_app1(jpeg, exif_app1(exif_tiff(true, 6))), exif_app1({'M', 'M', 0, 42, 0, 0, 0, 8, 0, 0})));
        for (size_t i = 0; i < files.size(); ++i) {
            CAPTURE(i);
            CHECK(same_pixels(decode_image(files[i].data(), files[i].size(), budget), stored_jpeg));
        }
    }
    SUBCASE("an XMP segment before it, and the preprocessed size follows the turned picture") {
        const std::string xmp = "http://ns.adobe.com/xap/1.0/";
        const std::vector<uint8_t> tagged = with_app1(with_app1(jpeg, exif_app1(exif_tiff(true, 6))),
                                                      std::vector<uint8_t>(xmp.c_str(), xmp.c_str() + xmp.size() + 1));
        check_shown_as(stored_jpeg, decode_image(tagged.data(), tagged.size(), budget), 6);
        const Image upright = load_image_memory(tagged.data(), tagged.size(), ImageOptions{}, "portrait.jpg");
        CHECK(upright.width == 168);  // 200x150 stored → shown 150x200 → 6x8 cells
        CHECK(upright.height == 224);
    }
}

TEST_CASE("WebP: lossless, lossy, alpha, animations and EXIF, as Pillow decodes them") {
    const ImageOptions o;
    const int w = 30, h = 20;
    std::vector<uint8_t> rgb(size_t(w) * h * 3), rgba(size_t(w) * h * 4);
    for (size_t i = 0; i < rgb.size(); ++i) rgb[i] = uint8_t(i * 37 % 251);
    for (size_t i = 0; i < rgba.size(); ++i) rgba[i] = uint8_t(i % 4 == 3 ? (i / 4 % 3) * 120 : i * 53 % 241);
    SUBCASE("lossless: the pixels that went in, RGB or RGBA (then composited on white)") {
        const std::vector<uint8_t> a = webp_still(rgb, w, h, 3, true), b = webp_still(rgba, w, h, 4, true);
        const DecodedPixels da = decode_image(a.data(), a.size(), o.max_pixels);
        const DecodedPixels db = decode_image(b.data(), b.size(), o.max_pixels);
        CHECK(da.channels == 3);
        CHECK(pixels_of(da) == rgb);
        CHECK(db.channels == 4);
        std::vector<uint8_t> got = pixels_of(db), want = rgba;
        for (size_t i = 0; i < want.size(); i += 4)  // libwebp keeps no colour under alpha 0 (not `exact`)
            if (want[i + 3] == 0) std::fill_n(&got[i], 3, 0), std::fill_n(&want[i], 3, 0);
        CHECK(got == want);
        CHECK(load_image_memory(a.data(), a.size(), o, "a.webp").pixels == preprocess(rgb.data(), w, h, 3, o).pixels);
        CHECK(load_image_memory(b.data(), b.size(), o, "b.webp").pixels == preprocess(rgba.data(), w, h, 4, o).pixels);
    }
    SUBCASE("lossy: libwebp's own RGB decode (fancy upsampling), and no alpha channel") {
        const std::vector<uint8_t> f = webp_still(rgb, w, h, 3, false);
        int rw = 0, rh = 0;
        uint8_t* ref = WebPDecodeRGB(f.data(), f.size(), &rw, &rh);
        REQUIRE(ref);
        const std::vector<uint8_t> want(ref, ref + size_t(rw) * rh * 3);
        WebPFree(ref);
        const DecodedPixels d = decode_image(f.data(), f.size(), o.max_pixels);
        CHECK(d.channels == 3);
        CHECK(pixels_of(d) == want);
        CHECK(want != rgb);  // lossy indeed
    }
    SUBCASE("an animation gives its first frame") {
        const std::vector<uint8_t> f = webp_animation(8, 6, {{200, 30, 60}, {10, 220, 40}});
        WebPBitstreamFeatures features;
        REQUIRE(WebPGetFeatures(f.data(), f.size(), &features) == VP8_STATUS_OK);
        REQUIRE(features.has_animation);
        const DecodedPixels d = decode_image(f.data(), f.size(), o.max_pixels);
        REQUIRE(d.width == 8);
        REQUIRE(d.height == 6);
        const std::vector<uint8_t> px = pixels_of(d);
        for (size_t i = 0; i < size_t(8 * 6); ++i) {
            CAPTURE(i);
            REQUIRE(px[i * size_t(d.channels)] == 200);
            REQUIRE(px[i * size_t(d.channels) + 1] == 30);
            REQUIRE(px[i * size_t(d.channels) + 2] == 60);
            if (d.channels == 4) REQUIRE(px[i * 4 + 3] == 255);
        }
    }
    SUBCASE("EXIF orientation in its EXIF chunk") {
        const std::vector<uint8_t> plain = webp_still(rgb, w, h, 3, true);
        const DecodedPixels stored = decode_image(plain.data(), plain.size(), o.max_pixels);
        for (int orientation : {3, 6}) {
            const std::vector<uint8_t> f = webp_with_exif(plain, exif_app1(exif_tiff(true, uint32_t(orientation))));
            check_shown_as(stored, decode_image(f.data(), f.size(), o.max_pixels), orientation);
        }
    }
    SUBCASE("bad files: one line each, nothing decoded past the budget") {
        const std::vector<uint8_t> f = webp_still(rgb, w, h, 3, false);
        auto error = [&](const std::vector<uint8_t>& b, int64_t budget) {
            return error_of([&] { decode_image(b.data(), b.size(), budget); });
        };
        CHECK(contains(error(f, 599), "30x20 exceeds the limit of 599 pixels"));
        CHECK(error(f, 600).empty());
        CHECK(contains(error({f.begin(), f.begin() + 16}, 600), "truncated WebP header"));
        CHECK(contains(error({f.begin(), f.begin() + std::ptrdiff_t(f.size() / 2)}, 600), "corrupt or truncated WebP"));
        std::vector<uint8_t> garbled = f;
        for (size_t i = 12; i < 20; ++i) garbled[i] = 'x';  // the first chunk's type and size
        CHECK(contains(error(garbled, 600), "corrupt WebP header"));
    }
}

TEST_CASE("JPEG: libjpeg-turbo's pixels with Pillow's settings, and what Pillow accepts or refuses") {
    const int64_t budget = 1'000'000;
    const int w = 40, h = 24;
    std::vector<uint8_t> rgb(size_t(w) * h * 3);
    for (int y = 0; y < h; ++y)
        for (int x = 0; x < w; ++x)
            for (int c = 0; c < 3; ++c) rgb[(size_t(y) * w + x) * 3 + size_t(c)] = uint8_t(x * 6 + y * 5 * c + 40 * c);
    SUBCASE("colour (4:2:0), grey, progressive: libjpeg's default decode") {
        const std::vector<uint8_t> photo = read_bytes("tests/data/tiny-a/images/photo.jpg");
        std::vector<uint8_t> grey(size_t(w) * h);
        for (size_t i = 0; i < grey.size(); ++i) grey[i] = uint8_t(i * 7);
        for (const auto& f : {photo, make_jpeg(grey, w, h, 1), make_jpeg(rgb, w, h, 3, true)}) {
            int comps = 0;
            const std::vector<uint8_t> want = libjpeg_pixels(f, comps);
            const DecodedPixels d = decode_image(f.data(), f.size(), budget);
            CHECK(d.channels == comps);
            CHECK(pixels_of(d) == want);
        }
    }
    SUBCASE("CMYK is read as Adobe's inverted CMYK and converted as Pillow converts it") {
        std::vector<uint8_t> cmyk(size_t(w) * h * 4);
        for (size_t i = 0; i < cmyk.size(); ++i) cmyk[i] = uint8_t(i * 29 % 256);
        const std::vector<uint8_t> f = make_jpeg(cmyk, w, h, 4);
        int comps = 0;
        const std::vector<uint8_t> raw = libjpeg_pixels(f, comps);
        REQUIRE(comps == 4);
        const DecodedPixels d = decode_image(f.data(), f.size(), budget);
        REQUIRE(d.channels == 3);
        const std::vector<uint8_t> got = pixels_of(d);
        int wrong = 0;
        for (size_t i = 0; i < size_t(w) * h; ++i) {
            // JpegImagePlugin's "CMYK;I" (each value v read as 255 − v), then Convert.c's cmyk2rgb:
            // out = clip(nk − MULDIV255(C, nk)), nk = 255 − K, MULDIV255(a, b) = ((a·b + 128) >> 8 + a·b + 128) >> 8.
            const int nk = 255 - (255 - raw[4 * i + 3]);
            for (int c = 0; c < 3; ++c) {
                const int C = 255 - raw[4 * i + size_t(c)], t = C * nk + 128;
                const int want = std::clamp(nk - (((t >> 8) + t) >> 8), 0, 255);
                wrong += got[3 * i + size_t(c)] != want;
            }
        }
        CHECK(wrong == 0);
        // Two corners of the conversion: no ink (raw 255 everywhere) is white, full black (raw K 0) is black.
        const std::vector<uint8_t> white = make_jpeg(std::vector<uint8_t>(size_t(16) * 16 * 4, 255), 16, 16, 4);
        const std::vector<uint8_t> black = make_jpeg(std::vector<uint8_t>(size_t(16) * 16 * 4, 0), 16, 16, 4);
        CHECK(pixels_of(decode_image(white.data(), white.size(), budget))[0] == 255);
        CHECK(pixels_of(decode_image(black.data(), black.size(), budget))[0] == 0);
    }
    SUBCASE("the end of the file: data running out before the last scanline is an error, as in Pillow") {
        // Pillow's source suspends where libjpeg asks for bytes past the end, and without LOAD_TRUNCATED_IMAGES
        // an image not whole by then is "truncated"; jpeg_mem_src warns at the same read.
        const std::vector<uint8_t> baseline = make_jpeg(rgb, w, h, 3), progressive = make_jpeg(rgb, w, h, 3, true);
        for (const auto* f : {&baseline, &progressive}) {
            REQUIRE(f->size() > 2);
            REQUIRE((*f)[f->size() - 2] == 0xff);
            REQUIRE((*f)[f->size() - 1] == 0xd9);
            // Without its EOI marker: the entropy decoder reads ahead into what would be the marker.
            const std::vector<uint8_t> no_eoi(f->begin(), f->end() - 2);
            CHECK(contains(error_of([&] { decode_image(no_eoi.data(), no_eoi.size(), budget); }), "truncated JPEG"));
            const std::vector<uint8_t> half(f->begin(), f->begin() + std::ptrdiff_t(f->size() / 2));
            CHECK(contains(error_of([&] { decode_image(half.data(), half.size(), budget); }), "truncated JPEG"));
        }
        // Bytes after the EOI marker are never read.
        std::vector<uint8_t> trailing = baseline;
        trailing.insert(trailing.end(), 100, 0x11);
        CHECK(same_pixels(decode_image(trailing.data(), trailing.size(), budget),
                          decode_image(baseline.data(), baseline.size(), budget)));
    }
    SUBCASE("damaged scan data decodes (libjpeg's warnings are ignored, as Pillow ignores them)") {
        std::vector<uint8_t> f = make_jpeg(rgb, w, h, 3);
        for (size_t i = f.size() / 2; i < f.size() / 2 + 8; ++i) f[i] = 0x5a;
        const DecodedPixels d = decode_image(f.data(), f.size(), budget);
        CHECK(d.width == w);
        CHECK(d.channels == 3);
    }
    SUBCASE("refused: over the pixel budget on the header, more than kMaxJpegScans scans, bad tables") {
        const std::vector<uint8_t> f = make_jpeg(rgb, w, h, 3);
        CHECK(contains(error_of([&] { decode_image(f.data(), f.size(), w * h - 1); }), "40x24 exceeds the limit of 959"));
        // A progression of one coefficient per scan, refined a bit at a time (libjpeg allows Al ≤ 10):
        // 1 + 3 × 63 × 11 scans.
        std::vector<jpeg_scan_info> scans = {{3, {0, 1, 2}, 0, 0, 0, 0}};
        for (int comp = 0; comp < 3; ++comp)
            for (int k = 1; k <= 63; ++k) {
                scans.push_back({1, {comp}, k, k, 0, 10});
                for (int al = 9; al >= 0; --al) scans.push_back({1, {comp}, k, k, al + 1, al});
            }
        REQUIRE(scans.size() > size_t(kMaxJpegScans));
        const std::vector<uint8_t> many = make_jpeg(std::vector<uint8_t>(size_t(16) * 16 * 3, 128), 16, 16, 3, true, scans);
        CHECK(contains(error_of([&] { decode_image(many.data(), many.size(), budget); }), "more than 1000 scans"));
        std::vector<uint8_t> bad = {0xff, 0xd8, 0xff, 0xc4, 0x10, 0x13, 0x13};  // a Huffman table of 4080 codes
        bad.insert(bad.end(), 16, 0xff);
        CHECK(contains(error_of([&] { decode_image(bad.data(), bad.size(), budget); }),
                       "corrupt JPEG (Bogus Huffman table definition)"));
    }
}

TEST_CASE("image token layout") {
    const std::vector<int32_t> one = image_token_layout(1, 3, 10, 12, 13);
    CHECK(one == std::vector<int32_t>{10, 10, 10, 13});
    const std::vector<int32_t> two = image_token_layout(2, 3, 10, 12, 13);
    CHECK(two == std::vector<int32_t>{10, 10, 10, 12, 10, 10, 10, 13});
    const std::vector<int32_t> wide = image_token_layout(10, 37, 10, 12, 13);
    CHECK(wide.size() == 380);
    CHECK(std::count(wide.begin(), wide.end(), 10) == 370);
    CHECK(std::count(wide.begin(), wide.end(), 12) == 9);
    CHECK(wide.back() == 13);
    CHECK(wide[37] == 12);
    CHECK_THROWS_AS(image_token_layout(0, 3, 10, 12, 13), std::runtime_error);
}

TEST_CASE("load errors name the file") {
    const ImageOptions o;
    SUBCASE("missing file") {
        const std::string e = error_of([&] { load_image("tests/data/no-such-image.png", o); });
        CHECK(contains(e, "no-such-image.png"));
        CHECK(contains(e, "cannot open"));
    }
    SUBCASE("directory") {
        const std::string e = error_of([&] { load_image("tests/data", o); });
        CHECK(contains(e, "tests/data"));
    }
    SUBCASE("not an image") {
        const std::string e = error_of([&] { load_image("tests/data/tiny-a/golden.json", o); });
        CHECK(contains(e, "golden.json"));
        CHECK(contains(e, "not an image"));
        const fs::path empty = temp_file("empty.png");
        write_bytes(empty, nullptr, 0);
        CHECK(contains(error_of([&] { load_image(empty.string(), o); }), "not an image"));
        fs::remove(empty);
    }
    SUBCASE("truncated png and jpeg") {
        for (const std::string name : {"small.png", "wide.png", "photo.jpg"}) {
            const std::vector<uint8_t> full = read_bytes(fs::path("tests/data/tiny-a/images") / name);
            for (size_t keep : {full.size() / 2, full.size() - 20, size_t(100)}) {
                CAPTURE(name);
                CAPTURE(keep);
                const fs::path p = temp_file("cut_" + name);
                write_bytes(p, full.data(), keep);
                const std::string e = error_of([&] { load_image(p.string(), o); });
                CHECK(contains(e, p.string()));
                CHECK(contains(e, "truncated"));
                fs::remove(p);
            }
        }
    }
    SUBCASE("truncated BMP and GIF are refused, not padded with black (stb_image reads zeros past the end)") {
        std::vector<uint8_t> rgb(size_t(30) * 20 * 3, 200);
        const std::vector<uint8_t> bmp = make_bmp(30, 20, rgb);
        for (size_t keep : {bmp.size() - 1, bmp.size() / 2, size_t(60)}) {
            CAPTURE(keep);
            CHECK(contains(error_of([&] { load_image_memory(bmp.data(), keep, o, "cut.bmp"); }), "truncated BMP"));
        }
        const std::vector<uint8_t> gif = make_gif(false);
        for (size_t keep : {gif.size() - 2, gif.size() - 4}) {  // inside the LZW data
            CAPTURE(keep);
            CHECK(contains(error_of([&] { load_image_memory(gif.data(), keep, o, "cut.gif"); }), "truncated GIF"));
        }
    }
    SUBCASE("0x0") {
        std::vector<uint8_t> png = read_bytes("tests/data/tiny-a/images/small.png");
        set_png_size(png, 0, 0);
        const fs::path p = temp_file("zero.png");
        write_bytes(p, png.data(), png.size());
        const std::string e = error_of([&] { load_image(p.string(), o); });
        CHECK(contains(e, p.string()));
        CHECK(contains(e, "empty image"));
        fs::remove(p);
        CHECK(contains(error_of([&] { preprocess(png.data(), 0, 0, 3, o); }), "empty image"));
    }
    SUBCASE("pixel budget is checked from the header, before decoding") {
        std::vector<uint8_t> png = read_bytes("tests/data/tiny-a/images/small.png");
        set_png_size(png, 20000, 20000);  // 400 MP (stbi_info alone calls that corrupt); the data could never fill it
        const fs::path p = temp_file("huge.png");
        write_bytes(p, png.data(), png.size());
        const std::string e = error_of([&] { load_image(p.string(), o); });
        CHECK(contains(e, p.string()));
        CHECK(contains(e, "exceeds the limit"));
        fs::remove(p);
        set_png_size(png, 0xffffffffu, 0xffffffffu);  // the product needs more than 64 bits (fuzz_image)
        CHECK(contains(error_of([&] { load_image_memory(png.data(), png.size(), o, "max.png"); }),
                       "4294967295x4294967295 exceeds the limit"));
        // GIF's logical screen and BMP's DIB header (a negative height: rows top to bottom) likewise.
        std::vector<uint8_t> gif = make_gif(false);
        gif[6] = gif[7] = gif[8] = gif[9] = 0xff;  // 65535x65535
        CHECK(contains(error_of([&] { load_image_memory(gif.data(), gif.size(), o, "huge.gif"); }),
                       "65535x65535 exceeds the limit of 178956970 pixels"));
        std::vector<uint8_t> bmp = make_bmp(2, 2, std::vector<uint8_t>(12, 0));
        const uint32_t w = 20000, h = uint32_t(-20000);
        for (int i = 0; i < 4; ++i) bmp[18 + size_t(i)] = uint8_t(w >> 8 * i), bmp[22 + size_t(i)] = uint8_t(h >> 8 * i);
        CHECK(contains(error_of([&] { load_image_memory(bmp.data(), bmp.size(), o, "huge.bmp"); }),
                       "20000x20000 exceeds the limit"));
        ImageOptions tight;
        tight.max_pixels = 1000;  // small.png has 2700
        const std::string e2 = error_of([&] { load_image("tests/data/tiny-a/images/small.png", tight); });
        CHECK(contains(e2, "exceeds the limit"));
    }
    SUBCASE("unsupported channel count") {
        const std::vector<uint8_t> px(28 * 28 * 5, 0);
        CHECK(contains(error_of([&] { preprocess(px.data(), 28, 28, 5, o); }), "unsupported channel count 5"));
        CHECK(contains(error_of([&] { preprocess(px.data(), 28, 28, 0, o); }), "unsupported channel count 0"));
    }
    SUBCASE("bytes from memory carry their name") {
        const uint8_t junk[] = {'h', 'e', 'l', 'l', 'o'};
        const std::string e = error_of([&] { load_image_memory(junk, sizeof junk, o, "upload #3"); });
        CHECK(contains(e, "upload #3"));
        CHECK(contains(e, "not an image"));
    }
}

// Every input the image fuzzer once failed on (tests/fuzz/corpus/image/regress-*) decodes or is refused with
// an error, here too: `make sanitize-unit` runs this under ASan + UBSan without building the fuzzers.
TEST_CASE("the image fuzzer's regression inputs load or fail cleanly") {
    const ImageOptions o;
    int seen = 0;
    for (const auto& entry : fs::directory_iterator("tests/fuzz/corpus/image")) {
        const std::string name = entry.path().filename().string();
        if (name.rfind("regress-", 0) != 0) continue;
        CAPTURE(name);
        const std::vector<uint8_t> bytes = read_bytes(entry.path());
        try {
            const Image im = load_image_memory(bytes.data(), bytes.size(), o, name);
            CHECK(im.width > 0);
        } catch (const std::runtime_error& e) {
            CHECK(contains(e.what(), name));
        }
        ++seen;
    }
    CHECK(seen >= 4);
}
