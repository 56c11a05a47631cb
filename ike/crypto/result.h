// Result type of ike/crypto: a value or a typed error. Nothing in ike/crypto
// lets an exception escape; Botan exceptions are caught at the boundary and
// turned into a CryptoError naming what failed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include <botan/secmem.h>

#include "common/result.h"

namespace ike::crypto {

using Bytes = std::vector<uint8_t>;
// Key material: wiped when it goes out of scope.
using Secret = Botan::secure_vector<uint8_t>;
using ByteView = std::span<const uint8_t>;

enum class ErrorCode {
  kInvalidArgument,     // caller passed something inconsistent (our bug)
  kUnsupported,         // transform/group/method we do not implement
  kInvalidPublicValue,  // peer KE value rejected (RFC 6989)
  kIntegrityCheckFailed,  // ICV/MAC/AUTH mismatch
  kMalformed,           // peer bytes too short, bad padding, bad encoding
  kKeyLoadFailed,       // key/certificate could not be parsed or read
  kSignatureInvalid,    // signature did not verify
  kNoProposalChosen,    // nothing acceptable in the peer's SA payload
};

struct CryptoError {
  ErrorCode code = ErrorCode::kInvalidArgument;
  // Names the field/file and what was expected, for logs and operators.
  std::string message;
};

inline CryptoError MakeError(ErrorCode code, std::string message) {
  return CryptoError{code, std::move(message)};
}

template <class T>
using Result = btnsd::common::Result<T, CryptoError>;

struct Ok {};
using Status = Result<Ok>;

inline ByteView View(const Secret& s) { return ByteView(s.data(), s.size()); }
inline ByteView View(const Bytes& b) { return ByteView(b.data(), b.size()); }

// Constant-time equality for MACs, ICVs and AUTH values. Different lengths
// compare unequal (the length of a MAC is public).
bool ConstantTimeEqual(ByteView a, ByteView b);

}  // namespace ike::crypto
