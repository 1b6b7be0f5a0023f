// Requests off the wire: parse_request refuses bytes that are not a sparkd.v1.Request and
// fields this daemon's schema does not know; validate_request refuses each kind of bad field
// with a message naming it and accepts good requests of every kind; status codes map to the
// wire and back.
#include <google/protobuf/unknown_field_set.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "api/protocol/request_validation.h"
#include "api/protocol/status_codes.h"
#include "api/sparkd.pb.h"
#include "tests/integration/daemon_test_helpers.h"

namespace {

using Catch::Matchers::Contains;
using Catch::Matchers::StartsWith;
using sparkd::Status;
using sparkd::StatusCode;
using sparkd::api::parse_request;
using sparkd::api::RequestLimits;
using sparkd::api::validate_request;
namespace v1 = sparkd::v1;

const std::string kNotARequest = "the frame is not a sparkd.v1.Request: ";

std::string parse_error(const std::string& payload) {
  auto parsed = parse_request(payload);
  REQUIRE_FALSE(parsed.has_value());
  CHECK(parsed.status().code() == StatusCode::kInvalidArgument);
  return parsed.status().message();
}

v1::Request embed_request() {
  v1::Request request;
  request.set_id(1);
  request.mutable_embed()->set_model("minilm");
  request.mutable_embed()->add_inputs("first text");
  request.mutable_embed()->add_inputs("second text");
  return request;
}

v1::Request rerank_request() {
  v1::Request request;
  request.set_id(2);
  v1::RerankRequest& rerank = *request.mutable_rerank();
  rerank.set_model("bge-reranker");
  rerank.set_query("what is a llama?");
  rerank.add_documents("A llama is a South American camelid.");
  rerank.add_documents("Paris is in France.");
  rerank.set_top_n(1);
  return request;
}

v1::Request prompt_request() {
  v1::Request request;
  request.set_id(3);
  v1::GenerateRequest& generate = *request.mutable_generate();
  generate.set_model("qwen3");
  generate.set_prompt("Once upon a time");
  v1::Sampling& sampling = *generate.mutable_sampling();
  sampling.set_temperature(0.7f);
  sampling.set_top_k(40);
  sampling.set_top_p(0.9f);
  sampling.set_min_p(0.05f);
  sampling.set_repetition_penalty(1.1f);
  sampling.set_presence_penalty(-2.0f);
  sampling.set_frequency_penalty(2.0f);
  sampling.set_logprobs(20);
  sampling.set_seed(7);
  v1::LogitBias& bias = *sampling.add_logit_bias();
  bias.set_token_id(0);
  bias.set_bias(-100.0f);
  generate.add_stop("\n\n");
  generate.add_stop_token_ids(0);
  generate.set_max_tokens(64);
  return request;
}

v1::Request chat_request() {
  v1::Request request;
  request.set_id(4);
  v1::GenerateRequest& generate = *request.mutable_generate();
  generate.set_model("llama");
  v1::Chat& chat = *generate.mutable_chat();
  v1::ChatMessage* system = chat.add_messages();
  system->set_role("system");
  system->set_content("Be brief.");
  v1::ChatMessage* user = chat.add_messages();
  user->set_role("user");
  user->set_content("Hi");
  v1::ChatMessage* assistant = chat.add_messages();
  assistant->set_role("assistant");  // an empty assistant turn: the reply to continue
  return request;
}

std::vector<v1::Request> valid_requests_of_every_kind() {
  std::vector<v1::Request> requests = {embed_request(), rerank_request(), prompt_request(),
                                       chat_request()};
  v1::Request request;
  request.mutable_tokenize()->set_model("qwen3");  // empty text is fine
  requests.push_back(request);
  request.Clear();
  request.mutable_detokenize()->set_model("qwen3");
  request.mutable_detokenize()->add_ids(0);
  request.mutable_detokenize()->add_ids(151643);
  requests.push_back(request);
  request.Clear();
  request.mutable_cancel()->set_target_id(12345);
  requests.push_back(request);
  request.Clear();
  request.mutable_list_models();
  requests.push_back(request);
  request.Clear();
  request.mutable_status();
  requests.push_back(request);
  request.Clear();
  request.mutable_health();
  requests.push_back(request);
  request.Clear();
  request.mutable_load()->set_name("qwen3");
  requests.push_back(request);
  request.Clear();
  request.mutable_unload()->set_name("qwen3");
  requests.push_back(request);
  request.Clear();
  request.mutable_reload();
  requests.push_back(request);
  // A generate request with no sampling at all takes every default.
  request = prompt_request();
  request.mutable_generate()->clear_sampling();
  requests.push_back(request);
  uint64_t id = 100;
  for (v1::Request& each : requests) {
    if (each.id() == 0) each.set_id(id++);  // id 0 is refused (tested apart)
  }
  return requests;
}

// The message of validate_request's error for `request`, which must fail. A request built
// without an id is given one: id 0 is refused on its own (tested apart).
std::string validation_error(v1::Request request, const RequestLimits& limits = {}) {
  if (request.id() == 0) request.set_id(99);
  const Status status = validate_request(request, limits);
  REQUIRE_FALSE(status.is_ok());
  CHECK(status.code() == StatusCode::kInvalidArgument);
  return status.message();
}

}  // namespace

// ---- parse_request ---------------------------------------------------------------------------

TEST_CASE("parse_request accepts every kind of valid request unchanged", "[protocol]") {
  for (const v1::Request& request : valid_requests_of_every_kind()) {
    INFO(request.ShortDebugString());
    auto parsed = parse_request(request.SerializeAsString());
    REQUIRE(parsed.has_value());
    CHECK(parsed->SerializeAsString() == request.SerializeAsString());
  }
  // Multi-byte UTF-8 is text like any other.
  v1::Request request = embed_request();
  request.mutable_embed()->add_inputs("h\xC3\xA9llo \xE6\x97\xA5\xE6\x9C\xAC \xF0\x9F\x8E\x89");
  auto parsed = parse_request(request.SerializeAsString());
  REQUIRE(parsed.has_value());
  CHECK(parsed->embed().inputs(2) == request.embed().inputs(2));
}

TEST_CASE("parse_request refuses bytes that are not protobuf", "[protocol]") {
  CHECK_THAT(parse_error("\xFF\xFF\xFF"), StartsWith(kNotARequest));
  // Field 1 as a length-delimited value with a length past the end.
  CHECK_THAT(parse_error(std::string("\x0A\x7F"
                                     "abc",
                                     5)),
             StartsWith(kNotARequest) && Contains("truncated"));
  // Wire type 7 does not exist.
  CHECK_THAT(parse_error(std::string("\x0F", 1)),
             StartsWith(kNotARequest) && Contains("wire type 7"));

  // Random bytes: each either parses or is refused with INVALID_ARGUMENT; none crash.
  std::mt19937 random(1234);
  std::uniform_int_distribution<int> byte(0, 255);
  std::uniform_int_distribution<int> length(1, 64);
  int refused = 0;
  for (int i = 0; i < 2000; ++i) {
    std::string bytes(static_cast<size_t>(length(random)), '\0');
    for (char& c : bytes) c = static_cast<char>(byte(random));
    auto parsed = parse_request(bytes);
    if (parsed.has_value()) continue;
    ++refused;
    CHECK(parsed.status().code() == StatusCode::kInvalidArgument);
    const std::string& message = parsed.status().message();
    CHECK((message.rfind(kNotARequest, 0) == 0 || message.rfind("unknown field ", 0) == 0));
  }
  CHECK(refused > 1900);
}

TEST_CASE("parse_request refuses a truncated request", "[protocol]") {
  const std::string whole = embed_request().SerializeAsString();
  // The embed message is the last field; cutting anywhere inside it leaves its declared
  // length longer than what follows.
  const size_t embed_body_start = whole.size() - embed_request().embed().ByteSizeLong();
  for (size_t cut = embed_body_start; cut < whole.size(); ++cut) {
    INFO("cut at " << cut << " of " << whole.size());
    CHECK_THAT(parse_error(whole.substr(0, cut)),
               StartsWith(kNotARequest) && Contains("sparkd.v1.Request.embed declares"));
  }
}

TEST_CASE("parse_request refuses unknown fields anywhere in the request", "[protocol]") {
  SECTION("top level, as raw bytes: field 99, varint 1") {
    const std::string bytes = embed_request().SerializeAsString() + std::string("\x98\x06\x01", 3);
    CHECK_THAT(parse_error(bytes), StartsWith("unknown field 99 in sparkd.v1.Request"));
  }
  SECTION("inside embed") {
    v1::Request request = embed_request();
    v1::EmbedRequest* embed = request.mutable_embed();
    embed->GetReflection()->MutableUnknownFields(embed)->AddVarint(99, 1);
    CHECK_THAT(parse_error(request.SerializeAsString()),
               StartsWith("unknown field 99 in sparkd.v1.EmbedRequest (at embed)"));
  }
  SECTION("inside a repeated message deep in generate") {
    v1::Request request = prompt_request();
    v1::LogitBias* bias = request.mutable_generate()->mutable_sampling()->add_logit_bias();
    bias->GetReflection()->MutableUnknownFields(bias)->AddLengthDelimited(7, "x");
    CHECK_THAT(
        parse_error(request.SerializeAsString()),
        StartsWith("unknown field 7 in sparkd.v1.LogitBias (at generate.sampling.logit_bias[1])"));
  }
  SECTION("a Response sent where a Request belongs") {
    v1::Response response;
    response.set_id(5);
    response.set_final(true);
    CHECK_THAT(parse_error(response.SerializeAsString()),
               StartsWith("unknown field 2 in sparkd.v1.Request"));
  }
}

TEST_CASE("parse_request refuses invalid UTF-8 in a string field", "[protocol]") {
  // Request{embed (10): EmbedRequest{model (1): "m", inputs (2): "\xFF"}}, written by hand:
  // protobuf will not serialize invalid UTF-8 quietly. (libprotobuf also logs a line.)
  const std::string embed_body("\x0A\x01m\x12\x01\xFF", 6);
  const std::string bytes =
      std::string("\x52", 1) + static_cast<char>(embed_body.size()) + embed_body;
  CHECK_THAT(parse_error(bytes), StartsWith(kNotARequest) &&
                                     Contains("sparkd.v1.EmbedRequest.inputs is not valid UTF-8"));
  // Surrogates (ED A0 80) and overlong forms (C0 AF) are invalid too.
  for (const std::string& bad : {std::string("\xED\xA0\x80"), std::string("\xC0\xAF")}) {
    const std::string tokenize_body =
        std::string("\x0A\x01m\x12", 4) + static_cast<char>(bad.size()) + bad;
    const std::string frame =
        std::string("\x6A", 1) + static_cast<char>(tokenize_body.size()) + tokenize_body;
    CHECK_THAT(parse_error(frame), Contains("sparkd.v1.TokenizeRequest.text is not valid UTF-8"));
  }
}

// ---- validate_request ------------------------------------------------------------------------

TEST_CASE("validate_request accepts valid requests of every kind", "[protocol]") {
  for (const v1::Request& request : valid_requests_of_every_kind()) {
    INFO(request.ShortDebugString());
    const Status status = validate_request(request, RequestLimits{});
    CHECK(status.is_ok());
    CHECK(status.message().empty());
  }
}

TEST_CASE("validate_request needs a kind", "[protocol]") {
  v1::Request request;
  request.set_id(9);
  CHECK_THAT(validation_error(request),
             StartsWith("the request has no kind (set one of embed, rerank, generate"));
}

TEST_CASE("validate_request checks embed", "[protocol]") {
  RequestLimits limits;
  limits.max_inputs = 3;
  limits.max_text_bytes = 10;
  v1::Request request = embed_request();
  SECTION("model") {
    request.mutable_embed()->clear_model();
    CHECK_THAT(validation_error(request, limits), StartsWith("embed.model is empty"));
  }
  SECTION("no inputs") {
    request.mutable_embed()->clear_inputs();
    CHECK_THAT(validation_error(request, limits), StartsWith("embed.inputs is empty"));
  }
  SECTION("an empty input") {
    request.mutable_embed()->set_inputs(1, "");
    CHECK(validation_error(request, limits) == "embed.inputs[1] is empty");
  }
  SECTION("too many inputs") {
    for (int i = 0; i < 2; ++i) request.mutable_embed()->add_inputs("more");
    CHECK_THAT(validation_error(request, limits),
               StartsWith("embed.inputs has 4 entries, more than max_inputs 3"));
  }
  SECTION("an input too long") {
    request.mutable_embed()->set_inputs(0, "eleven byte");
    CHECK_THAT(validation_error(request, limits),
               StartsWith("embed.inputs[0] is 11 bytes, more than max_text_bytes 10"));
  }
  SECTION("at the limits") {
    request.mutable_embed()->set_inputs(0, "ten bytes!");
    request.mutable_embed()->set_inputs(1, "second");
    request.mutable_embed()->add_inputs("third");
    CHECK(validate_request(request, limits).is_ok());
  }
}

TEST_CASE("validate_request checks rerank", "[protocol]") {
  RequestLimits limits;
  limits.max_inputs = 2;
  limits.max_text_bytes = 40;
  v1::Request request = rerank_request();
  v1::RerankRequest& rerank = *request.mutable_rerank();
  SECTION("model") {
    rerank.clear_model();
    CHECK_THAT(validation_error(request, limits), StartsWith("rerank.model is empty"));
  }
  SECTION("query empty") {
    rerank.clear_query();
    CHECK(validation_error(request, limits) == "rerank.query is empty");
  }
  SECTION("query too long") {
    rerank.set_query(std::string(41, 'q'));
    CHECK_THAT(validation_error(request, limits), StartsWith("rerank.query is 41 bytes"));
  }
  SECTION("no documents") {
    rerank.clear_documents();
    CHECK_THAT(validation_error(request, limits), StartsWith("rerank.documents is empty"));
  }
  SECTION("an empty document") {
    rerank.set_documents(1, "");
    CHECK(validation_error(request, limits) == "rerank.documents[1] is empty");
  }
  SECTION("too many documents") {
    rerank.add_documents("third");
    CHECK_THAT(validation_error(request, limits),
               StartsWith("rerank.documents has 3 entries, more than max_inputs 2"));
  }
  SECTION("a document too long") {
    rerank.set_documents(0, std::string(41, 'd'));
    CHECK_THAT(validation_error(request, limits),
               StartsWith("rerank.documents[0] is 41 bytes, more than max_text_bytes 40"));
  }
  SECTION("top_n may be anything") {
    rerank.set_top_n(1000);
    CHECK(validate_request(request, limits).is_ok());
  }
}

TEST_CASE("validate_request checks generate's model and input", "[protocol]") {
  RequestLimits limits;
  limits.max_text_bytes = 20;
  limits.max_chat_messages = 3;
  SECTION("model") {
    v1::Request request = prompt_request();
    request.mutable_generate()->clear_model();
    CHECK_THAT(validation_error(request, limits), StartsWith("generate.model is empty"));
  }
  SECTION("neither prompt nor chat") {
    v1::Request request = prompt_request();
    request.mutable_generate()->clear_input();
    CHECK(validation_error(request, limits) ==
          "generate has neither prompt nor chat (set exactly one)");
  }
  SECTION("empty prompt") {
    v1::Request request = prompt_request();
    request.mutable_generate()->set_prompt("");
    CHECK(validation_error(request, limits) == "generate.prompt is empty");
  }
  SECTION("prompt too long") {
    v1::Request request = prompt_request();
    request.mutable_generate()->set_prompt(std::string(21, 'p'));
    CHECK_THAT(validation_error(request, limits),
               StartsWith("generate.prompt is 21 bytes, more than max_text_bytes 20"));
  }
  SECTION("chat with no messages") {
    v1::Request request = chat_request();
    request.mutable_generate()->mutable_chat()->clear_messages();
    CHECK_THAT(validation_error(request, limits), StartsWith("generate.chat.messages is empty"));
  }
  SECTION("too many chat messages") {
    v1::Request request = chat_request();
    v1::ChatMessage* extra = request.mutable_generate()->mutable_chat()->add_messages();
    extra->set_role("user");
    extra->set_content("again");
    CHECK_THAT(validation_error(request, limits),
               StartsWith("generate.chat.messages has 4 entries, more than max_chat_messages 3"));
  }
  SECTION("a role that is not a word") {
    v1::Request request = chat_request();
    request.mutable_generate()->mutable_chat()->mutable_messages(1)->set_role("bot <script>");
    CHECK(validation_error(request, limits) ==
          "generate.chat.messages[1].role is \"bot <script>\"; a role is 1 to 64 ASCII letters, "
          "digits, '_' or '-' (system, user, assistant, ...)");
    // Which words are roles is the chat template's to say (tool, developer, ipython, ...).
    request.mutable_generate()->mutable_chat()->mutable_messages(1)->set_role("tool");
    if (request.id() == 0) request.set_id(99);
    CHECK(validate_request(request, limits).is_ok());
  }
  SECTION("empty content outside an assistant message") {
    v1::Request request = chat_request();
    request.mutable_generate()->mutable_chat()->mutable_messages(0)->clear_content();
    CHECK_THAT(validation_error(request, limits),
               StartsWith("generate.chat.messages[0].content is empty"));
  }
  SECTION("content too long") {
    v1::Request request = chat_request();
    request.mutable_generate()->mutable_chat()->mutable_messages(2)->set_content(
        std::string(21, 'c'));
    CHECK_THAT(validation_error(request, limits),
               StartsWith("generate.chat.messages[2].content is 21 bytes"));
  }
}

TEST_CASE("validate_request checks every sampling parameter", "[protocol]") {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float infinity = std::numeric_limits<float>::infinity();
  struct Case {
    const char* what;
    std::function<void(v1::Sampling&)> change;
    std::string expected_message;
  };
  const std::vector<Case> cases = {
      {"negative temperature", [](v1::Sampling& s) { s.set_temperature(-0.5f); },
       "generate.sampling.temperature must be >= 0 (0 = greedy), got -0.5"},
      {"NaN temperature", [nan](v1::Sampling& s) { s.set_temperature(nan); },
       "generate.sampling.temperature must be a finite number, got nan"},
      {"infinite temperature", [infinity](v1::Sampling& s) { s.set_temperature(infinity); },
       "generate.sampling.temperature must be a finite number, got inf"},
      {"top_k below -1", [](v1::Sampling& s) { s.set_top_k(-2); },
       "generate.sampling.top_k must be >= -1 (0 or -1 = off), got -2"},
      {"top_p above 1", [](v1::Sampling& s) { s.set_top_p(1.5f); },
       "generate.sampling.top_p must be in (0, 1], got 1.5"},
      {"top_p of 0", [](v1::Sampling& s) { s.set_top_p(0.0f); },
       "generate.sampling.top_p must be in (0, 1], got 0"},
      {"NaN top_p", [nan](v1::Sampling& s) { s.set_top_p(nan); },
       "generate.sampling.top_p must be a finite number, got nan"},
      {"negative min_p", [](v1::Sampling& s) { s.set_min_p(-0.25f); },
       "generate.sampling.min_p must be in [0, 1], got -0.25"},
      {"min_p above 1", [](v1::Sampling& s) { s.set_min_p(1.25f); },
       "generate.sampling.min_p must be in [0, 1], got 1.25"},
      {"zero repetition_penalty", [](v1::Sampling& s) { s.set_repetition_penalty(0.0f); },
       "generate.sampling.repetition_penalty must be > 0 (1 = off), got 0"},
      {"infinite repetition_penalty",
       [infinity](v1::Sampling& s) { s.set_repetition_penalty(-infinity); },
       "generate.sampling.repetition_penalty must be a finite number, got -inf"},
      {"presence_penalty above 2", [](v1::Sampling& s) { s.set_presence_penalty(2.5f); },
       "generate.sampling.presence_penalty must be in [-2, 2], got 2.5"},
      {"frequency_penalty below -2", [](v1::Sampling& s) { s.set_frequency_penalty(-3.0f); },
       "generate.sampling.frequency_penalty must be in [-2, 2], got -3"},
      {"NaN frequency_penalty", [nan](v1::Sampling& s) { s.set_frequency_penalty(nan); },
       "generate.sampling.frequency_penalty must be a finite number, got nan"},
      {"too many logprobs", [](v1::Sampling& s) { s.set_logprobs(21); },
       "generate.sampling.logprobs is 21, more than max_logprobs 20"},
      {"negative logit_bias token",
       [](v1::Sampling& s) { s.mutable_logit_bias(0)->set_token_id(-1); },
       "generate.sampling.logit_bias[0].token_id must be >= 0, got -1"},
      {"logit_bias above 100", [](v1::Sampling& s) { s.mutable_logit_bias(0)->set_bias(100.5f); },
       "generate.sampling.logit_bias[0].bias must be in [-100, 100], got 100.5"},
      {"NaN logit_bias", [nan](v1::Sampling& s) { s.mutable_logit_bias(0)->set_bias(nan); },
       "generate.sampling.logit_bias[0].bias must be a finite number, got nan"},
      {"too many logit_bias entries",
       [](v1::Sampling& s) {
         for (int i = 0; i < 4; ++i) s.add_logit_bias()->set_token_id(i);
       },
       "generate.sampling.logit_bias has 5 entries, more than max_logit_bias 4"},
  };
  RequestLimits limits;
  limits.max_logit_bias = 4;
  for (const Case& c : cases) {
    INFO(c.what);
    v1::Request request = prompt_request();
    c.change(*request.mutable_generate()->mutable_sampling());
    CHECK(validation_error(request, limits) == c.expected_message);
  }
  SECTION("the edges of each range are valid") {
    v1::Request request = prompt_request();
    v1::Sampling& sampling = *request.mutable_generate()->mutable_sampling();
    sampling.set_temperature(0.0f);
    sampling.set_top_k(-1);
    sampling.set_top_p(1.0f);
    sampling.set_min_p(1.0f);
    sampling.set_presence_penalty(2.0f);
    sampling.set_frequency_penalty(-2.0f);
    sampling.mutable_logit_bias(0)->set_bias(100.0f);
    CHECK(validate_request(request, limits).is_ok());
    sampling.set_min_p(0.0f);
    sampling.set_top_p(std::numeric_limits<float>::min());
    sampling.mutable_logit_bias(0)->set_bias(-100.0f);
    CHECK(validate_request(request, limits).is_ok());
  }
}

TEST_CASE("validate_request checks stop strings and stop token ids", "[protocol]") {
  RequestLimits limits;
  limits.max_stop_strings = 2;
  limits.max_stop_string_bytes = 8;
  v1::Request request = prompt_request();
  v1::GenerateRequest& generate = *request.mutable_generate();
  SECTION("too many stop strings") {
    generate.add_stop("b");
    generate.add_stop("c");
    CHECK_THAT(validation_error(request, limits),
               StartsWith("generate.stop has 3 entries, more than max_stop_strings 2"));
  }
  SECTION("an empty stop string") {
    generate.add_stop("");
    CHECK(validation_error(request, limits) == "generate.stop[1] is empty");
  }
  SECTION("a stop string too long") {
    generate.set_stop(0, "123456789");
    CHECK(validation_error(request, limits) ==
          "generate.stop[0] is 9 bytes, more than max_stop_string_bytes 8");
  }
  SECTION("a negative stop token id") {
    generate.add_stop_token_ids(-3);
    CHECK(validation_error(request, limits) == "generate.stop_token_ids[1] must be >= 0, got -3");
  }
}

TEST_CASE("validate_request checks tokenize, detokenize, load and unload", "[protocol]") {
  RequestLimits limits;
  limits.max_text_bytes = 5;
  v1::Request request;
  SECTION("tokenize model") {
    request.mutable_tokenize()->set_text("abc");
    CHECK_THAT(validation_error(request, limits), StartsWith("tokenize.model is empty"));
  }
  SECTION("tokenize text too long") {
    request.mutable_tokenize()->set_model("m");
    request.mutable_tokenize()->set_text("abcdef");
    CHECK_THAT(validation_error(request, limits),
               StartsWith("tokenize.text is 6 bytes, more than max_text_bytes 5"));
  }
  SECTION("detokenize model") {
    request.mutable_detokenize()->add_ids(1);
    CHECK_THAT(validation_error(request, limits), StartsWith("detokenize.model is empty"));
  }
  SECTION("detokenize negative id") {
    request.mutable_detokenize()->set_model("m");
    request.mutable_detokenize()->add_ids(1);
    request.mutable_detokenize()->add_ids(-1);
    CHECK(validation_error(request, limits) == "detokenize.ids[1] must be >= 0, got -1");
  }
  SECTION("load name") {
    request.mutable_load()->set_path("/models/x");
    CHECK_THAT(validation_error(request, limits), StartsWith("load.name is empty"));
  }
  SECTION("unload name") {
    request.mutable_unload();
    CHECK_THAT(validation_error(request, limits), StartsWith("unload.name is empty"));
  }
}

TEST_CASE("load names follow the config's rule, paths are absolute, residency is known",
          "[protocol]") {
  auto load = [](const std::string& name, const std::string& path = "/models/x",
                 const std::string& residency = "") {
    v1::Request request = sparkd::testing::load_request(name, path, residency);
    request.set_id(1);
    return request;
  };
  CHECK(validate_request(load("qwen3-8b_v2.1"), {}).is_ok());
  CHECK(validate_request(load(std::string(64, 'a')), {}).is_ok());
  CHECK(validate_request(load("m", ""), {}).is_ok());  // the config's path
  CHECK(validate_request(load("m", "/x", "pinned"), {}).is_ok());
  CHECK(validate_request(load("m", "/x", "on_demand"), {}).is_ok());

  const std::string rule = "load.name must be 1 to 64 characters of A-Z a-z 0-9 . _ -, got ";
  CHECK(validation_error(load("bad name!")) == rule + "\"bad name!\"");
  CHECK(validation_error(load(std::string(65, 'a'))) == rule + "\"" + std::string(65, 'a') + "\"");
  CHECK(validation_error(load(std::string(300, 'n'))) ==
        rule + "\"" + std::string(80, 'n') + "\"... (300 bytes)");
  CHECK(validation_error(load("a\"b\\c\nd")) == rule + "\"a\\\"b\\\\c\\x0ad\"");
  // A cut never splits a UTF-8 character: the message is a proto3 string.
  const std::string accents = std::string(79, 'a') + "\xc3\xa9\xc3\xa9";  // 79 + 2 x "é"
  const std::string cut = validation_error(load(accents));
  CHECK(cut == rule + "\"" + std::string(79, 'a') + "\"... (83 bytes)");
  v1::Response carrier = sparkd::api::error_response(1, Status(StatusCode::kInvalidArgument, cut));
  v1::Response parsed;
  CHECK(parsed.ParseFromString(carrier.SerializeAsString()));

  CHECK(validate_request(load("m", "ollama:qwen2.5-coder:1.5b"), {}).is_ok());
  CHECK(validate_request(load("m", "hf:Qwen/Qwen3-0.6B"), {}).is_ok());
  CHECK(validation_error(load("m", "models/x")) ==
        "load.path must be an absolute path, ollama:NAME[:TAG] or hf:ORG/NAME, got \"models/x\" "
        "(sparkctl and the Python client make a relative path absolute for you)");
  CHECK(validation_error(load("m", "/x", "sticky")) ==
        "load.residency must be \"pinned\" or \"on_demand\" (or empty), got \"sticky\"");
  CHECK_THAT(validation_error(sparkd::testing::unload_request("no way")),
             StartsWith("unload.name must be 1 to 64 characters of A-Z a-z 0-9 . _ -"));
}

TEST_CASE("numeric fields take their whole wire range where it means something", "[protocol]") {
  // max_tokens is a uint32: every value asks for that many tokens at most (generation also
  // ends at the context), so the boundaries are all valid.
  for (const uint32_t max_tokens : {0u, 1u, 2147483647u, 2147483648u, 4294967295u}) {
    v1::Request request = prompt_request();
    request.mutable_generate()->set_max_tokens(max_tokens);
    CHECK(validate_request(request, {}).is_ok());
  }
  for (const int32_t priority :
       {std::numeric_limits<int32_t>::min(), 0, std::numeric_limits<int32_t>::max()}) {
    v1::Request request = prompt_request();
    request.mutable_generate()->set_priority(priority);
    request.mutable_generate()->set_deadline_ms(std::numeric_limits<uint32_t>::max());
    request.mutable_generate()->mutable_sampling()->set_seed(std::numeric_limits<uint64_t>::max());
    request.mutable_generate()->mutable_sampling()->set_top_k(std::numeric_limits<int32_t>::max());
    CHECK(validate_request(request, {}).is_ok());
  }
  v1::Request rerank = rerank_request();
  rerank.mutable_rerank()->set_top_n(std::numeric_limits<uint32_t>::max());
  CHECK(validate_request(rerank, {}).is_ok());
  // Signed fields whose negative half means nothing are refused with the value.
  v1::Request request = prompt_request();
  request.mutable_generate()->mutable_sampling()->set_top_k(std::numeric_limits<int32_t>::min());
  CHECK(validation_error(request) ==
        "generate.sampling.top_k must be >= -1 (0 or -1 = off), got -2147483648");
  request = prompt_request();
  request.mutable_generate()->set_stop_token_ids(0, std::numeric_limits<int32_t>::min());
  CHECK(validation_error(request) == "generate.stop_token_ids[0] must be >= 0, got -2147483648");
}

TEST_CASE("request id 0 is refused: it is the id of errors about the connection", "[protocol]") {
  v1::Request request = embed_request();
  request.set_id(0);
  const Status status = validate_request(request, {});
  CHECK(status.code() == StatusCode::kInvalidArgument);
  CHECK(status.message() ==
        "request id 0 is reserved for errors about the connection itself; number requests from "
        "1");
}

TEST_CASE("recover_request_id reads the id of a payload that does not parse", "[protocol]") {
  using sparkd::api::recover_request_id;
  CHECK(recover_request_id(std::string("\x08\x08\x0f", 3)) == 8);  // id 8, then wire type 7
  CHECK(recover_request_id(std::string("\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01\x0f", 12)) ==
        std::numeric_limits<uint64_t>::max());
  // After other fields, and the last id wins as in protobuf.
  v1::Request request = embed_request();
  request.set_id(42);
  std::string payload = request.SerializeAsString() + "\x98\x06\x01";  // + unknown field 99
  CHECK(recover_request_id(payload) == 42);
  CHECK(recover_request_id(payload + std::string("\x08\x07", 2)) == 7);
  // Nothing to read, or broken before the id.
  CHECK(recover_request_id("") == 0);
  CHECK(recover_request_id(std::string("\x0f\x08\x08", 3)) == 0);
  CHECK(recover_request_id(std::string("\x52\x7f\x08\x05", 4)) == 0);  // length past the end
}

TEST_CASE("request_kind_name and request_model name what a request is about", "[protocol]") {
  using sparkd::api::request_kind_name;
  using sparkd::api::request_model;
  CHECK(request_kind_name(embed_request()) == "embed");
  CHECK(request_model(embed_request()) == "minilm");
  CHECK(request_kind_name(prompt_request()) == "generate");
  CHECK(request_model(prompt_request()) == "qwen3");
  v1::Request list;
  list.mutable_list_models();
  CHECK(request_kind_name(list) == "list_models");
  CHECK(request_model(list).empty());
  v1::Request load;
  load.mutable_load()->set_name("extra");
  CHECK(request_model(load) == "extra");
  CHECK(request_kind_name(v1::Request()) == "none");
}

// ---- status codes ----------------------------------------------------------------------------

TEST_CASE("every StatusCode maps to the gRPC code of the same name and back", "[protocol]") {
  const std::vector<StatusCode> all_codes = {StatusCode::kOk,
                                             StatusCode::kCancelled,
                                             StatusCode::kInvalidArgument,
                                             StatusCode::kDeadlineExceeded,
                                             StatusCode::kNotFound,
                                             StatusCode::kAlreadyExists,
                                             StatusCode::kPermissionDenied,
                                             StatusCode::kResourceExhausted,
                                             StatusCode::kFailedPrecondition,
                                             StatusCode::kUnimplemented,
                                             StatusCode::kInternal,
                                             StatusCode::kUnavailable,
                                             StatusCode::kDataLoss};
  for (StatusCode code : all_codes) {
    const v1::Code proto_code = sparkd::api::to_proto_code(code);
    INFO(sparkd::status_code_name(code));
    CHECK(v1::Code_Name(proto_code) == sparkd::status_code_name(code));
    CHECK(static_cast<int>(proto_code) == static_cast<int>(code));
    CHECK(sparkd::api::from_proto_code(proto_code) == code);
  }
}

TEST_CASE("gRPC codes sparkd never sends map to the nearest StatusCode", "[protocol]") {
  using sparkd::api::from_proto_code;
  CHECK(from_proto_code(v1::UNKNOWN) == StatusCode::kInternal);
  CHECK(from_proto_code(v1::ABORTED) == StatusCode::kUnavailable);
  CHECK(from_proto_code(v1::OUT_OF_RANGE) == StatusCode::kInvalidArgument);
  CHECK(from_proto_code(v1::UNAUTHENTICATED) == StatusCode::kPermissionDenied);
  CHECK(from_proto_code(static_cast<v1::Code>(99)) == StatusCode::kInternal);
}

TEST_CASE("error_response is a final response carrying the code and message", "[protocol]") {
  const v1::Response response = sparkd::api::error_response(
      77, Status(StatusCode::kNotFound, "no model named \"x\" (list_models shows them)"));
  CHECK(response.id() == 77);
  CHECK(response.final());
  CHECK(response.kind_case() == v1::Response::KIND_NOT_SET);
  CHECK(response.error().code() == v1::NOT_FOUND);
  CHECK(response.error().message() == "no model named \"x\" (list_models shows them)");

  const v1::Response from_ok = sparkd::api::error_response(78, Status::ok());
  CHECK(from_ok.final());
  CHECK(from_ok.error().code() == v1::INTERNAL);
  CHECK_THAT(from_ok.error().message(), Contains("OK status"));
}
