// Where a model's files are, from the reference a user writes in config.toml or `sparkctl
// load`:
//   /path/to/model-dir            a Hugging Face directory (config.json, *.safetensors) or a
//                                 directory holding one GGUF model (a file or a split set)
//   /path/to/model.gguf           a GGUF file, or any part of a split set
//   ollama:NAME[:TAG]             a model pulled by Ollama: its manifest in $OLLAMA_MODELS
//                                 (default ~/.ollama/models) names the GGUF blob
//   hf:ORG/NAME[@REVISION]        a repository in the Hugging Face cache ($HF_HUB_CACHE,
//                                 $HF_HOME/hub or ~/.cache/huggingface/hub): its snapshot
//                                 for the revision (default "main"), then as a directory
// A snapshot directory of the Hugging Face cache may also be given as a plain path.
#pragma once

#include <string>
#include <string_view>

#include "common/model_reference.h"
#include "common/status.h"

namespace sparkd::model {

enum class ModelFormat { kSafetensors, kGguf };

struct ModelLocation {
  ModelFormat format = ModelFormat::kSafetensors;
  // The directory (safetensors) or the GGUF file (the first part of a split set).
  std::string path;
};

// Resolves `reference`; NOT_FOUND / INVALID_ARGUMENT name what was looked for and where.
Expected<ModelLocation> locate_model(const std::string& reference);

}  // namespace sparkd::model
