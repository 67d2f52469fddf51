// test_tokenizer.cpp — the Tekken tokenizer against tiktoken's goldens, an independent BPE reference for
// long pieces, decoding, streaming, very long runs, invalid UTF-8 and load errors.
#include <doctest/doctest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <unistd.h>

#include "bpe.h"
#include "tokenizer.h"

using namespace mistral;
using nlohmann::json;

namespace {

const std::string kTekken = "tests/data/tiny-kjv/nvfp4/tekken.json";

const Tokenizer& tok() {
    static const Tokenizer t(kTekken);
    return t;
}

std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    REQUIRE_MESSAGE(in, "cannot open ", path);
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

std::string write_temp(const std::string& name, const std::string& text) {
    std::string path = (std::filesystem::temp_directory_path() / (std::to_string(getpid()) + name)).string();
    std::ofstream(path, std::ios::binary) << text;
    return path;
}

std::string tok_pattern() { return json::parse(read_file(kTekken)).at("config").at("pattern"); }

// tiktoken's merge loop written the slow, obvious way.
std::vector<int32_t> reference_bpe(const std::string& piece) {
    static const std::map<std::string, int32_t> ids = [] {
        std::map<std::string, int32_t> m;
        for (int32_t id = tok().num_special(); id < tok().vocab_size(); ++id)
            m[std::string(tok().token_bytes(id))] = id;
        return m;
    }();
    if (auto it = ids.find(piece); it != ids.end()) return {it->second};
    std::vector<std::string> parts;
    for (char c : piece) parts.emplace_back(1, c);
    for (;;) {
        size_t best = parts.size();
        int32_t best_id = INT32_MAX;
        for (size_t k = 0; k + 1 < parts.size(); ++k)
            if (auto it = ids.find(parts[k] + parts[k + 1]); it != ids.end() && it->second < best_id)
                best = k, best_id = it->second;
        if (best == parts.size()) break;
        parts[best] += parts[best + 1];
        parts.erase(parts.begin() + best + 1);
    }
    std::vector<int32_t> out;
    for (const std::string& p : parts) out.push_back(ids.at(p));
    return out;
}

// True when `s` is a sequence of whole UTF-8 characters (lead byte followed by all its continuations).
bool whole_characters(const std::string& s) {
    for (size_t i = 0; i < s.size();) {
        uint8_t c = uint8_t(s[i]);
        size_t len = c < 0x80 ? 1 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
        if ((c & 0xc0) == 0x80 || i + len > s.size()) return false;
        for (size_t k = 1; k < len; ++k)
            if ((uint8_t(s[i + k]) & 0xc0) != 0x80) return false;
        i += len;
    }
    return true;
}

std::string stream(const std::vector<int32_t>& ids, bool keep_control, std::vector<std::string>* pieces = nullptr) {
    StreamDecoder sd(tok(), keep_control);
    std::string all;
    for (int32_t id : ids) {
        std::string piece = sd.push(id);
        if (pieces) pieces->push_back(piece);
        all += piece;
    }
    return all + sd.flush();
}

}  // namespace

TEST_CASE("tekken.json fields") {
    CHECK(tok().vocab_size() == 5120);
    CHECK(tok().num_special() == 1000);
    CHECK(tok().version() == "v11");
    REQUIRE(tok().image());
    CHECK(tok().image()->patch_size == 14);
    CHECK(tok().image()->max_image_size == 1024);
    CHECK(tok().image()->spatial_merge_size == 2);
    CHECK(tok().unk() == 0);
    CHECK(tok().bos() == 1);
    CHECK(tok().eos() == 2);
    CHECK(tok().pad() == 11);
    CHECK(tok().special_id("[INST]") == 3);
    CHECK(tok().special_id("[/INST]") == 4);
    CHECK(tok().special_id("[IMG]") == 10);
    CHECK(tok().special_id("[IMG_BREAK]") == 12);
    CHECK(tok().special_id("[IMG_END]") == 13);
    CHECK(tok().special_id("[SYSTEM_PROMPT]") == 17);
    CHECK_THROWS_AS(tok().special_id("[NOPE]"), std::out_of_range);
    CHECK_FALSE(tok().find_special("[NOPE]"));
    CHECK(tok().is_control(999));
    CHECK_FALSE(tok().is_control(1000));
    CHECK(tok().token_bytes(3) == "[INST]");
    CHECK(tok().token_bytes(1032) == " ");
    CHECK(tok().token_bytes(1097) == "a");
    CHECK_THROWS_AS(tok().token_bytes(5120), std::out_of_range);
    CHECK_THROWS_AS(tok().token_bytes(-1), std::out_of_range);
    CHECK(Tokenizer("tests/data/tiny-a/nvfp4").vocab_size() == 5120);  // a model folder works too
}

TEST_CASE("golden strings match tiktoken") {
    const json g = json::parse(read_file("tests/data/tokenizer/tokenizer_golden.json"));
    REQUIRE(g.at("cases").size() == 38);
    for (const json& c : g.at("cases")) {
        const std::string text = c.at("text");
        INFO("text: ", text);
        CHECK(tok().encode(text) == c.at("ids").get<std::vector<int32_t>>());
        CHECK(tok().decode(tok().encode(text)) == text);
    }
}

TEST_CASE("golden corpus matches tiktoken") {
    const json g = json::parse(read_file("tests/data/tokenizer/tokenizer_golden.json"));
    const std::string text = read_file("tests/data/corpus/" + g.at("file").get<std::string>());
    const auto expected = g.at("file_ids").get<std::vector<int32_t>>();
    const auto ids = tok().encode(text);
    REQUIRE(expected.size() == 35543);
    CHECK(ids.size() == expected.size());
    size_t first_diff = 0;
    while (first_diff < ids.size() && first_diff < expected.size() && ids[first_diff] == expected[first_diff])
        ++first_diff;
    CHECK_MESSAGE(first_diff == expected.size(), "first difference at id index ", first_diff);
    CHECK(tok().decode(ids) == text);
}

TEST_CASE("long pieces merge as tiktoken does") {
    std::mt19937 rng(7);
    const std::string letters = "etaoinshrdlucmw";
    for (size_t len : {2, 5, 17, 64, 127, 128, 129, 130, 300, 1000, 3000}) {
        for (int rep = 0; rep < 3; ++rep) {
            std::string word;
            for (size_t i = 0; i < len; ++i) word += letters[rng() % letters.size()];
            INFO("word: ", word);
            CHECK(tok().encode(word) == reference_bpe(word));
        }
        std::string same(len, 'e');
        CHECK(tok().encode(same) == reference_bpe(same));
    }
}

TEST_CASE("regex pieces follow tiktoken's engine") {
    std::vector<std::string> bytes;
    for (int b = 0; b < 256; ++b) bytes.emplace_back(1, char(b));
    bytes.push_back("\u180e\u180e");  // rank 256: U+180E is not White_Space any more, so not \s
    std::vector<int32_t> ranks;
    BpeEncoder(tok_pattern(), bytes).encode("\u180e\u180eq", ranks);
    CHECK(ranks == std::vector<int32_t>{256, 'q'});
    ranks.clear();
    BpeEncoder("a", bytes).encode("bab", ranks);  // text no match covers is skipped
    CHECK(ranks == std::vector<int32_t>{'a'});
    ranks.clear();
    BpeEncoder("x*", bytes).encode("axx", ranks);  // empty matches yield nothing
    CHECK(ranks == std::vector<int32_t>{'x', 'x'});
    CHECK_THROWS_AS(BpeEncoder("(", bytes), std::runtime_error);
}

TEST_CASE("special-token strings are plain text") {
    const std::string text = "<s>[INST] hi [/INST]</s>[IMG][SYSTEM_PROMPT]<pad><unk>";
    const auto ids = tok().encode(text);
    for (int32_t id : ids) CHECK_FALSE(tok().is_control(id));
    CHECK(tok().decode(ids) == text);
}

TEST_CASE("decode drops or keeps control tokens") {
    const std::string text = "In the beginning";
    std::vector<int32_t> ids = tok().encode(text);
    ids.insert(ids.begin(), {tok().bos(), tok().special_id("[INST]")});
    ids.push_back(tok().eos());
    CHECK(tok().decode(ids) == text);
    CHECK(tok().decode(ids, true) == "<s>[INST]" + text + "</s>");
    CHECK(tok().decode({}) == "");
    CHECK(tok().decode({1000 + 0x80}) == "\xef\xbf\xbd");  // a lone continuation byte
    CHECK_THROWS_AS(tok().decode({5120}), std::out_of_range);
}

TEST_CASE("stream decoder never splits a character") {
    const std::string text = "naïve 東京 😀 👨‍👩‍👧 ok, Привет";
    const auto ids = tok().encode(text);
    std::vector<std::string> pieces;
    CHECK(stream(ids, false, &pieces) == text);
    size_t empty = 0;
    for (const std::string& p : pieces) {
        CHECK(whole_characters(p));
        empty += p.empty();
    }
    CHECK(empty > 0);  // some tokens only carry part of a character

    const std::vector<std::vector<int32_t>> cases = {
        {1230, 1157, 1177},     // 東 as three byte tokens
        {1230, 1, 1157, 1177},  // a control id cuts the character
        {1230, 1157},           // input ends inside a character
        {1, 1240, 1159, 2, 1152, 1128, 2},
        {1000 + 0xff, 1097, 1000 + 0x80},
    };
    for (const auto& c : cases) {
        CHECK(stream(c, false) == tok().decode(c));
        CHECK(stream(c, true) == tok().decode(c, true));
    }
    CHECK(tok().decode({1230, 1, 1157, 1177}) == "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
}

TEST_CASE("invalid UTF-8 is replaced by U+FFFD before encoding") {
    const std::string fffd = "\xef\xbf\xbd";
    CHECK(tok().encode(std::string("a\xff") + "b") == tok().encode("a" + fffd + "b"));
    CHECK(tok().encode("x\xe6\x9d") == tok().encode("x" + fffd));                      // cut at the end
    CHECK(tok().encode("\xed\xa0\x80 z") == tok().encode(fffd + fffd + fffd + " z"));  // a surrogate
    CHECK(tok().encode("\xc0\xaf") == tok().encode(fffd + fffd));                      // overlong
    CHECK(tok().encode("\xf0\x90\x80!") == tok().encode(fffd + "!"));                  // one maximal subpart
    CHECK(tok().decode(tok().encode("ok\x80")) == "ok" + fffd);
}

TEST_CASE("100,000 repeated characters encode quickly") {
    const auto t0 = std::chrono::steady_clock::now();
    for (const std::string unit : {"a", "A", " ", "\n", "1", "!", "é", "東", "😀", "\u0301", "ab", " a", "\r\n", "aA"}) {
        std::string text;
        while (text.size() < 100000) text += unit;
        INFO("unit: ", unit);
        CHECK(tok().decode(tok().encode(text)) == text);
    }
    std::string spaces(1000000, ' ');
    CHECK(tok().decode(tok().encode(spaces + "x")) == spaces + "x");
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    CHECK(s < 10.0);
    MESSAGE("long runs took ", s, " s");
}

TEST_CASE("load errors name the file") {
    auto error_of = [](const std::string& path) -> std::string {
        try {
            Tokenizer t(path);
        } catch (const std::runtime_error& e) {
            return e.what();
        }
        return "";
    };
    for (const std::string& path :
         {std::string("tests/data/nope/tekken.json"), write_temp("tok_test_truncated.json", "{\"config\": {"),
          write_temp("tok_test_empty.json", "{}"), write_temp("tok_test_bad_b64.json", [] {
              json j = json::parse(read_file(kTekken));
              j["vocab"][300]["token_bytes"] = "@@";
              return j.dump();
          }())}) {
        const std::string msg = error_of(path);
        INFO("message: ", msg);
        CHECK(msg.find(path) != std::string::npos);
        CHECK(msg.find('\n') == std::string::npos);
        std::filesystem::remove(path);
    }
    // A folder without tekken.json (quantized copies often leave it out): where the file comes from.
    const std::string missing = error_of("tests/data");
    CHECK(missing.find("tests/data has no tekken.json") != std::string::npos);
    CHECK(missing.find("copy it from the original model's folder") != std::string::npos);
    CHECK(missing.find('\n') == std::string::npos);
}

TEST_CASE("special_tokens list: legacy default before v11, required after v7") {
    json j = json::parse(read_file(kTekken));
    j.erase("special_tokens");
    j["config"]["version"] = "v11";
    const std::string v11 = write_temp("tok_test_v11_nospecial.json", j.dump());
    CHECK_THROWS_AS(Tokenizer{v11}, std::runtime_error);
    std::filesystem::remove(v11);
    j["config"]["version"] = "v7";
    const std::string v7 = write_temp("tok_test_v7.json", j.dump());
    const Tokenizer t(v7);
    std::filesystem::remove(v7);
    CHECK(t.special_id("[TOOL_CONTENT]") == 19);
    CHECK(t.token_bytes(20) == "<SPECIAL_20>");
    CHECK(t.encode("Hello") == tok().encode("Hello"));
}
