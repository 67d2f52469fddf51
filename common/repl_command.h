// repl_command.h — how the chat REPL reads one input line: nothing, a message, or a /command with its
// argument. A line starting with "//" is a message that begins with "/".
#pragma once

#include <string>

namespace common {

struct ReplLine {
    enum class Kind { Empty, Message, Command };
    Kind kind = Kind::Empty;
    std::string text;      // Message: the line as typed ("//x" loses its first '/')
    std::string cmd, arg;  // Command: "/image" and "cat.png": the rest of the line trimmed, one pair of
                           // enclosing quotes ("..." or '...') removed
};

ReplLine parse_repl_line(const std::string& line);

}  // namespace common
