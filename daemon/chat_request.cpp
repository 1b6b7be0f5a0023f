#include "daemon/chat_request.h"

#include <cstdio>
#include <random>

namespace sparkd::daemon {
namespace {

using nlohmann::ordered_json;

ordered_json parse_or_null(const std::string& text) {
  if (text.empty()) return nullptr;
  return ordered_json::parse(text, nullptr, /*allow_exceptions=*/false);
}

}  // namespace

Expected<tasks::ChatInput> chat_input_from(const v1::Chat& chat) {
  tasks::ChatInput input;
  input.add_generation_prompt =
      chat.has_add_generation_prompt() ? chat.add_generation_prompt() : true;
  for (const v1::ChatMessage& m : chat.messages()) {
    ordered_json message = ordered_json::object();
    message["role"] = m.role();
    // An assistant turn that only called tools has no content (OpenAI sends null): templates
    // test it for being defined or truthy, so it is left out rather than made "".
    if (!m.content().empty() || m.tool_calls().empty()) message["content"] = m.content();
    if (!m.reasoning().empty()) message["reasoning_content"] = m.reasoning();
    if (!m.tool_calls().empty()) {
      ordered_json calls = ordered_json::array();
      for (const v1::ToolCall& call : m.tool_calls()) {
        ordered_json arguments = parse_or_null(call.arguments());
        if (arguments.is_discarded()) {
          return Status(StatusCode::kInvalidArgument,
                        "the arguments of tool call '" + call.name() + "' are not valid JSON");
        }
        if (arguments.is_null()) arguments = ordered_json::object();
        ordered_json entry = ordered_json::object();
        if (!call.id().empty()) entry["id"] = call.id();
        entry["type"] = "function";
        entry["function"] = {{"name", call.name()}, {"arguments", std::move(arguments)}};
        calls.push_back(std::move(entry));
      }
      message["tool_calls"] = std::move(calls);
    }
    if (!m.tool_call_id().empty()) message["tool_call_id"] = m.tool_call_id();
    if (!m.name().empty()) message["name"] = m.name();
    input.messages.push_back(std::move(message));
  }
  const struct {
    const std::string& text;
    ordered_json& into;
    const char* field;
  } parts[] = {{chat.tools_json(), input.tools, "tools_json"},
               {chat.documents_json(), input.documents, "documents_json"},
               {chat.template_variables_json(), input.variables, "template_variables_json"}};
  for (const auto& part : parts) {
    if (part.text.empty()) continue;
    ordered_json parsed = parse_or_null(part.text);
    if (parsed.is_discarded()) {
      return Status(StatusCode::kInvalidArgument,
                    std::string("generate.chat.") + part.field + " is not valid JSON");
    }
    part.into = std::move(parsed);
  }
  return input;
}

std::string new_tool_call_id() {
  thread_local std::mt19937_64 random(std::random_device{}());
  char text[32];
  std::snprintf(text, sizeof(text), "call_%016llx%08llx", static_cast<unsigned long long>(random()),
                static_cast<unsigned long long>(random() & 0xffffffffu));
  return text;
}

bool set_chat_output(const tasks::ChatOutput& output, v1::GenerateChunk& chunk) {
  chunk.set_text(output.content);
  chunk.set_reasoning(output.reasoning);
  for (const tasks::ToolCall& call : output.tool_calls) {
    v1::ToolCall* out = chunk.add_tool_calls();
    out->set_id(new_tool_call_id());
    out->set_name(call.name);
    out->set_arguments(call.arguments);
  }
  return !output.tool_calls.empty();
}

}  // namespace sparkd::daemon
