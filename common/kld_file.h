// kld_file.h — llama.cpp's `--kl-divergence-base` file: reader and writer, byte-compatible both ways.
//
// Layout (little-endian, no padding):
//   "_logits_"                          8-byte magic, no NUL
//   int32 n_ctx, n_vocab, n_chunk
//   int32 tokens[n_chunk·n_ctx]         the original ids, chunk-major (no per-chunk BOS substitution)
//   n_chunk · (n_ctx − 1 − n_ctx/2) rows, chunk-major; row k of chunk c is the distribution predicted at
//   position n_ctx/2 + k, each 2·nv bytes with nv = 2·((n_vocab+1)/2) + 4 uint16 slots:
//     float32 scale, float32 min_log_prob, uint16 q[n_vocab] (+1 pad slot when n_vocab is odd)
//   log p(i) = scale·q[i] + min_log_prob.
// Encoding of a logits row l: max = max l, min = max(min l, max − 16) (16 nats of range), lse = log Σ exp(l − max),
// scale = (max − min)/65535, min_log_prob = min − max − lse, q[i] = round-half-even((l[i] − min)/scale) when
// l[i] > min, else 0 (all 0 when scale is 0).
#pragma once

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

namespace common {

struct FileCloser {
    void operator()(std::FILE* f) const { std::fclose(f); }
};
using FilePtr = std::unique_ptr<std::FILE, FileCloser>;

struct KldHeader {
    int32_t n_ctx = 0, n_vocab = 0, n_chunk = 0;
    int64_t rows() const { return int64_t(n_ctx) - 1 - n_ctx / 2; }             // rows per chunk
    int64_t row_slots() const { return 2 * ((int64_t(n_vocab) + 1) / 2) + 4; }  // uint16 slots per row
    int64_t file_size() const;                                                  // exact size the header implies
};

// One stored row: the dequantized log-probability of entry i is scale·q[i] + min_log_prob (in float).
struct LogProbRow {
    float scale = 0, min_log_prob = 0;
    const uint16_t* q = nullptr;
    float logp(int64_t i) const { return scale * float(q[i]) + min_log_prob; }
};

// Encodes a logits row into row_slots(n_vocab) slots.
void encode_log_probs(const float* logits, int32_t n_vocab, uint16_t* slots);
LogProbRow decode_row(const uint16_t* slots);

class KldWriter {
public:
    // Writes the header and the tokens (tokens.size() must be n_chunk·n_ctx).
    KldWriter(const std::string& path, const KldHeader& h, const std::vector<int32_t>& tokens);
    ~KldWriter();
    KldWriter(const KldWriter&) = delete;
    KldWriter& operator=(const KldWriter&) = delete;

    // Appends n_rows rows encoded from logits [n_rows, n_vocab].
    void write_rows(const float* logits, int64_t n_rows);
    // Flushes and closes; an error when fewer rows than the header promises were written.
    void close();

private:
    std::string path_;
    KldHeader h_;
    FilePtr f_;  // closed on destruction, and when a constructor throws
    int64_t rows_written_ = 0;
};

class KldReader {
public:
    // Validates magic, header and the file size; a truncated or foreign file is a std::runtime_error.
    explicit KldReader(const std::string& path);
    ~KldReader();
    KldReader(const KldReader&) = delete;
    KldReader& operator=(const KldReader&) = delete;

    const KldHeader& header() const { return h_; }
    const std::vector<int32_t>& tokens() const { return tokens_; }
    // The rows of chunk c: rows() · row_slots() slots.
    std::vector<uint16_t> read_chunk(int c);

private:
    std::string path_;
    KldHeader h_;
    FilePtr f_;  // closed on destruction, and when a constructor throws
    std::vector<int32_t> tokens_;
};

}  // namespace common
