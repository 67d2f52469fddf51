// checkpoint.cpp — name normalisation, the checkpoint as a WeightSource (each weight weight_layout.h
// names, dense or NVFP4, with dtype/shape checks), and the validation + prefault pass over the bound bytes.
#include "checkpoint.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <stdexcept>

#include "config.h"
#include "weight_layout.h"

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif

namespace mistral {

namespace {

bool starts_with(const std::string& s, const std::string& p) { return s.compare(0, p.size(), p) == 0; }

bool dense_type(DType d, fp4::Type* out) {
    switch (d) {
        case DType::F32: *out = fp4::Type::F32; return true;
        case DType::F16: *out = fp4::Type::F16; return true;
        case DType::BF16: *out = fp4::Type::BF16; return true;
        default: return false;
    }
}

// Binds checkpoint tensors (by canonical name) to fp4 leaves owned by a Weights.
class Binder final : public WeightSource {
public:
    Binder(const SafeTensorSet& set, const std::string& dir, const Config& cfg, Weights& w,
           std::map<std::string, std::string>& role)
        : dir_(dir), cfg_(cfg), w_(w), role_(role) {
        for (const std::string& name : set.names()) {
            const TensorView* t = set.find(name);
            auto [it, fresh] = by_canon_.emplace(canonical_name(name), t);
            if (!fresh)
                throw std::runtime_error(t->file + ": tensors '" + it->second->name + "' and '" + name +
                                         "' both map to '" + it->first + "'");
        }
    }

    bool has(const std::string& canon) const override { return by_canon_.count(canon) != 0; }

    // The file tensor that holds an NVFP4 leaf's scales (for error messages).
    const TensorView* scale_source(const fp4::Tensor* t) const { return scale_src_.at(t); }

protected:
    fp4::Tensor* make_dense(const std::string& canon, const std::vector<int64_t>& shape, const std::string& role,
                            const std::vector<int64_t>& ne) override {
        const TensorView* t = find(canon, "BF16/F16/F32 " + shape_str(shape));
        fp4::Type type;
        if (!dense_type(t->dtype, &type))
            fail(*t, std::string("has dtype ") + dtype_name(t->dtype) + ", expected BF16, F16 or F32");
        check_shape(*t, shape);
        fp4::Tensor* x = make(type, ne, canon);
        x->data = const_cast<uint8_t*>(t->data);
        role_[t->name] = role;
        return x;
    }

    // NVFP4 when `X.weight_packed` exists, else dense `X.weight`; refused where that disagrees with
    // config.json's quantization_config.
    fp4::Tensor* make_linear(const std::string& x, int64_t out, int64_t in, const std::string& role,
                             const std::string& cls) override {
        check_scheme(x, cls);
        if (!has(x + ".weight_packed")) {
            if (!has(x + ".weight"))
                throw std::runtime_error(dir_ + ": missing tensor '" + x + ".weight' (BF16/F16/F32 " +
                                         shape_str({out, in}) + ") or NVFP4 '" + x + ".weight_packed' (U8 " +
                                         shape_str({out, in / 2}) + ")");
            return dense(x + ".weight", {out, in}, role);
        }
        if (in % 16) throw std::runtime_error(dir_ + ": '" + x + "' has " + std::to_string(in) +
                                              " inputs, not a multiple of the NVFP4 group of 16");
        const TensorView* codes = typed(x + ".weight_packed", DType::U8, {out, in / 2});
        const TensorView* scales = typed(x + ".weight_scale", DType::F8_E4M3, {out, in / 16});
        const TensorView* g = find(x + ".weight_global_scale", "F32 [1]");
        if (g->dtype != DType::F32) fail(*g, std::string("has dtype ") + dtype_name(g->dtype) + ", expected F32");
        if (g->numel() != 1 || g->shape.size() > 1) fail(*g, "has shape " + shape_str(g->shape) + ", expected [1]");
        float gs;
        std::memcpy(&gs, g->data, 4);
        if (!std::isfinite(gs) || gs <= 0) {
            char buf[32];
            std::snprintf(buf, sizeof buf, "%g", double(gs));
            fail(*g, std::string("holds global scale ") + buf + ", expected a finite positive number");
        }

        fp4::Tensor* t = make(fp4::Type::NVFP4, {in, out}, x + ".weight_packed");
        t->data = const_cast<uint8_t*>(codes->data);
        t->scale = const_cast<uint8_t*>(scales->data);
        t->gscale = gs;
        scale_src_[t] = scales;
        role_[codes->name] = role + " (NVFP4 codes)";
        role_[scales->name] = role + " (NVFP4 scales)";
        role_[g->name] = role + " (NVFP4 global scale)";
        return t;
    }

private:
    // Refuses a module stored dense where quantization_config quantizes it, or NVFP4 where it does not.
    void check_scheme(const std::string& x, const std::string& cls) const {
        const bool packed = has(x + ".weight_packed");
        if (!packed && !has(x + ".weight")) return;  // linear() names what is missing
        const TensorView* t = by_canon_.at(x + (packed ? ".weight_packed" : ".weight"));
        const std::string stored = t->name.substr(0, t->name.rfind(".weight"));
        std::string why = "config.json has no quantization_config";
        bool want = false;
        try {
            want = !cfg_.quant_format.empty() && cfg_.quant.quantizes({stored, x}, cls, &why);
        } catch (const std::invalid_argument& e) {
            fail(*t, std::string("cannot be matched against quantization_config: ") + e.what());
        }
        if (want && !packed)
            fail(*t, "is dense, but quantization_config quantizes " + cls + " '" + stored +
                         "' (NVFP4 '" + stored + ".weight_packed' expected)");
        if (!want && packed) fail(*t, "is NVFP4, but " + cls + " '" + stored + "' should be dense: " + why);
    }

    [[noreturn]] void fail(const TensorView& t, const std::string& what) const {
        throw std::runtime_error(t.file + ": tensor '" + t.name + "' " + what);
    }
    const TensorView* find(const std::string& canon, const std::string& expect) const {
        auto it = by_canon_.find(canon);
        if (it == by_canon_.end())
            throw std::runtime_error(dir_ + ": missing tensor '" + canon + "' (expected " + expect + ")");
        return it->second;
    }
    void check_shape(const TensorView& t, const std::vector<int64_t>& shape) const {
        if (t.shape != shape) fail(t, "has shape " + shape_str(t.shape) + ", expected " + shape_str(shape));
    }
    const TensorView* typed(const std::string& canon, DType d, const std::vector<int64_t>& shape) const {
        const TensorView* t = find(canon, std::string(dtype_name(d)) + " " + shape_str(shape));
        if (t->dtype != d) fail(*t, std::string("has dtype ") + dtype_name(t->dtype) + ", expected " + dtype_name(d));
        check_shape(*t, shape);
        return t;
    }
    fp4::Tensor* make(fp4::Type type, const std::vector<int64_t>& ne, const std::string& name) {
        w_.owned.push_back(fp4::make_tensor(type, ne, name));
        return w_.owned.back().get();
    }

    std::string dir_;
    const Config& cfg_;
    Weights& w_;
    std::map<std::string, std::string>& role_;
    std::map<std::string, const TensorView*> by_canon_;
    std::map<const fp4::Tensor*, const TensorView*> scale_src_;
};

// Reads every bound byte once: NaN checks on the NVFP4 scales, page prefault of the rest.
void scan(const Binder& b, const Weights& w, const LoadOptions& opt) {
    const std::vector<fp4::Tensor*> all = w.all();
    size_t total = 0, done = 0, reported = 0;
    for (const fp4::Tensor* t : all) total += t->nbytes() + t->scale_bytes();
    const size_t kStep = 64u << 20;
    auto advance = [&](size_t n) {
        done += n;
        if (opt.progress && (done - reported >= kStep || done == total)) {
            reported = done;
            opt.progress(done, total);
        }
    };
    if (opt.progress) opt.progress(0, total);
    const size_t page = size_t(::sysconf(_SC_PAGESIZE));
    for (const fp4::Tensor* t : all) {
        if (t->type == fp4::Type::NVFP4) {
            const uint8_t* s = static_cast<const uint8_t*>(t->scale);
            const size_t n = t->scale_bytes();
            for (size_t i = 0; i < n; ++i) {
                if ((s[i] & 0x7f) == 0x7f) {
                    const TensorView* src = b.scale_source(t);
                    throw std::runtime_error(src->file + ": tensor '" + src->name + "' holds a NaN E4M3 scale at row " +
                                             std::to_string(i / size_t(t->ne[0] / 16)) + ", group " +
                                             std::to_string(i % size_t(t->ne[0] / 16)));
                }
            }
            advance(n);
        }
        const size_t n = t->nbytes();
        if (opt.prefault && n > 0) {
            const uint8_t* p = static_cast<const uint8_t*>(t->data);
            for (size_t off = 0; off < n; off += kStep) {
                const size_t len = std::min(kStep, n - off);
                uintptr_t a = reinterpret_cast<uintptr_t>(p + off) & ~uintptr_t(page - 1);
                uintptr_t e = reinterpret_cast<uintptr_t>(p + off + len);
                if (::madvise(reinterpret_cast<void*>(a), e - a, MADV_POPULATE_READ) != 0) {
                    volatile uint8_t sink = 0;  // kernels before 5.14: touch one byte per page
                    for (uintptr_t q = a; q < e; q += page) sink = sink + *reinterpret_cast<const uint8_t*>(q);
                }
                advance(len);
            }
        } else {
            advance(n);
        }
    }
    if (opt.progress && reported != total) opt.progress(total, total);
}

}  // namespace

std::string canonical_name(const std::string& name) {
    static const std::pair<std::string, std::string> kRules[] = {
        {"language_model.model.", kTextPrefix},
        {"language_model.lm_head.", "lm_head."},
        {"vision_tower.", kVisionPrefix},
        {"multi_modal_projector.", kProjectorPrefix},
        {"model.embed_tokens.", kTextPrefix + "embed_tokens."},
        {"model.layers.", kTextPrefix + "layers."},
        {"model.norm.", kTextPrefix + "norm."},
    };
    for (const auto& [from, to] : kRules)
        if (starts_with(name, from)) return to + name.substr(from.size());
    return name;
}

std::unique_ptr<Checkpoint> Checkpoint::open(const std::string& dir, const LoadOptions& opt) {
    auto ck = std::unique_ptr<Checkpoint>(new Checkpoint());
    ck->dir_ = dir;
    ck->config_ = load_config(dir + "/config.json");
    ck->tensors_ = SafeTensorSet::open(dir);

    Binder b(*ck->tensors_, dir, ck->config_, ck->weights_, ck->role_);
    bind_text(b, ck->config_, ck->weights_);
    if (ck->config_.has_vision && !opt.text_only) bind_vision(b, ck->config_, ck->weights_);
    if (opt.text_only) ck->config_.has_vision = false;
    scan(b, ck->weights_, opt);

    if (opt.verbose)
        for (const std::string& n : ck->unused()) std::fprintf(stderr, "loader: unused tensor %s\n", n.c_str());
    return ck;
}

std::vector<std::string> Checkpoint::unused() const {
    std::vector<std::string> out;
    for (const std::string& n : tensors_->names())
        if (!role_.count(n)) out.push_back(n);
    return out;
}

std::vector<std::string> Checkpoint::describe() const {
    std::vector<std::string> out;
    for (const std::string& n : tensors_->names()) {
        const TensorView& t = tensors_->get(n);
        auto it = role_.find(n);
        char buf[128];
        std::snprintf(buf, sizeof buf, "  %-8s %-22s %12zu B  -> ", dtype_name(t.dtype), shape_str(t.shape).c_str(),
                      t.nbytes);
        out.push_back(n + buf + (it == role_.end() ? std::string("unused") : it->second));
    }
    return out;
}

}  // namespace mistral
