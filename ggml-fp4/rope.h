// rope.h — RoPE on the host: the frequencies the ROPE op turns lanes by, and turning keys already stored
// with RoPE (F32, BF16 or FP8 rows of a KV cache) to another position, as a cache does when positions
// before them are dropped.
#pragma once

#include <cstdint>
#include <vector>

#include "fp4.h"

namespace fp4 {

// inv_freq[j] = 1 / theta^(2j/Dh) for j < Dh/2, in float as torch computes it.
std::vector<float> rope_inv_freq(float theta, int head_dim);

// Rows of n_head heads of head_dim values of type t, stored with RoPE at some position p, become what
// RoPE at p + delta gives: lanes (i, i + Dh/2) of every head turn by delta·inv_freq[i], computed in double
// and rounded once to t. Throws for a type a KV cache does not use.
void rope_shift_rows(Type t, void* rows, int64_t n_rows, int n_head, int head_dim, float theta, int64_t delta);

}  // namespace fp4
