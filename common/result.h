// A value or a typed error, the one result type of btnsd's libraries. Each
// layer names it with its own error type (ike::wire::Result<T> carries a
// WireError, ike::crypto::Result<T> a CryptoError, kernel_glue::Result<T> a
// KernelError). Kept minimal because std::expected is C++23. No I/O, no
// dependencies beyond the standard library: ike/ builds on it.
#pragma once

#include <optional>
#include <utility>
#include <variant>

namespace btnsd::common {

template <class T, class E>
class [[nodiscard]] Result {
 public:
  Result(T value) : state_(std::in_place_index<0>, std::move(value)) {}  // NOLINT
  Result(E error) : state_(std::in_place_index<1>, std::move(error)) {}  // NOLINT

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
  const E& error() const { return std::get<1>(state_); }

 private:
  std::variant<T, E> state_;
};

// Success, or an error: a Result without a value.
template <class E>
class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(E error) : error_(std::move(error)) {}  // NOLINT
  static Status Ok() { return Status(); }

  bool ok() const { return !error_.has_value(); }
  explicit operator bool() const { return ok(); }

  // Precondition: !ok().
  const E& error() const { return *error_; }

 private:
  std::optional<E> error_;
};

}  // namespace btnsd::common
