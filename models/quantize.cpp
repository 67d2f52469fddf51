// quantize.cpp — NVFP4 quantization of BF16 matrices (compressed-tensors' arithmetic), the streaming
// checkpoint conversion into a temporary folder renamed at the end, and the dequantization check.
#include "quantize.h"

#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <regex>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "numeric.h"
#include "safetensors.h"
#include "safetensors_writer.h"

namespace mistral {

namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;

namespace {

constexpr float kE4M3Max = 448.0f, kE2M1Max = 6.0f;
constexpr uint8_t kE4M3Eighth = 0x20;  // 0.125, compressed-tensors' replacement for a zero scale

// Splits [0, n) into `threads` contiguous ranges, one std::thread each.
template <class Fn>
void parallel_ranges(int64_t n, int threads, Fn fn) {
    int64_t t = std::max<int64_t>(1, std::min<int64_t>(threads, n));
    if (t == 1) {
        fn(0, n, 0);
        return;
    }
    std::vector<std::thread> pool;
    for (int64_t i = 0; i < t; ++i) pool.emplace_back(fn, n * i / t, n * (i + 1) / t, int(i));
    for (auto& th : pool) th.join();
}

// max |x| of BF16 values as the bit pattern of |x| (the order of finite BF16 magnitudes is the order
// of their bits; NaN and Inf come out ≥ 0x7f80).
uint16_t amax_bits(const uint16_t* w, int64_t n, int threads) {
    std::vector<uint16_t> part(size_t(std::max(1, threads)), 0);
    parallel_ranges(n, threads, [&](int64_t b, int64_t e, int i) {
        uint16_t m = 0;
        for (int64_t k = b; k < e; ++k) m = std::max<uint16_t>(m, w[k] & 0x7fff);
        part[size_t(i)] = m;
    });
    return *std::max_element(part.begin(), part.end());
}

// Rows [row0, row1) of a matrix whose max |w| has the bit pattern `max_bits`.
void quantize_rows(const uint16_t* w, int64_t cols, float gscale, int64_t row0, int64_t row1, uint8_t* packed,
                   uint8_t* scales, uint16_t max_bits) {
    // Scale byte per group-max bit pattern, and the F32 divisor per scale byte, as _quantize forms it.
    std::vector<uint8_t> scale_of(size_t(max_bits) + 1);
    for (uint32_t b = 0; b <= max_bits; ++b) scale_of[b] = nvfp4_group_scale(fp4::bf16_to_f32(uint16_t(b)), gscale);
    float divisor[256];
    for (int s = 0; s < 256; ++s) divisor[s] = fp4::e4m3_to_f32(uint8_t(s)) / gscale;

    const int64_t groups = cols / 16;
    for (int64_t r = row0; r < row1; ++r) {
        const uint16_t* row = w + r * cols;
        uint8_t* prow = packed + r * (cols / 2);
        uint8_t* srow = scales + r * groups;
        for (int64_t g = 0; g < groups; ++g) {
            const uint16_t* x = row + g * 16;
            uint16_t m = 0;
            for (int k = 0; k < 16; ++k) m = std::max<uint16_t>(m, x[k] & 0x7fff);
            uint8_t s = scale_of[m];
            srow[g] = s;
            float d = divisor[s];
            uint8_t code[16];
            for (int k = 0; k < 16; ++k) code[k] = fp4::f32_to_e2m1(fp4::bf16_to_f32(x[k]) / d);
            for (int k = 0; k < 8; ++k) prow[g * 8 + k] = uint8_t(code[2 * k] | (code[2 * k + 1] << 4));
        }
    }
}

// Drops the pages of a tensor from this process's mapping once it has been consumed (the file stays
// in the page cache; a later access faults the bytes back in).
void release(const TensorView& v) {
    long page = sysconf(_SC_PAGESIZE);
    uintptr_t b = uintptr_t(v.data) & ~uintptr_t(page - 1);
    uintptr_t e = uintptr_t(v.data) + v.nbytes;
    if (e > b) madvise(reinterpret_cast<void*>(b), e - b, MADV_DONTNEED);
}

ojson quantization_config(const std::vector<std::string>& ignore) {
    ojson weights = {{"actorder", nullptr},
                     {"block_structure", nullptr},
                     {"dynamic", false},
                     {"group_size", 16},
                     {"num_bits", 4},
                     {"observer", "memoryless_minmax"},
                     {"observer_kwargs", ojson::object()},
                     {"scale_dtype", "torch.float8_e4m3fn"},
                     {"strategy", "tensor_group"},
                     {"symmetric", true},
                     {"type", "float"},
                     {"zp_dtype", nullptr}};
    ojson group = {{"format", "nvfp4-pack-quantized"},
                   {"input_activations", nullptr},
                   {"output_activations", nullptr},
                   {"targets", ojson::array({"Linear"})},
                   {"weights", weights}};
    return {{"config_groups", {{"group_0", group}}},
            {"format", "nvfp4-pack-quantized"},
            {"global_compression_ratio", nullptr},
            {"ignore", ignore},
            {"kv_cache_scheme", nullptr},
            {"quant_method", "compressed-tensors"},
            {"quantization_status", "compressed"}};
}

std::string read_file(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    if (!in) throw std::runtime_error(p.string() + ": cannot open");
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

void write_file(const fs::path& p, const std::string& s) {
    std::ofstream out(p, std::ios::binary);
    out << s;
    out.close();
    if (!out) throw std::runtime_error("write failed on " + p.string());
}

// One tensor of the output: a BF16 tensor copied as is, or one of the three parts of a quantized linear.
struct OutTensor {
    enum Kind { Copy, GlobalScale, Packed, Scale } kind;
    std::string name, dtype;
    std::vector<int64_t> shape;
    size_t nbytes;
    const TensorView* src;
};

std::vector<OutTensor> plan(const SafeTensorSet& in, const std::vector<std::string>& ignore) {
    std::vector<OutTensor> out;
    size_t quantized = 0;
    for (const std::string& name : in.names()) {
        const TensorView& v = in.get(name);
        std::string module;
        if (!is_decoder_linear(name, &module) || first_match({module}, ignore)) {
            out.push_back({OutTensor::Copy, name, dtype_name(v.dtype), v.shape, v.nbytes, &v});
            continue;
        }
        if (v.dtype != DType::BF16)
            throw std::runtime_error(v.file + ": " + name + " is " + dtype_name(v.dtype) +
                                     "; quantize reads BF16 checkpoints only");
        if (v.shape.size() != 2)
            throw std::runtime_error(v.file + ": " + name + " has shape " + shape_str(v.shape) + ", not a matrix");
        int64_t rows = v.shape[0], cols = v.shape[1];
        if (cols % 16 != 0)
            throw std::runtime_error(v.file + ": " + name + " " + shape_str(v.shape) + ": " + std::to_string(cols) +
                                     " input columns are not a multiple of the group size 16 (skip it with --ignore " +
                                     module + ")");
        out.push_back({OutTensor::GlobalScale, module + ".weight_global_scale", "F32", {1}, 4, &v});
        size_t n = size_t(rows * cols);
        out.push_back({OutTensor::Packed, module + ".weight_packed", "U8", {rows, cols / 2}, n / 2, &v});
        out.push_back({OutTensor::Scale, module + ".weight_scale", "F8_E4M3", {rows, cols / 16}, n / 16, &v});
        ++quantized;
    }
    if (quantized == 0) throw std::runtime_error("no text-decoder Linear weights to quantize");
    std::sort(out.begin(), out.end(), [](const OutTensor& a, const OutTensor& b) { return a.name < b.name; });
    return out;
}

// Hugging Face's rule: fill a shard until the next tensor would overflow it.
std::vector<std::vector<const OutTensor*>> shard(const std::vector<OutTensor>& ts, uint64_t max_bytes) {
    std::vector<std::vector<const OutTensor*>> shards(1);
    uint64_t size = 0;
    for (const OutTensor& t : ts) {
        if (!shards.back().empty() && size + t.nbytes > max_bytes) {
            shards.emplace_back();
            size = 0;
        }
        shards.back().push_back(&t);
        size += t.nbytes;
    }
    return shards;
}

std::string shard_name(size_t i, size_t n) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "model-%05zu-of-%05zu.safetensors", i + 1, n);
    return buf;
}

// A temporary folder `DEST.tmp-XXXXXX` next to the destination, removed unless `commit` renames it into place.
class TempDir {
public:
    explicit TempDir(const fs::path& dest) : dest_(dest) {
        std::random_device rd;
        for (int attempt = 0; attempt < 100 && path_.empty(); ++attempt) {
            char suffix[16];
            std::snprintf(suffix, sizeof suffix, ".tmp-%06x", unsigned(rd() & 0xffffff));
            std::string p = dest.string() + suffix;
            if (::mkdir(p.c_str(), 0777) == 0) path_ = p;  // mode from the umask, like any new folder
            else if (errno != EEXIST) throw std::runtime_error("cannot create " + p + ": " + std::strerror(errno));
        }
        if (path_.empty()) throw std::runtime_error("cannot create a temporary folder next to " + dest.string());
    }
    ~TempDir() {
        std::error_code ec;
        if (!path_.empty()) fs::remove_all(path_, ec);
    }
    const fs::path& path() const { return path_; }
    void commit(bool force) {
        if (fs::exists(dest_)) {
            if (fs::is_directory(dest_) && fs::is_empty(dest_)) fs::remove(dest_);
            else if (force) fs::remove_all(dest_);
            else throw std::runtime_error(dest_.string() + " exists and is not empty (use --force to replace it)");
        }
        fs::rename(path_, dest_);
        path_.clear();
    }

private:
    fs::path dest_, path_;
};

}  // namespace

float nvfp4_global_scale(float amax) { return kE4M3Max * kE2M1Max / amax; }

uint8_t nvfp4_group_scale(float group_amax, float global_scale) {
    float s = global_scale * (group_amax / kE2M1Max);
    s = std::min(std::max(s, -kE4M3Max), kE4M3Max);
    uint8_t b = fp4::f32_to_e4m3(s);
    return (b & 0x7f) == 0 ? kE4M3Eighth : b;
}

Nvfp4Weight quantize_nvfp4(const uint16_t* bf16, int64_t rows, int64_t cols, int threads) {
    if (rows <= 0 || cols <= 0 || cols % 16 != 0)
        throw std::runtime_error("cannot quantize a [" + std::to_string(rows) + ", " + std::to_string(cols) +
                                 "] matrix: the input dimension must be a positive multiple of 16");
    uint16_t mb = amax_bits(bf16, rows * cols, threads);
    if (mb == 0) throw std::runtime_error("all weights are zero: no global scale exists");
    if (mb >= 0x7f80) throw std::runtime_error("the weights hold Inf or NaN");
    Nvfp4Weight q;
    q.global_scale = nvfp4_global_scale(fp4::bf16_to_f32(mb));
    q.packed.resize(size_t(rows * cols / 2));
    q.scales.resize(size_t(rows * cols / 16));
    parallel_ranges(rows, threads, [&](int64_t r0, int64_t r1, int) {
        quantize_rows(bf16, cols, q.global_scale, r0, r1, q.packed.data(), q.scales.data(), mb);
    });
    return q;
}

std::vector<std::string> default_ignore() { return {"lm_head", "re:.*vision_tower.*", "re:.*multi_modal_projector.*"}; }

bool is_decoder_linear(const std::string& tensor, std::string* module) {
    static const std::regex re(
        R"(((?:.*\.)?layers\.\d+\.(?:self_attn\.[qkvo]_proj|mlp\.(?:gate|up|down)_proj))\.weight)");
    std::smatch m;
    if (!std::regex_match(tensor, m, re)) return false;
    *module = m[1];
    return true;
}

QuantizeSummary quantize_checkpoint(const std::string& bf16_dir, const std::string& out_dir,
                                    const QuantizeOptions& opt) {
    fs::path in_dir(bf16_dir), dest = fs::path(out_dir).lexically_normal();
    if (!dest.has_filename()) dest = dest.parent_path();  // "out/"
    if (fs::exists(dest) && fs::weakly_canonical(dest) == fs::weakly_canonical(in_dir))
        throw std::runtime_error("the output folder " + out_dir + " is the input folder");
    if (fs::exists(dest) && !fs::is_directory(dest)) throw std::runtime_error(out_dir + " exists and is not a folder");
    if (fs::exists(dest) && !fs::is_empty(dest) && !opt.force)
        throw std::runtime_error(out_dir + " exists and is not empty (use --force to replace it)");

    for (const std::string& p : opt.ignore) {
        try {
            check_pattern(p);
        } catch (const std::invalid_argument& e) {
            throw std::runtime_error("ignore pattern " + p + ": " + e.what());
        }
    }
    ojson config = ojson::parse(read_file(in_dir / "config.json"), nullptr, false);
    if (config.is_discarded() || !config.is_object())
        throw std::runtime_error((in_dir / "config.json").string() + ": not a JSON object");
    if (config.contains("quantization_config"))
        throw std::runtime_error((in_dir / "config.json").string() + " already has a quantization_config");
    config["quantization_config"] = quantization_config(opt.ignore);

    auto in = SafeTensorSet::open(bf16_dir);
    std::vector<OutTensor> tensors = plan(*in, opt.ignore);
    auto shards = shard(tensors, opt.max_shard_bytes);

    QuantizeSummary sum;
    sum.shards = shards.size();
    for (const OutTensor& t : tensors) {
        sum.out_bytes += t.nbytes;
        if (t.kind == OutTensor::Copy) ++sum.copied;
        if (t.kind == OutTensor::Packed) ++sum.quantized;
        if (t.kind == OutTensor::Copy || t.kind == OutTensor::Packed) sum.in_bytes += t.src->nbytes;
    }

    TempDir tmp(dest);
    uint64_t done = 0;
    const TensorView* cached_src = nullptr;  // the linear whose three output tensors are in `cached`
    Nvfp4Weight cached;
    ojson weight_map = ojson::object();
    for (size_t s = 0; s < shards.size(); ++s) {
        std::string file = shards.size() == 1 ? "model.safetensors" : shard_name(s, shards.size());
        SafetensorsWriter w;
        w.set_metadata("format", "pt");
        for (const OutTensor* t : shards[s]) {
            w.declare(t->name, t->dtype, t->shape);
            weight_map[t->name] = file;
        }
        w.open((tmp.path() / file).string());
        for (const OutTensor* t : shards[s]) {
            const TensorView& v = *t->src;
            if (t->kind == OutTensor::Copy) {
                w.write(t->name, v.data, v.nbytes);
                release(v);
                done += v.nbytes;
            } else {
                if (cached_src != &v) {
                    try {
                        cached = quantize_nvfp4(reinterpret_cast<const uint16_t*>(v.data), v.shape[0], v.shape[1],
                                                opt.threads);
                    } catch (const std::exception& e) {
                        throw std::runtime_error(v.file + ": " + v.name + ": " + e.what() + " (skip it with --ignore)");
                    }
                    cached_src = &v;
                    release(v);
                    done += v.nbytes;
                }
                if (t->kind == OutTensor::GlobalScale) w.write(t->name, &cached.global_scale, 4);
                if (t->kind == OutTensor::Packed) w.write(t->name, cached.packed.data(), cached.packed.size());
                if (t->kind == OutTensor::Scale) w.write(t->name, cached.scales.data(), cached.scales.size());
            }
            if (opt.progress) opt.progress(done, sum.in_bytes);
        }
        w.close();
    }

    write_file(tmp.path() / "config.json", config.dump(2));
    if (shards.size() > 1) {
        ojson index = {{"metadata", {{"total_size", sum.out_bytes}}}, {"weight_map", weight_map}};
        write_file(tmp.path() / "model.safetensors.index.json", index.dump(2) + "\n");
    }
    for (const auto& e : fs::directory_iterator(in_dir)) {
        std::string n = e.path().filename().string();
        if (!e.is_regular_file() || n == "config.json" || n == "model.safetensors.index.json" ||
            e.path().extension() == ".safetensors")
            continue;
        fs::copy_file(e.path(), tmp.path() / n);
    }
    tmp.commit(opt.force);
    return sum;
}

CheckReport check_checkpoint(const std::string& bf16_dir, const std::string& nvfp4_dir, int threads,
                             const std::function<void(uint64_t, uint64_t)>& progress) {
    auto ref = SafeTensorSet::open(bf16_dir);
    auto q = SafeTensorSet::open(nvfp4_dir);
    CheckReport rep;
    uint64_t done = 0, total = ref->total_bytes();
    for (const std::string& name : ref->names()) {
        const TensorView& w = ref->get(name);
        std::string module;
        const TensorView* packed = is_decoder_linear(name, &module) ? q->find(module + ".weight_packed") : nullptr;
        if (packed) {
            const TensorView& sc = q->get(module + ".weight_scale");
            const TensorView& gs = q->get(module + ".weight_global_scale");
            if (w.dtype != DType::BF16 || w.shape.size() != 2 || w.shape[1] % 16 != 0 || packed->dtype != DType::U8 ||
                packed->shape != std::vector<int64_t>{w.shape[0], w.shape[1] / 2} || sc.dtype != DType::F8_E4M3 ||
                sc.shape != std::vector<int64_t>{w.shape[0], w.shape[1] / 16} || gs.dtype != DType::F32 ||
                gs.nbytes != 4)
                throw std::runtime_error(module + ": NVFP4 tensors do not match the BF16 weight " + shape_str(w.shape));
            int64_t rows = w.shape[0], cols = w.shape[1];
            float g;
            std::memcpy(&g, gs.data, 4);
            std::vector<double> num(size_t(std::max(1, threads)), 0.0), den(num.size(), 0.0);
            parallel_ranges(rows, threads, [&](int64_t r0, int64_t r1, int i) {
                std::vector<float> d(static_cast<size_t>(cols));
                const uint16_t* src = reinterpret_cast<const uint16_t*>(w.data);
                double err2 = 0, ref2 = 0;
                for (int64_t r = r0; r < r1; ++r) {
                    fp4::dequant_nvfp4_row(packed->data + r * cols / 2, sc.data + r * cols / 16, g, cols, d.data());
                    for (int64_t k = 0; k < cols; ++k) {
                        double x = fp4::bf16_to_f32(src[r * cols + k]), e = d[size_t(k)] - x;
                        err2 += e * e;
                        ref2 += x * x;
                    }
                }
                num[size_t(i)] = err2;
                den[size_t(i)] = ref2;
            });
            double n = 0, dd = 0;
            for (size_t i = 0; i < num.size(); ++i) n += num[i], dd += den[i];
            rep.linears.push_back({module, dd > 0 ? std::sqrt(n / dd) : (n > 0 ? INFINITY : 0.0)});
            release(*packed);
            release(sc);
        } else if (const TensorView* c = q->find(name)) {
            bool same = c->dtype == w.dtype && c->shape == w.shape && c->nbytes == w.nbytes &&
                        std::memcmp(c->data, w.data, w.nbytes) == 0;
            if (same) ++rep.copied_same;
            else rep.copied_differ.push_back(name);
            release(*c);
        } else {
            rep.missing.push_back(name);
        }
        release(w);
        done += w.nbytes;
        if (progress) progress(done, total);
    }
    return rep;
}

}  // namespace mistral
