// console.h — the REPL's terminal: line input (GNU readline with history and file-name completion when the
// build has it and stdin is a terminal; plain reads otherwise), colours only where they are wanted, and
// Ctrl-C: a first press asks the current work to stop, a second press before that was handled exits (130).
#pragma once

#include <string>

namespace common {

enum class ColorMode { Auto, On, Off };
ColorMode parse_color_mode(const std::string& s);  // "auto", "on", "off"

class Console {
public:
    explicit Console(ColorMode mode);  // installs the Ctrl-C handler
    ~Console();                        // resets colours, restores the default handler
    Console(const Console&) = delete;
    Console& operator=(const Console&) = delete;

    enum class Input { Line, Eof, Interrupt };
    // One line of input without its newline; a line ending in '\' continues on the next one. On a
    // terminal the prompt "> " is shown. Eof: Ctrl-D or end of a pipe; Interrupt: Ctrl-C at an empty line.
    Input read_line(std::string& line);

    bool interactive() const { return interactive_; }  // stdin is a terminal

    static bool interrupted();  // Ctrl-C since the last clear_interrupt()
    static void clear_interrupt();

    void answer(const std::string& text);  // stdout, flushed at once (streaming)
    void info(const std::string& line);    // stderr, in the info colour, newline added
    void error(const std::string& what);   // "error: what" on stderr, in the error colour

private:
    Input read_plain(std::string& line);
    Input read_physical_line(std::string& line, bool continuation);

    bool color_out_, color_err_, interactive_, use_readline_;
    std::string buf_;  // bytes read but not yet returned (plain input)
    bool eof_ = false;
};

}  // namespace common
