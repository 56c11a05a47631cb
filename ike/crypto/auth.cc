#include "ike/crypto/auth.h"

#include <algorithm>
#include <map>
#include <string_view>

#include <botan/alg_id.h>
#include <botan/asn1_obj.h>
#include <botan/ber_dec.h>
#include <botan/bigint.h>
#include <botan/der_enc.h>
#include <botan/mem_ops.h>
#include <botan/pk_keys.h>
#include <botan/pubkey.h>

namespace ike::crypto {
namespace {

constexpr std::string_view kKeyPad = "Key Pad for IKEv2";

const char* BotanHashName(HashAlgorithm hash) {
  switch (hash) {
    case HashAlgorithm::kSha1: return "SHA-1";
    case HashAlgorithm::kSha2_256: return "SHA-256";
    case HashAlgorithm::kSha2_384: return "SHA-384";
    case HashAlgorithm::kSha2_512: return "SHA-512";
    case HashAlgorithm::kIdentity: return nullptr;
  }
  return nullptr;
}

size_t HashBytes(HashAlgorithm hash) {
  switch (hash) {
    case HashAlgorithm::kSha1: return 20;
    case HashAlgorithm::kSha2_256: return 32;
    case HashAlgorithm::kSha2_384: return 48;
    case HashAlgorithm::kSha2_512: return 64;
    case HashAlgorithm::kIdentity: return 0;
  }
  return 0;
}

std::optional<HashAlgorithm> HashFromOid(const Botan::OID& oid) {
  const std::string s = oid.to_string();
  if (s == "1.3.14.3.2.26") return HashAlgorithm::kSha1;
  if (s == "2.16.840.1.101.3.4.2.1") return HashAlgorithm::kSha2_256;
  if (s == "2.16.840.1.101.3.4.2.2") return HashAlgorithm::kSha2_384;
  if (s == "2.16.840.1.101.3.4.2.3") return HashAlgorithm::kSha2_512;
  return std::nullopt;
}

const char* HashOid(HashAlgorithm hash) {
  switch (hash) {
    case HashAlgorithm::kSha1: return "1.3.14.3.2.26";
    case HashAlgorithm::kSha2_256: return "2.16.840.1.101.3.4.2.1";
    case HashAlgorithm::kSha2_384: return "2.16.840.1.101.3.4.2.2";
    case HashAlgorithm::kSha2_512: return "2.16.840.1.101.3.4.2.3";
    default: return nullptr;
  }
}

bool IsEcdsa(KeyType t) {
  return t == KeyType::kEcdsaP256 || t == KeyType::kEcdsaP384 ||
         t == KeyType::kEcdsaP521;
}

Botan::AlgorithmIdentifier HashAlgId(HashAlgorithm hash) {
  return Botan::AlgorithmIdentifier(
      Botan::OID::from_string(HashOid(hash)),
      Botan::AlgorithmIdentifier::USE_NULL_PARAM);
}

// RSASSA-PSS-params with MGF1 over the same hash and salt = hash length,
// trailerField written out as RFC 7427 Appendix A.4 does.
Bytes PssAlgorithmIdentifier(HashAlgorithm hash) {
  const Botan::AlgorithmIdentifier hash_id = HashAlgId(hash);
  Bytes mgf_params;
  Botan::DER_Encoder(mgf_params).encode(hash_id);
  const Botan::AlgorithmIdentifier mgf(
      Botan::OID::from_string("1.2.840.113549.1.1.8"), mgf_params);
  Bytes params;
  Botan::DER_Encoder(params)
      .start_cons(Botan::SEQUENCE)
      .start_explicit(0).encode(hash_id).end_explicit()
      .start_explicit(1).encode(mgf).end_explicit()
      .start_explicit(2).encode(size_t(HashBytes(hash))).end_explicit()
      .start_explicit(3).encode(size_t(1)).end_explicit()
      .end_cons();
  Bytes out;
  Botan::DER_Encoder(out).encode(Botan::AlgorithmIdentifier(
      Botan::OID::from_string("1.2.840.113549.1.1.10"), params));
  return out;
}

CryptoError SigError(const std::string& what) {
  return MakeError(ErrorCode::kSignatureInvalid, "AUTH signature: " + what);
}

// Botan padding scheme and signature format for a verification.
struct VerifyScheme {
  std::string padding;
  Botan::Signature_Format format = Botan::IEEE_1363;
  HashAlgorithm hash = HashAlgorithm::kSha2_256;
};

Result<VerifyScheme> SchemeFromAlgorithmIdentifier(
    const Botan::AlgorithmIdentifier& alg, KeyType key_type) {
  const std::string oid = alg.get_oid().to_string();
  auto need = [&](bool ok, const char* what) -> Status {
    if (!ok) {
      return SigError(std::string("AlgorithmIdentifier ") + oid + " needs " +
                      what + ", the key is " + KeyTypeName(key_type));
    }
    return Ok{};
  };
  VerifyScheme s;
  if (oid == "1.3.101.112") {  // id-Ed25519, RFC 8420
    if (auto st = need(key_type == KeyType::kEd25519, "an Ed25519 key"); !st) {
      return st.error();
    }
    s.padding = "Pure";
    s.hash = HashAlgorithm::kIdentity;
    return s;
  }
  const std::pair<const char*, HashAlgorithm> ecdsa[] = {
      {"1.2.840.10045.4.3.2", HashAlgorithm::kSha2_256},
      {"1.2.840.10045.4.3.3", HashAlgorithm::kSha2_384},
      {"1.2.840.10045.4.3.4", HashAlgorithm::kSha2_512}};
  for (const auto& [o, h] : ecdsa) {
    if (oid == o) {
      if (auto st = need(IsEcdsa(key_type), "an ECDSA key"); !st) {
        return st.error();
      }
      s.hash = h;
      s.padding = std::string("EMSA1(") + BotanHashName(h) + ")";
      s.format = Botan::DER_SEQUENCE;  // RFC 7427: Ecdsa-Sig-Value
      return s;
    }
  }
  const std::pair<const char*, HashAlgorithm> pkcs1[] = {
      {"1.2.840.113549.1.1.5", HashAlgorithm::kSha1},
      {"1.2.840.113549.1.1.11", HashAlgorithm::kSha2_256},
      {"1.2.840.113549.1.1.12", HashAlgorithm::kSha2_384},
      {"1.2.840.113549.1.1.13", HashAlgorithm::kSha2_512}};
  for (const auto& [o, h] : pkcs1) {
    if (oid == o) {
      if (auto st = need(key_type == KeyType::kRsa, "an RSA key"); !st) {
        return st.error();
      }
      s.hash = h;
      s.padding = std::string("EMSA3(") + BotanHashName(h) + ")";
      return s;
    }
  }
  if (oid == "1.2.840.113549.1.1.10") {  // RSASSA-PSS
    if (auto st = need(key_type == KeyType::kRsa, "an RSA key"); !st) {
      return st.error();
    }
    // Defaults of RFC 4055: SHA-1, MGF1-SHA-1, salt 20.
    Botan::AlgorithmIdentifier hash_id(
        Botan::OID::from_string("1.3.14.3.2.26"),
        Botan::AlgorithmIdentifier::USE_NULL_PARAM);
    Botan::AlgorithmIdentifier mgf_id(
        Botan::OID::from_string("1.2.840.113549.1.1.8"), Bytes());
    size_t salt = 20;
    size_t trailer = 1;
    try {
      Botan::BER_Decoder(alg.get_parameters())
          .start_cons(Botan::SEQUENCE)
          .decode_optional(hash_id, Botan::ASN1_Tag(0),
                           Botan::ASN1_Tag(Botan::CONSTRUCTED |
                                           Botan::CONTEXT_SPECIFIC),
                           hash_id)
          .decode_optional(mgf_id, Botan::ASN1_Tag(1),
                           Botan::ASN1_Tag(Botan::CONSTRUCTED |
                                           Botan::CONTEXT_SPECIFIC),
                           mgf_id)
          .decode_optional(salt, Botan::ASN1_Tag(2),
                           Botan::ASN1_Tag(Botan::CONSTRUCTED |
                                           Botan::CONTEXT_SPECIFIC),
                           size_t(20))
          .decode_optional(trailer, Botan::ASN1_Tag(3),
                           Botan::ASN1_Tag(Botan::CONSTRUCTED |
                                           Botan::CONTEXT_SPECIFIC),
                           size_t(1))
          .end_cons()
          .verify_end();
    } catch (const std::exception& e) {
      return SigError(std::string("malformed RSASSA-PSS parameters: ") +
                      e.what());
    }
    auto hash = HashFromOid(hash_id.get_oid());
    if (!hash) return SigError("RSASSA-PSS with an unsupported hash");
    if (mgf_id.get_oid().to_string() != "1.2.840.113549.1.1.8") {
      return SigError("RSASSA-PSS mask generation is not MGF1");
    }
    Botan::AlgorithmIdentifier mgf_hash;
    try {
      Botan::BER_Decoder(mgf_id.get_parameters()).decode(mgf_hash);
    } catch (const std::exception&) {
      return SigError("RSASSA-PSS MGF1 parameters are malformed");
    }
    if (mgf_hash.get_oid() != hash_id.get_oid()) {
      return SigError("RSASSA-PSS MGF1 hash differs from the message hash");
    }
    if (trailer != 1 || salt > 512) {
      return SigError("RSASSA-PSS trailer/salt length not supported");
    }
    s.hash = *hash;
    s.padding = std::string("EMSA4(") + BotanHashName(*hash) + ",MGF1," +
                std::to_string(salt) + ")";
    return s;
  }
  return SigError("AlgorithmIdentifier " + oid + " is not supported");
}

// Legacy methods fix the key type, the hash and the encoding.
Result<VerifyScheme> LegacyScheme(AuthMethod method, KeyType key_type) {
  VerifyScheme s;
  auto expect = [&](KeyType want) -> Status {
    if (key_type != want) {
      return SigError(std::string("auth method ") +
                      std::to_string(int(method)) + " needs a " +
                      KeyTypeName(want) + " key, have " +
                      KeyTypeName(key_type));
    }
    return Ok{};
  };
  Status st = Ok{};
  switch (method) {
    case AuthMethod::kRsaSig:  // RFC 7296: PKCS#1 v1.5 with SHA-1
      st = expect(KeyType::kRsa);
      s.padding = "EMSA3(SHA-1)";
      s.hash = HashAlgorithm::kSha1;
      break;
    case AuthMethod::kEcdsa256:  // RFC 4754: r || s
      st = expect(KeyType::kEcdsaP256);
      s.padding = "EMSA1(SHA-256)";
      break;
    case AuthMethod::kEcdsa384:
      st = expect(KeyType::kEcdsaP384);
      s.padding = "EMSA1(SHA-384)";
      s.hash = HashAlgorithm::kSha2_384;
      break;
    case AuthMethod::kEcdsa521:
      st = expect(KeyType::kEcdsaP521);
      s.padding = "EMSA1(SHA-512)";
      s.hash = HashAlgorithm::kSha2_512;
      break;
    default:
      return SigError("auth method " + std::to_string(int(method)) +
                      " is not a supported signature method");
  }
  if (!st) return st.error();
  return s;
}

}  // namespace

Bytes BuildSignedOctets(const Prf& prf, ByteView real_message,
                        ByteView peer_nonce, ByteView sk_p,
                        ByteView id_payload_body) {
  Bytes out;
  out.reserve(real_message.size() + peer_nonce.size() + prf.output_size());
  out.insert(out.end(), real_message.begin(), real_message.end());
  out.insert(out.end(), peer_nonce.begin(), peer_nonce.end());
  out.resize(out.size() + prf.output_size());
  prf.ComputeInto(sk_p, {id_payload_body},
                  out.data() + out.size() - prf.output_size());  // MACedID
  return out;
}

Result<Bytes> ComputeSharedKeyAuth(PrfId prf_id, ByteView shared_secret,
                                   ByteView signed_octets) {
  // One Prf per thread and PRF ID: creating Botan's HMAC by name costs as
  // much as the two HMACs below.
  thread_local std::map<PrfId, Prf> cache;
  auto it = cache.find(prf_id);
  if (it == cache.end()) {
    auto created = Prf::Create(prf_id);
    if (!created) return created.error();
    it = cache.emplace(prf_id, std::move(*created)).first;
  }
  const Prf* prf = &it->second;
  ByteView pad(reinterpret_cast<const uint8_t*>(kKeyPad.data()),
               kKeyPad.size());
  const size_t n = prf->output_size();
  uint8_t inner[64];  // the largest PRF output (HMAC-SHA-512)
  if (n > sizeof(inner)) {
    return MakeError(ErrorCode::kUnsupported, "PRF output too long");
  }
  prf->ComputeInto(shared_secret, {pad}, inner);
  Bytes auth(n);
  prf->ComputeInto(ByteView(inner, n), {signed_octets}, auth.data());
  Botan::secure_scrub_memory(inner, sizeof(inner));
  return auth;
}

Status VerifySharedKeyAuth(PrfId prf, ByteView shared_secret,
                           ByteView signed_octets, ByteView received) {
  auto expected = ComputeSharedKeyAuth(prf, shared_secret, signed_octets);
  if (!expected) return expected.error();
  if (!ConstantTimeEqual(View(*expected), received)) {
    return MakeError(ErrorCode::kIntegrityCheckFailed,
                     "AUTH payload does not match the shared key");
  }
  return Ok{};
}

Result<Bytes> ComputeNullAuth(PrfId prf, ByteView sk_p_of_signer,
                              ByteView signed_octets) {
  return ComputeSharedKeyAuth(prf, sk_p_of_signer, signed_octets);
}

Status VerifyNullAuth(PrfId prf, ByteView sk_p_of_signer,
                      ByteView signed_octets, ByteView received) {
  auto expected = ComputeNullAuth(prf, sk_p_of_signer, signed_octets);
  if (!expected) return expected.error();
  if (!ConstantTimeEqual(View(*expected), received)) {
    return MakeError(ErrorCode::kIntegrityCheckFailed,
                     "NULL AUTH payload does not match SK_p (RFC 7619)");
  }
  return Ok{};
}

Result<Bytes> SignatureAlgorithmIdentifier(KeyType key_type,
                                           HashAlgorithm hash, bool rsa_pss) {
  auto unsupported = [&]() {
    return MakeError(ErrorCode::kUnsupported,
                     std::string("no RFC 7427 signature for a ") +
                         KeyTypeName(key_type) + " key with hash " +
                         std::to_string(int(hash)));
  };
  Bytes out;
  if (key_type == KeyType::kEd25519) {
    if (hash != HashAlgorithm::kIdentity) return unsupported();
    Botan::DER_Encoder(out).encode(Botan::AlgorithmIdentifier(
        Botan::OID::from_string("1.3.101.112"),
        Botan::AlgorithmIdentifier::USE_EMPTY_PARAM));
    return out;
  }
  if (hash == HashAlgorithm::kIdentity || !BotanHashName(hash)) {
    return unsupported();
  }
  if (IsEcdsa(key_type)) {
    if (hash == HashAlgorithm::kSha1) return unsupported();
    const char* oid = hash == HashAlgorithm::kSha2_256   ? "1.2.840.10045.4.3.2"
                      : hash == HashAlgorithm::kSha2_384 ? "1.2.840.10045.4.3.3"
                                                         : "1.2.840.10045.4.3.4";
    Botan::DER_Encoder(out).encode(Botan::AlgorithmIdentifier(
        Botan::OID::from_string(oid),
        Botan::AlgorithmIdentifier::USE_EMPTY_PARAM));
    return out;
  }
  if (key_type == KeyType::kRsa) {
    if (rsa_pss) return PssAlgorithmIdentifier(hash);
    const char* oid = hash == HashAlgorithm::kSha1       ? "1.2.840.113549.1.1.5"
                      : hash == HashAlgorithm::kSha2_256 ? "1.2.840.113549.1.1.11"
                      : hash == HashAlgorithm::kSha2_384 ? "1.2.840.113549.1.1.12"
                                                         : "1.2.840.113549.1.1.13";
    Botan::DER_Encoder(out).encode(Botan::AlgorithmIdentifier(
        Botan::OID::from_string(oid),
        Botan::AlgorithmIdentifier::USE_NULL_PARAM));
    return out;
  }
  return unsupported();
}

Result<AuthSigner> AuthSigner::Create(const PrivateKey& key,
                                      AuthMethod method,
                                      const SignatureOptions& options,
                                      RandomSource& random) {
  std::string padding;
  Botan::Signature_Format format = Botan::IEEE_1363;
  Bytes prefix;
  if (method == AuthMethod::kDigitalSignature) {
    auto alg = SignatureAlgorithmIdentifier(key.type(), options.hash,
                                            options.rsa_pss);
    if (!alg) return alg.error();
    if (alg->size() > 255) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "AlgorithmIdentifier longer than 255 bytes");
    }
    Botan::AlgorithmIdentifier parsed;
    Botan::BER_Decoder(*alg).decode(parsed);
    auto scheme = SchemeFromAlgorithmIdentifier(parsed, key.type());
    if (!scheme) return scheme.error();
    padding = scheme->padding;
    format = scheme->format;
    prefix.push_back(static_cast<uint8_t>(alg->size()));
    prefix.insert(prefix.end(), alg->begin(), alg->end());
  } else {
    auto scheme = LegacyScheme(method, key.type());
    if (!scheme) return scheme.error();
    padding = scheme->padding;
  }
  try {
    AuthSigner signer;
    signer.key_ = key;
    signer.random_ = &random;
    signer.prefix_ = std::move(prefix);
    signer.signer_ = std::make_unique<Botan::PK_Signer>(
        signer.key_.botan(), random.AsBotan(), padding, format);
    return signer;
  } catch (const std::exception& e) {
    return MakeError(ErrorCode::kInvalidArgument,
                     std::string("cannot sign with ") +
                         KeyTypeName(key.type()) + ": " + e.what());
  }
}

AuthSigner::AuthSigner() = default;
AuthSigner::AuthSigner(AuthSigner&&) noexcept = default;
AuthSigner& AuthSigner::operator=(AuthSigner&&) noexcept = default;
AuthSigner::~AuthSigner() = default;

Result<Bytes> AuthSigner::Sign(ByteView signed_octets) {
  try {
    std::vector<uint8_t> sig = signer_->sign_message(
        signed_octets.data(), signed_octets.size(), random_->AsBotan());
    Bytes out = prefix_;
    out.insert(out.end(), sig.begin(), sig.end());
    return out;
  } catch (const std::exception& e) {
    return MakeError(ErrorCode::kInvalidArgument,
                     std::string("signing with ") + KeyTypeName(key_.type()) +
                         " failed: " + e.what());
  }
}

Result<Bytes> SignAuth(const PrivateKey& key, AuthMethod method,
                       const SignatureOptions& options,
                       ByteView signed_octets, RandomSource& random) {
  auto signer = AuthSigner::Create(key, method, options, random);
  if (!signer) return signer.error();
  return signer->Sign(signed_octets);
}

Status VerifyAuth(const PublicKey& key, AuthMethod method, ByteView auth_data,
                  ByteView signed_octets,
                  std::span<const HashAlgorithm> acceptable_hashes) {
  VerifyScheme scheme;
  ByteView signature = auth_data;
  if (method == AuthMethod::kDigitalSignature) {
    if (auth_data.empty() || auth_data[0] == 0 ||
        size_t(auth_data[0]) + 1 > auth_data.size()) {
      return SigError("AlgorithmIdentifier length byte exceeds the payload");
    }
    ByteView alg_der = auth_data.subspan(1, auth_data[0]);
    signature = auth_data.subspan(1 + auth_data[0]);
    Botan::AlgorithmIdentifier alg;
    try {
      Botan::BER_Decoder(alg_der.data(), alg_der.size())
          .decode(alg)
          .verify_end();
    } catch (const std::exception& e) {
      return SigError(std::string("malformed AlgorithmIdentifier: ") +
                      e.what());
    }
    auto s = SchemeFromAlgorithmIdentifier(alg, key.type());
    if (!s) return s.error();
    scheme = *s;
    if (std::find(acceptable_hashes.begin(), acceptable_hashes.end(),
                  scheme.hash) == acceptable_hashes.end()) {
      return SigError("hash " + std::to_string(int(scheme.hash)) +
                      " was not in our SIGNATURE_HASH_ALGORITHMS");
    }
  } else {
    auto s = LegacyScheme(method, key.type());
    if (!s) return s.error();
    scheme = *s;
  }
  if (signature.empty()) return SigError("signature is empty");
  try {
    Botan::PK_Verifier verifier(key.botan(), scheme.padding, scheme.format);
    if (!verifier.verify_message(signed_octets.data(), signed_octets.size(),
                                 signature.data(), signature.size())) {
      return SigError("does not verify with the peer's " +
                      std::string(KeyTypeName(key.type())) + " key");
    }
  } catch (const std::exception& e) {
    return SigError(std::string("verification error: ") + e.what());
  }
  return Ok{};
}

std::vector<HashAlgorithm> SupportedSignatureHashes() {
  return {HashAlgorithm::kSha2_256, HashAlgorithm::kSha2_384,
          HashAlgorithm::kSha2_512, HashAlgorithm::kIdentity};
}

std::optional<HashAlgorithm> SelectSignatureHash(
    KeyType our_key, std::span<const HashAlgorithm> our_preference,
    std::span<const HashAlgorithm> peer_supported) {
  auto peer_has = [&](HashAlgorithm h) {
    return std::find(peer_supported.begin(), peer_supported.end(), h) !=
           peer_supported.end();
  };
  for (HashAlgorithm h : our_preference) {
    if (!peer_has(h)) continue;
    const bool identity = h == HashAlgorithm::kIdentity;
    if ((our_key == KeyType::kEd25519) != identity) continue;
    if (h == HashAlgorithm::kSha1 && our_key != KeyType::kRsa) continue;
    return h;
  }
  return std::nullopt;
}

}  // namespace ike::crypto

namespace ike::crypto {

const char* RawSignatureSchemeName(RawSignatureScheme scheme) {
  switch (scheme) {
    case RawSignatureScheme::kEcdsaSha256: return "ecdsa-sha256";
    case RawSignatureScheme::kEcdsaSha384: return "ecdsa-sha384";
    case RawSignatureScheme::kEcdsaSha512: return "ecdsa-sha512";
    case RawSignatureScheme::kEd25519: return "ed25519";
    case RawSignatureScheme::kRsaPkcs1Sha256: return "rsa-pkcs1-sha256";
    case RawSignatureScheme::kRsaPkcs1Sha384: return "rsa-pkcs1-sha384";
    case RawSignatureScheme::kRsaPkcs1Sha512: return "rsa-pkcs1-sha512";
  }
  return "unknown";
}

Result<RawSignatureScheme> RawSchemeFor(KeyType key_type, AuthMethod method,
                                        const SignatureOptions& options) {
  auto unsupported = [&]() -> Result<RawSignatureScheme> {
    return MakeError(ErrorCode::kUnsupported,
                     std::string("an external ") + KeyTypeName(key_type) +
                         " key cannot sign for auth method " +
                         std::to_string(int(method)));
  };
  bool ecdsa = key_type == KeyType::kEcdsaP256 ||
               key_type == KeyType::kEcdsaP384 ||
               key_type == KeyType::kEcdsaP521;
  switch (method) {
    case AuthMethod::kEcdsa256:
      if (key_type != KeyType::kEcdsaP256) return unsupported();
      return RawSignatureScheme::kEcdsaSha256;
    case AuthMethod::kEcdsa384:
      if (key_type != KeyType::kEcdsaP384) return unsupported();
      return RawSignatureScheme::kEcdsaSha384;
    case AuthMethod::kEcdsa521:
      if (key_type != KeyType::kEcdsaP521) return unsupported();
      return RawSignatureScheme::kEcdsaSha512;
    case AuthMethod::kDigitalSignature:
      break;
    default:
      return unsupported();
  }
  if (key_type == KeyType::kEd25519) {
    if (options.hash != HashAlgorithm::kIdentity) return unsupported();
    return RawSignatureScheme::kEd25519;
  }
  if (ecdsa || key_type == KeyType::kRsa) {
    if (key_type == KeyType::kRsa && options.rsa_pss) return unsupported();
    switch (options.hash) {
      case HashAlgorithm::kSha2_256:
        return ecdsa ? RawSignatureScheme::kEcdsaSha256
                     : RawSignatureScheme::kRsaPkcs1Sha256;
      case HashAlgorithm::kSha2_384:
        return ecdsa ? RawSignatureScheme::kEcdsaSha384
                     : RawSignatureScheme::kRsaPkcs1Sha384;
      case HashAlgorithm::kSha2_512:
        return ecdsa ? RawSignatureScheme::kEcdsaSha512
                     : RawSignatureScheme::kRsaPkcs1Sha512;
      default:
        return unsupported();
    }
  }
  return unsupported();
}

Result<Bytes> AuthFromRawSignature(const PublicKey& key, AuthMethod method,
                                   const SignatureOptions& options,
                                   ByteView raw_signature,
                                   ByteView signed_octets) {
  auto scheme = RawSchemeFor(key.type(), method, options);
  if (!scheme) return scheme.error();
  if (raw_signature.empty()) return SigError("the external signature is empty");
  Bytes auth;
  if (method != AuthMethod::kDigitalSignature) {
    auth.assign(raw_signature.begin(), raw_signature.end());  // RFC 4754: r || s
  } else {
    auto alg = SignatureAlgorithmIdentifier(key.type(), options.hash,
                                            options.rsa_pss);
    if (!alg) return alg.error();
    if (alg->empty() || alg->size() > 255)
      return MakeError(ErrorCode::kInvalidArgument,
                       "AlgorithmIdentifier longer than 255 bytes");
    auth.push_back(uint8_t(alg->size()));
    auth.insert(auth.end(), alg->begin(), alg->end());
    bool ecdsa = *scheme == RawSignatureScheme::kEcdsaSha256 ||
                 *scheme == RawSignatureScheme::kEcdsaSha384 ||
                 *scheme == RawSignatureScheme::kEcdsaSha512;
    if (ecdsa) {
      // RFC 7427 carries ECDSA-Sig-Value (DER); PKCS#11 gives r || s.
      if (raw_signature.size() % 2 != 0 || raw_signature.size() > 2 * 66)
        return SigError("the external ECDSA signature is not r || s");
      size_t half = raw_signature.size() / 2;
      Botan::BigInt r(raw_signature.data(), half);
      Botan::BigInt s(raw_signature.data() + half, half);
      Bytes der;
      Botan::DER_Encoder(der).start_cons(Botan::SEQUENCE).encode(r).encode(s).end_cons();
      auth.insert(auth.end(), der.begin(), der.end());
    } else {
      auth.insert(auth.end(), raw_signature.begin(), raw_signature.end());
    }
  }
  std::vector<HashAlgorithm> hashes = {options.hash};
  if (method != AuthMethod::kDigitalSignature) hashes.clear();
  Status checked = VerifyAuth(key, method, View(auth), signed_octets, hashes);
  if (!checked) {
    return SigError("the external signature (" +
                    std::string(RawSignatureSchemeName(*scheme)) +
                    ") does not verify with the credential's public key: " +
                    checked.error().message);
  }
  return auth;
}

}  // namespace ike::crypto
