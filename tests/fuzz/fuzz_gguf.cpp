// Arbitrary bytes as a GGUF file: the header parser, then, for what it accepts, the metadata
// readers the loader runs (ModelSpec, vocabulary) and the tokenizer built from it. Each must
// return a value or an error for every input, never crash, and an accepted file must hold
// the promises the weight loader relies on (checked below; a broken promise aborts).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>

#include "engine/model/gguf.h"
#include "engine/model/gguf_model.h"
#include "engine/tokenizer/ggml_vocabulary.h"

namespace {

// The loader reads file_offset .. file_offset + size_bytes of each tensor with no further
// checks, and the kernels read whole blocks per row.
void check_file(const sparkd::model::GgufFile& file) {
  // (A file without tensors may end before its padded data section would start.)
  if (file.data_offset > file.file_size_bytes ||
      (!file.tensors.empty() && file.data_offset % file.alignment != 0)) {
    std::abort();
  }
  for (const auto& tensor : file.tensors) {
    if (tensor.file_offset < file.data_offset) std::abort();
    if (tensor.size_bytes > file.file_size_bytes - tensor.file_offset) std::abort();
    if (tensor.shape.empty() || tensor.shape.size() > 4) std::abort();
    const auto traits = sparkd::dtype_traits(tensor.dtype);
    if (tensor.shape.back() % traits.block_elements != 0) std::abort();
    uint64_t numel = 1;
    for (int64_t dim : tensor.shape) {
      if (dim <= 0) std::abort();
      numel *= static_cast<uint64_t>(dim);  // cannot wrap: the bytes fit in the file
    }
    if (numel / traits.block_elements * traits.block_bytes != tensor.size_bytes) std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto file = sparkd::model::parse_gguf_bytes(std::span<const uint8_t>(data, size), "fuzz.gguf");
  if (!file) return 0;
  check_file(*file);
  sparkd::model::GgufModel model;
  model.parts.push_back(std::move(*file));
  auto spec = sparkd::model::gguf_model_spec(model);
  if (spec) {
    if (spec->vocab_size <= 0 || spec->num_heads % spec->num_kv_heads != 0 ||
        spec->head_dim % 2 != 0) {
      std::abort();
    }
  }
  auto vocabulary = sparkd::model::gguf_vocabulary(model);
  // Building a tokenizer is linear in the vocabulary (merges: quadratic in token length), so
  // the fuzzer's inputs, capped at a few KiB, stay fast.
  if (vocabulary) {
    auto tokenizer = sparkd::tokenizer::tokenizer_from_ggml_vocabulary(*vocabulary, "fuzz.gguf");
    if (tokenizer) (void)(*tokenizer)->encode("Hello, world! 123 <|im_start|>", true);
  }
  return 0;
}
