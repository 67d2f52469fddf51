// quantize.h — BF16 → NVFP4A16 as compressed-tensors writes it (`nvfp4-pack-quantized`): one matrix, a
// whole checkpoint folder streamed tensor by tensor, and the check of a result against its BF16 source.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "quant_scheme.h"

namespace mistral {

// One [rows, cols] matrix in NVFP4: E2M1 codes [rows, cols/2] (even column in the low nibble), E4M3
// scales [rows, cols/16], and the global scale, a divisor: w ≈ code · scale / global_scale.
struct Nvfp4Weight {
    std::vector<uint8_t> packed, scales;
    float global_scale = 0;
};

// compressed-tensors' arithmetic, in its order and its dtypes (F32):
//   global scale  = 448·6 / max|W|                                     (generate_gparam)
//   group scale   = e4m3(clamp(global · (max|group| / 6), ±448)), 0 → 0.125   (calculate_qparams)
//   code          = e2m1(clamp(w / (f32(scale) / global), ±6))        (_quantize, cast_to_fp4)
float nvfp4_global_scale(float amax);
uint8_t nvfp4_group_scale(float group_amax, float global_scale);
// Rows [row0, row1) of a BF16 matrix with `cols` columns (a multiple of 16); `packed` and `scales` point
// at the start of the whole outputs.
void quantize_nvfp4_rows(const uint16_t* bf16, int64_t cols, float global_scale, int64_t row0, int64_t row1,
                         uint8_t* packed, uint8_t* scales);
// The whole matrix, rows split over `threads` std::threads. Throws when cols % 16 != 0, or when max|W|
// is zero or not finite (no usable global scale).
Nvfp4Weight quantize_nvfp4(const uint16_t* bf16, int64_t rows, int64_t cols, int threads);

// `lm_head`, the vision tower and the projector, as LLM Compressor's Mistral3 recipes leave them.
std::vector<std::string> default_ignore();
// Whether `tensor` is the weight of a text-decoder Linear (q/k/v/o_proj, gate/up/down_proj of
// `*layers.N.*`); sets `module` to the name without `.weight`.
bool is_decoder_linear(const std::string& tensor, std::string* module);

struct QuantizeOptions {
    std::vector<std::string> ignore = default_ignore();  // the whole list; also written to config.json
    int threads = 1;
    bool force = false;                        // replace a non-empty OUT_DIR
    uint64_t max_shard_bytes = 5000000000ull;  // one model.safetensors when the output fits, else shards
    std::function<void(uint64_t done, uint64_t total)> progress;  // input tensor bytes
};

struct QuantizeSummary {
    size_t quantized = 0, copied = 0, shards = 0;
    uint64_t in_bytes = 0, out_bytes = 0;
};

// Reads the BF16 checkpoint in `bf16_dir` (mmap, single file or shards) and writes the NVFP4A16 one to
// `out_dir`: tensors in name order, config.json with its quantization_config, the other small files
// copied. Everything is written to `out_dir.tmp-XXXXXX` and renamed at the end; on any error the
// temporary folder is removed and `out_dir` is left as it was. Throws std::runtime_error.
QuantizeSummary quantize_checkpoint(const std::string& bf16_dir, const std::string& out_dir,
                                    const QuantizeOptions& opt);

struct CheckReport {
    struct Linear {
        std::string name;  // module name
        double rel_error;  // ‖dequant − bf16‖ / ‖bf16‖
    };
    std::vector<Linear> linears;
    size_t copied_same = 0;
    std::vector<std::string> copied_differ;  // tensors whose bytes, dtype or shape changed
    std::vector<std::string> missing;        // BF16 tensors with no counterpart in the NVFP4 folder
};

// Compares an NVFP4 folder against the BF16 one it came from.
CheckReport check_checkpoint(const std::string& bf16_dir, const std::string& nvfp4_dir, int threads,
                             const std::function<void(uint64_t done, uint64_t total)>& progress = {});

}  // namespace mistral
