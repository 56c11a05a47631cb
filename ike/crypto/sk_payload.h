// Protection of the Encrypted payload (SK, RFC 7296 section 3.14): AEAD
// per RFC 5282 (AES-GCM) and RFC 7634 (ChaCha20-Poly1305), and AES-CBC with
// an HMAC in encrypt-then-MAC order.
//
// Body layout: IV || Encrypt(inner payloads || padding || pad length) || ICV
//
// The caller builds the message prefix (IKE header, any unencrypted
// payloads, the SK generic payload header) with the final Length fields
// (use BodyLength() to compute them), then appends Protect()'s output. The
// prefix is the AEAD associated data; for CBC the ICV covers prefix || IV ||
// ciphertext.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "ike/crypto/random.h"
#include "ike/crypto/result.h"
#include "ike/crypto/transforms.h"

namespace Botan {
class AEAD_Mode;
class BlockCipher;
class Cipher_Mode;
class MessageAuthenticationCode;
}  // namespace Botan

namespace ike::crypto {

struct SkProtectOptions {
  // Explicit IV, for known-answer tests only (reusing an IV with the same
  // key breaks AEAD security). When absent: for AEAD a 64-bit counter that
  // starts at a random value (RFC 5282 only needs uniqueness per key); for
  // CBC the encryption of such a counter under the cipher key, the
  // unpredictable IV of NIST SP 800-38A Appendix C.
  std::optional<Bytes> iv;
  // Padding bytes (their count must align the plaintext to the block size);
  // the minimum number of zero bytes when absent.
  std::optional<Bytes> padding;
};

struct SkPlaintext {
  Bytes payloads;  // the inner payloads, starting at the first inner one
  Bytes padding;   // as received (its content is not checked, 3.14)
};

class SkCipher {
 public:
  // encr_key is SK_e (key || salt for AEAD); integ_key is SK_a (empty for
  // AEAD). One SkCipher per direction.
  static Result<SkCipher> Create(const TransformSet& set, ByteView encr_key,
                                 ByteView integ_key);

  SkCipher(SkCipher&&) noexcept;
  SkCipher& operator=(SkCipher&&) noexcept;
  ~SkCipher();

  size_t iv_size() const { return info_->iv_bytes; }
  size_t icv_size() const { return icv_bytes_; }
  size_t block_size() const { return info_->block_bytes; }

  // Length of the SK payload body for `plaintext_length` bytes of inner
  // payloads with minimal padding (or `padding_length` bytes if given).
  size_t BodyLength(size_t plaintext_length,
                    std::optional<size_t> padding_length = std::nullopt) const;

  // Not const: advances the IV counter. `random` is used once per SkCipher,
  // to pick the counter's starting point.
  Result<Bytes> Protect(ByteView message_prefix, ByteView plaintext,
                        RandomSource& random,
                        const SkProtectOptions& options = {});

  // Checks the ICV (constant time) before anything else, then the padding.
  Result<SkPlaintext> Unprotect(ByteView message_prefix, ByteView body) const;

 private:
  SkCipher();
  void Release();  // hands the Botan objects to this thread's spares
  void KeyForProtect();
  void KeyForUnprotect() const;
  size_t MinimalPadding(size_t plaintext_length) const;
  Result<Bytes> NextIv(RandomSource& random);

  const EncrInfo* info_ = nullptr;  // a static LookupEncr entry
  size_t icv_bytes_ = 0;
  Secret salt_;
  std::unique_ptr<Botan::AEAD_Mode> aead_enc_, aead_dec_;
  std::unique_ptr<Botan::Cipher_Mode> cbc_enc_, cbc_dec_;
  std::unique_ptr<Botan::MessageAuthenticationCode> mac_;
  const IntegInfo* integ_ = nullptr;  // with mac_
  std::unique_ptr<Botan::BlockCipher> iv_cipher_;  // CBC IV generation
  Secret key_;  // SK_e without the salt
  bool protect_keyed_ = false;
  mutable bool unprotect_keyed_ = false;
  uint64_t iv_counter_ = 0;
  uint64_t iv_budget_ = 0;  // IVs left before the counter would wrap
  bool iv_seeded_ = false;
};

// Locates the SK payload in a complete IKE message by walking the generic
// payload headers after the 28-byte IKE header. Returns the offset of the
// SK body (just after its 4-byte generic header) and its length.
struct SkLocation {
  size_t body_offset = 0;
  size_t body_length = 0;
  uint8_t first_inner_payload = 0;
};
Result<SkLocation> FindSkPayload(ByteView message);

}  // namespace ike::crypto
