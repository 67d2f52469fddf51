// fuzz_safetensors.cpp — libFuzzer target: one .safetensors file (header and data) through SafeTensorFile.
// Either a clean std::runtime_error, or the accepted tensors have spans that match shape × dtype, come in
// data order without overlapping, fit in the file, and can be read.
#include <cstdlib>
#include <stdexcept>

#include "fuzz_util.h"
#include "safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static fuzz::MemFile file;
    try {
        mistral::SafeTensorFile f(file.write(data, size));
        const uint8_t* first = nullptr;
        const uint8_t* end = nullptr;
        volatile uint8_t sink = 0;
        for (const mistral::TensorView& t : f.tensors()) {
            if (t.shape.size() > 8) std::abort();
            if (uint64_t(t.numel()) * mistral::dtype_size(t.dtype) != t.nbytes) std::abort();
            if (t.nbytes == 0) continue;
            if (end && t.data < end) std::abort();  // out of order or overlapping
            if (!first) first = t.data;
            end = t.data + t.nbytes;
            sink = sink + t.data[0] + t.data[t.nbytes - 1];
        }
        if (first && size_t(end - first) > f.file_size() - 8) std::abort();
    } catch (const std::runtime_error&) {
    }
    return 0;
}
