// Cross-check against a real peer: exchanges captured between two
// strongSwan 5.9.8 instances (tests/fixtures/strongswan, turned into vector
// files by tests/fixtures/crypto/strongswan/extract.py). From the logged DH
// secret and the nonces/SPIs on the wire, our derivation must give the keys
// charon logged; our SK code must open the captured IKE_AUTH messages and
// re-seal them to the same bytes; our AUTH must equal charon's.
#include <gtest/gtest.h>

#include "ike/crypto/auth.h"
#include "ike/crypto/key_derivation.h"
#include "ike/crypto/sk_payload.h"
#include "tests/crypto/vectors.h"

namespace ike::crypto {
namespace {

using testing::Hex;
using testing::ReadVectors;
using testing::ToBytes;

// Body (after the 4-byte generic header) of the first payload of `type`,
// walking a chain that starts with `first` at `offset`.
Bytes FindPayload(const Bytes& data, size_t offset, uint8_t first,
                  uint8_t type) {
  uint8_t next = first;
  while (next != 0 && offset + 4 <= data.size()) {
    const size_t len = (size_t(data[offset + 2]) << 8) | data[offset + 3];
    if (len < 4 || offset + len > data.size()) break;
    if (next == type) {
      return Bytes(data.begin() + offset + 4, data.begin() + offset + len);
    }
    next = data[offset];
    offset += len;
  }
  ADD_FAILURE() << "payload " << int(type) << " not found";
  return {};
}

struct Scenario {
  const char* file;
  TransformSet set;
};

class StrongswanInterop : public ::testing::TestWithParam<Scenario> {
 protected:
  void SetUp() override {
    auto all = ReadVectors(std::string("strongswan/") + GetParam().file);
    ASSERT_EQ(all.size(), 1u);
    v_ = all[0];
    init_req_ = F("msg_init_req");
    init_resp_ = F("msg_init_resp");
    ni_ = FindPayload(init_req_, 28, init_req_[16], 40);
    nr_ = FindPayload(init_resp_, 28, init_resp_[16], 40);
    spi_i_.assign(init_resp_.begin(), init_resp_.begin() + 8);
    spi_r_.assign(init_resp_.begin() + 8, init_resp_.begin() + 16);
  }
  Bytes F(const char* name) { return v_.count(name) ? Hex(v_.at(name)) : Bytes(); }

  Result<IkeSaKeys> Derive() {
    auto skeyseed = ComputeSkeyseed(GetParam().set.prf, View(ni_), View(nr_),
                                    View(F("gir")));
    if (!skeyseed) return skeyseed.error();
    return DeriveIkeSaKeys(GetParam().set, View(*skeyseed), View(ni_),
                           View(nr_), View(spi_i_), View(spi_r_));
  }

  testing::Record v_;
  Bytes init_req_, init_resp_, ni_, nr_, spi_i_, spi_r_;
};

TEST_P(StrongswanInterop, SkeyseedAndSkKeysMatchCharon) {
  auto skeyseed = ComputeSkeyseed(GetParam().set.prf, View(ni_), View(nr_),
                                  View(F("gir")));
  ASSERT_TRUE(skeyseed.ok());
  EXPECT_EQ(ToBytes(*skeyseed), F("skeyseed"));
  auto keys = Derive();
  ASSERT_TRUE(keys.ok()) << keys.error().message;
  EXPECT_EQ(ToBytes(keys->sk_d), F("sk_d"));
  EXPECT_EQ(ToBytes(keys->sk_ai), F("sk_ai"));  // empty for AEAD
  EXPECT_EQ(ToBytes(keys->sk_ar), F("sk_ar"));
  EXPECT_EQ(ToBytes(keys->sk_ei), F("sk_ei"));
  EXPECT_EQ(ToBytes(keys->sk_er), F("sk_er"));
  EXPECT_EQ(ToBytes(keys->sk_pi), F("sk_pi"));
  EXPECT_EQ(ToBytes(keys->sk_pr), F("sk_pr"));
}

TEST_P(StrongswanInterop, OpensAndResealsCapturedIkeAuthMessages) {
  auto keys = Derive();
  ASSERT_TRUE(keys.ok());
  DeterministicRandomSource rng(Bytes{7});
  struct Dir {
    const char* msg;
    const Secret& ek;
    const Secret& ak;
    const char* id_name;
    uint8_t id_type;
  };
  for (const Dir& d :
       {Dir{"msg_auth_req", keys->sk_ei, keys->sk_ai, "id_body_1", 35},
        Dir{"msg_auth_resp", keys->sk_er, keys->sk_ar, "id_body_2", 36}}) {
    SCOPED_TRACE(d.msg);
    Bytes message = F(d.msg);
    auto loc = FindSkPayload(View(message));
    ASSERT_TRUE(loc.ok()) << loc.error().message;
    auto cipher = SkCipher::Create(GetParam().set, View(d.ek), View(d.ak));
    ASSERT_TRUE(cipher.ok()) << cipher.error().message;
    ByteView prefix = ByteView(message).first(loc->body_offset);
    ByteView body = ByteView(message).subspan(loc->body_offset);
    auto opened = cipher->Unprotect(prefix, body);
    ASSERT_TRUE(opened.ok()) << opened.error().message;
    // The first inner payload is the sender's ID; its body is IDx'.
    EXPECT_EQ(FindPayload(opened->payloads, 0, loc->first_inner_payload,
                          d.id_type),
              F(d.id_name));
    // Same IV and padding: our Protect gives charon's bytes exactly.
    SkProtectOptions opts;
    opts.iv = Bytes(body.begin(), body.begin() + cipher->iv_size());
    opts.padding = opened->padding;
    EXPECT_EQ(cipher->BodyLength(opened->payloads.size(),
                                 opened->padding.size()),
              body.size());
    auto resealed =
        cipher->Protect(prefix, View(opened->payloads), rng, opts);
    ASSERT_TRUE(resealed.ok());
    EXPECT_EQ(*resealed, Bytes(body.begin(), body.end()));
    // One flipped ICV bit and charon's message no longer opens.
    Bytes tampered(body.begin(), body.end());
    tampered.back() ^= 1;
    EXPECT_FALSE(cipher->Unprotect(prefix, View(tampered)).ok());
  }
}

TEST_P(StrongswanInterop, SharedKeyAuthMatchesCharonAndTheWire) {
  auto keys = Derive();
  ASSERT_TRUE(keys.ok());
  auto prf = Prf::Create(GetParam().set.prf);
  ASSERT_TRUE(prf.ok());
  const Bytes psk = F("psk");
  // Initiator: RealMessage1 | Nr | prf(SK_pi, IDi').
  Bytes octets_i = BuildSignedOctets(*prf, View(init_req_), View(nr_),
                                     View(keys->sk_pi), View(F("id_body_1")));
  EXPECT_EQ(octets_i, F("octets_1"));
  auto auth_i = ComputeSharedKeyAuth(GetParam().set.prf, View(psk),
                                     View(octets_i));
  ASSERT_TRUE(auth_i.ok());
  EXPECT_EQ(*auth_i, F("auth_1"));
  // Responder: RealMessage2 | Ni | prf(SK_pr, IDr').
  Bytes octets_r = BuildSignedOctets(*prf, View(init_resp_), View(ni_),
                                     View(keys->sk_pr), View(F("id_body_2")));
  EXPECT_EQ(octets_r, F("octets_2"));

  // The AUTH payloads inside the captured messages verify; a wrong PSK
  // does not.
  for (const auto& [msg, ek, ak, octets] :
       {std::tuple{"msg_auth_req", &keys->sk_ei, &keys->sk_ai, &octets_i},
        std::tuple{"msg_auth_resp", &keys->sk_er, &keys->sk_ar, &octets_r}}) {
    SCOPED_TRACE(msg);
    Bytes message = F(msg);
    auto loc = FindSkPayload(View(message));
    ASSERT_TRUE(loc.ok());
    auto cipher = SkCipher::Create(GetParam().set, View(*ek), View(*ak));
    ASSERT_TRUE(cipher.ok());
    auto opened = cipher->Unprotect(
        ByteView(message).first(loc->body_offset),
        ByteView(message).subspan(loc->body_offset));
    ASSERT_TRUE(opened.ok());
    Bytes auth_body = FindPayload(opened->payloads, 0,
                                  loc->first_inner_payload, 39);
    ASSERT_GT(auth_body.size(), 4u);
    EXPECT_EQ(auth_body[0], uint8_t(AuthMethod::kSharedKeyMic));
    ByteView auth_data = ByteView(auth_body).subspan(4);
    EXPECT_TRUE(VerifySharedKeyAuth(GetParam().set.prf, View(psk),
                                    View(*octets), auth_data)
                    .ok());
    Bytes wrong = psk;
    wrong.back() ^= 1;
    auto st = VerifySharedKeyAuth(GetParam().set.prf, View(wrong),
                                  View(*octets), auth_data);
    ASSERT_FALSE(st.ok());
    EXPECT_EQ(st.error().code, ErrorCode::kIntegrityCheckFailed);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Captures, StrongswanInterop,
    ::testing::Values(
        Scenario{"psk-x25519-aesgcm256.txt",
                 {EncrId::kAesGcm16, 256, PrfId::kHmacSha2_256,
                  IntegId::kNone, KeGroup::kCurve25519}},
        Scenario{"psk-ecp256-aescbc128.txt",
                 {EncrId::kAesCbc, 128, PrfId::kHmacSha2_256,
                  IntegId::kHmacSha2_256_128, KeGroup::kEcp256}}),
    [](const auto& info) {
      return info.param.set.encr == EncrId::kAesCbc ? "AesCbcEcp256"
                                                    : "AesGcmX25519";
    });

}  // namespace
}  // namespace ike::crypto
