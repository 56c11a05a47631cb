// Result type of the wire codec: a value or a typed error. The decoder never
// throws; every failure carries the notify type a responder would answer with.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "common/result.h"
#include "ike/wire/constants.h"

namespace ike::wire {

struct WireError {
  // What a responder would send back (RFC 7296 section 2.21): INVALID_SYNTAX,
  // UNSUPPORTED_CRITICAL_PAYLOAD or INVALID_MAJOR_VERSION.
  NotifyType notify = NotifyType::kInvalidSyntax;
  // Byte offset (from the start of the decoded buffer) where the problem is.
  size_t offset = 0;
  // For UNSUPPORTED_CRITICAL_PAYLOAD: the offending payload type, which is
  // the one octet of Notification Data the responder must send.
  uint8_t unsupported_payload_type = 0;
  // Names the payload/field and what was expected, for logs and operators.
  std::string message;
};

template <class T>
using Result = btnsd::common::Result<T, WireError>;

}  // namespace ike::wire
