// fuzz_tekken.cpp — libFuzzer target: a tekken.json through the Tokenizer loader. Either a
// std::runtime_error, or a tokenizer that encodes and decodes a short text with every id in range.
#include <cstdlib>
#include <stdexcept>

#include "fuzz_util.h"
#include "tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static fuzz::MemFile file;
    try {
        const mistral::Tokenizer tok(file.write(data, size));
        if (tok.num_special() <= 0 || tok.vocab_size() <= tok.num_special()) std::abort();
        if (tok.image() && (tok.image()->patch_size <= 0 || tok.image()->max_image_size <= 0 ||
                            tok.image()->spatial_merge_size <= 0))
            std::abort();
        const std::vector<int32_t> ids = tok.encode("Hi, 12 w\xc3\xb6rlds!\n\xff");
        for (int32_t id : ids)
            if (id < tok.num_special() || id >= tok.vocab_size()) std::abort();
        (void)tok.decode(ids, true);
        mistral::StreamDecoder sd(tok, true);
        for (int32_t id = 0; id < tok.vocab_size() && id < 64; ++id) (void)sd.push(id);
        (void)sd.flush();
    } catch (const std::runtime_error&) {
    }
    return 0;
}
