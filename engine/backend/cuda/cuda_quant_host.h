// The GPU's dequantization (cuda_quant.cuh) run on the host, so that tests check its
// arithmetic and value order against the CPU's reference on machines without a GPU.
#pragma once

#include <cstdint>

#include "engine/backend/tensor.h"

namespace sparkd::cuda {

// `count` values (whole blocks) of quantized `dtype` at `blocks` into `out`, through the
// GPU kernels' dequantize_chunk. Returns false for a float dtype.
bool dequantize_as_gpu(const void* blocks, DType dtype, int64_t count, float* out);

}  // namespace sparkd::cuda
