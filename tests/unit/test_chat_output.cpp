// Generated text split into reasoning, answer and tool calls (engine/tasks/chat_output.*), with
// the formats read from real chat templates (tests/fixtures/chat_templates/jinja/templates).
#include <catch2/catch.hpp>
#include <fstream>
#include <sstream>
#include <string>

#include "engine/jinja/python_text.h"
#include "engine/tasks/chat_output.h"

namespace {

using sparkd::tasks::ChatOutputFormat;
using sparkd::tasks::parse_chat_output;
using sparkd::tasks::ToolCallFormat;

std::string real_template(const std::string& name) {
  std::ifstream in(std::string(SPARKD_SOURCE_DIR) +
                   "/tests/fixtures/chat_templates/jinja/templates/" + name);
  REQUIRE(in.good());
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace

TEST_CASE("chat output: the format comes from what the template tells the model", "[chat_output]") {
  const ChatOutputFormat qwen3 =
      sparkd::tasks::chat_output_format(real_template("Qwen-Qwen3-0.6B.jinja"));
  CHECK(qwen3.think_tags);
  CHECK(qwen3.tool_calls == ToolCallFormat::kHermes);
  const ChatOutputFormat qwen25 =
      sparkd::tasks::chat_output_format(real_template("Qwen-Qwen2.5-7B-Instruct.jinja"));
  CHECK_FALSE(qwen25.think_tags);
  CHECK(qwen25.tool_calls == ToolCallFormat::kHermes);
  const ChatOutputFormat llama =
      sparkd::tasks::chat_output_format(real_template("meta-llama-Llama-3.1-8B-Instruct.jinja"));
  CHECK_FALSE(llama.think_tags);
  CHECK(llama.tool_calls == ToolCallFormat::kLlama3Json);
  const ChatOutputFormat r1 = sparkd::tasks::chat_output_format(
      real_template("deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja"));
  CHECK(r1.think_tags);
  const ChatOutputFormat gemma =
      sparkd::tasks::chat_output_format(real_template("google-gemma-2-2b-it.jinja"));
  CHECK_FALSE(gemma.think_tags);
  CHECK(gemma.tool_calls == ToolCallFormat::kNone);
}

TEST_CASE("chat output: reasoning between think tags is split from the answer", "[chat_output]") {
  const ChatOutputFormat think{true, ToolCallFormat::kNone};
  auto out = parse_chat_output("<think>\nAdd them.\n</think>\n\n2 + 2 = 4.", think);
  CHECK(out.reasoning == "Add them.");
  CHECK(out.content == "2 + 2 = 4.");
  // The generation prompt opened the block (DeepSeek R1): only the closing tag is generated.
  CHECK(sparkd::tasks::prompt_opens_reasoning("<|Assistant|><think>\n"));
  CHECK_FALSE(sparkd::tasks::prompt_opens_reasoning("<|im_start|>assistant\n"));
  out = parse_chat_output("Add them.\n</think>\n\n4", think, /*starts_in_reasoning=*/true);
  CHECK(out.reasoning == "Add them.");
  CHECK(out.content == "4");
  // Without that, a closing tag in the answer is just text.
  out = parse_chat_output("Use </think> to close.", think);
  CHECK(out.reasoning.empty());
  CHECK(out.content == "Use </think> to close.");
  // Cut off while thinking: all of it is reasoning.
  out = parse_chat_output("<think>\nStill going", think);
  CHECK(out.reasoning == "Still going");
  CHECK(out.content.empty());
  // No tags: all answer, as it is.
  out = parse_chat_output(" plain answer ", think);
  CHECK(out.reasoning.empty());
  CHECK(out.content == " plain answer ");
  // A template without think tags never splits.
  out = parse_chat_output("<think>x</think>y", ChatOutputFormat{});
  CHECK(out.content == "<think>x</think>y");
}

TEST_CASE("chat output: Hermes tool calls are parsed, and what does not parse stays text",
          "[chat_output]") {
  const ChatOutputFormat hermes{true, ToolCallFormat::kHermes};
  auto out = parse_chat_output(
      "<think>Need weather.</think>\n\nLet me check.\n<tool_call>\n{\"name\": \"get_weather\", "
      "\"arguments\": {\"city\": \"Paris\", \"days\": 2}}\n</tool_call>\n<tool_call>\n{\"name\": "
      "\"get_time\", \"arguments\": {\"timezone\": \"Europe/Paris\"}}\n</tool_call>",
      hermes);
  CHECK(out.reasoning == "Need weather.");
  CHECK(out.content == "Let me check.");
  REQUIRE(out.tool_calls.size() == 2);
  CHECK(out.tool_calls[0].name == "get_weather");
  CHECK(out.tool_calls[0].arguments == "{\"city\": \"Paris\", \"days\": 2}");
  CHECK(out.tool_calls[1].name == "get_time");
  CHECK(out.tool_calls[1].arguments == "{\"timezone\": \"Europe/Paris\"}");

  // Arguments the model wrote as a JSON string are the same call.
  out = parse_chat_output(
      "<tool_call>{\"name\": \"f\", \"arguments\": \"{\\\"a\\\": 1}\"}</tool_call>", hermes);
  REQUIRE(out.tool_calls.size() == 1);
  CHECK(out.tool_calls[0].arguments == "{\"a\": 1}");

  // Not JSON, no name, or cut off: the text is kept for the client, untouched.
  const std::string broken = "<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": </tool_call>";
  out = parse_chat_output(broken, hermes);
  CHECK(out.tool_calls.empty());
  CHECK(out.content == broken);
  out = parse_chat_output("<tool_call>{\"arguments\": {}}</tool_call>", hermes);
  CHECK(out.tool_calls.empty());
  const std::string cut = "Sure.<tool_call>\n{\"name\": \"f\", \"argu";
  out = parse_chat_output(cut, hermes);
  CHECK(out.tool_calls.empty());
  CHECK(out.content == cut);
}

TEST_CASE("chat output: Llama 3 JSON tool calls", "[chat_output]") {
  const ChatOutputFormat llama{false, ToolCallFormat::kLlama3Json};
  auto out = parse_chat_output("{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}",
                               llama);
  REQUIRE(out.tool_calls.size() == 1);
  CHECK(out.tool_calls[0].name == "get_weather");
  CHECK(out.tool_calls[0].arguments == "{\"city\": \"Paris\"}");
  CHECK(out.content.empty());
  out = parse_chat_output("<|python_tag|>{\"name\": \"f\", \"arguments\": {}}", llama);
  REQUIRE(out.tool_calls.size() == 1);
  CHECK(out.tool_calls[0].arguments == "{}");
  // An answer that merely contains JSON is an answer.
  out = parse_chat_output("The call would be {\"name\": \"f\"}.", llama);
  CHECK(out.tool_calls.empty());
  CHECK(out.content == "The call would be {\"name\": \"f\"}.");
}

namespace {

// The stream's deltas for `text` cut into `piece`-byte pushes, concatenated.
sparkd::tasks::ChatOutput streamed(const std::string& text, const ChatOutputFormat& format,
                                   bool starts_in_reasoning, size_t piece) {
  sparkd::tasks::ChatOutputStream stream(format, starts_in_reasoning);
  sparkd::tasks::ChatOutput all;
  const auto append = [&](sparkd::tasks::ChatOutput delta) {
    all.content += delta.content;
    all.reasoning += delta.reasoning;
    for (auto& call : delta.tool_calls) all.tool_calls.push_back(std::move(call));
  };
  for (size_t at = 0; at < text.size(); at += piece) append(stream.push(text.substr(at, piece)));
  append(stream.finish());
  return all;
}

}  // namespace

TEST_CASE("chat output: streamed in pieces of any size, the split is the whole text's",
          "[chat_output]") {
  struct Case {
    std::string text;
    ChatOutputFormat format;
    bool starts_in_reasoning;
  };
  const ChatOutputFormat qwen3{true, ToolCallFormat::kHermes};
  const ChatOutputFormat llama{false, ToolCallFormat::kLlama3Json};
  const std::vector<Case> cases = {
      {"<think>\nAdd them.\n</think>\n\n2 + 2 = 4.", qwen3, false},
      {"  <think> a </thi", qwen3, false},  // cut off inside the closing tag
      {"Add.\n</think>\n\n4", ChatOutputFormat{true, ToolCallFormat::kNone}, true},
      {" plain < answer <thin", qwen3, false},
      {"Use </think> to close.", qwen3, false},
      {"<think>Need weather.</think>\n\nLet me check.\n<tool_call>\n{\"name\": \"get_weather\", "
       "\"arguments\": {\"city\": \"Paris\"}}\n</tool_call>\n<tool_call>{\"name\": \"f\", "
       "\"arguments\": \"{\\\"a\\\": 1}\"}</tool_call>",
       qwen3, false},
      {"<tool_call>{\"name\": \"f\", \"arguments\": {\"a\": </tool_call> after", qwen3, false},
      {"Sure.<tool_call>\n{\"name\": \"f\", \"argu", qwen3, false},
      {"<|python_tag|>{\"name\": \"f\", \"parameters\": {\"x\": [1, 2]}}", llama, false},
      {"  {\"name\": \"f\", \"parameters\": {}}  ", llama, false},
      {"  The call would be {\"name\": \"f\"}.", llama, false},
      {"", qwen3, false},
      {"   ", qwen3, false},
  };
  for (const Case& c : cases) {
    const auto whole = parse_chat_output(c.text, c.format, c.starts_in_reasoning);
    for (size_t piece = 1; piece <= c.text.size() + 1; ++piece) {
      INFO(c.text << " in pieces of " << piece);
      const auto stream = streamed(c.text, c.format, c.starts_in_reasoning, piece);
      CHECK(stream.reasoning == whole.reasoning);
      REQUIRE(stream.tool_calls.size() == whole.tool_calls.size());
      for (size_t i = 0; i < whole.tool_calls.size(); ++i) {
        CHECK(stream.tool_calls[i].name == whole.tool_calls[i].name);
        CHECK(stream.tool_calls[i].arguments == whole.tool_calls[i].arguments);
      }
      // The whole-text parse also trims the content around parsed tool calls.
      const std::string content =
          whole.tool_calls.empty()
              ? stream.content
              : std::string(sparkd::jinja::python_strip(stream.content, std::nullopt));
      CHECK(content == whole.content);
    }
  }
}
