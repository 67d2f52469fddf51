// png_chunks.h — walking a PNG's chunks, shared by the decoder's checks (image_decode.cpp) and the EXIF
// reader (image_orientation.cpp).
#pragma once

#include <cstddef>
#include <cstdint>

namespace mistral {

inline uint32_t be32(const uint8_t* p) {
    return uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 | p[3];
}

// Calls fn(offset, length, type) for each chunk after the signature whose data lies inside the file (its
// 4-byte CRC may be cut off: stb_image reads the data before it fails there), in order, until fn returns
// false; a chunk whose data runs past the end stops the walk (stb_image reports it).
template <typename Fn>
void png_chunks(const uint8_t* b, size_t n, Fn fn) {
    for (size_t at = 8; at + 8 <= n;) {
        const uint64_t len = be32(b + at);
        if (len > n - at - 8 || !fn(at, size_t(len), b + at + 4)) return;
        at += 12 + len;
    }
}

}  // namespace mistral
