// IPSEC_BTNS_CREDENTIAL end to end through the real endpoint: the library
// registers a SoftHSM2 key, the server's RequestSignature (what btnsd calls
// when IKE_AUTH needs a signature) reaches the library's signer thread, and
// the answer is a signature the IKE engine accepts, made inside the token.
#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <optional>

#include <sys/wait.h>

#include "ike/crypto/auth.h"
#include "ike/crypto/credentials.h"
#include "tests/btns_api/api_fixture.h"
#include "tests/btns_api/softhsm_token.h"

namespace btns_api::testing {
namespace {

using btns::testing::SoftHsmToken;

struct Signed {
  std::optional<std::string> signature;
  std::string refusal;
};

class Pkcs11CredentialTest : public ApiFixture {
 protected:
  static void SetUpTestSuite() {
    const char* tmp = std::getenv("TEST_TMPDIR");
    std::string dir = std::string(tmp ? tmp : "/tmp") + "/softhsm-credential";
    ASSERT_EQ(std::system(("rm -rf '" + dir + "'").c_str()), 0);
    token_ = new SoftHsmToken(dir);
  }
  static void TearDownTestSuite() { delete token_; }
  void SetUp() override {
    ASSERT_EQ(token_->error(), "");
    ApiFixture::SetUp();
  }

  Signed Sign(uint64_t signer, const std::string& scheme, const std::string& octets) {
    auto result = std::make_shared<std::promise<Signed>>();
    auto future = result->get_future();
    runner_->Post([&, result] {
      server_->RequestSignature(signer, scheme, octets,
                                [result](std::optional<std::string> sig, std::string why) {
                                  result->set_value(Signed{std::move(sig), std::move(why)});
                                });
    });
    EXPECT_EQ(future.wait_for(std::chrono::seconds(10)), std::future_status::ready);
    return future.get();
  }

  static SoftHsmToken* token_;
};
SoftHsmToken* Pkcs11CredentialTest::token_ = nullptr;

TEST_F(Pkcs11CredentialTest, DaemonSignatureRequestsAreSignedInTheToken) {
  CK_OBJECT_HANDLE priv = token_->GenerateP256("alice");
  ASSERT_NE(priv, 0u) << token_->error();
  ipsec_pkcs11_credential cred{token_->functions(), token_->session(), priv};
  ipsec_iToken_t alice = get_new_iToken("alice");
  ASSERT_EQ(ipsec_set_iToken_attr(alice, IPSEC_BTNS_CREDENTIAL, &cred, sizeof cred), 0)
      << ipsec_api_why();
  // Reading the credential back gives the public key only.
  std::vector<uint8_t> spki(512);
  uint32_t len = uint32_t(spki.size());
  ASSERT_EQ(ipsec_get_token_attr(alice, IPSEC_BTNS_CREDENTIAL, &len, spki.data()), 0)
      << ipsec_api_why();
  spki.resize(len);
  auto public_key =
      ike::crypto::PublicKey::FromSpki(ike::crypto::ByteView(spki.data(), spki.size()), "iToken");
  ASSERT_TRUE(public_key.ok()) << public_key.error().message;
  EXPECT_EQ(public_key->type(), ike::crypto::KeyType::kEcdsaP256);

  // UC3: the pToken names alice (with her key) as who we are.
  ipsec_iToken_t bob = get_new_iToken("bob");
  ipsec_pToken_t p = ipsec_new_pToken2(alice, bob);
  ASSERT_NE(p, nullptr);
  int fd = BoundSocket(SOCK_STREAM, "127.0.0.1");
  ASSERT_GE(fd, 0);
  ASSERT_EQ(listen(fd, 1), 0);
  ASSERT_EQ(ipsec_set_socket_pToken(fd, p), 0) << ipsec_api_why();
  auto requests = fake_.requests();
  ASSERT_EQ(requests.size(), 1u);
  const ProtectionRequest& pr = requests[0].request;
  ASSERT_NE(pr.signer_id, 0u);
  EXPECT_EQ(pr.signer_spki, spki);
  EXPECT_EQ(pr.local_identity.value_or(""), "fqdn:alice");

  std::string octets(900, 'x');
  for (size_t i = 0; i < octets.size(); ++i) octets[i] = char(i * 13);
  Signed s = Sign(pr.signer_id, "ecdsa-sha256", octets);
  ASSERT_TRUE(s.signature) << s.refusal;
  ike::crypto::SignatureOptions options;
  options.hash = ike::wire::HashAlgorithm::kSha2_256;
  auto auth = ike::crypto::AuthFromRawSignature(
      *public_key, ike::wire::AuthMethod::kDigitalSignature, options,
      ike::crypto::ByteView(reinterpret_cast<const uint8_t*>(s.signature->data()),
                            s.signature->size()),
      ike::crypto::ByteView(reinterpret_cast<const uint8_t*>(octets.data()), octets.size()));
  EXPECT_TRUE(auth.ok()) << auth.error().message;

  // A scheme the key cannot do is refused with the library's reason.
  Signed wrong = Sign(pr.signer_id, "ed25519", octets);
  EXPECT_FALSE(wrong.signature);
  EXPECT_NE(wrong.refusal.find("cannot sign"), std::string::npos) << wrong.refusal;

  // The signer lives as long as a token holds the key: freeing the iToken
  // alone keeps it (the pToken holds it), freeing both withdraws it.
  uint64_t signer = pr.signer_id;
  // A fork()ed child that frees its copies leaves the parent's signer up.
  pid_t child = fork();
  if (child == 0) {
    ipsec_free_pToken(p);
    ipsec_free_iToken(alice);
    _exit(0);
  }
  int status = -1;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT_TRUE(Sign(signer, "ecdsa-sha256", octets).signature);
  ipsec_free_iToken(alice);
  EXPECT_TRUE(Sign(signer, "ecdsa-sha256", octets).signature);
  ipsec_free_pToken(p);
  ipsec_free_iToken(bob);
  bool gone = false;
  for (int i = 0; i < 200 && !gone; ++i) {
    gone = OnLoop([&] { return server_->SignerKey(signer).empty(); });
    if (!gone) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_TRUE(gone);
  Signed after = Sign(signer, "ecdsa-sha256", octets);
  EXPECT_FALSE(after.signature);
  EXPECT_NE(after.refusal.find("not registered"), std::string::npos) << after.refusal;
  close(fd);
}

TEST_F(Pkcs11CredentialTest, KeysThatCouldLeaveTheTokenAreRefusedWithEperm) {
  CK_OBJECT_HANDLE priv = token_->GenerateP256("loose", /*extractable=*/true);
  ASSERT_NE(priv, 0u) << token_->error();
  ipsec_pkcs11_credential cred{token_->functions(), token_->session(), priv};
  ipsec_iToken_t t = get_new_iToken("alice");
  EXPECT_EQ(ipsec_set_iToken_attr(t, IPSEC_BTNS_CREDENTIAL, &cred, sizeof cred), -1);
  EXPECT_EQ(errno, EPERM);
  EXPECT_EQ(ipsec_api_why_code(), IPSEC_API_WHY_POLICY_FORBIDS);
  // Wrong size and a NULL function list are argument errors, not crashes.
  EXPECT_EQ(ipsec_set_iToken_attr(t, IPSEC_BTNS_CREDENTIAL, &cred, 3), -1);
  EXPECT_EQ(errno, EINVAL);
  ipsec_pkcs11_credential empty{nullptr, 0, 0};
  EXPECT_EQ(ipsec_set_iToken_attr(t, IPSEC_BTNS_CREDENTIAL, &empty, sizeof empty), -1);
  EXPECT_EQ(errno, EINVAL);
  ipsec_free_iToken(t);
}

}  // namespace
}  // namespace btns_api::testing
