// Key exchange (the KE payload): MODP 14/15/16 (RFC 3526), ECP 19/20/21
// (RFC 5903), Curve25519 (RFC 8031). Peer values are validated per RFC 6989
// before any computation.
#pragma once

#include <memory>

#include "ike/crypto/random.h"
#include "ike/crypto/result.h"
#include "ike/crypto/transforms.h"

namespace ike::crypto {

class KeyExchange {
 public:
  virtual ~KeyExchange() = default;

  // A fresh ephemeral key pair. `random` must outlive the object (MODP and
  // ECP agreement use it for blinding).
  static Result<std::unique_ptr<KeyExchange>> Generate(KeGroup group,
                                                       RandomSource& random);
  // A key pair from a known private value (big-endian exponent/scalar for
  // MODP/ECP, the 32-byte scalar for X25519), for known-answer tests.
  static Result<std::unique_ptr<KeyExchange>> FromPrivateValue(
      KeGroup group, ByteView private_value, RandomSource& random);

  virtual const KeGroupInfo& info() const = 0;
  KeGroup group() const { return info().id; }
  // The Key Exchange Data of our KE payload.
  virtual const Bytes& public_value() const = 0;
  // g^ir: fixed length (modulus length for MODP, x coordinate for ECP).
  virtual Result<Secret> ComputeSharedSecret(ByteView peer_value) const = 0;
};

// RFC 6989 checks on a peer's Key Exchange Data: exact length; MODP
// 1 < y < p-1; ECP coordinates below p, point on the curve (and therefore
// not the point at infinity). X25519 has no invalid encodings; its all-zero
// result is rejected by ComputeSharedSecret.
Status ValidatePeerKeValue(KeGroup group, ByteView peer_value);

}  // namespace ike::crypto
