// golden.h — test support: the golden outputs of a fixture folder (golden.safetensors + golden.json) and
// the error measures the acceptance criteria use.
#pragma once

#include <cmath>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "safetensors.h"

class Golden {
public:
    explicit Golden(const std::string& dir)
        : set_(mistral::SafeTensorSet::open_files({dir + "/golden.safetensors"})) {
        std::ifstream f(dir + "/golden.json");
        if (!f) throw std::runtime_error("cannot open " + dir + "/golden.json");
        json_ = nlohmann::json::parse(f);
    }
    const nlohmann::json& cases() const { return json_["cases"]; }
    const nlohmann::json& find_case(const std::string& name) const {
        for (const auto& c : cases())
            if (c["name"] == name) return c;
        throw std::runtime_error("no golden case " + name);
    }
    bool has(const std::string& name) const { return set_->find(name) != nullptr; }
    std::vector<float> f32(const std::string& name) const { return read<float>(name, mistral::DType::F32); }
    std::vector<int32_t> i32(const std::string& name) const { return read<int32_t>(name, mistral::DType::I32); }

private:
    template <class T>
    std::vector<T> read(const std::string& name, mistral::DType want) const {
        const mistral::TensorView& v = set_->get(name);
        if (v.dtype != want) throw std::runtime_error("golden " + name + " has an unexpected dtype");
        std::vector<T> out(v.nbytes / sizeof(T));
        std::memcpy(out.data(), v.data, v.nbytes);
        return out;
    }
    std::unique_ptr<mistral::SafeTensorSet> set_;
    nlohmann::json json_;
};

// ‖a − b‖ / ‖b‖ (infinite when the sizes differ).
inline double rel_err(const std::vector<float>& a, const std::vector<float>& b) {
    if (a.size() != b.size()) return INFINITY;
    double num = 0, den = 0;
    for (size_t i = 0; i < a.size(); ++i) {
        double d = double(a[i]) - double(b[i]);
        num += d * d;
        den += double(b[i]) * double(b[i]);
    }
    return std::sqrt(num) / (std::sqrt(den) + 1e-30);
}

inline double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
    if (a.size() != b.size()) return INFINITY;
    double m = 0;
    for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::fabs(double(a[i]) - double(b[i])));
    return m;
}
