// image_jpeg.cpp — decode_jpeg(): libjpeg-turbo from memory behind its setjmp error handler (the C part runs
// in one function with plain-old-data state only, so no C++ object is ever jumped over), warnings ignored as
// Pillow ignores them, except the end of the file before the last scanline.
#include "image_jpeg.h"

#include <csetjmp>
#include <cstdio>  // jpeglib.h needs FILE
#include <cstdlib>
#include <cstring>
#include <jerror.h>
#include <jpeglib.h>
#include <stdexcept>
#include <string>

namespace mistral {

namespace {

enum class Outcome { kOk, kLibjpegError, kTruncated, kTooManyPixels, kTooManyScans, kComponents, kNoMemory };

// Everything the decoding function and libjpeg's callbacks share; `err` first, so that the error manager
// libjpeg hands the callbacks is this whole struct.
struct Run {
    jpeg_error_mgr err;
    std::jmp_buf jump;
    Outcome outcome;
    bool reading;  // before the last scanline: running out of data there means the file is truncated
    char message[JMSG_LENGTH_MAX];
    jpeg_progress_mgr progress;
    jpeg_decompress_struct cinfo;
    uint8_t* pixels;  // malloc'd, interleaved
    uint8_t* row;     // malloc'd, one CMYK row
    int width, height, components;
};

[[noreturn]] void stop(Run* r, Outcome o) {
    r->outcome = o;
    std::longjmp(r->jump, 1);
}

void on_error(j_common_ptr c) {
    Run* r = reinterpret_cast<Run*>(c->err);
    (*c->err->format_message)(c, r->message);
    stop(r, Outcome::kLibjpegError);
}

// Warnings (level −1) are data libjpeg works around, as Pillow lets it; the one for the end of the data
// (jpeg_mem_src then feeds an end-of-image marker) is not, unless the image is already whole.
void on_message(j_common_ptr c, int level) {
    Run* r = reinterpret_cast<Run*>(c->err);
    if (level < 0 && c->err->msg_code == JWRN_JPEG_EOF && r->reading) stop(r, Outcome::kTruncated);
}

void on_progress(j_common_ptr c) {
    Run* r = reinterpret_cast<Run*>(c->err);
    if (r->cinfo.input_scan_number > kMaxJpegScans) stop(r, Outcome::kTooManyScans);
}

// Pillow's CMYK → RGB (Convert.c cmyk2rgb) of its inverted reading ("CMYK;I": every four-component JPEG is
// taken to be Adobe's inverted CMYK).
uint8_t cmyk_channel(unsigned raw_c, unsigned raw_k) {
    const unsigned c = 255u - raw_c, nk = raw_k;  // Pillow's C and 255 − K
    const unsigned t = c * nk + 128u;
    const int v = int(nk) - int(((t >> 8) + t) >> 8);
    return uint8_t(v < 0 ? 0 : v);
}

Outcome decode(Run& r, const uint8_t* bytes, size_t n, int64_t max_pixels) {
    jpeg_decompress_struct& ci = r.cinfo;
    ci.err = jpeg_std_error(&r.err);
    r.err.error_exit = on_error;
    r.err.emit_message = on_message;
    r.reading = true;
    if (setjmp(r.jump)) {
        jpeg_destroy_decompress(&ci);
        return r.outcome;
    }
    jpeg_create_decompress(&ci);
    r.progress.progress_monitor = on_progress;
    ci.progress = &r.progress;
    jpeg_mem_src(&ci, bytes, static_cast<unsigned long>(n));
    jpeg_read_header(&ci, TRUE);
    if (int64_t(ci.image_width) * ci.image_height > max_pixels) stop(&r, Outcome::kTooManyPixels);
    r.width = int(ci.image_width), r.height = int(ci.image_height);
    switch (ci.num_components) {
        case 1: ci.out_color_space = JCS_GRAYSCALE; break;
        case 3: ci.out_color_space = JCS_RGB; break;
        case 4: ci.out_color_space = JCS_CMYK; break;  // libjpeg turns YCCK into CMYK
        default: stop(&r, Outcome::kComponents);
    }
    r.components = ci.num_components;
    jpeg_start_decompress(&ci);
    const size_t w = ci.output_width, channels = r.components == 1 ? 1 : 3;
    r.pixels = static_cast<uint8_t*>(std::malloc(w * ci.output_height * channels));
    if (r.components == 4) r.row = static_cast<uint8_t*>(std::malloc(w * 4));
    if (!r.pixels || (r.components == 4 && !r.row)) stop(&r, Outcome::kNoMemory);
    while (ci.output_scanline < ci.output_height) {
        uint8_t* out = r.pixels + size_t(ci.output_scanline) * w * channels;
        JSAMPROW row = r.components == 4 ? r.row : out;
        jpeg_read_scanlines(&ci, &row, 1);
        if (r.components == 4)
            for (size_t x = 0; x < w; ++x)
                for (int c = 0; c < 3; ++c) out[3 * x + size_t(c)] = cmyk_channel(row[4 * x + size_t(c)], row[4 * x + 3]);
    }
    r.reading = false;
    jpeg_finish_decompress(&ci);
    jpeg_destroy_decompress(&ci);
    return Outcome::kOk;
}

}  // namespace

DecodedPixels decode_jpeg(const uint8_t* bytes, size_t n, int64_t max_pixels) {
    Run r{};
    const Outcome o = decode(r, bytes, n, max_pixels);
    std::free(r.row);
    DecodedPixels px;
    px.data = {r.pixels, std::free};
    switch (o) {
        case Outcome::kOk: break;
        case Outcome::kTruncated: throw std::runtime_error("truncated JPEG: the file ends before its image data does");
        case Outcome::kLibjpegError: throw std::runtime_error(std::string("corrupt JPEG (") + r.message + ")");
        case Outcome::kTooManyPixels:  // decode() stopped because this throws
            check_pixel_budget(r.cinfo.image_width, r.cinfo.image_height, max_pixels);
            throw std::logic_error("decode_jpeg: the pixel budget");
        case Outcome::kTooManyScans:
            throw std::runtime_error("corrupt JPEG: more than " + std::to_string(kMaxJpegScans) + " scans");
        case Outcome::kComponents:
            throw std::runtime_error("unsupported JPEG: " + std::to_string(r.cinfo.num_components) + " components");
        case Outcome::kNoMemory:
            throw std::runtime_error("out of memory for a " + std::to_string(r.width) + "x" + std::to_string(r.height) +
                                     " JPEG");
    }
    px.width = r.width, px.height = r.height, px.channels = r.components == 1 ? 1 : 3;
    return px;
}

}  // namespace mistral
