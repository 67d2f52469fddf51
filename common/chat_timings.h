// chat_timings.h — what a chat turn or session spent its time on, and llama.cpp's footer lines for it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace common {

// Time spent by one turn, or summed over a session.
struct Timings {
    int64_t turns = 0;
    int64_t images = 0;
    double image_ms = 0;         // vision tower + projector
    int64_t prompt_tokens = 0;   // prefilled (tokens reused from the cache are not counted)
    double prompt_ms = 0;
    int64_t gen_runs = 0;        // decode passes: one token each, and with --draft the tokens proposed after it
    double gen_ms = 0;
    int64_t drafted = 0;         // draft tokens sent (--draft)
    int64_t accepted = 0;        // of those, the ones the model agreed with: tokens a pass gained
    int64_t sampled = 0;
    double sample_ms = 0;
    double ttft_ms = 0;          // start of the turn to its first sampled token (summed over turns)
    double total_ms = 0;
    Timings& operator+=(const Timings& o);
};

// llama.cpp-style footer lines: image encode, prompt eval, eval, sampling, time to first token, total.
std::vector<std::string> format_timings(const Timings& t);
// "[ Prompt: 251.1 t/s | Generation: 23.4 t/s ]"
std::string format_speed(const Timings& t);

}  // namespace common
