// prompt_cache.cpp — reading and writing the prompt-cache file (every size checked against the file's own
// length before anything is allocated), the prefix of a prompt it holds, and comparing its first position
// with a context's.
#include "prompt_cache.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <stdexcept>

#include "image.h"

namespace common {

namespace {

const char kMagic[8] = {'F', 'P', '4', 'P', 'C', 'A', 'C', 'H'};
constexpr uint32_t kVersion = 2;
constexpr size_t kHeaderBytes = 8 + 5 * 4 + 2 * 8;
constexpr size_t kImageBytes = 4 + 4 + 8;

struct Header {
    uint32_t version, kv_type, n_layer, n_ids, n_images;
    uint64_t row_bytes, checksum;
};

constexpr uint64_t kFnvBasis = 0xcbf29ce484222325ull;

uint64_t fnv1a(const void* data, size_t n, uint64_t h = kFnvBasis) {
    const auto* b = static_cast<const uint8_t*>(data);
    for (size_t i = 0; i < n; ++i) h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

// The image records as stored: u32 first, u32 count, u64 digest each.
std::vector<uint8_t> image_records(const std::vector<CachedImage>& images) {
    std::vector<uint8_t> out(kImageBytes * images.size());
    for (size_t i = 0; i < images.size(); ++i) {
        std::memcpy(&out[kImageBytes * i], &images[i].first, 4);
        std::memcpy(&out[kImageBytes * i + 4], &images[i].count, 4);
        std::memcpy(&out[kImageBytes * i + 8], &images[i].digest, 8);
    }
    return out;
}

uint64_t checksum(const std::vector<int32_t>& ids, const std::vector<uint8_t>& records,
                  const std::vector<uint8_t>& kv) {
    return fnv1a(kv.data(), kv.size(), fnv1a(records.data(), records.size(), fnv1a(ids.data(), 4 * ids.size())));
}

// Spans in token order, not overlapping, within the ids.
bool valid_images(const std::vector<CachedImage>& images, size_t n_ids) {
    uint64_t end = 0;
    for (const CachedImage& im : images) {
        if (im.count == 0 || im.first < end || uint64_t(im.first) + im.count > n_ids) return false;
        end = uint64_t(im.first) + im.count;
    }
    return true;
}

bool known_cache_type(uint32_t t) {
    return t == uint32_t(fp4::Type::F32) || t == uint32_t(fp4::Type::BF16) || t == uint32_t(fp4::Type::F8_E4M3);
}

// Opens an existing file at `path` after the refusals of check_prompt_cache_path; false when there is none.
bool open_cache(const std::string& path, bool writing, std::ifstream& in, uint64_t* size) {
    std::error_code ec;
    const auto status = std::filesystem::status(path, ec);
    if (status.type() == std::filesystem::file_type::not_found) {
        if (!writing) return false;
        const std::filesystem::path dir = std::filesystem::path(path).parent_path();
        if (!dir.empty() && !std::filesystem::is_directory(dir, ec))
            throw std::runtime_error("--prompt-cache " + path + ": folder " + dir.string() + " does not exist");
        if (::access(dir.empty() ? "." : dir.c_str(), W_OK) != 0)
            throw std::runtime_error("--prompt-cache " + path + ": cannot write in " + (dir.empty() ? "." : dir.string()));
        return false;
    }
    if (status.type() != std::filesystem::file_type::regular)
        throw std::runtime_error("--prompt-cache " + path + ": not a regular file");
    in.open(path, std::ios::binary);
    if (!in) throw std::runtime_error("--prompt-cache " + path + ": cannot open: " + std::strerror(errno));
    in.seekg(0, std::ios::end);
    *size = uint64_t(in.tellg());
    in.seekg(0);
    char magic[8] = {};
    in.read(magic, 8);
    if (*size > 0 && (*size < 8 || std::memcmp(magic, kMagic, 8) != 0))  // an empty file holds nothing to keep
        throw std::runtime_error("--prompt-cache " + path + ": the file exists and is not a prompt cache (left as it is)");
    return true;
}

}  // namespace

uint64_t image_digest(const mistral::Image& im) {
    const int32_t size[2] = {im.width, im.height};
    return fnv1a(im.pixels.data(), im.pixels.size() * sizeof(float), fnv1a(size, sizeof size));
}

size_t cached_prefix(const PromptCache& c, const std::vector<int32_t>& ids, const std::vector<CachedImage>& images) {
    size_t m = 0;
    while (m < ids.size() && m < c.ids.size() && ids[m] == c.ids[m]) ++m;
    auto cut = [&m](const std::vector<CachedImage>& mine, const std::vector<CachedImage>& other) {
        for (const CachedImage& im : mine)
            if (im.first < m &&
                (im.first + size_t(im.count) > m || std::find(other.begin(), other.end(), im) == other.end()))
                m = im.first;
    };
    cut(images, c.images);
    cut(c.images, images);
    return m;
}

void check_prompt_cache_path(const std::string& path, bool writing) {
    std::ifstream in;
    uint64_t size = 0;
    open_cache(path, writing, in, &size);
}

PromptCacheFile read_prompt_cache(const std::string& path, bool writing) {
    PromptCacheFile f;
    std::ifstream in;
    uint64_t size = 0;
    if (!open_cache(path, writing, in, &size)) return f;
    f.state = PromptCacheFile::kStale;
    if (size == 0) {
        f.why = "empty";
        return f;
    }
    Header h{};
    unsigned char raw[kHeaderBytes - 8];
    if (!in.read(reinterpret_cast<char*>(raw), 4)) {
        f.why = "truncated header";
        return f;
    }
    std::memcpy(&h.version, raw, 4);
    if (h.version != kVersion) {
        f.why = "version " + std::to_string(h.version) + ", this build reads " + std::to_string(kVersion);
        return f;
    }
    if (!in.read(reinterpret_cast<char*>(raw + 4), sizeof raw - 4)) {
        f.why = "truncated header";
        return f;
    }
    std::memcpy(&h.kv_type, raw + 4, 4);
    std::memcpy(&h.n_layer, raw + 8, 4);
    std::memcpy(&h.n_ids, raw + 12, 4);
    std::memcpy(&h.n_images, raw + 16, 4);
    std::memcpy(&h.row_bytes, raw + 20, 8);
    std::memcpy(&h.checksum, raw + 28, 8);
    // Sizes in 128 bits: a forged header can never match the file's length by overflowing.
    using u128 = unsigned __int128;
    const u128 want = u128(kHeaderBytes) + u128(4) * h.n_ids + u128(kImageBytes) * h.n_images +
                      u128(2) * h.n_layer * h.n_ids * h.row_bytes;
    if (!known_cache_type(h.kv_type) || h.n_layer == 0 || h.n_ids == 0 || h.row_bytes == 0 || want != size) {
        f.why = "damaged or truncated (" + std::to_string(size) + " bytes)";
        return f;
    }
    PromptCache& c = f.cache;
    c.kv_type = fp4::Type(h.kv_type);
    c.n_layer = int(h.n_layer);
    c.row_bytes = size_t(h.row_bytes);
    c.ids.resize(h.n_ids);
    std::vector<uint8_t> records(kImageBytes * h.n_images);
    c.kv.resize(size_t(want) - kHeaderBytes - 4 * size_t(h.n_ids) - records.size());
    in.read(reinterpret_cast<char*>(c.ids.data()), std::streamsize(4 * c.ids.size()));
    in.read(reinterpret_cast<char*>(records.data()), std::streamsize(records.size()));
    in.read(reinterpret_cast<char*>(c.kv.data()), std::streamsize(c.kv.size()));
    if (!in) throw std::runtime_error("--prompt-cache " + path + ": read error");
    if (checksum(c.ids, records, c.kv) != h.checksum) {
        f.why = "its bytes do not match their checksum";
        c = PromptCache{};
        return f;
    }
    c.images.resize(h.n_images);
    for (size_t i = 0; i < c.images.size(); ++i) {
        std::memcpy(&c.images[i].first, &records[kImageBytes * i], 4);
        std::memcpy(&c.images[i].count, &records[kImageBytes * i + 4], 4);
        std::memcpy(&c.images[i].digest, &records[kImageBytes * i + 8], 8);
    }
    if (!valid_images(c.images, c.ids.size())) {
        f.why = "its images do not lie within its prompt";
        c = PromptCache{};
        return f;
    }
    f.state = PromptCacheFile::kUsable;
    return f;
}

double first_position_difference(const PromptCache& c, const std::vector<uint8_t>& first) {
    const size_t row = c.row_bytes, stored = c.ids.size(), n = row / fp4::row_bytes(c.kv_type, 1);
    if (first.size() != 2 * size_t(c.n_layer) * row) throw std::invalid_argument("first_position_difference: size");
    std::vector<float> now(n), saved(n);
    double diff = 0, norm = 0;
    for (size_t r = 0; r < 2 * size_t(c.n_layer); ++r) {  // K then V of each layer
        fp4::load_cache_values(c.kv_type, first.data() + r * row, int64_t(n), now.data());
        fp4::load_cache_values(c.kv_type, c.kv.data() + r * stored * row, int64_t(n), saved.data());
        for (size_t i = 0; i < n; ++i) {
            const double a = now[i], b = saved[i];
            diff += (a - b) * (a - b), norm += b * b;
        }
    }
    return norm > 0 ? std::sqrt(diff / norm) : std::sqrt(diff);
}

void write_prompt_cache(const std::string& path, const PromptCache& c) {
    const std::string tmp = path + ".tmp";
    {
        std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
        const std::vector<uint8_t> records = image_records(c.images);
        const Header h{kVersion, uint32_t(c.kv_type), uint32_t(c.n_layer), uint32_t(c.ids.size()),
                       uint32_t(c.images.size()), uint64_t(c.row_bytes), checksum(c.ids, records, c.kv)};
        out.write(kMagic, 8);
        for (uint32_t v : {h.version, h.kv_type, h.n_layer, h.n_ids, h.n_images})
            out.write(reinterpret_cast<const char*>(&v), 4);
        for (uint64_t v : {h.row_bytes, h.checksum}) out.write(reinterpret_cast<const char*>(&v), 8);
        out.write(reinterpret_cast<const char*>(c.ids.data()), std::streamsize(4 * c.ids.size()));
        out.write(reinterpret_cast<const char*>(records.data()), std::streamsize(records.size()));
        out.write(reinterpret_cast<const char*>(c.kv.data()), std::streamsize(c.kv.size()));
        out.close();
        if (!out) {
            std::error_code ec;
            std::filesystem::remove(tmp, ec);
            throw std::runtime_error("--prompt-cache " + path + ": cannot write " + tmp);
        }
    }
    std::error_code ec;
    std::filesystem::rename(tmp, path, ec);
    if (ec) {
        std::filesystem::remove(tmp, ec);
        throw std::runtime_error("--prompt-cache " + path + ": cannot replace it: " + ec.message());
    }
}

}  // namespace common
