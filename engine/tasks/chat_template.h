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

#include <span>
#include <string>
#include <string_view>

#include "common/status.h"
#include "engine/model/model_spec.h"

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

// Removes leading and trailing whitespace as Python's str.strip() does (Jinja's |trim): the code
// points for which str.isspace() is true. Bytes that are not valid UTF-8 count as non-space.
std::string_view trim_unicode_whitespace(std::string_view text);

}  // namespace sparkd::tasks
