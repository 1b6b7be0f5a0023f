// Built-in chat templates: a conversation (role, content messages) rendered into the prompt
// text a chat model was trained on. sparkd has no Jinja engine; each template is written in
// C++ and must render byte for byte what Hugging Face transformers'
// `tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=...)` renders
// with that family's official Jinja template. The goldens in tests/fixtures/chat_templates are
// made by tools/fixtures/make_chat_template_fixtures.py, which quotes those templates verbatim.
//
//   chatml   Qwen2 / Qwen2.5 / Qwen3:
//              <|im_start|>{role}\n{content}<|im_end|>\n ...   [+ <|im_start|>assistant\n]
//            Plain ChatML: no default system message (Qwen2.5's official template adds "You are
//            Qwen, created by Alibaba Cloud. ..." when none is given) and no <think> handling
//            (Qwen3's strips reasoning from past assistant turns). Clients that want either put
//            it in the messages themselves.
//   llama3   Llama 3.0 (Meta-Llama-3-8B-Instruct): <|begin_of_text|> then per message
//              <|start_header_id|>{role}<|end_header_id|>\n\n{content, trimmed}<|eot_id|>
//            [+ <|start_header_id|>assistant<|end_header_id|>\n\n]. Not 3.1's, which prepends a
//            "Cutting Knowledge Date" system preamble. Trimming is Jinja's |trim, i.e. Python's
//            str.strip(): Unicode whitespace (NBSP, U+3000, U+2028, ...), not only ASCII.
//   mistral  Mistral-7B-Instruct-v0.1 (the revision with an optional system message):
//              <s> [INST] {system}\n\n{user} [/INST] {assistant}</s> [INST] {user} [/INST]
//            Roles must alternate user/assistant after an optional first system message. The
//            template has no generation prompt: a conversation ending in a user turn already
//            ends with " [/INST]", so add_generation_prompt changes nothing.
//
// Where sparkd is stricter than the Jinja templates (documented in render_chat below), it
// refuses the request with INVALID_ARGUMENT instead of rendering something the model was not
// trained on.
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <string_view>

#include "common/status.h"
#include "engine/model/model_spec.h"
#include "engine/tasks/chat_output.h"

namespace sparkd::tasks {

enum class ChatTemplateKind { kChatMl, kLlama3, kMistral };

struct ChatMessage {
  std::string role;  // "system" | "user" | "assistant"
  std::string content;
};

// The template for a model family: Qwen2/Qwen3 -> ChatML, Llama -> Llama 3, Mistral -> Mistral.
// Encoder families (BERT, XLM-R) have none: NOT_FOUND. A decoder loaded as an embedder or a
// reranker (e.g. Qwen3-Embedding) does not chat: FAILED_PRECONDITION. Llama 2 chat checkpoints
// share the Llama family but not its template; they are not served correctly by any built-in.
Expected<ChatTemplateKind> chat_template_for(const model::ModelSpec& spec);

// "chatml" | "llama3" | "mistral" -> kind (the config override); INVALID_ARGUMENT listing the
// names otherwise.
Expected<ChatTemplateKind> parse_chat_template_name(std::string_view name);
const char* chat_template_name(ChatTemplateKind kind);

// Renders the conversation. INVALID_ARGUMENT, naming the message index, for:
//   - no messages (Jinja would render "" or a bare generation prompt);
//   - a role other than system/user/assistant (the ChatML and Llama 3 Jinja templates would
//     render any string as a role; a role the model never saw is a client error here);
//   - mistral: a system message anywhere but first, roles not alternating user/assistant after
//     it (both raise in the Jinja template), and a system message with no user message after
//     it (the Jinja template silently drops the system message and renders only "<s>").
Expected<std::string> render_chat(ChatTemplateKind kind, std::span<const ChatMessage> messages,
                                  bool add_generation_prompt);

// Whether the rendered text already starts with the BOS the tokenizer's post-processor would
// add (llama3's <|begin_of_text|>, mistral's <s>): tokenize it with add_special_tokens = false
// then, or the model sees two BOS tokens. ChatML has no BOS.
bool rendered_text_has_bos(ChatTemplateKind kind);

// ---- the model's own template -------------------------------------------------------------

// The conversation a chat template renders, as OpenAI's chat API carries it: messages (role;
// content as a string, null or a list of parts; tool_calls, tool_call_id, name,
// reasoning_content where present), tools (function specs), documents, and switches.
struct ChatInput {
  nlohmann::ordered_json messages = nlohmann::ordered_json::array();
  nlohmann::ordered_json tools;      // null: none
  nlohmann::ordered_json documents;  // null: none
  bool add_generation_prompt = true;
  // Further template variables (enable_thinking, a client's chat_template_kwargs), as they are.
  nlohmann::ordered_json variables = nlohmann::ordered_json::object();
};

// A role, content conversation as a ChatInput.
ChatInput chat_input(std::span<const ChatMessage> messages, bool add_generation_prompt);

// The special tokens' texts a template may print ({{ bos_token }}); empty: not defined.
struct SpecialTokenTexts {
  std::string bos, eos, unk, pad;
};

// Where a model's own Jinja template came from, and its text: chat_template.jinja,
// tokenizer_config.json's chat_template (a string, or named templates: "default", and
// "tool_use" for requests with tools), or GGUF's tokenizer.chat_template.
struct ChatTemplateSource {
  std::string origin;  // e.g. "tokenizer_config.json chat_template"
  std::string text;
  std::string tool_use_text;  // "" when there is no separate tool-use template
};

// A Hugging Face model directory's own template: chat_template.jinja (written by transformers
// since 4.43), else tokenizer_config.json's chat_template; nullopt when it has neither.
// INVALID_ARGUMENT naming the file when tokenizer_config.json is not JSON or its chat_template
// is neither a string nor a list holding a "default" template.
Expected<std::optional<ChatTemplateSource>> hf_chat_template_source(const std::string& model_dir);
// Its tokenizer_config.json's bos_token, eos_token, unk_token, pad_token (strings or
// AddedToken objects); empty where absent.
Expected<SpecialTokenTexts> hf_special_token_texts(const std::string& model_dir);

// How a model's chat requests become prompt text: its own Jinja template, rendered as
// transformers' apply_chat_template renders it, or one of the built-in templates (for models
// without one, or chosen in the config).
class ChatTemplate {
 public:
  static ChatTemplate builtin(ChatTemplateKind kind);
  // INVALID_ARGUMENT naming the origin and line when the template does not parse.
  static Expected<ChatTemplate> from_source(const ChatTemplateSource& source,
                                            SpecialTokenTexts special_tokens);

  // The prompt text. As transformers does: message keys whose value is null are dropped, and
  // reasoning (reasoning_content, thinking or reasoning) is offered under the first two
  // names. INVALID_ARGUMENT for what the template refuses (its own raise_exception message,
  // naming the template) or for what a built-in template cannot express (tools, documents,
  // content that is not a string).
  Expected<std::string> render(const ChatInput& input) const;

  // Whether the rendered text is tokenized with the tokenizer's own special tokens (BOS). A
  // Jinja template writes them itself, so no (transformers tokenizes chat prompts with
  // add_special_tokens=False); the built-in llama3 and mistral templates write BOS too, ChatML
  // has none to write.
  bool add_special_tokens() const;

  // How the model marks reasoning and tool calls in its output, as its template tells it to
  // (built-in templates: neither).
  ChatOutputFormat output_format() const;

  // "chatml (built in)" or "the model's own (tokenizer_config.json chat_template)".
  std::string description() const;

 private:
  struct Jinja;
  ChatTemplateKind kind_ = ChatTemplateKind::kChatMl;
  std::shared_ptr<const Jinja> jinja_;  // null: built in
};

}  // namespace sparkd::tasks
