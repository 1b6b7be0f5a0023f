// A tokenizer rebuilt from the vocabulary a GGUF file carries (its tokenizer.ggml.* keys).
//
// GGUF stores the raw vocabulary (tokens, their types and scores, BPE merges) plus two names
// that select llama.cpp's algorithm: tokenizer.ggml.model ("gpt2": byte-level BPE; "llama":
// SentencePiece-style BPE over scores with byte fallback; "bert": WordPiece) and, for gpt2,
// tokenizer.ggml.pre (which pre-tokenizer regexes split the text first). Here they become the
// equivalent Hugging Face tokenizer.json pipeline (as transformers' GGUF loader builds it),
// which the Tokenizer already runs exactly; the regexes are llama.cpp's own, applied in turn
// as isolated splits, as llama.cpp applies them.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "engine/tokenizer/tokenizer.h"

namespace sparkd::tokenizer {

// llama.cpp's token types (tokenizer.ggml.token_type).
enum class GgmlTokenType : int32_t {
  kUndefined = 0,
  kNormal = 1,
  kUnknown = 2,
  kControl = 3,
  kUserDefined = 4,
  kUnused = 5,
  kByte = 6,
};

struct GgmlVocabulary {
  std::string model;  // tokenizer.ggml.model
  std::string pre;    // tokenizer.ggml.pre ("" when absent)
  std::vector<std::string> tokens;
  std::vector<float> scores;         // empty when absent
  std::vector<int32_t> token_types;  // empty when absent (all normal)
  std::vector<std::string> merges;   // "left right", gpt2 only
  std::optional<int32_t> bos_id, eos_id, unknown_id, separator_id, padding_id, mask_id;
  std::optional<bool> add_bos, add_eos, add_space_prefix;
  // bert: tokenizer.ggml.normalizer.lowercase / .strip_accents (llama.cpp's defaults: no
  // lowercasing; accents stripped when lowercasing).
  std::optional<bool> lowercase, strip_accents;
};

// The pre-tokenizer names (tokenizer.ggml.pre) sparkd knows, for error messages.
std::vector<std::string> supported_ggml_pre_tokenizers();

// The Tokenizer for `vocabulary`; `source` names the file in errors. UNIMPLEMENTED for a
// tokenizer model or pre-tokenizer sparkd does not know, INVALID_ARGUMENT for inconsistent
// arrays or ids.
Expected<std::shared_ptr<const Tokenizer>> tokenizer_from_ggml_vocabulary(
    const GgmlVocabulary& vocabulary, const std::string& source);

}  // namespace sparkd::tokenizer
