#include "api/protocol/status_codes.h"

namespace sparkd::api {

v1::Code to_proto_code(StatusCode code) {
  switch (code) {
    case StatusCode::kOk:
      return v1::OK;
    case StatusCode::kCancelled:
      return v1::CANCELLED;
    case StatusCode::kInvalidArgument:
      return v1::INVALID_ARGUMENT;
    case StatusCode::kDeadlineExceeded:
      return v1::DEADLINE_EXCEEDED;
    case StatusCode::kNotFound:
      return v1::NOT_FOUND;
    case StatusCode::kAlreadyExists:
      return v1::ALREADY_EXISTS;
    case StatusCode::kPermissionDenied:
      return v1::PERMISSION_DENIED;
    case StatusCode::kResourceExhausted:
      return v1::RESOURCE_EXHAUSTED;
    case StatusCode::kFailedPrecondition:
      return v1::FAILED_PRECONDITION;
    case StatusCode::kUnimplemented:
      return v1::UNIMPLEMENTED;
    case StatusCode::kInternal:
      return v1::INTERNAL;
    case StatusCode::kUnavailable:
      return v1::UNAVAILABLE;
    case StatusCode::kDataLoss:
      return v1::DATA_LOSS;
  }
  return v1::UNKNOWN;  // not a StatusCode enumerator (a cast from a bad integer)
}

StatusCode from_proto_code(v1::Code code) {
  switch (code) {
    case v1::OK:
      return StatusCode::kOk;
    case v1::CANCELLED:
      return StatusCode::kCancelled;
    case v1::UNKNOWN:
      return StatusCode::kInternal;
    case v1::INVALID_ARGUMENT:
      return StatusCode::kInvalidArgument;
    case v1::DEADLINE_EXCEEDED:
      return StatusCode::kDeadlineExceeded;
    case v1::NOT_FOUND:
      return StatusCode::kNotFound;
    case v1::ALREADY_EXISTS:
      return StatusCode::kAlreadyExists;
    case v1::PERMISSION_DENIED:
      return StatusCode::kPermissionDenied;
    case v1::RESOURCE_EXHAUSTED:
      return StatusCode::kResourceExhausted;
    case v1::FAILED_PRECONDITION:
      return StatusCode::kFailedPrecondition;
    case v1::ABORTED:
      return StatusCode::kUnavailable;
    case v1::OUT_OF_RANGE:
      return StatusCode::kInvalidArgument;
    case v1::UNIMPLEMENTED:
      return StatusCode::kUnimplemented;
    case v1::INTERNAL:
      return StatusCode::kInternal;
    case v1::UNAVAILABLE:
      return StatusCode::kUnavailable;
    case v1::DATA_LOSS:
      return StatusCode::kDataLoss;
    case v1::UNAUTHENTICATED:
      return StatusCode::kPermissionDenied;
    default:  // protoc's INT_MIN/INT_MAX sentinels and numbers from a newer schema
      return StatusCode::kInternal;
  }
}

Status status_of(const v1::Error& error) {
  return Status(from_proto_code(error.code()), error.message());
}

v1::Response error_response(uint64_t id, const Status& status) {
  v1::Response response;
  response.set_id(id);
  response.set_final(true);
  v1::Error* error = response.mutable_error();
  if (status.is_ok()) {
    error->set_code(v1::INTERNAL);
    error->set_message(
        "internal error: the daemon built an error response from an OK status (a bug in "
        "sparkd; please report it with the request that caused it)");
    return response;
  }
  error->set_code(to_proto_code(status.code()));
  error->set_message(status.message());
  return response;
}

}  // namespace sparkd::api
