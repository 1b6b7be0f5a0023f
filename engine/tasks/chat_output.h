// A chat model's generated text split the way OpenAI and Ollama clients expect it: reasoning
// (what the model wrote between <think> and </think>) apart from the answer, and tool calls
// parsed out of the formats our families emit:
//   hermes  Qwen2.5 / Qwen3 / QwQ / Hermes: <tool_call>\n{"name": ..., "arguments": {...}}\n
//           </tool_call>, once per call, around or after the answer's text;
//   llama3  Llama 3.1-3.3: the whole answer is one JSON object {"name": ..., "parameters":
//           {...}} (or "arguments"), after an optional <|python_tag|>.
// Which applies is read from the model's chat template (what it tells the model to write);
// whether the output starts inside reasoning, from the rendered prompt (prompt_opens_reasoning).
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

// Whether a rendered prompt ends inside an open <think> block (its generation prompt opened it).
bool prompt_opens_reasoning(std::string_view prompt);

struct ToolCall {
  std::string name;
  std::string arguments;  // a JSON object, serialized (OpenAI sends arguments as a string)
};

struct ChatOutput {
  std::string content;    // the answer, without reasoning or parsed tool calls
  std::string reasoning;  // "" when there was none
  std::vector<ToolCall> tool_calls;
};

// starts_in_reasoning: the prompt ended inside an open <think> block (the generation prompts
// of DeepSeek R1 and others), so the output is reasoning until </think>; otherwise reasoning
// is only what an opening <think> at the start of the output begins.
ChatOutput parse_chat_output(std::string_view text, const ChatOutputFormat& format,
                             bool starts_in_reasoning = false);

// The same split while the text streams, for SSE and NDJSON deltas: each push returns what can
// already be told apart, holding back only what could still be the start of a tag or a tool
// call, or whitespace the split may drop; finish returns the rest. Concatenated, the deltas
// give parse_chat_output's reasoning and tool calls, and its content as written (the whole-text
// parse also trims the content around parsed tool calls, which a stream cannot take back).
class ChatOutputStream {
 public:
  // starts_in_reasoning: as for parse_chat_output.
  ChatOutputStream(ChatOutputFormat format, bool starts_in_reasoning);

  ChatOutput push(std::string_view text);
  ChatOutput finish();

 private:
  enum class State {
    kUndecided,    // may still open with <think>
    kReasoning,    // inside <think> ... </think>
    kAnswerStart,  // before the answer's first non-whitespace character
    kAnswer,
    kToolCall,     // inside <tool_call> ... </tool_call>
    kWholeAnswer,  // a Llama 3 JSON call, perhaps: held to the end
  };
  void advance(ChatOutput& out, bool final);
  void reasoning_step(ChatOutput& out, bool final);
  void answer_start_step(bool final);

  ChatOutputFormat format_;
  State state_;
  std::string pending_;              // received and not yet given out
  bool reasoning_begun_ = false;     // leading whitespace of the reasoning is dropped
  bool strip_answer_start_ = false;  // after </think>, the answer's leading whitespace is too
};

}  // namespace sparkd::tasks
