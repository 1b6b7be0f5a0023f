#include "engine/tasks/chat_template.h"

#include <cstddef>
#include <cstdint>
#include <optional>

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

// Python's str.isspace() (bidirectional class WS, B or S, or category Zs): what str.strip(), and
// so Jinja's |trim, removes. U+200B (zero width space) and U+FEFF (BOM) are not in it.
bool is_python_space(char32_t code_point) {
  switch (code_point) {
    case 0x09:
    case 0x0A:
    case 0x0B:
    case 0x0C:
    case 0x0D:  // \t \n \v \f \r
    case 0x1C:
    case 0x1D:
    case 0x1E:
    case 0x1F:  // information separators
    case 0x20:
    case 0x85:
    case 0xA0:
    case 0x1680:
    case 0x2028:
    case 0x2029:
    case 0x202F:
    case 0x205F:
    case 0x3000:
      return true;
    default:
      return code_point >= 0x2000 && code_point <= 0x200A;
  }
}

// Decodes the UTF-8 sequence at text[pos]; nullopt for bytes that are not well-formed UTF-8
// (they stop trimming: Python would never have produced them from a str).
struct DecodedCodePoint {
  char32_t code_point;
  std::size_t length_bytes;
};
std::optional<DecodedCodePoint> decode_utf8_at(std::string_view text, std::size_t pos) {
  const auto lead = static_cast<unsigned char>(text[pos]);
  std::size_t length_bytes = 0;
  char32_t code_point = 0;
  if (lead < 0x80) return DecodedCodePoint{lead, 1};
  if ((lead & 0xE0) == 0xC0) {
    length_bytes = 2;
    code_point = lead & 0x1Fu;
  } else if ((lead & 0xF0) == 0xE0) {
    length_bytes = 3;
    code_point = lead & 0x0Fu;
  } else if ((lead & 0xF8) == 0xF0) {
    length_bytes = 4;
    code_point = lead & 0x07u;
  } else {
    return std::nullopt;
  }
  if (pos + length_bytes > text.size()) return std::nullopt;
  for (std::size_t i = 1; i < length_bytes; ++i) {
    const auto continuation = static_cast<unsigned char>(text[pos + i]);
    if ((continuation & 0xC0) != 0x80) return std::nullopt;
    code_point = (code_point << 6) | (continuation & 0x3Fu);
  }
  return DecodedCodePoint{code_point, length_bytes};
}

// Renders "<|im_start|>{role}\n{content}<|im_end|>\n" per message.
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
    text += trim_unicode_whitespace(message.content);
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

std::string_view trim_unicode_whitespace(std::string_view text) {
  std::size_t begin = 0;
  while (begin < text.size()) {
    const auto decoded = decode_utf8_at(text, begin);
    if (!decoded || !is_python_space(decoded->code_point)) break;
    begin += decoded->length_bytes;
  }
  std::size_t end = text.size();
  while (end > begin) {
    // Step back to the lead byte of the last code point (at most 3 continuation bytes).
    std::size_t lead = end - 1;
    while (lead > begin && end - lead < 4 &&
           (static_cast<unsigned char>(text[lead]) & 0xC0) == 0x80) {
      --lead;
    }
    const auto decoded = decode_utf8_at(text, lead);
    if (!decoded || lead + decoded->length_bytes != end || !is_python_space(decoded->code_point)) {
      break;
    }
    end = lead;
  }
  return text.substr(begin, end - begin);
}

Expected<ChatTemplateKind> chat_template_for(const model::ModelSpec& spec) {
  switch (spec.family) {
    case model::ModelFamily::kBert:
    case model::ModelFamily::kXlmRoberta:
      return Status(StatusCode::kNotFound,
                    std::string("model family ") + model::family_name(spec.family) + " (" +
                        spec.architecture +
                        ") is an encoder and has no chat template; it embeds or reranks, use "
                        "embed/rerank requests");
    case model::ModelFamily::kQwen2:
    case model::ModelFamily::kQwen3:
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
      return ChatTemplateKind::kChatMl;
    case model::ModelFamily::kLlama:
      return ChatTemplateKind::kLlama3;
    case model::ModelFamily::kMistral:
      return ChatTemplateKind::kMistral;
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

}  // namespace sparkd::tasks
