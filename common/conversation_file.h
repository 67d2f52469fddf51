// conversation_file.h — a conversation as a JSON file, {"messages": [...]} in OpenAI's message shape plus
// "images" (file paths): what the chat's /save writes and /load reads.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "chat_template.h"

namespace common {

// Throws when the file cannot be written.
void save_conversation(const std::string& path, const std::vector<Message>& msgs);

// `image(path)` gives each picture a message names its layout (and may throw, e.g. for a missing file).
// Throws, naming the file, on unreadable or malformed JSON.
std::vector<Message> load_conversation(const std::string& path,
                                       const std::function<ImageRef(const std::string&)>& image);

}  // namespace common
