// test_chat.cpp — the chat template (v7, v11, v13: system prompt, turns, images, tools, tool calls and
// results) against hand-written id lists, tool-call parsing, JSON formatting, the SYSTEM_PROMPT.txt filler,
// the sampler, the prompt-lookup drafts with the sampler's check of them, the span a shorter prompt drops,
// and the /save-/load conversation file.
#include <doctest/doctest.h>

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <nlohmann/json.hpp>
#include <sstream>

#include "chat_template.h"
#include "conversation_file.h"
#include "ngram_draft.h"
#include "sampling.h"
#include "tokenizer.h"

using namespace common;
using ojson = nlohmann::ordered_json;
using Ids = std::vector<int32_t>;

namespace {

const std::string kTekken = "tests/data/tiny-kjv/nvfp4/tekken.json";

// Special ids of every Tekken file (mistral-format.md §2.1), plus [ARGS]/[CALL_ID] where the test files put them.
enum : int32_t {
    BOS = 1, EOS = 2, INST = 3, INST_END = 4, TOOLS = 5, TOOLS_END = 6, RESULTS = 7, RESULTS_END = 8,
    TOOL_CALLS = 9, IMG = 10, IMG_BREAK = 12, IMG_END = 13, SYS = 17, SYS_END = 18, CONTENT = 19,
    ARGS = 32, CALL_ID = 33
};

// tiny-kjv's tekken.json with the given version and [ARGS], [CALL_ID] at 32 and 33 (as in v11 files).
const mistral::Tokenizer& tok(const std::string& version) {
    static std::map<std::string, std::unique_ptr<mistral::Tokenizer>> cache;
    auto& t = cache[version];
    if (!t) {
        std::ifstream in(kTekken);
        REQUIRE(in);
        nlohmann::json j = nlohmann::json::parse(in);
        j["config"]["version"] = version;
        j["special_tokens"][ARGS]["token_str"] = "[ARGS]";
        j["special_tokens"][CALL_ID]["token_str"] = "[CALL_ID]";
        const std::string path =
            (std::filesystem::temp_directory_path() / ("test_chat_tekken_" + version + ".json")).string();
        std::ofstream(path) << j.dump();
        t = std::make_unique<mistral::Tokenizer>(path);
    }
    return *t;
}

// Concatenation of special ids and encoded text pieces.
struct Expect {
    const mistral::Tokenizer& t;
    Ids ids;
    Expect& s(std::initializer_list<int32_t> special) {
        ids.insert(ids.end(), special);
        return *this;
    }
    Expect& e(const std::string& text) {
        t.encode(text, ids);
        return *this;
    }
    Expect& image(int rows, int cols) {
        for (int r = 0; r < rows; ++r) {
            ids.insert(ids.end(), size_t(cols), IMG);
            ids.push_back(r + 1 < rows ? IMG_BREAK : IMG_END);
        }
        return *this;
    }
};

Message sys(const std::string& t) { return {Role::System, t, {}, {}, "", {}}; }
Message user(const std::string& t, std::vector<ImageRef> im = {}) { return {Role::User, t, im, {}, "", {}}; }
Message bot(const std::string& t, std::vector<ToolCall> calls = {}) { return {Role::Assistant, t, {}, calls, "", {}}; }
Message tool(const std::string& id, const std::string& t) { return {Role::Tool, t, {}, {}, id, {}}; }

const char* kWeatherTool =
    R"([{"type": "function", "function": {"name": "get_weather", "description": "Get weather", )"
    R"("parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}])";

// Temperature 1 and no top-k, top-p or min-p: draws follow the softmax of the logits.
SamplingParams untruncated(uint64_t seed) {
    SamplingParams p;
    p.temp = 1;
    p.top_k = 0;
    p.top_p = 1;
    p.min_p = 0;
    p.seed = seed;
    return p;
}

}  // namespace

TEST_CASE("v11: system prompt and turns, no spaces added") {
    const auto& t = tok("v11");
    ChatTemplate tmpl(t);
    CHECK(tmpl.version() == TemplateVersion::V11);
    Prompt p = tmpl.render({sys("You are a scribe."), user("Psalms 23"), bot("The LORD is my shepherd.  "),
                            user("And then?")});
    Ids want = Expect{t, {}}
                   .s({BOS, SYS})
                   .e("You are a scribe.")
                   .s({SYS_END, INST})
                   .e("Psalms 23")
                   .s({INST_END})
                   .e("The LORD is my shepherd.")  // trailing spaces of an answer are dropped
                   .s({EOS, INST})
                   .e("And then?")
                   .s({INST_END})
                   .ids;
    CHECK(p.ids == want);
    CHECK(p.images.empty());
}

TEST_CASE("v11: the golden psalm layout has no system prompt") {
    ChatTemplate tmpl(tok("v11"));
    CHECK(tmpl.render({user("Psalms 23")}).ids == Ids{1, 3, 2702, 1032, 1050, 1051, 4});
}

TEST_CASE("v11: images come before the text of their message, rows end in [IMG_BREAK], the last in [IMG_END]") {
    const auto& t = tok("v11");
    ChatTemplate tmpl(t);
    Prompt p = tmpl.render({user("What is this?", {{"a.png", 2, 3}, {"b.png", 1, 2}})});
    Ids want = Expect{t, {}}.s({BOS, INST}).image(2, 3).image(1, 2).e("What is this?").s({INST_END}).ids;
    CHECK(p.ids == want);
    REQUIRE(p.images.size() == 2);
    CHECK(p.images[0].first == 2);
    CHECK(p.images[0].count == 8);
    CHECK(p.images[0].path == "a.png");
    CHECK(p.images[1].first == 10);
    CHECK(p.images[1].count == 3);
}

TEST_CASE("consecutive user messages merge: texts joined by a blank line, a trailing image moves first") {
    const auto& t = tok("v11");
    ChatTemplate tmpl(t);
    Ids want = Expect{t, {}}.s({BOS, INST}).e("Look:\n\nCloser.").s({INST_END}).ids;
    CHECK(tmpl.render({user("Look:"), user("Closer.")}).ids == want);
    Ids want_img = Expect{t, {}}.s({BOS, INST}).image(1, 1).e("Look:").s({INST_END}).ids;
    CHECK(tmpl.render({user("Look:"), user("", {{"x.png", 1, 1}})}).ids == want_img);
}

TEST_CASE("an answer's generated ids are used as they are") {
    const auto& t = tok("v11");
    ChatTemplate tmpl(t);
    Message a = bot("ignored text");
    a.ids = {1500, 1600};
    Ids want = Expect{t, {}}.s({BOS, INST}).e("Hi").s({INST_END, 1500, 1600, EOS, INST}).e("Again").s({INST_END}).ids;
    CHECK(tmpl.render({user("Hi"), a, user("Again")}).ids == want);
}

TEST_CASE("v11: tools before the last user message, calls with [CALL_ID], results with the id") {
    const auto& t = tok("v11");
    ChatTemplate tmpl(t);
    const std::string tools = tools_json(ojson::parse(kWeatherTool));
    CHECK(tools == kWeatherTool);
    Prompt p = tmpl.render({sys("S"), user("Hi"), bot("Hello"), user("Weather in Paris?"),
                            bot("", {{"a1b2c3d4e", "get_weather", R"({"city":"Paris"})"}}),
                            tool("a1b2c3d4e", R"({"temp_c": 21})")},
                           tools);
    Ids want = Expect{t, {}}
                   .s({BOS, SYS})
                   .e("S")
                   .s({SYS_END, INST})
                   .e("Hi")
                   .s({INST_END})
                   .e("Hello")
                   .s({EOS, TOOLS})
                   .e(kWeatherTool)
                   .s({TOOLS_END, INST})
                   .e("Weather in Paris?")
                   .s({INST_END, TOOL_CALLS})
                   .e("get_weather")
                   .s({CALL_ID})
                   .e("a1b2c3d4e")
                   .s({ARGS})
                   .e(R"({"city": "Paris"})")  // arguments re-serialised as Python's json.dumps does
                   .s({EOS, RESULTS})
                   .e("a1b2c3d4e")
                   .s({CONTENT})
                   .e(R"({"temp_c": 21})")
                   .s({RESULTS_END})
                   .ids;
    CHECK(p.ids == want);
}

TEST_CASE("v7: tool calls as one JSON list, results with the id") {
    const auto& t = tok("v7");
    ChatTemplate tmpl(t);
    CHECK(tmpl.version() == TemplateVersion::V7);
    const std::string tools = tools_json(ojson::parse(kWeatherTool));
    Prompt p = tmpl.render({user("Hi"), bot("Hello"), user("Weather?"),
                            bot("Checking.", {{"a1b2c3d4e", "get_weather", R"({"city":"Paris"})"},
                                              {"", "get_weather", ""}}),
                            tool("a1b2c3d4e", "sunny")},
                           tools);
    Ids want = Expect{t, {}}
                   .s({BOS, INST})
                   .e("Hi")
                   .s({INST_END})
                   .e("Hello")
                   .s({EOS, TOOLS})
                   .e(kWeatherTool)
                   .s({TOOLS_END, INST})
                   .e("Weather?")
                   .s({INST_END})
                   .e("Checking.")
                   .s({TOOL_CALLS})
                   .e(R"([{"name": "get_weather", "arguments": {"city": "Paris"}, "id": "a1b2c3d4e"}, )"
                      R"({"name": "get_weather", "arguments": {}}])")
                   .s({EOS, RESULTS})
                   .e("a1b2c3d4e")
                   .s({CONTENT})
                   .e("sunny")
                   .s({RESULTS_END})
                   .ids;
    CHECK(p.ids == want);
}

TEST_CASE("v13: tools before the first user message, no call ids in calls or results") {
    const auto& t = tok("v13");
    ChatTemplate tmpl(t);
    const std::string tools = tools_json(ojson::parse(kWeatherTool));
    Prompt p = tmpl.render({sys("S"), user("Hi"), bot("Hello"), user("Weather?"),
                            bot("", {{"a1b2c3d4e", "get_weather", R"({"city": "Paris"})"}}),
                            tool("a1b2c3d4e", "sunny")},
                           tools);
    Ids want = Expect{t, {}}
                   .s({BOS, SYS})
                   .e("S")
                   .s({SYS_END, TOOLS})
                   .e(kWeatherTool)
                   .s({TOOLS_END, INST})
                   .e("Hi")
                   .s({INST_END})
                   .e("Hello")
                   .s({EOS, INST})
                   .e("Weather?")
                   .s({INST_END, TOOL_CALLS})
                   .e("get_weather")
                   .s({ARGS})
                   .e(R"({"city": "Paris"})")
                   .s({EOS, RESULTS})
                   .e("sunny")
                   .s({RESULTS_END})
                   .ids;
    CHECK(p.ids == want);
}

TEST_CASE("v11 orders tool results like the calls, v7 keeps them as given") {
    std::vector<Message> msgs = {user("Q"), bot("", {{"aaaaaaaaa", "f", "{}"}, {"bbbbbbbbb", "g", "{}"}}),
                                 tool("bbbbbbbbb", "B"), tool("aaaaaaaaa", "A")};
    auto results = [](const mistral::Tokenizer& t, bool a_first) {
        Expect e{t, {}};
        for (const char* id : a_first ? std::vector<const char*>{"aaaaaaaaa", "bbbbbbbbb"}
                                      : std::vector<const char*>{"bbbbbbbbb", "aaaaaaaaa"})
            e.s({RESULTS}).e(id).s({CONTENT}).e(id[0] == 'a' ? "A" : "B").s({RESULTS_END});
        return e.ids;
    };
    auto tail = [](const Ids& all, size_t n) { return Ids(all.end() - long(n), all.end()); };
    const Ids v11 = ChatTemplate(tok("v11")).render(msgs).ids;
    const Ids want11 = results(tok("v11"), true);
    CHECK(tail(v11, want11.size()) == want11);
    const Ids v7 = ChatTemplate(tok("v7")).render(msgs).ids;
    const Ids want7 = results(tok("v7"), false);
    CHECK(tail(v7, want7.size()) == want7);
}

TEST_CASE("unknown tokenizer versions and missing tool tokens are clear errors") {
    CHECK_THROWS_WITH_AS(parse_template_version("v3"), doctest::Contains("v3"), std::runtime_error);
    CHECK_THROWS_AS(ChatTemplate{tok("v5")}, std::runtime_error);
    mistral::Tokenizer plain(kTekken);  // tiny-kjv: v11 without [ARGS]
    ChatTemplate tmpl(plain);
    CHECK_THROWS_WITH_AS(tmpl.render({user("Q"), bot("", {{"aaaaaaaaa", "f", "{}"}})}),
                         doctest::Contains("[ARGS]"), std::runtime_error);
    CHECK_THROWS_AS(tmpl.render({user("Q"), bot("", {{"aaaaaaaaa", "f", "{}"}}), tool("", "x")}), std::runtime_error);
}

TEST_CASE("dropped_span: one span of tokens, pictures told apart by their files") {
    // <s>[INST] a1 a2 [/INST] x </s>[INST] b1 [/INST] minus its first turn: [a1 .. [INST]] after <s>[INST].
    const Prompt before{{1, 3, 50, 51, 4, 60, 2, 3, 52, 4}, {}}, after{{1, 3, 52, 4}, {}};
    auto s = dropped_span(before, after);
    REQUIRE(s);
    CHECK(s->at == 2);
    CHECK(s->count == 6);
    CHECK_FALSE(dropped_span(after, before));                          // not shorter
    CHECK_FALSE(dropped_span(before, Prompt{{1, 3, 53, 4}, {}}));      // not the rest of `before`
    // Two pictures of the same size: the same [IMG] tokens. The kept one is another file, so the span starts
    // where it does, not after the [IMG] run the two share.
    const Prompt with{{1, 3, 10, 10, 13, 50, 4, 60, 2, 3, 10, 10, 13, 52, 4}, {{2, 3, "red.png"}, {10, 3, "blue.png"}}};
    const Prompt kept{{1, 3, 10, 10, 13, 52, 4}, {{2, 3, "blue.png"}}};
    s = dropped_span(with, kept);
    REQUIRE(s);
    CHECK(s->at == 2);
    CHECK(s->count == 8);
    // The same file twice: the first copy may stay, the span then begins after it.
    const Prompt same{{1, 3, 10, 10, 13, 50, 4, 60, 2, 3, 10, 10, 13, 52, 4}, {{2, 3, "red.png"}, {10, 3, "red.png"}}};
    const Prompt same_kept{{1, 3, 10, 10, 13, 52, 4}, {{2, 3, "red.png"}}};
    s = dropped_span(same, same_kept);
    REQUIRE(s);
    CHECK(s->at == 5);
    // A kept picture that is not the file `before` has there: no span.
    CHECK_FALSE(dropped_span(with, Prompt{{1, 3, 10, 10, 13, 52, 4}, {{2, 3, "green.png"}}}));
}

TEST_CASE("tool calls are parsed from generated ids") {
    for (const char* v : {"v11", "v13"}) {
        const auto& t = tok(v);
        ChatTemplate tmpl(t);
        Ids gen = Expect{t, {}}
                      .e("Let me check.")
                      .s({TOOL_CALLS})
                      .e("get_weather")
                      .s({ARGS})
                      .e(R"({"city": "Paris"})")
                      .s({TOOL_CALLS})
                      .e("get_time")
                      .s({CALL_ID})
                      .e("x1")
                      .s({ARGS})
                      .e("{}")
                      .ids;
        ChatTemplate::Reply r = tmpl.parse_reply(gen);
        CHECK_FALSE(r.malformed);
        CHECK(t.decode(r.content) == "Let me check.");
        REQUIRE(r.calls.size() == 2);
        CHECK(r.calls[0].name == "get_weather");
        CHECK(r.calls[0].arguments == R"({"city": "Paris"})");
        CHECK(r.calls[0].id == "");
        CHECK(r.calls[1].name == "get_time");
        CHECK(r.calls[1].id == "x1");
        CHECK(r.calls[1].arguments == "{}");

        Ids bad = Expect{t, {}}.s({TOOL_CALLS}).e("no args here").ids;
        ChatTemplate::Reply rb = tmpl.parse_reply(bad);
        CHECK(rb.malformed);
        CHECK(rb.calls.empty());
        CHECK(rb.content == bad);
    }
    const auto& t7 = tok("v7");
    ChatTemplate tmpl7(t7);
    ChatTemplate::Reply r7 = tmpl7.parse_reply(
        Expect{t7, {}}.s({TOOL_CALLS}).e(R"([{"name": "f", "arguments": {"a": 1}}, {"name": "g", "arguments": "x"}])").ids);
    REQUIRE(r7.calls.size() == 2);
    CHECK(r7.calls[0].name == "f");
    CHECK(r7.calls[0].arguments == R"({"a": 1})");
    CHECK(r7.calls[1].arguments == "x");
    CHECK(tmpl7.parse_reply(Expect{t7, {}}.s({TOOL_CALLS}).e("[{oops").ids).malformed);
    CHECK(tmpl7.parse_reply(Expect{t7, {}}.e("plain").ids).calls.empty());
}

TEST_CASE("JSON is formatted as Python's json.dumps(ensure_ascii=False)") {
    ojson v = ojson::parse(R"({"b": [1, 2.5, 1.0, "x\ny\"", true, null, {}, []], "a": "été ✓", "c": {"z": 1e-05}})");
    CHECK(py_json(v) == R"({"b": [1, 2.5, 1.0, "x\ny\"", true, null, {}, []], "a": "été ✓", "c": {"z": 1e-05}})");
}

TEST_CASE("OpenAI-style tool lists are normalised") {
    ojson bare = ojson::parse(R"({"tools": [{"name": "f", "parameters": {"type": "object"}, "description": "d",
                                             "strict": true}]})");
    CHECK(tools_json(bare) ==
          R"([{"type": "function", "function": {"name": "f", "description": "d", "parameters": {"type": "object"}}}])");
    CHECK(tools_json(ojson::parse(R"([{"type": "function", "function": {"name": "g"}}])")) ==
          R"([{"type": "function", "function": {"name": "g", "description": "", "parameters": {}}}])");
    CHECK_THROWS_AS(tools_json(ojson::parse(R"([{"description": "no name"}])")), std::runtime_error);
    CHECK_THROWS_AS(tools_json(ojson::parse(R"([{"name": "bad name!"}])")), std::runtime_error);
    CHECK_THROWS_AS(tools_json(ojson::parse(R"([{"name": "f", "parameters": 3}])")), std::runtime_error);
    CHECK_THROWS_AS(tools_json(ojson::parse(R"({"name": "f"})")), std::runtime_error);
}

TEST_CASE("SYSTEM_PROMPT.txt placeholders are filled like Python's str.format") {
    std::tm tm{};
    tm.tm_year = 2024 - 1900;
    tm.tm_mon = 2;  // March
    tm.tm_mday = 1;
    tm.tm_hour = 12;
    tm.tm_isdst = -1;
    const std::time_t now = std::mktime(&tm);
    CHECK(fill_system_prompt("You are {name}. Today is {today}, yesterday was {yesterday}. {{literal}} {other}",
                             "Mistral-Small-3.2-24B-Instruct-2506", now) ==
          "You are Mistral-Small-3.2-24B-Instruct-2506. Today is 2024-03-01, yesterday was 2024-02-29. {literal} "
          "{other}");
}

TEST_CASE("sampler: temperature 0 is argmax, lowest id on ties, whatever the seed") {
    std::vector<float> logits = {0.5f, 2.0f, -1.0f, 2.0f, 1.9f};
    for (uint64_t seed : {1ull, 2ull, 99ull}) {
        SamplingParams p;
        p.temp = 0;
        p.seed = seed;
        Sampler s(p);
        CHECK(s.sample(logits.data(), int64_t(logits.size()), {}) == 1);
    }
}

TEST_CASE("sampler: the repeat penalty pushes recent tokens down") {
    std::vector<float> logits = {0.0f, 2.0f, 1.5f, -1.0f};
    SamplingParams p;
    p.temp = 0;
    p.repeat_penalty = 1.5f;
    Sampler s(p);
    CHECK(s.sample(logits.data(), 4, {1}) == 2);   // 2.0 / 1.5 < 1.5
    CHECK(s.sample(logits.data(), 4, {3}) == 1);   // others untouched
    p.repeat_last_n = 1;
    Sampler last1(p);
    CHECK(last1.sample(logits.data(), 4, {1, 3}) == 1);  // token 1 is out of the window
}

TEST_CASE("sampler: frequency and presence penalties subtract per occurrence and per token, in the window") {
    std::vector<float> logits = {2.0f, 1.9f, 1.0f};
    SamplingParams p;
    p.temp = 0;
    p.frequency_penalty = 0.04f;
    CHECK(Sampler(p).sample(logits.data(), 3, {0, 0}) == 0);     // 2.0 - 2·0.04 = 1.92 > 1.9
    CHECK(Sampler(p).sample(logits.data(), 3, {0, 0, 0}) == 1);  // 2.0 - 3·0.04 = 1.88
    CHECK_FALSE(Sampler(p).greedy());                             // the backend's argmax would not see them
    p.frequency_penalty = 0;
    p.presence_penalty = 0.15f;
    CHECK(Sampler(p).sample(logits.data(), 3, {0}) == 1);        // 1.85
    CHECK(Sampler(p).sample(logits.data(), 3, {0, 1}) == 0);     // both down by 0.15
    p.repeat_last_n = 1;
    CHECK(Sampler(p).sample(logits.data(), 3, {0, 2}) == 0);     // token 0 is out of the window
    p.presence_penalty = -1.5f;                                   // negative: recent tokens favoured
    CHECK(Sampler(p).sample(logits.data(), 3, {2}) == 2);
    CHECK(Sampler(p).describe().find("presence_penalty = -1.500") != std::string::npos);
}

TEST_CASE("sampler: draws follow the tempered distribution and are reproducible") {
    std::vector<float> logits = {std::log(0.75f), std::log(0.25f), -30.0f};
    SamplingParams p = untruncated(42);
    Sampler a(p), b(p);
    int zeros = 0;
    const int n = 20000;
    std::vector<int32_t> seq_a, seq_b;
    for (int i = 0; i < n; ++i) {
        seq_a.push_back(a.sample(logits.data(), 3, {}));
        seq_b.push_back(b.sample(logits.data(), 3, {}));
        zeros += seq_a.back() == 0;
    }
    CHECK(seq_a == seq_b);
    CHECK(double(zeros) / n == doctest::Approx(0.75).epsilon(0.03));
    p.seed = 43;
    Sampler c(p);
    std::vector<int32_t> seq_c;
    for (int i = 0; i < 64; ++i) seq_c.push_back(c.sample(logits.data(), 3, {}));
    CHECK(seq_c != std::vector<int32_t>(seq_a.begin(), seq_a.begin() + 64));

    p.temp = 0.25f;  // sharper: p0 = 0.75^4 / (0.75^4 + 0.25^4) = 0.9878
    Sampler sharp(p);
    zeros = 0;
    for (int i = 0; i < n; ++i) zeros += sharp.sample(logits.data(), 3, {}) == 0;
    CHECK(double(zeros) / n == doctest::Approx(0.9878).epsilon(0.01));
}

TEST_CASE("sampler: top-k, top-p and min-p cut the tail") {
    std::vector<float> logits = {std::log(0.5f), std::log(0.3f), std::log(0.15f), std::log(0.05f)};
    auto support = [&](SamplingParams p) {
        p.temp = 1;
        Sampler s(p);
        std::set<int32_t> seen;
        for (int i = 0; i < 4000; ++i) seen.insert(s.sample(logits.data(), 4, {}));
        return seen;
    };
    SamplingParams none;
    none.top_k = 0;
    none.top_p = 1;
    none.min_p = 0;
    CHECK(support(none) == std::set<int32_t>{0, 1, 2, 3});
    SamplingParams k = none;
    k.top_k = 2;
    CHECK(support(k) == std::set<int32_t>{0, 1});
    SamplingParams tp = none;
    tp.top_p = 0.9f;  // 0.5 + 0.3 + 0.15 reaches 0.9
    CHECK(support(tp) == std::set<int32_t>{0, 1, 2});
    SamplingParams mp = none;
    mp.min_p = 0.5f;  // keeps p >= 0.25
    CHECK(support(mp) == std::set<int32_t>{0, 1});
}

TEST_CASE("sampler: without top-k, top-p over a large vocabulary keeps exactly the nucleus") {
    std::mt19937 rng(7);
    std::normal_distribution<float> normal(0.0f, 3.0f);
    std::vector<float> logits(131072);
    for (float& l : logits) l = normal(rng);
    // The nucleus by brute force: sort everything, accumulate to 0.5.
    std::vector<int32_t> order(logits.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = int32_t(i);
    std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return logits[size_t(a)] > logits[size_t(b)]; });
    double sum = 0, acc = 0;
    for (float l : logits) sum += std::exp(double(l) - double(logits[size_t(order[0])]));
    std::set<int32_t> nucleus;
    for (int32_t id : order) {
        nucleus.insert(id);
        acc += std::exp(double(logits[size_t(id)]) - double(logits[size_t(order[0])])) / sum;
        if (acc >= 0.5) break;
    }
    REQUIRE(nucleus.size() > 10);
    SamplingParams p;
    p.temp = 1;
    p.top_k = 0;
    p.top_p = 0.5f;
    p.min_p = 0;
    Sampler s(p);
    std::set<int32_t> seen;
    for (int i = 0; i < 3000; ++i) seen.insert(s.sample(logits.data(), int64_t(logits.size()), {}));
    CHECK(std::includes(nucleus.begin(), nucleus.end(), seen.begin(), seen.end()));
    CHECK(seen.size() > nucleus.size() / 2);
}

TEST_CASE("sampler: top-k over a large vocabulary keeps exactly the k best, ties to the lowest ids") {
    std::mt19937 rng(11);
    std::uniform_real_distribution<float> low(-10.0f, 0.0f);
    std::vector<float> logits(131072);
    for (float& l : logits) l = low(rng);
    std::set<int32_t> best;  // 39 clear winners, then four tokens tied for the last places
    for (int i = 0; i < 39; ++i) {
        const int32_t id = int32_t(i * 3001 + 17);
        logits[size_t(id)] = 5.0f + 0.01f * float(i);
        best.insert(id);
    }
    for (int32_t id : {70000, 7, 120000, 3}) logits[size_t(id)] = 4.0f;
    auto support = [&](const std::vector<int32_t>& recent, float penalty) {
        SamplingParams p;
        p.temp = 100;  // close to uniform over what is kept
        p.top_k = 40;
        p.top_p = 1;
        p.min_p = 0;
        p.repeat_penalty = penalty;
        Sampler s(p);
        std::set<int32_t> seen;
        for (int i = 0; i < 4000; ++i) seen.insert(s.sample(logits.data(), int64_t(logits.size()), recent));
        return seen;
    };
    std::set<int32_t> want = best;
    want.insert(3);
    CHECK(support({}, 1.0f) == want);
    // The penalty pushes one winner (5.0 / 100) below the ties: the two lowest tied ids take the places.
    want.erase(17);
    want.insert(7);
    CHECK(support({17}, 100.0f) == want);
}

TEST_CASE("sampler: top-k finds the best among the last logits, past the last whole group of 16") {
    std::vector<float> logits(103, -1.0f);  // 6 groups of 16, then 7
    for (int32_t id : {97, 99, 102}) logits[size_t(id)] = 2.0f;
    logits[5] = 1.0f;  // the fourth best, found early: it stays when the three in the tail come in
    SamplingParams p;
    p.temp = 100, p.top_k = 4, p.top_p = 1, p.min_p = 0;
    Sampler s(p);
    std::set<int32_t> seen;
    for (int i = 0; i < 2000; ++i) seen.insert(s.sample(logits.data(), int64_t(logits.size()), {}));
    CHECK(seen == std::set<int32_t>{5, 97, 99, 102});
}

TEST_CASE("sampler: invalid settings are refused") {
    SamplingParams p;
    p.top_p = 0;
    CHECK_THROWS_AS(Sampler{p}, std::runtime_error);
    p = {};
    p.min_p = 2;
    CHECK_THROWS_AS(Sampler{p}, std::runtime_error);
    p = {};
    p.top_k = -1;
    CHECK_THROWS_AS(Sampler{p}, std::runtime_error);
    p = {};
    p.repeat_penalty = 0;
    CHECK_THROWS_AS(Sampler{p}, std::runtime_error);
    p = {};
    p.presence_penalty = INFINITY;
    CHECK_THROWS_AS(Sampler{p}, std::runtime_error);
    p = {};
    p.frequency_penalty = NAN;
    CHECK_THROWS_AS(Sampler{p}, std::runtime_error);
}

TEST_CASE("ngram drafts: the longest suffix first, its latest earlier occurrence, continued by its period") {
    auto draft = [](const Ids& tokens, int n, int lo = 2, int hi = 4) { return ngram_draft(tokens, {n, lo, hi}); };
    CHECK(draft({1, 2, 3, 4, 1, 2}, 3) == Ids{3, 4, 1});
    CHECK(draft({1, 2, 3, 4, 1, 2}, 9) == Ids{3, 4, 1, 2, 3, 4, 1, 2, 3});  // "1 2 3 4" repeats
    CHECK(draft({7, 7, 7}, 4) == Ids{7, 7, 7, 7});
    // (7, 1, 2) matches at 0 and says 9; the shorter (1, 2) would say 8, from its latest occurrence.
    CHECK(draft({7, 1, 2, 9, 3, 1, 2, 8, 7, 1, 2}, 1) == Ids{9});
    CHECK(draft({7, 1, 2, 9, 3, 1, 2, 8, 7, 1, 2}, 1, 2, 2) == Ids{8});
    CHECK(draft({1, 2, 5, 1, 2, 6, 1, 2}, 2) == Ids{6, 1});
    // Nothing matches, a suffix shorter than ngram_min, no room, too short a context.
    CHECK(draft({1, 2, 3, 4, 5}, 3).empty());
    CHECK(draft({1, 2, 3, 9, 3}, 3).empty());
    CHECK(draft({1, 2, 3, 9, 3}, 3, 1) == Ids{9, 3, 9});
    CHECK(draft({1, 2, 1, 2}, 0).empty());
    CHECK(draft({1}, 3, 1).empty());
    CHECK(draft({}, 3, 1).empty());
}

TEST_CASE("sampler: a draft is checked so that every token keeps sample()'s probability") {
    const std::vector<float> logits = {std::log(0.5f), std::log(0.3f), std::log(0.2f)};
    SamplingParams p = untruncated(7);
    Sampler s(p);
    const int n = 60000;
    for (int32_t draft : {0, 1, 2}) {
        int counts[3] = {}, accepted = 0;
        for (int i = 0; i < n; ++i) {
            const Sampler::Verdict v = s.verify(logits.data(), 3, {}, draft);
            REQUIRE(v.id >= 0);
            REQUIRE(v.id < 3);
            CHECK(v.accepted == (v.id == draft));
            ++counts[v.id];
            accepted += v.accepted;
        }
        CAPTURE(draft);
        CHECK(double(accepted) / n == doctest::Approx(std::exp(logits[size_t(draft)])).epsilon(0.03));
        for (int t = 0; t < 3; ++t) CHECK(double(counts[t]) / n == doctest::Approx(std::exp(logits[size_t(t)])).epsilon(0.03));
    }
    // A draft outside what top-k keeps is never taken; the only token kept always is.
    p.top_k = 1;
    Sampler top1(p);
    for (int i = 0; i < 100; ++i) {
        CHECK(top1.verify(logits.data(), 3, {}, 2).id == 0);
        const Sampler::Verdict v = top1.verify(logits.data(), 3, {}, 0);
        CHECK((v.id == 0 && v.accepted));
    }
    // Greedy: the argmax, accepted when it is the draft (the repeat penalty applies, as in sample()).
    p = {};
    p.temp = 0;
    Sampler greedy(p);
    CHECK((greedy.verify(logits.data(), 3, {}, 0).accepted && greedy.verify(logits.data(), 3, {}, 0).id == 0));
    CHECK((!greedy.verify(logits.data(), 3, {}, 1).accepted && greedy.verify(logits.data(), 3, {}, 1).id == 0));
    p.repeat_penalty = 4;
    Sampler penalised(p);
    CHECK(penalised.verify(logits.data(), 3, {0}, 1).id == 1);
}

TEST_CASE("conversation file: /save's JSON loads back whole, and a bad file is one clear error") {
    namespace fs = std::filesystem;
    const fs::path dir = fs::temp_directory_path() / ("fp4-test-conversation-" + std::to_string(::getpid()));
    fs::create_directories(dir);
    const std::string path = (dir / "chat.json").string();
    std::vector<Message> msgs(4);
    msgs[0].role = Role::System, msgs[0].text = "Be brief.";
    msgs[1].role = Role::User, msgs[1].text = "Which colour?", msgs[1].images = {{"a.png", 4, 4}, {"b.png", 2, 3}};
    msgs[2].role = Role::Assistant, msgs[2].tool_calls = {{"abcDEF123", "paint", "{\"colour\": \"red\"}"}};
    msgs[3].role = Role::Tool, msgs[3].text = "{\"ok\": true}", msgs[3].tool_call_id = "abcDEF123";
    save_conversation(path, msgs);
    std::vector<std::string> asked;
    const std::vector<Message> back = load_conversation(path, [&](const std::string& p) {
        asked.push_back(p);
        return ImageRef{p, 4, 4};
    });
    REQUIRE(back.size() == 4);
    CHECK(asked == std::vector<std::string>{"a.png", "b.png"});
    for (size_t i = 0; i < 4; ++i) {
        CHECK(back[i].role == msgs[i].role);
        CHECK(back[i].text == msgs[i].text);
        CHECK(back[i].tool_call_id == msgs[i].tool_call_id);
    }
    REQUIRE(back[2].tool_calls.size() == 1);
    CHECK(back[2].tool_calls[0].id == "abcDEF123");
    CHECK(back[2].tool_calls[0].name == "paint");
    CHECK(back[2].tool_calls[0].arguments == "{\"colour\": \"red\"}");

    auto error_of = [&](const std::string& text) {
        std::ofstream(path) << text;
        try {
            load_conversation(path,
                              [](const std::string& p) -> ImageRef { throw std::runtime_error("cannot read " + p); });
        } catch (const std::runtime_error& e) {
            return std::string(e.what());
        }
        return std::string("no error");
    };
    CHECK(error_of("{\"messages\": [").find("not valid JSON") != std::string::npos);
    CHECK(error_of("[1, 2]").find("expected {\"messages\": [...]}") != std::string::npos);
    CHECK(error_of("{\"messages\": [{\"content\": \"no role\"}]}").find("malformed message") != std::string::npos);
    CHECK(error_of("{\"messages\": [{\"role\": \"wizard\"}]}").find("wizard") != std::string::npos);
    CHECK(error_of("{\"messages\": [{\"role\": \"assistant\", \"tool_calls\": [{\"id\": \"x\"}]}]}")
              .find("malformed message") != std::string::npos);
    CHECK(error_of("{\"messages\": [{\"role\": \"user\", \"images\": [\"gone.png\"]}]}") == "cannot read gone.png");
    CHECK(error_of("{\"messages\": [{\"role\": \"user\", \"images\": [3]}]}").find("malformed message") !=
          std::string::npos);
    CHECK_THROWS_WITH_AS(load_conversation((dir / "missing.json").string(), {}), doctest::Contains("cannot open"),
                         std::runtime_error);
    CHECK_THROWS_AS(save_conversation((dir / "no" / "such" / "dir.json").string(), msgs), std::runtime_error);
    fs::remove_all(dir);
}
