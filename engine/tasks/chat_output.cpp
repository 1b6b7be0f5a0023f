#include "engine/tasks/chat_output.h"

#include <algorithm>
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

bool prompt_opens_reasoning(std::string_view prompt) {
  const std::string_view end = jinja::python_strip(prompt, std::nullopt, false, true);
  return end.size() >= kThinkOpen.size() &&
         end.substr(end.size() - kThinkOpen.size()) == kThinkOpen;
}

ChatOutput parse_chat_output(std::string_view text, const ChatOutputFormat& format,
                             bool starts_in_reasoning) {
  ChatOutput out;
  std::string_view answer = text;
  const std::string_view opened = lstrip(text);
  if (format.think_tags && (starts_in_reasoning || starts_with(opened, kThinkOpen))) {
    const std::string_view reasoning_and_rest =
        starts_in_reasoning ? text : opened.substr(kThinkOpen.size());
    const size_t close = reasoning_and_rest.find(kThinkClose);
    out.reasoning = std::string(strip(reasoning_and_rest.substr(0, close)));
    answer = close == std::string_view::npos  // cut off while thinking
                 ? std::string_view()
                 : lstrip(reasoning_and_rest.substr(close + kThinkClose.size()));
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

namespace {

// The length of the longest suffix of `text` that is a proper prefix of `tag`: text that must
// wait for more before it can be called plain.
size_t partial_tag_suffix(std::string_view text, std::string_view tag) {
  for (size_t n = std::min(text.size(), tag.size() - 1); n > 0; --n) {
    if (text.substr(text.size() - n) == tag.substr(0, n)) return n;
  }
  return 0;
}

size_t trailing_space(std::string_view text) {
  return text.size() - jinja::python_strip(text, std::nullopt, false, true).size();
}

}  // namespace

ChatOutputStream::ChatOutputStream(ChatOutputFormat format, bool starts_in_reasoning)
    : format_(format),
      state_(!format.think_tags    ? State::kAnswerStart
             : starts_in_reasoning ? State::kReasoning
                                   : State::kUndecided) {}

ChatOutput ChatOutputStream::push(std::string_view text) {
  pending_ += text;
  ChatOutput out;
  advance(out, false);
  return out;
}

ChatOutput ChatOutputStream::finish() {
  ChatOutput out;
  advance(out, true);
  return out;
}

void ChatOutputStream::reasoning_step(ChatOutput& out, bool final) {
  const size_t close = pending_.find(kThinkClose);
  std::string_view ready = pending_;
  size_t consumed = pending_.size();
  if (close != std::string::npos) {
    ready = ready.substr(0, close);
    ready = jinja::python_strip(ready, std::nullopt, false, true);  // dropped before </think>
    consumed = close + kThinkClose.size();
  } else if (final) {
    ready = jinja::python_strip(ready, std::nullopt, false, true);
  } else {
    // Hold back what may begin </think>, and the whitespace before it (dropped if it comes).
    const size_t partial = partial_tag_suffix(pending_, kThinkClose);
    const size_t keep =
        partial + trailing_space(std::string_view(pending_).substr(0, pending_.size() - partial));
    ready = ready.substr(0, pending_.size() - keep);
    consumed = ready.size();
  }
  if (!reasoning_begun_) {
    const std::string_view stripped = lstrip(ready);
    reasoning_begun_ = !stripped.empty();
    ready = stripped;
  }
  out.reasoning += ready;
  pending_.erase(0, consumed);
  if (close != std::string::npos) {
    state_ = State::kAnswerStart;
    strip_answer_start_ = true;
  }
}

void ChatOutputStream::answer_start_step(bool final) {
  const std::string_view text = lstrip(pending_);
  if (text.empty() && !final) return;  // only whitespace so far: its fate is open
  if (strip_answer_start_) pending_ = std::string(text);
  const bool may_be_json_call =
      format_.tool_calls == ToolCallFormat::kLlama3Json &&
      (starts_with(text, "{") || starts_with(text, kPythonTag) ||
       (text.size() < kPythonTag.size() && starts_with(kPythonTag, text)));
  state_ = may_be_json_call ? State::kWholeAnswer : State::kAnswer;
}

void ChatOutputStream::advance(ChatOutput& out, bool final) {
  while (true) {
    switch (state_) {
      case State::kUndecided: {
        const std::string_view opened = lstrip(pending_);
        if (starts_with(opened, kThinkOpen)) {
          pending_ = std::string(opened.substr(kThinkOpen.size()));
          state_ = State::kReasoning;
          continue;
        }
        if (!final && (opened.empty() || starts_with(kThinkOpen, opened))) return;
        state_ = State::kAnswerStart;  // no reasoning: the answer as written
        continue;
      }
      case State::kReasoning:
        reasoning_step(out, final);
        if (state_ == State::kReasoning) return;
        continue;
      case State::kAnswerStart:
        answer_start_step(final);
        if (state_ == State::kAnswerStart) return;
        continue;
      case State::kAnswer: {
        const size_t open = format_.tool_calls == ToolCallFormat::kHermes
                                ? pending_.find(kToolCallOpen)
                                : std::string::npos;
        if (open != std::string::npos) {
          out.content += pending_.substr(0, open);
          pending_.erase(0, open + kToolCallOpen.size());
          state_ = State::kToolCall;
          continue;
        }
        const size_t keep = final || format_.tool_calls != ToolCallFormat::kHermes
                                ? 0
                                : partial_tag_suffix(pending_, kToolCallOpen);
        out.content += pending_.substr(0, pending_.size() - keep);
        pending_.erase(0, pending_.size() - keep);
        return;
      }
      case State::kToolCall: {
        const size_t close = pending_.find(kToolCallClose);
        if (close == std::string::npos) {
          if (final) {  // cut off: it stays text
            out.content += std::string(kToolCallOpen) + pending_;
            pending_.clear();
          }
          return;
        }
        const std::string_view body = std::string_view(pending_).substr(0, close);
        if (std::optional<ToolCall> call = call_from_json(strip(body))) {
          out.tool_calls.push_back(std::move(*call));
        } else {
          out.content +=
              std::string(kToolCallOpen) + std::string(body) + std::string(kToolCallClose);
        }
        pending_.erase(0, close + kToolCallClose.size());
        state_ = State::kAnswer;
        continue;
      }
      case State::kWholeAnswer: {
        if (!final) return;
        std::string_view candidate = strip(pending_);
        if (starts_with(candidate, kPythonTag))
          candidate = strip(candidate.substr(kPythonTag.size()));
        if (std::optional<ToolCall> call = call_from_json(candidate)) {
          out.tool_calls.push_back(std::move(*call));
        } else {
          out.content += pending_;
        }
        pending_.clear();
        return;
      }
    }
  }
}

}  // namespace sparkd::tasks
