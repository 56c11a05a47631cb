// IKE SA and CHILD SA key derivation (RFC 7296 sections 2.13, 2.14, 2.17,
// 2.18) and the split of CHILD SA KEYMAT into the keys the kernel needs.
#pragma once

#include <string>

#include "ike/crypto/prf.h"
#include "ike/crypto/result.h"
#include "ike/crypto/transforms.h"

namespace ike::crypto {

// SKEYSEED = prf(Ni | Nr, g^ir). (The half-nonce rule for fixed-key PRFs
// does not apply: only HMAC PRFs are implemented.)
Result<Secret> ComputeSkeyseed(PrfId prf, ByteView nonce_i, ByteView nonce_r,
                               ByteView shared_secret);

// IKE SA rekey (2.18): SKEYSEED = prf(SK_d (old), g^ir (new) | Ni | Nr),
// computed with the PRF of the old IKE SA.
Result<Secret> ComputeRekeySkeyseed(PrfId old_prf, ByteView old_sk_d,
                                    ByteView new_shared_secret,
                                    ByteView nonce_i, ByteView nonce_r);

// The seven IKE SA keys. SK_e* include the AEAD salt at their end
// (RFC 5282 section 7.1, RFC 7634 section 3). SK_a* are empty for AEAD.
struct IkeSaKeys {
  Secret sk_d, sk_ai, sk_ar, sk_ei, sk_er, sk_pi, sk_pr;
};

struct IkeKeySizes {
  size_t prf_key = 0;    // SK_d, SK_pi, SK_pr
  size_t integ_key = 0;  // SK_ai, SK_ar
  size_t encr_key = 0;   // SK_ei, SK_er (with salt)
  size_t total() const { return 3 * prf_key + 2 * integ_key + 2 * encr_key; }
};

Result<IkeKeySizes> IkeKeySizesFor(const TransformSet& set);

// {SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr}
//   = prf+(SKEYSEED, Ni | Nr | SPIi | SPIr)
Result<IkeSaKeys> DeriveIkeSaKeys(const TransformSet& set, ByteView skeyseed,
                                  ByteView nonce_i, ByteView nonce_r,
                                  ByteView spi_i, ByteView spi_r);

// CHILD SA KEYMAT (2.17): prf+(SK_d, Ni | Nr) without a new key exchange,
// prf+(SK_d, g^ir (new) | Ni | Nr) with one (pass an empty view otherwise).
Result<Secret> DeriveChildKeymat(PrfId prf, ByteView sk_d,
                                 ByteView new_shared_secret, ByteView nonce_i,
                                 ByteView nonce_r, size_t length);

// What the kernel needs for one ESP SA direction.
struct EspDirectionKeys {
  Secret encryption_key;  // for AEAD: key || 4-byte salt, as XFRM wants it
  Secret integrity_key;   // empty for AEAD
};

struct EspAlgorithms {
  bool aead = false;
  std::string encryption_name;  // "cbc(aes)", "rfc4106(gcm(aes))", ...
  std::string integrity_name;   // "hmac(sha256)"; empty for AEAD
  size_t encryption_key_bytes = 0;  // including salt
  size_t integrity_key_bytes = 0;
  size_t icv_bits = 0;  // AEAD tag or truncated HMAC length
  size_t keymat_bytes() const {
    return 2 * (encryption_key_bytes + integrity_key_bytes);
  }
};

Result<EspAlgorithms> EspAlgorithmsFor(const TransformSet& set);

struct EspKeys {
  EspAlgorithms algorithms;
  EspDirectionKeys initiator_to_responder;
  EspDirectionKeys responder_to_initiator;
};

// Splits KEYMAT per 2.17: the initiator-to-responder SA's keys first, then
// the other direction; within each, encryption key before integrity key.
Result<EspKeys> SplitEspKeymat(const TransformSet& set, ByteView keymat);

}  // namespace ike::crypto
