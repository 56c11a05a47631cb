// SK payload protection: round trips for every cipher, and rejection of
// tampered, truncated and badly padded bodies.
#include "ike/crypto/sk_payload.h"

#include <set>

#include <botan/aead.h>
#include <gtest/gtest.h>

#include "tests/crypto/vectors.h"

namespace ike::crypto {
namespace {

using testing::ToBytes;

DeterministicRandomSource& Rng() {
  static DeterministicRandomSource rng(Bytes{42});
  return rng;
}

struct Suite {
  const char* name;
  TransformSet set;
};

std::vector<Suite> AllSuites() {
  auto aead = [](EncrId id, uint16_t bits) {
    return TransformSet{id, bits, PrfId::kHmacSha2_256, IntegId::kNone,
                        KeGroup::kCurve25519};
  };
  auto cbc = [](uint16_t bits, IntegId integ) {
    return TransformSet{EncrId::kAesCbc, bits, PrfId::kHmacSha2_256, integ,
                        KeGroup::kCurve25519};
  };
  return {
      {"AesGcm16_128", aead(EncrId::kAesGcm16, 128)},
      {"AesGcm16_192", aead(EncrId::kAesGcm16, 192)},
      {"AesGcm16_256", aead(EncrId::kAesGcm16, 256)},
      {"AesGcm12_256", aead(EncrId::kAesGcm12, 256)},
      {"AesGcm8_128", aead(EncrId::kAesGcm8, 128)},
      {"ChaCha20Poly1305", aead(EncrId::kChaCha20Poly1305, 0)},
      {"AesCbc128_Sha256", cbc(128, IntegId::kHmacSha2_256_128)},
      {"AesCbc192_Sha384", cbc(192, IntegId::kHmacSha2_384_192)},
      {"AesCbc256_Sha512", cbc(256, IntegId::kHmacSha2_512_256)},
      {"AesCbc128_Sha1", cbc(128, IntegId::kHmacSha1_96)},
  };
}

// IKE header (28 bytes) + SK generic payload header, lengths filled in for
// a body of `body_length` bytes.
Bytes MessagePrefix(size_t body_length, uint8_t first_inner = 35) {
  Bytes m = {1, 2, 3, 4, 5, 6, 7, 8,  // SPIi
             9, 10, 11, 12, 13, 14, 15, 16,  // SPIr
             46, 0x20, 35, 0x08,  // next SK, version 2.0, IKE_AUTH, I flag
             0, 0, 0, 1};         // message ID
  const size_t total = 28 + 4 + body_length;
  m.push_back(uint8_t(total >> 24));
  m.push_back(uint8_t(total >> 16));
  m.push_back(uint8_t(total >> 8));
  m.push_back(uint8_t(total));
  const size_t sk_len = 4 + body_length;
  m.insert(m.end(), {first_inner, 0, uint8_t(sk_len >> 8), uint8_t(sk_len)});
  return m;
}

class SkPayloadTest : public ::testing::TestWithParam<Suite> {
 protected:
  void SetUp() override {
    const TransformSet& set = GetParam().set;
    auto encr = LookupEncr(set.encr, set.encr_key_bits);
    auto integ = LookupInteg(set.integ);
    encr_key_ = Rng().Generate(encr->keymat_bytes());
    integ_key_ = Rng().Generate(integ->key_bytes);
    auto c = SkCipher::Create(set, View(encr_key_), View(integ_key_));
    ASSERT_TRUE(c.ok()) << c.error().message;
    cipher_.emplace(std::move(*c));
  }

  // A whole message: prefix || body.
  Bytes Seal(const Bytes& plaintext) {
    Bytes prefix = MessagePrefix(cipher_->BodyLength(plaintext.size()));
    auto body = cipher_->Protect(View(prefix), View(plaintext), Rng());
    EXPECT_TRUE(body.ok());
    prefix.insert(prefix.end(), body->begin(), body->end());
    return prefix;
  }

  Result<SkPlaintext> Open(const Bytes& message) {
    return cipher_->Unprotect(ByteView(message).first(32),
                              ByteView(message).subspan(32));
  }

  Bytes encr_key_, integ_key_;
  std::optional<SkCipher> cipher_;
};

TEST_P(SkPayloadTest, RoundTripsAtManyLengths) {
  for (size_t len : {size_t(1), size_t(15), size_t(16), size_t(17),
                     size_t(300), size_t(1400)}) {
    Bytes plaintext = Rng().Generate(len);
    Bytes message = Seal(plaintext);
    EXPECT_EQ(message.size(), 32 + cipher_->BodyLength(len));
    const size_t ct = message.size() - 32 - cipher_->iv_size() -
                      cipher_->icv_size();
    EXPECT_EQ(ct % cipher_->block_size(), 0u);
    auto opened = Open(message);
    ASSERT_TRUE(opened.ok()) << opened.error().message;
    EXPECT_EQ(opened->payloads, plaintext) << "length " << len;
  }
}

TEST_P(SkPayloadTest, IvsNeverRepeat) {
  std::set<Bytes> ivs;
  Bytes prefix = MessagePrefix(cipher_->BodyLength(10));
  for (int i = 0; i < 2000; ++i) {
    auto body = cipher_->Protect(View(prefix), View(Bytes(10, 1)), Rng());
    ASSERT_TRUE(body.ok());
    ivs.emplace(body->begin(), body->begin() + cipher_->iv_size());
  }
  EXPECT_EQ(ivs.size(), 2000u);
  // A fresh SkCipher for the same key starts its counter elsewhere.
  auto again = SkCipher::Create(GetParam().set, View(encr_key_),
                                View(integ_key_));
  ASSERT_TRUE(again.ok());
  auto body = again->Protect(View(prefix), View(Bytes(10, 1)), Rng());
  ASSERT_TRUE(body.ok());
  EXPECT_EQ(ivs.count(Bytes(body->begin(), body->begin() + cipher_->iv_size())),
            0u);
}

TEST_P(SkPayloadTest, AnyFlippedBitFailsTheIntegrityCheck) {
  Bytes message = Seal(Bytes(100, 0x33));
  // Header, SK header, IV, ciphertext, ICV: one bit in each region.
  for (size_t pos : {size_t(3), size_t(29), size_t(33),
                     size_t(32 + cipher_->iv_size() + 5),
                     message.size() - 1}) {
    Bytes tampered = message;
    tampered[pos] ^= 0x01;
    auto r = Open(tampered);
    ASSERT_FALSE(r.ok()) << "byte " << pos;
    EXPECT_EQ(r.error().code, ErrorCode::kIntegrityCheckFailed);
  }
}

TEST_P(SkPayloadTest, WrongKeyFails) {
  Bytes message = Seal(Bytes(40, 1));
  Bytes other = encr_key_;
  other[0] ^= 0x80;
  Bytes other_integ = integ_key_;
  if (!other_integ.empty()) other_integ[0] ^= 0x80;
  auto c = SkCipher::Create(GetParam().set, View(other), View(other_integ));
  ASSERT_TRUE(c.ok());
  auto r = c->Unprotect(ByteView(message).first(32),
                        ByteView(message).subspan(32));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kIntegrityCheckFailed);
}

TEST_P(SkPayloadTest, TruncatedBodiesAreRejected) {
  Bytes message = Seal(Bytes(48, 7));
  for (size_t cut = 32; cut < message.size(); ++cut) {
    Bytes truncated(message.begin(), message.begin() + cut);
    auto r = Open(truncated);
    ASSERT_FALSE(r.ok()) << "cut at " << cut;
    EXPECT_TRUE(r.error().code == ErrorCode::kMalformed ||
                r.error().code == ErrorCode::kIntegrityCheckFailed);
  }
}

TEST_P(SkPayloadTest, ExplicitIvAndPaddingAreDeterministic) {
  Bytes iv(cipher_->iv_size(), 0xab);
  Bytes plaintext(31, 0x11);  // 31 + pad + 1 aligns with 0 or 16 bytes
  SkProtectOptions opts;
  opts.iv = iv;
  opts.padding = Bytes(cipher_->block_size() == 16 ? 16 : 0, 0xee);
  Bytes prefix = MessagePrefix(cipher_->BodyLength(31, opts.padding->size()));
  auto a = cipher_->Protect(View(prefix), View(plaintext), Rng(), opts);
  auto b = cipher_->Protect(View(prefix), View(plaintext), Rng(), opts);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(*a, *b);
  EXPECT_TRUE(std::equal(iv.begin(), iv.end(), a->begin()));
  auto opened = cipher_->Unprotect(View(prefix), View(*a));
  ASSERT_TRUE(opened.ok());
  EXPECT_EQ(opened->padding, *opts.padding);
  // Padding that does not align the plaintext is refused.
  if (cipher_->block_size() > 1) {
    opts.padding = Bytes(3, 0);
    EXPECT_FALSE(cipher_->Protect(View(prefix), View(plaintext), Rng(), opts)
                     .ok());
  }
}

// Ciphers of destroyed SkCiphers are re-keyed for the next ones: a reused
// object must give the bytes a fresh one gives, and keep no old key.
TEST_P(SkPayloadTest, ReusedCiphersMatchFreshOnes) {
  const TransformSet& set = GetParam().set;
  Bytes other = encr_key_;
  other[0] ^= 0x01;
  Bytes other_integ = integ_key_;
  if (!other_integ.empty()) other_integ[0] ^= 0x01;
  SkProtectOptions opts;
  opts.iv = Bytes(cipher_->iv_size(), 0x5c);
  Bytes plaintext(45, 0x77);
  Bytes prefix = MessagePrefix(cipher_->BodyLength(plaintext.size()));
  auto seal_once = [&](const Bytes& ek, const Bytes& ik) {
    auto c = SkCipher::Create(set, View(ek), View(ik));
    EXPECT_TRUE(c.ok());
    auto body = c->Protect(View(prefix), View(plaintext), Rng(), opts);
    EXPECT_TRUE(body.ok());
    return *body;
  };
  const Bytes expected = *cipher_->Protect(View(prefix), View(plaintext),
                                           Rng(), opts);
  for (int round = 0; round < 3; ++round) {
    Bytes with_other = seal_once(other, other_integ);
    Bytes with_ours = seal_once(encr_key_, integ_key_);
    EXPECT_EQ(with_ours, expected) << "round " << round;
    EXPECT_NE(with_other, expected) << "round " << round;
    // Opened by a reused cipher under the other key: refused.
    auto c = SkCipher::Create(set, View(other), View(other_integ));
    ASSERT_TRUE(c.ok());
    auto r = c->Unprotect(View(prefix), View(with_ours));
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code, ErrorCode::kIntegrityCheckFailed);
    auto ok = SkCipher::Create(set, View(encr_key_), View(integ_key_));
    ASSERT_TRUE(ok.ok());
    auto opened = ok->Unprotect(View(prefix), View(with_ours));
    ASSERT_TRUE(opened.ok()) << opened.error().message;
    EXPECT_EQ(opened->payloads, plaintext);
  }
}

INSTANTIATE_TEST_SUITE_P(AllCiphers, SkPayloadTest,
                         ::testing::ValuesIn(AllSuites()),
                         [](const auto& info) { return info.param.name; });

// RFC 7634 Appendix B: open the published message, then seal it again to
// the same bytes.
TEST(SkPayloadKnownAnswer, Rfc7634AppendixB) {
  auto vectors = testing::ReadVectors("chacha20poly1305_ikev2_rfc7634.txt");
  ASSERT_EQ(vectors.size(), 1u);
  const auto& v = vectors[0];
  using testing::Hex;
  Bytes key = Hex(v.at("key"));
  Bytes salt = Hex(v.at("salt"));
  key.insert(key.end(), salt.begin(), salt.end());
  TransformSet set{EncrId::kChaCha20Poly1305, 0, PrfId::kHmacSha2_256,
                   IntegId::kNone, KeGroup::kCurve25519};
  auto cipher = SkCipher::Create(set, View(key), {});
  ASSERT_TRUE(cipher.ok()) << cipher.error().message;

  Bytes message = Hex(v.at("header_and_sk"));
  const size_t prefix_len = message.size();
  for (const char* part : {"iv", "ciphertext", "icv"}) {
    Bytes b = Hex(v.at(part));
    message.insert(message.end(), b.begin(), b.end());
  }
  auto loc = FindSkPayload(View(message));
  ASSERT_TRUE(loc.ok()) << loc.error().message;
  ASSERT_EQ(loc->body_offset, prefix_len);
  ByteView prefix = ByteView(message).first(prefix_len);
  ByteView body = ByteView(message).subspan(prefix_len);

  auto opened = cipher->Unprotect(prefix, body);
  ASSERT_TRUE(opened.ok()) << opened.error().message;
  Bytes expected = Hex(v.at("plaintext"));
  ASSERT_EQ(expected.back(), 0);  // Pad Length 0: no padding
  expected.pop_back();
  EXPECT_EQ(opened->payloads, expected);
  EXPECT_TRUE(opened->padding.empty());

  SkProtectOptions opts;
  opts.iv = Hex(v.at("iv"));
  EXPECT_EQ(cipher->BodyLength(opened->payloads.size()), body.size());
  auto resealed = cipher->Protect(prefix, View(opened->payloads), Rng(), opts);
  ASSERT_TRUE(resealed.ok());
  EXPECT_EQ(*resealed, Bytes(body.begin(), body.end()));
}

// A body whose authenticated plaintext claims more padding than it has.
TEST(SkPaddingTest, AeadPadLengthBeyondPlaintextIsMalformed) {
  TransformSet set{EncrId::kAesGcm16, 128, PrfId::kHmacSha2_256,
                   IntegId::kNone, KeGroup::kCurve25519};
  Bytes key(20, 0x42);  // 16-byte key + 4-byte salt
  auto c = SkCipher::Create(set, View(key), {});
  ASSERT_TRUE(c.ok());
  Bytes iv(8, 0x01);
  Bytes plaintext = {0xaa, 0xbb, 0x07};  // pad length 7 > 2 bytes available
  Bytes prefix = MessagePrefix(8 + plaintext.size() + 16);
  auto gcm = Botan::AEAD_Mode::create_or_throw("AES-128/GCM(16)",
                                               Botan::ENCRYPTION);
  gcm->set_key(key.data(), 16);
  gcm->set_associated_data(prefix.data(), prefix.size());
  Bytes nonce(key.begin() + 16, key.end());
  nonce.insert(nonce.end(), iv.begin(), iv.end());
  gcm->start(nonce);
  Botan::secure_vector<uint8_t> buf(plaintext.begin(), plaintext.end());
  gcm->finish(buf);
  Bytes body = iv;
  body.insert(body.end(), buf.begin(), buf.end());
  auto r = c->Unprotect(View(prefix), View(body));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kMalformed);
  EXPECT_NE(r.error().message.find("Pad Length"), std::string::npos);
}

TEST(SkPaddingTest, CbcCiphertextNotBlockAlignedIsMalformed) {
  TransformSet set{EncrId::kAesCbc, 128, PrfId::kHmacSha2_256,
                   IntegId::kHmacSha2_256_128, KeGroup::kEcp256};
  Bytes ek(16, 1), ik(32, 2);
  auto c = SkCipher::Create(set, View(ek), View(ik));
  ASSERT_TRUE(c.ok());
  Bytes body(16 + 20 + 16, 0);  // 20 bytes of "ciphertext"
  auto r = c->Unprotect(View(MessagePrefix(body.size())), View(body));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kMalformed);
}

TEST(SkCipherTest, KeyLengthsAreChecked) {
  TransformSet set{EncrId::kAesGcm16, 256, PrfId::kHmacSha2_256,
                   IntegId::kNone, KeGroup::kCurve25519};
  auto c = SkCipher::Create(set, View(Bytes(32, 0)), {});  // salt missing
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.error().message.find("36"), std::string::npos);
}

TEST(FindSkPayloadTest, WalksPayloadChain) {
  Bytes body(40, 0);
  Bytes message = MessagePrefix(body.size());
  message.insert(message.end(), body.begin(), body.end());
  auto loc = FindSkPayload(View(message));
  ASSERT_TRUE(loc.ok()) << loc.error().message;
  EXPECT_EQ(loc->body_offset, 32u);
  EXPECT_EQ(loc->body_length, 40u);
  EXPECT_EQ(loc->first_inner_payload, 35);

  // An unencrypted Notify before SK (as in a fragment-capable message).
  Bytes m2(message.begin(), message.begin() + 28);
  m2[16] = 41;  // N
  Bytes notify = {46, 0, 0, 8, 0, 0, 0x40, 0x00};
  m2.insert(m2.end(), notify.begin(), notify.end());
  m2.insert(m2.end(), message.begin() + 28, message.end());
  const size_t total = m2.size();
  m2[26] = uint8_t(total >> 8);
  m2[27] = uint8_t(total);
  loc = FindSkPayload(View(m2));
  ASSERT_TRUE(loc.ok()) << loc.error().message;
  EXPECT_EQ(loc->body_offset, 40u);
}

TEST(FindSkPayloadTest, RejectsBrokenLengths) {
  Bytes body(40, 0);
  Bytes message = MessagePrefix(body.size());
  message.insert(message.end(), body.begin(), body.end());
  EXPECT_FALSE(FindSkPayload(ByteView(message).first(20)).ok());
  Bytes wrong_total = message;
  wrong_total[27] ^= 1;
  EXPECT_FALSE(FindSkPayload(View(wrong_total)).ok());
  Bytes long_payload = message;
  long_payload[31] = 0xff;  // SK Length past the end
  EXPECT_FALSE(FindSkPayload(View(long_payload)).ok());
  Bytes short_payload = message;
  short_payload[30] = 0;
  short_payload[31] = 3;  // below the 4-byte header
  EXPECT_FALSE(FindSkPayload(View(short_payload)).ok());
  Bytes no_sk = message;
  no_sk[16] = 0;
  EXPECT_FALSE(FindSkPayload(View(no_sk)).ok());
}

}  // namespace
}  // namespace ike::crypto
