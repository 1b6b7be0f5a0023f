// The OpenAI and Ollama APIs as sparkd.v1 calls, without a server: what each request body
// becomes, which bodies are refused and why, and the JSON / SSE / NDJSON each API's clients
// get from the call's responses (tool calls, reasoning, usage, errors mid-stream).
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "api/http/api_router.h"
#include "api/http/ollama_api.h"
#include "api/http/openai_api.h"
#include "api/protocol/request_validation.h"
#include "daemon/chat_request.h"

namespace {

using namespace sparkd;
using namespace sparkd::http;
using nlohmann::json;

HttpRequest post(const std::string& path, const json& body) {
  HttpRequest request;
  request.method = "POST";
  request.path = path;
  request.target = path;
  request.body = body.dump();
  return request;
}

// The call a route made; fails the test when it answered at once.
RoutedCall routed_call(Routed routed) {
  if (auto* answer = std::get_if<HttpAnswer>(&routed)) FAIL(answer->status << " " << answer->body);
  return std::get<RoutedCall>(std::move(routed));
}

// The error a route answered at once: its status and message.
std::pair<int, std::string> routed_error(Routed routed) {
  auto* answer = std::get_if<HttpAnswer>(&routed);
  REQUIRE(answer != nullptr);
  const json body = json::parse(answer->body);
  const std::string message = body["error"].is_string()
                                  ? body["error"].get<std::string>()
                                  : body["error"]["message"].get<std::string>();
  return {answer->status, message};
}

v1::Response chunk(const std::string& text, bool final = false) {
  v1::Response response;
  response.set_final(final);
  response.mutable_generate()->set_text(text);
  return response;
}

v1::ToolCall* add_call(v1::GenerateChunk* g, const std::string& name, const std::string& args) {
  v1::ToolCall* call = g->add_tool_calls();
  call->set_id("call_1");
  call->set_name(name);
  call->set_arguments(args);
  return call;
}

std::vector<json> sse_json(const std::string& body, bool& done) {
  std::vector<json> events;
  done = false;
  size_t at = 0;
  while ((at = body.find("data: ", at)) != std::string::npos) {
    const size_t end = body.find("\n\n", at);
    const std::string data = body.substr(at + 6, end - at - 6);
    if (data == "[DONE]") {
      done = true;
    } else {
      events.push_back(json::parse(data));
    }
    at = end + 2;
  }
  return events;
}

}  // namespace

TEST_CASE("OpenAI chat bodies become chat generate requests", "[http_api]") {
  const json body = {
      {"model", "qwen"},
      {"messages",
       {{{"role", "developer"}, {"content", "Be brief."}},
        {{"role", "user"},
         {"content",
          {{{"type", "text"}, {"text", "Weather in"}}, {{"type", "text"}, {"text", "Paris?"}}}}},
        {{"role", "assistant"},
         {"content", nullptr},
         {"tool_calls",
          {{{"id", "call_9"},
            {"type", "function"},
            {"function", {{"name", "get_weather"}, {"arguments", "{\"city\": \"Paris\"}"}}}}}}},
        {{"role", "tool"}, {"tool_call_id", "call_9"}, {"content", "18C"}}}},
      {"tools", {{{"type", "function"}, {"function", {{"name", "get_weather"}}}}}},
      {"max_completion_tokens", 64},
      {"temperature", 0.5},
      {"top_p", 0.9},
      {"seed", 7},
      {"stop", "END"},
      {"presence_penalty", 0.5},
      {"logit_bias", {{"42", -100}}},
      {"chat_template_kwargs", {{"enable_thinking", false}}},
      {"stream", true},
      {"user", "ignored"}};
  const RoutedCall call = routed_call(openai_chat_completions(post("/v1/chat/completions", body)));
  const v1::GenerateRequest& g = call.request.generate();
  CHECK(g.model() == "qwen");
  CHECK(g.stream());
  CHECK(g.max_tokens() == 64);
  CHECK(g.sampling().temperature() == 0.5f);
  CHECK(g.sampling().top_p() == 0.9f);
  CHECK(g.sampling().seed() == 7);
  CHECK(g.sampling().presence_penalty() == 0.5f);
  REQUIRE(g.sampling().logit_bias_size() == 1);
  CHECK(g.sampling().logit_bias(0).token_id() == 42);
  CHECK(g.stop(0) == "END");
  const v1::Chat& chat = g.chat();
  REQUIRE(chat.messages_size() == 4);
  CHECK(chat.messages(0).role() == "system");  // developer is system to a chat template
  CHECK(chat.messages(1).content() == "Weather in\nParis?");
  REQUIRE(chat.messages(2).tool_calls_size() == 1);
  CHECK(chat.messages(2).tool_calls(0).id() == "call_9");
  CHECK(chat.messages(2).tool_calls(0).name() == "get_weather");
  CHECK(json::parse(chat.messages(2).tool_calls(0).arguments()) == json{{"city", "Paris"}});
  CHECK(chat.messages(3).tool_call_id() == "call_9");
  CHECK(json::parse(chat.tools_json())[0]["function"]["name"] == "get_weather");
  CHECK(json::parse(chat.template_variables_json()) == json{{"enable_thinking", false}});
  v1::Request numbered = call.request;
  numbered.set_id(1);  // the HTTP server numbers its calls
  CHECK(api::validate_request(numbered, {}).is_ok());

  // What the template sees: arguments as an object, content left out of a tool-call turn.
  auto input = daemon::chat_input_from(chat);
  REQUIRE(input.has_value());
  CHECK(input->messages[2].contains("content") == false);
  CHECK(input->messages[2]["tool_calls"][0]["function"]["arguments"] == json{{"city", "Paris"}});
  CHECK(input->messages[3]["tool_call_id"] == "call_9");
  CHECK(input->tools[0]["type"] == "function");
  CHECK(input->variables["enable_thinking"] == false);
}

TEST_CASE("OpenAI bodies sparkd cannot serve are refused with the field named", "[http_api]") {
  const json base = {{"model", "m"}, {"messages", {{{"role", "user"}, {"content", "hi"}}}}};
  const auto refused = [&](const json& patch) {
    json body = base;
    body.merge_patch(patch);
    return routed_error(openai_chat_completions(post("/v1/chat/completions", body)));
  };
  CHECK(refused({{"n", 3}}).second.find("n = 1") != std::string::npos);
  CHECK(refused({{"temperature", "hot"}}).second == "'temperature' must be a number, got a string");
  CHECK(refused({{"max_tokens", 0}}).second == "'max_tokens' must be at least 1, got 0");
  CHECK(refused({{"top_logprobs", 3}}).second == "'top_logprobs' needs 'logprobs': true");
  CHECK(refused({{"tool_choice", "required"}}).second.find("tool_choice") != std::string::npos);
  CHECK(refused({{"response_format", {{"type", "json_object"}}}}).second.find("not supported") !=
        std::string::npos);
  CHECK(refused({{"logit_bias", {{"x", 1}}}}).second.find("token ids") != std::string::npos);
  CHECK(refused({{"stop", {1, 2}}}).second == "'stop' must be a string or a list of strings");
  CHECK(
      refused({{"messages",
                {{{"role", "user"}, {"content", {{{"type", "image_url"}, {"image_url", "x"}}}}}}}})
          .second.find("text parts only") != std::string::npos);
  CHECK(
      refused({{"messages", {{{"role", "assistant"}, {"tool_calls", {{{"id", "c"}}}}}}}}).second ==
      "'messages[0].tool_calls[0].function.name' is required");
  CHECK(refused({{"messages", {{{"content", "no role"}}}}}).second ==
        "'messages[0].role' is required");
  CHECK(refused({{"model", nullptr}}).second.find("'model' is required") != std::string::npos);
  const auto [status, message] =
      routed_error(openai_chat_completions(post("/v1/chat/completions", json::array())));
  CHECK(status == 400);
  CHECK(message == "the request body must be a JSON object, got an array");
  // A number too large for a double is an error in the body, not an exception in the daemon.
  HttpRequest huge = post("/v1/embeddings", json::object());
  huge.body = R"({"model": "e", "input": "x", "dimensions": 1e999})";
  CHECK_THAT(routed_error(openai_embeddings(huge)).second, Catch::Contains("number overflow"));
  CHECK(routed_error(openai_embeddings(post("/v1/embeddings", {{"model", "e"}, {"input", {1, 2}}})))
            .second.find("token-id lists") != std::string::npos);
  CHECK(routed_error(
            openai_completions(post("/v1/completions", {{"model", "g"}, {"prompt", {"a", "b"}}})))
            .second.find("one prompt per request") != std::string::npos);
}

TEST_CASE("OpenAI chat answers carry reasoning and tool calls in OpenAI's shape", "[http_api]") {
  const json body = {{"model", "qwen"}, {"messages", {{{"role", "user"}, {"content", "hi"}}}}};
  RoutedCall call = routed_call(openai_chat_completions(post("/v1/chat/completions", body)));
  v1::Response response = chunk("", true);
  v1::GenerateChunk* g = response.mutable_generate();
  g->set_reasoning("The user wants weather.");
  add_call(g, "get_weather", R"({"city": "Paris"})");
  g->set_finish_reason("tool_calls");
  response.mutable_usage()->set_prompt_tokens(5);
  response.mutable_usage()->set_completion_tokens(9);
  response.mutable_usage()->set_total_tokens(14);
  const HttpOutput out = call.translator->translate(response);
  REQUIRE(out.head.has_value());
  CHECK(out.head->status == 200);
  CHECK_FALSE(out.head->streaming);
  const json answer = json::parse(out.body);
  CHECK(answer["object"] == "chat.completion");
  CHECK(answer["id"].get<std::string>().rfind("chatcmpl-", 0) == 0);
  const json& message = answer["choices"][0]["message"];
  CHECK(message["content"].is_null());
  CHECK(message["reasoning_content"] == "The user wants weather.");
  CHECK(message["tool_calls"] == json::parse(R"([{"id": "call_1", "type": "function",
                         "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}])"));
  CHECK(answer["choices"][0]["finish_reason"] == "tool_calls");
  CHECK(answer["usage"]["total_tokens"] == 14);
}

TEST_CASE("OpenAI chat streams: role first, deltas, tool-call deltas with index, usage, DONE",
          "[http_api]") {
  json body = {{"model", "qwen"},
               {"messages", {{{"role", "user"}, {"content", "hi"}}}},
               {"stream", true},
               {"stream_options", {{"include_usage", true}}}};
  RoutedCall call = routed_call(openai_chat_completions(post("/v1/chat/completions", body)));
  std::string stream;
  v1::Response first = chunk("");
  first.mutable_generate()->set_reasoning("thinking");
  const HttpOutput head = call.translator->translate(first);
  REQUIRE(head.head.has_value());
  CHECK(head.head->streaming);
  CHECK(head.head->content_type == "text/event-stream");
  stream += head.body;
  stream += call.translator->translate(chunk("Hello")).body;
  v1::Response calls = chunk("");
  add_call(calls.mutable_generate(), "a", "{}");
  add_call(calls.mutable_generate(), "b", "{\"x\": 1}");
  stream += call.translator->translate(calls).body;
  v1::Response last = chunk("!", true);
  last.mutable_generate()->set_finish_reason("tool_calls");
  last.mutable_usage()->set_completion_tokens(4);
  const HttpOutput end = call.translator->translate(last);
  CHECK_FALSE(end.head.has_value());
  stream += end.body;

  bool done = false;
  const std::vector<json> events = sse_json(stream, done);
  CHECK(done);
  REQUIRE(events.size() == 7);
  CHECK(events[0]["choices"][0]["delta"] == json{{"role", "assistant"}, {"content", ""}});
  CHECK(events[1]["choices"][0]["delta"] == json{{"reasoning_content", "thinking"}});
  CHECK(events[2]["choices"][0]["delta"] == json{{"content", "Hello"}});
  const json& tool_calls = events[3]["choices"][0]["delta"]["tool_calls"];
  CHECK(tool_calls[0]["index"] == 0);
  CHECK(tool_calls[1]["index"] == 1);
  CHECK(tool_calls[1]["function"]["arguments"] == "{\"x\": 1}");
  CHECK(events[4]["choices"][0]["delta"] == json{{"content", "!"}});
  CHECK(events[5]["choices"][0]["finish_reason"] == "tool_calls");
  CHECK(events[5]["usage"].is_null());
  CHECK(events[6]["choices"].empty());
  CHECK(events[6]["usage"]["completion_tokens"] == 4);
  for (const json& event : events) CHECK(event["id"] == events[0]["id"]);
}

TEST_CASE("OpenAI errors: before a stream an error status, inside one an error event",
          "[http_api]") {
  json body = {
      {"model", "qwen"}, {"messages", {{{"role", "user"}, {"content", "hi"}}}}, {"stream", true}};
  RoutedCall early = routed_call(openai_chat_completions(post("/v1/chat/completions", body)));
  v1::Response missing;
  missing.set_final(true);
  missing.mutable_error()->set_code(v1::NOT_FOUND);
  missing.mutable_error()->set_message("no model named 'qwen'");
  const HttpOutput refused = early.translator->translate(missing);
  REQUIRE(refused.head.has_value());
  CHECK(refused.head->status == 404);
  CHECK(json::parse(refused.body)["error"]["code"] == "model_not_found");

  RoutedCall late = routed_call(openai_chat_completions(post("/v1/chat/completions", body)));
  (void)late.translator->translate(chunk("partial"));
  v1::Response cut;
  cut.set_final(true);
  cut.mutable_error()->set_code(v1::UNAVAILABLE);
  cut.mutable_error()->set_message("model 'qwen' was evicted");
  bool done = false;
  const std::vector<json> events = sse_json(late.translator->translate(cut).body, done);
  CHECK(done);
  REQUIRE(events.size() == 1);
  CHECK(events[0]["error"]["message"] == "model 'qwen' was evicted");

  CHECK(http_status_of(StatusCode::kInvalidArgument) == 400);
  CHECK(http_status_of(StatusCode::kNotFound) == 404);
  CHECK(http_status_of(StatusCode::kResourceExhausted) == 429);
  CHECK(http_status_of(StatusCode::kUnavailable) == 503);
  CHECK(http_status_of(StatusCode::kDeadlineExceeded) == 504);
  CHECK(http_status_of(StatusCode::kInternal) == 500);
}

TEST_CASE(
    "OpenAI embeddings: base64 is little-endian float32, dimensions shortens and renormalises",
    "[http_api]") {
  RoutedCall call = routed_call(openai_embeddings(
      post("/v1/embeddings",
           {{"model", "e"}, {"input", "x"}, {"encoding_format", "base64"}, {"dimensions", 2}})));
  v1::Response response;
  response.set_final(true);
  response.mutable_embed()->set_dimensions(3);
  auto* values = response.mutable_embed()->add_embeddings()->mutable_values();
  values->Add(3.0f);
  values->Add(4.0f);
  values->Add(12.0f);
  const json answer = json::parse(call.translator->translate(response).body);
  // 0.6f = 0x3F19999A and 0.8f = 0x3F4CCCCD, little-endian.
  CHECK(answer["data"][0]["embedding"] == "mpkZP83MTD8=");
  std::vector<float> shortened = {3, 4, 12};
  shorten_embedding(shortened, 2);
  CHECK(shortened == std::vector<float>{0.6f, 0.8f});

  RoutedCall too_many = routed_call(openai_embeddings(
      post("/v1/embeddings", {{"model", "e"}, {"input", "x"}, {"dimensions", 9}})));
  const HttpOutput refused = too_many.translator->translate(response);
  CHECK(refused.head->status == 400);
  CHECK_THAT(json::parse(refused.body)["error"]["message"].get<std::string>(),
             Catch::Contains("more than model 'e' gives (3)"));
}

TEST_CASE("Ollama chat bodies: tool calls with object arguments, think, options, keep_alive",
          "[http_api]") {
  const json body = {
      {"model", "qwen3"},
      {"messages",
       {{{"role", "user"}, {"content", "Weather?"}},
        {{"role", "assistant"},
         {"content", ""},
         {"thinking", "need the tool"},
         {"tool_calls",
          {{{"function", {{"name", "get_weather"}, {"arguments", {{"city", "Oslo"}}}}}}}}},
        {{"role", "tool"}, {"tool_name", "get_weather"}, {"content", "-3C"}}}},
      {"think", false},
      {"options",
       {{"temperature", 0},
        {"num_predict", 20},
        {"repeat_penalty", 1.1},
        {"stop", {"\n\n"}},
        {"num_ctx", 8192}}},
      {"keep_alive", "5m"}};
  const RoutedCall call = routed_call(ollama_chat(post("/api/chat", body)));
  const v1::GenerateRequest& g = call.request.generate();
  CHECK(g.stream());  // Ollama streams unless told not to
  CHECK(g.max_tokens() == 20);
  CHECK(g.sampling().temperature() == 0);
  CHECK(g.sampling().repetition_penalty() == Approx(1.1));
  CHECK(g.stop(0) == "\n\n");
  CHECK(g.keep_alive_s() == 300);
  CHECK(g.chat().messages(1).reasoning() == "need the tool");
  CHECK(json::parse(g.chat().messages(1).tool_calls(0).arguments()) == json{{"city", "Oslo"}});
  CHECK(g.chat().messages(2).name() == "get_weather");
  CHECK(json::parse(g.chat().template_variables_json()) == json{{"enable_thinking", false}});

  json images = body;
  images["messages"][0]["images"] = {"aGk="};
  CHECK(routed_error(ollama_chat(post("/api/chat", images))).second.find("images") !=
        std::string::npos);
  json format = body;
  format["format"] = "json";
  CHECK(routed_error(ollama_chat(post("/api/chat", format))).first == 400);
}

TEST_CASE("Ollama answers: NDJSON lines, thinking, tool calls as objects, durations in ns",
          "[http_api]") {
  RoutedCall call = routed_call(ollama_chat(
      post("/api/chat", {{"model", "q"}, {"messages", {{{"role", "user"}, {"content", "x"}}}}})));
  v1::Response thinking = chunk("");
  thinking.mutable_generate()->set_reasoning("hmm");
  HttpOutput first = call.translator->translate(thinking);
  REQUIRE(first.head.has_value());
  CHECK(first.head->content_type == "application/x-ndjson");
  v1::Response last = chunk("", true);
  add_call(last.mutable_generate(), "get_weather", R"({"city": "Oslo"})");
  last.mutable_generate()->set_finish_reason("tool_calls");
  last.mutable_usage()->set_prompt_tokens(10);
  last.mutable_usage()->set_completion_tokens(4);
  last.mutable_timing()->set_total_ms(250);
  last.mutable_timing()->set_ttft_ms(50);
  last.mutable_timing()->set_queue_ms(5);
  const std::string body = first.body + call.translator->translate(last).body;
  std::vector<json> lines;
  std::istringstream in(body);
  for (std::string line; std::getline(in, line);) lines.push_back(json::parse(line));
  REQUIRE(lines.size() == 3);
  CHECK(lines[0]["message"]["thinking"] == "hmm");
  CHECK(lines[0]["done"] == false);
  CHECK(lines[1]["message"]["tool_calls"][0]["function"]["arguments"] == json{{"city", "Oslo"}});
  CHECK(lines[2]["done"] == true);
  CHECK(lines[2]["done_reason"] == "stop");
  CHECK(lines[2]["total_duration"] == 250'000'000);
  CHECK(lines[2]["prompt_eval_duration"] == 45'000'000);
  CHECK(lines[2]["eval_duration"] == 200'000'000);
  CHECK(lines[2]["prompt_eval_count"] == 10);
  CHECK(lines[2]["eval_count"] == 4);
  const std::string created = lines[0]["created_at"];
  CHECK(created.size() == 30);  // 2026-12-03T16:27:27.289210374Z
  CHECK(created.back() == 'Z');
}

TEST_CASE("Ollama generate: template or raw, and an empty prompt loads or unloads", "[http_api]") {
  const RoutedCall templated = routed_call(ollama_generate(
      post("/api/generate",
           {{"model", "g"}, {"prompt", "hi"}, {"system", "be kind"}, {"stream", false}})));
  REQUIRE(templated.request.generate().has_chat());
  CHECK(templated.request.generate().chat().messages(0).role() == "system");
  CHECK(templated.request.generate().chat().messages(1).content() == "hi");
  CHECK_FALSE(templated.request.generate().stream());
  const RoutedCall tagged = routed_call(
      ollama_generate(post("/api/generate", {{"model", "g:latest"}, {"prompt", "hi"}})));
  CHECK(tagged.request.generate().model() == "g");  // Ollama's default tag is the name
  const RoutedCall raw = routed_call(
      ollama_generate(post("/api/generate", {{"model", "g"}, {"prompt", "hi"}, {"raw", true}})));
  CHECK(raw.request.generate().prompt() == "hi");
  const RoutedCall unload =
      routed_call(ollama_generate(post("/api/generate", {{"model", "g"}, {"keep_alive", 0}})));
  REQUIRE(unload.request.has_tokenize());
  CHECK(unload.request.tokenize().keep_alive_s() == 0);
  v1::Response ok;
  ok.set_final(true);
  ok.mutable_tokenize();
  CHECK(json::parse(unload.translator->translate(ok).body)["done_reason"] == "unload");
}

TEST_CASE("Ollama keep_alive durations", "[http_api]") {
  CHECK(*parse_keep_alive("5m") == 300);
  CHECK(*parse_keep_alive("1h30m") == 5400);
  CHECK(*parse_keep_alive("1.5s") == 1.5);
  CHECK(*parse_keep_alive("250ms") == Approx(0.25));
  CHECK(*parse_keep_alive("0") == 0);
  CHECK(*parse_keep_alive("-1") == -1);
  CHECK(*parse_keep_alive("-1m") == -60);
  CHECK(*parse_keep_alive("30") == 30);
  for (const char* bad : {"", "5x", "m", "5m3", "forever", "1e400"}) {
    INFO(bad);
    CHECK_FALSE(parse_keep_alive(bad).has_value());
  }
}

TEST_CASE("Routes: each API's paths, methods and error shapes", "[http_api]") {
  ApiRouter router("1.2.3");
  HttpRequest get;
  get.method = "GET";
  get.path = "/api/version";
  const Routed version = router.route(get);
  REQUIRE(std::holds_alternative<HttpAnswer>(version));
  CHECK(json::parse(std::get<HttpAnswer>(version).body) == json{{"version", "1.2.3"}});
  get.path = "/v1/chat/completions";
  const auto [status, message] = routed_error(router.route(get));
  CHECK(status == 405);
  CHECK(message == "GET is not allowed on /v1/chat/completions; use POST");
  get.path = "/api/nothing";
  const Routed missing = router.route(get);
  CHECK(std::get<HttpAnswer>(missing).status == 404);
  CHECK(json::parse(std::get<HttpAnswer>(missing).body)["error"].is_string());  // Ollama's shape
  get.path = "/v1/models/gen";
  const RoutedCall one = routed_call(router.route(get));
  CHECK(one.request.has_list_models());
  v1::Response listed;
  listed.set_final(true);
  listed.mutable_list_models()->add_models()->set_name("gen");
  CHECK(json::parse(one.translator->translate(listed).body)["id"] == "gen");
  get.path = "/v1/models/other";
  const HttpOutput absent = routed_call(router.route(get)).translator->translate(listed);
  CHECK(absent.head->status == 404);
}

TEST_CASE("The daemon's chat output split fills text, reasoning and tool calls", "[http_api]") {
  tasks::ChatOutput output;
  output.content = "Calling.";
  output.reasoning = "why";
  output.tool_calls.push_back({"f", R"({"a": 1})"});
  v1::GenerateChunk chunk;
  CHECK(daemon::set_chat_output(output, chunk));
  CHECK(chunk.text() == "Calling.");
  CHECK(chunk.reasoning() == "why");
  REQUIRE(chunk.tool_calls_size() == 1);
  CHECK(chunk.tool_calls(0).id().rfind("call_", 0) == 0);
  CHECK(chunk.tool_calls(0).id().size() == 29);
  CHECK_FALSE(daemon::set_chat_output(tasks::ChatOutput{"just text", "", {}}, chunk));
  CHECK(daemon::new_tool_call_id() != daemon::new_tool_call_id());
}

TEST_CASE("Chat JSON fields are validated before they reach a template", "[http_api]") {
  v1::Request request;
  request.set_id(1);
  v1::GenerateRequest* g = request.mutable_generate();
  g->set_model("m");
  v1::ChatMessage* m = g->mutable_chat()->add_messages();
  m->set_role("user");
  m->set_content("hi");
  g->mutable_chat()->set_tools_json("{}");
  CHECK(api::validate_request(request, {}).message() ==
        "generate.chat.tools_json must be a JSON array, got an object");
  g->mutable_chat()->set_tools_json("[");
  CHECK(api::validate_request(request, {}).message() ==
        "generate.chat.tools_json is not valid JSON");
  g->mutable_chat()->set_tools_json("[]");
  g->mutable_chat()->set_template_variables_json("[]");
  CHECK(api::validate_request(request, {}).message() ==
        "generate.chat.template_variables_json must be a JSON object, got an array");
  g->mutable_chat()->clear_template_variables_json();
  v1::ToolCall* call = g->mutable_chat()->add_messages()->add_tool_calls();
  g->mutable_chat()->mutable_messages(1)->set_role("assistant");
  call->set_name("f");
  call->set_arguments("not json");
  CHECK(api::validate_request(request, {}).message() ==
        "generate.chat.messages[1].tool_calls[0].arguments is not valid JSON");
  call->set_arguments("{}");
  g->set_keep_alive_s(std::nan(""));
  CHECK_THAT(api::validate_request(request, {}).message(), Catch::Contains("keep_alive_s"));
  g->set_keep_alive_s(-1);
  CHECK(api::validate_request(request, {}).is_ok());
}
