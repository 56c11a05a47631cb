// The negotiated PRF and prf+ (RFC 7296 section 2.13).
#pragma once

#include <memory>

#include <botan/mac.h>

#include "ike/crypto/result.h"
#include "ike/crypto/transforms.h"

namespace ike::crypto {

// Holds one Botan MAC object; not thread-safe (one per IKE SA / thread).
class Prf {
 public:
  static Result<Prf> Create(PrfId id);

  Prf(Prf&&) noexcept;
  Prf& operator=(Prf&&) noexcept;
  ~Prf();

  const PrfInfo& info() const { return *info_; }
  size_t output_size() const { return info_->output_bytes; }

  // prf(key, data). HMAC accepts any key length.
  Secret Compute(ByteView key, ByteView data) const;
  // prf(key, a | b | ...), without concatenating first.
  Secret Compute(ByteView key, std::initializer_list<ByteView> data) const;
  // The same into `out` (output_size() bytes), without allocating.
  void ComputeInto(ByteView key, std::initializer_list<ByteView> data,
                   uint8_t* out) const;

  // prf+(key, seed) truncated to length bytes:
  //   T1 = prf(K, S | 0x01), Tn = prf(K, Tn-1 | S | n).
  // The counter is one octet, so at most 255 * output_size() bytes.
  Result<Secret> Expand(ByteView key, ByteView seed, size_t length) const;

 private:
  Prf(const PrfInfo* info,
      std::unique_ptr<Botan::MessageAuthenticationCode> mac);
  void Release();  // hands the HMAC object to this thread's spares
  const PrfInfo* info_;  // a static LookupPrf entry
  std::unique_ptr<Botan::MessageAuthenticationCode> mac_;
};

}  // namespace ike::crypto
