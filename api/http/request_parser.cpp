#include "api/http/request_parser.h"

#include <llhttp.h>

#include <algorithm>
#include <cctype>

namespace sparkd::http {

const std::string* HttpRequest::header(std::string_view name) const {
  for (const auto& [key, value] : headers) {
    if (key == name) return &value;
  }
  return nullptr;
}

struct HttpRequestParser::State {
  explicit State(HttpLimits l) : limits(l) {
    llhttp_settings_init(&settings);
    settings.on_message_begin = on_message_begin;
    settings.on_method = on_method;
    settings.on_url = on_url;
    settings.on_header_field = on_header_field;
    settings.on_header_value = on_header_value;
    settings.on_headers_complete = on_headers_complete;
    settings.on_body = on_body;
    settings.on_message_complete = on_message_complete;
    llhttp_init(&parser, HTTP_REQUEST, &settings);
    parser.data = this;
  }

  static State& of(llhttp_t* parser) { return *static_cast<State*>(parser->data); }

  // Our own refusals, with the status to answer.
  int refuse(int status, std::string message) {
    error = HttpParseError{status, std::move(message)};
    return HPE_USER;
  }

  int count_header_bytes(size_t length) {
    header_bytes += length;
    if (header_bytes > limits.max_header_bytes) {
      return refuse(431, "the request line and headers exceed " +
                             std::to_string(limits.max_header_bytes) + " bytes");
    }
    return HPE_OK;
  }

  static int on_message_begin(llhttp_t* parser) {
    State& s = of(parser);
    s.current = HttpRequest{};
    s.header_bytes = 0;
    s.in_request = true;
    s.reading_value = false;
    return HPE_OK;
  }
  static int on_method(llhttp_t* parser, const char* at, size_t length) {
    State& s = of(parser);
    s.current.method.append(at, length);
    return s.count_header_bytes(length);
  }
  static int on_url(llhttp_t* parser, const char* at, size_t length) {
    State& s = of(parser);
    s.current.target.append(at, length);
    return s.count_header_bytes(length);
  }
  static int on_header_field(llhttp_t* parser, const char* at, size_t length) {
    State& s = of(parser);
    if (s.reading_value || s.current.headers.empty()) {
      s.current.headers.emplace_back();
      s.reading_value = false;
    }
    for (size_t i = 0; i < length; ++i) {
      s.current.headers.back().first +=
          static_cast<char>(std::tolower(static_cast<unsigned char>(at[i])));
    }
    return s.count_header_bytes(length);
  }
  static int on_header_value(llhttp_t* parser, const char* at, size_t length) {
    State& s = of(parser);
    s.reading_value = true;
    s.current.headers.back().second.append(at, length);
    return s.count_header_bytes(length);
  }
  static int on_headers_complete(llhttp_t* parser) {
    State& s = of(parser);
    HttpRequest& r = s.current;
    r.version_major = parser->http_major;
    r.version_minor = parser->http_minor;
    const size_t question = r.target.find('?');
    r.path = r.target.substr(0, question);
    r.query = question == std::string::npos ? "" : r.target.substr(question + 1);
    // Refused before the body is read, when its length is announced.
    if ((parser->flags & F_CONTENT_LENGTH) && parser->content_length > s.limits.max_body_bytes) {
      return s.refuse(413, "the body of " + std::to_string(parser->content_length) +
                               " bytes exceeds " + std::to_string(s.limits.max_body_bytes));
    }
    const std::string* expect = r.header("expect");
    std::string expectation = expect != nullptr ? *expect : "";
    std::transform(expectation.begin(), expectation.end(), expectation.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    s.expect_continue = expectation == "100-continue" && r.version_minor >= 1;
    return HPE_OK;
  }
  static int on_body(llhttp_t* parser, const char* at, size_t length) {
    State& s = of(parser);
    if (s.current.body.size() + length > s.limits.max_body_bytes) {
      return s.refuse(413,
                      "the body exceeds " + std::to_string(s.limits.max_body_bytes) + " bytes");
    }
    s.current.body.append(at, length);
    return HPE_OK;
  }
  static int on_message_complete(llhttp_t* parser) {
    State& s = of(parser);
    s.current.keep_alive = llhttp_should_keep_alive(parser) != 0;
    s.completed->push_back(std::move(s.current));
    s.current = HttpRequest{};
    s.in_request = false;
    s.expect_continue = false;  // the body came anyway
    return HPE_OK;
  }

  HttpLimits limits;
  llhttp_settings_t settings{};
  llhttp_t parser{};
  HttpRequest current;
  size_t header_bytes = 0;
  bool reading_value = false;
  bool in_request = false;
  bool expect_continue = false;  // the request in progress waits for "100 Continue"
  std::vector<HttpRequest>* completed = nullptr;
  std::optional<HttpParseError> error;
};

HttpRequestParser::HttpRequestParser(HttpLimits limits) : state_(std::make_unique<State>(limits)) {}

HttpRequestParser::~HttpRequestParser() = default;

bool HttpRequestParser::take_expect_continue() {
  const bool waiting = state_->in_request && state_->expect_continue;
  state_->expect_continue = false;
  return waiting;
}

std::optional<HttpParseError> HttpRequestParser::feed(std::string_view bytes,
                                                      std::vector<HttpRequest>& out) {
  State& s = *state_;
  if (s.error) return s.error;
  s.completed = &out;
  const char* data = bytes.data();
  size_t length = bytes.size();
  while (true) {
    const llhttp_errno_t result = llhttp_execute(&s.parser, data, length);
    if (result == HPE_OK) break;
    if (result == HPE_PAUSED_UPGRADE) {
      // An Upgrade (h2c, websocket) we do not take: the request is answered as HTTP/1.1, which
      // RFC 9110 allows, and parsing goes on after it.
      const char* stop = llhttp_get_error_pos(&s.parser);
      llhttp_resume_after_upgrade(&s.parser);
      length -= static_cast<size_t>(stop - data);
      data = stop;
      if (length == 0) break;
      continue;
    }
    if (!s.error) {
      const char* reason = llhttp_get_error_reason(&s.parser);
      s.error = HttpParseError{400, std::string("malformed HTTP request: ") +
                                        (reason != nullptr ? reason : llhttp_errno_name(result))};
    }
    break;
  }
  s.completed = nullptr;
  return s.error;
}

bool HttpRequestParser::in_request() const {
  return state_->in_request;
}

}  // namespace sparkd::http
