// image_orientation.cpp — finding the EXIF Orientation tag (JPEG APP1, PNG eXIf, WebP EXIF; a TIFF header and
// its first IFD) and turning decoded pixels upright by it. Every read is bounds-checked: EXIF that cannot be read
// leaves the picture as stored, as Pillow's exif_transpose does with a tag it does not find.
#include "image_orientation.h"

#include "png_chunks.h"

#include <cstdlib>
#include <cstring>
#include <new>

namespace mistral {

namespace {

constexpr unsigned kOrientationTag = 0x0112;

// The orientation in TIFF-structured EXIF data (Pillow's Exif.load: an optional "Exif\0\0" prefix, then
// "II" or "MM", 42, the offset of IFD0 and its 12-byte entries). BYTE, SHORT or LONG with a count of 1.
int tiff_orientation(const uint8_t* t, size_t n) {
    if (n >= 6 && std::memcmp(t, "Exif\0\0", 6) == 0) t += 6, n -= 6;
    if (n < 8 || !((t[0] == 'I' && t[1] == 'I') || (t[0] == 'M' && t[1] == 'M'))) return 1;
    const bool le = t[0] == 'I';
    auto u16 = [&](size_t at) { return le ? unsigned(t[at] | t[at + 1] << 8) : unsigned(t[at] << 8 | t[at + 1]); };
    auto u32 = [&](size_t at) { return uint32_t(le ? u16(at) | u16(at + 2) << 16 : u16(at) << 16 | u16(at + 2)); };
    if (u16(2) != 42) return 1;
    const uint64_t ifd = u32(4);
    if (ifd + 2 > n) return 1;
    const unsigned entries = u16(size_t(ifd));
    for (unsigned i = 0; i < entries; ++i) {
        const uint64_t e = ifd + 2 + 12 * uint64_t(i);
        if (e + 12 > n) return 1;
        if (u16(size_t(e)) != kOrientationTag) continue;
        const unsigned type = u16(size_t(e) + 2);
        if (u32(size_t(e) + 4) != 1) return 1;
        const uint32_t v = type == 1 ? t[e + 8] : type == 3 ? u16(size_t(e) + 8) : type == 4 ? u32(size_t(e) + 8) : 0;
        return v >= 1 && v <= 8 ? int(v) : 1;
    }
    return 1;
}

// The first APP1 "Exif" segment before the scan data, as Pillow's JPEG reader keeps it.
int jpeg_orientation(const uint8_t* b, size_t n) {
    for (size_t i = 2; i + 4 <= n;) {
        if (b[i] != 0xff) return 1;  // not at a marker: the header is malformed, libjpeg will say so
        const uint8_t m = b[i + 1];
        if (m == 0xff) {  // fill byte
            ++i;
            continue;
        }
        if (m == 0xda || m == 0xd9) return 1;  // start of scan, end of image: no EXIF
        const size_t len = size_t(b[i + 2]) << 8 | b[i + 3];
        if (len < 2 || len > n - i - 2) return 1;
        if (m == 0xe1 && len >= 8 && std::memcmp(b + i + 4, "Exif\0\0", 6) == 0)
            return tiff_orientation(b + i + 10, len - 8);
        i += 2 + len;
    }
    return 1;
}

// A PNG's eXIf chunk (before or after the image data; Pillow reads both).
int png_orientation(const uint8_t* b, size_t n) {
    const uint8_t* exif = nullptr;
    size_t size = 0;
    png_chunks(b, n, [&](size_t at, size_t len, const uint8_t* type) {
        if (std::memcmp(type, "eXIf", 4) == 0) exif = b + at + 8, size = len;
        return !exif && std::memcmp(type, "IEND", 4) != 0;
    });
    return exif ? tiff_orientation(exif, size) : 1;
}

// A WebP's EXIF chunk (RIFF chunks: a four-character type, a little-endian size, data padded to even).
int webp_orientation(const uint8_t* b, size_t n) {
    for (size_t at = 12; at + 8 <= n;) {
        const uint64_t len = uint64_t(b[at + 4]) | b[at + 5] << 8 | b[at + 6] << 16 | uint64_t(b[at + 7]) << 24;
        if (len > n - at - 8) return 1;
        if (std::memcmp(b + at, "EXIF", 4) == 0) return tiff_orientation(b + at + 8, size_t(len));
        at += 8 + len + (len & 1);
    }
    return 1;
}

}  // namespace

int exif_orientation(const uint8_t* bytes, size_t n, const char* format) {
    if (std::strcmp(format, "JPEG") == 0) return jpeg_orientation(bytes, n);
    if (std::strcmp(format, "PNG") == 0) return png_orientation(bytes, n);
    if (std::strcmp(format, "WebP") == 0) return webp_orientation(bytes, n);
    return 1;
}

void apply_orientation(DecodedPixels& px, int o) {
    if (o < 2 || o > 8) return;
    const size_t w = size_t(px.width), h = size_t(px.height), c = size_t(px.channels);
    const bool swap = o >= 5;
    const size_t W = swap ? h : w, H = swap ? w : h;
    auto* out = static_cast<uint8_t*>(std::malloc(W * H * c));
    if (!out) throw std::bad_alloc();
    const uint8_t* in = px.data.get();
    for (size_t Y = 0; Y < H; ++Y)
        for (size_t X = 0; X < W; ++X) {
            size_t x = X, y = Y;  // the stored pixel shown at (X, Y)
            switch (o) {
                case 2: x = w - 1 - X; break;
                case 3: x = w - 1 - X, y = h - 1 - Y; break;
                case 4: y = h - 1 - Y; break;
                case 5: x = Y, y = X; break;
                case 6: x = Y, y = h - 1 - X; break;
                case 7: x = w - 1 - Y, y = h - 1 - X; break;
                default: x = w - 1 - Y, y = X; break;  // 8
            }
            std::memcpy(out + (Y * W + X) * c, in + (y * w + x) * c, c);
        }
    px.data = {out, std::free};
    px.width = int(W), px.height = int(H);
}

}  // namespace mistral
