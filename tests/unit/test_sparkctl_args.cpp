// sparkctl's command line (argv -> Request) and its --json output shape.
#include <catch2/catch.hpp>
#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include "api/sparkctl/command_line.h"
#include "api/sparkctl/json_output.h"

namespace {

namespace v1 = sparkd::v1;
using sparkd::StatusCode;
using sparkd::sparkctl::Invocation;
using sparkd::sparkctl::parse_command_line;

sparkd::Expected<Invocation> parse(const std::vector<std::string>& args,
                                   const char* env_socket = nullptr,
                                   const std::string& stdin_text = "") {
  std::istringstream stdin_stream(stdin_text);
  return parse_command_line(args, env_socket, stdin_stream);
}

// The usage error's message, or a note that parsing succeeded when it should not have.
std::string usage_error_of(const std::vector<std::string>& args) {
  auto parsed = parse(args);
  if (parsed) return "(parsed without error)";
  CHECK(parsed.status().code() == StatusCode::kInvalidArgument);
  return parsed.status().message();
}

}  // namespace

TEST_CASE("sparkctl picks the socket from --socket, then $SPARKD_SOCKET, then the default",
          "[sparkctl]") {
  auto from_default = parse({"models"});
  REQUIRE(from_default);
  CHECK(from_default->socket_path == "/run/sparkd/sparkd.sock");
  CHECK(from_default->request.has_list_models());

  auto from_env = parse({"models"}, "/tmp/env.sock");
  REQUIRE(from_env);
  CHECK(from_env->socket_path == "/tmp/env.sock");

  auto from_option = parse({"--socket", "/tmp/opt.sock", "models"}, "/tmp/env.sock");
  REQUIRE(from_option);
  CHECK(from_option->socket_path == "/tmp/opt.sock");

  auto from_option_after = parse({"models", "--socket=/tmp/eq.sock", "--json"});
  REQUIRE(from_option_after);
  CHECK(from_option_after->socket_path == "/tmp/eq.sock");
  CHECK(from_option_after->json);
}

TEST_CASE("sparkctl embed builds an EmbedRequest, reading '-' from stdin", "[sparkctl]") {
  auto plain = parse({"embed", "minilm", "hello", "world", "--truncate"});
  REQUIRE(plain);
  const v1::EmbedRequest& embed = plain->request.embed();
  CHECK(embed.model() == "minilm");
  REQUIRE(embed.inputs_size() == 2);
  CHECK(embed.inputs(1) == "world");
  CHECK(embed.truncate());
  CHECK_FALSE(embed.has_normalize());  // unset: the model's own setting

  auto normalized = parse({"embed", "m", "x", "--no-normalize"});
  REQUIRE(normalized);
  REQUIRE(normalized->request.embed().has_normalize());
  CHECK_FALSE(normalized->request.embed().normalize());

  auto from_stdin = parse({"embed", "m", "first", "-"}, nullptr, "line one\r\n\nline two\n");
  REQUIRE(from_stdin);
  const auto& inputs = from_stdin->request.embed().inputs();
  REQUIRE(inputs.size() == 3);
  CHECK(inputs[0] == "first");
  CHECK(inputs[1] == "line one");
  CHECK(inputs[2] == "line two");

  CHECK(usage_error_of({"embed", "m", "-"}).find("stdin") != std::string::npos);
  CHECK(usage_error_of({"embed", "m", "x", "--normalize", "--no-normalize"}).find("at most one") !=
        std::string::npos);
}

TEST_CASE("sparkctl rerank and tokenize options land in their requests", "[sparkctl]") {
  auto rerank =
      parse({"rerank", "rr", "the query", "doc a", "doc b", "--top-n", "1", "--raw-scores"});
  REQUIRE(rerank);
  CHECK(rerank->request.rerank().query() == "the query");
  CHECK(rerank->request.rerank().documents_size() == 2);
  CHECK(rerank->request.rerank().top_n() == 1);
  CHECK(rerank->request.rerank().raw_scores());

  auto tokenize = parse({"tokenize", "m", "some text", "--no-special"});
  REQUIRE(tokenize);
  REQUIRE(tokenize->request.tokenize().has_add_special_tokens());
  CHECK_FALSE(tokenize->request.tokenize().add_special_tokens());
  CHECK(tokenize->request.tokenize().return_tokens());

  auto detokenize = parse({"detokenize", "m", "1", "22", "333"});
  REQUIRE(detokenize);
  CHECK(detokenize->request.detokenize().ids_size() == 3);
  CHECK(detokenize->request.detokenize().ids(2) == 333);
  CHECK(usage_error_of({"detokenize", "m", "12x"}).find("12x") != std::string::npos);
}

TEST_CASE("sparkctl generate maps sampling options and chat", "[sparkctl]") {
  auto generated = parse({"generate", "qwen", "Hello", "--max-tokens", "7", "--temperature", "0",
                          "--top-p=0.9", "--top-k", "40", "--min-p", "0.05", "--seed", "42",
                          "--stop", "\n\n", "--stop", "END", "--ignore-eos"});
  REQUIRE(generated);
  const v1::GenerateRequest& generate = generated->request.generate();
  CHECK(generate.prompt() == "Hello");
  CHECK(generate.max_tokens() == 7);
  REQUIRE(generate.sampling().has_temperature());
  CHECK(generate.sampling().temperature() == 0.0f);
  CHECK(generate.sampling().top_p() == Approx(0.9f));
  CHECK(generate.sampling().top_k() == 40);
  CHECK(generate.sampling().min_p() == Approx(0.05f));
  CHECK(generate.sampling().seed() == 42u);
  REQUIRE(generate.stop_size() == 2);
  CHECK(generate.stop(1) == "END");
  CHECK(generate.ignore_eos());
  CHECK(generate.stream());
  CHECK(generated->stream_output);

  auto chat = parse({"generate", "qwen", "Hi there", "--chat", "--system", "Be brief."});
  REQUIRE(chat);
  REQUIRE(chat->request.generate().has_chat());
  const auto& messages = chat->request.generate().chat().messages();
  REQUIRE(messages.size() == 2);
  CHECK(messages[0].role() == "system");
  CHECK(messages[0].content() == "Be brief.");
  CHECK(messages[1].role() == "user");
  CHECK(messages[1].content() == "Hi there");

  // --json and --no-stream both ask the daemon for one response at the end.
  auto json = parse({"generate", "qwen", "x", "--json"});
  REQUIRE(json);
  CHECK_FALSE(json->request.generate().stream());
  CHECK_FALSE(json->stream_output);
  auto no_stream = parse({"generate", "qwen", "x", "--no-stream"});
  REQUIRE(no_stream);
  CHECK_FALSE(no_stream->request.generate().stream());

  // A prompt that starts with a dash goes after "--".
  auto dashed = parse({"generate", "qwen", "--", "--not an option"});
  REQUIRE(dashed);
  CHECK(dashed->request.generate().prompt() == "--not an option");
}

TEST_CASE("sparkctl refuses malformed command lines with a usage error", "[sparkctl]") {
  CHECK(usage_error_of({}).find("no command") != std::string::npos);
  CHECK(usage_error_of({"frobnicate"}).find("unknown command 'frobnicate'") != std::string::npos);
  CHECK(usage_error_of({"models", "--bogus"}).find("unknown option '--bogus'") !=
        std::string::npos);
  CHECK(usage_error_of({"embed", "m", "x", "--top-n", "3"}).find("does not apply to 'embed'") !=
        std::string::npos);
  CHECK(usage_error_of({"generate", "m"}).find("MODEL PROMPT") != std::string::npos);
  CHECK(usage_error_of({"generate", "m", "p", "--max-tokens", "-1"}).find("--max-tokens") !=
        std::string::npos);
  CHECK(usage_error_of({"generate", "m", "p", "--temperature", "warm"}).find("warm") !=
        std::string::npos);
  CHECK(usage_error_of({"generate", "m", "p", "--system", "s"}).find("--chat") !=
        std::string::npos);
  CHECK(usage_error_of({"generate", "m", "p", "--stop"}).find("needs a value") !=
        std::string::npos);
  CHECK(usage_error_of({"models", "--json=yes"}).find("takes no value") != std::string::npos);
  CHECK(usage_error_of({"unload"}).find("NAME") != std::string::npos);
  CHECK(usage_error_of({"reload", "extra"}).find("no arguments") != std::string::npos);

  auto help = parse({"--help"});
  REQUIRE(help);
  CHECK(help->help);
  CHECK(help->command.empty());
}

TEST_CASE("sparkctl --json is the payload plus usage and timing, with proto field names",
          "[sparkctl]") {
  // A streamed generation: two chunks, the final one carries usage, timing and finish_reason.
  std::vector<v1::Response> responses(2);
  responses[0].set_id(1);
  responses[0].mutable_generate()->set_text("Hel");
  responses[0].mutable_generate()->add_token_ids(10);
  responses[1].set_id(1);
  responses[1].set_final(true);
  responses[1].mutable_generate()->set_text("lo");
  responses[1].mutable_generate()->add_token_ids(11);
  responses[1].mutable_generate()->set_finish_reason("length");
  responses[1].mutable_usage()->set_prompt_tokens(3);
  responses[1].mutable_usage()->set_completion_tokens(2);
  responses[1].mutable_usage()->set_total_tokens(5);
  responses[1].mutable_timing()->set_ttft_ms(1.5);

  auto json = sparkd::sparkctl::command_result_json("generate", responses);
  REQUIRE(json);
  CHECK(*json == R"({"text":"Hello","token_ids":[10,11],"logprobs":[],"finish_reason":"length",)"
                 R"("reasoning":"","tool_calls":[],)"
                 R"("usage":{"prompt_tokens":3,"completion_tokens":2,"cached_prompt_tokens":0,)"
                 R"("total_tokens":5},"timing":{"queue_ms":0,"tokenize_ms":0,"compute_ms":0,)"
                 R"("total_ms":0,"ttft_ms":1.5}})");

  // Commands without usage get timing only; an empty payload still makes one object.
  v1::Response admin;
  admin.set_final(true);
  admin.mutable_admin();
  auto admin_json = sparkd::sparkctl::command_result_json("reload", {admin});
  REQUIRE(admin_json);
  CHECK(*admin_json ==
        R"({"message":"","timing":{"queue_ms":0,"tokenize_ms":0,"compute_ms":0,"total_ms":0,)"
        R"("ttft_ms":0}})");

  v1::Response models;
  models.set_final(true);
  v1::ModelInfo& info = *models.mutable_list_models()->add_models();
  info.set_name("minilm");
  info.set_weights_bytes(90868224);
  auto models_json = sparkd::sparkctl::command_result_json("models", {models});
  REQUIRE(models_json);
  // uint64 fields are strings in protobuf's JSON mapping.
  CHECK(models_json->find(R"("weights_bytes":"90868224")") != std::string::npos);
  CHECK(models_json->find(R"("max_input_tokens":0)") != std::string::npos);
  CHECK(models_json->find(R"("usage")") == std::string::npos);
}

TEST_CASE("sparkctl load sends an absolute path and the residency asked for", "[sparkctl]") {
  auto relative = parse({"load", "extra", "models/../models/xlmr"});
  REQUIRE(relative);
  const std::string expected =
      (std::filesystem::current_path() / "models/xlmr").lexically_normal().string();
  CHECK(relative->request.load().path() == expected);
  CHECK(relative->request.load().residency().empty());

  auto absolute = parse({"load", "extra", "/srv/models/xlmr", "--residency", "pinned"});
  REQUIRE(absolute);
  CHECK(absolute->request.load().path() == "/srv/models/xlmr");
  CHECK(absolute->request.load().residency() == "pinned");

  auto store = parse({"load", "qwen", "ollama:qwen2.5-coder:1.5b"});  // not a path: as given
  REQUIRE(store);
  CHECK(store->request.load().path() == "ollama:qwen2.5-coder:1.5b");

  auto by_name = parse({"load", "minilm", "--residency=on_demand"});
  REQUIRE(by_name);
  CHECK(by_name->request.load().path().empty());  // the config's path
  CHECK(by_name->request.load().residency() == "on_demand");

  CHECK(usage_error_of({"load", "x", "/m", "--residency", "sticky"}) ==
        "--residency wants pinned or on_demand, not 'sticky'");
  CHECK(usage_error_of({"unload", "x", "--residency", "pinned"})
            .find("--residency does not apply to 'unload'") != std::string::npos);
}
