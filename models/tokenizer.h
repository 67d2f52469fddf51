// tokenizer.h — the Tekken tokenizer of tekken.json (tiktoken-style byte BPE behind Mistral's special ids)
// and a streaming detokenizer.
//
// Behaviour, matching mistral-common's Tekkenizer:
//  * ids 0 .. num_special-1 are the special (control) tokens; regular rank r is id r + num_special; ranks at
//    or beyond default_vocab_size - num_special are dropped.
//  * encode() treats its input as plain text: "[INST]" or "<s>" typed by a user become ordinary byte-BPE
//    tokens, never control ids (those are inserted by the chat template).
//  * Invalid UTF-8 in encode() input is first replaced by U+FFFD, one per maximal ill-formed subsequence
//    (as Python's bytes.decode(errors="replace") does), so the ids are those mistral-common gives for that
//    decoded string.
//  * decode() joins the bytes of regular tokens and replaces ill-formed UTF-8 by U+FFFD the same way, so its
//    output is always valid UTF-8.
//  * Pre-tokenization runs the file's own regex with PCRE2, \s read as White_Space as tiktoken reads it.
//    PCRE2 here has Unicode 14 tables: letters assigned later may split differently from tiktoken's.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace mistral {

class BpeEncoder;

// The `image` block of tekken.json (or its deprecated name `multimodal`).
struct TekkenImageConfig {
    int patch_size = 0;          // image_patch_size, pixels per patch side
    int max_image_size = 0;      // longest image side after the downscale rule
    int spatial_merge_size = 1;  // patches merged per side into one [IMG] token
};

class Tokenizer {
public:
    // `path`: tekken.json itself or a model folder holding it. Throws std::runtime_error naming the file
    // when it is missing or malformed.
    explicit Tokenizer(const std::string& path);
    ~Tokenizer();
    Tokenizer(Tokenizer&&) noexcept;
    Tokenizer& operator=(Tokenizer&&) noexcept;

    std::vector<int32_t> encode(std::string_view text) const;
    void encode(std::string_view text, std::vector<int32_t>& out) const;  // appends to `out`

    // Regular tokens as text; special ones dropped, or written as their names with keep_control.
    // Throws std::out_of_range for an id outside [0, vocab_size()).
    std::string decode(const std::vector<int32_t>& ids, bool keep_control = false) const;

    int32_t vocab_size() const { return vocab_size_; }  // specials + regular tokens, the model's n_vocab
    int32_t num_special() const { return int32_t(specials_.size()); }
    bool is_control(int32_t id) const { return id >= 0 && id < num_special(); }
    // Raw bytes of a regular token, or the name of a special one ("[INST]", "<SPECIAL_40>").
    std::string_view token_bytes(int32_t id) const;

    int32_t special_id(std::string_view name) const;  // throws std::out_of_range when unknown
    std::optional<int32_t> find_special(std::string_view name) const;
    int32_t unk() const { return unk_; }
    int32_t bos() const { return bos_; }
    int32_t eos() const { return eos_; }
    int32_t pad() const { return pad_; }

    const std::string& version() const { return version_; }  // instruct format, e.g. "v11"
    const std::optional<TekkenImageConfig>& image() const { return image_; }
    const std::string& path() const { return path_; }

private:
    void load(const std::string& file);

    std::string path_, version_;
    std::unique_ptr<BpeEncoder> bpe_;
    std::vector<std::string> specials_;
    std::unordered_map<std::string, int32_t> special_ids_;
    std::optional<TekkenImageConfig> image_;
    int32_t vocab_size_ = 0, unk_ = 0, bos_ = 0, eos_ = 0, pad_ = 0;
};

// Turns ids into text one at a time without ever splitting a multi-byte UTF-8 character: bytes of an
// unfinished character wait for the next token. The concatenation of every push() and the final flush()
// equals Tokenizer::decode of the same ids.
class StreamDecoder {
public:
    explicit StreamDecoder(const Tokenizer& tok, bool keep_control = false) : tok_(tok), keep_control_(keep_control) {}
    std::string push(int32_t id);  // the text this token completes (often the token itself, maybe "")
    std::string flush();           // what is still pending, an unfinished character as U+FFFD

private:
    const Tokenizer& tok_;
    bool keep_control_;
    std::string pending_;
};

}  // namespace mistral
