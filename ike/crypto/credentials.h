// Private keys, public keys (SubjectPublicKeyInfo, also the RFC 7670 raw
// public key encoding) and X.509 certificates, parsed from bytes. Errors
// name the source (a file name or a description given by the caller).
// Reading files lives in daemon/credential_files.h so ike/ stays I/O-free.
#pragma once

#include <array>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "ike/crypto/random.h"
#include "ike/crypto/result.h"

namespace Botan {
class Private_Key;
class Public_Key;
class X509_Certificate;
}  // namespace Botan

namespace ike::crypto {

enum class KeyType { kRsa, kEcdsaP256, kEcdsaP384, kEcdsaP521, kEd25519, kOther };

const char* KeyTypeName(KeyType type);

class PublicKey {
 public:
  // DER SubjectPublicKeyInfo, or PEM "PUBLIC KEY".
  static Result<PublicKey> FromSpki(ByteView der_or_pem,
                                    std::string_view source);

  KeyType type() const { return type_; }
  // Canonical DER SubjectPublicKeyInfo (what RFC 7670 puts in CERT).
  const Bytes& spki_der() const { return spki_der_; }
  // SHA-256 over the SPKI DER: a stable identity for a bare key (BTNS).
  std::array<uint8_t, 32> Fingerprint() const;
  std::string FingerprintHex() const;

  const Botan::Public_Key& botan() const { return *key_; }

 private:
  std::shared_ptr<const Botan::Public_Key> key_;
  Bytes spki_der_;
  KeyType type_ = KeyType::kOther;
  friend class PrivateKey;
  friend class Certificate;
  static Result<PublicKey> FromBotan(std::shared_ptr<const Botan::Public_Key>);
};

class PrivateKey {
 public:
  // PKCS#8 (PEM "PRIVATE KEY" or DER), PKCS#1 "RSA PRIVATE KEY" PEM, or
  // SEC1 "EC PRIVATE KEY" PEM with a named curve. Encrypted keys: no.
  static Result<PrivateKey> FromBytes(ByteView pem_or_der,
                                      std::string_view source);

  KeyType type() const { return type_; }
  const PublicKey& public_key() const { return public_; }
  const Botan::Private_Key& botan() const { return *key_; }

 private:
  std::shared_ptr<const Botan::Private_Key> key_;
  PublicKey public_;
  KeyType type_ = KeyType::kOther;
};

class Certificate {
 public:
  // One or more certificates: concatenated PEM blocks or one DER
  // certificate. The order is kept (end entity first, by convention).
  static Result<std::vector<Certificate>> ChainFromBytes(
      ByteView pem_or_der, std::string_view source);

  const Bytes& der() const { return der_; }
  const PublicKey& public_key() const { return public_; }
  std::string subject() const;
  // DER of the subject Name, for ID_DER_ASN1_DN comparison.
  Bytes subject_der() const;
  const Botan::X509_Certificate& botan() const { return *cert_; }

 private:
  std::shared_ptr<const Botan::X509_Certificate> cert_;
  Bytes der_;
  PublicKey public_;
};

}  // namespace ike::crypto
