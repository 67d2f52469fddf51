// fuzz_index.cpp — libFuzzer target: model.safetensors.index.json through SafeTensorSet::open, in a
// scratch folder holding two valid shards (a.safetensors: "x", b.safetensors: "y"). Either a
// std::runtime_error, or a set whose every index entry names a tensor of the shard it lists.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>

#include "safetensors.h"

namespace fs = std::filesystem;

namespace {

void write_shard(const fs::path& p, const std::string& tensor) {
    const std::string header = "{\"" + tensor + "\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]}}";
    std::string bytes(8, '\0');
    for (int i = 0; i < 8; ++i) bytes[i] = char(uint64_t(header.size()) >> (8 * i));
    std::ofstream(p, std::ios::binary) << bytes << header << "ab";
}

// The scratch folder, removed when the fuzzer exits.
struct Scratch {
    fs::path dir = fs::temp_directory_path() / ("fuzz_index_" + std::to_string(getpid()));
    Scratch() {
        fs::create_directories(dir);
        write_shard(dir / "a.safetensors", "x");
        write_shard(dir / "b.safetensors", "y");
    }
    ~Scratch() { fs::remove_all(dir); }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static const Scratch scratch;
    const fs::path& dir = scratch.dir;
    std::ofstream(dir / "model.safetensors.index.json", std::ios::binary | std::ios::trunc)
        .write(reinterpret_cast<const char*>(data), std::streamsize(size));
    try {
        auto set = mistral::SafeTensorSet::open(dir.string());
        const nlohmann::json wm = nlohmann::json::parse(data, data + size)["weight_map"];
        for (auto it = wm.begin(); it != wm.end(); ++it) {
            const mistral::TensorView* t = set->find(it.key());
            if (!t || t->file != dir.string() + "/" + it.value().get<std::string>()) std::abort();
        }
    } catch (const std::runtime_error&) {
    }
    return 0;
}
