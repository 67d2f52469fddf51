// fuzz_kld.cpp — libFuzzer target: a llama.cpp `--kl-divergence-base` file through KldReader. Either a
// std::runtime_error, or a header that matches the file size exactly, tokens inside the vocabulary, and
// every chunk readable.
#include <cstdlib>
#include <stdexcept>

#include "fuzz_util.h"
#include "kld_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static fuzz::MemFile file;
    try {
        common::KldReader r(file.write(data, size));
        const common::KldHeader& h = r.header();
        if (h.file_size() != int64_t(size) || r.tokens().size() != size_t(h.n_chunk) * size_t(h.n_ctx)) std::abort();
        for (int32_t t : r.tokens())
            if (t < 0 || t >= h.n_vocab) std::abort();
        for (int c = 0; c < h.n_chunk; ++c) {
            const std::vector<uint16_t> rows = r.read_chunk(c);
            for (int64_t k = 0; k < h.rows(); ++k) (void)common::decode_row(rows.data() + k * h.row_slots()).logp(0);
        }
    } catch (const std::runtime_error&) {
    }
    return 0;
}
