// host_memory.h — how much host memory a process can still use: the kernel's MemAvailable, capped by the
// address-space limit (ulimit -v) minus what the process already maps.
#pragma once

#include <cstddef>

namespace fp4::cpu {

size_t host_memory_free();

}  // namespace fp4::cpu
