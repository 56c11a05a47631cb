#include "ike/crypto/credentials.h"

#include <botan/ber_dec.h>
#include <botan/data_src.h>
#include <botan/rng.h>
#include <botan/ec_group.h>
#include <botan/ecdsa.h>
#include <botan/hash.h>
#include <botan/hex.h>
#include <botan/pem.h>
#include <botan/pkcs8.h>
#include <botan/rsa.h>
#include <botan/x509_key.h>
#include <botan/x509cert.h>
#include <botan/x509_dn.h>

namespace ike::crypto {
namespace {

CryptoError LoadError(std::string_view source, const std::string& what) {
  return MakeError(ErrorCode::kKeyLoadFailed,
                   std::string(source) + ": " + what);
}

KeyType Classify(const Botan::Public_Key& key) {
  const std::string algo = key.algo_name();
  if (algo == "RSA") return KeyType::kRsa;
  if (algo == "Ed25519") return KeyType::kEd25519;
  if (algo == "ECDSA") {
    const auto& ec = dynamic_cast<const Botan::EC_PublicKey&>(key);
    const Botan::OID oid = ec.domain().get_curve_oid();
    if (oid == Botan::OID::from_string("secp256r1")) return KeyType::kEcdsaP256;
    if (oid == Botan::OID::from_string("secp384r1")) return KeyType::kEcdsaP384;
    if (oid == Botan::OID::from_string("secp521r1")) return KeyType::kEcdsaP521;
  }
  return KeyType::kOther;
}

bool LooksLikePem(ByteView data, const char* label) {
  std::string_view text(reinterpret_cast<const char*>(data.data()),
                        data.size());
  return text.find(std::string("-----BEGIN ") + label + "-----") !=
         std::string_view::npos;
}

}  // namespace

const char* KeyTypeName(KeyType type) {
  switch (type) {
    case KeyType::kRsa: return "RSA";
    case KeyType::kEcdsaP256: return "ECDSA P-256";
    case KeyType::kEcdsaP384: return "ECDSA P-384";
    case KeyType::kEcdsaP521: return "ECDSA P-521";
    case KeyType::kEd25519: return "Ed25519";
    case KeyType::kOther: return "unsupported key type";
  }
  return "unknown";
}

Result<PublicKey> PublicKey::FromBotan(
    std::shared_ptr<const Botan::Public_Key> key) {
  PublicKey pk;
  pk.spki_der_ = key->subject_public_key();
  pk.type_ = Classify(*key);
  pk.key_ = std::move(key);
  return pk;
}

Result<PublicKey> PublicKey::FromSpki(ByteView data, std::string_view source) {
  if (data.empty()) return LoadError(source, "empty public key");
  try {
    Botan::DataSource_Memory src(data.data(), data.size());
    std::shared_ptr<const Botan::Public_Key> key(Botan::X509::load_key(src));
    if (!key) return LoadError(source, "not a SubjectPublicKeyInfo");
    auto pk = FromBotan(std::move(key));
    if (pk && pk->type() == KeyType::kOther) {
      return LoadError(source, "public key algorithm " +
                                   pk->botan().algo_name() +
                                   " is not supported for IKE AUTH");
    }
    return pk;
  } catch (const std::exception& e) {
    return LoadError(source, std::string("not a DER/PEM SubjectPublicKeyInfo: ") +
                                 e.what());
  }
}

std::array<uint8_t, 32> PublicKey::Fingerprint() const {
  auto sha = Botan::HashFunction::create_or_throw("SHA-256");
  sha->update(spki_der_);
  std::array<uint8_t, 32> out;
  sha->final(out.data());
  return out;
}

std::string PublicKey::FingerprintHex() const {
  auto fp = Fingerprint();
  return Botan::hex_encode(fp.data(), fp.size(), false);
}

Result<PrivateKey> PrivateKey::FromBytes(ByteView data,
                                         std::string_view source) {
  if (data.empty()) return LoadError(source, "empty private key");
  std::unique_ptr<Botan::Private_Key> key;
  try {
    if (LooksLikePem(data, "RSA PRIVATE KEY")) {
      // PKCS#1 RSAPrivateKey, as written by "openssl genrsa" (traditional).
      Botan::DataSource_Memory src(data.data(), data.size());
      Botan::secure_vector<uint8_t> der =
          Botan::PEM_Code::decode_check_label(src, "RSA PRIVATE KEY");
      key = std::make_unique<Botan::RSA_PrivateKey>(
          Botan::AlgorithmIdentifier(
              Botan::OID::from_string("RSA"),
              Botan::AlgorithmIdentifier::USE_NULL_PARAM),
          der);
    } else if (LooksLikePem(data, "EC PRIVATE KEY")) {
      // SEC1 ECPrivateKey (RFC 5915), as written by "openssl ecparam
      // -genkey": the curve comes from its [0] parameters field.
      Botan::DataSource_Memory src(data.data(), data.size());
      Botan::secure_vector<uint8_t> der =
          Botan::PEM_Code::decode_check_label(src, "EC PRIVATE KEY");
      size_t version = 0;
      Botan::secure_vector<uint8_t> scalar;
      Botan::OID curve;
      Botan::BER_Decoder(der)
          .start_cons(Botan::SEQUENCE)
          .decode(version)
          .decode(scalar, Botan::OCTET_STRING)
          .decode_optional(curve, Botan::ASN1_Tag(0),
                           Botan::ASN1_Tag(Botan::CONSTRUCTED |
                                           Botan::CONTEXT_SPECIFIC),
                           Botan::OID())
          .discard_remaining()
          .end_cons();
      if (version != 1 || curve.empty()) {
        return LoadError(source,
                         "EC PRIVATE KEY without a named curve; convert "
                         "with: openssl pkcs8 -topk8 -nocrypt");
      }
      // The scalar is given, so no randomness is drawn (Null_RNG throws if
      // Botan ever tried, e.g. for a zero scalar).
      Botan::Null_RNG no_rng;
      key = std::make_unique<Botan::ECDSA_PrivateKey>(
          no_rng, Botan::EC_Group(curve),
          Botan::BigInt(scalar.data(), scalar.size()));
    } else {
      Botan::DataSource_Memory src(data.data(), data.size());
      key = Botan::PKCS8::load_key(src);
    }
  } catch (const std::exception& e) {
    return LoadError(source,
                     std::string("not an unencrypted PKCS#8 (PEM or DER) or "
                                 "PKCS#1 RSA private key: ") +
                         e.what());
  }
  if (!key) return LoadError(source, "no private key found");
  PrivateKey pk;
  std::shared_ptr<const Botan::Private_Key> shared(std::move(key));
  auto pub = PublicKey::FromBotan(shared);
  pk.public_ = *pub;
  pk.type_ = pub->type();
  pk.key_ = std::move(shared);
  if (pk.type_ == KeyType::kOther) {
    return LoadError(source, "private key algorithm " +
                                 pk.key_->algo_name() +
                                 " is not supported for IKE AUTH");
  }
  return pk;
}

Result<std::vector<Certificate>> Certificate::ChainFromBytes(
    ByteView data, std::string_view source) {
  std::vector<Bytes> ders;
  if (LooksLikePem(data, "CERTIFICATE")) {
    std::string text(reinterpret_cast<const char*>(data.data()), data.size());
    const std::string begin = "-----BEGIN CERTIFICATE-----";
    const std::string end = "-----END CERTIFICATE-----";
    size_t pos = 0;
    while ((pos = text.find(begin, pos)) != std::string::npos) {
      size_t stop = text.find(end, pos);
      if (stop == std::string::npos) {
        return LoadError(source, "PEM certificate block " +
                                     std::to_string(ders.size() + 1) +
                                     " has no END line");
      }
      stop += end.size();
      try {
        std::string label;
        auto der = Botan::PEM_Code::decode(text.substr(pos, stop - pos), label);
        ders.emplace_back(der.begin(), der.end());
      } catch (const std::exception& e) {
        return LoadError(source, "PEM certificate block " +
                                     std::to_string(ders.size() + 1) +
                                     ": " + e.what());
      }
      pos = stop;
    }
  } else {
    ders.emplace_back(data.begin(), data.end());
  }
  std::vector<Certificate> chain;
  for (size_t i = 0; i < ders.size(); ++i) {
    try {
      auto cert = std::make_shared<Botan::X509_Certificate>(ders[i]);
      Certificate c;
      c.der_ = ders[i];
      std::shared_ptr<const Botan::Public_Key> key(cert->subject_public_key());
      auto pub = PublicKey::FromBotan(std::move(key));
      c.public_ = *pub;
      c.cert_ = std::move(cert);
      chain.push_back(std::move(c));
    } catch (const std::exception& e) {
      return LoadError(source, "certificate " + std::to_string(i + 1) +
                                   " is not a valid X.509 certificate: " +
                                   e.what());
    }
  }
  if (chain.empty()) return LoadError(source, "no certificate found");
  return chain;
}

std::string Certificate::subject() const {
  return cert_->subject_dn().to_string();
}

Bytes Certificate::subject_der() const {
  return cert_->raw_subject_dn();
}

}  // namespace ike::crypto
