// conversation_file.cpp — /save and /load's JSON: messages with roles, text, picture paths, tool calls
// and the call ids results answer.
#include "conversation_file.h"

#include <fstream>
#include <nlohmann/json.hpp>
#include <stdexcept>

namespace common {

void save_conversation(const std::string& path, const std::vector<Message>& msgs) {
    nlohmann::ordered_json list = nlohmann::ordered_json::array();
    for (const Message& m : msgs) {
        nlohmann::ordered_json j;
        j["role"] = role_name(m.role);
        j["content"] = m.text;
        if (!m.images.empty()) {
            j["images"] = nlohmann::ordered_json::array();
            for (const ImageRef& im : m.images) j["images"].push_back(im.path);
        }
        if (!m.tool_calls.empty()) {
            j["tool_calls"] = nlohmann::ordered_json::array();
            for (const ToolCall& c : m.tool_calls)
                j["tool_calls"].push_back({{"id", c.id},
                                           {"type", "function"},
                                           {"function", {{"name", c.name}, {"arguments", c.arguments}}}});
        }
        if (m.role == Role::Tool) j["tool_call_id"] = m.tool_call_id;
        list.push_back(j);
    }
    std::ofstream f(path);
    if (!f) throw std::runtime_error("cannot write " + path);
    f << nlohmann::ordered_json{{"messages", list}}.dump(2) << '\n';
    if (!f) throw std::runtime_error("cannot write " + path);
}

std::vector<Message> load_conversation(const std::string& path,
                                       const std::function<ImageRef(const std::string&)>& image) {
    std::ifstream f(path);
    if (!f) throw std::runtime_error("cannot open " + path);
    nlohmann::ordered_json j;
    try {
        j = parse_json(f);
    } catch (const std::exception& e) {
        throw std::runtime_error(path + ": not valid JSON (" + e.what() + ")");
    }
    if (!j.is_object() || !j.contains("messages") || !j["messages"].is_array())
        throw std::runtime_error(path + ": expected {\"messages\": [...]}");
    std::vector<Message> msgs;
    try {
        for (const auto& jm : j["messages"]) {
            Message m;
            m.role = parse_role(jm.at("role").get<std::string>());
            m.text = jm.value("content", "");
            for (const auto& jp : jm.value("images", nlohmann::json::array()))
                m.images.push_back(image(jp.get<std::string>()));
            for (const auto& jc : jm.value("tool_calls", nlohmann::json::array())) {
                const auto& fn = jc.at("function");
                const auto& args = fn.value("arguments", nlohmann::json(""));
                m.tool_calls.push_back({jc.value("id", ""), fn.at("name").get<std::string>(),
                                        args.is_string() ? args.get<std::string>() : args.dump()});
            }
            m.tool_call_id = jm.value("tool_call_id", "");
            msgs.push_back(m);
        }
    } catch (const nlohmann::json::exception& e) {
        throw std::runtime_error(path + ": malformed message (" + e.what() + ")");
    }
    return msgs;
}

}  // namespace common
