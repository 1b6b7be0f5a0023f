#include "api/protocol/request_validation.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/message.h>
#include <google/protobuf/unknown_field_set.h>
#include <google/protobuf/wire_format_lite.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/model_name.h"
#include "common/model_reference.h"

namespace sparkd::api {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;

Status invalid(std::string message) {
  return Status(StatusCode::kInvalidArgument, std::move(message));
}

// ---- parse diagnosis ---------------------------------------------------------------------
// ParseFromArray says only "no". To tell the client what was wrong, a failed parse is walked
// again here, field by field, against the schema.

// The UTF-8 protobuf accepts in proto3 strings: no overlong forms, no surrogates, nothing
// above U+10FFFF.
bool is_valid_utf8(std::string_view text) {
  size_t i = 0;
  while (i < text.size()) {
    const auto lead = static_cast<unsigned char>(text[i]);
    if (lead < 0x80) {
      ++i;
      continue;
    }
    size_t continuation_bytes = 0;
    unsigned char second_min = 0x80;
    unsigned char second_max = 0xBF;
    if (lead >= 0xC2 && lead <= 0xDF) {
      continuation_bytes = 1;
    } else if (lead >= 0xE0 && lead <= 0xEF) {
      continuation_bytes = 2;
      if (lead == 0xE0) second_min = 0xA0;  // overlong
      if (lead == 0xED) second_max = 0x9F;  // surrogates
    } else if (lead >= 0xF0 && lead <= 0xF4) {
      continuation_bytes = 3;
      if (lead == 0xF0) second_min = 0x90;  // overlong
      if (lead == 0xF4) second_max = 0x8F;  // above U+10FFFF
    } else {
      return false;
    }
    if (text.size() - i - 1 < continuation_bytes) return false;
    for (size_t k = 1; k <= continuation_bytes; ++k) {
      const auto byte = static_cast<unsigned char>(text[i + k]);
      const unsigned char low = k == 1 ? second_min : 0x80;
      const unsigned char high = k == 1 ? second_max : 0xBF;
      if (byte < low || byte > high) return false;
    }
    i += continuation_bytes + 1;
  }
  return true;
}

// The first reason `bytes` are not a valid `type`, or "" when the walk finds none.
std::string diagnose_parse_failure(const Descriptor& type, std::string_view bytes,
                                   int depth_remaining) {
  if (depth_remaining <= 0) return "messages are nested too deeply";
  google::protobuf::io::CodedInputStream input(reinterpret_cast<const uint8_t*>(bytes.data()),
                                               static_cast<int>(bytes.size()));
  while (static_cast<size_t>(input.CurrentPosition()) < bytes.size()) {
    const uint32_t tag = input.ReadTag();
    const auto field_number = static_cast<int>(tag >> 3);
    if (tag == 0 || field_number == 0) {
      return "a field tag of " + type.full_name() + " is malformed";
    }
    const FieldDescriptor* field = type.FindFieldByNumber(field_number);
    const std::string where =
        field != nullptr ? "field " + field->full_name()
                         : "field " + std::to_string(field_number) + " of " + type.full_name();
    switch (tag & 7) {
      case 0: {  // varint
        uint64_t ignored = 0;
        if (!input.ReadVarint64(&ignored)) return where + " is cut off";
        break;
      }
      case 1: {  // fixed64
        uint64_t ignored = 0;
        if (!input.ReadLittleEndian64(&ignored)) return where + " is cut off";
        break;
      }
      case 5: {  // fixed32
        uint32_t ignored = 0;
        if (!input.ReadLittleEndian32(&ignored)) return where + " is cut off";
        break;
      }
      case 2: {  // length-delimited
        uint32_t length = 0;
        if (!input.ReadVarint32(&length)) return where + " has a malformed length";
        const auto start = static_cast<size_t>(input.CurrentPosition());
        if (length > bytes.size() - start) {
          return where + " declares " + std::to_string(length) + " bytes but only " +
                 std::to_string(bytes.size() - start) + " follow (the message is truncated)";
        }
        const std::string_view value = bytes.substr(start, length);
        if (field != nullptr && field->type() == FieldDescriptor::TYPE_STRING &&
            !is_valid_utf8(value)) {
          return where + " is not valid UTF-8 (string fields must be UTF-8 text)";
        }
        if (field != nullptr && field->type() == FieldDescriptor::TYPE_MESSAGE) {
          std::string inner =
              diagnose_parse_failure(*field->message_type(), value, depth_remaining - 1);
          if (!inner.empty()) return inner;
        }
        input.Skip(static_cast<int>(length));
        break;
      }
      default:  // groups (3, 4) are proto2-only and 6, 7 do not exist
        return where + " uses wire type " + std::to_string(tag & 7) +
               ", which no sparkd.v1 field has";
    }
  }
  return "";
}

// ---- unknown fields ----------------------------------------------------------------------

Status check_no_unknown_fields(const Message& message, const std::string& path) {
  const Reflection& reflection = *message.GetReflection();
  const google::protobuf::UnknownFieldSet& unknown = reflection.GetUnknownFields(message);
  if (!unknown.empty()) {
    return invalid("unknown field " + std::to_string(unknown.field(0).number()) + " in " +
                   message.GetDescriptor()->full_name() + " (at " + path +
                   "): the client was built from a different api/sparkd.proto than this "
                   "daemon's; update the client or drop the field");
  }
  std::vector<const FieldDescriptor*> fields;
  reflection.ListFields(message, &fields);
  for (const FieldDescriptor* field : fields) {
    if (field->cpp_type() != FieldDescriptor::CPPTYPE_MESSAGE) continue;
    const std::string field_path = path == "request" ? field->name() : path + "." + field->name();
    if (field->is_repeated()) {
      const int count = reflection.FieldSize(message, field);
      for (int i = 0; i < count; ++i) {
        SPARKD_RETURN_IF_ERROR(
            check_no_unknown_fields(reflection.GetRepeatedMessage(message, field, i),
                                    field_path + "[" + std::to_string(i) + "]"));
      }
    } else {
      SPARKD_RETURN_IF_ERROR(
          check_no_unknown_fields(reflection.GetMessage(message, field), field_path));
    }
  }
  return Status::ok();
}

// ---- field checks ------------------------------------------------------------------------

std::string format_number(double value) {
  char text[32];
  std::snprintf(text, sizeof(text), "%g", value);
  return text;
}

std::string indexed(const std::string& path, int index) {
  return path + "[" + std::to_string(index) + "]";
}

// A client's text in an error message: quoted, control characters escaped, long text cut at a
// character boundary (the message is a proto3 string: it must stay valid UTF-8).
std::string quoted_excerpt(std::string_view text) {
  constexpr size_t kMaxShownBytes = 80;
  size_t shown = std::min(text.size(), kMaxShownBytes);
  while (shown > 0 && shown < text.size() &&
         (static_cast<unsigned char>(text[shown]) & 0xC0) == 0x80) {
    --shown;
  }
  std::string quoted = "\"";
  for (size_t i = 0; i < shown; ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c == '"' || c == '\\') {
      quoted += '\\';
      quoted += static_cast<char>(c);
    } else if (c < 0x20 || c == 0x7f) {
      char escaped[8];
      std::snprintf(escaped, sizeof(escaped), "\\x%02x", c);
      quoted += escaped;
    } else {
      quoted += static_cast<char>(c);
    }
  }
  quoted += '"';
  if (shown < text.size()) quoted += "... (" + std::to_string(text.size()) + " bytes)";
  return quoted;
}

Status check_model(const std::string& model, const std::string& path) {
  if (model.empty()) {
    return invalid(path + " is empty (name a model the daemon serves; list_models shows them)");
  }
  return Status::ok();
}

// A text that may be empty but must fit max_text_bytes.
Status check_text_size(const std::string& text, const std::string& path,
                       const RequestLimits& limits) {
  if (text.size() > limits.max_text_bytes) {
    return invalid(path + " is " + std::to_string(text.size()) +
                   " bytes, more than max_text_bytes " + std::to_string(limits.max_text_bytes) +
                   " (split or shorten it)");
  }
  return Status::ok();
}

Status check_nonempty_text(const std::string& text, const std::string& path,
                           const RequestLimits& limits) {
  if (text.empty()) return invalid(path + " is empty");
  return check_text_size(text, path, limits);
}

// embed.inputs and rerank.documents: 1..max_inputs non-empty texts.
Status check_text_list(const google::protobuf::RepeatedPtrField<std::string>& texts,
                       const std::string& path, const RequestLimits& limits) {
  if (texts.empty()) return invalid(path + " is empty (give at least one text)");
  if (static_cast<size_t>(texts.size()) > limits.max_inputs) {
    return invalid(path + " has " + std::to_string(texts.size()) +
                   " entries, more than max_inputs " + std::to_string(limits.max_inputs) +
                   " (split the request)");
  }
  for (int i = 0; i < texts.size(); ++i) {
    SPARKD_RETURN_IF_ERROR(check_nonempty_text(texts[i], indexed(path, i), limits));
  }
  return Status::ok();
}

Status check_finite(float value, const std::string& path) {
  if (!std::isfinite(value)) {
    return invalid(path + " must be a finite number, got " + format_number(value));
  }
  return Status::ok();
}

// value in [low, high] (or (low, high] when low_open).
Status check_range(float value, const std::string& path, double low, double high,
                   bool low_open = false) {
  SPARKD_RETURN_IF_ERROR(check_finite(value, path));
  const bool below = low_open ? value <= low : value < low;
  if (below || value > high) {
    return invalid(path + " must be in " + (low_open ? "(" : "[") + format_number(low) + ", " +
                   format_number(high) + "], got " + format_number(value));
  }
  return Status::ok();
}

// keep_alive_s, when set: any finite number (negative = until memory is needed).
template <typename R>
Status check_keep_alive(const R& request, const std::string& path) {
  if (!request.has_keep_alive_s()) return Status::ok();
  return check_finite(static_cast<float>(request.keep_alive_s()), path + ".keep_alive_s");
}

Status validate_embed(const v1::EmbedRequest& embed, const RequestLimits& limits) {
  SPARKD_RETURN_IF_ERROR(check_model(embed.model(), "embed.model"));
  SPARKD_RETURN_IF_ERROR(check_keep_alive(embed, "embed"));
  return check_text_list(embed.inputs(), "embed.inputs", limits);
}

Status validate_rerank(const v1::RerankRequest& rerank, const RequestLimits& limits) {
  SPARKD_RETURN_IF_ERROR(check_model(rerank.model(), "rerank.model"));
  SPARKD_RETURN_IF_ERROR(check_keep_alive(rerank, "rerank"));
  SPARKD_RETURN_IF_ERROR(check_nonempty_text(rerank.query(), "rerank.query", limits));
  return check_text_list(rerank.documents(), "rerank.documents", limits);
}

constexpr size_t kMaxRoleBytes = 64;

enum class JsonKind { kArray, kObject };

// A field that carries JSON as text: "" (none) or a document of `kind`, within the text limit.
Status check_json_text(const std::string& text, const std::string& path, JsonKind kind,
                       const RequestLimits& limits) {
  if (text.empty()) return Status::ok();
  SPARKD_RETURN_IF_ERROR(check_text_size(text, path, limits));
  const nlohmann::json parsed = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded()) return invalid(path + " is not valid JSON");
  const bool right_kind = kind == JsonKind::kArray ? parsed.is_array() : parsed.is_object();
  if (!right_kind) {
    const std::string got = parsed.type_name();
    const bool vowel = got == "object" || got == "array";
    return invalid(path + " must be a JSON " + (kind == JsonKind::kArray ? "array" : "object") +
                   ", got " + (got == "null" ? "" : vowel ? "an " : "a ") + got);
  }
  return Status::ok();
}

Status validate_chat(const v1::Chat& chat, const RequestLimits& limits) {
  const std::string path = "generate.chat.messages";
  if (chat.messages().empty()) return invalid(path + " is empty (give at least one message)");
  if (static_cast<size_t>(chat.messages_size()) > limits.max_chat_messages) {
    return invalid(path + " has " + std::to_string(chat.messages_size()) +
                   " entries, more than max_chat_messages " +
                   std::to_string(limits.max_chat_messages));
  }
  for (int i = 0; i < chat.messages_size(); ++i) {
    const v1::ChatMessage& message = chat.messages(i);
    const std::string message_path = indexed(path, i);
    const std::string& role = message.role();
    // Which roles a conversation may use is the model's chat template's to say (system,
    // user, assistant, and for some developer, tool, ipython, ...): here only their shape.
    const bool role_shaped =
        !role.empty() && role.size() <= kMaxRoleBytes &&
        std::all_of(role.begin(), role.end(), [](char c) {
          return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-';
        });
    if (!role_shaped) {
      return invalid(message_path + ".role is " + quoted_excerpt(role) + "; a role is 1 to " +
                     std::to_string(kMaxRoleBytes) +
                     " ASCII letters, digits, '_' or '-' (system, user, assistant, ...)");
    }
    if (message.content().empty() && role != "assistant") {
      return invalid(message_path + ".content is empty (only an assistant message may be empty)");
    }
    SPARKD_RETURN_IF_ERROR(check_text_size(message.content(), message_path + ".content", limits));
    SPARKD_RETURN_IF_ERROR(
        check_text_size(message.reasoning(), message_path + ".reasoning", limits));
    for (int c = 0; c < message.tool_calls_size(); ++c) {
      const v1::ToolCall& call = message.tool_calls(c);
      const std::string call_path = indexed(message_path + ".tool_calls", c);
      if (call.name().empty()) return invalid(call_path + ".name is empty");
      SPARKD_RETURN_IF_ERROR(
          check_json_text(call.arguments(), call_path + ".arguments", JsonKind::kObject, limits));
    }
  }
  SPARKD_RETURN_IF_ERROR(
      check_json_text(chat.tools_json(), "generate.chat.tools_json", JsonKind::kArray, limits));
  SPARKD_RETURN_IF_ERROR(check_json_text(chat.documents_json(), "generate.chat.documents_json",
                                         JsonKind::kArray, limits));
  return check_json_text(chat.template_variables_json(), "generate.chat.template_variables_json",
                         JsonKind::kObject, limits);
}

Status validate_sampling(const v1::Sampling& sampling, const RequestLimits& limits) {
  const std::string path = "generate.sampling.";
  if (sampling.has_temperature()) {
    SPARKD_RETURN_IF_ERROR(check_finite(sampling.temperature(), path + "temperature"));
    if (sampling.temperature() < 0.0f) {
      return invalid(path + "temperature must be >= 0 (0 = greedy), got " +
                     format_number(sampling.temperature()));
    }
  }
  if (sampling.top_k() < -1) {
    return invalid(path + "top_k must be >= -1 (0 or -1 = off), got " +
                   std::to_string(sampling.top_k()));
  }
  if (sampling.has_top_p()) {
    SPARKD_RETURN_IF_ERROR(check_range(sampling.top_p(), path + "top_p", 0.0, 1.0, true));
  }
  SPARKD_RETURN_IF_ERROR(check_range(sampling.min_p(), path + "min_p", 0.0, 1.0));
  if (sampling.has_repetition_penalty()) {
    SPARKD_RETURN_IF_ERROR(
        check_finite(sampling.repetition_penalty(), path + "repetition_penalty"));
    if (sampling.repetition_penalty() <= 0.0f) {
      return invalid(path + "repetition_penalty must be > 0 (1 = off), got " +
                     format_number(sampling.repetition_penalty()));
    }
  }
  SPARKD_RETURN_IF_ERROR(
      check_range(sampling.presence_penalty(), path + "presence_penalty", -2.0, 2.0));
  SPARKD_RETURN_IF_ERROR(
      check_range(sampling.frequency_penalty(), path + "frequency_penalty", -2.0, 2.0));
  if (sampling.logprobs() > limits.max_logprobs) {
    return invalid(path + "logprobs is " + std::to_string(sampling.logprobs()) +
                   ", more than max_logprobs " + std::to_string(limits.max_logprobs));
  }
  if (static_cast<size_t>(sampling.logit_bias_size()) > limits.max_logit_bias) {
    return invalid(path + "logit_bias has " + std::to_string(sampling.logit_bias_size()) +
                   " entries, more than max_logit_bias " + std::to_string(limits.max_logit_bias));
  }
  for (int i = 0; i < sampling.logit_bias_size(); ++i) {
    const v1::LogitBias& bias = sampling.logit_bias(i);
    const std::string bias_path = indexed(path + "logit_bias", i);
    if (bias.token_id() < 0) {
      return invalid(bias_path + ".token_id must be >= 0, got " + std::to_string(bias.token_id()));
    }
    SPARKD_RETURN_IF_ERROR(check_range(bias.bias(), bias_path + ".bias", -100.0, 100.0));
  }
  return Status::ok();
}

Status validate_generate(const v1::GenerateRequest& generate, const RequestLimits& limits) {
  SPARKD_RETURN_IF_ERROR(check_model(generate.model(), "generate.model"));
  SPARKD_RETURN_IF_ERROR(check_keep_alive(generate, "generate"));
  switch (generate.input_case()) {
    case v1::GenerateRequest::kPrompt:
      SPARKD_RETURN_IF_ERROR(check_nonempty_text(generate.prompt(), "generate.prompt", limits));
      break;
    case v1::GenerateRequest::kChat:
      SPARKD_RETURN_IF_ERROR(validate_chat(generate.chat(), limits));
      break;
    case v1::GenerateRequest::INPUT_NOT_SET:
      return invalid("generate has neither prompt nor chat (set exactly one)");
  }
  if (generate.has_sampling()) {
    SPARKD_RETURN_IF_ERROR(validate_sampling(generate.sampling(), limits));
  }
  if (static_cast<size_t>(generate.stop_size()) > limits.max_stop_strings) {
    return invalid("generate.stop has " + std::to_string(generate.stop_size()) +
                   " entries, more than max_stop_strings " +
                   std::to_string(limits.max_stop_strings));
  }
  for (int i = 0; i < generate.stop_size(); ++i) {
    const std::string stop_path = indexed("generate.stop", i);
    const std::string& stop = generate.stop(i);
    if (stop.empty()) return invalid(stop_path + " is empty");
    if (stop.size() > limits.max_stop_string_bytes) {
      return invalid(stop_path + " is " + std::to_string(stop.size()) +
                     " bytes, more than max_stop_string_bytes " +
                     std::to_string(limits.max_stop_string_bytes));
    }
  }
  for (int i = 0; i < generate.stop_token_ids_size(); ++i) {
    if (generate.stop_token_ids(i) < 0) {
      return invalid(indexed("generate.stop_token_ids", i) + " must be >= 0, got " +
                     std::to_string(generate.stop_token_ids(i)));
    }
  }
  return Status::ok();
}

Status validate_name(const std::string& name, const std::string& path) {
  if (name.empty()) return invalid(path + " is empty (name a model from the configuration)");
  if (!is_valid_model_name(name)) {
    return invalid(path + " must be " + std::string(kModelNameRule) + ", got " +
                   quoted_excerpt(name));
  }
  return Status::ok();
}

Status validate_load(const v1::LoadRequest& load) {
  SPARKD_RETURN_IF_ERROR(validate_name(load.name(), "load.name"));
  // The daemon's working directory means nothing to its clients (under systemd it is /).
  // Store references (ollama:NAME[:TAG], hf:ORG/NAME) are not paths.
  if (!load.path().empty() && load.path().front() != '/' && !is_store_reference(load.path())) {
    return invalid("load.path must be an absolute path, ollama:NAME[:TAG] or hf:ORG/NAME, got " +
                   quoted_excerpt(load.path()) +
                   " (sparkctl and the Python client make a relative path absolute for you)");
  }
  const std::string& residency = load.residency();
  if (!residency.empty() && residency != "pinned" && residency != "on_demand") {
    return invalid("load.residency must be \"pinned\" or \"on_demand\" (or empty), got " +
                   quoted_excerpt(residency));
  }
  return Status::ok();
}

}  // namespace

Expected<v1::Request> parse_request(std::string_view payload) {
  const std::string prefix = "the frame is not a sparkd.v1.Request: ";
  if (payload.size() > static_cast<size_t>(std::numeric_limits<int>::max())) {
    return invalid(prefix + "its " + std::to_string(payload.size()) +
                   " bytes are more than protobuf can parse");
  }
  v1::Request request;
  if (!request.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) {
    std::string reason = diagnose_parse_failure(*v1::Request::descriptor(), payload, 64);
    if (reason.empty()) {
      reason = "its " + std::to_string(payload.size()) + " bytes are not valid protobuf";
    }
    return invalid(prefix + reason + " (encode requests from api/sparkd.proto)");
  }
  SPARKD_RETURN_IF_ERROR(check_no_unknown_fields(request, "request"));
  return request;
}

std::string_view request_kind_name(const v1::Request& request) {
  const FieldDescriptor* kind = request.GetReflection()->GetOneofFieldDescriptor(
      request, v1::Request::descriptor()->FindOneofByName("kind"));
  return kind != nullptr ? std::string_view(kind->name()) : std::string_view("none");
}

const std::string& request_model(const v1::Request& request) {
  static const std::string kNone;
  switch (request.kind_case()) {
    case v1::Request::kEmbed:
      return request.embed().model();
    case v1::Request::kRerank:
      return request.rerank().model();
    case v1::Request::kGenerate:
      return request.generate().model();
    case v1::Request::kTokenize:
      return request.tokenize().model();
    case v1::Request::kDetokenize:
      return request.detokenize().model();
    case v1::Request::kLoad:
      return request.load().name();
    case v1::Request::kUnload:
      return request.unload().name();
    default:
      return kNone;
  }
}

uint64_t recover_request_id(std::string_view payload) {
  if (payload.size() > static_cast<size_t>(std::numeric_limits<int>::max())) return 0;
  google::protobuf::io::CodedInputStream input(reinterpret_cast<const uint8_t*>(payload.data()),
                                               static_cast<int>(payload.size()));
  uint64_t id = 0;
  while (static_cast<size_t>(input.CurrentPosition()) < payload.size()) {
    const uint32_t tag = input.ReadTag();
    if (tag == 0) break;
    if (tag == ((v1::Request::kIdFieldNumber << 3) | 0)) {
      uint64_t value = 0;
      if (!input.ReadVarint64(&value)) break;
      id = value;
      continue;
    }
    // Skip any other field; stop at the first that cannot be skipped.
    if (!google::protobuf::internal::WireFormatLite::SkipField(&input, tag)) break;
  }
  return id;
}

Status validate_request(const v1::Request& request, const RequestLimits& limits) {
  if (request.id() == 0) {
    return invalid(
        "request id 0 is reserved for errors about the connection itself; number requests from "
        "1");
  }
  switch (request.kind_case()) {
    case v1::Request::kEmbed:
      return validate_embed(request.embed(), limits);
    case v1::Request::kRerank:
      return validate_rerank(request.rerank(), limits);
    case v1::Request::kGenerate:
      return validate_generate(request.generate(), limits);
    case v1::Request::kTokenize:
      SPARKD_RETURN_IF_ERROR(check_model(request.tokenize().model(), "tokenize.model"));
      SPARKD_RETURN_IF_ERROR(check_keep_alive(request.tokenize(), "tokenize"));
      return check_text_size(request.tokenize().text(), "tokenize.text", limits);
    case v1::Request::kDetokenize: {
      const v1::DetokenizeRequest& detokenize = request.detokenize();
      SPARKD_RETURN_IF_ERROR(check_model(detokenize.model(), "detokenize.model"));
      for (int i = 0; i < detokenize.ids_size(); ++i) {
        if (detokenize.ids(i) < 0) {
          return invalid(indexed("detokenize.ids", i) + " must be >= 0, got " +
                         std::to_string(detokenize.ids(i)));
        }
      }
      return Status::ok();
    }
    case v1::Request::kLoad:
      return validate_load(request.load());
    case v1::Request::kUnload:
      return validate_name(request.unload().name(), "unload.name");
    case v1::Request::kCancel:
    case v1::Request::kListModels:
    case v1::Request::kStatus:
    case v1::Request::kHealth:
    case v1::Request::kReload:
      return Status::ok();
    case v1::Request::KIND_NOT_SET:
      break;
  }
  return invalid(
      "the request has no kind (set one of embed, rerank, generate, tokenize, detokenize, "
      "cancel, list_models, status, health, load, unload, reload)");
}

}  // namespace sparkd::api
