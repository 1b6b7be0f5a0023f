// gpt-oss's expert tensors, as its safetensors checkpoints store them, turned into the layout
// the decoder binds.
//
// gpt-oss keeps each layer's experts fused. In float checkpoints (what transformers saves):
//   mlp.experts.gate_up_proj       [experts, hidden, 2·inter]  used as x @ W; gate and up are
//                                                               the even and odd columns
//   mlp.experts.gate_up_proj_bias  [experts, 2·inter]          interleaved the same way
//   mlp.experts.down_proj          [experts, inter, hidden]    x @ W
//   mlp.experts.down_proj_bias     [experts, hidden]
// and as OpenAI released them, the two matrices in MXFP4, each as a pair of U8 tensors with
// the rows in Linear's [out, in] order:
//   <matrix>_blocks [experts, out, in / 32, 16]  two E2M1 codes a byte, value 2i in the low
//                                                nibble, 2i + 1 in the high one
//   <matrix>_scales [experts, out, in / 32]      E8M0 exponents (2^(e - 127))
// The decoder binds mlp.experts.{gate,up,down}_proj.weight as [experts, out, in] (nn.Linear's
// order, and GGUF's *_exps) with F32 biases [experts, out]: float matrices are transposed and
// de-interleaved in their own dtype; MXFP4 ones are repacked block by block into ggml's MXFP4
// (byte j: value j low, value j + 16 high; the exponent first), which the quantized kernels run.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "common/status.h"
#include "engine/backend/tensor.h"
#include "engine/model/safetensors.h"

namespace sparkd::model {

// A stored tensor, by where its bytes are.
struct StoredTensor {
  std::string path;  // its file
  uint64_t file_size_bytes = 0;
  std::string name;
  uint64_t file_offset = 0;
  uint64_t size_bytes = 0;
};

struct DerivedTensor {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
};

// Tensors the loader builds on the host from stored ones: it reads every source whole, gives
// derive() their bytes (in source order) and one host buffer per output (in output order, each
// of the output's size), and loads the results under the outputs' names.
struct DerivedTensors {
  std::vector<StoredTensor> sources;
  std::vector<DerivedTensor> outputs;
  std::function<void(std::span<const uint8_t* const> sources, std::span<uint8_t* const> outputs)>
      derive;
};

// Takes gpt-oss's fused expert tensors (above) out of `headers` and returns how to build the
// decoder's. Shapes are checked here, so derive() cannot be handed bytes it misreads; a U8
// tensor that is not one of a blocks/scales pair of an expert matrix is refused.
Expected<std::vector<DerivedTensors>> plan_gpt_oss_experts(std::vector<SafetensorsHeader>& headers);

}  // namespace sparkd::model
