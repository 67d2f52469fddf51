// fuzz_chat_input.cpp — libFuzzer target: what a chat user types or points the chat at, as text:
//  * a REPL line through parse_repl_line (a command's name has no blanks, its argument is trimmed);
//  * a --tools file through tools_json (std::runtime_error, or JSON text that parses again);
//  * a SYSTEM_PROMPT.txt through fill_system_prompt.
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>

#include "chat_template.h"
#include "repl_command.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string text(reinterpret_cast<const char*>(data), size);

    const common::ReplLine line = common::parse_repl_line(text);
    if (line.kind == common::ReplLine::Kind::Command) {
        if (line.cmd.empty() || line.cmd[0] != '/' || line.cmd.find_first_of(" \t") != std::string::npos) std::abort();
        const bool quoted = text.find_first_of("\"'") != std::string::npos;
        auto blank = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; };
        if (!quoted && !line.arg.empty() && (blank(line.arg.front()) || blank(line.arg.back()))) std::abort();
    }

    std::string tools;
    try {
        tools = common::tools_json(common::parse_json(text));
    } catch (const std::exception&) {  // what the chat binary catches: one "error:" line
    }
    if (!tools.empty()) (void)nlohmann::ordered_json::parse(tools);

    (void)common::fill_system_prompt(text, "Mistral-Small", 1'750'000'000);
    return 0;
}
