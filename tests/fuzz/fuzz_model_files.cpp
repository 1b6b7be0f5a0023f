// Arbitrary bytes as a safetensors file prefix or as config.json text. The first byte picks
// the parser (even: safetensors, odd: config.json); the rest is its input. Either parser
// must return a value or an error for every input, never crash, and what it accepts must
// hold the promises the loader relies on (checked below; a broken promise aborts).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <span>
#include <string_view>

#include "engine/model/model_spec.h"
#include "engine/model/safetensors.h"

namespace {

// The loader reads file_offset .. file_offset + size_bytes for each tensor with no further
// checks, so an accepted header must keep every tensor inside the file, apart and sized
// by its shape.
void check_header(const sparkd::model::SafetensorsHeader& header, uint64_t file_size_bytes) {
  if (header.data_offset < 8 || header.data_offset > file_size_bytes) std::abort();
  uint64_t previous_end = header.data_offset;
  for (const sparkd::model::SafetensorsTensorInfo& tensor : header.tensors) {
    if (tensor.file_offset < header.data_offset) std::abort();
    if (tensor.size_bytes > file_size_bytes - tensor.file_offset) std::abort();
    if (tensor.size_bytes > 0) {
      if (tensor.file_offset < previous_end) std::abort();  // sorted and apart
      previous_end = tensor.file_offset + tensor.size_bytes;
    }
    uint64_t numel = 1;
    for (int64_t dim : tensor.shape) {
      if (dim < 0) std::abort();
      numel *= static_cast<uint64_t>(dim);  // cannot wrap: the bytes fit in the file
    }
    if (numel * sparkd::dtype_size_bytes(tensor.dtype) != tensor.size_bytes) std::abort();
  }
}

void check_spec(const sparkd::model::ModelSpec& spec) {
  if (spec.vocab_size <= 0 || spec.hidden_size <= 0 || spec.intermediate_size <= 0 ||
      spec.num_layers <= 0 || spec.num_heads <= 0 || spec.num_kv_heads <= 0 || spec.head_dim <= 0 ||
      spec.max_position_embeddings <= 0) {
    std::abort();
  }
  if (spec.num_heads % spec.num_kv_heads != 0) std::abort();
  if (spec.is_decoder && spec.head_dim % 2 != 0) std::abort();
  if (!(spec.norm_eps > 0.0f) || !(spec.rope.theta > 0.0f)) std::abort();
  if (spec.task == sparkd::model::ModelTask::kRerank &&
      (spec.num_labels <= 0 || spec.labels.size() != static_cast<size_t>(spec.num_labels))) {
    std::abort();
  }
  for (int32_t id : spec.eos_token_ids) {
    if (id < 0 || id >= spec.vocab_size) std::abort();
  }
  if (spec.bos_token_id >= spec.vocab_size) std::abort();
  if (spec.position_offset < 0 || spec.position_offset >= spec.max_position_embeddings) {
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const std::span<const uint8_t> input(data + 1, size - 1);
  if (data[0] % 2 == 0) {
    // The real file size, and sizes that disagree with the bytes at hand: shorter (the file
    // was cut), longer (the data area is not in the prefix) and absurd.
    const uint64_t sizes[] = {input.size(), input.size() / 2, input.size() + 1,
                              input.size() + (uint64_t{1} << 20),
                              std::numeric_limits<uint64_t>::max()};
    for (uint64_t file_size_bytes : sizes) {
      auto header = sparkd::model::parse_safetensors_header(input, file_size_bytes, "fuzz");
      if (header) check_header(*header, file_size_bytes);
    }
  } else {
    const std::string_view text(reinterpret_cast<const char*>(input.data()), input.size());
    auto spec = sparkd::model::parse_model_config(text, "fuzz/config.json");
    if (spec) check_spec(*spec);
  }
  return 0;
}
