// Model references that name a store, not a path: "ollama:NAME[:TAG]" (Ollama's local store)
// and "hf:ORG/NAME[@REVISION]" (the Hugging Face cache). Shared by the config, the protocol and
// the clients, which make relative paths absolute but must leave these as they are; the
// engine resolves them (engine/model/model_location.h).
#pragma once

#include <string_view>

namespace sparkd {

inline bool is_store_reference(std::string_view reference) {
  return reference.starts_with("ollama:") || reference.starts_with("hf:");
}

}  // namespace sparkd
