// rng.h — test support: a seeded generator of random floats and integers for op and backend tests.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

struct Rng {
    std::mt19937 gen;
    explicit Rng(uint32_t seed = 1234) : gen(seed) {}
    float uniform(float lo = -1.0f, float hi = 1.0f) { return std::uniform_real_distribution<float>(lo, hi)(gen); }
    int integer(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(gen); }
    std::vector<float> floats(size_t n, float lo = -1.0f, float hi = 1.0f) {
        std::vector<float> v(n);
        for (float& x : v) x = uniform(lo, hi);
        return v;
    }
    std::vector<int32_t> ints(size_t n, int lo, int hi) {
        std::vector<int32_t> v(n);
        for (auto& x : v) x = integer(lo, hi);
        return v;
    }
};
