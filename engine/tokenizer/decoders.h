// Decoders: ByteLevel, WordPiece, Metaspace, ByteFallback, Fuse, Strip, Replace, Sequence
// (and BPEDecoder). They turn token strings back into text.
#pragma once

#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

namespace sparkd::tokenizer {

class Decoder {
 public:
  virtual ~Decoder() = default;
  // One step of the chain: tokens in, (fewer or transformed) tokens out.
  virtual std::vector<std::string> decode_chain(std::vector<std::string> tokens) const = 0;
  // The whole decode: the chain's output concatenated.
  std::string decode(std::vector<std::string> tokens) const;
};

// Throws ConfigError naming the unsupported "type" or the malformed field.
std::unique_ptr<Decoder> make_decoder(const nlohmann::json& config);

}  // namespace sparkd::tokenizer
