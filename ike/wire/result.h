// Result type of the wire codec: a value or a typed error. The decoder never
// throws; every failure carries the notify type a responder would answer with.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <variant>

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
class [[nodiscard]] Result {
 public:
  Result(T value) : state_(std::in_place_index<0>, std::move(value)) {}
  Result(WireError error) : state_(std::in_place_index<1>, std::move(error)) {}

  bool ok() const { return state_.index() == 0; }
  explicit operator bool() const { return ok(); }

  // Precondition: ok().
  T& value() & { return std::get<0>(state_); }
  const T& value() const& { return std::get<0>(state_); }
  T&& value() && { return std::get<0>(std::move(state_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

  // Precondition: !ok().
  const WireError& error() const { return std::get<1>(state_); }

 private:
  std::variant<T, WireError> state_;
};

}  // namespace ike::wire
