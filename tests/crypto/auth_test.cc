// AUTH payloads: shared key, NULL (RFC 7619), RFC 7427 signatures with
// RFC 8032 vectors and OpenSSL-made signatures, legacy methods, and
// SIGNATURE_HASH_ALGORITHMS negotiation.
#include "ike/crypto/auth.h"

#include <botan/ed25519.h>
#include <botan/pkcs8.h>
#include <botan/x509_key.h>
#include <gtest/gtest.h>

#include "daemon/credential_files.h"
#include "tests/crypto/vectors.h"

namespace ike::crypto {
namespace {

using btnsd::daemon::ReadCredentialFile;
using btnsd::daemon::LoadPrivateKeyFile;
using btnsd::daemon::LoadPublicKeyFile;

using testing::Hex;
using testing::ReadVectors;
using testing::Str;
using testing::ToBytes;

constexpr char kKeys[] = "tests/fixtures/crypto/keys/";

DeterministicRandomSource& Rng() {
  static DeterministicRandomSource rng(Bytes{9, 9});
  return rng;
}

PrivateKey LoadKey(const std::string& name) {
  auto key = LoadPrivateKeyFile(kKeys + name);
  EXPECT_TRUE(key.ok()) << key.error().message;
  return *key;
}

Bytes ReadFile(const std::string& name) {
  auto data = ReadCredentialFile(kKeys + name);
  EXPECT_TRUE(data.ok()) << data.error().message;
  return *data;
}

const std::vector<HashAlgorithm> kAllHashes = SupportedSignatureHashes();

TEST(SharedKeyAuthTest, FollowsRfc7296Formula) {
  auto prf = Prf::Create(PrfId::kHmacSha2_256);
  ASSERT_TRUE(prf.ok());
  Bytes psk = Str("correct horse battery staple");
  Bytes octets = Str("message|nonce|maced id");
  auto auth = ComputeSharedKeyAuth(PrfId::kHmacSha2_256, View(psk),
                                   View(octets));
  ASSERT_TRUE(auth.ok());
  Secret inner = prf->Compute(View(psk), View(Str("Key Pad for IKEv2")));
  EXPECT_EQ(*auth, ToBytes(prf->Compute(View(inner), View(octets))));
  EXPECT_EQ(auth->size(), 32u);
}

TEST(SharedKeyAuthTest, WrongKeyOrTruncatedAuthFails) {
  Bytes psk = Str("secret"), octets = Str("octets");
  auto auth = ComputeSharedKeyAuth(PrfId::kHmacSha2_512, View(psk),
                                   View(octets));
  ASSERT_TRUE(auth.ok());
  EXPECT_TRUE(VerifySharedKeyAuth(PrfId::kHmacSha2_512, View(psk),
                                  View(octets), View(*auth))
                  .ok());
  auto wrong = VerifySharedKeyAuth(PrfId::kHmacSha2_512, View(Str("secreT")),
                                   View(octets), View(*auth));
  ASSERT_FALSE(wrong.ok());
  EXPECT_EQ(wrong.error().code, ErrorCode::kIntegrityCheckFailed);
  Bytes truncated(auth->begin(), auth->end() - 1);
  EXPECT_FALSE(VerifySharedKeyAuth(PrfId::kHmacSha2_512, View(psk),
                                   View(octets), View(truncated))
                   .ok());
  EXPECT_FALSE(VerifySharedKeyAuth(PrfId::kHmacSha2_512, View(psk),
                                   View(octets), {})
                   .ok());
}

TEST(SignedOctetsTest, AppendsNonceAndMacedId) {
  auto prf = Prf::Create(PrfId::kHmacSha2_256);
  ASSERT_TRUE(prf.ok());
  Bytes msg = Str("first message"), nonce = Str("peer nonce");
  Bytes sk_p(32, 0x44), id = {2, 0, 0, 0, 'a', '.', 'b'};
  Bytes octets = BuildSignedOctets(*prf, View(msg), View(nonce), View(sk_p),
                                   View(id));
  Bytes expected = msg;
  expected.insert(expected.end(), nonce.begin(), nonce.end());
  Secret maced = prf->Compute(View(sk_p), View(id));
  expected.insert(expected.end(), maced.begin(), maced.end());
  EXPECT_EQ(octets, expected);
}

// RFC 7619 2.1: SK_pi keys the initiator's AUTH, SK_pr the responder's.
TEST(NullAuthTest, UsesSignersSkP) {
  Bytes sk_pi(48, 0x01), sk_pr(48, 0x02), octets = Str("octets");
  auto auth = ComputeNullAuth(PrfId::kHmacSha2_384, View(sk_pi), View(octets));
  ASSERT_TRUE(auth.ok());
  auto as_psk = ComputeSharedKeyAuth(PrfId::kHmacSha2_384, View(sk_pi),
                                     View(octets));
  EXPECT_EQ(*auth, *as_psk);
  EXPECT_TRUE(VerifyNullAuth(PrfId::kHmacSha2_384, View(sk_pi), View(octets),
                             View(*auth))
                  .ok());
  auto wrong_key = VerifyNullAuth(PrfId::kHmacSha2_384, View(sk_pr),
                                  View(octets), View(*auth));
  ASSERT_FALSE(wrong_key.ok());
  EXPECT_EQ(wrong_key.error().code, ErrorCode::kIntegrityCheckFailed);
}

TEST(SignatureTest, Ed25519Rfc8032Vectors) {
  int checked = 0;
  for (const auto& v : ReadVectors("ed25519_rfc8032.txt")) {
    Bytes seed = Hex(v.at("secret"));
    Botan::Ed25519_PrivateKey botan_key(Secret(seed.begin(), seed.end()));
    Secret pkcs8 = Botan::PKCS8::BER_encode(botan_key);
    auto key = PrivateKey::FromBytes(View(pkcs8), "RFC 8032 vector");
    ASSERT_TRUE(key.ok()) << key.error().message;
    ASSERT_EQ(key->type(), KeyType::kEd25519);

    Bytes message = Hex(v.at("message"));
    SignatureOptions opts;
    opts.hash = HashAlgorithm::kIdentity;
    auto auth = SignAuth(*key, AuthMethod::kDigitalSignature, opts,
                         View(message), Rng());
    ASSERT_TRUE(auth.ok()) << auth.error().message;
    // RFC 8420: 1-byte length || id-Ed25519 AlgorithmIdentifier || sig.
    Bytes expected = Hex("07300506032b6570");
    Bytes sig = Hex(v.at("signature"));
    expected.insert(expected.end(), sig.begin(), sig.end());
    EXPECT_EQ(*auth, expected);

    Botan::Ed25519_PublicKey botan_pub(Hex(v.at("public")));
    auto pub = PublicKey::FromSpki(View(botan_pub.subject_public_key()),
                                   "RFC 8032 public key");
    ASSERT_TRUE(pub.ok());
    EXPECT_TRUE(VerifyAuth(*pub, AuthMethod::kDigitalSignature, View(*auth),
                           View(message), kAllHashes)
                    .ok());
    Bytes tampered = *auth;
    tampered.back() ^= 1;
    EXPECT_FALSE(VerifyAuth(*pub, AuthMethod::kDigitalSignature,
                            View(tampered), View(message), kAllHashes)
                     .ok());
    ++checked;
  }
  EXPECT_EQ(checked, 3);
}

TEST(SignatureTest, ReusableSignerMatchesOneShotSigning) {
  PrivateKey ed = LoadKey("ed25519.pem");  // deterministic signatures
  SignatureOptions opts{HashAlgorithm::kIdentity, false};
  auto signer = AuthSigner::Create(ed, AuthMethod::kDigitalSignature, opts,
                                   Rng());
  ASSERT_TRUE(signer.ok());
  for (const char* text : {"first handshake", "second handshake"}) {
    Bytes octets = Str(text);
    auto a = signer->Sign(View(octets));
    auto b = SignAuth(ed, AuthMethod::kDigitalSignature, opts, View(octets),
                      Rng());
    ASSERT_TRUE(a.ok() && b.ok());
    EXPECT_EQ(*a, *b);
  }
  auto mismatch = AuthSigner::Create(ed, AuthMethod::kEcdsa256, {}, Rng());
  ASSERT_FALSE(mismatch.ok());
  EXPECT_EQ(mismatch.error().code, ErrorCode::kSignatureInvalid);
}

// RFC 7427 Appendix A AlgorithmIdentifier encodings.
TEST(SignatureTest, AlgorithmIdentifiersMatchRfc7427) {
  EXPECT_EQ(*SignatureAlgorithmIdentifier(KeyType::kEcdsaP256,
                                          HashAlgorithm::kSha2_256, false),
            Hex("300a06082a8648ce3d040302"));
  EXPECT_EQ(*SignatureAlgorithmIdentifier(KeyType::kEcdsaP384,
                                          HashAlgorithm::kSha2_384, false),
            Hex("300a06082a8648ce3d040303"));
  EXPECT_EQ(*SignatureAlgorithmIdentifier(KeyType::kEcdsaP521,
                                          HashAlgorithm::kSha2_512, false),
            Hex("300a06082a8648ce3d040304"));
  EXPECT_EQ(*SignatureAlgorithmIdentifier(KeyType::kRsa,
                                          HashAlgorithm::kSha2_256, false),
            Hex("300d06092a864886f70d01010b0500"));
  EXPECT_EQ(*SignatureAlgorithmIdentifier(KeyType::kRsa,
                                          HashAlgorithm::kSha2_512, false),
            Hex("300d06092a864886f70d01010d0500"));
  // RSASSA-PSS, SHA-256, MGF1-SHA-256, salt 32, trailer 1 (A.4.3).
  EXPECT_EQ(*SignatureAlgorithmIdentifier(KeyType::kRsa,
                                          HashAlgorithm::kSha2_256, true),
            Hex("304606092a864886f70d01010a3039a00f300d06096086480165030402"
                "010500a11c301a06092a864886f70d010108300d060960864801650304"
                "02010500a203020120a303020101"));
  EXPECT_FALSE(SignatureAlgorithmIdentifier(KeyType::kEd25519,
                                            HashAlgorithm::kSha2_256, false)
                   .ok());
  EXPECT_FALSE(SignatureAlgorithmIdentifier(KeyType::kEcdsaP256,
                                            HashAlgorithm::kIdentity, false)
                   .ok());
}

struct SigCase {
  const char* key;
  HashAlgorithm hash;
  bool pss;
};

class DigitalSignature : public ::testing::TestWithParam<SigCase> {};

TEST_P(DigitalSignature, SignsAndVerifies) {
  PrivateKey key = LoadKey(GetParam().key);
  Bytes octets = Str("InitiatorSignedOctets");
  SignatureOptions opts{GetParam().hash, GetParam().pss};
  auto auth = SignAuth(key, AuthMethod::kDigitalSignature, opts, View(octets),
                       Rng());
  ASSERT_TRUE(auth.ok()) << auth.error().message;
  auto alg = SignatureAlgorithmIdentifier(key.type(), GetParam().hash,
                                          GetParam().pss);
  ASSERT_EQ((*auth)[0], alg->size());
  EXPECT_TRUE(std::equal(alg->begin(), alg->end(), auth->begin() + 1));
  EXPECT_TRUE(VerifyAuth(key.public_key(), AuthMethod::kDigitalSignature,
                         View(*auth), View(octets), kAllHashes)
                  .ok());
  // Different octets, flipped signature, or a hash we never offered: no.
  EXPECT_FALSE(VerifyAuth(key.public_key(), AuthMethod::kDigitalSignature,
                          View(*auth), View(Str("other")), kAllHashes)
                   .ok());
  Bytes flipped = *auth;
  flipped[flipped.size() - 3] ^= 0x10;
  EXPECT_FALSE(VerifyAuth(key.public_key(), AuthMethod::kDigitalSignature,
                          View(flipped), View(octets), kAllHashes)
                   .ok());
  std::vector<HashAlgorithm> only_identity = {HashAlgorithm::kIdentity};
  auto refused = VerifyAuth(key.public_key(), AuthMethod::kDigitalSignature,
                            View(*auth), View(octets), only_identity);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.error().message.find("SIGNATURE_HASH_ALGORITHMS"),
            std::string::npos);
}

INSTANTIATE_TEST_SUITE_P(
    Keys, DigitalSignature,
    ::testing::Values(SigCase{"p256.pem", HashAlgorithm::kSha2_256, false},
                      SigCase{"p256.pem", HashAlgorithm::kSha2_384, false},
                      SigCase{"p384.pem", HashAlgorithm::kSha2_384, false},
                      SigCase{"p521.pem", HashAlgorithm::kSha2_512, false},
                      SigCase{"rsa2048.pem", HashAlgorithm::kSha2_256, true},
                      SigCase{"rsa2048.pem", HashAlgorithm::kSha2_512, true},
                      SigCase{"rsa2048.pem", HashAlgorithm::kSha2_256, false},
                      SigCase{"rsa2048.pem", HashAlgorithm::kSha2_384, false}));

// Signatures produced by the OpenSSL command line over message.bin verify.
TEST(SignatureTest, VerifiesOpenSslSignatures) {
  const Bytes message = ReadFile("message.bin");
  struct Case {
    const char* pub;
    const char* sig;
    KeyType type;
    HashAlgorithm hash;
    bool pss;
  };
  for (const Case& c :
       {Case{"p256.pub.der", "p256-sha256.sig", KeyType::kEcdsaP256,
             HashAlgorithm::kSha2_256, false},
        Case{"p384.pub.der", "p384-sha384.sig", KeyType::kEcdsaP384,
             HashAlgorithm::kSha2_384, false},
        Case{"rsa2048.pub.der", "rsa2048-pss-sha256.sig", KeyType::kRsa,
             HashAlgorithm::kSha2_256, true},
        Case{"rsa2048.pub.der", "rsa2048-pkcs1-sha512.sig", KeyType::kRsa,
             HashAlgorithm::kSha2_512, false},
        Case{"ed25519.pub.der", "ed25519.sig", KeyType::kEd25519,
             HashAlgorithm::kIdentity, false}}) {
    SCOPED_TRACE(c.sig);
    auto pub = LoadPublicKeyFile(std::string(kKeys) + c.pub);
    ASSERT_TRUE(pub.ok()) << pub.error().message;
    ASSERT_EQ(pub->type(), c.type);
    auto alg = SignatureAlgorithmIdentifier(c.type, c.hash, c.pss);
    ASSERT_TRUE(alg.ok());
    Bytes auth = {static_cast<uint8_t>(alg->size())};
    auth.insert(auth.end(), alg->begin(), alg->end());
    Bytes sig = ReadFile(c.sig);
    auth.insert(auth.end(), sig.begin(), sig.end());
    auto st = VerifyAuth(*pub, AuthMethod::kDigitalSignature, View(auth),
                         View(message), kAllHashes);
    EXPECT_TRUE(st.ok()) << st.error().message;
    EXPECT_FALSE(VerifyAuth(*pub, AuthMethod::kDigitalSignature, View(auth),
                            View(Str("not the message")), kAllHashes)
                     .ok());
  }
}

TEST(SignatureTest, AlgorithmIdentifierMustFitTheKey) {
  PrivateKey rsa = LoadKey("rsa2048.pem");
  PrivateKey p256 = LoadKey("p256.pem");
  Bytes octets = Str("octets");
  auto ecdsa_auth = SignAuth(p256, AuthMethod::kDigitalSignature,
                             {HashAlgorithm::kSha2_256, false}, View(octets),
                             Rng());
  ASSERT_TRUE(ecdsa_auth.ok());
  auto st = VerifyAuth(rsa.public_key(), AuthMethod::kDigitalSignature,
                       View(*ecdsa_auth), View(octets), kAllHashes);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code, ErrorCode::kSignatureInvalid);
  EXPECT_NE(st.error().message.find("ECDSA"), std::string::npos);
}

TEST(SignatureTest, MalformedAuthDataIsRejectedWithoutCrashing) {
  PrivateKey p256 = LoadKey("p256.pem");
  const Bytes octets = Str("octets");
  auto good = SignAuth(p256, AuthMethod::kDigitalSignature,
                       {HashAlgorithm::kSha2_256, false}, View(octets), Rng());
  ASSERT_TRUE(good.ok());
  std::vector<Bytes> bad = {
      {},                                  // empty
      {0},                                 // zero-length AlgorithmIdentifier
      {0x40, 0x30},                        // length beyond the data
      Bytes(good->begin(), good->begin() + 13),  // AlgId only, no signature
      Hex("0530030601ff00"),               // garbage DER
  };
  // Every truncation of a valid payload too.
  for (size_t cut = 0; cut < good->size(); cut += 7) {
    bad.emplace_back(good->begin(), good->begin() + cut);
  }
  for (const Bytes& b : bad) {
    auto st = VerifyAuth(p256.public_key(), AuthMethod::kDigitalSignature,
                         View(b), View(octets), kAllHashes);
    ASSERT_FALSE(st.ok());
    EXPECT_EQ(st.error().code, ErrorCode::kSignatureInvalid);
  }
}

TEST(LegacySignatureTest, EcdsaMethodsUseFixedLengthRAndS) {
  struct Case {
    const char* key;
    AuthMethod method;
    size_t sig_bytes;
  };
  for (const Case& c : {Case{"p256.pem", AuthMethod::kEcdsa256, 64},
                        Case{"p384.pem", AuthMethod::kEcdsa384, 96},
                        Case{"p521.pem", AuthMethod::kEcdsa521, 132}}) {
    PrivateKey key = LoadKey(c.key);
    Bytes octets = Str("legacy");
    auto auth = SignAuth(key, c.method, {}, View(octets), Rng());
    ASSERT_TRUE(auth.ok()) << auth.error().message;
    EXPECT_EQ(auth->size(), c.sig_bytes);
    EXPECT_TRUE(
        VerifyAuth(key.public_key(), c.method, View(*auth), View(octets), {})
            .ok());
  }
  // Method 9 demands a P-256 key.
  auto wrong = SignAuth(LoadKey("p384.pem"), AuthMethod::kEcdsa256, {},
                        View(Str("x")), Rng());
  ASSERT_FALSE(wrong.ok());
  EXPECT_NE(wrong.error().message.find("ECDSA P-256"), std::string::npos);
}

TEST(LegacySignatureTest, RsaMethodOneIsPkcs1Sha1) {
  PrivateKey key = LoadKey("rsa2048.pem");
  Bytes octets = Str("legacy rsa");
  auto auth = SignAuth(key, AuthMethod::kRsaSig, {}, View(octets), Rng());
  ASSERT_TRUE(auth.ok());
  EXPECT_EQ(auth->size(), 256u);
  EXPECT_TRUE(VerifyAuth(key.public_key(), AuthMethod::kRsaSig, View(*auth),
                         View(octets), {})
                  .ok());
  EXPECT_FALSE(VerifyAuth(key.public_key(), AuthMethod::kSharedKeyMic,
                          View(*auth), View(octets), {})
                   .ok());
}

TEST(HashNegotiationTest, PicksFirstCommonHashThatFitsTheKey) {
  using H = HashAlgorithm;
  std::vector<H> ours = {H::kSha2_512, H::kSha2_256, H::kIdentity};
  std::vector<H> peer = {H::kSha2_256, H::kSha2_384, H::kIdentity};
  EXPECT_EQ(SelectSignatureHash(KeyType::kEcdsaP256, ours, peer),
            H::kSha2_256);
  EXPECT_EQ(SelectSignatureHash(KeyType::kEd25519, ours, peer),
            H::kIdentity);
  std::vector<H> peer_without_identity = {H::kSha2_256};
  EXPECT_EQ(SelectSignatureHash(KeyType::kEd25519, ours,
                                peer_without_identity),
            std::nullopt);
  EXPECT_EQ(SelectSignatureHash(KeyType::kRsa, ours, {}), std::nullopt);
  std::vector<H> sha1_only = {H::kSha1};
  std::vector<H> ours_with_sha1 = {H::kSha1};
  EXPECT_EQ(SelectSignatureHash(KeyType::kEcdsaP256, ours_with_sha1,
                                sha1_only),
            std::nullopt);
  EXPECT_EQ(SelectSignatureHash(KeyType::kRsa, ours_with_sha1, sha1_only),
            H::kSha1);
}

}  // namespace
}  // namespace ike::crypto
