// safetensors_writer.cpp — header layout (8-byte length, JSON padded with spaces to 8 bytes) and the
// checked, in-order streaming of tensor bytes.
#include "safetensors_writer.h"

#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>
#include <stdexcept>

namespace mistral {

size_t SafetensorsWriter::dtype_size(const std::string& d) {
    if (d == "F64" || d == "I64" || d == "U64") return 8;
    if (d == "F32" || d == "I32" || d == "U32") return 4;
    if (d == "F16" || d == "BF16" || d == "I16" || d == "U16") return 2;
    if (d == "U8" || d == "I8" || d == "F8_E4M3" || d == "F8_E5M2" || d == "F8_E8M0" || d == "BOOL") return 1;
    return 0;
}

void SafetensorsWriter::declare(const std::string& name, const std::string& dtype, const std::vector<int64_t>& shape) {
    size_t es = dtype_size(dtype);
    if (es == 0) throw std::runtime_error("safetensors writer: unknown dtype " + dtype + " for " + name);
    size_t n = es;
    for (int64_t d : shape) n *= size_t(d);
    entries_.push_back({name, dtype, shape, n});
}

void SafetensorsWriter::open(const std::string& path) {
    nlohmann::ordered_json h = nlohmann::ordered_json::object();
    size_t off = 0;
    for (const Entry& e : entries_) {
        h[e.name] = {{"dtype", e.dtype}, {"shape", e.shape}, {"data_offsets", {off, off + e.nbytes}}};
        off += e.nbytes;
    }
    if (!metadata_.empty()) h["__metadata__"] = metadata_;  // last, as the Python safetensors library writes it
    std::string s = h.dump();
    s.resize((s.size() + 7) / 8 * 8, ' ');
    path_ = path;
    f_ = std::fopen(path.c_str(), "wb");
    if (!f_) throw std::runtime_error("cannot create " + path + ": " + std::strerror(errno));
    uint64_t n = s.size();
    uint8_t len[8];
    for (int i = 0; i < 8; ++i) len[i] = uint8_t(n >> (8 * i));
    if (std::fwrite(len, 1, 8, f_) != 8 || std::fwrite(s.data(), 1, s.size(), f_) != s.size())
        throw std::runtime_error("write failed on " + path + ": " + std::strerror(errno));
}

void SafetensorsWriter::write(const std::string& name, const void* data, size_t nbytes) {
    if (!f_) throw std::runtime_error("safetensors writer: write before open");
    if (next_ >= entries_.size() || entries_[next_].name != name || entries_[next_].nbytes != nbytes)
        throw std::runtime_error("safetensors writer: tensor " + name + " written out of order or with the wrong size");
    if (nbytes && std::fwrite(data, 1, nbytes, f_) != nbytes)
        throw std::runtime_error("write failed on " + path_ + ": " + std::strerror(errno));
    ++next_;
}

void SafetensorsWriter::close() {
    if (!f_) return;
    FILE* f = f_;
    f_ = nullptr;
    bool ok = std::fflush(f) == 0;
    int err = errno;
    ok = (std::fclose(f) == 0) && ok;
    if (!ok) throw std::runtime_error("write failed on " + path_ + ": " + std::strerror(err));
    if (next_ != entries_.size())
        throw std::runtime_error("safetensors writer: " + std::to_string(entries_.size() - next_) +
                                 " declared tensors were not written to " + path_);
}

SafetensorsWriter::~SafetensorsWriter() {
    if (f_) std::fclose(f_);
}

}  // namespace mistral
