// tokenizer.cpp — loading tekken.json, UTF-8 repair, the id space around the BPE ranks, decoding and the
// streaming decoder.
#include "tokenizer.h"

#include <array>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "bpe.h"

namespace mistral {
namespace {

using json = nlohmann::json;

// Files of version v7 and older may omit `special_tokens`; these are then the first 20 ids.
const char* const kLegacySpecials[] = {
    "<unk>", "<s>", "</s>", "[INST]", "[/INST]",
    "[AVAILABLE_TOOLS]", "[/AVAILABLE_TOOLS]", "[TOOL_RESULTS]", "[/TOOL_RESULTS]", "[TOOL_CALLS]",
    "[IMG]", "<pad>", "[IMG_BREAK]", "[IMG_END]", "[PREFIX]",
    "[MIDDLE]", "[SUFFIX]", "[SYSTEM_PROMPT]", "[/SYSTEM_PROMPT]", "[TOOL_CONTENT]",
};

constexpr std::string_view kReplacement = "\xef\xbf\xbd";  // U+FFFD

// The character at s[0, n): its length (1..4) when well formed; 0 when the input ends inside an otherwise
// valid character; minus the length of its maximal ill-formed subpart (the bytes one U+FFFD replaces).
int utf8_char(const uint8_t* s, size_t n) {
    uint8_t c = s[0], lo = 0x80, hi = 0xbf;
    int len;
    if (c < 0x80) return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        if (c == 0xe0) lo = 0xa0;  // overlong
        if (c == 0xed) hi = 0x9f;  // surrogates
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        if (c == 0xf0) lo = 0x90;  // overlong
        if (c == 0xf4) hi = 0x8f;  // beyond U+10FFFF
    } else {
        return -1;
    }
    for (int k = 1; k < len; ++k, lo = 0x80, hi = 0xbf) {
        if (size_t(k) == n) return 0;
        if (s[k] < lo || s[k] > hi) return -k;
    }
    return len;
}

bool utf8_valid(std::string_view in) {
    const auto* s = reinterpret_cast<const uint8_t*>(in.data());
    for (size_t i = 0, n = in.size(); i < n;) {
        uint64_t w;
        if (i + 8 <= n && (std::memcpy(&w, s + i, 8), (w & 0x8080808080808080ull) == 0)) {
            i += 8;
            continue;
        }
        int len = utf8_char(s + i, n - i);
        if (len <= 0) return false;
        i += len;
    }
    return true;
}

// Appends `in` to `out` with every ill-formed subpart replaced by U+FFFD. Unless `final`, a character cut
// by the end of `in` is held back. Returns the number of bytes of `in` consumed.
size_t append_utf8(std::string_view in, std::string& out, bool final) {
    const auto* s = reinterpret_cast<const uint8_t*>(in.data());
    size_t i = 0, copied = 0, n = in.size();
    while (i < n) {
        int len = s[i] < 0x80 ? 1 : utf8_char(s + i, n - i);
        if (len > 0) {
            i += len;
            continue;
        }
        if (len == 0 && !final) break;
        out.append(in.data() + copied, i - copied);
        out += kReplacement;
        i += len == 0 ? n - i : size_t(-len);
        copied = i;
    }
    out.append(in.data() + copied, i - copied);
    return i;
}

std::string base64_decode(std::string_view s) {
    static const std::array<int8_t, 256> value = [] {
        std::array<int8_t, 256> t{};
        t.fill(-1);
        const char* abc = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        for (int i = 0; i < 64; ++i) t[uint8_t(abc[i])] = int8_t(i);
        return t;
    }();
    std::string out;
    uint32_t acc = 0;
    int bits = 0;
    for (char c : s) {
        if (c == '=') break;
        int v = value[uint8_t(c)];
        if (v < 0) throw std::runtime_error("bad base64 in token_bytes \"" + std::string(s) + "\"");
        acc = ((acc << 6) | uint32_t(v)) & 0xffffff;
        if ((bits += 6) >= 8) out += char(acc >> (bits -= 8));
    }
    return out;
}

// An integer field of the file. nlohmann's get<int>() would convert a float such as 1e300 with undefined
// behaviour, so only JSON integers are taken.
int64_t integer(const json& v, const std::string& what) {
    if (!v.is_number_integer()) throw std::runtime_error(what + " must be an integer");
    return v.get<int64_t>();
}

// A field of the `image` block: a positive pixel or cell count; `def` when absent (0: required).
int image_size(const json& image, const char* key, int def) {
    const std::string what = std::string("image.") + key;
    if (!image.contains(key)) {
        if (def == 0) throw std::runtime_error(what + " is missing");
        return def;
    }
    const int64_t v = integer(image[key], what);
    if (v <= 0 || v > 65536) throw std::runtime_error(what + " = " + std::to_string(v) + " is not a positive size");
    return int(v);
}

}  // namespace

Tokenizer::Tokenizer(const std::string& path) {
    namespace fs = std::filesystem;
    std::error_code ec;
    const bool folder = fs::is_directory(path, ec);
    path_ = folder ? (fs::path(path) / "tekken.json").string() : path;
    if (folder && !fs::exists(path_, ec)) {  // a folder without it: say where the file comes from
        const bool hf = fs::exists(fs::path(path) / "tokenizer.json", ec);
        throw std::runtime_error(path + " has no tekken.json, Mistral's tokenizer file" +
                                 (hf ? std::string(" (its tokenizer.json, a conversion for transformers, is not read)")
                                     : std::string()) +
                                 ": copy it from the original model's folder (mistralai/Mistral-Small-3.2-24B-"
                                 "Instruct-2506 on Hugging Face); quantized copies often leave it out");
    }
    try {
        load(path_);
    } catch (const std::exception& e) {
        throw std::runtime_error("tokenizer " + path_ + ": " + e.what());
    }
}

Tokenizer::~Tokenizer() = default;
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;

void Tokenizer::load(const std::string& file) {
    std::ifstream in(file, std::ios::binary);
    if (!in) throw std::runtime_error(std::strerror(errno));
    const json j = json::parse(in);
    const json& cfg = j.at("config");

    version_ = cfg.at("version").get<std::string>();
    if (version_.size() < 2 || version_[0] != 'v' || version_.find_first_not_of("0123456789", 1) != std::string::npos)
        throw std::runtime_error("unknown tokenizer version \"" + version_ + "\"");
    const int64_t n_special = integer(cfg.at("default_num_special_tokens"), "default_num_special_tokens");
    const int64_t vocab_size = integer(cfg.at("default_vocab_size"), "default_vocab_size");
    const json& vocab = j.at("vocab");
    if (n_special <= 0 || n_special > (1 << 20) || vocab_size < n_special + 256 || vocab_size > INT32_MAX ||
        vocab_size - n_special > int64_t(vocab.size()))
        throw std::runtime_error("default_vocab_size " + std::to_string(vocab_size) + " does not fit " +
                                 std::to_string(n_special) + " special and " + std::to_string(vocab.size()) +
                                 " regular tokens");
    vocab_size_ = int32_t(vocab_size);
    const int64_t n_regular = vocab_size - n_special;

    std::vector<std::string> tokens(n_regular);
    for (int64_t r = 0; r < n_regular; ++r) {
        const json& t = vocab[r];
        if (integer(t.at("rank"), "vocab[" + std::to_string(r) + "].rank") != r)
            throw std::runtime_error("vocab[" + std::to_string(r) + "] has another rank");
        tokens[r] = base64_decode(t.at("token_bytes").get_ref<const std::string&>());
        if (r < 256 && tokens[r] != std::string(1, char(r)))
            throw std::runtime_error("vocab[" + std::to_string(r) + "] is not the single byte " + std::to_string(r));
    }

    const auto specials = j.find("special_tokens");
    if (specials == j.end() || specials->is_null()) {
        if (std::stoi(version_.substr(1)) > 7) throw std::runtime_error("special_tokens missing (required after v7)");
        specials_.assign(std::begin(kLegacySpecials), std::end(kLegacySpecials));
    } else {
        for (const json& t : *specials) {
            if (integer(t.at("rank"), "special_tokens[" + std::to_string(specials_.size()) + "].rank") !=
                int64_t(specials_.size()))
                throw std::runtime_error("special_tokens[" + std::to_string(specials_.size()) + "] has another rank");
            specials_.push_back(t.at("token_str").get<std::string>());
        }
    }
    if (int64_t(specials_.size()) > n_special)
        throw std::runtime_error(std::to_string(specials_.size()) +
                                 " special tokens exceed default_num_special_tokens");
    for (int i = int(specials_.size()); i < n_special; ++i) specials_.push_back("<SPECIAL_" + std::to_string(i) + ">");
    for (int32_t id = 0; id < n_special; ++id)
        if (!special_ids_.emplace(specials_[id], id).second)
            throw std::runtime_error("special token " + specials_[id] + " appears twice");
    unk_ = special_id("<unk>");
    bos_ = special_id("<s>");
    eos_ = special_id("</s>");
    pad_ = special_id("<pad>");

    auto image = j.find("image");
    if (image == j.end() || image->is_null()) image = j.find("multimodal");
    if (image != j.end() && !image->is_null())
        image_ = TekkenImageConfig{image_size(*image, "image_patch_size", 0), image_size(*image, "max_image_size", 0),
                                   image_size(*image, "spatial_merge_size", 1)};

    bpe_ = std::make_unique<BpeEncoder>(cfg.at("pattern").get<std::string>(), std::move(tokens));
}

void Tokenizer::encode(std::string_view text, std::vector<int32_t>& out) const {
    const size_t first = out.size();
    if (utf8_valid(text)) {
        bpe_->encode(text, out);
    } else {
        std::string repaired;
        append_utf8(text, repaired, true);
        bpe_->encode(repaired, out);
    }
    for (size_t i = first; i < out.size(); ++i) out[i] += num_special();
}

std::vector<int32_t> Tokenizer::encode(std::string_view text) const {
    std::vector<int32_t> ids;
    ids.reserve(text.size() / 3 + 1);
    encode(text, ids);
    return ids;
}

std::string_view Tokenizer::token_bytes(int32_t id) const {
    if (id < 0 || id >= vocab_size_)
        throw std::out_of_range("token id " + std::to_string(id) + " outside [0, " + std::to_string(vocab_size_) + ")");
    return is_control(id) ? std::string_view(specials_[id]) : bpe_->bytes(id - num_special());
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids, bool keep_control) const {
    std::string raw, out;
    for (int32_t id : ids) {
        std::string_view bytes = token_bytes(id);
        if (!is_control(id)) {
            raw += bytes;
            continue;
        }
        append_utf8(raw, out, true);
        raw.clear();
        if (keep_control) out += bytes;
    }
    append_utf8(raw, out, true);
    return out;
}

std::optional<int32_t> Tokenizer::find_special(std::string_view name) const {
    auto it = special_ids_.find(std::string(name));
    if (it == special_ids_.end()) return std::nullopt;
    return it->second;
}

int32_t Tokenizer::special_id(std::string_view name) const {
    if (auto id = find_special(name)) return *id;
    throw std::out_of_range("unknown special token " + std::string(name));
}

std::string StreamDecoder::push(int32_t id) {
    std::string out;
    std::string_view bytes = tok_.token_bytes(id);
    if (tok_.is_control(id)) {
        append_utf8(pending_, out, true);
        pending_.clear();
        if (keep_control_) out += bytes;
    } else {
        pending_ += bytes;
        pending_.erase(0, append_utf8(pending_, out, false));
    }
    return out;
}

std::string StreamDecoder::flush() {
    std::string out;
    append_utf8(pending_, out, true);
    pending_.clear();
    return out;
}

}  // namespace mistral
