// The OpenAI and Ollama APIs' mapping of request bodies to sparkd.v1 calls, and of the calls'
// responses back to JSON / SSE / NDJSON: the first byte picks the endpoint, the rest is the
// body. Each call's request is validated as the server validates it, and its translator is fed
// a stream chunk, an error and a final chunk, as a streaming call can end.
#include <cstddef>
#include <cstdint>
#include <string>

#include "api/http/api_router.h"
#include "api/protocol/request_validation.h"

namespace {

constexpr const char* kPaths[] = {
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/embeddings",
    "/v1/rerank",
    "/rerank",
    "/api/chat",
    "/api/generate",
    "/api/embed",
    "/api/embeddings",
    "/api/show",
};

void feed_translator(sparkd::http::ResponseTranslator& translator, const std::string& text) {
  sparkd::v1::Response chunk;
  chunk.mutable_generate()->set_text(text);
  chunk.mutable_generate()->set_reasoning(text);
  sparkd::v1::ToolCall* call = chunk.mutable_generate()->add_tool_calls();
  call->set_name(text);
  call->set_arguments(text);  // not always JSON: the translators must cope
  (void)translator.translate(chunk);
  sparkd::v1::Response last;
  last.set_final(true);
  last.mutable_embed()->set_dimensions(2);
  last.mutable_embed()->add_embeddings()->add_values(1.0f);
  last.mutable_rerank()->add_results()->set_document(text);
  last.mutable_list_models()->add_models()->set_name(text);
  (void)translator.translate(last);
  sparkd::v1::Response error;
  error.set_final(true);
  error.mutable_error()->set_code(sparkd::v1::UNAVAILABLE);
  error.mutable_error()->set_message(text);
  (void)translator.translate(error);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  static sparkd::http::ApiRouter router("fuzz");
  sparkd::http::HttpRequest request;
  request.method = "POST";
  request.path = kPaths[data[0] % (sizeof(kPaths) / sizeof(kPaths[0]))];
  request.target = request.path;
  request.body.assign(reinterpret_cast<const char*>(data) + 1, size - 1);
  sparkd::http::Routed routed = router.route(request);
  auto* call = std::get_if<sparkd::http::RoutedCall>(&routed);
  if (call == nullptr) return 0;
  call->request.set_id(1);
  (void)sparkd::api::validate_request(call->request, {});
  feed_translator(*call->translator, request.body.substr(0, 64));
  return 0;
}
