// repl_command.cpp — splitting a REPL input line into a message or a command and its argument.
#include "repl_command.h"

namespace common {

namespace {

std::string trim(const std::string& s) {
    const char* ws = " \t\r\n";
    const size_t a = s.find_first_not_of(ws);
    return a == std::string::npos ? "" : s.substr(a, s.find_last_not_of(ws) - a + 1);
}

}  // namespace

ReplLine parse_repl_line(const std::string& line) {
    ReplLine r;
    const std::string t = trim(line);
    if (t.empty()) return r;
    if (t[0] != '/' || t.compare(0, 2, "//") == 0) {
        r.kind = ReplLine::Kind::Message;
        r.text = t[0] == '/' ? line.substr(line.find('/') + 1) : line;
        return r;
    }
    r.kind = ReplLine::Kind::Command;
    const size_t sp = t.find_first_of(" \t");
    r.cmd = t.substr(0, sp);
    r.arg = sp == std::string::npos ? "" : trim(t.substr(sp));
    if (r.arg.size() >= 2 && (r.arg[0] == '"' || r.arg[0] == '\'') && r.arg.back() == r.arg[0])
        r.arg = r.arg.substr(1, r.arg.size() - 2);
    return r;
}

}  // namespace common
