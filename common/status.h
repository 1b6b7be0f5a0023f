// Errors as values at boundaries: a gRPC-style code and a message a person can act on.
#pragma once

#include <string>
#include <utility>
#include <variant>

namespace sparkd {

enum class StatusCode {
  kOk = 0,
  kCancelled = 1,
  kInvalidArgument = 3,
  kDeadlineExceeded = 4,
  kNotFound = 5,
  kAlreadyExists = 6,
  kPermissionDenied = 7,
  kResourceExhausted = 8,
  kFailedPrecondition = 9,
  kUnimplemented = 12,
  kInternal = 13,
  kUnavailable = 14,
  kDataLoss = 15,
};

const char* status_code_name(StatusCode code);

class Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status ok() { return {}; }
  bool is_ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // "INVALID_ARGUMENT: message", for logs and command-line tools.
  std::string to_string() const;

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

// A value or the Status that explains why there is none.
template <typename T>
class Expected {
 public:
  Expected(T value) : state_(std::move(value)) {}       // NOLINT: implicit by design
  Expected(Status error) : state_(std::move(error)) {}  // NOLINT: implicit by design

  bool has_value() const { return std::holds_alternative<T>(state_); }
  explicit operator bool() const { return has_value(); }
  T& value() & { return std::get<T>(state_); }
  const T& value() const& { return std::get<T>(state_); }
  T&& value() && { return std::get<T>(std::move(state_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  // Only meaningful when !has_value().
  const Status& status() const { return std::get<Status>(state_); }

 private:
  std::variant<T, Status> state_;
};

}  // namespace sparkd

// Early returns for functions that return Status or Expected<T>.
#define SPARKD_RETURN_IF_ERROR(expr)                    \
  do {                                                  \
    ::sparkd::Status sparkd_status_ = (expr);           \
    if (!sparkd_status_.is_ok()) return sparkd_status_; \
  } while (0)

#define SPARKD_CONCAT_INNER_(a, b) a##b
#define SPARKD_CONCAT_(a, b) SPARKD_CONCAT_INNER_(a, b)
// `lhs = value of expr`, or return its Status. lhs may declare a variable: `auto x`.
#define SPARKD_ASSIGN_OR_RETURN(lhs, expr) \
  SPARKD_ASSIGN_OR_RETURN_IMPL_(SPARKD_CONCAT_(sparkd_expected_, __LINE__), lhs, expr)
#define SPARKD_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                  \
  if (!tmp.has_value()) return tmp.status();          \
  lhs = std::move(tmp).value()
