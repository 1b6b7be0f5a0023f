// Request builders, response checks and the metrics page, shared by the daemon integration
// tests.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <sstream>
#include <string>
#include <thread>
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

inline v1::Request load_request(const std::string& name, const std::string& path,
                                const std::string& residency = "") {
  v1::Request request;
  request.mutable_load()->set_name(name);
  request.mutable_load()->set_path(path);
  request.mutable_load()->set_residency(residency);
  return request;
}

inline v1::Request unload_request(const std::string& name) {
  v1::Request request;
  request.mutable_unload()->set_name(name);
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

// Polls Status (every 10 ms, for up to 30 s) until model `name`'s status satisfies
// `condition`; false when it never does.
template <typename Condition>
bool wait_for_model_status(api::Client& client, const std::string& name, Condition condition) {
  for (int attempt = 0; attempt < 3000; ++attempt) {
    v1::Request request;
    request.mutable_status();
    const v1::Response status = call_once(client, request);
    for (const v1::ModelStatus& m : status.status().models()) {
      if (m.name() == name && condition(m)) return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

// Waits until model `name` has no running or waiting sequences and no KV in use.
inline bool wait_kv_released(api::Client& client, const std::string& name) {
  return wait_for_model_status(client, name, [](const v1::ModelStatus& m) {
    return m.running() == 0 && m.waiting() == 0 && m.kv_blocks_in_use() == 0;
  });
}

// The body of GET http://127.0.0.1:PORT/PATH (the daemon's metrics page).
inline std::string http_get(uint16_t port, const std::string& path) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0);
  const std::string request = "GET " + path + " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
  REQUIRE(::send(fd, request.data(), request.size(), 0) == static_cast<ssize_t>(request.size()));
  std::string response;
  char buffer[65536];
  ssize_t n;
  while ((n = ::recv(fd, buffer, sizeof(buffer), 0)) > 0)
    response.append(buffer, static_cast<size_t>(n));
  ::close(fd);
  const size_t body = response.find("\r\n\r\n");
  REQUIRE(body != std::string::npos);
  return response.substr(body + 4);
}

// The value of the sample `series` (name{labels} exactly as printed) on a metrics page; -1
// when it is not there.
inline double metric_value(const std::string& page, const std::string& series) {
  std::istringstream lines(page);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.rfind(series + " ", 0) == 0) return std::stod(line.substr(series.size() + 1));
  }
  return -1;
}

}  // namespace sparkd::testing
