// cpu_features.h — which SIMD kernel set the CPU backend runs: detection at run time and the
// FP4_CPU_ISA override (scalar | avx2 | avx512 | avx512bf16) that tests and benchmarks use to force a path.
#pragma once

namespace fp4::cpu {

enum class Isa { Scalar, Avx2, Avx512, Avx512Bf16 };  // Avx512Bf16: AVX-512 plus its BF16 dot products

const char* isa_name(Isa isa);
// True when this CPU can run the kernels compiled for `isa`.
bool isa_supported(Isa isa);
// The widest supported kernel set.
Isa best_isa();
// FP4_CPU_ISA when set (throws if unknown or unsupported here), else best_isa().
Isa isa_from_env();

}  // namespace fp4::cpu
