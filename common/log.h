// log.h — logging on stderr (results go to stdout) and a progress bar that only draws on a terminal.
#pragma once

#include <chrono>
#include <cstdarg>
#include <cstddef>
#include <string>

namespace common {

enum class LogLevel { Error = 0, Warn = 1, Info = 2, Debug = 3 };
void set_log_level(LogLevel level);
LogLevel log_level();

void log_error(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warn(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
void log_debug(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

// `[label] 42% |#####     | 6.1/14.5 GB 1.2 GB/s ETA 7s` on stderr, redrawn at most 10 times a second
// and only when stderr is a terminal; `finish` ends the line.
class ProgressBar {
public:
    ProgressBar(std::string label, double total, std::string unit = "");
    void update(double done);
    void finish();

private:
    std::string label_, unit_;
    double total_;
    bool tty_, finished_ = false;
    std::chrono::steady_clock::time_point start_, last_draw_;
};

}  // namespace common
