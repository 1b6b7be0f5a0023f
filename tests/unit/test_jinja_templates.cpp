// The Jinja interpreter against Python jinja2 on real chat templates: the 70 templates the
// llama-cpp-python 0.3.36 sdist carries (vendor/llama.cpp/models/templates), each rendered
// over 13 conversations (system, developer, multi-turn, tools and tool results, reasoning with
// thinking on and off, RAG documents, Unicode whitespace, content parts) by transformers' own
// render_jinja_template: tests/fixtures/chat_templates/jinja/goldens.json, made by
// tools/fixtures/make_jinja_goldens.py. Every output must match byte for byte, and where jinja2
// raised, sparkd must fail too (with the template's own message when it was raise_exception).
#include <catch2/catch.hpp>
#include <ctime>
#include <fstream>
#include <map>
#include <sstream>
#include <string>

#include "engine/jinja/template.h"

#ifndef SPARKD_SOURCE_DIR
#error "SPARKD_SOURCE_DIR must be defined"
#endif

namespace {

using sparkd::jinja::Template;
using sparkd::jinja::Value;

const std::string kFixtures =
    std::string(SPARKD_SOURCE_DIR) + "/tests/fixtures/chat_templates/jinja/";

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

// The generator's fixed clock, 2026-07-26 12:00:00 local time.
std::time_t golden_clock() {
  std::tm local{};
  local.tm_year = 2026 - 1900;
  local.tm_mon = 6;
  local.tm_mday = 26;
  local.tm_hour = 12;
  local.tm_isdst = -1;
  return std::mktime(&local);
}

}  // namespace

TEST_CASE("jinja: real chat templates render as jinja2 renders them", "[jinja]") {
  const auto goldens = nlohmann::ordered_json::parse(read_file(kFixtures + "goldens.json"));
  std::map<std::string, Template> templates;
  sparkd::jinja::RenderOptions options;
  options.clock = golden_clock;
  int outputs = 0, errors = 0;
  std::map<std::string, int> failures_by_template;
  for (const auto& golden : goldens["cases"]) {
    const std::string name = golden["template"];
    const std::string conversation = golden["conversation"];
    if (!templates.count(name)) {
      auto parsed = Template::parse(read_file(kFixtures + "templates/" + name), name);
      INFO(name);
      REQUIRE(parsed.has_value());
      if (!parsed) continue;
      templates.emplace(name, std::move(parsed).value());
    }
    nlohmann::ordered_json context = golden["context"];
    context["bos_token"] = golden["bos_token"];
    context["eos_token"] = golden["eos_token"];
    const auto rendered = templates.at(name).render(Value::from_json(context), options);
    INFO(name << " / " << conversation);
    bool ok;
    if (golden.contains("output")) {
      ++outputs;
      const std::string expected = golden["output"];
      if (!rendered) {
        UNSCOPED_INFO("sparkd failed: " << rendered.status().message());
        ok = false;
      } else {
        ok = *rendered == expected;
        if (!ok) UNSCOPED_INFO("got:\n" << *rendered << "\nwant:\n" << expected);
      }
    } else {
      ++errors;
      const std::string error = golden["error"];
      ok = !rendered.has_value();
      // The template's own raise_exception message reaches the caller as it is.
      const std::string prefix = "TemplateError: ";
      if (ok && error.rfind(prefix, 0) == 0) {
        ok = rendered.status().message().find(error.substr(prefix.size())) != std::string::npos;
        if (!ok) UNSCOPED_INFO("error " << rendered.status().message() << ", want " << error);
      } else if (!ok) {
        UNSCOPED_INFO("rendered, but jinja2 raised " << error << ":\n" << *rendered);
      }
    }
    if (!ok) ++failures_by_template[name];
    CHECK(ok);
  }
  for (const auto& [name, count] : failures_by_template) WARN(name << ": " << count << " failing");
  CHECK(outputs > 900);
  CHECK(errors > 100);
}
