// Loading keys, certificates and raw public keys; fingerprints; errors that
// name the file.
#include "ike/crypto/credentials.h"

#include <fstream>

#include <gtest/gtest.h>

#include "daemon/credential_files.h"
#include "tests/crypto/vectors.h"

namespace ike::crypto {
namespace {

using btnsd::daemon::ReadCredentialFile;
using btnsd::daemon::LoadPrivateKeyFile;
using btnsd::daemon::LoadPublicKeyFile;
using btnsd::daemon::LoadCertificateChainFile;

const std::string kKeys = "tests/fixtures/crypto/keys/";

std::string ReadText(const std::string& name) {
  std::ifstream in(kKeys + name);
  std::string s;
  in >> s;
  return s;
}

TEST(PrivateKeyTest, LoadsEveryKeyType) {
  struct Case {
    const char* file;
    KeyType type;
  };
  for (const Case& c : {Case{"ed25519.pem", KeyType::kEd25519},
                        Case{"p256.pem", KeyType::kEcdsaP256},
                        Case{"p256.der", KeyType::kEcdsaP256},
                        Case{"p256.sec1.pem", KeyType::kEcdsaP256},
                        Case{"p384.pem", KeyType::kEcdsaP384},
                        Case{"p521.pem", KeyType::kEcdsaP521},
                        Case{"rsa2048.pem", KeyType::kRsa},
                        Case{"rsa2048.pkcs1.pem", KeyType::kRsa}}) {
    auto key = LoadPrivateKeyFile(kKeys + c.file);
    ASSERT_TRUE(key.ok()) << c.file << ": " << key.error().message;
    EXPECT_EQ(key->type(), c.type) << c.file;
  }
}

TEST(PrivateKeyTest, PemAndDerGiveTheSamePublicKey) {
  auto pem = LoadPrivateKeyFile(kKeys + "p256.pem");
  auto der = LoadPrivateKeyFile(kKeys + "p256.der");
  ASSERT_TRUE(pem.ok() && der.ok());
  EXPECT_EQ(pem->public_key().spki_der(), der->public_key().spki_der());
  auto sec1 = LoadPrivateKeyFile(kKeys + "p256.sec1.pem");
  ASSERT_TRUE(sec1.ok());
  EXPECT_EQ(pem->public_key().spki_der(), sec1->public_key().spki_der());
  auto pkcs1 = LoadPrivateKeyFile(kKeys + "rsa2048.pkcs1.pem");
  auto pkcs8 = LoadPrivateKeyFile(kKeys + "rsa2048.pem");
  ASSERT_TRUE(pkcs1.ok() && pkcs8.ok());
  EXPECT_EQ(pkcs1->public_key().spki_der(), pkcs8->public_key().spki_der());
}

TEST(PrivateKeyTest, ErrorsNameTheFileAndTheProblem) {
  auto missing = LoadPrivateKeyFile(kKeys + "no-such-key.pem");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code, ErrorCode::kKeyLoadFailed);
  EXPECT_NE(missing.error().message.find("no-such-key.pem: cannot open"),
            std::string::npos);

  auto garbage = LoadPrivateKeyFile(kKeys + "garbage.pem");
  ASSERT_FALSE(garbage.ok());
  EXPECT_NE(garbage.error().message.find("garbage.pem: not an unencrypted "
                                         "PKCS#8"),
            std::string::npos)
      << garbage.error().message;

  // SEC1 with explicit curve parameters instead of a named curve.
  auto explicit_params = LoadPrivateKeyFile(kKeys + "p256.explicit.sec1.pem");
  ASSERT_FALSE(explicit_params.ok());
  EXPECT_NE(explicit_params.error().message.find("p256.explicit.sec1.pem"),
            std::string::npos);

  // A certificate is not a private key.
  EXPECT_FALSE(LoadPrivateKeyFile(kKeys + "ee.crt").ok());
  auto empty = PrivateKey::FromBytes({}, "config key 'left.key'");
  ASSERT_FALSE(empty.ok());
  EXPECT_NE(empty.error().message.find("config key 'left.key'"),
            std::string::npos);
}

TEST(PublicKeyTest, FingerprintIsSha256OfSpkiAsComputedByOpenSsl) {
  for (const char* name : {"ed25519", "p256", "rsa2048"}) {
    auto key = LoadPrivateKeyFile(kKeys + name + ".pem");
    ASSERT_TRUE(key.ok());
    EXPECT_EQ(key->public_key().FingerprintHex(),
              ReadText(std::string(name) + ".spki.sha256"))
        << name;
  }
}

TEST(PublicKeyTest, RawPublicKeyFromPemOrDer) {
  auto pem = LoadPublicKeyFile(kKeys + "ed25519.pub.pem");
  auto der = LoadPublicKeyFile(kKeys + "ed25519.pub.der");
  ASSERT_TRUE(pem.ok()) << pem.error().message;
  ASSERT_TRUE(der.ok()) << der.error().message;
  EXPECT_EQ(pem->type(), KeyType::kEd25519);
  EXPECT_EQ(pem->spki_der(), der->spki_der());
  auto file = ReadCredentialFile(kKeys + "ed25519.pub.der");
  ASSERT_TRUE(file.ok());
  // The canonical SPKI is what RFC 7670 carries: the file's DER unchanged.
  EXPECT_EQ(der->spki_der(), *file);
  EXPECT_EQ(der->FingerprintHex(), ReadText("ed25519.spki.sha256"));
}

TEST(PublicKeyTest, RejectsNonSpki) {
  auto garbage = LoadPublicKeyFile(kKeys + "garbage.pem");
  ASSERT_FALSE(garbage.ok());
  EXPECT_NE(garbage.error().message.find("garbage.pem"), std::string::npos);
  Bytes truncated = *ReadCredentialFile(kKeys + "rsa2048.pub.der");
  truncated.resize(truncated.size() / 2);
  EXPECT_FALSE(PublicKey::FromSpki(View(truncated), "peer CERT").ok());
}

TEST(CertificateTest, LoadsChainInOrder) {
  auto chain = LoadCertificateChainFile(kKeys + "chain.pem");
  ASSERT_TRUE(chain.ok()) << chain.error().message;
  ASSERT_EQ(chain->size(), 2u);
  EXPECT_NE((*chain)[0].subject().find("moon.example"), std::string::npos);
  EXPECT_NE((*chain)[1].subject().find("btnsd test CA"), std::string::npos);
  EXPECT_EQ((*chain)[0].public_key().type(), KeyType::kEcdsaP256);
  EXPECT_EQ((*chain)[1].public_key().type(), KeyType::kEcdsaP384);
  // The end entity certifies p256.pem's key.
  auto key = LoadPrivateKeyFile(kKeys + "p256.pem");
  ASSERT_TRUE(key.ok());
  EXPECT_EQ((*chain)[0].public_key().Fingerprint(),
            key->public_key().Fingerprint());
  EXPECT_FALSE((*chain)[0].subject_der().empty());
}

TEST(CertificateTest, LoadsDerAndMatchesPem) {
  auto der = LoadCertificateChainFile(kKeys + "ee.der");
  auto pem = LoadCertificateChainFile(kKeys + "ee.crt");
  ASSERT_TRUE(der.ok() && pem.ok());
  ASSERT_EQ(der->size(), 1u);
  EXPECT_EQ((*der)[0].der(), (*pem)[0].der());
}

TEST(CertificateTest, ErrorsNameTheFile) {
  auto garbage = LoadCertificateChainFile(kKeys + "garbage.pem");
  ASSERT_FALSE(garbage.ok());
  EXPECT_NE(garbage.error().message.find("garbage.pem: certificate 1"),
            std::string::npos)
      << garbage.error().message;
  std::string text = "-----BEGIN CERTIFICATE-----\nMIIB\n";
  auto unterminated = Certificate::ChainFromBytes(
      ByteView(reinterpret_cast<const uint8_t*>(text.data()), text.size()),
      "inline");
  ASSERT_FALSE(unterminated.ok());
  EXPECT_NE(unterminated.error().message.find("no END line"),
            std::string::npos);
}

// Found by tests/fuzz/credential_fuzz.cc: the key decoder quoted the bad
// base64 byte of a client's file (a control character) into the error, and
// a PEM label was echoed whole.
TEST(ApplicationCredentialTest, ErrorsAreOnePrintableBoundedLine) {
  const std::string control_byte =
      "-----BEGIN PRIVATE KEY-----\nMIGH\x06\x07AgEA\n-----END PRIVATE KEY-----\n";
  const std::string long_label = "-----BEGIN " + std::string(5000, 'A') +
                                 "\x01\n-----\n-----END " +
                                 std::string(5000, 'A') + "\x01\n-----\n";
  for (const std::string& text : {control_byte, long_label}) {
    auto parsed = btnsd::daemon::ParseApplicationCredential(
        ByteView(reinterpret_cast<const uint8_t*>(text.data()), text.size()));
    ASSERT_FALSE(parsed.ok());
    const std::string& message = parsed.error().message;
    EXPECT_EQ(message.rfind("credential file: ", 0), 0u) << message;
    EXPECT_LT(message.size(), 400u);
    for (unsigned char c : message) EXPECT_GE(c, 0x20) << message;
  }
}

}  // namespace
}  // namespace ike::crypto
