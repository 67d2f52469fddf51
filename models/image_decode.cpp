// image_decode.cpp — format sniffing, the pre-decode checks and the stb_image call behind decode_image() (JPEG
// and WebP go to image_jpeg.cpp and image_webp.cpp), which then turns the pixels upright by their EXIF
// orientation (image_orientation.h).
#include "image_decode.h"

#include "image_jpeg.h"
#include "image_orientation.h"
#include "image_webp.h"
#include "png_chunks.h"

#include <stb_image.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace mistral {

namespace {

[[noreturn]] void fail(const std::string& what) { throw std::runtime_error(what); }

// The format named by the file's first bytes, or nullptr when it is none the engine decodes.
const char* sniff_format(const uint8_t* b, size_t n) {
    auto starts = [&](const char* magic, size_t len) { return n >= len && std::memcmp(b, magic, len) == 0; };
    if (starts("\x89PNG\r\n\x1a\n", 8)) return "PNG";
    if (starts("\xff\xd8\xff", 3)) return "JPEG";
    if (starts("GIF87a", 6) || starts("GIF89a", 6)) return "GIF";
    if (starts("BM", 2)) return "BMP";
    if (is_webp(b, n)) return "WebP";
    return nullptr;
}

// The width and height a PNG (IHDR, always the first chunk), GIF (logical screen) or BMP (DIB header) declares,
// or nothing when its header is too short or malformed to say.
std::optional<std::pair<int64_t, int64_t>> declared_size(const uint8_t* b, size_t n, const char* format) {
    auto le = [&](size_t at, int bytes) {
        uint32_t v = 0;
        for (int i = bytes - 1; i >= 0; --i) v = v << 8 | b[at + size_t(i)];
        return v;
    };
    if (std::strcmp(format, "PNG") == 0 && n >= 24 && std::memcmp(b + 12, "IHDR", 4) == 0)
        return std::make_pair(int64_t(be32(b + 16)), int64_t(be32(b + 20)));
    if (std::strcmp(format, "GIF") == 0 && n >= 10) return std::make_pair(int64_t(le(6, 2)), int64_t(le(8, 2)));
    if (std::strcmp(format, "BMP") == 0 && n >= 26) {
        if (le(14, 4) == 12) return std::make_pair(int64_t(le(18, 2)), int64_t(le(20, 2)));  // OS/2 core header
        const int64_t h = int32_t(le(22, 4));  // negative: rows top to bottom
        return std::make_pair(int64_t(int32_t(le(18, 4))), h < 0 ? -h : h);
    }
    return std::nullopt;
}

// Throws when a PNG's image data inflates to much more than its IHDR implies. stb_image inflates into a buffer
// that doubles until the stream ends (up to 4 GB, whatever the header says), so a few megabytes of zeros
// behind a 1×1 header would cost gigabytes; here the stream is inflated into a buffer bounded by the header
// first. A quarter plus 1 MiB of slack covers Adam7's extra filter bytes and the trailing zeros some writers
// leave (stb_image accepts those too). Damaged streams are left for stb_image to report.
void check_png_inflated_size(const uint8_t* b, size_t n) {
    if (n < 33 || std::memcmp(b + 12, "IHDR", 4) != 0) return;
    const uint64_t w = be32(b + 16), h = be32(b + 20), depth = b[24];
    const int colour = b[25];
    const uint64_t channels = colour == 2 ? 3 : colour == 4 ? 2 : colour == 6 ? 4 : 1;
    const uint64_t expected = ((w * channels * depth + 7) / 8 + 1) * h;
    const uint64_t limit = expected + expected / 4 + (1u << 20);
    if (limit > uint64_t(INT_MAX)) return;  // beyond any pixel budget; refused on the header elsewhere

    std::vector<char> idat;
    bool apple = false;  // CgBI: Apple's PNG variant with a raw deflate stream
    png_chunks(b, n, [&](size_t at, size_t len, const uint8_t* type) {
        if (std::memcmp(type, "CgBI", 4) == 0) apple = true;
        if (std::memcmp(type, "IDAT", 4) == 0) idat.insert(idat.end(), b + at + 8, b + at + 8 + len);
        return std::memcmp(type, "IEND", 4) != 0;
    });
    if (idat.empty() || idat.size() > size_t(INT_MAX)) return;
    std::vector<char> out(static_cast<size_t>(limit));
    const int got = apple ? stbi_zlib_decode_noheader_buffer(out.data(), int(limit), idat.data(), int(idat.size()))
                          : stbi_zlib_decode_buffer(out.data(), int(limit), idat.data(), int(idat.size()));
    const char* why = got < 0 ? stbi_failure_reason() : nullptr;
    if (why && std::strcmp(why, "output buffer limit") == 0)
        fail("PNG data inflates to more than " + std::to_string(limit) + " bytes although its " +
             std::to_string(w) + "x" + std::to_string(h) + " header implies " + std::to_string(expected) +
             " (a decompression bomb?)");
}

// A copy of a PNG without its empty IDAT chunks, or an empty vector when it has none. The PNG format allows
// them; the stb_image Debian ships copies zero bytes to a null buffer for one that comes first (undefined
// behaviour, found by fuzz_image), and they add nothing to the image data.
std::vector<uint8_t> without_empty_idat(const uint8_t* b, size_t n) {
    std::vector<uint8_t> out;
    size_t copied = 0;  // bytes of b already in out (or still to copy)
    png_chunks(b, n, [&](size_t at, size_t len, const uint8_t* type) {
        if (len == 0 && std::memcmp(type, "IDAT", 4) == 0) {
            out.insert(out.end(), b + copied, b + at);
            copied = std::min(at + 12, n);
        }
        return true;
    });
    if (copied) out.insert(out.end(), b + copied, b + n);
    return out;
}

// The bytes stb_image reads, through its callback interface so that a read past the end is seen: from
// memory, stb_image silently reads zeros there, which turns a truncated BMP or GIF into black pixels.
struct Reader {
    const uint8_t* bytes;
    size_t n, pos = 0;
    bool past_end = false;

    static int read(void* user, char* data, int size) {
        auto* r = static_cast<Reader*>(user);
        const size_t got = std::min(size_t(std::max(size, 0)), r->n - r->pos);
        if (got == 0 && size > 0) r->past_end = true;
        std::memcpy(data, r->bytes + r->pos, got);
        r->pos += got;
        return int(got);
    }
    static void skip(void* user, int k) {
        auto* r = static_cast<Reader*>(user);
        if (k > 0 && size_t(k) > r->n - r->pos) r->past_end = true;
        r->pos = k >= 0 ? std::min(r->n, r->pos + size_t(k)) : r->pos - std::min(r->pos, size_t(-int64_t(k)));
    }
    static int eof(void* user) {
        auto* r = static_cast<Reader*>(user);
        return r->pos >= r->n;
    }
};
const stbi_io_callbacks kReaderCallbacks{Reader::read, Reader::skip, Reader::eof};

// PNG, BMP or GIF through stb_image.
DecodedPixels decode_stb(const uint8_t* bytes, size_t n, int64_t max_pixels, const char* format) {
    std::vector<uint8_t> cleaned;
    if (std::strcmp(format, "PNG") == 0) cleaned = without_empty_idat(bytes, n);
    if (!cleaned.empty()) bytes = cleaned.data(), n = cleaned.size();

    // The budget first: stbi_info calls an image of over 2^30 bytes corrupt.
    const auto size = declared_size(bytes, n, format);
    if (size) check_pixel_budget(size->first, size->second, max_pixels);
    DecodedPixels px;
    int comp = 0;
    Reader info{bytes, n};
    if (!stbi_info_from_callbacks(&kReaderCallbacks, &info, &px.width, &px.height, &comp)) {
        // stbi_info's own reason is always "unknown image type" once every decoder has refused the bytes.
        if (size && (size->first == 0 || size->second == 0)) fail("empty image (0 pixels wide or high)");
        fail(std::string("corrupt or truncated ") + format + " header");
    }
    if (px.width <= 0 || px.height <= 0)
        fail("empty image (" + std::to_string(px.width) + "x" + std::to_string(px.height) + ")");
    check_pixel_budget(px.width, px.height, max_pixels);
    if (std::strcmp(format, "PNG") == 0) check_png_inflated_size(bytes, n);

    // A header that says RGB decodes straight to RGB: Pillow keeps such images in mode RGB and ignores a PNG
    // tRNS colour key, so mistral-common never composites them (stb would add an alpha channel).
    const int want = comp == 3 ? 3 : 0;
    Reader pixels{bytes, n};
    px.data = {stbi_load_from_callbacks(&kReaderCallbacks, &pixels, &px.width, &px.height, &px.channels, want),
               stbi_image_free};
    if (want) px.channels = want;
    if (pixels.past_end) fail(std::string("truncated ") + format + ": the file ends before its image data does");
    if (!px.data) {
        const char* why = stbi_failure_reason();
        fail(std::string("corrupt or truncated image (") + (why ? why : "unknown error") + ")");
    }
    return px;
}

}  // namespace

void check_pixel_budget(int64_t width, int64_t height, int64_t max_pixels) {
    if (__int128(width) * height > max_pixels)  // a PNG declares up to 2^32 − 1 per side
        fail(std::to_string(width) + "x" + std::to_string(height) + " exceeds the limit of " +
             std::to_string(max_pixels) + " pixels");
}

DecodedPixels decode_image(const uint8_t* bytes, size_t n, int64_t max_pixels) {
    if (n == 0) fail("empty file, not an image");
    if (n > size_t(INT_MAX)) fail("file too large");
    const char* format = sniff_format(bytes, n);
    if (!format) fail("not an image (PNG, JPEG, WebP, BMP or GIF expected)");
    DecodedPixels px = std::strcmp(format, "WebP") == 0   ? decode_webp(bytes, n, max_pixels)
                       : std::strcmp(format, "JPEG") == 0 ? decode_jpeg(bytes, n, max_pixels)
                                                          : decode_stb(bytes, n, max_pixels, format);
    px.orientation = exif_orientation(bytes, n, format);
    apply_orientation(px, px.orientation);
    return px;
}

}  // namespace mistral
