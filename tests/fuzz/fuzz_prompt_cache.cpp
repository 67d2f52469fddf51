// fuzz_prompt_cache.cpp — libFuzzer target: a chat --prompt-cache file through read_prompt_cache. Either a
// std::runtime_error (not a prompt cache), a stale file with a reason, or a usable one whose ids, images and
// KV bytes match its header, that holds its own prompt whole, compared at position 0 without reading past them.
#include <cstdlib>
#include <stdexcept>

#include "fuzz_util.h"
#include "prompt_cache.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static fuzz::MemFile file;
    try {
        const common::PromptCacheFile f = common::read_prompt_cache(file.write(data, size));
        if (f.state == common::PromptCacheFile::kStale && f.why.empty()) std::abort();
        if (f.state == common::PromptCacheFile::kUsable) {
            const common::PromptCache& c = f.cache;
            if (c.ids.empty() || c.kv.size() != 2 * size_t(c.n_layer) * c.ids.size() * c.row_bytes) std::abort();
            // A prompt of the file's own ids and images is held whole; without its images, up to the first.
            if (common::cached_prefix(c, c.ids, c.images) != c.ids.size()) std::abort();
            if (common::cached_prefix(c, c.ids, {}) != (c.images.empty() ? c.ids.size() : c.images[0].first))
                std::abort();
            if (c.kv.size() <= (size_t(1) << 24))  // the same position of a context: zeros
                (void)common::first_position_difference(c, std::vector<uint8_t>(2 * size_t(c.n_layer) * c.row_bytes));
        }
    } catch (const std::runtime_error&) {
    }
    return 0;
}
