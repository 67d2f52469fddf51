// cpu_features.cpp — run-time ISA detection with __builtin_cpu_supports and the FP4_CPU_ISA override.
#include "cpu/cpu_features.h"

#include <cpuid.h>

#include <cstdlib>
#include <string>

#include "fp4.h"

namespace fp4::cpu {

namespace {

// CPUID leaf 1, ECX bit 29: clang before 16 rejects "f16c" in __builtin_cpu_supports.
bool has_f16c() {
    unsigned a, b, c, d;
    return __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C);
}

}  // namespace

const char* isa_name(Isa isa) {
    switch (isa) {
        case Isa::Scalar: return "scalar";
        case Isa::Avx2: return "avx2";
        case Isa::Avx512: return "avx512";
        case Isa::Avx512Bf16: return "avx512bf16";
    }
    return "?";
}

bool isa_supported(Isa isa) {
    __builtin_cpu_init();
    switch (isa) {
        case Isa::Scalar: return true;
        case Isa::Avx2:
            return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                   has_f16c();
        case Isa::Avx512:  // the *_avx512.cpp files are built with exactly these extensions
            return isa_supported(Isa::Avx2) && __builtin_cpu_supports("avx512f") &&
                   __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
                   __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vbmi");
        case Isa::Avx512Bf16: return isa_supported(Isa::Avx512) && __builtin_cpu_supports("avx512bf16");
    }
    return false;
}

Isa best_isa() {
    if (isa_supported(Isa::Avx512Bf16)) return Isa::Avx512Bf16;
    if (isa_supported(Isa::Avx512)) return Isa::Avx512;
    if (isa_supported(Isa::Avx2)) return Isa::Avx2;
    return Isa::Scalar;
}

Isa isa_from_env() {
    const char* env = std::getenv("FP4_CPU_ISA");
    if (!env || !*env) return best_isa();
    for (Isa isa : {Isa::Scalar, Isa::Avx2, Isa::Avx512, Isa::Avx512Bf16}) {
        if (std::string(env) != isa_name(isa)) continue;
        if (!isa_supported(isa))
            throw SettingError(std::string("FP4_CPU_ISA=") + env + ": not supported by this CPU");
        return isa;
    }
    throw SettingError(std::string("FP4_CPU_ISA=") + env + ": expected scalar, avx2, avx512 or avx512bf16");
}

}  // namespace fp4::cpu
