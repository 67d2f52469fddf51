// test_prompt_cache.cpp — the chat --prompt-cache file: a written file reads back whole (ids, image spans,
// KV bytes), every kind of damage makes it stale with a reason instead of usable, and the prefix of a new
// prompt it holds stops before an image whose span or pixels differ.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <iterator>

#include "image.h"
#include "prompt_cache.h"

using namespace common;
namespace fs = std::filesystem;

namespace {

fs::path tmp_file(const std::string& name) {
    const fs::path dir = fs::temp_directory_path() / "fp4-test-prompt-cache";
    fs::create_directories(dir);
    return dir / name;
}

// Two layers, rows of 8 bytes, ids 1 3 [IMG]×4 5: an image at tokens 2..5.
PromptCache sample() {
    PromptCache c;
    c.kv_type = fp4::Type::BF16;
    c.n_layer = 2;
    c.row_bytes = 8;
    c.ids = {1, 3, 10, 10, 10, 10, 5};
    c.images = {{2, 4, 0x1234}};
    c.kv.resize(2 * 2 * c.ids.size() * 8);
    for (size_t i = 0; i < c.kv.size(); ++i) c.kv[i] = uint8_t(i * 7 + 1);
    return c;
}

std::vector<uint8_t> bytes_of(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), {}};
}

void put(const fs::path& p, const std::vector<uint8_t>& b) {
    std::ofstream(p, std::ios::binary).write(reinterpret_cast<const char*>(b.data()), std::streamsize(b.size()));
}

}  // namespace

TEST_CASE("prompt cache: a written file reads back whole") {
    const fs::path p = tmp_file("whole.cache");
    const PromptCache c = sample();
    write_prompt_cache(p.string(), c);
    const PromptCacheFile f = read_prompt_cache(p.string());
    REQUIRE(f.state == PromptCacheFile::kUsable);
    CHECK(f.cache.kv_type == c.kv_type);
    CHECK(f.cache.n_layer == c.n_layer);
    CHECK(f.cache.row_bytes == c.row_bytes);
    CHECK(f.cache.ids == c.ids);
    CHECK(f.cache.images == c.images);
    CHECK(f.cache.kv == c.kv);
    CHECK(read_prompt_cache(tmp_file("missing.cache").string()).state == PromptCacheFile::kMissing);
}

TEST_CASE("prompt cache: damage makes a file stale, with the reason") {
    const fs::path p = tmp_file("damaged.cache");
    write_prompt_cache(p.string(), sample());
    const std::vector<uint8_t> good = bytes_of(p);
    const size_t header = 44, ids = header, images = ids + 4 * 7, kv = images + 16;
    auto why = [&](std::vector<uint8_t> b) {
        put(p, b);
        const PromptCacheFile f = read_prompt_cache(p.string());
        CHECK(f.state == PromptCacheFile::kStale);
        return f.why;
    };
    auto flip = [&](size_t at) {
        std::vector<uint8_t> b = good;
        b.at(at) ^= 0x40;
        return b;
    };
    CHECK(why(flip(ids + 4)).find("checksum") != std::string::npos);     // an id
    CHECK(why(flip(images + 8)).find("checksum") != std::string::npos);  // a digest
    CHECK(why(flip(kv + 3)).find("checksum") != std::string::npos);      // a KV byte
    CHECK(why({good.begin(), good.end() - 1}).find("truncated") != std::string::npos);
    CHECK(why({good.begin(), good.begin() + 10}).find("truncated header") != std::string::npos);
    CHECK(why({}) == "empty");
    std::vector<uint8_t> v1 = good;
    v1[8] = 1;  // the format without images
    CHECK(why(v1) == "version 1, this build reads 2");

    // An image reaching past the prompt's ids, with a checksum that matches: refused all the same.
    PromptCache c = sample();
    c.images = {{5, 4, 0x1234}};
    write_prompt_cache(p.string(), c);
    CHECK(read_prompt_cache(p.string()).why.find("images do not lie within") != std::string::npos);
    c.images = {{2, 2, 1}, {3, 2, 2}};  // overlapping
    write_prompt_cache(p.string(), c);
    CHECK(read_prompt_cache(p.string()).state == PromptCacheFile::kStale);

    // Not ours: an error, and the file is left as it is.
    put(p, {'h', 'e', 'l', 'l', 'o', ' ', 'w', 'o', 'r', 'l', 'd'});
    CHECK_THROWS_WITH_AS(read_prompt_cache(p.string()), doctest::Contains("is not a prompt cache"), std::runtime_error);
    CHECK(bytes_of(p).size() == 11);
}

TEST_CASE("prompt cache: the prefix it holds stops before an image that differs") {
    const PromptCache c = sample();  // 1 3 [IMG 2..5 #1234] 5
    const std::vector<CachedImage> same = {{2, 4, 0x1234}};
    CHECK(cached_prefix(c, c.ids, same) == 7);
    CHECK(cached_prefix(c, {1, 3, 10, 10, 10, 10, 5, 8, 9}, same) == 7);  // a longer prompt
    CHECK(cached_prefix(c, {1, 3, 10, 10, 10, 10, 6}, same) == 6);        // another last token
    CHECK(cached_prefix(c, c.ids, {{2, 4, 0x9999}}) == 2);                // other pixels
    CHECK(cached_prefix(c, c.ids, {}) == 2);                             // [IMG] ids without an image
    CHECK(cached_prefix(c, {1, 3, 10, 10}, {{2, 2, 0x1234}}) == 2);       // another layout
    CHECK(cached_prefix(c, {1, 3, 10, 10, 10}, {{2, 3, 0x1234}}) == 2);
    CHECK(cached_prefix(c, {1, 4}, {}) == 1);
    CHECK(cached_prefix(c, {2}, {}) == 0);
    CHECK(cached_prefix(PromptCache{}, c.ids, same) == 0);  // nothing read
}

TEST_CASE("prompt cache: an image's digest follows its pixels and size") {
    mistral::Image a;
    a.width = 2, a.height = 1, a.pixels = {0.f, 1.f, 2.f, 3.f, 4.f, 5.f};
    mistral::Image b = a;
    CHECK(image_digest(a) == image_digest(b));
    b.pixels[5] = 5.5f;
    CHECK(image_digest(a) != image_digest(b));
    b = a;
    b.width = 1, b.height = 2;
    CHECK(image_digest(a) != image_digest(b));
}
