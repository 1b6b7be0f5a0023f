// HTTP/1.1 request parsing (api/http/request_parser.*): what a server reads off a connection,
// in whole or in pieces, pipelined, chunked, and what it must refuse with which status.
#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "api/http/request_parser.h"

namespace {

using sparkd::http::HttpLimits;
using sparkd::http::HttpRequest;
using sparkd::http::HttpRequestParser;

const std::string kPost =
    "POST /v1/chat/completions?stream=1 HTTP/1.1\r\n"
    "Host: localhost\r\nContent-Type: application/json\r\nX-Dup: a\r\nX-Dup: b\r\n"
    "Content-Length: 13\r\n\r\n{\"model\":\"m\"}";

}  // namespace

TEST_CASE("http parser: a request in one piece or byte by byte is the same request", "[http]") {
  for (const bool byte_by_byte : {false, true}) {
    INFO("byte by byte: " << byte_by_byte);
    HttpRequestParser parser;
    std::vector<HttpRequest> requests;
    if (byte_by_byte) {
      for (size_t i = 0; i < kPost.size(); ++i) {
        CHECK_FALSE(parser.feed(kPost.substr(i, 1), requests));
        CHECK(parser.in_request() == (i + 1 < kPost.size()));
      }
    } else {
      CHECK_FALSE(parser.feed(kPost, requests));
    }
    REQUIRE(requests.size() == 1);
    const HttpRequest& r = requests[0];
    CHECK(r.method == "POST");
    CHECK(r.target == "/v1/chat/completions?stream=1");
    CHECK(r.path == "/v1/chat/completions");
    CHECK(r.query == "stream=1");
    CHECK(r.version_minor == 1);
    REQUIRE(r.header("content-type") != nullptr);
    CHECK(*r.header("content-type") == "application/json");
    CHECK(*r.header("x-dup") == "a");  // the first of repeated headers
    CHECK(r.headers.size() == 5);
    CHECK(r.body == "{\"model\":\"m\"}");
    CHECK(r.keep_alive);
    CHECK_FALSE(parser.in_request());
  }
}

TEST_CASE("http parser: pipelined requests, chunked bodies, keep-alive rules", "[http]") {
  HttpRequestParser parser;
  std::vector<HttpRequest> requests;
  const std::string stream =
      "GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n"
      "POST /api/chat HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
      "5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\n\r\n"
      "GET /api/tags HTTP/1.1\r\nConnection: close\r\n\r\n";
  CHECK_FALSE(parser.feed(stream, requests));
  REQUIRE(requests.size() == 3);
  CHECK(requests[0].path == "/v1/models");
  CHECK(requests[0].body.empty());
  CHECK(requests[1].body == "hello, world");
  CHECK(requests[1].keep_alive);
  CHECK_FALSE(requests[2].keep_alive);

  HttpRequestParser old;
  requests.clear();
  CHECK_FALSE(old.feed("GET / HTTP/1.0\r\n\r\n", requests));
  REQUIRE(requests.size() == 1);
  CHECK_FALSE(requests[0].keep_alive);  // HTTP/1.0 closes unless asked to keep alive

  // An Upgrade we do not take is answered as HTTP/1.1; the next request still parses.
  HttpRequestParser upgrade;
  requests.clear();
  CHECK_FALSE(
      upgrade.feed("GET / HTTP/1.1\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
                   "HTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\nGET /v1/models HTTP/1.1\r\n\r\n",
                   requests));
  REQUIRE(requests.size() == 2);
  CHECK(requests[1].path == "/v1/models");
}

TEST_CASE("http parser: refusals carry the status to answer, and stay", "[http]") {
  HttpLimits limits;
  limits.max_header_bytes = 256;
  limits.max_body_bytes = 16;
  std::vector<HttpRequest> requests;

  HttpRequestParser garbage(limits);
  auto error = garbage.feed("HELLO WORLD\r\n\r\n", requests);
  REQUIRE(error);
  CHECK(error->status == 400);
  CHECK_THAT(error->message, Catch::StartsWith("malformed HTTP request: "));
  // It stays failed: the connection is answered and closed.
  CHECK(garbage.feed("GET / HTTP/1.1\r\n\r\n", requests));
  CHECK(requests.empty());

  HttpRequestParser big_headers(limits);
  error = big_headers.feed("GET / HTTP/1.1\r\nX: " + std::string(300, 'a') + "\r\n\r\n", requests);
  REQUIRE(error);
  CHECK(error->status == 431);

  // An announced body too large is refused before it is sent.
  HttpRequestParser big_body(limits);
  error = big_body.feed("POST / HTTP/1.1\r\nContent-Length: 17\r\n\r\n", requests);
  REQUIRE(error);
  CHECK(error->status == 413);
  CHECK(error->message == "the body of 17 bytes exceeds 16");
  HttpRequestParser big_chunks(limits);
  error = big_chunks.feed(
      "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n0123456789abcdef\r\n1\r\nx\r\n",
      requests);
  REQUIRE(error);
  CHECK(error->status == 413);

  // Both lengths at once is how requests are smuggled past proxies.
  HttpRequestParser smuggled(limits);
  error = smuggled.feed(
      "POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
      requests);
  REQUIRE(error);
  CHECK(error->status == 400);
  HttpRequestParser bad_length(limits);
  error = bad_length.feed("POST / HTTP/1.1\r\nContent-Length: 1x\r\n\r\n", requests);
  REQUIRE(error);
  CHECK(error->status == 400);
  CHECK(requests.empty());
}

TEST_CASE("http parser: Expect 100-continue is reported once, while the body is awaited",
          "[http]") {
  HttpRequestParser parser;
  std::vector<HttpRequest> requests;
  CHECK_FALSE(
      parser.feed("POST /v1/embeddings HTTP/1.1\r\nHost: x\r\n"
                  "Expect: 100-Continue\r\nContent-Length: 2\r\n\r\n",
                  requests));
  CHECK(parser.take_expect_continue());
  CHECK_FALSE(parser.take_expect_continue());  // once
  CHECK_FALSE(parser.feed("{}", requests));
  REQUIRE(requests.size() == 1);
  // Head and body in one piece: the body is here, nothing to wait for.
  CHECK_FALSE(parser.feed("POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n{}",
                          requests));
  CHECK_FALSE(parser.take_expect_continue());
  // HTTP/1.0 has no 100 Continue.
  CHECK_FALSE(parser.feed("POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n",
                          requests));
  CHECK_FALSE(parser.take_expect_continue());
}
