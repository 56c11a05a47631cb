// PRF, prf+ and the IKEv2 key derivation functions against published
// vectors (RFC 4231/4868, NIST CAVP SP 800-135 IKEv2).
#include "ike/crypto/prf.h"

#include <gtest/gtest.h>

#include "ike/crypto/key_derivation.h"
#include "tests/crypto/vectors.h"

namespace ike::crypto {
namespace {

using testing::Hex;
using testing::ReadVectors;
using testing::ToBytes;

PrfId PrfByName(const std::string& name) {
  if (name == "HMAC-SHA1") return PrfId::kHmacSha1;
  if (name == "HMAC-SHA256") return PrfId::kHmacSha2_256;
  if (name == "HMAC-SHA384") return PrfId::kHmacSha2_384;
  if (name == "HMAC-SHA512") return PrfId::kHmacSha2_512;
  throw std::runtime_error("unknown prf " + name);
}

TEST(PrfTest, HmacSha2KnownAnswers) {
  int checked = 0;
  for (const auto& v : ReadVectors("hmac_sha2.txt")) {
    if (!v.count("prf")) continue;
    auto prf = Prf::Create(PrfByName(v.at("prf")));
    ASSERT_TRUE(prf.ok());
    EXPECT_EQ(ToBytes(prf->Compute(View(Hex(v.at("key"))),
                                   View(Hex(v.at("data"))))),
              Hex(v.at("mac")))
        << v.at("prf");
    ++checked;
  }
  EXPECT_EQ(checked, 5);
}

TEST(PrfTest, ComputeOverPartsEqualsConcatenation) {
  auto prf = Prf::Create(PrfId::kHmacSha2_256);
  ASSERT_TRUE(prf.ok());
  Bytes key = Hex("0b0b0b0b");
  Bytes a = Hex("48692054"), b = Hex("68657265");
  EXPECT_EQ(prf->Compute(View(key), {View(a), View(b)}),
            prf->Compute(View(key), View(Hex("4869205468657265"))));
}

TEST(PrfTest, PrfPlusFollowsRfc7296Construction) {
  auto prf = Prf::Create(PrfId::kHmacSha2_256);
  ASSERT_TRUE(prf.ok());
  Bytes key = Hex("000102030405060708090a0b0c0d0e0f");
  Bytes seed = Hex("f0f1f2f3");
  auto out = prf->Expand(View(key), View(seed), 70);
  ASSERT_TRUE(out.ok());
  ASSERT_EQ(out->size(), 70u);
  // T1 = prf(K, S | 0x01), T2 = prf(K, T1 | S | 0x02), T3 = ...
  Bytes s1 = seed;
  s1.push_back(1);
  Secret t1 = prf->Compute(View(key), View(s1));
  Bytes s2(t1.begin(), t1.end());
  s2.insert(s2.end(), seed.begin(), seed.end());
  s2.push_back(2);
  Secret t2 = prf->Compute(View(key), View(s2));
  EXPECT_TRUE(std::equal(t1.begin(), t1.end(), out->begin()));
  EXPECT_TRUE(std::equal(t2.begin(), t2.end(), out->begin() + 32));
}

TEST(PrfTest, PrfPlusRefusesMoreThan255Blocks) {
  auto prf = Prf::Create(PrfId::kHmacSha2_256);
  ASSERT_TRUE(prf.ok());
  Bytes key(32, 1);
  EXPECT_TRUE(prf->Expand(View(key), {}, 255 * 32).ok());
  auto too_long = prf->Expand(View(key), {}, 255 * 32 + 1);
  ASSERT_FALSE(too_long.ok());
  EXPECT_EQ(too_long.error().code, ErrorCode::kInvalidArgument);
}

TEST(PrfTest, UnsupportedPrfIsTypedError) {
  auto prf = Prf::Create(PrfId::kAes128Xcbc);
  ASSERT_FALSE(prf.ok());
  EXPECT_EQ(prf.error().code, ErrorCode::kUnsupported);
}

class CavpIkev2Kdf : public ::testing::Test {
 protected:
  void SetUp() override {
    auto all = ReadVectors("ikev2_kdf_cavp.txt");
    ASSERT_EQ(all.size(), 1u);
    v_ = all[0];
    prf_ = PrfByName(v_.at("prf"));
  }
  Bytes F(const char* name) { return Hex(v_.at(name)); }
  // SK_d is the first prf-output-sized slice of DKM.
  Bytes SkD() {
    Bytes dkm = F("DKM");
    return Bytes(dkm.begin(), dkm.begin() + 20);
  }
  testing::Record v_;
  PrfId prf_ = PrfId::kHmacSha1;
};

TEST_F(CavpIkev2Kdf, Skeyseed) {
  auto skeyseed = ComputeSkeyseed(prf_, View(F("Ni")), View(F("Nr")),
                                  View(F("gir")));
  ASSERT_TRUE(skeyseed.ok());
  EXPECT_EQ(ToBytes(*skeyseed), F("SKEYSEED"));
}

TEST_F(CavpIkev2Kdf, DerivedKeyingMaterial) {
  auto prf = Prf::Create(prf_);
  ASSERT_TRUE(prf.ok());
  Bytes seed = F("Ni");
  for (const char* part : {"Nr", "SPIi", "SPIr"}) {
    Bytes p = F(part);
    seed.insert(seed.end(), p.begin(), p.end());
  }
  Bytes expected = F("DKM");
  auto dkm = prf->Expand(View(F("SKEYSEED")), View(seed), expected.size());
  ASSERT_TRUE(dkm.ok());
  EXPECT_EQ(ToBytes(*dkm), expected);
}

TEST_F(CavpIkev2Kdf, IkeSaKeysAreSlicesOfDkm) {
  // HMAC-SHA1 PRF, HMAC-SHA1-96 integrity, AES-CBC-128:
  // SK_d 20 | SK_ai 20 | SK_ar 20 | SK_ei 16 | SK_er 16 | SK_pi 20 | SK_pr 20.
  TransformSet set{EncrId::kAesCbc, 128, PrfId::kHmacSha1,
                   IntegId::kHmacSha1_96, KeGroup::kModp2048};
  auto keys = DeriveIkeSaKeys(set, View(F("SKEYSEED")), View(F("Ni")),
                              View(F("Nr")), View(F("SPIi")), View(F("SPIr")));
  ASSERT_TRUE(keys.ok()) << keys.error().message;
  Bytes dkm = F("DKM");
  auto slice = [&](size_t off, size_t len) {
    return Bytes(dkm.begin() + off, dkm.begin() + off + len);
  };
  EXPECT_EQ(ToBytes(keys->sk_d), slice(0, 20));
  EXPECT_EQ(ToBytes(keys->sk_ai), slice(20, 20));
  EXPECT_EQ(ToBytes(keys->sk_ar), slice(40, 20));
  EXPECT_EQ(ToBytes(keys->sk_ei), slice(60, 16));
  EXPECT_EQ(ToBytes(keys->sk_er), slice(76, 16));
  EXPECT_EQ(ToBytes(keys->sk_pi), slice(92, 20));
  EXPECT_EQ(ToBytes(keys->sk_pr), slice(112, 20));
}

TEST_F(CavpIkev2Kdf, ChildKeymatWithoutKeyExchange) {
  Bytes sk_d = SkD();
  Bytes expected = F("DKM_child");
  auto keymat = DeriveChildKeymat(prf_, View(sk_d), {}, View(F("Ni")),
                                  View(F("Nr")), expected.size());
  ASSERT_TRUE(keymat.ok());
  EXPECT_EQ(ToBytes(*keymat), expected);
}

TEST_F(CavpIkev2Kdf, ChildKeymatWithKeyExchange) {
  Bytes sk_d = SkD();
  Bytes expected = F("DKM_child_dh");
  auto keymat = DeriveChildKeymat(prf_, View(sk_d), View(F("gir_new")),
                                  View(F("Ni")), View(F("Nr")),
                                  expected.size());
  ASSERT_TRUE(keymat.ok());
  EXPECT_EQ(ToBytes(*keymat), expected);
}

TEST_F(CavpIkev2Kdf, RekeySkeyseed) {
  Bytes sk_d = SkD();
  auto skeyseed = ComputeRekeySkeyseed(prf_, View(sk_d), View(F("gir_new")),
                                       View(F("Ni")), View(F("Nr")));
  ASSERT_TRUE(skeyseed.ok());
  EXPECT_EQ(ToBytes(*skeyseed), F("SKEYSEED_rekey"));
}

}  // namespace
}  // namespace ike::crypto
