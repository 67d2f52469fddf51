// safetensors.cpp — mmap of a file, header validation, and the sharded folder set.
#include "safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <stdexcept>

namespace mistral {

using json = nlohmann::json;

namespace {

constexpr uint64_t kMaxHeaderBytes = 100ull << 20;
constexpr size_t kMaxTensors = 1u << 20;
constexpr size_t kMaxRank = 8;

struct DTypeInfo {
    DType t;
    const char* name;
    size_t size;
};

constexpr DTypeInfo kDTypes[] = {
    {DType::BOOL, "BOOL", 1},       {DType::U8, "U8", 1},         {DType::I8, "I8", 1},
    {DType::U16, "U16", 2},         {DType::I16, "I16", 2},       {DType::U32, "U32", 4},
    {DType::I32, "I32", 4},         {DType::U64, "U64", 8},       {DType::I64, "I64", 8},
    {DType::F16, "F16", 2},         {DType::BF16, "BF16", 2},     {DType::F32, "F32", 4},
    {DType::F64, "F64", 8},         {DType::F8_E4M3, "F8_E4M3", 1}, {DType::F8_E5M2, "F8_E5M2", 1},
    {DType::F8_E8M0, "F8_E8M0", 1},
};

[[noreturn]] void fail(const std::string& path, const std::string& what) {
    throw std::runtime_error(path + ": " + what);
}

// A JSON value that must be a non-negative integer (safetensors writes offsets and dims that way).
bool as_u64(const json& v, uint64_t* out) {
    if (v.is_number_unsigned()) { *out = v.get<uint64_t>(); return true; }
    if (v.is_number_integer() && v.get<int64_t>() >= 0) { *out = uint64_t(v.get<int64_t>()); return true; }
    return false;
}

std::string read_text(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) fail(path, "cannot open");
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

bool exists(const std::string& path) {
    struct stat st;
    return ::stat(path.c_str(), &st) == 0;
}

}  // namespace

const char* dtype_name(DType t) {
    for (const auto& d : kDTypes)
        if (d.t == t) return d.name;
    return "?";
}

size_t dtype_size(DType t) {
    for (const auto& d : kDTypes)
        if (d.t == t) return d.size;
    return 0;
}

bool parse_dtype(const std::string& s, DType* out) {
    for (const auto& d : kDTypes)
        if (s == d.name) { *out = d.t; return true; }
    return false;
}

std::string shape_str(const std::vector<int64_t>& shape) {
    std::string s = "[";
    for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
    return s + "]";
}

int64_t TensorView::numel() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
}

// ---- MappedFile ----

MappedFile::MappedFile(const std::string& path) : path_(path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) fail(path, std::string("cannot open: ") + std::strerror(errno));
    struct stat st;
    if (::fstat(fd, &st) != 0) {
        int e = errno;
        ::close(fd);
        fail(path, std::string("cannot stat: ") + std::strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        ::close(fd);
        fail(path, "not a regular file");
    }
    size_ = size_t(st.st_size);
    if (size_ > 0) {
        void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            int e = errno;
            ::close(fd);
            fail(path, std::string("mmap failed: ") + std::strerror(e));
        }
        data_ = static_cast<const uint8_t*>(p);
    }
    ::close(fd);
}

MappedFile::~MappedFile() {
    if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
}

// ---- SafeTensorFile ----

SafeTensorFile::SafeTensorFile(const std::string& path) : map_(path) {
    const size_t fsize = map_.size();
    if (fsize < 8) fail(path, "file is " + std::to_string(fsize) + " bytes, too short for a safetensors header");
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; --i) hlen = (hlen << 8) | map_.data()[i];  // little-endian u64
    if (hlen > kMaxHeaderBytes)
        fail(path, "header length " + std::to_string(hlen) + " exceeds the 100 MB limit (corrupt file?)");
    if (hlen > fsize - 8)
        fail(path, "header length " + std::to_string(hlen) + " runs past the end of the " + std::to_string(fsize) +
                       "-byte file (truncated?)");
    const uint8_t* hbeg = map_.data() + 8;
    const uint8_t* data_area = hbeg + hlen;
    const uint64_t data_size = fsize - 8 - hlen;

    json header;
    try {
        header = json::parse(hbeg, data_area);
    } catch (const json::exception& e) {
        fail(path, std::string("header is not valid JSON: ") + e.what());
    }
    if (!header.is_object()) fail(path, "header is not a JSON object");
    if (header.size() > kMaxTensors) fail(path, "header lists " + std::to_string(header.size()) + " entries, too many");

    for (auto it = header.begin(); it != header.end(); ++it) {
        const std::string& name = it.key();
        const json& v = it.value();
        if (name == "__metadata__") {
            if (!v.is_object()) fail(path, "__metadata__ is not an object");
            for (auto m = v.begin(); m != v.end(); ++m)
                if (m.value().is_string()) metadata_[m.key()] = m.value().get<std::string>();
            continue;
        }
        const std::string where = "tensor '" + name + "'";
        if (!v.is_object()) fail(path, where + ": entry is not an object");
        if (!v.contains("dtype") || !v["dtype"].is_string()) fail(path, where + ": missing or non-string dtype");
        if (!v.contains("shape") || !v["shape"].is_array()) fail(path, where + ": missing or non-array shape");
        if (!v.contains("data_offsets") || !v["data_offsets"].is_array() || v["data_offsets"].size() != 2)
            fail(path, where + ": data_offsets must be an array of two integers");

        TensorView t;
        t.name = name;
        t.file = path;
        const std::string dt = v["dtype"].get<std::string>();
        if (!parse_dtype(dt, &t.dtype)) fail(path, where + ": unknown dtype '" + dt + "'");

        const json& shape = v["shape"];
        if (shape.size() > kMaxRank)
            fail(path, where + ": rank " + std::to_string(shape.size()) + " exceeds the limit of 8");
        uint64_t numel = 1;
        bool overflow = false;
        for (const json& d : shape) {
            uint64_t n;
            if (!as_u64(d, &n) || n > uint64_t(INT64_MAX)) fail(path, where + ": shape holds a non-integer or negative dimension");
            t.shape.push_back(int64_t(n));
            if (n != 0 && numel > UINT64_MAX / n) overflow = true;
            else numel *= n;
        }
        uint64_t begin, end;
        if (!as_u64(v["data_offsets"][0], &begin) || !as_u64(v["data_offsets"][1], &end))
            fail(path, where + ": data_offsets must be non-negative integers");
        if (begin > end) fail(path, where + ": data_offsets begin " + std::to_string(begin) + " > end " + std::to_string(end));
        if (end > data_size)
            fail(path, where + ": data span [" + std::to_string(begin) + ", " + std::to_string(end) +
                           ") lies outside the " + std::to_string(data_size) + "-byte data area");
        const uint64_t esize = dtype_size(t.dtype);
        if (overflow || (numel != 0 && numel > UINT64_MAX / esize) || numel * esize != end - begin)
            fail(path, where + ": shape " + shape_str(t.shape) + " x " + dt + " (" + std::to_string(esize) +
                           " B) does not match its " + std::to_string(end - begin) + "-byte data span");
        t.data = data_area + begin;
        t.nbytes = size_t(end - begin);
        tensors_.push_back(std::move(t));
    }

    std::sort(tensors_.begin(), tensors_.end(),
              [](const TensorView& a, const TensorView& b) { return a.data < b.data || (a.data == b.data && a.nbytes < b.nbytes); });
    const TensorView* prev = nullptr;  // the non-empty tensor reaching furthest so far
    for (const TensorView& t : tensors_) {
        if (t.nbytes == 0) continue;
        if (prev && t.data < prev->data + prev->nbytes)
            fail(path, "tensor '" + t.name + "' overlaps tensor '" + prev->name + "' in the data area");
        prev = &t;
    }
}

// ---- SafeTensorSet ----

void SafeTensorSet::add(std::unique_ptr<SafeTensorFile> f) {
    for (const TensorView& t : f->tensors()) {
        auto [it, fresh] = index_.emplace(t.name, &t);
        if (!fresh) fail(t.file, "tensor '" + t.name + "' also appears in " + it->second->file);
    }
    files_.push_back(std::move(f));
}

std::unique_ptr<SafeTensorSet> SafeTensorSet::open_files(const std::vector<std::string>& paths) {
    auto set = std::unique_ptr<SafeTensorSet>(new SafeTensorSet());
    for (const std::string& p : paths) set->add(std::make_unique<SafeTensorFile>(p));
    return set;
}

std::unique_ptr<SafeTensorSet> SafeTensorSet::open(const std::string& dir) {
    const std::string index_path = dir + "/model.safetensors.index.json";
    const std::string single_path = dir + "/model.safetensors";
    if (!exists(index_path)) {
        if (exists(single_path)) return open_files({single_path});
        if (exists(dir + "/consolidated.safetensors"))
            fail(dir, "only the Mistral-native consolidated.safetensors is present; this loader reads the Hugging Face "
                      "layout (model.safetensors or model.safetensors.index.json)");
        fail(dir, "no model.safetensors or model.safetensors.index.json");
    }

    json index;
    try {
        index = json::parse(read_text(index_path));
    } catch (const json::exception& e) {
        fail(index_path, std::string("not valid JSON: ") + e.what());
    }
    if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object())
        fail(index_path, "has no weight_map object");
    const json& wm = index["weight_map"];

    std::vector<std::string> shards;  // in first-mention order
    std::set<std::string> seen;
    for (auto it = wm.begin(); it != wm.end(); ++it) {
        if (!it.value().is_string()) fail(index_path, "weight_map entry for '" + it.key() + "' is not a file name");
        const std::string shard = it.value().get<std::string>();
        if (shard.empty() || shard[0] == '/' || shard.find("..") != std::string::npos)
            fail(index_path, "weight_map entry for '" + it.key() + "' names an invalid shard '" + shard + "'");
        if (seen.insert(shard).second) {
            if (!exists(dir + "/" + shard))
                fail(index_path, "shard '" + shard + "' (holding tensor '" + it.key() + "') is missing from " + dir);
            shards.push_back(shard);
        }
    }
    if (shards.empty()) fail(index_path, "weight_map is empty");

    auto set = std::unique_ptr<SafeTensorSet>(new SafeTensorSet());
    for (const std::string& s : shards) set->add(std::make_unique<SafeTensorFile>(dir + "/" + s));
    for (auto it = wm.begin(); it != wm.end(); ++it) {
        const TensorView* t = set->find(it.key());
        const std::string want = dir + "/" + it.value().get<std::string>();
        if (!t) fail(want, "tensor '" + it.key() + "' listed in the index is not in this shard");
        if (t->file != want) fail(index_path, "tensor '" + it.key() + "' is listed under " + want + " but lives in " + t->file);
    }
    return set;
}

const TensorView* SafeTensorSet::find(const std::string& name) const {
    auto it = index_.find(name);
    return it == index_.end() ? nullptr : it->second;
}

const TensorView& SafeTensorSet::get(const std::string& name) const {
    const TensorView* t = find(name);
    if (!t) throw std::runtime_error("tensor '" + name + "' not found" +
                                     (files_.empty() ? std::string() : " in " + files_.front()->path()));
    return *t;
}

std::vector<std::string> SafeTensorSet::names() const {
    std::vector<std::string> out;
    out.reserve(index_.size());
    for (const auto& kv : index_) out.push_back(kv.first);
    return out;
}

size_t SafeTensorSet::total_bytes() const {
    size_t n = 0;
    for (const auto& kv : index_) n += kv.second->nbytes;
    return n;
}

}  // namespace mistral
