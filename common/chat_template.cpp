// chat_template.cpp — conversation -> ids for Mistral's v7/v11/v13 instruct layouts, tool-call parsing, and
// Python-compatible JSON formatting.
#include "chat_template.h"

#include <algorithm>
#include <stdexcept>

#include "image.h"

namespace common {

using ojson = nlohmann::ordered_json;

const char* role_name(Role r) {
    switch (r) {
        case Role::System: return "system";
        case Role::User: return "user";
        case Role::Assistant: return "assistant";
        case Role::Tool: return "tool";
    }
    return "?";
}

Role parse_role(const std::string& s) {
    for (Role r : {Role::System, Role::User, Role::Assistant, Role::Tool})
        if (s == role_name(r)) return r;
    throw std::runtime_error("unknown message role '" + s + "' (system, user, assistant or tool)");
}

TemplateVersion parse_template_version(const std::string& v) {
    if (v == "v7") return TemplateVersion::V7;
    if (v == "v11") return TemplateVersion::V11;
    if (v == "v13") return TemplateVersion::V13;
    throw std::runtime_error("tokenizer version '" + v + "' is not supported (v7, v11 or v13)");
}

std::string py_json(const ojson& v) {
    std::string out;
    if (v.is_object()) {
        out += '{';
        bool first = true;
        for (auto it = v.begin(); it != v.end(); ++it) {
            if (!first) out += ", ";
            first = false;
            out += py_json(ojson(it.key())) + ": " + py_json(it.value());
        }
        return out + '}';
    }
    if (v.is_array()) {
        out += '[';
        for (size_t i = 0; i < v.size(); ++i) out += (i ? ", " : "") + py_json(v[i]);
        return out + ']';
    }
    return v.dump(-1, ' ', false, ojson::error_handler_t::replace);
}

// The arguments of a call as mistral-common normalises them: "" -> {}, valid JSON re-parsed, else a string.
static ojson call_arguments(const std::string& text) {
    if (text.empty()) return ojson::object();
    try {
        return parse_json(text);
    } catch (const std::exception&) {  // not JSON, or nested too deep: kept as a string
        return ojson(text);
    }
}

std::string tools_json(const ojson& tools) {
    const ojson& list = tools.is_object() && tools.contains("tools") ? tools["tools"] : tools;
    if (!list.is_array()) throw std::runtime_error("tools: expected a JSON array of functions");
    ojson out = ojson::array();
    for (const ojson& item : list) {
        if (!item.is_object()) throw std::runtime_error("tools: every entry must be a JSON object");
        const ojson& fn = item.contains("function") ? item["function"] : item;
        if (item.contains("type") && item["type"] != "function")
            throw std::runtime_error("tools: only entries of type \"function\" are supported");
        if (!fn.is_object() || !fn.contains("name") || !fn["name"].is_string())
            throw std::runtime_error("tools: a function has no \"name\"");
        const std::string name = fn["name"];
        const bool valid = !name.empty() && name.size() <= 64 && std::all_of(name.begin(), name.end(), [](char c) {
            return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
        });
        if (!valid)
            throw std::runtime_error("tools: function name '" + name + "' must match [a-zA-Z0-9_-]{1,64}");
        ojson desc = fn.value("description", ojson(""));
        ojson params = fn.contains("parameters") ? fn["parameters"] : ojson::object();
        if (!desc.is_string()) throw std::runtime_error("tools: the description of " + name + " is not a string");
        if (!params.is_object()) throw std::runtime_error("tools: the parameters of " + name + " are not an object");
        ojson f = ojson::object();
        f["name"] = name;
        f["description"] = desc;
        f["parameters"] = params;
        ojson t = ojson::object();
        t["type"] = "function";
        t["function"] = f;
        out.push_back(t);
    }
    return py_json(out);
}

std::string fill_system_prompt(const std::string& text, const std::string& name, std::time_t now) {
    auto date = [&](int days_back) {
        std::tm tm{};
        localtime_r(&now, &tm);
        tm.tm_mday -= days_back;
        tm.tm_isdst = -1;
        std::mktime(&tm);  // normalises the day of month
        char buf[16];
        std::strftime(buf, sizeof buf, "%Y-%m-%d", &tm);
        return std::string(buf);
    };
    const std::pair<std::string, std::string> fields[] = {{"{name}", name}, {"{today}", date(0)}, {"{yesterday}", date(1)}};
    std::string out;
    for (size_t i = 0; i < text.size();) {
        if (text.compare(i, 2, "{{") == 0 || text.compare(i, 2, "}}") == 0) {
            out += text[i];
            i += 2;
            continue;
        }
        bool replaced = false;
        for (const auto& [key, value] : fields)
            if (text.compare(i, key.size(), key) == 0) {
                out += value;
                i += key.size();
                replaced = true;
                break;
            }
        if (!replaced) out += text[i++];
    }
    return out;
}

ChatTemplate::ChatTemplate(const mistral::Tokenizer& tok) : ChatTemplate(tok, parse_template_version(tok.version())) {}

ChatTemplate::ChatTemplate(const mistral::Tokenizer& tok, TemplateVersion v) : tok_(tok), version_(v) {
    inst_ = tok.special_id("[INST]");
    inst_end_ = tok.special_id("[/INST]");
    tools_ = tok.special_id("[AVAILABLE_TOOLS]");
    tools_end_ = tok.special_id("[/AVAILABLE_TOOLS]");
    results_ = tok.special_id("[TOOL_RESULTS]");
    results_end_ = tok.special_id("[/TOOL_RESULTS]");
    tool_calls_ = tok.special_id("[TOOL_CALLS]");
    content_ = tok.special_id("[TOOL_CONTENT]");
    sys_ = tok.special_id("[SYSTEM_PROMPT]");
    sys_end_ = tok.special_id("[/SYSTEM_PROMPT]");
    img_ = tok.special_id("[IMG]");
    img_break_ = tok.special_id("[IMG_BREAK]");
    img_end_ = tok.special_id("[IMG_END]");
    if (auto a = tok.find_special("[ARGS]")) args_ = *a;
    if (auto c = tok.find_special("[CALL_ID]")) call_id_ = *c;
}

namespace {

void append(std::vector<int32_t>& out, const std::vector<int32_t>& more) {
    out.insert(out.end(), more.begin(), more.end());
}

std::string rstrip_spaces(std::string s) {
    while (!s.empty() && s.back() == ' ') s.pop_back();
    return s;
}

// v11/v13: consecutive tool results follow the order of the calls of the assistant message before them.
std::vector<Message> reorder_tool_results(std::vector<Message> msgs) {
    for (size_t i = 0; i < msgs.size();) {
        if (msgs[i].role != Role::Tool || i == 0 || msgs[i - 1].role != Role::Assistant) {
            ++i;
            continue;
        }
        const std::vector<ToolCall>& calls = msgs[i - 1].tool_calls;
        size_t j = i;
        while (j < msgs.size() && msgs[j].role == Role::Tool) ++j;
        auto rank = [&](const Message& m) {
            for (size_t k = 0; k < calls.size(); ++k)
                if (calls[k].id == m.tool_call_id) return k;
            return calls.size();
        };
        std::stable_sort(msgs.begin() + long(i), msgs.begin() + long(j),
                         [&](const Message& a, const Message& b) { return rank(a) < rank(b); });
        i = j;
    }
    return msgs;
}

}  // namespace

std::optional<TokenSpan> dropped_span(const Prompt& before, const Prompt& after) {
    const std::vector<int32_t>&o = before.ids, &n = after.ids;
    if (o.size() <= n.size()) return std::nullopt;
    size_t at = 0;
    while (at < n.size() && o[at] == n[at]) ++at;
    auto in_before = [&](const Prompt::Image& im, size_t shift) {
        return std::any_of(before.images.begin(), before.images.end(), [&](const Prompt::Image& b) {
            return b.first == im.first + shift && b.count == im.count && b.path == im.path;
        });
    };
    for (const Prompt::Image& im : after.images)
        if (im.first < at && (!in_before(im, 0) || im.first + im.count > at)) {
            at = im.first;
            break;
        }
    const size_t count = o.size() - n.size();
    if (!std::equal(n.begin() + long(at), n.end(), o.begin() + long(at + count))) return std::nullopt;
    for (const Prompt::Image& im : after.images)
        if (im.first >= at && !in_before(im, count)) return std::nullopt;
    return TokenSpan{at, count};
}

Prompt ChatTemplate::render(const std::vector<Message>& in, const std::string& tools) const {
    const std::vector<Message> msgs = version_ == TemplateVersion::V7 ? in : reorder_tool_results(in);
    // Groups of consecutive user (or assistant) messages count as one message.
    std::vector<std::vector<const Message*>> groups;
    for (const Message& m : msgs) {
        const bool merge = !groups.empty() && groups.back().back()->role == m.role &&
                           (m.role == Role::User || m.role == Role::Assistant);
        if (merge)
            groups.back().push_back(&m);
        else
            groups.push_back({&m});
    }
    long first_user = -1, last_user = -1;
    for (size_t g = 0; g < groups.size(); ++g)
        if (groups[g].front()->role == Role::User) {
            if (first_user < 0) first_user = long(g);
            last_user = long(g);
        }
    const long tools_at = version_ == TemplateVersion::V13 ? first_user : last_user;

    Prompt p;
    p.ids.push_back(tok_.bos());
    for (size_t g = 0; g < groups.size(); ++g) {
        const Message& m = *groups[g].front();
        switch (m.role) {
            case Role::System:
                if (!m.images.empty()) throw std::runtime_error("a system message cannot hold images");
                p.ids.push_back(sys_);
                tok_.encode(m.text, p.ids);
                p.ids.push_back(sys_end_);
                break;
            case Role::User:
                if (!tools.empty() && long(g) == tools_at) {
                    p.ids.push_back(tools_);
                    tok_.encode(tools, p.ids);
                    p.ids.push_back(tools_end_);
                }
                render_user(groups[g], p);
                break;
            case Role::Assistant: render_assistant(groups[g], p.ids); break;
            case Role::Tool: render_tool(m, p.ids); break;
        }
    }
    return p;
}

void ChatTemplate::render_user(const std::vector<const Message*>& group, Prompt& p) const {
    // Chunks in order (images of a message before its text), adjacent texts joined with "\n\n".
    struct Chunk {
        const ImageRef* image = nullptr;
        std::string text;
    };
    std::vector<Chunk> chunks;
    for (const Message* m : group) {
        for (const ImageRef& im : m->images) chunks.push_back({&im, ""});
        if (m->text.empty()) continue;
        if (!chunks.empty() && !chunks.back().image)
            chunks.back().text += "\n\n" + m->text;
        else
            chunks.push_back({nullptr, m->text});
    }
    // mistral-common's image-first rule: texts followed by one image -> the image goes first.
    if (chunks.size() >= 2 && chunks.back().image &&
        std::all_of(chunks.begin(), chunks.end() - 1, [](const Chunk& c) { return !c.image; }))
        std::rotate(chunks.begin(), chunks.end() - 1, chunks.end());

    p.ids.push_back(inst_);
    for (const Chunk& c : chunks) {
        if (!c.image) {
            tok_.encode(c.text, p.ids);
            continue;
        }
        std::vector<int32_t> lay = mistral::image_token_layout(c.image->rows, c.image->cols, img_, img_break_, img_end_);
        p.images.push_back({p.ids.size(), lay.size(), c.image->path});
        append(p.ids, lay);
    }
    p.ids.push_back(inst_end_);
}

void ChatTemplate::render_assistant(const std::vector<const Message*>& group, std::vector<int32_t>& out) const {
    const Message& first = *group.front();
    std::string text;
    std::vector<ToolCall> calls;
    for (const Message* m : group) {
        if (!m->text.empty()) text += (text.empty() ? "" : "\n\n") + m->text;
        calls.insert(calls.end(), m->tool_calls.begin(), m->tool_calls.end());
    }
    if (group.size() == 1 && calls.empty() && !first.ids.empty())
        append(out, first.ids);
    else
        tok_.encode(rstrip_spaces(text), out);

    if (!calls.empty() && version_ == TemplateVersion::V7) {
        ojson list = ojson::array();
        for (const ToolCall& c : calls) {
            ojson call = ojson::object();
            call["name"] = c.name;
            call["arguments"] = call_arguments(c.arguments);
            if (!c.id.empty() && c.id != "null") call["id"] = c.id;
            list.push_back(call);
        }
        out.push_back(tool_calls_);
        tok_.encode(py_json(list), out);
    }
    if (!calls.empty() && version_ != TemplateVersion::V7) {
        if (args_ < 0) throw std::runtime_error("the tokenizer has no [ARGS] token for tool calls");
        for (const ToolCall& c : calls) {
            out.push_back(tool_calls_);
            tok_.encode(c.name, out);
            if (version_ == TemplateVersion::V11 && !c.id.empty() && c.id != "null") {
                if (call_id_ < 0) throw std::runtime_error("the tokenizer has no [CALL_ID] token for tool calls");
                out.push_back(call_id_);
                tok_.encode(c.id, out);
            }
            out.push_back(args_);
            tok_.encode(py_json(call_arguments(c.arguments)), out);
        }
    }
    out.push_back(tok_.eos());
}

void ChatTemplate::render_tool(const Message& m, std::vector<int32_t>& out) const {
    out.push_back(results_);
    if (version_ != TemplateVersion::V13) {
        if (m.tool_call_id.empty()) throw std::runtime_error("a tool result needs the id of its tool call");
        tok_.encode(m.tool_call_id, out);
        out.push_back(content_);
    }
    tok_.encode(m.text, out);
    out.push_back(results_end_);
}

ChatTemplate::Reply ChatTemplate::parse_reply(const std::vector<int32_t>& ids) const {
    Reply r;
    auto start = std::find(ids.begin(), ids.end(), tool_calls_);
    r.content.assign(ids.begin(), start);
    if (start == ids.end()) return r;

    auto fail = [&] {
        Reply bad;
        bad.content = ids;
        bad.malformed = true;
        return bad;
    };
    auto text = [&](auto a, auto b) { return tok_.decode(std::vector<int32_t>(a, b)); };
    auto trim = [](std::string s) {
        const char* ws = " \t\r\n";
        s.erase(0, s.find_first_not_of(ws));
        s.erase(s.find_last_not_of(ws) + 1);
        return s;
    };

    if (version_ == TemplateVersion::V7) {
        // [TOOL_CALLS][{"name": ..., "arguments": {...}, "id": ...}, ...]
        ojson list;
        try {
            list = parse_json(text(start + 1, ids.end()));
        } catch (const std::exception&) {
            return fail();
        }
        if (list.is_object()) list = ojson::array({list});
        if (!list.is_array()) return fail();
        for (const ojson& c : list) {
            if (!c.is_object() || !c.contains("name") || !c["name"].is_string()) return fail();
            ToolCall call;
            call.name = c["name"];
            if (c.contains("arguments"))
                call.arguments = c["arguments"].is_string() ? c["arguments"].get<std::string>() : py_json(c["arguments"]);
            if (c.contains("id") && c["id"].is_string()) call.id = c["id"];
            r.calls.push_back(call);
        }
        return r;
    }
    // v11/v13: ([TOOL_CALLS]name[CALL_ID]id?[ARGS]json)+
    for (auto it = start; it != ids.end();) {
        auto next = std::find(it + 1, ids.end(), tool_calls_);
        auto args = std::find(it + 1, next, args_);
        if (args_ < 0 || args == next) return fail();
        auto cid = call_id_ >= 0 ? std::find(it + 1, args, call_id_) : args;
        ToolCall call;
        call.name = trim(text(it + 1, cid));
        if (cid != args) call.id = trim(text(cid + 1, args));
        call.arguments = trim(text(args + 1, next));
        if (call.name.empty()) return fail();
        r.calls.push_back(call);
        it = next;
    }
    return r;
}

}  // namespace common
