#include "engine/tasks/chat_template.h"

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>

#include "engine/jinja/python_text.h"
#include "engine/jinja/template.h"

namespace sparkd::tasks {
namespace {

constexpr std::string_view kRoleSystem = "system";
constexpr std::string_view kRoleUser = "user";
constexpr std::string_view kRoleAssistant = "assistant";

Status invalid_argument(std::string message) {
  return {StatusCode::kInvalidArgument, std::move(message)};
}

std::string message_label(std::size_t index, const ChatMessage& message) {
  return "message " + std::to_string(index) + " (role \"" + message.role + "\")";
}

bool is_known_role(std::string_view role) {
  return role == kRoleSystem || role == kRoleUser || role == kRoleAssistant;
}

Status check_messages(ChatTemplateKind kind, std::span<const ChatMessage> messages) {
  if (messages.empty()) {
    return invalid_argument(std::string("chat template ") + chat_template_name(kind) +
                            ": the conversation has no messages; send at least one user message");
  }
  for (std::size_t i = 0; i < messages.size(); ++i) {
    if (!is_known_role(messages[i].role)) {
      return invalid_argument(std::string("chat template ") + chat_template_name(kind) + ": " +
                              message_label(i, messages[i]) +
                              " has an unknown role; roles are system, user and assistant");
    }
  }
  return Status::ok();
}

std::string render_chatml(std::span<const ChatMessage> messages, bool add_generation_prompt) {
  std::string text;
  for (const ChatMessage& message : messages) {
    text += "<|im_start|>";
    text += message.role;
    text += '\n';
    text += message.content;
    text += "<|im_end|>\n";
  }
  if (add_generation_prompt) text += "<|im_start|>assistant\n";
  return text;
}

std::string render_llama3(std::span<const ChatMessage> messages, bool add_generation_prompt) {
  // The official template adds the BOS to the first message only (loop.index0 == 0), so it is
  // there exactly once whenever there are messages (render_chat refuses none).
  std::string text = "<|begin_of_text|>";
  for (const ChatMessage& message : messages) {
    text += "<|start_header_id|>";
    text += message.role;
    text += "<|end_header_id|>\n\n";
    text += jinja::python_strip(message.content, std::nullopt);  // Jinja's |trim
    text += "<|eot_id|>";
  }
  if (add_generation_prompt) text += "<|start_header_id|>assistant<|end_header_id|>\n\n";
  return text;
}

Expected<std::string> render_mistral(std::span<const ChatMessage> messages) {
  const ChatMessage* system_message = nullptr;
  std::size_t first_turn = 0;
  if (messages.front().role == kRoleSystem) {
    system_message = &messages.front();
    first_turn = 1;
  }
  if (first_turn == messages.size()) {
    return invalid_argument(
        "chat template mistral: message 0 is a system message with no user message after it; "
        "the Mistral template has no place for a system message on its own (it goes before the "
        "first user message)");
  }
  std::string text = "<s>";
  for (std::size_t i = first_turn; i < messages.size(); ++i) {
    const ChatMessage& message = messages[i];
    const bool user_turn_expected = (i - first_turn) % 2 == 0;
    if (message.role == kRoleSystem) {
      return invalid_argument("chat template mistral: " + message_label(i, message) +
                              ": a system message may only be the first message");
    }
    if ((message.role == kRoleUser) != user_turn_expected) {
      return invalid_argument("chat template mistral: " + message_label(i, message) +
                              ": expected a " +
                              std::string(user_turn_expected ? kRoleUser : kRoleAssistant) +
                              " message; after the optional system message, roles must alternate "
                              "user/assistant/user/assistant/...");
    }
    if (message.role == kRoleUser) {
      text += " [INST] ";
      if (i == first_turn && system_message != nullptr) {
        text += system_message->content;
        text += "\n\n";
      }
      text += message.content;
      text += " [/INST]";
    } else {
      text += ' ';
      text += message.content;
      text += "</s>";
    }
  }
  return text;
}

}  // namespace

Expected<ChatTemplateKind> chat_template_for(const model::ModelSpec& spec) {
  switch (spec.family) {
    case model::ModelFamily::kBert:
    case model::ModelFamily::kXlmRoberta:
      return Status(StatusCode::kNotFound,
                    std::string("model family ") + model::family_name(spec.family) + " (" +
                        spec.architecture +
                        ") is an encoder and has no chat template; it embeds or reranks, use "
                        "embed/rerank requests");
    case model::ModelFamily::kGptOss:
      return Status(StatusCode::kFailedPrecondition,
                    "gpt-oss chats in OpenAI's harmony format, which sparkd has no built-in "
                    "template for: the model needs its own chat template (chat_template.jinja or "
                    "tokenizer_config.json's chat_template, or a GGUF's tokenizer.chat_template)");
    case model::ModelFamily::kQwen2:
    case model::ModelFamily::kQwen3:
    case model::ModelFamily::kQwen3_5:
    case model::ModelFamily::kLlama:
    case model::ModelFamily::kMistral:
      break;
  }
  if (spec.task != model::ModelTask::kGenerate) {
    return Status(StatusCode::kFailedPrecondition,
                  std::string("model ") + spec.architecture + " is loaded as a " +
                      model::task_name(spec.task) +
                      " model, not a generative one, so it has no chat template");
  }
  switch (spec.family) {
    case model::ModelFamily::kQwen2:
    case model::ModelFamily::kQwen3:
    case model::ModelFamily::kQwen3_5:  // ChatML, as Qwen3's (its own template adds thinking)
      return ChatTemplateKind::kChatMl;
    case model::ModelFamily::kLlama:
      return ChatTemplateKind::kLlama3;
    case model::ModelFamily::kMistral:
      return ChatTemplateKind::kMistral;
    case model::ModelFamily::kGptOss:
    case model::ModelFamily::kBert:
    case model::ModelFamily::kXlmRoberta:
      break;
  }
  return Status(StatusCode::kInternal, "chat_template_for: unhandled model family");
}

Expected<ChatTemplateKind> parse_chat_template_name(std::string_view name) {
  for (ChatTemplateKind kind :
       {ChatTemplateKind::kChatMl, ChatTemplateKind::kLlama3, ChatTemplateKind::kMistral}) {
    if (name == chat_template_name(kind)) return kind;
  }
  return invalid_argument("unknown chat template \"" + std::string(name) +
                          "\"; the built-in templates are chatml, llama3 and mistral");
}

const char* chat_template_name(ChatTemplateKind kind) {
  switch (kind) {
    case ChatTemplateKind::kChatMl:
      return "chatml";
    case ChatTemplateKind::kLlama3:
      return "llama3";
    case ChatTemplateKind::kMistral:
      return "mistral";
  }
  return "unknown";
}

Expected<std::string> render_chat(ChatTemplateKind kind, std::span<const ChatMessage> messages,
                                  bool add_generation_prompt) {
  SPARKD_RETURN_IF_ERROR(check_messages(kind, messages));
  switch (kind) {
    case ChatTemplateKind::kChatMl:
      return render_chatml(messages, add_generation_prompt);
    case ChatTemplateKind::kLlama3:
      return render_llama3(messages, add_generation_prompt);
    case ChatTemplateKind::kMistral:
      // The Mistral template has no generation prompt (see the header).
      return render_mistral(messages);
  }
  return Status(StatusCode::kInternal, "render_chat: unhandled chat template kind");
}

bool rendered_text_has_bos(ChatTemplateKind kind) {
  switch (kind) {
    case ChatTemplateKind::kChatMl:
      return false;
    case ChatTemplateKind::kLlama3:
    case ChatTemplateKind::kMistral:
      return true;
  }
  return false;
}

// ---- the model's own template -------------------------------------------------------------

struct ChatTemplate::Jinja {
  std::string origin;
  jinja::Template main;
  std::optional<jinja::Template> tool_use;
  SpecialTokenTexts special_tokens;
  ChatOutputFormat output_format;
};

namespace {

// transformers' preprocessing of each message: null-valued keys dropped (apply_chat_template),
// then _alias_reasoning_fields: the first non-null of reasoning_content, thinking, reasoning
// becomes {"thinking": r, **message, "reasoning_content": r}.
nlohmann::ordered_json prepare_messages(const nlohmann::ordered_json& messages) {
  nlohmann::ordered_json prepared = nlohmann::ordered_json::array();
  for (const auto& message : messages) {
    if (!message.is_object()) {
      prepared.push_back(message);
      continue;
    }
    nlohmann::ordered_json kept = nlohmann::ordered_json::object();
    for (const auto& [key, value] : message.items()) {
      if (!value.is_null()) kept[key] = value;
    }
    const nlohmann::ordered_json* reasoning = nullptr;
    for (const char* field : {"reasoning_content", "thinking", "reasoning"}) {
      if (kept.contains(field)) {
        reasoning = &kept[field];
        break;
      }
    }
    if (reasoning != nullptr) {
      nlohmann::ordered_json aliased = nlohmann::ordered_json::object();
      const nlohmann::ordered_json r = *reasoning;
      aliased["thinking"] = r;
      for (const auto& [key, value] : kept.items()) aliased[key] = value;
      aliased["reasoning_content"] = r;
      kept = std::move(aliased);
    }
    prepared.push_back(std::move(kept));
  }
  return prepared;
}

// A role/content conversation for the built-in templates, or why it is not one.
Expected<std::vector<ChatMessage>> plain_messages(ChatTemplateKind kind, const ChatInput& input) {
  const std::string name = chat_template_name(kind);
  if (!input.tools.is_null() && !input.tools.empty()) {
    return invalid_argument("chat template " + name +
                            " (built in) has no place for tools; this model has no template "
                            "of its own that renders them");
  }
  if (!input.documents.is_null() && !input.documents.empty()) {
    return invalid_argument("chat template " + name + " (built in) has no place for documents");
  }
  std::vector<ChatMessage> messages;
  for (size_t i = 0; i < input.messages.size(); ++i) {
    const auto& m = input.messages[i];
    if (!m.is_object() || !m.contains("role") || !m["role"].is_string()) {
      return invalid_argument("message " + std::to_string(i) + " has no role");
    }
    const auto content = m.find("content");
    if (content == m.end() || !content->is_string()) {
      return invalid_argument("chat template " + name + " (built in): message " +
                              std::to_string(i) +
                              " must have text content (tool calls and content parts need a "
                              "template of the model's own)");
    }
    messages.push_back({m["role"].get<std::string>(), content->get<std::string>()});
  }
  return messages;
}

Expected<nlohmann::ordered_json> read_json_file(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) return nlohmann::ordered_json();
  std::stringstream text;
  text << in.rdbuf();
  nlohmann::ordered_json json = nlohmann::ordered_json::parse(text.str(), nullptr, false);
  if (json.is_discarded()) {
    return Status(StatusCode::kInvalidArgument, path.string() + ": not valid JSON");
  }
  return json;
}

Expected<std::optional<ChatTemplateSource>> chat_template_in(const std::filesystem::path& dir,
                                                             const nlohmann::ordered_json& config) {
  const std::filesystem::path jinja_file = dir / "chat_template.jinja";
  if (std::ifstream in(jinja_file); in) {
    std::stringstream text;
    text << in.rdbuf();
    return std::optional<ChatTemplateSource>(
        ChatTemplateSource{"chat_template.jinja", text.str(), ""});
  }
  if (!config.is_object() || !config.contains("chat_template")) {
    return std::optional<ChatTemplateSource>();
  }
  const auto& value = config["chat_template"];
  const std::string origin = "tokenizer_config.json chat_template";
  if (value.is_string()) {
    return std::optional<ChatTemplateSource>(
        ChatTemplateSource{origin, value.get<std::string>(), ""});
  }
  ChatTemplateSource source{origin, "", ""};
  if (value.is_array()) {
    for (const auto& named : value) {
      if (!named.is_object() || !named.contains("name") || !named.contains("template") ||
          !named["name"].is_string() || !named["template"].is_string()) {
        continue;
      }
      if (named["name"] == "default") source.text = named["template"].get<std::string>();
      if (named["name"] == "tool_use") source.tool_use_text = named["template"].get<std::string>();
    }
  }
  if (source.text.empty()) {
    return Status(StatusCode::kInvalidArgument,
                  (dir / "tokenizer_config.json").string() +
                      ": chat_template is neither a string nor a list with a \"default\" template");
  }
  return std::optional<ChatTemplateSource>(std::move(source));
}

// tokenizer_config.json's bos_token, eos_token, ...: a string or an AddedToken {"content": ...}.
std::string special_token(const nlohmann::ordered_json& config, const char* field) {
  if (!config.is_object() || !config.contains(field)) return "";
  const auto& value = config[field];
  if (value.is_string()) return value.get<std::string>();
  if (value.is_object() && value.contains("content") && value["content"].is_string()) {
    return value["content"].get<std::string>();
  }
  return "";
}

}  // namespace

ChatInput chat_input(std::span<const ChatMessage> messages, bool add_generation_prompt) {
  ChatInput input;
  for (const ChatMessage& m : messages) {
    input.messages.push_back({{"role", m.role}, {"content", m.content}});
  }
  input.add_generation_prompt = add_generation_prompt;
  return input;
}

Expected<std::optional<ChatTemplateSource>> hf_chat_template_source(const std::string& model_dir) {
  const std::filesystem::path dir(model_dir);
  SPARKD_ASSIGN_OR_RETURN(const nlohmann::ordered_json config,
                          read_json_file(dir / "tokenizer_config.json"));
  return chat_template_in(dir, config);
}

Expected<SpecialTokenTexts> hf_special_token_texts(const std::string& model_dir) {
  SPARKD_ASSIGN_OR_RETURN(
      const nlohmann::ordered_json config,
      read_json_file(std::filesystem::path(model_dir) / "tokenizer_config.json"));
  return SpecialTokenTexts{special_token(config, "bos_token"), special_token(config, "eos_token"),
                           special_token(config, "unk_token"), special_token(config, "pad_token")};
}

ChatTemplate ChatTemplate::builtin(ChatTemplateKind kind) {
  ChatTemplate t;
  t.kind_ = kind;
  return t;
}

Expected<ChatTemplate> ChatTemplate::from_source(const ChatTemplateSource& source,
                                                 SpecialTokenTexts special_tokens) {
  auto jinja = std::make_shared<Jinja>();
  jinja->origin = source.origin;
  jinja->special_tokens = std::move(special_tokens);
  jinja->output_format = chat_output_format(source.text + source.tool_use_text);
  SPARKD_ASSIGN_OR_RETURN(jinja->main, jinja::Template::parse(source.text, source.origin));
  if (!source.tool_use_text.empty()) {
    SPARKD_ASSIGN_OR_RETURN(jinja->tool_use, jinja::Template::parse(source.tool_use_text,
                                                                    source.origin + " (tool_use)"));
  }
  ChatTemplate t;
  t.jinja_ = std::move(jinja);
  return t;
}

Expected<std::string> ChatTemplate::render(const ChatInput& input) const {
  if (input.messages.empty()) {
    return invalid_argument("the conversation has no messages; send at least one user message");
  }
  if (!jinja_) {
    SPARKD_ASSIGN_OR_RETURN(const std::vector<ChatMessage> messages, plain_messages(kind_, input));
    return render_chat(kind_, messages, input.add_generation_prompt);
  }
  // The variables transformers' apply_chat_template passes: the special tokens' texts, the
  // caller's extra variables, then messages, tools, documents, add_generation_prompt.
  nlohmann::ordered_json context = nlohmann::ordered_json::object();
  const SpecialTokenTexts& tokens = jinja_->special_tokens;
  if (!tokens.bos.empty()) context["bos_token"] = tokens.bos;
  if (!tokens.eos.empty()) context["eos_token"] = tokens.eos;
  if (!tokens.unk.empty()) context["unk_token"] = tokens.unk;
  if (!tokens.pad.empty()) context["pad_token"] = tokens.pad;
  for (const auto& [key, value] : input.variables.items()) context[key] = value;
  context["messages"] = prepare_messages(input.messages);
  context["tools"] = input.tools;
  context["documents"] = input.documents;
  context["add_generation_prompt"] = input.add_generation_prompt;
  const bool with_tools = !input.tools.is_null() && !input.tools.empty();
  const jinja::Template& chosen = with_tools && jinja_->tool_use ? *jinja_->tool_use : jinja_->main;
  try {
    return chosen.render(jinja::Value::from_json(context));
  } catch (const jinja::TemplateError& e) {  // a JSON value with no template equivalent
    return invalid_argument("template " + chosen.name() + ": " + e.what());
  }
}

bool ChatTemplate::add_special_tokens() const {
  return !jinja_ && !rendered_text_has_bos(kind_);
}

ChatOutputFormat ChatTemplate::output_format() const {
  return jinja_ ? jinja_->output_format : ChatOutputFormat{};
}

std::string ChatTemplate::description() const {
  if (jinja_) return "the model's own (" + jinja_->origin + ")";
  return std::string(chat_template_name(kind_)) + " (built in)";
}

}  // namespace sparkd::tasks
