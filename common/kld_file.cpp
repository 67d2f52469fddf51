// kld_file.cpp — encoding of log-prob rows and the `_logits_` file reader/writer with size validation.
#include <cstdint>
#include "kld_file.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>

#include "perplexity.h"

namespace common {

namespace {

const char kMagic[8] = {'_', 'l', 'o', 'g', 'i', 't', 's', '_'};
constexpr int64_t kHeaderBytes = 8 + 3 * 4;

}  // namespace

// Saturates at INT64_MAX, so a forged header (huge counts) can never match a real file's size.
int64_t KldHeader::file_size() const {
    const __int128 n = __int128(kHeaderBytes) + __int128(4) * n_chunk * n_ctx +
                       __int128(n_chunk) * rows() * row_slots() * 2;
    return n > INT64_MAX ? INT64_MAX : int64_t(n);
}

void encode_log_probs(const float* l, int32_t n_vocab, uint16_t* slots) {
    float mx = l[0], mn = l[0];
    for (int32_t i = 1; i < n_vocab; ++i) {
        mx = std::max(mx, l[i]);
        mn = std::min(mn, l[i]);
    }
    mn = std::max(mn, mx - 16.0f);
    double sum = 0;
    for (int32_t i = 0; i < n_vocab; ++i) sum += std::exp(double(l[i]) - double(mx));
    const float lse = float(std::log(sum));
    const float scale = (mx - mn) / 65535.0f;
    const float min_log_prob = mn - mx - lse;
    std::memcpy(slots, &scale, 4);
    std::memcpy(slots + 2, &min_log_prob, 4);
    uint16_t* q = slots + 4;
    std::fill(q, q + 2 * ((int64_t(n_vocab) + 1) / 2), uint16_t(0));
    if (scale > 0) {
        const float inv = 1.0f / scale;
        for (int32_t i = 0; i < n_vocab; ++i)
            if (l[i] > mn) q[i] = uint16_t(std::min(65535.0f, std::nearbyint(inv * (l[i] - mn))));
    }
}

LogProbRow decode_row(const uint16_t* slots) {
    LogProbRow r;
    std::memcpy(&r.scale, slots, 4);
    std::memcpy(&r.min_log_prob, slots + 2, 4);
    r.q = slots + 4;
    return r;
}

KldWriter::KldWriter(const std::string& path, const KldHeader& h, const std::vector<int32_t>& tokens)
    : path_(path), h_(h) {
    if (tokens.size() != size_t(h.n_chunk) * size_t(h.n_ctx))
        throw std::runtime_error("KLD base file: " + std::to_string(tokens.size()) + " tokens for " +
                                 std::to_string(h.n_chunk) + " chunks of " + std::to_string(h.n_ctx));
    f_.reset(std::fopen(path.c_str(), "wb"));
    if (!f_) throw std::runtime_error("cannot create " + path);
    const int32_t fields[3] = {h.n_ctx, h.n_vocab, h.n_chunk};
    if (std::fwrite(kMagic, 1, 8, f_.get()) != 8 || std::fwrite(fields, 4, 3, f_.get()) != 3 ||
        std::fwrite(tokens.data(), 4, tokens.size(), f_.get()) != tokens.size())
        throw std::runtime_error("write error on " + path);
}

KldWriter::~KldWriter() = default;

void KldWriter::write_rows(const float* logits, int64_t n_rows) {
    if (!f_) throw std::runtime_error(path_ + " is already closed");
    if (rows_written_ + n_rows > int64_t(h_.n_chunk) * h_.rows())
        throw std::runtime_error("more rows than the header of " + path_ + " announces");
    const int64_t slots = h_.row_slots();
    std::vector<uint16_t> buf(size_t(n_rows * slots));
    parallel_for(n_rows,
                 [&](int64_t r) { encode_log_probs(logits + r * h_.n_vocab, h_.n_vocab, buf.data() + r * slots); });
    if (std::fwrite(buf.data(), 2, buf.size(), f_.get()) != buf.size())
        throw std::runtime_error("write error on " + path_);
    rows_written_ += n_rows;
}

void KldWriter::close() {
    if (!f_) return;
    const int fail = std::fclose(f_.release());
    if (fail) throw std::runtime_error("write error on " + path_);
    const int64_t want = int64_t(h_.n_chunk) * h_.rows();
    if (rows_written_ != want)
        throw std::runtime_error(path_ + " is incomplete: " + std::to_string(rows_written_) + " of " +
                                 std::to_string(want) + " rows written");
}

KldReader::KldReader(const std::string& path) : path_(path) {
    f_.reset(std::fopen(path.c_str(), "rb"));
    if (!f_) throw std::runtime_error("cannot open " + path);
    fseeko(f_.get(), 0, SEEK_END);
    const int64_t size = int64_t(ftello(f_.get()));
    fseeko(f_.get(), 0, SEEK_SET);
    char magic[8];
    int32_t fields[3];
    if (size < kHeaderBytes || std::fread(magic, 1, 8, f_.get()) != 8 || std::memcmp(magic, kMagic, 8) != 0)
        throw std::runtime_error(path +
                                 " does not look like a file containing log-probabilities "
                                 "(no \"_logits_\" header of a --kl-divergence-base file)");
    if (std::fread(fields, 4, 3, f_.get()) != 3) throw std::runtime_error("read error on " + path);
    h_.n_ctx = fields[0];
    h_.n_vocab = fields[1];
    h_.n_chunk = fields[2];
    if (h_.n_ctx < 3 || h_.n_vocab < 1 || h_.n_chunk < 1)
        throw std::runtime_error(path + ": corrupt header (n_ctx " + std::to_string(h_.n_ctx) + ", n_vocab " +
                                 std::to_string(h_.n_vocab) + ", n_chunk " + std::to_string(h_.n_chunk) + ")");
    const int64_t want = h_.file_size();
    if (size < want)
        throw std::runtime_error(path + " is truncated: " + std::to_string(size) + " bytes, its header (" +
                                 std::to_string(h_.n_chunk) + " chunks of " + std::to_string(h_.n_ctx) +
                                 " tokens, vocab " + std::to_string(h_.n_vocab) + ") needs " + std::to_string(want));
    if (size > want)
        throw std::runtime_error(path + " has " + std::to_string(size - want) +
                                 " bytes more than its header describes");
    tokens_.resize(size_t(h_.n_chunk) * h_.n_ctx);
    if (std::fread(tokens_.data(), 4, tokens_.size(), f_.get()) != tokens_.size())
        throw std::runtime_error("read error on " + path);
    for (size_t i = 0; i < tokens_.size(); ++i)
        if (tokens_[i] < 0 || tokens_[i] >= h_.n_vocab)
            throw std::runtime_error(path + ": token " + std::to_string(i) + " (" + std::to_string(tokens_[i]) +
                                     ") is outside its vocabulary of " + std::to_string(h_.n_vocab));
}

KldReader::~KldReader() = default;

std::vector<uint16_t> KldReader::read_chunk(int c) {
    if (c < 0 || c >= h_.n_chunk) throw std::runtime_error(path_ + ": no chunk " + std::to_string(c));
    const int64_t n = int64_t(h_.rows()) * h_.row_slots();
    const int64_t at = kHeaderBytes + 4 * int64_t(h_.n_chunk) * h_.n_ctx + int64_t(c) * n * 2;
    std::vector<uint16_t> rows(static_cast<size_t>(n));
    if (fseeko(f_.get(), off_t(at), SEEK_SET) != 0 ||
        std::fread(rows.data(), 2, rows.size(), f_.get()) != rows.size())
        throw std::runtime_error("read error on " + path_ + " at chunk " + std::to_string(c));
    return rows;
}

}  // namespace common
