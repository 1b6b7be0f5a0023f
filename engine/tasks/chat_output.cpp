#include "engine/tasks/chat_output.h"

#include <nlohmann/json.hpp>
#include <optional>

#include "engine/jinja/python_text.h"
#include "engine/jinja/value.h"

namespace sparkd::tasks {
namespace {

constexpr std::string_view kThinkOpen = "<think>";
constexpr std::string_view kThinkClose = "</think>";
constexpr std::string_view kToolCallOpen = "<tool_call>";
constexpr std::string_view kToolCallClose = "</tool_call>";
constexpr std::string_view kPythonTag = "<|python_tag|>";

std::string_view strip(std::string_view text) {
  return jinja::python_strip(text, std::nullopt);
}
std::string_view lstrip(std::string_view text) {
  return jinja::python_strip(text, std::nullopt, true, false);
}

bool starts_with(std::string_view text, std::string_view prefix) {
  return text.substr(0, prefix.size()) == prefix;
}

// Arguments as Python's json.dumps(arguments, ensure_ascii=False) writes them, as vLLM and
// Ollama's OpenAI layer hand them to clients.
std::string serialize_arguments(const nlohmann::ordered_json& arguments) {
  return jinja::Value::from_json(arguments).to_json({});
}

// {"name": ..., "arguments" | "parameters": {...}} as a call; nullopt when it is not one.
std::optional<ToolCall> call_from_json(std::string_view text) {
  const auto json = nlohmann::ordered_json::parse(text, nullptr, false);
  if (json.is_discarded() || !json.is_object()) return std::nullopt;
  const auto name = json.find("name");
  if (name == json.end() || !name->is_string() || name->get<std::string>().empty()) {
    return std::nullopt;
  }
  auto arguments = json.find("arguments");
  if (arguments == json.end()) arguments = json.find("parameters");
  ToolCall call;
  call.name = name->get<std::string>();
  if (arguments == json.end()) {
    call.arguments = "{}";
  } else if (arguments->is_object()) {
    call.arguments = serialize_arguments(*arguments);
  } else if (arguments->is_string()) {  // already serialized by the model: keep it if it is JSON
    const auto parsed =
        nlohmann::ordered_json::parse(arguments->get<std::string>(), nullptr, false);
    if (parsed.is_discarded() || !parsed.is_object()) return std::nullopt;
    call.arguments = serialize_arguments(parsed);
  } else {
    return std::nullopt;
  }
  return call;
}

// Hermes-style blocks out of `text`: parsed calls, and the text around them (with blocks that
// do not parse left in place).
void parse_hermes(std::string_view text, ChatOutput& out) {
  std::string content;
  size_t pos = 0;
  while (pos < text.size()) {
    const size_t open = text.find(kToolCallOpen, pos);
    if (open == std::string_view::npos) break;
    const size_t body = open + kToolCallOpen.size();
    const size_t close = text.find(kToolCallClose, body);
    if (close == std::string_view::npos) break;  // cut off: it stays text
    std::optional<ToolCall> call = call_from_json(strip(text.substr(body, close - body)));
    const size_t after = close + kToolCallClose.size();
    content += text.substr(pos, open - pos);
    if (call) {
      out.tool_calls.push_back(std::move(*call));
    } else {
      content += text.substr(open, after - open);
    }
    pos = after;
  }
  content += text.substr(pos);
  out.content = std::string(out.tool_calls.empty() ? std::string_view(content) : strip(content));
}

}  // namespace

ChatOutputFormat chat_output_format(std::string_view template_text) {
  ChatOutputFormat format;
  format.think_tags = template_text.find(kThinkClose) != std::string_view::npos;
  if (template_text.find(kToolCallOpen) != std::string_view::npos) {
    format.tool_calls = ToolCallFormat::kHermes;
  } else if (template_text.find(kPythonTag) != std::string_view::npos ||
             (template_text.find("<|start_header_id|>") != std::string_view::npos &&
              template_text.find("\"parameters\"") != std::string_view::npos)) {
    format.tool_calls = ToolCallFormat::kLlama3Json;
  }
  return format;
}

ChatOutput parse_chat_output(std::string_view text, const ChatOutputFormat& format) {
  ChatOutput out;
  std::string_view answer = text;
  if (format.think_tags) {
    const size_t close = text.find(kThinkClose);
    std::string_view opened = lstrip(text);
    if (close != std::string_view::npos) {
      std::string_view reasoning = text.substr(0, close);
      std::string_view trimmed = lstrip(reasoning);
      if (starts_with(trimmed, kThinkOpen)) reasoning = trimmed.substr(kThinkOpen.size());
      out.reasoning = std::string(strip(reasoning));
      answer = lstrip(text.substr(close + kThinkClose.size()));
    } else if (starts_with(opened, kThinkOpen)) {  // cut off while thinking
      out.reasoning = std::string(strip(opened.substr(kThinkOpen.size())));
      answer = {};
    }
  }
  switch (format.tool_calls) {
    case ToolCallFormat::kHermes:
      parse_hermes(answer, out);
      return out;
    case ToolCallFormat::kLlama3Json: {
      std::string_view candidate = strip(answer);
      if (starts_with(candidate, kPythonTag))
        candidate = strip(candidate.substr(kPythonTag.size()));
      if (std::optional<ToolCall> call = call_from_json(candidate)) {
        out.tool_calls.push_back(std::move(*call));
        return out;
      }
      break;
    }
    case ToolCallFormat::kNone:
      break;
  }
  out.content = std::string(answer);
  return out;
}

}  // namespace sparkd::tasks
