// prompt_cache.h — the file behind chat --prompt-cache (llama.cpp's flag): the ids of a prompt's text and
// their KV cache, so that the next run whose prompt starts the same way (system prompt, tools, first
// message) prefills only what differs. Layout, little-endian: the magic "FP4PCACH", u32 version, u32 KV
// type (fp4::Type), u32 layers, u32 ids, u64 bytes per cache row, u64 FNV-1a of the KV bytes, the i32 ids,
// then Context::read_cache(ids) bytes.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "fp4.h"

namespace common {

struct PromptCache {
    fp4::Type kv_type = fp4::Type::F32;
    int n_layer = 0;
    size_t row_bytes = 0;
    std::vector<int32_t> ids;
    std::vector<uint8_t> kv;  // Context::read_cache(ids.size())
};

// What is at a prompt-cache path: nothing, a usable cache, or an empty file or one of ours that cannot be
// used (truncated, another version, damaged bytes; `why` says which) and may be replaced.
struct PromptCacheFile {
    enum State { kMissing, kUsable, kStale } state = kMissing;
    std::string why;
    PromptCache cache;
};

// Throws std::runtime_error for a file that exists but is not a prompt cache (so that it is never
// overwritten) or cannot be read.
PromptCacheFile read_prompt_cache(const std::string& path);
// The same refusals from the first bytes alone, and a folder that does not exist: before a model loads.
void check_prompt_cache_path(const std::string& path);
// Relative (L2) difference between the keys and values the file holds for position 0 and `first`, the
// same position as a context of the same model and cache type holds it (Context::read_cache(1)).
double first_position_difference(const PromptCache& c, const std::vector<uint8_t>& first);
// Writes `path` whole (a temporary file renamed over it); throws std::runtime_error naming the path.
void write_prompt_cache(const std::string& path, const PromptCache& c);

}  // namespace common
