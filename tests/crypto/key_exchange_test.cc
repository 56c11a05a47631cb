// Key exchange against RFC 5903 / RFC 7748 vectors, and the RFC 6989
// peer-value checks for every group.
#include "ike/crypto/key_exchange.h"

#include <botan/bigint.h>
#include <botan/dl_group.h>
#include <botan/ec_group.h>
#include <gtest/gtest.h>

#include "tests/crypto/vectors.h"

namespace ike::crypto {
namespace {

using testing::Hex;
using testing::ReadVectors;
using testing::ToBytes;

DeterministicRandomSource& Rng() {
  static DeterministicRandomSource rng(Bytes{1, 2, 3, 4, 5, 6, 7, 8});
  return rng;
}

TEST(KeyExchangeTest, Rfc5903Ecp) {
  int checked = 0;
  for (const auto& v : ReadVectors("ecdh_rfc5903.txt")) {
    const auto group = static_cast<KeGroup>(std::stoi(v.at("group")));
    SCOPED_TRACE(v.at("group"));
    auto i = KeyExchange::FromPrivateValue(group, View(Hex(v.at("i"))), Rng());
    auto r = KeyExchange::FromPrivateValue(group, View(Hex(v.at("r"))), Rng());
    ASSERT_TRUE(i.ok()) << i.error().message;
    ASSERT_TRUE(r.ok()) << r.error().message;
    if (v.count("gi")) {
      EXPECT_EQ((*i)->public_value(), Hex(v.at("gi")));
      EXPECT_EQ((*r)->public_value(), Hex(v.at("gr")));
    }
    auto s1 = (*i)->ComputeSharedSecret(View((*r)->public_value()));
    auto s2 = (*r)->ComputeSharedSecret(View((*i)->public_value()));
    ASSERT_TRUE(s1.ok()) << s1.error().message;
    ASSERT_TRUE(s2.ok()) << s2.error().message;
    EXPECT_EQ(ToBytes(*s1), Hex(v.at("gir")));
    EXPECT_EQ(ToBytes(*s2), Hex(v.at("gir")));
    ++checked;
  }
  EXPECT_EQ(checked, 3);
}

TEST(KeyExchangeTest, Rfc7748X25519) {
  auto vectors = ReadVectors("x25519_rfc7748.txt");
  ASSERT_EQ(vectors.size(), 3u);
  for (size_t n = 0; n < 2; ++n) {
    const auto& v = vectors[n];
    auto kx = KeyExchange::FromPrivateValue(KeGroup::kCurve25519,
                                            View(Hex(v.at("scalar"))), Rng());
    ASSERT_TRUE(kx.ok());
    auto out = (*kx)->ComputeSharedSecret(View(Hex(v.at("u"))));
    ASSERT_TRUE(out.ok()) << out.error().message;
    EXPECT_EQ(ToBytes(*out), Hex(v.at("out")));
  }
  const auto& v = vectors[2];
  auto alice = KeyExchange::FromPrivateValue(
      KeGroup::kCurve25519, View(Hex(v.at("alice_private"))), Rng());
  auto bob = KeyExchange::FromPrivateValue(
      KeGroup::kCurve25519, View(Hex(v.at("bob_private"))), Rng());
  ASSERT_TRUE(alice.ok() && bob.ok());
  EXPECT_EQ((*alice)->public_value(), Hex(v.at("alice_public")));
  EXPECT_EQ((*bob)->public_value(), Hex(v.at("bob_public")));
  auto s1 = (*alice)->ComputeSharedSecret(View((*bob)->public_value()));
  auto s2 = (*bob)->ComputeSharedSecret(View((*alice)->public_value()));
  ASSERT_TRUE(s1.ok() && s2.ok());
  EXPECT_EQ(ToBytes(*s1), Hex(v.at("shared")));
  EXPECT_EQ(ToBytes(*s2), Hex(v.at("shared")));
}

class EveryGroup : public ::testing::TestWithParam<KeGroup> {};

TEST_P(EveryGroup, GeneratedPairsAgreeWithFixedLengths) {
  auto info = LookupKeGroup(GetParam());
  ASSERT_NE(info, nullptr);
  auto a = KeyExchange::Generate(GetParam(), Rng());
  auto b = KeyExchange::Generate(GetParam(), Rng());
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ((*a)->public_value().size(), info->public_value_bytes);
  auto s1 = (*a)->ComputeSharedSecret(View((*b)->public_value()));
  auto s2 = (*b)->ComputeSharedSecret(View((*a)->public_value()));
  ASSERT_TRUE(s1.ok()) << s1.error().message;
  ASSERT_TRUE(s2.ok());
  EXPECT_EQ(s1->size(), info->shared_secret_bytes);
  EXPECT_EQ(*s1, *s2);
}

TEST_P(EveryGroup, RejectsWrongLengths) {
  auto info = LookupKeGroup(GetParam());
  auto kx = KeyExchange::Generate(GetParam(), Rng());
  ASSERT_TRUE(kx.ok());
  Bytes good = (*kx)->public_value();
  for (size_t len : {size_t(0), good.size() - 1, good.size() + 1}) {
    Bytes bad(good.begin(), good.end());
    bad.resize(len, 0x01);
    auto r = (*kx)->ComputeSharedSecret(View(bad));
    ASSERT_FALSE(r.ok()) << "length " << len;
    EXPECT_EQ(r.error().code, ErrorCode::kInvalidPublicValue);
    EXPECT_NE(r.error().message.find(info->display_name), std::string::npos);
  }
}

INSTANTIATE_TEST_SUITE_P(
    AllGroups, EveryGroup,
    ::testing::Values(KeGroup::kModp2048, KeGroup::kModp3072,
                      KeGroup::kModp4096, KeGroup::kEcp256, KeGroup::kEcp384,
                      KeGroup::kEcp521, KeGroup::kCurve25519),
    [](const auto& info) {
      return LookupKeGroup(info.param)->display_name;
    });

// RFC 6989 section 2.1: for MODP groups, y must satisfy 1 < y < p-1.
class ModpGroup : public ::testing::TestWithParam<KeGroup> {};

TEST_P(ModpGroup, RejectsOutOfRangeValues) {
  auto info = LookupKeGroup(GetParam());
  Botan::DL_Group group(info->botan_group_name);
  const Botan::BigInt& p = group.get_p();
  auto kx = KeyExchange::Generate(GetParam(), Rng());
  ASSERT_TRUE(kx.ok());
  for (const Botan::BigInt& y :
       {Botan::BigInt(0), Botan::BigInt(1), p - 1, p, p + 1}) {
    Bytes value = Botan::unlock(
        Botan::BigInt::encode_1363(y, info->public_value_bytes));
    value.resize(info->public_value_bytes);  // p+1 still fits (top bits 1)
    auto r = (*kx)->ComputeSharedSecret(View(value));
    ASSERT_FALSE(r.ok()) << "y = " << y.to_hex_string();
    EXPECT_EQ(r.error().code, ErrorCode::kInvalidPublicValue);
    EXPECT_FALSE(ValidatePeerKeValue(GetParam(), View(value)).ok());
  }
  // All ones (> p) is rejected too; 2 is the smallest acceptable value.
  EXPECT_FALSE(ValidatePeerKeValue(
                   GetParam(), View(Bytes(info->public_value_bytes, 0xff)))
                   .ok());
  Bytes two(info->public_value_bytes, 0);
  two.back() = 2;
  EXPECT_TRUE(ValidatePeerKeValue(GetParam(), View(two)).ok());
}

INSTANTIATE_TEST_SUITE_P(Modp, ModpGroup,
                         ::testing::Values(KeGroup::kModp2048,
                                           KeGroup::kModp3072,
                                           KeGroup::kModp4096));

// RFC 6989 section 2.3: ECP values must be points on the curve; the point
// at infinity has no x||y encoding and (0,0) is not on these curves.
class EcpGroup : public ::testing::TestWithParam<KeGroup> {};

TEST_P(EcpGroup, RejectsPointsOffTheCurve) {
  auto info = LookupKeGroup(GetParam());
  auto kx = KeyExchange::Generate(GetParam(), Rng());
  ASSERT_TRUE(kx.ok());
  Bytes peer = (*kx)->public_value();
  // Flip the last bit of y: the result is (almost surely) off the curve.
  Bytes off = peer;
  off.back() ^= 0x01;
  // (0, 0) stands in for the identity.
  Bytes zero(info->public_value_bytes, 0);
  // x = p: coordinate out of range.
  Botan::EC_Group group(info->botan_group_name);
  const size_t coord = info->public_value_bytes / 2;
  Bytes x_is_p = Botan::unlock(Botan::BigInt::encode_1363(group.get_p(), coord));
  x_is_p.insert(x_is_p.end(), peer.begin() + coord, peer.end());
  for (const Bytes& bad : {off, zero, x_is_p}) {
    auto r = (*kx)->ComputeSharedSecret(View(bad));
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code, ErrorCode::kInvalidPublicValue);
  }
  EXPECT_TRUE(ValidatePeerKeValue(GetParam(), View(peer)).ok());
}

INSTANTIATE_TEST_SUITE_P(Ecp, EcpGroup,
                         ::testing::Values(KeGroup::kEcp256, KeGroup::kEcp384,
                                           KeGroup::kEcp521));

// RFC 8031 section 2.2 / RFC 7748 section 6.1: a low-order point gives an
// all-zero shared secret, which must be rejected.
TEST(KeyExchangeTest, X25519RejectsLowOrderPoints) {
  auto kx = KeyExchange::Generate(KeGroup::kCurve25519, Rng());
  ASSERT_TRUE(kx.ok());
  Bytes zero(32, 0);
  Bytes one(32, 0);
  one[0] = 1;
  for (const Bytes& low : {zero, one}) {
    auto r = (*kx)->ComputeSharedSecret(View(low));
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code, ErrorCode::kInvalidPublicValue);
    EXPECT_NE(r.error().message.find("all zero"), std::string::npos);
  }
}

TEST(KeyExchangeTest, UnsupportedGroupIsTypedError) {
  auto kx = KeyExchange::Generate(KeGroup::kModp1024, Rng());
  ASSERT_FALSE(kx.ok());
  EXPECT_EQ(kx.error().code, ErrorCode::kUnsupported);
  EXPECT_EQ(ValidatePeerKeValue(KeGroup::kCurve448, View(Bytes(56, 9)))
                .error()
                .code,
            ErrorCode::kUnsupported);
}

}  // namespace
}  // namespace ike::crypto
