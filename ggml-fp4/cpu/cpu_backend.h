// cpu_backend.h — making a CPU backend that runs a chosen kernel set; fp4::make_cpu_backend uses
// isa_from_env(), tests and benchmarks pick each set in turn.
#pragma once

#include <memory>

#include "cpu/cpu_features.h"
#include "fp4.h"

namespace fp4::cpu {

// n_threads <= 0: hardware concurrency. Throws if this CPU cannot run `isa`. bf16_activations: see
// fp4::make_cpu_backend.
std::unique_ptr<Backend> make_backend(int n_threads, Isa isa, bool bf16_activations = false);

}  // namespace fp4::cpu
