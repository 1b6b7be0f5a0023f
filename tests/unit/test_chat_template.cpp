// Built-in chat templates against transformers' apply_chat_template goldens
// (tests/fixtures/chat_templates, made by tools/fixtures/make_chat_template_fixtures.py).
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "engine/model/model_spec.h"
#include "engine/tasks/chat_template.h"

using nlohmann::json;
using sparkd::StatusCode;
using sparkd::tasks::ChatMessage;
using sparkd::tasks::ChatTemplateKind;

namespace {

json read_golden(const std::string& template_name) {
  const auto path = std::filesystem::path(SPARKD_SOURCE_DIR) / "tests/fixtures/chat_templates" /
                    (template_name + ".json");
  std::ifstream in(path, std::ios::binary);
  REQUIRE(in.good());
  std::stringstream text;
  text << in.rdbuf();
  return json::parse(text.str());
}

std::vector<ChatMessage> messages_of(const json& golden_case) {
  std::vector<ChatMessage> messages;
  for (const json& message : golden_case.at("messages")) {
    messages.push_back(
        {message.at("role").get<std::string>(), message.at("content").get<std::string>()});
  }
  return messages;
}

sparkd::model::ModelSpec fixture_spec(const std::string& model_name) {
  const auto dir = std::filesystem::path(SPARKD_SOURCE_DIR) / "tests/fixtures/models" / model_name;
  auto spec = sparkd::model::load_model_spec(dir.string());
  INFO(model_name << ": " << (spec ? "" : spec.status().to_string()));
  REQUIRE(spec.has_value());
  return spec.value();
}

std::string render_ok(ChatTemplateKind kind, const std::vector<ChatMessage>& messages,
                      bool add_generation_prompt) {
  auto rendered = sparkd::tasks::render_chat(kind, messages, add_generation_prompt);
  INFO((rendered ? "" : rendered.status().to_string()));
  REQUIRE(rendered.has_value());
  return rendered.value();
}

}  // namespace

TEST_CASE("chat templates render exactly what transformers renders", "[chat_template]") {
  struct GoldenFile {
    const char* name;
    ChatTemplateKind kind;
    size_t min_cases;
    size_t min_error_cases;
  };
  const GoldenFile golden_file = GENERATE(GoldenFile{"chatml", ChatTemplateKind::kChatMl, 20, 0},
                                          GoldenFile{"llama3", ChatTemplateKind::kLlama3, 20, 0},
                                          GoldenFile{"mistral", ChatTemplateKind::kMistral, 20, 5});
  const json cases = read_golden(golden_file.name);
  REQUIRE(cases.is_array());
  CHECK(cases.size() >= golden_file.min_cases);
  size_t error_cases = 0;
  for (const json& golden_case : cases) {
    const std::string case_name = golden_case.at("name").get<std::string>();
    INFO(golden_file.name << " / " << case_name);
    const auto messages = messages_of(golden_case);
    const bool add_generation_prompt = golden_case.at("add_generation_prompt").get<bool>();
    auto rendered = sparkd::tasks::render_chat(golden_file.kind, messages, add_generation_prompt);
    if (golden_case.at("expected").is_null()) {
      // The Jinja template raised; sparkd must refuse, as a client error that names a message.
      ++error_cases;
      INFO("transformers raised: " << golden_case.at("error").get<std::string>());
      REQUIRE_FALSE(rendered.has_value());
      CHECK(rendered.status().code() == StatusCode::kInvalidArgument);
      CHECK_THAT(rendered.status().message(), Catch::Contains("message "));
      continue;
    }
    INFO((rendered ? "" : rendered.status().to_string()));
    REQUIRE(rendered.has_value());
    CHECK(rendered.value() == golden_case.at("expected").get<std::string>());
  }
  CHECK(error_cases >= golden_file.min_error_cases);
}

TEST_CASE("rendered text starts with the BOS exactly when rendered_text_has_bos says so",
          "[chat_template]") {
  const std::vector<ChatMessage> messages = {{"user", "hi"}};
  CHECK_FALSE(sparkd::tasks::rendered_text_has_bos(ChatTemplateKind::kChatMl));
  CHECK(render_ok(ChatTemplateKind::kChatMl, messages, true).rfind("<|im_start|>", 0) == 0);
  CHECK(sparkd::tasks::rendered_text_has_bos(ChatTemplateKind::kLlama3));
  CHECK(render_ok(ChatTemplateKind::kLlama3, messages, true).rfind("<|begin_of_text|>", 0) == 0);
  CHECK(sparkd::tasks::rendered_text_has_bos(ChatTemplateKind::kMistral));
  CHECK(render_ok(ChatTemplateKind::kMistral, messages, true).rfind("<s>", 0) == 0);
}

TEST_CASE("chat templates refuse what they cannot render faithfully", "[chat_template]") {
  const ChatTemplateKind kind =
      GENERATE(ChatTemplateKind::kChatMl, ChatTemplateKind::kLlama3, ChatTemplateKind::kMistral);
  INFO(sparkd::tasks::chat_template_name(kind));

  SECTION("no messages") {
    auto rendered = sparkd::tasks::render_chat(kind, {}, true);
    REQUIRE_FALSE(rendered.has_value());
    CHECK(rendered.status().code() == StatusCode::kInvalidArgument);
    CHECK_THAT(rendered.status().message(), Catch::Contains("no messages"));
  }
  SECTION("unknown role, named with its index") {
    const std::vector<ChatMessage> messages = {{"user", "a"}, {"assistant", "b"}, {"tool", "c"}};
    auto rendered = sparkd::tasks::render_chat(kind, messages, true);
    REQUIRE_FALSE(rendered.has_value());
    CHECK(rendered.status().code() == StatusCode::kInvalidArgument);
    CHECK_THAT(rendered.status().message(),
               Catch::Contains("message 2") && Catch::Contains("tool"));
  }
  SECTION("roles are case-sensitive, as in the Jinja templates") {
    const std::vector<ChatMessage> messages = {{"User", "a"}};
    CHECK_FALSE(sparkd::tasks::render_chat(kind, messages, true).has_value());
  }
}

TEST_CASE("mistral names the message that breaks alternation", "[chat_template]") {
  const std::vector<ChatMessage> messages = {
      {"system", "s"}, {"user", "a"}, {"assistant", "b"}, {"user", "c"}, {"user", "d"}};
  auto rendered = sparkd::tasks::render_chat(ChatTemplateKind::kMistral, messages, true);
  REQUIRE_FALSE(rendered.has_value());
  CHECK(rendered.status().code() == StatusCode::kInvalidArgument);
  CHECK_THAT(rendered.status().message(),
             Catch::Contains("message 4") && Catch::Contains("alternate"));
}

TEST_CASE("mistral refuses a system message with no user turn after it", "[chat_template]") {
  // transformers renders just "<s>" here, silently dropping the system message; a prompt
  // without [/INST] would have the model continue from a bare BOS.
  const std::vector<ChatMessage> messages = {{"system", "be brief"}};
  auto rendered = sparkd::tasks::render_chat(ChatTemplateKind::kMistral, messages, true);
  REQUIRE_FALSE(rendered.has_value());
  CHECK(rendered.status().code() == StatusCode::kInvalidArgument);
  CHECK_THAT(rendered.status().message(), Catch::Contains("message 0"));
}

TEST_CASE("chatml and llama3 accept roles in any order, as their Jinja templates do",
          "[chat_template]") {
  const std::vector<ChatMessage> messages = {
      {"assistant", "first"}, {"user", "u1"}, {"user", "u2"}, {"system", "late system"}};
  CHECK(render_ok(ChatTemplateKind::kChatMl, messages, false) ==
        "<|im_start|>assistant\nfirst<|im_end|>\n<|im_start|>user\nu1<|im_end|>\n"
        "<|im_start|>user\nu2<|im_end|>\n<|im_start|>system\nlate system<|im_end|>\n");
  CHECK(render_ok(ChatTemplateKind::kLlama3, messages, false) ==
        "<|begin_of_text|><|start_header_id|>assistant<|end_header_id|>\n\nfirst<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nu1<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nu2<|eot_id|>"
        "<|start_header_id|>system<|end_header_id|>\n\nlate system<|eot_id|>");
}

TEST_CASE("trim_unicode_whitespace strips what Python's str.strip() strips", "[chat_template]") {
  using sparkd::tasks::trim_unicode_whitespace;
  CHECK(trim_unicode_whitespace("") == "");
  CHECK(trim_unicode_whitespace(" \t\r\n\v\f") == "");
  CHECK(trim_unicode_whitespace("  a b  ") == "a b");
  // NBSP, ideographic space, em space, NEL, line separator, information separator.
  CHECK(trim_unicode_whitespace("\u00a0\u3000\u2003\u0085\u2028\x1cx\x1f\u205f\u202f\u1680") ==
        "x");
  // Zero width space and BOM are not whitespace to Python.
  CHECK(trim_unicode_whitespace("\u200b x \ufeff") == "\u200b x \ufeff");
  // Bytes that are not UTF-8 stop the trim instead of being read past.
  CHECK(trim_unicode_whitespace(" \xff ") == "\xff");
  CHECK(trim_unicode_whitespace(" \xe3\x80") == "\xe3\x80");  // truncated U+3000
  CHECK(trim_unicode_whitespace("\x80 ") == "\x80");
}

TEST_CASE("chat template names round-trip and unknown names list the choices", "[chat_template]") {
  for (ChatTemplateKind kind :
       {ChatTemplateKind::kChatMl, ChatTemplateKind::kLlama3, ChatTemplateKind::kMistral}) {
    auto parsed = sparkd::tasks::parse_chat_template_name(sparkd::tasks::chat_template_name(kind));
    REQUIRE(parsed.has_value());
    CHECK(parsed.value() == kind);
  }
  auto unknown = sparkd::tasks::parse_chat_template_name("llama2");
  REQUIRE_FALSE(unknown.has_value());
  CHECK(unknown.status().code() == StatusCode::kInvalidArgument);
  CHECK_THAT(unknown.status().message(), Catch::Contains("llama2") && Catch::Contains("chatml") &&
                                             Catch::Contains("llama3") &&
                                             Catch::Contains("mistral"));
  CHECK_FALSE(sparkd::tasks::parse_chat_template_name("ChatML").has_value());
}

TEST_CASE("chat_template_for picks the family's template for the fixture models",
          "[chat_template]") {
  auto qwen3 = sparkd::tasks::chat_template_for(fixture_spec("qwen3_f32"));
  REQUIRE(qwen3.has_value());
  CHECK(qwen3.value() == ChatTemplateKind::kChatMl);
  auto qwen2 = sparkd::tasks::chat_template_for(fixture_spec("qwen2_f32"));
  REQUIRE(qwen2.has_value());
  CHECK(qwen2.value() == ChatTemplateKind::kChatMl);
  auto llama = sparkd::tasks::chat_template_for(fixture_spec("llama_f32"));
  REQUIRE(llama.has_value());
  CHECK(llama.value() == ChatTemplateKind::kLlama3);
  auto mistral = sparkd::tasks::chat_template_for(fixture_spec("mistral_f32"));
  REQUIRE(mistral.has_value());
  CHECK(mistral.value() == ChatTemplateKind::kMistral);

  auto bert = sparkd::tasks::chat_template_for(fixture_spec("bert_embed"));
  REQUIRE_FALSE(bert.has_value());
  CHECK(bert.status().code() == StatusCode::kNotFound);
  CHECK_THAT(bert.status().message(), Catch::Contains("encoder"));

  // A decoder family loaded as an embedder does not chat either.
  auto qwen3_embedding = sparkd::tasks::chat_template_for(fixture_spec("qwen3_embedding"));
  REQUIRE_FALSE(qwen3_embedding.has_value());
  CHECK(qwen3_embedding.status().code() == StatusCode::kFailedPrecondition);
}
