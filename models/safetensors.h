// safetensors.h — read-only access to .safetensors files: a memory-mapped file, its validated header,
// and a folder's set of files (one `model.safetensors` or shards listed by `model.safetensors.index.json`).
// Tensor bytes are never copied: every view points straight into the mapping.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace mistral {

// Element types of the safetensors format (the ones with whole-byte elements).
enum class DType : uint8_t { BOOL, U8, I8, U16, I16, U32, I32, U64, I64, F16, BF16, F32, F64, F8_E4M3, F8_E5M2, F8_E8M0 };

const char* dtype_name(DType t);
size_t dtype_size(DType t);
// Parses a header dtype string ("BF16", "F8_E4M3", ...); false when unknown.
bool parse_dtype(const std::string& s, DType* out);

// "[5120, 256]"
std::string shape_str(const std::vector<int64_t>& shape);

// One tensor of a file: where its bytes are and what they hold.
struct TensorView {
    std::string name;
    DType dtype = DType::U8;
    std::vector<int64_t> shape;
    const uint8_t* data = nullptr;  // inside the file's mapping
    size_t nbytes = 0;
    std::string file;               // path of the file that holds it

    int64_t numel() const;
};

// A whole file mapped read-only (MAP_PRIVATE); unmapped on destruction.
class MappedFile {
public:
    explicit MappedFile(const std::string& path);  // throws std::runtime_error naming the path
    ~MappedFile();
    MappedFile(const MappedFile&) = delete;
    MappedFile& operator=(const MappedFile&) = delete;

    const uint8_t* data() const { return data_; }
    size_t size() const { return size_; }
    const std::string& path() const { return path_; }

private:
    std::string path_;
    const uint8_t* data_ = nullptr;
    size_t size_ = 0;
};

// One .safetensors file. The constructor validates the whole header: size fields, JSON, dtype names,
// rank ≤ 8, shape × dtype size == byte span, spans inside the data area and not overlapping.
class SafeTensorFile {
public:
    explicit SafeTensorFile(const std::string& path);  // throws std::runtime_error "PATH: ..."

    const std::string& path() const { return map_.path(); }
    size_t file_size() const { return map_.size(); }
    const std::vector<TensorView>& tensors() const { return tensors_; }  // in data-offset order
    const std::map<std::string, std::string>& metadata() const { return metadata_; }  // string values of __metadata__

private:
    MappedFile map_;
    std::vector<TensorView> tensors_;
    std::map<std::string, std::string> metadata_;
};

// All the tensors of a model folder, by name.
class SafeTensorSet {
public:
    // `dir/model.safetensors.index.json` (sharded) if present, else `dir/model.safetensors`.
    // A shard named by the index but absent, a tensor in two files, or a weight_map entry whose shard
    // lacks it is an error naming the file and tensor.
    static std::unique_ptr<SafeTensorSet> open(const std::string& dir);
    // Exactly these files (used for a single file outside the usual folder layout, and by open()).
    static std::unique_ptr<SafeTensorSet> open_files(const std::vector<std::string>& paths);

    const TensorView* find(const std::string& name) const;  // null when absent
    const TensorView& get(const std::string& name) const;   // throws naming the tensor
    std::vector<std::string> names() const;                 // sorted
    size_t count() const { return index_.size(); }
    size_t total_bytes() const;                             // tensor bytes over all files
    const std::vector<std::unique_ptr<SafeTensorFile>>& files() const { return files_; }

private:
    void add(std::unique_ptr<SafeTensorFile> f);
    std::vector<std::unique_ptr<SafeTensorFile>> files_;
    std::map<std::string, const TensorView*> index_;
};

}  // namespace mistral
