// safetensors_writer.h — writes a .safetensors file (header JSON + raw tensor bytes), streaming: tensors
// are declared first, then their bytes are appended in the declared order.
#pragma once

#include <cstdint>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

namespace mistral {

class SafetensorsWriter {
public:
    // Declare a tensor: dtype is the safetensors name ("F32", "BF16", "U8", "F8_E4M3", "I32", ...).
    void declare(const std::string& name, const std::string& dtype, const std::vector<int64_t>& shape);
    void set_metadata(const std::string& key, const std::string& value) { metadata_[key] = value; }

    // Writes the header; then `write` must be called once per declared tensor, in declaration order.
    void open(const std::string& path);
    void write(const std::string& name, const void* data, size_t nbytes);
    // Flushes and closes; throws if a tensor was not written or the disk is full.
    void close();
    ~SafetensorsWriter();

    static size_t dtype_size(const std::string& dtype);  // 0 for an unknown name

private:
    struct Entry {
        std::string name, dtype;
        std::vector<int64_t> shape;
        size_t nbytes = 0;
    };
    std::vector<Entry> entries_;
    std::map<std::string, std::string> metadata_;
    std::string path_;
    FILE* f_ = nullptr;
    size_t next_ = 0;
};

}  // namespace mistral
