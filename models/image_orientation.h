// image_orientation.h — the EXIF Orientation tag of a JPEG (APP1 "Exif"), PNG (eXIf) or WebP (EXIF chunk) and
// the flip or rotation that shows its pixels the way a viewer does. transformers' load_image and vLLM's image
// loading apply it (Pillow's ImageOps.exif_transpose) before the processor sees the picture; mistral-common
// alone does not. Phone cameras store most portrait photos sideways with orientation 6.
#pragma once

#include <cstddef>
#include <cstdint>

#include "image_decode.h"

namespace mistral {

// 1 (upright as stored) to 8, as EXIF numbers them, of a file in `format` ("JPEG", "PNG" or "WebP", as
// decode_image names them; others have none); 1 when the file has no orientation tag, or one that Pillow
// would not act on (another value, a count other than 1, EXIF data cut short or malformed).
int exif_orientation(const uint8_t* bytes, size_t n, const char* format);

// Turns decoded pixels upright for orientation o (Pillow's transposes: 2 mirror, 3 rotate 180°, 4 flip,
// 5 transpose, 6 rotate 90° clockwise, 7 transverse, 8 rotate 90° counter-clockwise); width and height swap
// for 5 to 8. Orientation 1 (or any other value) leaves them as they are.
void apply_orientation(DecodedPixels& px, int o);

}  // namespace mistral
