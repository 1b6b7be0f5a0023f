// sparkd's StatusCode and the wire's sparkd.v1.Code (gRPC numbering), and error responses.
#pragma once

#include <cstdint>

#include "api/sparkd.pb.h"
#include "common/status.h"

namespace sparkd::api {

// Every StatusCode has the gRPC code of the same name.
v1::Code to_proto_code(StatusCode code);
// The inverse for every code to_proto_code produces. The gRPC codes sparkd never sends map
// to the nearest StatusCode: UNKNOWN -> INTERNAL,
// ABORTED -> UNAVAILABLE (both say "try again"), OUT_OF_RANGE -> INVALID_ARGUMENT,
// UNAUTHENTICATED -> PERMISSION_DENIED; a number outside the enum (proto3 enums are open)
// -> INTERNAL.
StatusCode from_proto_code(v1::Code code);

// A final response with `error` set (code + message) for request `id`. An OK status has no
// error to report; it becomes INTERNAL with a message saying so, because a client must never
// receive a response that is neither a result nor an error.
v1::Response error_response(uint64_t id, const Status& status);

// The Status an error response carries (its code mapped back, and its message).
Status status_of(const v1::Error& error);

}  // namespace sparkd::api
