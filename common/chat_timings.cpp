// chat_timings.cpp — summing turn timings and printing them as llama.cpp's footer does.
#include "chat_timings.h"

#include <algorithm>
#include <cstdio>

namespace common {

Timings& Timings::operator+=(const Timings& o) {
    turns += o.turns;
    images += o.images;
    image_ms += o.image_ms;
    prompt_tokens += o.prompt_tokens;
    prompt_ms += o.prompt_ms;
    gen_runs += o.gen_runs;
    gen_ms += o.gen_ms;
    drafted += o.drafted;
    accepted += o.accepted;
    sampled += o.sampled;
    sample_ms += o.sample_ms;
    ttft_ms += o.ttft_ms;
    total_ms += o.total_ms;
    return *this;
}

std::vector<std::string> format_timings(const Timings& t) {
    auto line = [](const char* label, double ms, int64_t n, const char* unit, bool rates) {
        char buf[200];
        const double per = ms / double(std::max<int64_t>(n, 1));
        if (rates)
            std::snprintf(buf, sizeof buf, "%20s = %10.2f ms / %5lld %-6s (%8.2f ms per token, %8.2f tokens per second)",
                          label, ms, (long long)n, unit, per, ms > 0 ? 1e3 * double(n) / ms : 0.0);
        else
            std::snprintf(buf, sizeof buf, "%20s = %10.2f ms / %5lld %s", label, ms, (long long)n, unit);
        return std::string(buf);
    };
    std::vector<std::string> out;
    if (t.images > 0) out.push_back(line("image encode time", t.image_ms, t.images, "images", false));
    out.push_back(line("prompt eval time", t.prompt_ms, t.prompt_tokens, "tokens", true));
    out.push_back(line("eval time", t.gen_ms, t.gen_runs, "runs", true));
    if (t.drafted > 0) {
        char buf[160];
        std::snprintf(buf, sizeof buf, "%20s = %5lld of %5lld tokens (%.1f%%), %.2f tokens per run", "draft accepted",
                      (long long)t.accepted, (long long)t.drafted, 100.0 * double(t.accepted) / double(t.drafted),
                      double(t.gen_runs + t.accepted) / double(std::max<int64_t>(t.gen_runs, 1)));
        out.push_back(buf);
    }
    out.push_back(line("sampling time", t.sample_ms, t.sampled, "tokens", false));
    char buf[120];
    if (t.turns > 1)
        std::snprintf(buf, sizeof buf, "%20s = %10.2f ms (mean of %lld turns)", "time to first token",
                      t.ttft_ms / double(t.turns), (long long)t.turns);
    else
        std::snprintf(buf, sizeof buf, "%20s = %10.2f ms", "time to first token", t.ttft_ms);
    out.push_back(buf);
    out.push_back(line("total time", t.total_ms, t.prompt_tokens + t.sampled, "tokens", false));
    return out;
}

std::string format_speed(const Timings& t) {
    char buf[120];
    std::snprintf(buf, sizeof buf, "[ Prompt: %.1f t/s | Generation: %.1f t/s ]",
                  t.prompt_ms > 0 ? 1e3 * double(t.prompt_tokens) / t.prompt_ms : 0.0,
                  t.gen_ms > 0 ? 1e3 * double(t.gen_runs + t.accepted) / t.gen_ms : 0.0);
    return buf;
}

}  // namespace common
