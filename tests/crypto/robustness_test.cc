// Untrusted bytes into every parser-like entry point: random and mutated
// inputs must give typed errors (or a valid result), never an exception or
// a crash. Deterministic seeds keep failures reproducible.
#include <gtest/gtest.h>

#include "ike/crypto/auth.h"
#include "daemon/credential_files.h"
#include "ike/crypto/key_exchange.h"
#include "ike/crypto/sk_payload.h"
#include "tests/crypto/vectors.h"

namespace ike::crypto {
namespace {

using btnsd::daemon::ReadCredentialFile;
using btnsd::daemon::LoadPrivateKeyFile;

class Inputs {
 public:
  explicit Inputs(uint8_t seed) : rng_(Bytes{seed, 0x5a}) {}
  Bytes Random(size_t max_len) {
    uint8_t len_bytes[2];
    rng_.Fill(len_bytes);
    return rng_.Generate(((len_bytes[0] << 8) | len_bytes[1]) % (max_len + 1));
  }
  // `base` with a few random bytes overwritten and maybe truncated.
  Bytes Mutate(const Bytes& base) {
    Bytes out = base;
    uint8_t r[4];
    rng_.Fill(r);
    for (int i = 0; i < 1 + r[0] % 4 && !out.empty(); ++i) {
      uint8_t pos[3];
      rng_.Fill(pos);
      out[((pos[0] << 8) | pos[1]) % out.size()] ^= pos[2] | 1;
    }
    if (r[1] % 4 == 0) out.resize(((r[2] << 8) | r[3]) % (out.size() + 1));
    return out;
  }
  RandomSource& rng() { return rng_; }

 private:
  DeterministicRandomSource rng_;
};

TEST(RobustnessTest, SkUnprotectAndLocator) {
  Inputs in(1);
  TransformSet gcm{EncrId::kAesGcm16, 128, PrfId::kHmacSha2_256,
                   IntegId::kNone, KeGroup::kCurve25519};
  TransformSet cbc{EncrId::kAesCbc, 128, PrfId::kHmacSha2_256,
                   IntegId::kHmacSha2_256_128, KeGroup::kEcp256};
  auto a = SkCipher::Create(gcm, View(Bytes(20, 1)), {});
  auto b = SkCipher::Create(cbc, View(Bytes(16, 1)), View(Bytes(32, 2)));
  ASSERT_TRUE(a.ok() && b.ok());
  Bytes prefix(32, 0);
  Bytes valid = *a->Protect(View(prefix), View(Bytes(50, 3)), in.rng());
  for (int i = 0; i < 3000; ++i) {
    Bytes body = i % 2 ? in.Random(200) : in.Mutate(valid);
    EXPECT_FALSE(a->Unprotect(View(prefix), View(body)).ok() &&
                 body != valid);
    EXPECT_FALSE(b->Unprotect(View(prefix), View(body)).ok());
    Bytes message = in.Random(300);
    (void)FindSkPayload(View(message));
  }
}

TEST(RobustnessTest, PeerKeyExchangeValues) {
  Inputs in(2);
  for (KeGroup g : {KeGroup::kModp2048, KeGroup::kEcp256, KeGroup::kEcp384,
                    KeGroup::kEcp521, KeGroup::kCurve25519}) {
    auto kx = KeyExchange::Generate(g, in.rng());
    ASSERT_TRUE(kx.ok());
    const Bytes good = (*kx)->public_value();
    for (int i = 0; i < 200; ++i) {
      Bytes value = i % 2 ? in.Random(300) : in.Mutate(good);
      auto r = (*kx)->ComputeSharedSecret(View(value));
      if (!r.ok()) {
        EXPECT_TRUE(r.error().code == ErrorCode::kInvalidPublicValue);
      }
    }
  }
}

TEST(RobustnessTest, SignatureAuthPayloads) {
  Inputs in(3);
  auto key = LoadPrivateKeyFile("tests/fixtures/crypto/keys/p256.pem");
  auto rsa = LoadPrivateKeyFile("tests/fixtures/crypto/keys/rsa2048.pem");
  ASSERT_TRUE(key.ok() && rsa.ok());
  Bytes octets(100, 7);
  auto good = SignAuth(*key, AuthMethod::kDigitalSignature,
                       {HashAlgorithm::kSha2_256, false}, View(octets),
                       in.rng());
  auto pss = SignAuth(*rsa, AuthMethod::kDigitalSignature,
                      {HashAlgorithm::kSha2_256, true}, View(octets),
                      in.rng());
  ASSERT_TRUE(good.ok() && pss.ok());
  const auto hashes = SupportedSignatureHashes();
  for (int i = 0; i < 1500; ++i) {
    Bytes auth = i % 3 == 0 ? in.Random(120)
                 : i % 3 == 1 ? in.Mutate(*good)
                              : in.Mutate(*pss);
    for (AuthMethod m : {AuthMethod::kDigitalSignature, AuthMethod::kEcdsa256,
                         AuthMethod::kRsaSig}) {
      auto st = VerifyAuth(i % 3 == 2 ? rsa->public_key() : key->public_key(),
                           m, View(auth), View(octets), hashes);
      if (!st.ok()) {
        EXPECT_EQ(st.error().code, ErrorCode::kSignatureInvalid);
      }
    }
  }
}

TEST(RobustnessTest, KeysAndCertificatesFromUntrustedBytes) {
  Inputs in(4);
  auto spki = ReadCredentialFile("tests/fixtures/crypto/keys/p256.pub.der");
  auto cert = ReadCredentialFile("tests/fixtures/crypto/keys/ee.der");
  ASSERT_TRUE(spki.ok() && cert.ok());
  for (int i = 0; i < 1500; ++i) {
    Bytes a = i % 2 ? in.Random(200) : in.Mutate(*spki);
    auto pk = PublicKey::FromSpki(View(a), "fuzz");
    if (!pk.ok()) {
      EXPECT_EQ(pk.error().code, ErrorCode::kKeyLoadFailed);
    }
    Bytes c = i % 2 ? in.Random(600) : in.Mutate(*cert);
    auto chain = Certificate::ChainFromBytes(View(c), "fuzz");
    if (!chain.ok()) {
      EXPECT_EQ(chain.error().code, ErrorCode::kKeyLoadFailed);
    }
    auto priv = PrivateKey::FromBytes(View(a), "fuzz");
    EXPECT_FALSE(priv.ok());
  }
}

}  // namespace
}  // namespace ike::crypto
