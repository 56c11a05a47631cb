// The client library's PKCS#11 signing against a real SoftHSM2 token: the
// public key read from the token, signatures the engine accepts as AUTH
// data (RFC 7427 and RFC 4754), and keys that could leave the token
// refused.
#include "btns_api/pkcs11_key.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <optional>
#include <string>

#include "ike/crypto/auth.h"
#include "ike/crypto/credentials.h"
#include "tests/btns_api/softhsm_token.h"

namespace {

using btns::client::OpenPkcs11Key;
using btns::client::Pkcs11Key;
using btns::client::Pkcs11Sign;
using btns::testing::SoftHsmToken;

std::string ScratchDir(const char* name) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  std::string dir = std::string(tmp ? tmp : "/tmp") + "/" + name;
  std::string cmd = "rm -rf '" + dir + "'";
  EXPECT_EQ(std::system(cmd.c_str()), 0);
  return dir;
}

std::vector<uint8_t> Octets() {
  std::vector<uint8_t> v(700);
  for (size_t i = 0; i < v.size(); ++i) v[i] = uint8_t(i * 7 + 3);
  return v;
}

class Pkcs11KeyTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { token_ = new SoftHsmToken(ScratchDir("softhsm")); }
  static void TearDownTestSuite() { delete token_; }
  void SetUp() override { ASSERT_EQ(token_->error(), ""); }

  // A token key opened for signing and its public key as read from the
  // token. Each check that fails is reported; nullopt when it cannot go on.
  struct OpenedKey {
    Pkcs11Key key;
    ike::crypto::PublicKey public_key;
  };
  static std::optional<OpenedKey> Open(CK_OBJECT_HANDLE priv,
                                       ike::crypto::KeyType expected_type) {
    if (priv == 0) {
      ADD_FAILURE() << token_->error();
      return std::nullopt;
    }
    auto opened = OpenPkcs11Key(token_->functions(), token_->session(), priv);
    if (!std::holds_alternative<Pkcs11Key>(opened)) {
      ADD_FAILURE() << std::get<std::string>(opened);
      return std::nullopt;
    }
    Pkcs11Key key = std::get<Pkcs11Key>(std::move(opened));
    auto public_key = ike::crypto::PublicKey::FromSpki(
        ike::crypto::ByteView(key.spki_der.data(), key.spki_der.size()), "token");
    if (!public_key.ok()) {
      ADD_FAILURE() << public_key.error().message;
      return std::nullopt;
    }
    EXPECT_EQ(public_key->type(), expected_type);
    return OpenedKey{std::move(key), std::move(*public_key)};
  }

  // The token's raw signature of `octets` by `scheme`.
  static std::optional<std::vector<uint8_t>> Sign(const Pkcs11Key& key, const char* scheme,
                                                  const std::vector<uint8_t>& octets) {
    auto signed_ = Pkcs11Sign(key, scheme, octets);
    if (!std::holds_alternative<std::vector<uint8_t>>(signed_)) {
      ADD_FAILURE() << std::get<std::string>(signed_);
      return std::nullopt;
    }
    return std::get<std::vector<uint8_t>>(std::move(signed_));
  }

  static SoftHsmToken* token_;
};
SoftHsmToken* Pkcs11KeyTest::token_ = nullptr;

TEST_F(Pkcs11KeyTest, P256KeySignsAuthOctetsTheEngineAccepts) {
  auto opened = Open(token_->GenerateP256("p256"), ike::crypto::KeyType::kEcdsaP256);
  ASSERT_TRUE(opened);
  const Pkcs11Key& key = opened->key;
  const ike::crypto::PublicKey* public_key = &opened->public_key;

  auto octets = Octets();
  auto signed_ = Sign(key, "ecdsa-sha256", octets);
  ASSERT_TRUE(signed_);
  const auto& raw = *signed_;
  EXPECT_EQ(raw.size(), 64u);  // r || s
  ike::crypto::SignatureOptions options;
  options.hash = ike::wire::HashAlgorithm::kSha2_256;
  for (auto method : {ike::wire::AuthMethod::kDigitalSignature, ike::wire::AuthMethod::kEcdsa256}) {
    auto auth = ike::crypto::AuthFromRawSignature(
        *public_key, method, options, ike::crypto::ByteView(raw.data(), raw.size()),
        ike::crypto::ByteView(octets.data(), octets.size()));
    EXPECT_TRUE(auth.ok()) << int(method) << ": " << auth.error().message;
  }
  // Other octets: the same signature must not verify.
  auto other = octets;
  other[10] ^= 1;
  auto bad = ike::crypto::AuthFromRawSignature(
      *public_key, ike::wire::AuthMethod::kDigitalSignature, options,
      ike::crypto::ByteView(raw.data(), raw.size()),
      ike::crypto::ByteView(other.data(), other.size()));
  EXPECT_FALSE(bad.ok());
  // Wrong scheme for the key.
  EXPECT_TRUE(std::holds_alternative<std::string>(Pkcs11Sign(key, "ed25519", octets)));
  EXPECT_TRUE(std::holds_alternative<std::string>(Pkcs11Sign(key, "md5", octets)));
}

TEST_F(Pkcs11KeyTest, PrivateKeyIsSensitiveAndNeverReadable) {
  CK_OBJECT_HANDLE priv = token_->GenerateP256("kept");
  ASSERT_NE(priv, 0u) << token_->error();
  CK_BBOOL sensitive = CK_FALSE, extractable = CK_TRUE;
  CK_ATTRIBUTE flags[] = {{CKA_SENSITIVE, &sensitive, sizeof sensitive},
                          {CKA_EXTRACTABLE, &extractable, sizeof extractable}};
  ASSERT_EQ(token_->functions()->C_GetAttributeValue(token_->session(), priv, flags, 2), CKR_OK);
  EXPECT_EQ(sensitive, CK_TRUE);
  EXPECT_EQ(extractable, CK_FALSE);
  CK_ATTRIBUTE value{CKA_VALUE, nullptr, 0};
  EXPECT_EQ(token_->functions()->C_GetAttributeValue(token_->session(), priv, &value, 1),
            CKR_ATTRIBUTE_SENSITIVE);
}

TEST_F(Pkcs11KeyTest, KeysThatCouldLeaveTheTokenAreRefused) {
  // Extractable (even if sensitive: it can leave wrapped), or readable.
  for (bool extractable : {true, false}) {
    CK_OBJECT_HANDLE priv = token_->GenerateP256(extractable ? "loose-1" : "loose-2",
                                                 extractable, /*sensitive=*/extractable);
    ASSERT_NE(priv, 0u) << token_->error();
    auto opened = OpenPkcs11Key(token_->functions(), token_->session(), priv);
    ASSERT_TRUE(std::holds_alternative<std::string>(opened));
    EXPECT_NE(std::get<std::string>(opened).find("could leave its token"), std::string::npos)
        << std::get<std::string>(opened);
  }
}

TEST_F(Pkcs11KeyTest, BadHandlesAreErrorsNotCrashes) {
  auto no_list = OpenPkcs11Key(nullptr, token_->session(), 1);
  EXPECT_TRUE(std::holds_alternative<std::string>(no_list));
  auto bad_session = OpenPkcs11Key(token_->functions(), 987654, 1);
  EXPECT_TRUE(std::holds_alternative<std::string>(bad_session));
  auto bad_object = OpenPkcs11Key(token_->functions(), token_->session(), 987654);
  EXPECT_TRUE(std::holds_alternative<std::string>(bad_object));
  // Several keys in the session: "pick the only one" must refuse to guess.
  token_->GenerateP256("another");
  auto ambiguous = OpenPkcs11Key(token_->functions(), token_->session(), 0);
  ASSERT_TRUE(std::holds_alternative<std::string>(ambiguous));
  EXPECT_NE(std::get<std::string>(ambiguous).find("name one"), std::string::npos);
}

TEST_F(Pkcs11KeyTest, Ed25519KeySignsWhenTheTokenSupportsIt) {
  CK_MECHANISM_INFO info;
  CK_SLOT_ID slot;
  CK_SESSION_INFO session;
  ASSERT_EQ(token_->functions()->C_GetSessionInfo(token_->session(), &session), CKR_OK);
  slot = session.slotID;
  if (token_->functions()->C_GetMechanismInfo(slot, CKM_EDDSA, &info) != CKR_OK)
    GTEST_SKIP() << "this SoftHSM2 build has no CKM_EDDSA";
  auto opened = Open(token_->GenerateEd25519("ed"), ike::crypto::KeyType::kEd25519);
  ASSERT_TRUE(opened);
  const Pkcs11Key& key = opened->key;
  const ike::crypto::PublicKey* public_key = &opened->public_key;
  auto octets = Octets();
  auto signed_ = Sign(key, "ed25519", octets);
  ASSERT_TRUE(signed_);
  const auto& raw = *signed_;
  ike::crypto::SignatureOptions options;
  options.hash = ike::wire::HashAlgorithm::kIdentity;
  auto auth = ike::crypto::AuthFromRawSignature(
      *public_key, ike::wire::AuthMethod::kDigitalSignature, options,
      ike::crypto::ByteView(raw.data(), raw.size()),
      ike::crypto::ByteView(octets.data(), octets.size()));
  EXPECT_TRUE(auth.ok()) << auth.error().message;
}

}  // namespace
