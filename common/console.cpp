// console.cpp — line input (readline's callback interface, so that Ctrl-C can clear or end the line), the
// SIGINT handler, and coloured stdout/stderr output.
#include "console.h"

#include <sys/select.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>

#ifdef FP4_HAS_READLINE
#include <readline/history.h>
#include <readline/readline.h>
#endif

namespace common {

namespace {

volatile std::sig_atomic_t g_interrupt = 0;

const char* kReset = "\033[0m";
const char* kPrompt = "\033[33m";     // yellow
const char* kUser = "\033[1;32m";     // bold green
const char* kError = "\033[1;31m";    // bold red
const char* kInfo = "\033[35m";       // magenta

extern "C" void on_sigint(int) {
    if (g_interrupt) {  // a second Ctrl-C before the first was handled: leave now
        const char msg[] = "\033[0m\n";
        ssize_t r = write(STDOUT_FILENO, msg, sizeof msg - 1);
        (void)r;
        _exit(130);
    }
    g_interrupt = 1;
}

#ifdef FP4_HAS_READLINE
std::string* g_rl_line = nullptr;
bool g_rl_done = false, g_rl_eof = false;

extern "C" void on_rl_line(char* s) {
    if (!s) {
        g_rl_eof = true;
    } else {
        *g_rl_line = s;
        std::free(s);
    }
    g_rl_done = true;
    rl_callback_handler_remove();
}
#endif

}  // namespace

ColorMode parse_color_mode(const std::string& s) {
    if (s == "auto") return ColorMode::Auto;
    if (s == "on") return ColorMode::On;
    if (s == "off") return ColorMode::Off;
    throw std::runtime_error("--color must be auto, on or off");
}

Console::Console(ColorMode mode) {
    const bool out_tty = isatty(STDOUT_FILENO), err_tty = isatty(STDERR_FILENO);
    color_out_ = mode == ColorMode::On || (mode == ColorMode::Auto && out_tty);
    color_err_ = mode == ColorMode::On || (mode == ColorMode::Auto && err_tty);
    interactive_ = isatty(STDIN_FILENO);
#ifdef FP4_HAS_READLINE
    use_readline_ = interactive_ && out_tty;
    rl_catch_signals = 0;
    rl_catch_sigwinch = 0;
#else
    use_readline_ = false;
#endif
    struct sigaction sa = {};
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;  // no SA_RESTART: a blocked read returns EINTR
    sigaction(SIGINT, &sa, nullptr);
}

Console::~Console() {
    if (color_out_ && interactive_) std::fputs(kReset, stdout);
    std::fflush(stdout);
    std::signal(SIGINT, SIG_DFL);
}

bool Console::interrupted() { return g_interrupt != 0; }
void Console::clear_interrupt() { g_interrupt = 0; }

void Console::answer(const std::string& text) {
    std::fwrite(text.data(), 1, text.size(), stdout);
    std::fflush(stdout);
}

void Console::info(const std::string& line) {
    std::fprintf(stderr, "%s%s%s\n", color_err_ ? kInfo : "", line.c_str(), color_err_ ? kReset : "");
}

void Console::error(const std::string& what) {
    std::fprintf(stderr, "%serror: %s%s\n", color_err_ ? kError : "", what.c_str(), color_err_ ? kReset : "");
}

Console::Input Console::read_plain(std::string& line) {
    for (;;) {
        const size_t nl = buf_.find('\n');
        if (nl != std::string::npos) {
            line = buf_.substr(0, nl);
            buf_.erase(0, nl + 1);
            if (!line.empty() && line.back() == '\r') line.pop_back();
            return Input::Line;
        }
        if (eof_) {
            if (buf_.empty()) return Input::Eof;
            line.swap(buf_);
            buf_.clear();
            return Input::Line;
        }
        char tmp[4096];
        const ssize_t n = read(STDIN_FILENO, tmp, sizeof tmp);
        if (n > 0) {
            buf_.append(tmp, size_t(n));
        } else if (n < 0 && errno == EINTR) {
            if (g_interrupt) {
                g_interrupt = 0;
                buf_.clear();
                return Input::Interrupt;
            }
        } else {
            eof_ = true;
        }
    }
}

Console::Input Console::read_physical_line(std::string& line, bool continuation) {
    const std::string marker = continuation ? ". " : "> ";
#ifdef FP4_HAS_READLINE
    if (use_readline_) {
        // \001 and \002 tell readline the escapes take no room on screen.
        const std::string prompt = color_out_ ? std::string("\001") + kPrompt + "\002" + marker + "\001" + kReset +
                                                    kUser + "\002"
                                              : marker;
        g_rl_line = &line;
        g_rl_done = g_rl_eof = false;
        line.clear();
        rl_callback_handler_install(prompt.c_str(), on_rl_line);
        while (!g_rl_done) {
            fd_set fds;
            FD_ZERO(&fds);
            FD_SET(STDIN_FILENO, &fds);
            if (select(STDIN_FILENO + 1, &fds, nullptr, nullptr, nullptr) < 0) {
                if (errno != EINTR || !g_interrupt) continue;
                g_interrupt = 0;
                if (rl_end == 0) {  // Ctrl-C at an empty line
                    rl_callback_handler_remove();
                    std::fputs(color_out_ ? "\033[0m\n" : "\n", stdout);
                    return Input::Interrupt;
                }
                rl_replace_line("", 0);  // Ctrl-C with text typed: start the line again
                std::fputs("^C\n", stdout);
                rl_on_new_line();
                rl_redisplay();
                continue;
            }
            rl_callback_read_char();
        }
        if (color_out_) std::fputs(kReset, stdout);
        std::fflush(stdout);
        if (g_rl_eof) {
            std::fputs("\n", stdout);
            return Input::Eof;
        }
        if (!line.empty()) add_history(line.c_str());
        return Input::Line;
    }
#endif
    if (interactive_) {
        if (color_out_)
            std::printf("%s%s%s%s", kPrompt, marker.c_str(), kReset, kUser);
        else
            std::fputs(marker.c_str(), stdout);
        std::fflush(stdout);
    }
    const Input r = read_plain(line);
    if (interactive_ && color_out_) std::fputs(kReset, stdout);
    if (interactive_ && r != Input::Line) std::fputs("\n", stdout);
    std::fflush(stdout);
    return r;
}

Console::Input Console::read_line(std::string& line) {
    line.clear();
    std::string part;
    bool continuation = false;
    for (;;) {
        const Input r = read_physical_line(part, continuation);
        if (r == Input::Interrupt && continuation) {  // Ctrl-C drops the lines typed so far
            line.clear();
            continuation = false;
            continue;
        }
        if (r != Input::Line) return continuation && r == Input::Eof ? Input::Line : r;
        const bool more = !part.empty() && part.back() == '\\';
        if (more) part.pop_back();
        line += part;
        if (!more) return Input::Line;
        line += '\n';
        continuation = true;
    }
}

}  // namespace common
