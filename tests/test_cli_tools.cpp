// test_cli_tools.cpp — the logits and bench binaries as a user runs them: logits written as safetensors
// equal the goldens, bench's JSON carries every field with positive rates, and bad input is one error line.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "cli.h"
#include "golden.h"

namespace {

std::string join(const std::vector<int32_t>& ids) {
    std::string s;
    for (int32_t id : ids) s += (s.empty() ? "" : ",") + std::to_string(id);
    return s;
}

int error_lines(const std::string& err) {
    int n = 0;
    for (size_t at = err.find("error:"); at != std::string::npos; at = err.find("error:", at + 1)) ++n;
    return n;
}

}  // namespace

TEST_CASE("logits: a golden case with an image, written as safetensors") {
    Golden gold("tests/data/tiny-kjv/golden");
    const std::string out = (cli::tmp_dir() / "logits.safetensors").string();
    cli::Run r = cli::run("logits --device cpu -m tests/data/tiny-kjv/nvfp4 --ids " + join(gold.i32("shape_red_circle.ids")) +
                          " --image tests/data/tiny-kjv/images/red_circle.png --hidden -o " + out);
    REQUIRE_MESSAGE(r.rc == 0, r.err);
    auto set = mistral::SafeTensorSet::open_files({out});
    const mistral::TensorView& v = set->get("logits");
    std::vector<float> got(v.nbytes / 4);
    std::memcpy(got.data(), v.data, v.nbytes);
    CHECK(rel_err(got, gold.f32("shape_red_circle.logits_nvfp4")) <= 1e-3);
    CHECK(set->find("hidden.4") != nullptr);
}

TEST_CASE("logits: wrong image count, bad ids and a prompt beyond the context are one error line") {
    Golden gold("tests/data/tiny-kjv/golden");
    const std::string ids = join(gold.i32("shape_red_circle.ids"));
    const std::string out = " -o " + (cli::tmp_dir() / "x.safetensors").string();
    for (const std::string& args :
         {"logits --device cpu -m tests/data/tiny-kjv/nvfp4 --ids " + ids + out,
          "logits --device cpu -m tests/data/tiny-kjv/nvfp4 --ids 1,x,3" + out,
          "logits --device cpu -m tests/data/tiny-kjv/nvfp4 --ids 1,999999" + out,
          "logits --device cpu -m tests/data/tiny-kjv/nvfp4 -c 4 --ids 1,2,3,4,5,6" + out}) {
        cli::Run r = cli::run(args);
        INFO(args << "\n" << r.err);
        CHECK(r.rc == 1);
        CHECK(error_lines(r.err) == 1);
    }
}

TEST_CASE("bench: JSON with every field and positive rates") {
    cli::Run r = cli::run("bench --device cpu -m tests/data/tiny-kjv/nvfp4 -p 64 -n 32 -r 2 -np 2 --prompt-len 8 "
                          "--image-size 56 -o json");
    REQUIRE_MESSAGE(r.rc == 0, r.err);
    nlohmann::json j = nlohmann::json::parse(r.out);
    REQUIRE(j.size() == 4);
    for (const auto& row : j) {
        for (const char* key : {"model", "backend", "test", "avg_ts", "stddev_ts", "ttft_ms", "weight_bytes_per_token",
                                "bandwidth_gbs", "effective_gbs", "ceiling_ratio", "peak_host_mem_gb", "device_mem_gb"})
            CHECK_MESSAGE(row.contains(key), key);
        CHECK(row["avg_ts"].get<double>() > 0);
        CHECK(row["bandwidth_gbs"].get<double>() > 0);
        CHECK(row["samples_ts"].size() == 2);
    }
    CHECK(j[0]["test"] == "pp64");
    CHECK(j[1]["test"] == "tg32");
    CHECK(j[1]["ceiling_ratio"].get<double>() > 0);
    CHECK(j[0]["compute_peak_gflops"].get<double>() > 0);  // the CPU's FMA peak: a prefill's ceiling
    CHECK(j[0]["ceiling_ratio"].get<double>() > 0);
    CHECK(j[2]["test"] == "np2 pp8+tg32");
    CHECK(j[3]["test"] == "img56");  // 2x2 [IMG] tokens through the tower
    CHECK(j[3]["ttft_ms"].get<double>() > 0);
    CHECK(j[3]["flops_per_token"].get<double>() > 0);  // an image is compute bound too: against the same peak
    CHECK(j[3]["ceiling_ratio"].get<double>() > 0);
    // Without a prefill test the compute peak is not measured (0), nor named in the table's footer.
    cli::Run tg = cli::run("bench --device cpu -m tests/data/tiny-kjv/nvfp4 -p 0 -n 8 -r 1 -o json");
    REQUIRE_MESSAGE(tg.rc == 0, tg.err);
    CHECK(nlohmann::json::parse(tg.out)[0]["compute_peak_gflops"].get<double>() == 0);
    cli::Run md = cli::run("bench --device cpu -m tests/data/tiny-kjv/nvfp4 -p 0 -n 8 -r 1");
    CHECK(md.out.find("compute peak") == std::string::npos);
}

TEST_CASE("bench -d: pp and tg after tokens already in the cache, with the cache's bytes in the ceiling") {
    cli::Run r = cli::run("bench --device cpu -m tests/data/tiny-kjv/nvfp4 -p 16 -n 8 -d 0,600 -r 1 -o json");
    REQUIRE_MESSAGE(r.rc == 0, r.err);
    nlohmann::json j = nlohmann::json::parse(r.out);
    REQUIRE(j.size() == 4);
    CHECK(j[0]["test"] == "pp16");
    CHECK(j[1]["test"] == "tg8");
    CHECK(j[2]["test"] == "pp16 @ d600");  // 600 tokens filled in two passes (512 + 88)
    CHECK(j[3]["test"] == "tg8 @ d600");
    CHECK(j[3]["n_depth"] == 600);
    // F32 cache, 4 layers of 2 KV heads × 128: 8 KiB per token; a step reads ~600 + 4.5 tokens of it.
    CHECK(j[3]["kv_bytes_per_step"].get<double>() == doctest::Approx(8192.0 * 604.5));
    CHECK(j[1]["kv_bytes_per_step"].get<double>() == doctest::Approx(8192.0 * 4.5));
    CHECK(j[0]["kv_bytes_per_step"].get<double>() == 0);
    // Per prefill token: 2 FLOPs per weight of the 4 layers' products (4 × 1,441,792) and of lm_head (5120 ×
    // 256) once per pass of 16, and 4 × 8 heads × 128 per layer and key seen (8.5 on average; 600 more).
    CHECK(j[0]["flops_per_token"].get<double>() ==
          doctest::Approx(2.0 * 4 * 1441792 + 2.0 * 5120 * 256 / 16 + 4.0 * 4 * 8 * 128 * 8.5));
    CHECK(j[2]["flops_per_token"].get<double>() - j[0]["flops_per_token"].get<double>() ==
          doctest::Approx(4.0 * 4 * 8 * 128 * 600));
    cli::Run bad = cli::run("bench --device cpu -m tests/data/tiny-kjv/nvfp4 -p 16 -n 0 -d 5,x");
    CHECK(bad.rc == 1);
    CHECK(bad.err.find("-d: 'x' is not a non-negative number") != std::string::npos);
}

TEST_CASE("bench -ub: prefill in passes of -ub tokens, named in the table only where -ub is given") {
    const std::string base = "bench --device cpu -m tests/data/tiny-kjv/nvfp4 -p 1024 -r 1";
    cli::Run r = cli::run(base + " -n 4 -ub 64,2048 -o json");
    REQUIRE_MESSAGE(r.rc == 0, r.err);
    nlohmann::json j = nlohmann::json::parse(r.out);
    REQUIRE(j.size() == 3);
    CHECK(j[0]["test"] == "pp1024");
    CHECK(j[0]["n_ubatch"] == 64);
    CHECK(j[1]["n_ubatch"] == 2048);
    CHECK(j[2]["test"] == "tg4");
    CHECK(j[2]["n_ubatch"] == 0);
    // Passes of 64 tokens need a far smaller activation arena than one pass of 1024.
    auto memory = [&](const std::string& ub) {
        cli::Run one = cli::run(base + " -n 0 -ub " + ub + " -o json");
        REQUIRE_MESSAGE(one.rc == 0, one.err);
        return nlohmann::json::parse(one.out)[0]["device_mem_gb"].get<double>();
    };
    CHECK(memory("64") * 3 < memory("2048"));
    cli::Run md = cli::run(base + " -n 0 -ub 128");
    CHECK(md.out.find("| threads | n_ubatch | test |") != std::string::npos);
    CHECK(md.out.find("| 128 | pp1024 |") != std::string::npos);
    CHECK(cli::run(base + " -n 0").out.find("n_ubatch") == std::string::npos);
    cli::Run zero = cli::run(base + " -n 0 -ub 0");
    CHECK(zero.rc == 1);
    CHECK(zero.err.find("error: -ub: 0 tokens per pass") != std::string::npos);
}

TEST_CASE("bench --profile: the per-kernel breakdown of decode steps, single and batched") {
    cli::Run r = cli::run("bench --device cpu -m tests/data/tiny-kjv/nvfp4 -p 0 -n 4 -r 1 -np 3 --prompt-len 5 --profile");
    REQUIRE_MESSAGE(r.rc == 0, r.err);
    CHECK(r.out.find("| MUL_MAT NVFP4 ") != std::string::npos);  // the decoder's projections
    CHECK(r.out.find("| ATTN_CACHED | 4.0 |") != std::string::npos);  // once per layer and step (4 layers)
    CHECK(r.out.find("16 decode steps of 1 sequence,") != std::string::npos);
    CHECK(r.out.find("4 decode steps of 3 sequences,") != std::string::npos);
    CHECK(r.out.find("| total |") != std::string::npos);
    // Products also give the rate they read their weights at, and its share of the measured bandwidth.
    auto line_of = [&](const std::string& start) {
        const size_t at = r.out.find(start);
        return at == std::string::npos ? std::string() : r.out.substr(at, r.out.find('\n', at) - at);
    };
    auto ends_with = [](const std::string& s, const std::string& end) {
        return s.size() >= end.size() && s.compare(s.size() - end.size(), end.size(), end) == 0;
    };
    CHECK(ends_with(line_of("| MUL_MAT NVFP4 256x1024 |"), "% |"));
    CHECK(ends_with(line_of("| ATTN_CACHED |"), "|  |  |"));
}

// What scripts/device-check.sh asks of bench --synthetic (pp and tg, after a depth, -np, the vision tower,
// the per-kernel tables), scaled down: every row there, with a positive rate. On the CPU, and in the
// emulator build also on its CUDA device, so that the one GPU run a session gets is not lost to a crash.
TEST_CASE("bench --synthetic: what the device check runs, vision tower included") {
    std::vector<std::string> devices = {"cpu"};
#ifdef FP4_TEST_CUDA_EMU
    devices.push_back("cuda");
#endif
    for (const std::string& device : devices) {
        cli::Run r = cli::run("bench --device " + device + " --synthetic tests/data/tiny-kjv/nvfp4/config.json -p 16 "
                              "-ub 8,16 -n 4 -d 0,32 -r 1 -np 2 --prompt-len 8 --image-size 56 --profile -o json");
        INFO(device << ": " << r.err);
        REQUIRE(r.rc == 0);
        nlohmann::json j = nlohmann::json::parse(r.out);
        std::vector<std::string> tests;
        std::vector<int> ubs;
        for (const auto& row : j) {
            tests.push_back(row["test"]);
            ubs.push_back(row["n_ubatch"]);
            CHECK(row["avg_ts"].get<double>() > 0);
            if (device == "cuda") CHECK(row["backend"] == "CUDA (CPU emulator)");  // the card's name
        }
        CHECK(tests == std::vector<std::string>{"pp16", "pp16", "tg4", "pp16 @ d32", "pp16 @ d32", "tg4 @ d32",
                                                "np2 pp8+tg4", "img56"});
        CHECK(ubs == std::vector<int>{8, 16, 0, 8, 16, 0, 0, 0});  // pp16 in two passes of 8, and in one
        CHECK(r.err.find("| MUL_MAT NVFP4 ") != std::string::npos);  // the tables: on stderr with -o json
        CHECK(r.err.find("decode steps of 2 sequences,") != std::string::npos);
        // And the image's: the tower's products, its attention, once each.
        const size_t image = r.err.find("| kernel (one 56x56 image, each timed alone) | calls/image | us/image |");
        CHECK(image != std::string::npos);
        CHECK(r.err.find("| ATTN_FULL |", image) != std::string::npos);
        CHECK(r.err.find("| IM2COL_PATCH | 1.0 |", image) != std::string::npos);
    }
}

TEST_CASE("bench: neither or both of -m and --synthetic is an error") {
    cli::Run r = cli::run("bench --device cpu -p 8 -n 0");
    CHECK(r.rc == 1);
    CHECK(error_lines(r.err) == 1);
}

TEST_CASE("bench, quantize, kld: a bad whole number is one error line that names it and its range") {
    const std::pair<const char*, const char*> cases[] = {
        {"bench --synthetic x --parallel 4,16", "error: --parallel: 4,16 is not a whole number >= 1 (see --help)"},
        {"quantize in out -t 0", "error: --threads: 0 is not a whole number >= 1 (see --help)"},
        {"kld -m x -f y --top-k-only -2", "error: --top-k-only: -2 is not a whole number >= 0 (see --help)"},
    };
    for (const auto& [args, line] : cases) {
        CAPTURE(args);
        cli::Run r = cli::run(args);
        CHECK(r.rc == 1);
        CHECK(error_lines(r.err) == 1);
        CHECK(r.err.find(line) != std::string::npos);
    }
}
