// The HTTP front end of the real daemon, over real TCP connections: OpenAI and Ollama endpoints
// answer what the Protobuf socket answers for the same request; bad input gets the right status
// in each API's error shape and the daemon keeps serving; API keys; a client that leaves
// mid-stream frees its KV; many concurrent streams are each answered once.
#include <poll.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "tests/integration/daemon_test_helpers.h"
#include "tests/support/daemon_process.h"
#include "tests/support/http_client.h"
#include "tests/support/run_command.h"

namespace {

using namespace sparkd;
using namespace sparkd::testing;
using nlohmann::json;

json json_body(const HttpReply& reply) {
  INFO(reply.body);
  const json body = json::parse(reply.body, nullptr, false);
  REQUIRE_FALSE(body.is_discarded());
  return body;
}

json post_json(uint16_t port, const std::string& path, const json& body,
               const std::vector<std::string>& headers = {}) {
  const HttpReply reply = http_call(port, "POST", path, body.dump(), headers);
  INFO(path << " " << reply.body);
  REQUIRE(reply.status == 200);
  return json_body(reply);
}

// An OpenAI error reply: the status, and the error object's message.
std::string openai_error_message(const HttpReply& reply, int status) {
  INFO(reply.body);
  CHECK(reply.status == status);
  const json body = json_body(reply);
  REQUIRE(body.contains("error"));
  CHECK(body["error"]["type"].is_string());
  CHECK(body["error"].contains("param"));
  return body["error"]["message"].get<std::string>();
}

v1::ModelStatus model_status(api::Client& client, const std::string& name) {
  v1::Request request;
  request.mutable_status();
  const v1::Response response = call_once(client, request);
  for (const v1::ModelStatus& model : response.status().models()) {
    if (model.name() == name) return model;
  }
  FAIL("no status for " << name);
  return {};
}

json chat_body(const std::string& text, int max_tokens, bool stream) {
  return {{"model", "gen"},
          {"messages", json::array({{{"role", "user"}, {"content", text}}})},
          {"max_tokens", max_tokens},
          {"temperature", 0},
          {"stream", stream}};
}

}  // namespace

TEST_CASE("HTTP: OpenAI and Ollama endpoints answer what the socket answers", "[daemon][http]") {
  DaemonProcess daemon([](const auto& dir) { return http_fixture_config(dir); });
  const uint16_t port = daemon.http_port();
  api::Client client = daemon.connect();

  // Completions: the same greedy text as a socket generate of the same prompt.
  const v1::Response socket_generate = call_once(client, generate_request("gen", "Once upon", 12));
  const json completion = post_json(
      port, "/v1/completions",
      {{"model", "gen"}, {"prompt", "Once upon"}, {"max_tokens", 12}, {"temperature", 0}});
  CHECK(completion["object"] == "text_completion");
  CHECK(completion["choices"][0]["text"] == socket_generate.generate().text());
  CHECK(completion["choices"][0]["finish_reason"] == socket_generate.generate().finish_reason());
  CHECK(completion["usage"]["prompt_tokens"] == socket_generate.usage().prompt_tokens());
  CHECK(completion["usage"]["completion_tokens"] == socket_generate.usage().completion_tokens());

  // Chat, whole and streamed, against a socket chat request.
  v1::Request socket_chat;
  socket_chat.mutable_generate()->set_model("gen");
  v1::ChatMessage* message = socket_chat.mutable_generate()->mutable_chat()->add_messages();
  message->set_role("user");
  message->set_content("hello there");
  socket_chat.mutable_generate()->set_max_tokens(10);
  socket_chat.mutable_generate()->mutable_sampling()->set_temperature(0);
  const v1::Response chat_reference = call_once(client, socket_chat);
  const json chat = post_json(port, "/v1/chat/completions", chat_body("hello there", 10, false));
  CHECK(chat["object"] == "chat.completion");
  CHECK(chat["choices"][0]["message"]["role"] == "assistant");
  CHECK(chat["choices"][0]["message"]["content"] == chat_reference.generate().text());
  CHECK(chat["usage"]["total_tokens"] == chat_reference.usage().total_tokens());

  json streamed_body = chat_body("hello there", 10, true);
  streamed_body["stream_options"] = {{"include_usage", true}};
  const HttpReply streamed = http_call(port, "POST", "/v1/chat/completions", streamed_body.dump());
  CHECK(streamed.status == 200);
  CHECK(streamed.headers.at("content-type") == "text/event-stream");
  const std::vector<std::string> events = sse_events(streamed.body);
  REQUIRE(events.size() >= 3);
  CHECK(events.back() == "[DONE]");
  std::string text;
  std::string finish_reason;
  for (size_t i = 0; i + 1 < events.size(); ++i) {
    const json event = json::parse(events[i]);
    CHECK(event["object"] == "chat.completion.chunk");
    if (event["choices"].empty()) {
      CHECK(i + 2 == events.size());  // the usage event is the last before [DONE]
      CHECK(event["usage"]["completion_tokens"] == chat_reference.usage().completion_tokens());
      continue;
    }
    const json& choice = event["choices"][0];
    if (choice["delta"].contains("content")) text += choice["delta"]["content"].get<std::string>();
    if (!choice["finish_reason"].is_null()) finish_reason = choice["finish_reason"];
  }
  CHECK(text == chat_reference.generate().text());
  CHECK(finish_reason == chat_reference.generate().finish_reason());

  // Embeddings (float and base64) and rerank against the socket's.
  const v1::Response socket_embed = call_once(client, embed_request("embed", {"one", "two"}));
  const json embeddings =
      post_json(port, "/v1/embeddings", {{"model", "embed"}, {"input", {"one", "two"}}});
  REQUIRE(embeddings["data"].size() == 2);
  for (int i = 0; i < 2; ++i) {
    const auto& expected = socket_embed.embed().embeddings(i).values();
    const json& values = embeddings["data"][i]["embedding"];
    REQUIRE(values.size() == static_cast<size_t>(expected.size()));
    for (int d = 0; d < expected.size(); ++d) CHECK(values[d].get<float>() == expected[d]);
  }
  const json base64 =
      post_json(port, "/v1/embeddings",
                {{"model", "embed"}, {"input", "one"}, {"encoding_format", "base64"}});
  const std::string encoded = base64["data"][0]["embedding"];
  CHECK(encoded.size() == (socket_embed.embed().dimensions() * 4 + 2) / 3 * 4);

  const v1::Response socket_rerank =
      call_once(client, rerank_request("rerank", "memory", {"unified memory", "a cat", "bytes"}));
  for (const char* path : {"/v1/rerank", "/rerank"}) {
    const json reranked = post_json(port, path,
                                    {{"model", "rerank"},
                                     {"query", "memory"},
                                     {"documents", {"unified memory", "a cat", "bytes"}}});
    REQUIRE(reranked["results"].size() == 3);
    for (int i = 0; i < 3; ++i) {
      CHECK(reranked["results"][i]["index"] == socket_rerank.rerank().results(i).index());
      CHECK(reranked["results"][i]["relevance_score"].get<float>() ==
            socket_rerank.rerank().results(i).score());
      CHECK(reranked["results"][i]["document"]["text"].is_string());
    }
  }

  const json models = json_body(http_call(port, "GET", "/v1/models"));
  std::vector<std::string> ids;
  for (const json& m : models["data"]) ids.push_back(m["id"]);
  CHECK(ids == std::vector<std::string>{"embed", "gen", "rerank"});

  // Ollama: chat streams NDJSON by default; generate and embed.
  const HttpReply ollama_chat =
      http_call(port, "POST", "/api/chat",
                json{{"model", "gen"},
                     {"messages", json::array({{{"role", "user"}, {"content", "hello there"}}})},
                     {"options", {{"temperature", 0}, {"num_predict", 10}}}}
                    .dump());
  CHECK(ollama_chat.status == 200);
  CHECK(ollama_chat.headers.at("content-type") == "application/x-ndjson");
  std::string ollama_text;
  json last;
  std::istringstream lines(ollama_chat.body);
  for (std::string line; std::getline(lines, line);) {
    last = json::parse(line);
    ollama_text += last["message"]["content"].get<std::string>();
  }
  CHECK(ollama_text == chat_reference.generate().text());
  CHECK(last["done"] == true);
  CHECK(last["eval_count"] == chat_reference.usage().completion_tokens());
  CHECK(last["total_duration"].get<int64_t>() > 0);

  const json embedded = post_json(port, "/api/embed", {{"model", "embed"}, {"input", "one"}});
  REQUIRE(embedded["embeddings"].size() == 1);
  CHECK(embedded["embeddings"][0].size() == socket_embed.embed().dimensions());
  const json tags = json_body(http_call(port, "GET", "/api/tags"));
  CHECK(tags["models"].size() == 3);
  CHECK(json_body(http_call(port, "GET", "/health"))["status"] == "serving");

  // Counted under their own api label.
  const std::string page = http_get(daemon.metrics_port(), "/metrics");
  CHECK(metric_value(
            page,
            R"(sparkd_requests_total{api="http",model="gen",outcome="ok",task="generate"})") >= 4);
  CHECK(metric_value(
            page,
            R"(sparkd_requests_total{api="socket",model="gen",outcome="ok",task="generate"})") ==
        2);
}

TEST_CASE("HTTP: bad input gets the right status and error shape, and the daemon keeps serving",
          "[daemon][http]") {
  DaemonProcess daemon([](const auto& dir) {
    return http_fixture_config(dir,
                               "max_body_bytes = \"4KiB\"\nmax_header_bytes = \"2KiB\"\n"
                               "request_timeout_s = 0.5\n");
  });
  const uint16_t port = daemon.http_port();

  CHECK_THAT(openai_error_message(http_call(port, "POST", "/v1/chat/completions", "{bad"), 400),
             Catch::Contains("not valid JSON"));
  CHECK_THAT(openai_error_message(
                 http_call(port, "POST", "/v1/chat/completions",
                           R"({"model": "gen", "messages": [{"role": "user", "content": 5}]})"),
                 400),
             Catch::Contains("'messages[0].content' must be a string"));
  json missing = chat_body("hi", 4, false);
  missing["model"] = "nope";
  CHECK_THAT(
      openai_error_message(http_call(port, "POST", "/v1/chat/completions", missing.dump()), 404),
      Catch::Contains("nope"));
  json n2 = chat_body("hi", 4, false);
  n2["n"] = 2;
  CHECK_THAT(openai_error_message(http_call(port, "POST", "/v1/chat/completions", n2.dump()), 400),
             Catch::Contains("n = 1"));
  json hot = chat_body("hi", 4, false);
  hot["temperature"] = -1;
  CHECK_THAT(openai_error_message(http_call(port, "POST", "/v1/chat/completions", hot.dump()), 400),
             Catch::Contains("temperature"));
  CHECK_THAT(
      openai_error_message(
          http_call(port, "POST", "/v1/embeddings", R"({"model": "gen", "input": "x"})"), 400),
      Catch::Contains("cannot embed"));
  CHECK_THAT(openai_error_message(http_call(port, "GET", "/v1/chat/completions"), 405),
             Catch::Contains("POST"));
  CHECK_THAT(openai_error_message(http_call(port, "GET", "/v2/nothing"), 404),
             Catch::Contains("no such endpoint"));

  // Ollama's paths answer in Ollama's shape.
  const HttpReply ollama_missing =
      http_call(port, "POST", "/api/chat",
                R"({"model": "nope", "messages": [{"role": "user", "content": "hi"}]})");
  CHECK(ollama_missing.status == 404);
  CHECK(json_body(ollama_missing)["error"].is_string());

  // Oversize body and headers: answered, then the connection closes.
  CHECK_THAT(
      openai_error_message(http_call(port, "POST", "/v1/embeddings", std::string(8192, ' ')), 413),
      Catch::Contains("body"));
  CHECK(http_call(port, "GET", "/v1/models", "", {"X-Big: " + std::string(4096, 'x')}).status ==
        431);

  // A slow client: half a request head, then nothing. The daemon answers 408 and closes.
  {
    HttpTestConnection slow(port);
    slow.send_raw("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n");
    auto reply = slow.read_reply();
    REQUIRE(reply.has_value());
    CHECK(reply->status == 408);
    CHECK(slow.closed_by_peer());
  }

  // Pipelined requests on one keep-alive connection are answered in order.
  {
    HttpTestConnection pipelined(port);
    pipelined.send_raw(
        "GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
        "POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Length: 33\r\n\r\n"
        R"({"model":"embed","input":"hello"})"
        "GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n");
    auto first = pipelined.read_reply();
    auto second = pipelined.read_reply();
    auto third = pipelined.read_reply();
    REQUIRE((first && second && third));
    CHECK(json_body(*first)["status"] == "serving");
    CHECK(json_body(*second)["object"] == "list");
    CHECK(json_body(*second)["data"][0]["object"] == "embedding");
    CHECK(json_body(*third)["data"].size() == 3);
  }

  // A client that asks before sending its body (curl does) is told to go on.
  {
    HttpTestConnection expecting(port);
    expecting.send_raw(
        "POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
        "Content-Length: 33\r\n\r\n");
    REQUIRE(expecting.read_until("HTTP/1.1 100 Continue\r\n\r\n"));
    expecting.send_raw(R"({"model":"embed","input":"hello"})");
    auto interim = expecting.read_reply();
    REQUIRE(interim.has_value());
    CHECK(interim->status == 100);
    auto reply = expecting.read_reply();
    REQUIRE(reply.has_value());
    CHECK(reply->status == 200);
  }

  // Still serving.
  CHECK(post_json(port, "/v1/chat/completions", chat_body("hi", 4, false))["choices"].size() == 1);
  const std::string page = http_get(daemon.metrics_port(), "/metrics");
  CHECK(metric_value(
            page,
            R"(sparkd_requests_total{api="http",model="",outcome="not_found",task="generate"})") ==
        2);
  CHECK(metric_value(page, R"(sparkd_connections_closed_total{reason="request_timeout"})") == 1);
}

TEST_CASE("HTTP: a Unix socket listener answers its group, mode as the Protobuf socket's",
          "[daemon][http]") {
  DaemonProcess daemon([](const std::filesystem::path& dir) {
    return fixture_config(dir) + "\n[http]\nlisten = [\"unix:" + (dir / "http.sock").string() +
           "\"]\n";
  });
  const std::string path = (daemon.dir() / "http.sock").string();
  CHECK((std::filesystem::status(path).permissions() & std::filesystem::perms::all) ==
        (std::filesystem::perms::owner_read | std::filesystem::perms::owner_write |
         std::filesystem::perms::group_read | std::filesystem::perms::group_write |
         std::filesystem::perms::others_read | std::filesystem::perms::others_write));
  HttpTestConnection connection(path);
  connection.send_request("GET", "/v1/models", "");
  auto reply = connection.read_reply();
  REQUIRE(reply.has_value());
  CHECK(reply->status == 200);
  CHECK(json_body(*reply)["data"].size() == 3);
}

TEST_CASE("HTTP: with API keys every request needs one", "[daemon][http]") {
  const std::filesystem::path keys =
      std::filesystem::temp_directory_path() / ("sparkd-keys-" + std::to_string(::getpid()));
  std::ofstream(keys) << "# one key per line\nsk-first\n  sk-second  \n";
  std::filesystem::permissions(
      keys, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  DaemonProcess daemon([&](const auto& dir) {
    return http_fixture_config(dir, "api_keys_file = \"" + keys.string() + "\"\n");
  });
  const uint16_t port = daemon.http_port();
  CHECK_THAT(openai_error_message(http_call(port, "GET", "/v1/models"), 401),
             Catch::Contains("API key"));
  CHECK_THAT(openai_error_message(
                 http_call(port, "GET", "/v1/models", "", {"Authorization: Bearer sk-wrong"}), 401),
             Catch::Contains("not valid"));
  CHECK(http_call(port, "GET", "/v1/models", "", {"Authorization: Bearer sk-first"}).status == 200);
  CHECK(http_call(port, "GET", "/api/tags", "", {"Authorization: bearer sk-second"}).status == 200);

  // A key file others can read is refused at start.
  std::filesystem::permissions(keys, std::filesystem::perms::group_read,
                               std::filesystem::perm_options::add);
  const RunResult check =
      run_command(std::string(SPARKD_DAEMON_BINARY) + " --check-config --config " +
                      (daemon.dir() / "config.toml").string() + " 2>&1",
                  "");
  CHECK(check.exit_code != 0);
  std::string output;
  for (const std::string& line : check.lines) output += line + "\n";
  CHECK_THAT(output, Catch::Contains("readable by group or others"));
  std::filesystem::remove(keys);
}

TEST_CASE("HTTP: a client that leaves mid-stream frees its KV", "[daemon][http]") {
  DaemonProcess daemon([](const auto& dir) { return http_fixture_config(dir); });
  const uint16_t port = daemon.http_port();
  api::Client client = daemon.connect();
  for (const char* path : {"/v1/chat/completions", "/api/chat"}) {
    json body = chat_body("tell me everything", 4000, true);
    body["ignore_eos"] = true;
    body["options"] = {{"num_predict", 4000}};
    {
      HttpTestConnection connection(port);
      connection.send_request("POST", path, body.dump());
      // A few tokens in, the client goes. The stream's first chunk may come before the
      // scheduler has admitted the request (OpenAI's opens with the role): the client leaves
      // only once its sequence holds KV.
      REQUIRE(connection.read_until(std::string(path) == "/api/chat" ? "\"done\":false"
                                                                     : "\"content\":\""));
      // Up to 10 s: on a loaded machine (ctest -j) admission can take seconds.
      bool holds_kv = false;
      for (int i = 0; i < 2000 && !holds_kv; ++i) {
        holds_kv = model_status(client, "gen").kv_blocks_in_use() > 0;
        if (!holds_kv) std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
      CHECK(holds_kv);
    }
    v1::ModelStatus status;
    for (int i = 0; i < 500; ++i) {
      status = model_status(client, "gen");
      if (status.kv_blocks_in_use() == 0 && status.running() == 0) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    INFO(path);
    CHECK(status.kv_blocks_in_use() == 0);
    CHECK(status.running() == 0);
  }
  // A request is counted when its call ends on the server's loop, after the runner has freed
  // its KV: the count may trail the status above for a moment.
  const auto cancelled = [&] {
    return metric_value(
        http_get(daemon.metrics_port(), "/metrics"),
        R"(sparkd_requests_total{api="http",model="gen",outcome="cancelled",task="generate"})");
  };
  for (int i = 0; i < 500 && cancelled() < 2; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  CHECK(cancelled() == 2);
}

TEST_CASE("HTTP: 200 concurrent SSE streams and embed and rerank calls are each answered once",
          "[daemon][http]") {
  DaemonProcess daemon([](const auto& dir) { return http_fixture_config(dir); });
  const uint16_t port = daemon.http_port();

  struct Exchange {
    std::unique_ptr<HttpTestConnection> connection;
    std::string kind;
  };
  const auto round = [&](int streams) {
    std::vector<Exchange> exchanges;
    for (int i = 0; i < streams; ++i) {
      Exchange e{std::make_unique<HttpTestConnection>(port), "chat"};
      json body = chat_body("stream number " + std::to_string(i), 6, true);
      body["ignore_eos"] = true;
      e.connection->send_request("POST", "/v1/chat/completions", body.dump());
      exchanges.push_back(std::move(e));
      if (i % 10 == 0) {
        Exchange embed{std::make_unique<HttpTestConnection>(port), "embed"};
        embed.connection->send_request("POST", "/v1/embeddings",
                                       json{{"model", "embed"}, {"input", {"a", "b"}}}.dump());
        exchanges.push_back(std::move(embed));
        Exchange rerank{std::make_unique<HttpTestConnection>(port), "rerank"};
        rerank.connection->send_request(
            "POST", "/v1/rerank",
            json{{"model", "rerank"}, {"query", "q"}, {"documents", {"a", "b"}}}.dump());
        exchanges.push_back(std::move(rerank));
      }
    }
    int chats = 0;
    for (Exchange& e : exchanges) {
      auto reply = e.connection->read_reply();
      REQUIRE(reply.has_value());
      INFO(e.kind << ": " << reply->body);
      REQUIRE(reply->status == 200);
      if (e.kind == "chat") {
        const std::vector<std::string> events = sse_events(reply->body);
        CHECK(std::count(events.begin(), events.end(), "[DONE]") == 1);
        CHECK(events.back() == "[DONE]");
        int finishes = 0;
        for (size_t i = 0; i + 1 < events.size(); ++i) {
          finishes += json::parse(events[i])["choices"][0]["finish_reason"].is_null() ? 0 : 1;
        }
        CHECK(finishes == 1);
        ++chats;
      } else {
        CHECK(json_body(*reply).contains(e.kind == "embed" ? "data" : "results"));
      }
    }
    CHECK(chats == streams);
  };
  round(200);
  const long rss_after_first = daemon.rss_kib();
  round(200);
  round(200);
  const long rss_after_third = daemon.rss_kib();
  // Two more rounds of the same load leave the daemon's memory where the first left it (a
  // leak of a few KiB per exchange would show as megabytes here).
  CHECK(rss_after_third - rss_after_first < 16 * 1024);
  const std::string page = http_get(daemon.metrics_port(), "/metrics");
  CHECK(
      metric_value(
          page, R"(sparkd_requests_total{api="http",model="gen",outcome="ok",task="generate"})") ==
      600);
}

TEST_CASE("HTTP: the openai, ollama and langchain-openai clients get what the socket gets",
          "[daemon][http][python]") {
  const std::string python = std::string(SPARKD_SOURCE_DIR) + "/.deps/http-clients/bin/python";
  INFO("the clients' venv is made by tools/setup.sh");
  REQUIRE(std::filesystem::exists(python));
  DaemonProcess daemon([](const auto& dir) { return http_fixture_config(dir); });
  const RunResult run = run_command(
      python + " " + std::string(SPARKD_SOURCE_DIR) + "/tests/http_clients/check_clients.py " +
          std::to_string(daemon.http_port()) + " " + daemon.socket_path() + " 2>&1",
      "");
  std::string output;
  for (const std::string& line : run.lines) output += line + "\n";
  INFO(output);
  REQUIRE(run.exit_code == 0);
  const json result = json::parse(run.lines.back());
  CHECK(result["checked"].size() >= 25);
}

TEST_CASE("HTTP: reasoning a template marks comes back apart from the answer, whole and streamed",
          "[daemon][http]") {
  // The gen fixture with a template whose generation prompt opens a <think> block (as
  // DeepSeek R1's does): all the model writes before </think> is reasoning.
  const std::string template_text =
      "{%- for message in messages -%}<|im_start|>{{ message.role }}\n"
      "{% if message.role == 'assistant' %}{{ message.content.split('</think>')[-1] }}"
      "{% else %}{{ message.content }}{% endif %}<|im_end|>\n{% endfor -%}"
      "{%- if add_generation_prompt %}<|im_start|>assistant\n<think>\n{% endif -%}";
  DaemonProcess daemon([&](const std::filesystem::path& dir) {
    const std::filesystem::path model = dir / "thinker";
    std::filesystem::copy(fixture_model_dir("qwen3_f32"), model);
    std::ifstream in(model / "tokenizer_config.json");
    json config = json::parse(in);
    config["chat_template"] = template_text;
    std::ofstream(model / "tokenizer_config.json") << config.dump();
    return fixture_config(dir, "",
                          "[[models]]\nname = \"thinker\"\npath = \"" + model.string() +
                              "\"\nkv_max = \"16MiB\"\n") +
           "\n[http]\nlisten = [\"127.0.0.1:0\"]\n";
  });
  const uint16_t port = daemon.http_port();
  api::Client client = daemon.connect();
  // The same prompt, raw, over the socket: what the model writes after "<think>\n".
  v1::Request raw = generate_request(
      "thinker", "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n<think>\n", 6);
  raw.mutable_generate()->set_ignore_eos(true);
  const std::string written = call_once(client, raw).generate().text();
  REQUIRE_FALSE(written.empty());
  REQUIRE(written.find("</think>") == std::string::npos);

  json body = {{"model", "thinker"},
               {"messages", json::array({{{"role", "user"}, {"content", "hi"}}})},
               {"max_tokens", 6},
               {"temperature", 0},
               {"ignore_eos", true}};
  const json whole = post_json(port, "/v1/chat/completions", body);
  const json& message = whole["choices"][0]["message"];
  CHECK(message["content"] == "");
  const std::string reasoning = message["reasoning_content"];
  CHECK_FALSE(reasoning.empty());
  // The reasoning is what was written, less the whitespace around it.
  const size_t first = written.find_first_not_of(" \n");
  const size_t last = written.find_last_not_of(" \n");
  CHECK(reasoning == written.substr(first, last - first + 1));

  body["stream"] = true;
  const HttpReply streamed = http_call(port, "POST", "/v1/chat/completions", body.dump());
  std::string streamed_reasoning, streamed_content;
  for (const std::string& event : sse_events(streamed.body)) {
    if (event == "[DONE]") continue;
    const json parsed = json::parse(event);
    const json& delta = parsed["choices"][0]["delta"];
    if (delta.contains("reasoning_content")) {
      streamed_reasoning += delta["reasoning_content"].get<std::string>();
    }
    if (delta.contains("content")) streamed_content += delta["content"].get<std::string>();
  }
  CHECK(streamed_reasoning == reasoning);
  CHECK(streamed_content.empty());

  // Ollama's thinking.
  const json ollama = post_json(port, "/api/chat",
                                {{"model", "thinker"},
                                 {"messages", json::array({{{"role", "user"}, {"content", "hi"}}})},
                                 {"stream", false},
                                 {"options", {{"temperature", 0}, {"num_predict", 6}}}});
  if (ollama["eval_count"] == 6) CHECK(ollama["message"]["thinking"] == reasoning);
}

TEST_CASE("HTTP: on SIGTERM a stream in flight finishes, then the daemon exits", "[daemon][http]") {
  DaemonProcess daemon([](const auto& dir) { return http_fixture_config(dir); });
  const uint16_t port = daemon.http_port();
  HttpTestConnection streaming(port);
  json body = chat_body("a long answer", 200, true);
  body["ignore_eos"] = true;
  streaming.send_request("POST", "/v1/chat/completions", body.dump());
  REQUIRE(streaming.read_until("\"content\":\""));
  HttpTestConnection idle(port);  // keep-alive, nothing in flight
  daemon.signal(SIGTERM);
  REQUIRE(daemon.wait_for_log("draining"));
  // The stream runs to its end: every token, the finish and [DONE].
  auto reply = streaming.read_reply();
  REQUIRE(reply.has_value());
  const std::vector<std::string> events = sse_events(reply->body);
  CHECK(events.back() == "[DONE]");
  int tokens = 0;
  for (size_t i = 0; i + 1 < events.size(); ++i) {
    const json event = json::parse(events[i]);
    if (event["choices"][0]["delta"].contains("content")) ++tokens;
  }
  CHECK(tokens >= 100);  // the role chunk's "" and the tokens (some may share a chunk)
  CHECK(daemon.wait_exit() == 0);
  CHECK(idle.closed_by_peer());
}

TEST_CASE("HTTP: CORS is off unless origins are configured, then answers only those",
          "[daemon][http]") {
  {
    DaemonProcess plain([](const auto& dir) { return http_fixture_config(dir); });
    const HttpReply reply =
        http_call(plain.http_port(), "GET", "/v1/models", "", {"Origin: https://app.example"});
    CHECK(reply.status == 200);
    CHECK(reply.headers.count("access-control-allow-origin") == 0);
  }
  DaemonProcess daemon([](const auto& dir) {
    return http_fixture_config(dir, "cors_allow_origins = [\"https://app.example\"]\n");
  });
  const uint16_t port = daemon.http_port();
  const HttpReply preflight =
      http_call(port, "OPTIONS", "/v1/chat/completions", "",
                {"Origin: https://app.example", "Access-Control-Request-Method: POST",
                 "Access-Control-Request-Headers: authorization, content-type"});
  CHECK(preflight.status == 204);
  CHECK(preflight.headers.at("access-control-allow-origin") == "https://app.example");
  CHECK_THAT(preflight.headers.at("access-control-allow-headers"),
             Catch::Contains("Authorization"));
  const HttpReply other =
      http_call(port, "OPTIONS", "/v1/chat/completions", "",
                {"Origin: https://evil.example", "Access-Control-Request-Method: POST"});
  CHECK(other.status == 403);
  CHECK(other.headers.count("access-control-allow-origin") == 0);
  const HttpReply allowed =
      http_call(port, "GET", "/v1/models", "", {"Origin: https://app.example"});
  CHECK(allowed.headers.at("access-control-allow-origin") == "https://app.example");
  CHECK(allowed.headers.at("vary") == "Origin");
  // Streams carry it too.
  json body = chat_body("hi", 3, true);
  const HttpReply stream =
      http_call(port, "POST", "/v1/chat/completions", body.dump(), {"Origin: https://app.example"});
  CHECK(stream.headers.at("access-control-allow-origin") == "https://app.example");
  CHECK(http_call(port, "GET", "/v1/models", "", {"Origin: https://evil.example"})
            .headers.count("access-control-allow-origin") == 0);
}

TEST_CASE("HTTP: Ollama's keep_alive loads an on_demand model and unloads it at 0",
          "[daemon][http]") {
  DaemonProcess daemon([](const std::filesystem::path& dir) {
    return fixture_config(dir, "",
                          "[[models]]\nname = \"spare\"\npath = \"" +
                              fixture_model_dir("bert_embed") + "\"\nresidency = \"on_demand\"\n") +
           "\n[http]\nlisten = [\"127.0.0.1:0\"]\n";
  });
  const uint16_t port = daemon.http_port();
  const auto loaded = [&] {
    std::vector<std::string> names;
    const json ps = json_body(http_call(port, "GET", "/api/ps"));
    for (const json& m : ps["models"]) names.push_back(m["name"]);
    return std::find(names.begin(), names.end(), "spare") != names.end();
  };
  CHECK_FALSE(loaded());
  // An empty generate loads it (Ollama's preload), :latest being the bare name.
  const json load = post_json(port, "/api/generate", {{"model", "spare:latest"}});
  CHECK(load["done_reason"] == "load");
  CHECK(loaded());
  // Used with keep_alive 0, it goes once idle: the governor's next refresh evicts it.
  const json embedded =
      post_json(port, "/api/embed", {{"model", "spare"}, {"input", "x"}, {"keep_alive", 0}});
  CHECK(embedded["embeddings"].size() == 1);
  bool gone = false;
  for (int i = 0; i < 500 && !gone; ++i) {
    gone = !loaded();
    if (!gone) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  CHECK(gone);
  CHECK(daemon.wait_for_log("spare idle past its keep_alive"));
  // Its next request loads it again.
  CHECK(post_json(port, "/api/embed", {{"model", "spare"}, {"input", "x"}})["embeddings"].size() ==
        1);
  CHECK(loaded());
  const json unload = post_json(port, "/api/generate", {{"model", "spare"}, {"keep_alive", 0}});
  CHECK(unload["done_reason"] == "unload");
}
