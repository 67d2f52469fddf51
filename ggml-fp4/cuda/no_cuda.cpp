// no_cuda.cpp — the CUDA entry points of a build configured with -DFP4_CUDA=OFF.
#include "fp4.h"

namespace fp4 {

bool cuda_available() { return false; }

std::unique_ptr<Backend> make_cuda_backend(std::string* why) {
    if (why) *why = "this build has no CUDA backend (configured with -DFP4_CUDA=OFF)";
    return nullptr;
}

}  // namespace fp4
