// sparkctl --json: one JSON object per command, built from the daemon's final response.
// Header-only so the unit tests (which do not link the sparkctl program) can check it.
//
// The object is the command's payload message (EmbedResponse, RerankResponse, the assembled
// GenerateChunk, TokenizeResponse, DetokenizeResponse, ListModelsResponse, StatusResponse,
// HealthResponse, AdminResponse) as protobuf's JSON mapping writes it (proto field names,
// default-valued scalars included), with two members added from the response envelope:
// "usage" (embed, rerank, generate, tokenize) and "timing" (every command).
#pragma once

#include <google/protobuf/util/json_util.h>

#include <string>
#include <vector>

#include "api/sparkd.pb.h"
#include "common/status.h"

namespace sparkd::sparkctl {

// protobuf's JSON for `message`: proto field names (token_ids, not tokenIds) and every scalar
// field even when it holds its default, so scripts always find the keys they look for.
inline Expected<std::string> message_to_json(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.always_print_primitive_fields = true;
  options.preserve_proto_field_names = true;
  std::string json;
  const auto status = google::protobuf::util::MessageToJsonString(message, &json, options);
  if (!status.ok()) {
    return Status(StatusCode::kInternal,
                  "cannot convert the response to JSON: " + std::string(status.message()));
  }
  return json;
}

// Whether the command's response carries token usage (the daemon sets it on these only).
inline bool command_reports_usage(const std::string& command) {
  return command == "embed" || command == "rerank" || command == "generate" ||
         command == "tokenize";
}

// The payload message of `final_response` for `command`; an empty message of the right type
// when the daemon sent none. generate's payload is assembled by assemble_generate() instead.
inline const google::protobuf::Message& response_payload(const std::string& command,
                                                         const v1::Response& final_response) {
  if (command == "embed") return final_response.embed();
  if (command == "rerank") return final_response.rerank();
  if (command == "generate") return final_response.generate();
  if (command == "tokenize") return final_response.tokenize();
  if (command == "detokenize") return final_response.detokenize();
  if (command == "models") return final_response.list_models();
  if (command == "status") return final_response.status();
  if (command == "health") return final_response.health();
  return final_response.admin();  // load, unload, reload
}

// A whole generation from its responses (stream chunks and the final one, in order): text,
// reasoning, tool calls and token ids concatenated, finish_reason of the last chunk that names
// one.
inline v1::GenerateChunk assemble_generate(const std::vector<v1::Response>& responses) {
  v1::GenerateChunk assembled;
  for (const v1::Response& response : responses) {
    if (!response.has_generate()) continue;
    const v1::GenerateChunk& chunk = response.generate();
    assembled.mutable_text()->append(chunk.text());
    assembled.mutable_reasoning()->append(chunk.reasoning());
    assembled.mutable_tool_calls()->MergeFrom(chunk.tool_calls());
    assembled.mutable_token_ids()->MergeFrom(chunk.token_ids());
    assembled.mutable_logprobs()->MergeFrom(chunk.logprobs());
    if (!chunk.finish_reason().empty()) assembled.set_finish_reason(chunk.finish_reason());
  }
  return assembled;
}

// `payload`'s JSON object with "usage" (when `usage` is given) and "timing" appended.
inline Expected<std::string> result_json(const google::protobuf::Message& payload,
                                         const v1::Usage* usage, const v1::Timing& timing) {
  SPARKD_ASSIGN_OR_RETURN(std::string json, message_to_json(payload));
  // protobuf writes one object, "{...}" or "{}": reopen it to add the envelope's members.
  if (json.size() < 2 || json.front() != '{' || json.back() != '}') {
    return Status(StatusCode::kInternal, "protobuf wrote JSON that is not an object: " + json);
  }
  json.pop_back();
  bool empty_object = json.size() == 1;
  if (usage != nullptr) {
    SPARKD_ASSIGN_OR_RETURN(const std::string usage_json, message_to_json(*usage));
    json += (empty_object ? "" : ",") + std::string("\"usage\":") + usage_json;
    empty_object = false;
  }
  SPARKD_ASSIGN_OR_RETURN(const std::string timing_json, message_to_json(timing));
  json += (empty_object ? "" : ",") + std::string("\"timing\":") + timing_json + "}";
  return json;
}

// The --json object for `command` from all its responses (the last one final, no error).
inline Expected<std::string> command_result_json(const std::string& command,
                                                 const std::vector<v1::Response>& responses) {
  if (responses.empty()) return Status(StatusCode::kInternal, "no response to print");
  const v1::Response& final_response = responses.back();
  const v1::Usage* usage = command_reports_usage(command) ? &final_response.usage() : nullptr;
  if (command == "generate") {
    return result_json(assemble_generate(responses), usage, final_response.timing());
  }
  return result_json(response_payload(command, final_response), usage, final_response.timing());
}

}  // namespace sparkd::sparkctl
