// Built-in chat templates against transformers' apply_chat_template goldens
// (tests/fixtures/chat_templates, made by tools/fixtures/make_chat_template_fixtures.py).
#include <unistd.h>

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

// ---- the model's own template ------------------------------------------------------------

namespace {

using sparkd::tasks::ChatInput;
using sparkd::tasks::ChatTemplate;
using sparkd::tasks::ChatTemplateSource;

// A model directory holding only what the chat template reader looks at.
class TemplateDir {
 public:
  TemplateDir() {
    static int counter = 0;
    dir_ = std::filesystem::temp_directory_path() /
           ("sparkd-chat-template-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  ~TemplateDir() { std::filesystem::remove_all(dir_); }
  void write(const std::string& file, const std::string& text) const {
    std::ofstream(dir_ / file, std::ios::trunc) << text;
  }
  std::string path() const { return dir_.string(); }

 private:
  std::filesystem::path dir_;
};

std::string render_own(const std::string& source, const ChatInput& input,
                       sparkd::tasks::SpecialTokenTexts tokens = {"<s>", "</s>", "", ""}) {
  auto own = ChatTemplate::from_source({"test", source, ""}, tokens);
  if (!own) return "PARSE: " + own.status().message();
  auto rendered = own->render(input);
  if (!rendered) return "ERROR: " + rendered.status().message();
  return *rendered;
}

}  // namespace

TEST_CASE("chat template: a Hugging Face model's own template and special tokens are found",
          "[chat_template]") {
  TemplateDir dir;
  auto none = sparkd::tasks::hf_chat_template_source(dir.path());
  REQUIRE(none.has_value());
  CHECK_FALSE(none->has_value());

  dir.write("tokenizer_config.json",
            R"({"chat_template": "{{ bos_token }}x", "bos_token": {"content": "<|b|>",
                "lstrip": false}, "eos_token": "<|e|>"})");
  auto plain = sparkd::tasks::hf_chat_template_source(dir.path());
  REQUIRE(plain.has_value());
  REQUIRE(plain->has_value());
  CHECK((*plain)->origin == "tokenizer_config.json chat_template");
  CHECK((*plain)->text == "{{ bos_token }}x");
  auto tokens = sparkd::tasks::hf_special_token_texts(dir.path());
  REQUIRE(tokens.has_value());
  CHECK(tokens->bos == "<|b|>");
  CHECK(tokens->eos == "<|e|>");
  CHECK(tokens->unk.empty());

  dir.write("tokenizer_config.json",
            R"({"chat_template": [{"name": "tool_use", "template": "T"},
                                  {"name": "default", "template": "D"}]})");
  auto named = sparkd::tasks::hf_chat_template_source(dir.path());
  REQUIRE(named.has_value());
  CHECK((*named)->text == "D");
  CHECK((*named)->tool_use_text == "T");

  dir.write("chat_template.jinja", "J");  // transformers' own file wins
  auto file = sparkd::tasks::hf_chat_template_source(dir.path());
  REQUIRE(file.has_value());
  CHECK((*file)->origin == "chat_template.jinja");
  CHECK((*file)->text == "J");
  std::filesystem::remove(std::filesystem::path(dir.path()) / "chat_template.jinja");

  dir.write("tokenizer_config.json", R"({"chat_template": [{"name": "rag", "template": "R"}]})");
  auto no_default = sparkd::tasks::hf_chat_template_source(dir.path());
  REQUIRE_FALSE(no_default.has_value());
  CHECK(no_default.status().code() == StatusCode::kInvalidArgument);
  CHECK_THAT(no_default.status().message(), Catch::Contains("tokenizer_config.json"));

  dir.write("tokenizer_config.json", "{not json");
  auto broken = sparkd::tasks::hf_chat_template_source(dir.path());
  REQUIRE_FALSE(broken.has_value());
  CHECK_THAT(broken.status().message(), Catch::Contains("tokenizer_config.json: not valid JSON"));
}

TEST_CASE("chat template: the model's own is rendered as transformers prepares the messages",
          "[chat_template]") {
  ChatInput input;
  using ordered = nlohmann::ordered_json;  // key order reaches the template, as in Python
  input.messages =
      ordered::array({{{"role", "user"}, {"content", "hi"}, {"name", nullptr}},
                      {{"role", "assistant"}, {"content", "ok"}, {"reasoning", "r1"}}});
  // Null-valued keys are dropped; reasoning is offered as thinking and reasoning_content.
  const std::string source =
      "{{ bos_token }}{% for m in messages %}{{ m.role }}:{{ m.content }}"
      "{% if m.name is defined %}[name]{% endif %}{% if m.thinking %}[{{ m.thinking }}|"
      "{{ m.reasoning_content }}|{{ m|list|join(',') }}]{% endif %};{% endfor %}"
      "{% if add_generation_prompt %}assistant:{% endif %}";
  CHECK(render_own(source, input) ==
        "<s>user:hi;assistant:ok[r1|r1|thinking,role,content,reasoning,reasoning_content];"
        "assistant:");
  input.add_generation_prompt = false;
  input.variables["enable_thinking"] = false;
  CHECK(render_own("{{ enable_thinking }}{{ add_generation_prompt }}", input) == "FalseFalse");
  // The template's own refusal is the caller's error, with its message.
  CHECK(
      render_own("{{ raise_exception('Only user and assistant roles are supported!') }}", input) ==
      "ERROR: template test: line 1: Only user and assistant roles are supported!");
  CHECK_THAT(render_own("{% if %}", input), Catch::StartsWith("PARSE: template test: line 1:"));
}

TEST_CASE("chat template: requests with tools take the tool_use template when there is one",
          "[chat_template]") {
  auto own = ChatTemplate::from_source({"test", "plain", "tools: {{ tools|length }}"}, {});
  REQUIRE(own.has_value());
  ChatInput input;
  input.messages = json::array({{{"role", "user"}, {"content", "hi"}}});
  CHECK(*own->render(input) == "plain");
  input.tools = json::array({{{"type", "function"}, {"function", {{"name", "f"}}}}});
  CHECK(*own->render(input) == "tools: 1");
  CHECK_FALSE(own->add_special_tokens());
  CHECK(own->description() == "the model's own (test)");
}

TEST_CASE("chat template: the built-in ones refuse what they cannot express", "[chat_template]") {
  const ChatTemplate chatml = ChatTemplate::builtin(ChatTemplateKind::kChatMl);
  ChatInput input;
  input.messages = json::array({{{"role", "user"}, {"content", "hi"}}});
  CHECK(*chatml.render(input) == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n");
  CHECK(chatml.add_special_tokens());
  CHECK_FALSE(ChatTemplate::builtin(ChatTemplateKind::kLlama3).add_special_tokens());
  input.tools = json::array({{{"type", "function"}}});
  auto with_tools = chatml.render(input);
  REQUIRE_FALSE(with_tools.has_value());
  CHECK_THAT(with_tools.status().message(), Catch::Contains("no place for tools"));
  input.tools = nullptr;
  input.messages[0]["content"] = json::array({{{"type", "text"}, {"text", "hi"}}});
  auto parts = chatml.render(input);
  REQUIRE_FALSE(parts.has_value());
  CHECK_THAT(parts.status().message(), Catch::Contains("must have text content"));
  input.messages = json::array();
  CHECK_FALSE(chatml.render(input).has_value());
}
