// bpe.cpp — the byte-pair encoder: rank hash table, PCRE2 pre-tokenization and tiktoken's merge rule
// (an O(n²) scan for short pieces, a heap with lazy deletion for long ones).
#define PCRE2_CODE_UNIT_WIDTH 8
#include "bpe.h"

#include <pcre2.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <memory>
#include <stdexcept>

namespace mistral {
namespace {

constexpr size_t kLongPiece = 128;  // pieces longer than this use the heap merge

uint32_t hash_bytes(std::string_view s) {
    uint64_t h = 0x9e3779b97f4a7c15ull ^ s.size();
    size_t i = 0;
    for (; i + 8 <= s.size(); i += 8) {
        uint64_t w;
        std::memcpy(&w, s.data() + i, 8);
        h = (h ^ w) * 0xff51afd7ed558ccdull;
        h ^= h >> 32;
    }
    uint64_t w = 0;
    for (size_t k = s.size(); k > i; --k) w = (w << 8) | uint8_t(s[k - 1]);
    h = (h ^ w) * 0xc4ceb9fe1a85ec53ull;
    return uint32_t(h ^ (h >> 31));
}

std::string pcre2_message(int code) {
    PCRE2_UCHAR buf[256];
    pcre2_get_error_message(code, buf, sizeof buf);
    return reinterpret_cast<const char*>(buf);
}

// tiktoken's regex engine (Rust) reads \s as Unicode White_Space; PCRE2 also counts U+180E, a space only
// before Unicode 6.3. Spelling the set out makes them agree (\S inside a class is left as it is).
std::string rust_spaces(const std::string& p) {
    const std::string ws = "\\t-\\r\\x{20}\\x{85}\\x{a0}\\x{1680}\\x{2000}-\\x{200a}\\x{2028}\\x{2029}\\x{202f}\\x{205f}\\x{3000}";
    std::string r;
    bool in_class = false;
    for (size_t i = 0; i < p.size(); ++i) {
        char c = p[i];
        if (c == '\\' && i + 1 < p.size()) {
            char e = p[++i];
            if (e == 's')
                r += in_class ? ws : "[" + ws + "]";
            else if (e == 'S' && !in_class)
                r += "[^" + ws + "]";
            else
                (r += c) += e;
            continue;
        }
        r += c;
        if (c == '[' && !in_class) {
            in_class = true;
            if (i + 1 < p.size() && p[i + 1] == '^') r += p[++i];
            if (i + 1 < p.size() && p[i + 1] == ']') r += p[++i];  // a leading ']' is literal
        } else if (c == ']') {
            in_class = false;
        }
    }
    return r;
}

struct Pcre2Free {
    void operator()(pcre2_match_data* p) const { pcre2_match_data_free(p); }
    void operator()(pcre2_match_context* p) const { pcre2_match_context_free(p); }
    void operator()(pcre2_jit_stack* p) const { pcre2_jit_stack_free(p); }
};

}  // namespace

BpeEncoder::BpeEncoder(const std::string& pattern, std::vector<std::string> tokens) {
    offsets_.reserve(tokens.size() + 1);
    offsets_.push_back(0);
    for (const std::string& t : tokens) {
        blob_ += t;
        offsets_.push_back(uint32_t(blob_.size()));
    }
    size_t cap = 16;
    while (cap < 2 * tokens.size()) cap *= 2;
    table_.assign(cap, Slot{0, -1});
    for (int32_t r = 0; r < size(); ++r) {
        uint32_t h = hash_bytes(bytes(r));
        size_t i = h & (cap - 1);
        for (; table_[i].rank >= 0; i = (i + 1) & (cap - 1))
            if (table_[i].hash == h && bytes(table_[i].rank) == bytes(r))
                throw std::runtime_error("duplicate token bytes at ranks " + std::to_string(table_[i].rank) + " and " +
                                         std::to_string(r));
        table_[i] = Slot{h, r};
    }
    for (int b = 0; b < 256; ++b) {
        char c = char(b);
        byte_rank_[b] = rank_of(std::string_view(&c, 1));
        if (byte_rank_[b] < 0) throw std::runtime_error("vocabulary lacks the single byte " + std::to_string(b));
    }

    int err = 0;
    PCRE2_SIZE at = 0;
    std::string pat = rust_spaces(pattern);
    regex_ =
        pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pat.data()), pat.size(), PCRE2_UTF | PCRE2_UCP, &err, &at, nullptr);
    if (!regex_) throw std::runtime_error("bad pattern at offset " + std::to_string(at) + ": " + pcre2_message(err));
    pcre2_jit_compile(regex_, PCRE2_JIT_COMPLETE);  // on failure pcre2_match interprets instead
}

BpeEncoder::~BpeEncoder() { pcre2_code_free(regex_); }

int32_t BpeEncoder::rank_of(std::string_view s) const {
    uint32_t h = hash_bytes(s);
    size_t mask = table_.size() - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        const Slot& slot = table_[i];
        if (slot.rank < 0) return -1;
        if (slot.hash == h && bytes(slot.rank) == s) return slot.rank;
    }
}

void BpeEncoder::encode(std::string_view text, std::vector<int32_t>& out) const {
    std::unique_ptr<pcre2_match_data, Pcre2Free> md(pcre2_match_data_create_from_pattern(regex_, nullptr));
    std::unique_ptr<pcre2_match_context, Pcre2Free> ctx(pcre2_match_context_create(nullptr));
    std::unique_ptr<pcre2_jit_stack, Pcre2Free> stack(pcre2_jit_stack_create(32 << 10, 16 << 20, nullptr));
    if (!md || !ctx || !stack) throw std::bad_alloc();
    pcre2_jit_stack_assign(ctx.get(), nullptr, stack.get());
    pcre2_set_match_limit(ctx.get(), UINT32_MAX);  // a match costs about the run it takes; runs may be long

    const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
    size_t pos = 0;
    while (pos < text.size()) {
        int rc = pcre2_match(regex_, subject, text.size(), pos, PCRE2_NO_UTF_CHECK, md.get(), ctx.get());
        if (rc == PCRE2_ERROR_NOMATCH) break;  // like tiktoken, text no match covers is skipped
        if (rc < 0) throw std::runtime_error("tokenizer regex failed: " + pcre2_message(rc));
        const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md.get());
        if (ov[1] == ov[0]) {  // empty match: step over one character
            pos = ov[0] + 1;
            while (pos < text.size() && (uint8_t(text[pos]) & 0xc0) == 0x80) ++pos;
            continue;
        }
        encode_piece(text.substr(ov[0], ov[1] - ov[0]), out);
        pos = ov[1];
    }
}

void BpeEncoder::encode_piece(std::string_view piece, std::vector<int32_t>& out) const {
    if (int32_t r = rank_of(piece); r >= 0)
        out.push_back(r);
    else if (piece.size() <= kLongPiece)
        merge_short(piece, out);
    else
        merge_long(piece, out);
}

// tiktoken's loop: parts start as single bytes; merge the adjacent pair whose concatenation has the lowest
// rank (leftmost on ties) until no concatenation is a token.
void BpeEncoder::merge_short(std::string_view piece, std::vector<int32_t>& out) const {
    constexpr int32_t kNone = INT32_MAX;
    uint32_t start[kLongPiece + 1];  // start[k]: first byte of part k; start[n] = end
    int32_t part[kLongPiece];        // rank of part k
    int32_t pair[kLongPiece];        // rank of parts k and k+1 joined, or kNone
    size_t n = piece.size();
    auto pair_rank = [&](size_t k) {
        int32_t r = rank_of(piece.substr(start[k], start[k + 2] - start[k]));
        return r < 0 ? kNone : r;
    };
    for (size_t k = 0; k <= n; ++k) start[k] = uint32_t(k);
    for (size_t k = 0; k < n; ++k) part[k] = byte_rank_[uint8_t(piece[k])];
    for (size_t k = 0; k + 1 < n; ++k) pair[k] = pair_rank(k);
    while (n > 1) {
        size_t best = 0;
        for (size_t k = 1; k + 1 < n; ++k)
            if (pair[k] < pair[best]) best = k;
        if (pair[best] == kNone) break;
        part[best] = pair[best];
        std::copy(start + best + 2, start + n + 1, start + best + 1);
        std::copy(part + best + 2, part + n, part + best + 1);
        if (best + 2 < n) std::copy(pair + best + 2, pair + n - 1, pair + best + 1);
        --n;
        if (best + 1 < n) pair[best] = pair_rank(best);
        if (best > 0) pair[best - 1] = pair_rank(best - 1);
    }
    out.insert(out.end(), part, part + n);
}

// Same rule in O(n log n): parts form a linked list keyed by their first byte; candidate pairs wait in a
// min-heap on (rank, position) and are dropped when popped if either part has changed since.
void BpeEncoder::merge_long(std::string_view piece, std::vector<int32_t>& out) const {
    struct Cand {
        int32_t rank;
        uint32_t left, end;  // first byte of the left part, one past the right part
        bool operator>(const Cand& o) const { return rank != o.rank ? rank > o.rank : left > o.left; }
    };
    const uint32_t n = uint32_t(piece.size());
    std::vector<uint32_t> next(n), prev(n);
    std::vector<int32_t> part(n);  // rank of the part starting here, -1 once merged into its left
    std::vector<Cand> heap;
    for (uint32_t i = 0; i < n; ++i) {
        next[i] = i + 1;
        prev[i] = i - 1;  // wraps for i = 0: no left neighbour
        part[i] = byte_rank_[uint8_t(piece[i])];
    }
    auto push = [&](uint32_t l) {
        uint32_t m = next[l];
        if (m >= n) return;
        uint32_t e = next[m];
        if (int32_t r = rank_of(piece.substr(l, e - l)); r >= 0) {
            heap.push_back({r, l, e});
            std::push_heap(heap.begin(), heap.end(), std::greater<Cand>());
        }
    };
    for (uint32_t i = 0; i + 1 < n; ++i) push(i);
    while (!heap.empty()) {
        std::pop_heap(heap.begin(), heap.end(), std::greater<Cand>());
        Cand c = heap.back();
        heap.pop_back();
        uint32_t m = next[c.left];
        if (part[c.left] < 0 || m >= n || next[m] != c.end) continue;  // stale
        part[c.left] = c.rank;
        part[m] = -1;
        next[c.left] = c.end;
        if (c.end < n) prev[c.end] = c.left;
        push(c.left);
        if (prev[c.left] < n) push(prev[c.left]);
    }
    for (uint32_t i = 0; i < n; i = next[i]) out.push_back(part[i]);
}

}  // namespace mistral
