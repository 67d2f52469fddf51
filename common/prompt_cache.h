// prompt_cache.h — the file behind chat --prompt-cache (llama.cpp's flag): the ids of a prompt, a digest of
// the pixels of each image in it, and their KV cache, so that the next run whose prompt starts the same way
// (system prompt, tools, images, first message) prefills only what differs. Layout, little-endian: the magic
// "FP4PCACH", u32 version, u32 KV type (fp4::Type), u32 layers, u32 ids, u32 images, u64 bytes per cache
// row, u64 FNV-1a of everything after the header; the i32 ids, per image u32 first token, u32 tokens and u64
// digest, then Context::read_cache(ids) bytes.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "fp4.h"

namespace mistral {
struct Image;
}

namespace common {

// An image of a prompt: the token span of its [IMG] layout and the digest of its preprocessed pixels.
struct CachedImage {
    uint32_t first = 0, count = 0;
    uint64_t digest = 0;
    bool operator==(const CachedImage& o) const { return first == o.first && count == o.count && digest == o.digest; }
};

struct PromptCache {
    fp4::Type kv_type = fp4::Type::F32;
    int n_layer = 0;
    size_t row_bytes = 0;
    std::vector<int32_t> ids;
    std::vector<CachedImage> images;  // in token order, within ids
    std::vector<uint8_t> kv;          // Context::read_cache(ids.size())
};

// FNV-1a of an image's size and preprocessed pixels: what its [IMG] rows are computed from.
uint64_t image_digest(const mistral::Image& im);

// How many of a prompt's first positions the cache holds: the common prefix of the ids, ended before the
// first image (of either) that the other does not have at the same span with the same pixels, or that the
// prefix would cut in two.
size_t cached_prefix(const PromptCache& c, const std::vector<int32_t>& ids, const std::vector<CachedImage>& images);

// What is at a prompt-cache path: nothing, a usable cache, or an empty file or one of ours that cannot be
// used (truncated, another version, damaged bytes; `why` says which) and may be replaced.
struct PromptCacheFile {
    enum State { kMissing, kUsable, kStale } state = kMissing;
    std::string why;
    PromptCache cache;
};

// Throws std::runtime_error for a file that exists but is not a prompt cache (so that it is never
// overwritten) or cannot be read, and, when `writing` it later, for a missing one in a folder that does
// not exist or cannot be written.
PromptCacheFile read_prompt_cache(const std::string& path, bool writing = true);
// The same refusals from the first bytes alone: before a model loads.
void check_prompt_cache_path(const std::string& path, bool writing = true);
// Relative (L2) difference between the keys and values the file holds for position 0 and `first`, the
// same position as a context of the same model and cache type holds it (Context::read_cache(1)).
double first_position_difference(const PromptCache& c, const std::vector<uint8_t>& first);
// Writes `path` whole (a temporary file renamed over it); throws std::runtime_error naming the path.
void write_prompt_cache(const std::string& path, const PromptCache& c);

}  // namespace common
