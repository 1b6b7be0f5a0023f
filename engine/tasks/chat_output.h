// A chat model's generated text split the way OpenAI and Ollama clients expect it: reasoning
// (what the model wrote between <think> and </think>) apart from the answer, and tool calls
// parsed out of the formats our families emit:
//   hermes  Qwen2.5 / Qwen3 / QwQ / Hermes: <tool_call>\n{"name": ..., "arguments": {...}}\n
//           </tool_call>, once per call, around or after the answer's text;
//   llama3  Llama 3.1-3.3: the whole answer is one JSON object {"name": ..., "parameters":
//           {...}} (or "arguments"), after an optional <|python_tag|>.
// Which applies is read from the model's chat template (what it tells the model to write).
// Text that looks like a call but does not parse stays in the answer, untouched: a client
// never loses what the model wrote.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace sparkd::tasks {

enum class ToolCallFormat { kNone, kHermes, kLlama3Json };

struct ChatOutputFormat {
  // Whether the template marks reasoning with <think> ... </think>. When its generation prompt
  // already opened the block, the output starts inside it, with only </think>.
  bool think_tags = false;
  ToolCallFormat tool_calls = ToolCallFormat::kNone;
};

// The format a chat template implies, from its text: <think> / </think> for reasoning,
// <tool_call> for Hermes calls, <|python_tag|> or Llama 3's "parameters" instruction for JSON.
ChatOutputFormat chat_output_format(std::string_view template_text);

struct ToolCall {
  std::string name;
  std::string arguments;  // a JSON object, serialized (OpenAI sends arguments as a string)
};

struct ChatOutput {
  std::string content;    // the answer, without reasoning or parsed tool calls
  std::string reasoning;  // "" when there was none
  std::vector<ToolCall> tool_calls;
};

ChatOutput parse_chat_output(std::string_view text, const ChatOutputFormat& format);

}  // namespace sparkd::tasks
