#include "engine/backend/cuda/cuda_quant.cuh"
#include "engine/backend/cuda/cuda_quant_host.h"

namespace sparkd::cuda {

bool dequantize_as_gpu(const void* blocks, DType dtype, int64_t count, float* out) {
  return dispatch_quantized(dtype, [&](auto type) {
    const auto* row = static_cast<const uint8_t*>(blocks);
    for (int64_t chunk = 0; chunk < count / kChunk; ++chunk) {
      dequantize_chunk<decltype(type)::value>(row, chunk, out + chunk * kChunk);
    }
  });
}

}  // namespace sparkd::cuda
