// Floats -> ggml's quantized blocks, for quantizing safetensors weights once at load
// (`quantize = "q4_k"` in config.toml). Runs once per weight, so it is plain portable code.
//
// Q4_0, Q4_1, Q5_0, Q5_1 and Q8_0 are ggml's reference quantizers (quantize_row_*_ref), byte
// for byte what llama-quantize and the gguf package write (tests compare with the latter).
// Q4_K, Q5_K and Q6_K use round-to-nearest with min-max (or max-magnitude) sub-block scales,
// themselves rounded to 6 or 8 bits: valid blocks every kernel reads, simpler and slightly
// less accurate than llama-quantize's iterative scale search.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "engine/backend/tensor.h"

namespace sparkd::quant {

// The dtype named by a config value ("q8_0", "q4_k", ...; case-insensitive), when sparkd can
// quantize to it.
std::optional<DType> quantize_target(std::string_view name);
// "q4_0, q4_1, q5_0, q5_1, q8_0, q4_k, q5_k, q6_k", for error messages.
std::string quantize_target_names();

// `count` floats (a whole number of dtype's blocks) -> blocks at `dst`.
void quantize_row(const float* src, int64_t count, DType dtype, void* dst);

}  // namespace sparkd::quant
