// bpe.h — tiktoken-style byte-pair encoder: splits text with a PCRE2 regex, then merges each piece's bytes
// by rank (lowest-rank adjacent pair first, leftmost on ties). Knows ranks only, not Mistral's id space.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

struct pcre2_real_code_8;

namespace mistral {

class BpeEncoder {
public:
    // `tokens[rank]` holds the bytes of each mergeable token; `pattern` is the pre-tokenization regex.
    // Throws std::runtime_error when the regex does not compile.
    BpeEncoder(const std::string& pattern, std::vector<std::string> tokens);
    ~BpeEncoder();
    BpeEncoder(const BpeEncoder&) = delete;
    BpeEncoder& operator=(const BpeEncoder&) = delete;

    // Appends the ranks of `text` (well-formed UTF-8, not re-checked) to `out`; thread-safe.
    void encode(std::string_view text, std::vector<int32_t>& out) const;

    int32_t size() const { return int32_t(offsets_.size()) - 1; }
    std::string_view bytes(int32_t rank) const {
        return std::string_view(blob_).substr(offsets_[rank], offsets_[rank + 1] - offsets_[rank]);
    }
    int32_t rank_of(std::string_view bytes) const;  // -1 when not a token

private:
    struct Slot {
        uint32_t hash;
        int32_t rank;  // -1: empty
    };
    void encode_piece(std::string_view piece, std::vector<int32_t>& out) const;
    void merge_short(std::string_view piece, std::vector<int32_t>& out) const;
    void merge_long(std::string_view piece, std::vector<int32_t>& out) const;

    std::string blob_;               // all token bytes, concatenated by rank
    std::vector<uint32_t> offsets_;  // token `r` is blob_[offsets_[r], offsets_[r + 1])
    std::vector<Slot> table_;        // open addressing, linear probing, power-of-two size
    int32_t byte_rank_[256];         // rank of each single byte
    pcre2_real_code_8* regex_ = nullptr;
};

}  // namespace mistral
