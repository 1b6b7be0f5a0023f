// The CUDA backend: every Backend op on one GPU, checked op by op against the CPU backend
// (tests/gpu). Activations are F32 (the CPU's arithmetic, so the architectures run unchanged);
// weights stay as stored (16-bit or quantized) and are read as such by the decode kernels;
// prefill GEMMs run on the tensor cores in BF16 with F32 accumulation.
#pragma once

#include <memory>

#include "common/status.h"
#include "engine/backend/backend.h"

namespace sparkd {

// The KV cache's dtype on the GPU unless CudaBackendOptions::f32_kv: half the memory and the
// bandwidth of F32, the precision the model was trained in. The governor's footprints use it
// (placement.h) before a backend exists.
inline constexpr DType kCudaKvDtype = DType::kBF16;

struct CudaBackendOptions {
  int device = 0;
  // Prefill GEMMs in F32 (no tensor cores) instead of BF16 inputs: the reference runs that
  // compare whole models with the CPU token for token.
  bool f32_gemm = false;
  // Split-KV attention: 0 decides per call (split when (rows x heads) blocks would leave the
  // GPU idle and the context is long), > 0 always splits keys into chunks of this many
  // positions, < 0 never splits. The tests force both ways.
  int attention_split_keys = 0;
  // Tiled attention for prefill rows: 0 decides per call (tiles when the rows are mostly
  // prefill), > 0 always tiles where the head size fits the device, < 0 never. The tests
  // force both ways.
  int attention_tiling = 0;
  // An F32 KV cache instead of kCudaKvDtype (whole-model tests against F32 references).
  bool f32_kv = false;
};

// Errors: UNAVAILABLE when this binary was built without CUDA, no driver or no such device
// is present, or the device cannot be initialised.
Expected<std::unique_ptr<Backend>> make_cuda_backend(const CudaBackendOptions& options = {});

}  // namespace sparkd
