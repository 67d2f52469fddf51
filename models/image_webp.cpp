// image_webp.cpp — decode_webp(): the header's features and the pixel budget, then the first frame of
// libwebp's animation decoder (Pillow's WebPAnimDecoder with no options: RGBA, no threads) copied out.
#include "image_webp.h"

#include <webp/decode.h>
#include <webp/demux.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>

namespace mistral {

bool is_webp(const uint8_t* b, size_t n) {
    return n >= 12 && std::memcmp(b, "RIFF", 4) == 0 && std::memcmp(b + 8, "WEBP", 4) == 0;
}

DecodedPixels decode_webp(const uint8_t* bytes, size_t n, int64_t max_pixels) {
    auto fail = [](const std::string& what) { throw std::runtime_error(what); };
    WebPBitstreamFeatures f;
    const VP8StatusCode status = WebPGetFeatures(bytes, n, &f);
    if (status == VP8_STATUS_NOT_ENOUGH_DATA) fail("truncated WebP header");
    if (status != VP8_STATUS_OK) fail("corrupt WebP header");
    check_pixel_budget(f.width, f.height, max_pixels);

    const WebPData data{bytes, n};
    std::unique_ptr<WebPAnimDecoder, void (*)(WebPAnimDecoder*)> dec(WebPAnimDecoderNew(&data, nullptr),
                                                                      WebPAnimDecoderDelete);
    WebPAnimInfo info;
    if (!dec || !WebPAnimDecoderGetInfo(dec.get(), &info))
        fail("corrupt or truncated WebP (its chunks do not add up to a picture)");
    if (int(info.canvas_width) != f.width || int(info.canvas_height) != f.height)
        fail("corrupt WebP: its header and its canvas differ in size");
    uint8_t* rgba = nullptr;
    int timestamp = 0;
    if (!WebPAnimDecoderGetNext(dec.get(), &rgba, &timestamp))
        fail("corrupt or truncated WebP (its first frame does not decode)");

    DecodedPixels px;
    px.width = f.width, px.height = f.height, px.channels = f.has_alpha ? 4 : 3;
    const size_t pixels = size_t(px.width) * size_t(px.height);
    auto* out = static_cast<uint8_t*>(std::malloc(pixels * size_t(px.channels)));
    if (!out) throw std::bad_alloc();
    px.data = {out, std::free};
    if (f.has_alpha) {
        std::memcpy(out, rgba, pixels * 4);
    } else {  // Pillow's RGBX → RGB: the X byte dropped
        for (size_t i = 0; i < pixels; ++i) std::memcpy(out + 3 * i, rgba + 4 * i, 3);
    }
    return px;
}

}  // namespace mistral
