// Arbitrary bytes as what a client sends on an HTTP connection, fed to the request parser in
// pieces (the first byte picks where the input is cut, as reads cut it): each call returns
// requests or an error, never crashes, and every request it returns respects the limits.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>
#include <vector>

#include "api/http/request_parser.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const size_t piece = size_t{data[0]} + 1;
  const std::string_view bytes(reinterpret_cast<const char*>(data) + 1, size - 1);
  sparkd::http::HttpLimits limits;
  limits.max_header_bytes = 4096;
  limits.max_body_bytes = 8192;
  sparkd::http::HttpRequestParser parser(limits);
  std::vector<sparkd::http::HttpRequest> requests;
  for (size_t at = 0; at < bytes.size(); at += piece) {
    if (parser.feed(bytes.substr(at, piece), requests)) break;
  }
  for (const auto& request : requests) {
    if (request.body.size() > limits.max_body_bytes) std::abort();
    if (request.method.size() + request.target.size() > limits.max_header_bytes) std::abort();
    if (request.path.size() > request.target.size()) std::abort();
  }
  return 0;
}
