// AUTH payload computation and checking (RFC 7296 section 2.15): shared
// key, NULL authentication (RFC 7619), digital signatures (RFC 7427, with
// Ed25519 per RFC 8420) and the legacy signature methods (RSA 1, ECDSA
// 9/10/11 per RFC 4754), plus SIGNATURE_HASH_ALGORITHMS negotiation.
#pragma once

#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "ike/crypto/credentials.h"
#include "ike/crypto/prf.h"
#include "ike/crypto/random.h"
#include "ike/crypto/result.h"
#include "ike/wire/constants.h"

namespace Botan {
class PK_Signer;
}  // namespace Botan

namespace ike::crypto {

using wire::AuthMethod;
using wire::HashAlgorithm;

// <InitiatorSignedOctets> = RealMessage1 | NonceRData | MACedIDForI and
// <ResponderSignedOctets> = RealMessage2 | NonceIData | MACedIDForR, with
// MACedIDFor* = prf(SK_p*, ID*'). `id_payload_body` is the ID payload
// without its 4-byte generic header (ID Type, RESERVED, data).
Bytes BuildSignedOctets(const Prf& prf, ByteView real_message,
                        ByteView peer_nonce, ByteView sk_p,
                        ByteView id_payload_body);

// AUTH = prf(prf(Shared Secret, "Key Pad for IKEv2"), <SignedOctets>).
Result<Bytes> ComputeSharedKeyAuth(PrfId prf, ByteView shared_secret,
                                   ByteView signed_octets);
// Constant-time comparison against the received Authentication Data.
Status VerifySharedKeyAuth(PrfId prf, ByteView shared_secret,
                           ByteView signed_octets, ByteView received);

// RFC 7619 section 2.1: NULL authentication uses the shared key formula
// with SK_pi (initiator's AUTH) or SK_pr (responder's AUTH) in place of
// the shared secret. Pass the key of whoever produced the AUTH payload.
Result<Bytes> ComputeNullAuth(PrfId prf, ByteView sk_p_of_signer,
                              ByteView signed_octets);
Status VerifyNullAuth(PrfId prf, ByteView sk_p_of_signer,
                      ByteView signed_octets, ByteView received);

struct SignatureOptions {
  // For method 14: the hash (kIdentity for Ed25519). Ignored for legacy
  // methods, which fix their own hash.
  HashAlgorithm hash = HashAlgorithm::kSha2_256;
  // For method 14 with an RSA key: RSASSA-PSS (true) or PKCS#1 v1.5.
  bool rsa_pss = true;
};

// Authentication Data for a signature method. For kDigitalSignature it is
// len(AlgorithmIdentifier) || AlgorithmIdentifier DER || signature.
Result<Bytes> SignAuth(const PrivateKey& key, AuthMethod method,
                       const SignatureOptions& options,
                       ByteView signed_octets, RandomSource& random);

// A signer kept across handshakes: Botan's per-signer setup (RSA blinding
// in particular) costs as much as a signature, so the daemon should hold
// one per credential and method. `random` must outlive it. Not
// thread-safe.
class AuthSigner {
 public:
  static Result<AuthSigner> Create(const PrivateKey& key, AuthMethod method,
                                   const SignatureOptions& options,
                                   RandomSource& random);
  AuthSigner(AuthSigner&&) noexcept;
  AuthSigner& operator=(AuthSigner&&) noexcept;
  ~AuthSigner();

  // Authentication Data, as SignAuth returns it.
  Result<Bytes> Sign(ByteView signed_octets);

 private:
  AuthSigner();
  PrivateKey key_;
  RandomSource* random_ = nullptr;
  Bytes prefix_;
  std::unique_ptr<Botan::PK_Signer> signer_;
};

// A signature computed outside this process (a PKCS#11 token): what the
// key holder must compute over the AUTH signed octets, in the output format
// of the matching PKCS#11 mechanism (ECDSA: r || s, each as long as the
// curve order; EdDSA: R || S; RSA: the modulus-sized block).
enum class RawSignatureScheme : uint8_t {
  kEcdsaSha256,     // CKM_ECDSA_SHA256, or SHA-256 then CKM_ECDSA
  kEcdsaSha384,
  kEcdsaSha512,
  kEd25519,         // CKM_EDDSA (pure Ed25519 over the octets)
  kRsaPkcs1Sha256,  // CKM_SHA256_RSA_PKCS
  kRsaPkcs1Sha384,
  kRsaPkcs1Sha512,
};
const char* RawSignatureSchemeName(RawSignatureScheme scheme);

// The raw scheme an external key of `key_type` must use for `method` and
// `options` (RSA keys are used with PKCS#1 v1.5 there: RSASSA-PSS
// parameters are not available from every token).
Result<RawSignatureScheme> RawSchemeFor(KeyType key_type, AuthMethod method,
                                        const SignatureOptions& options);

// Authentication Data from a raw signature (as RawSchemeFor asked for),
// checked with `key` over `signed_octets` before it is used, so a token
// holding another key or a garbled answer fails here, not at the peer.
Result<Bytes> AuthFromRawSignature(const PublicKey& key, AuthMethod method,
                                   const SignatureOptions& options,
                                   ByteView raw_signature,
                                   ByteView signed_octets);

// Checks a signature AUTH payload. For kDigitalSignature the hash named by
// the AlgorithmIdentifier must be one of `acceptable_hashes` (what we
// announced; kIdentity admits Ed25519).
Status VerifyAuth(const PublicKey& key, AuthMethod method,
                  ByteView auth_data, ByteView signed_octets,
                  std::span<const HashAlgorithm> acceptable_hashes);

// The AlgorithmIdentifier DER this library sends for a key type and hash,
// without the length prefix (e.g. RFC 7427 Appendix A values).
Result<Bytes> SignatureAlgorithmIdentifier(KeyType key_type,
                                           HashAlgorithm hash, bool rsa_pss);

// Hashes we can verify, for our SIGNATURE_HASH_ALGORITHMS notify.
std::vector<HashAlgorithm> SupportedSignatureHashes();

// The hash to sign with: the first of our preferences that the peer listed
// and that fits our key (Ed25519 needs kIdentity; others never use it).
// Nothing when the peer sent no list or nothing fits (fall back to a
// legacy method, or fail).
std::optional<HashAlgorithm> SelectSignatureHash(
    KeyType our_key, std::span<const HashAlgorithm> our_preference,
    std::span<const HashAlgorithm> peer_supported);

}  // namespace ike::crypto
