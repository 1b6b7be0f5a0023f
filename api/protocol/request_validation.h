// Turning a frame's payload into a sparkd.v1.Request the daemon can act on: parsing that
// refuses what a schema mismatch would silently lose, and the field checks that need no model.
// Checks that need the model (vocabulary size, context length) happen later, in the engine.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "api/sparkd.pb.h"
#include "common/status.h"

namespace sparkd::api {

struct RequestLimits {
  size_t max_inputs = 1024;         // embed inputs / rerank documents per request
  size_t max_text_bytes = 1 << 20;  // any one input, document, query, prompt or message
  size_t max_stop_strings = 16;
  size_t max_stop_string_bytes = 256;
  size_t max_logit_bias = 1024;
  size_t max_chat_messages = 1024;
  uint32_t max_logprobs = 20;
};

// Parses a payload as sparkd.v1.Request. Bytes that are not one (bad wire format, a truncated
// message, invalid UTF-8 in a string field) -> INVALID_ARGUMENT "the frame is not a
// sparkd.v1.Request: <what was wrong where>". Unknown fields anywhere in the message tree ->
// INVALID_ARGUMENT "unknown field 99 in sparkd.v1.EmbedRequest (at embed) ...": a client built
// from a newer or wrong schema must hear about it rather than have its options ignored.
Expected<v1::Request> parse_request(std::string_view payload);

// The id (field 1 of sparkd.v1.Request, last occurrence wins as in protobuf) of a payload that
// parse_request refused, read by walking its top-level fields: the error then reaches the
// caller that sent it. 0 when no id can be read (the payload is too broken, or has none).
uint64_t recover_request_id(std::string_view payload);

// The name of the request's kind ("embed", "list_models", ...), "none" when unset.
std::string_view request_kind_name(const v1::Request& request);
// The model a request names (embed/rerank/generate/tokenize/detokenize.model, load/unload.name);
// "" for the kinds that name none.
const std::string& request_model(const v1::Request& request);

// Field-level checks that need no model: INVALID_ARGUMENT naming the field path, e.g.
// "generate.sampling.top_p must be in (0, 1], got 1.5"; or OK. The id must not be 0 (the id
// of errors about the connection).
Status validate_request(const v1::Request& request, const RequestLimits& limits);

}  // namespace sparkd::api
