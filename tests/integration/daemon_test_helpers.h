// Request builders and response checks shared by the daemon integration tests.
#pragma once

#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "api/client/client.h"
#include "api/sparkd.pb.h"

namespace sparkd::testing {

inline v1::Request embed_request(const std::string& model, const std::vector<std::string>& inputs) {
  v1::Request request;
  auto* embed = request.mutable_embed();
  embed->set_model(model);
  for (const std::string& input : inputs) embed->add_inputs(input);
  return request;
}

inline v1::Request rerank_request(const std::string& model, const std::string& query,
                                  const std::vector<std::string>& documents) {
  v1::Request request;
  auto* rerank = request.mutable_rerank();
  rerank->set_model(model);
  rerank->set_query(query);
  for (const std::string& document : documents) rerank->add_documents(document);
  return request;
}

inline v1::Request generate_request(const std::string& model, const std::string& prompt,
                                    uint32_t max_tokens, bool stream = false) {
  v1::Request request;
  auto* generate = request.mutable_generate();
  generate->set_model(model);
  generate->set_prompt(prompt);
  generate->set_max_tokens(max_tokens);
  generate->set_stream(stream);
  generate->mutable_sampling()->set_temperature(0.0f);
  return request;
}

template <typename Builder>
v1::Request simple_request(Builder build) {
  v1::Request request;
  build(request);
  return request;
}

// The one final response of a call; fails the test on transport errors.
inline v1::Response call_once(api::Client& client, v1::Request request) {
  auto responses = client.call(std::move(request));
  INFO((responses ? "" : responses.status().message()));
  REQUIRE(responses.has_value());
  REQUIRE(!responses->empty());
  REQUIRE(responses->back().final());
  return responses->back();
}

inline v1::Code error_code(const v1::Response& response) {
  return response.has_error() ? response.error().code() : v1::OK;
}

}  // namespace sparkd::testing
