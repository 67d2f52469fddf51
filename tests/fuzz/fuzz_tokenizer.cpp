// fuzz_tokenizer.cpp — libFuzzer target: arbitrary bytes through the fixture's Tekken tokenizer.
//  * encode: ids are regular tokens, decode gives valid UTF-8, and encoding that text again gives the
//    same ids (decode only repairs what encode repaired too);
//  * streaming decode of ids made from the same bytes: every piece is valid UTF-8 and the pieces joined
//    equal decode() of the ids, with and without control tokens.
#include <cstdlib>
#include <string>
#include <string_view>

#include "fuzz_util.h"
#include "tokenizer.h"

namespace {

// Strict UTF-8 (no overlongs, surrogates or code points past U+10FFFF), written independently of the
// tokenizer's own checker.
bool valid_utf8(std::string_view s) {
    for (size_t i = 0; i < s.size();) {
        const unsigned char c = s[i];
        int n = c < 0x80 ? 0 : (c >> 5) == 6 ? 1 : (c >> 4) == 14 ? 2 : (c >> 3) == 30 ? 3 : -1;
        if (n < 0 || s.size() - i <= size_t(n)) return false;  // a bad lead byte, or cut by the end
        uint32_t cp = n == 0 ? c : c & (0x3f >> n);
        for (int k = 1; k <= n; ++k) {
            const unsigned char d = s[i + k];
            if ((d & 0xc0) != 0x80) return false;
            cp = cp << 6 | (d & 0x3f);
        }
        static const uint32_t kMin[] = {0, 0x80, 0x800, 0x10000};
        if (cp < kMin[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
        i += size_t(n) + 1;
    }
    return true;
}

void check_stream(const mistral::Tokenizer& tok, const std::vector<int32_t>& ids, bool keep_control) {
    mistral::StreamDecoder sd(tok, keep_control);
    std::string joined;
    for (int32_t id : ids) {
        const std::string piece = sd.push(id);
        if (!valid_utf8(piece)) std::abort();
        joined += piece;
    }
    const std::string rest = sd.flush();
    if (!valid_utf8(rest)) std::abort();
    if (joined + rest != tok.decode(ids, keep_control)) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static const mistral::Tokenizer tok(fuzz::source_path("tests/data/tiny-kjv/nvfp4/tekken.json"));
    const std::string_view text(reinterpret_cast<const char*>(data), size);

    const std::vector<int32_t> ids = tok.encode(text);
    for (int32_t id : ids)
        if (id < tok.num_special() || id >= tok.vocab_size()) std::abort();
    const std::string back = tok.decode(ids);
    if (!valid_utf8(back)) std::abort();
    if (valid_utf8(text) && back != text) std::abort();
    if (tok.encode(back) != ids) std::abort();

    std::vector<int32_t> stream_ids;
    for (size_t i = 0; i + 1 < size; i += 2)
        stream_ids.push_back(int32_t((data[i] | data[i + 1] << 8) % tok.vocab_size()));
    check_stream(tok, stream_ids, false);
    check_stream(tok, stream_ids, true);
    return 0;
}
