// Arbitrary bytes as a chat template (a model file's tokenizer.chat_template or
// tokenizer_config.json is as untrusted as the rest of it): parse, and for what parses, render
// over a conversation with the variables real templates read. Each must give text or an
// error, never crash; renders are bounded (RenderOptions), so the fuzzer's time and memory
// limits hold. Seeds: the 70 real templates of tests/fixtures/chat_templates/jinja/templates.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "engine/jinja/template.h"

namespace {

const sparkd::jinja::Value& conversation() {
  static const sparkd::jinja::Value context =
      sparkd::jinja::Value::from_json(nlohmann::ordered_json::parse(R"({
        "bos_token": "<s>", "eos_token": "</s>", "add_generation_prompt": true,
        "enable_thinking": false,
        "messages": [
          {"role": "system", "content": "Be brief."},
          {"role": "user", "content": " naïve café 漢字 🙂 "},
          {"role": "assistant", "content": null, "reasoning_content": "think",
           "tool_calls": [{"id": "call00001", "type": "function",
                           "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
          {"role": "tool", "tool_call_id": "call00001", "content": "{\"temp\": 21.5}"},
          {"role": "user", "content": [{"type": "text", "text": "and tomorrow?"}]}],
        "tools": [{"type": "function", "function": {"name": "get_weather",
                   "description": "Weather for a city.",
                   "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                  "required": ["city"]}}}],
        "documents": [{"title": "Doc", "text": "Unified memory."}]
      })"));
  return context;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto parsed = sparkd::jinja::Template::parse(
      std::string_view(reinterpret_cast<const char*>(data), size), "fuzz");
  if (!parsed) return 0;
  sparkd::jinja::RenderOptions options;
  options.clock = [] { return std::time_t{1785067200}; };
  options.max_output_bytes = size_t{1} << 20;
  options.max_steps = 200'000;
  static_cast<void>(parsed->render(conversation(), options));
  return 0;
}
