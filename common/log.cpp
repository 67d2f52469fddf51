// log.cpp — stderr logging levels and the terminal progress bar.
#include "log.h"

#include <unistd.h>

#include <cstdio>

namespace common {

static LogLevel g_level = LogLevel::Info;

void set_log_level(LogLevel level) { g_level = level; }
LogLevel log_level() { return g_level; }

static void vlog(LogLevel level, const char* prefix, const char* fmt, va_list ap) {
    if (level > g_level) return;
    std::fputs(prefix, stderr);
    std::vfprintf(stderr, fmt, ap);
    std::fputc('\n', stderr);
}

#define FP4_DEFINE_LOG(fn, level, prefix)          \
    void fn(const char* fmt, ...) {                \
        va_list ap;                                \
        va_start(ap, fmt);                         \
        vlog(level, prefix, fmt, ap);              \
        va_end(ap);                                \
    }
FP4_DEFINE_LOG(log_error, LogLevel::Error, "error: ")
FP4_DEFINE_LOG(log_warn, LogLevel::Warn, "warning: ")
FP4_DEFINE_LOG(log_info, LogLevel::Info, "")
FP4_DEFINE_LOG(log_debug, LogLevel::Debug, "debug: ")
#undef FP4_DEFINE_LOG

ProgressBar::ProgressBar(std::string label, double total, std::string unit)
    : label_(std::move(label)), unit_(std::move(unit)), total_(total > 0 ? total : 1),
      tty_(isatty(STDERR_FILENO) && g_level >= LogLevel::Info),
      start_(std::chrono::steady_clock::now()), last_draw_() {}

void ProgressBar::update(double done) {
    if (!tty_ || finished_) return;
    auto now = std::chrono::steady_clock::now();
    if (done < total_ && now - last_draw_ < std::chrono::milliseconds(100)) return;
    last_draw_ = now;
    double frac = done / total_ > 1 ? 1 : done / total_;
    double secs = std::chrono::duration<double>(now - start_).count();
    int filled = int(frac * 30);
    std::string bar(size_t(filled), '#');
    bar.resize(30, ' ');
    double rate = secs > 0 ? done / secs : 0;
    double eta = rate > 0 ? (total_ - done) / rate : 0;
    std::fprintf(stderr, "\r[%s] %3d%% |%s| %.1f/%.1f%s %.1f%s/s ETA %.0fs ", label_.c_str(), int(frac * 100),
                 bar.c_str(), done, total_, unit_.c_str(), rate, unit_.c_str(), eta);
    std::fflush(stderr);
}

void ProgressBar::finish() {
    if (!tty_ || finished_) return;
    update(total_);
    finished_ = true;
    std::fputc('\n', stderr);
}

}  // namespace common
