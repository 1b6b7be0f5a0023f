// A Jinja2 interpreter for models' chat templates: what jinja2 renders for a template under
// Hugging Face transformers' environment (ImmutableSandboxedEnvironment with trim_blocks and
// lstrip_blocks, loop controls, {% generation %}, its tojson, raise_exception and
// strftime_now), byte for byte, for the statements, expressions, filters, tests and Python
// methods real chat templates use. Anything else is an error naming the template line, never a
// silently different text. No transport types: the chat path (engine/tasks) feeds it messages
// as JSON.
#pragma once

#include <ctime>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "common/status.h"
#include "engine/jinja/value.h"

namespace sparkd::jinja {

struct Stmt;

struct RenderOptions {
  // strftime_now()'s clock: seconds since the epoch, local time as transformers' datetime.now()
  // gives it. Tests fix it; unset means now.
  std::function<std::time_t()> clock;
  // A template comes with a model file, so it is bounded: the text it renders (and any string
  // or list it builds), and the statements and loop iterations it runs. Real chat templates
  // stay far below both for conversations of thousands of messages.
  size_t max_output_bytes = size_t{16} << 20;
  int64_t max_steps = 10'000'000;
};

class Template {
 public:
  // INVALID_ARGUMENT "template NAME: line N: ..." for a syntax error or an unsupported statement.
  static Expected<Template> parse(std::string_view source, std::string name = "template");

  // The text for `context` (a dict: messages, tools, bos_token, add_generation_prompt, ...).
  // INVALID_ARGUMENT "template NAME: line N: ..." when rendering fails: the template's own
  // raise_exception("...") (its message, as the client should see it), an undefined value used
  // where jinja2 raises, a type error, or something this interpreter does not support.
  Expected<std::string> render(const Value& context, const RenderOptions& options = {}) const;

  const std::string& name() const { return name_; }

 private:
  std::string name_;
  std::shared_ptr<const std::vector<std::unique_ptr<Stmt>>> body_;
};

}  // namespace sparkd::jinja
