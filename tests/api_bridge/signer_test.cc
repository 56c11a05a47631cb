// An application's PKCS#11 key as a socket's credential: RequestProtection
// with a registered signer starts a dedicated IKE SA whose AUTH the engine
// asks the key holder to sign (SignRequest); the bridge asks the API
// thread, and hands the answer back for the owning shard. Failures of the
// key holder (refused, timed out, gone) are the application's reason.
//
// The first tests drive the bridge with a recording requester; the last one
// runs the real API service, the C library and a SoftHSM2 token.
#include <fcntl.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include <btns/ipsec_api.h>

#include "daemon/api_bridge.h"
#include "ike/crypto/auth.h"
#include "ike/crypto/credentials.h"
#include "kernel_glue/xfrm_in_memory.h"
#include "tests/btns_api/softhsm_token.h"

namespace btnsd::daemon {
namespace {

using ike::policy::IpAddress;

IpAddress V4(const char* text) { return *IpAddress::Parse(text); }

std::shared_ptr<ike::policy::PolicySnapshot> Policy() {
  auto snapshot = std::make_shared<ike::policy::PolicySnapshot>();
  snapshot->source_file = "test.yaml";
  ike::policy::SpdEntry protect;
  protect.name = "btns-hosts";
  protect.selector.remote = ike::policy::IpRange::Host(V4("10.0.0.2"));
  protect.action = ike::policy::SpdAction::kProtect;
  snapshot->spd = ike::policy::Spd({protect});
  return snapshot;
}

std::vector<uint8_t> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// What the engine and the API thread would see, recorded.
struct SignAsked {
  uint64_t signer_id = 0;
  std::string scheme;
  std::string octets;
  ApiBridge::SignatureDone done;
};

class Answers {
 public:
  void Add(ike::sa::SignatureDelivered answer) {
    std::lock_guard lock(mu_);
    answers_.push_back(std::move(answer));
    cv_.notify_all();
  }
  // The next answer, waiting up to `wait` for it.
  std::optional<ike::sa::SignatureDelivered> Next(
      std::chrono::milliseconds wait = std::chrono::seconds(10)) {
    std::unique_lock lock(mu_);
    if (!cv_.wait_for(lock, wait, [&] { return !answers_.empty(); })) return std::nullopt;
    ike::sa::SignatureDelivered out = std::move(answers_.front());
    answers_.erase(answers_.begin());
    return out;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<ike::sa::SignatureDelivered> answers_;
};

struct Started {
  std::string entry;
  std::shared_ptr<const ike::sa::LocalCredentialOverride> credential;
  uint64_t tag = 0;
};

class SignerBridge {
 public:
  explicit SignerBridge(ApiBridge& bridge) : bridge_(bridge) {
    bridge_.SetSocketPolicies(&kernel);
    bridge_.SetCredentialInitiator(
        [this](const std::string& entry, const ike::policy::PacketFiveTuple&,
               std::shared_ptr<const ike::sa::LocalCredentialOverride> credential,
               uint64_t tag) { started.push_back({entry, credential, tag}); });
    bridge_.SetSignatureDeliverer(
        [this](ike::sa::SignatureDelivered answer) { answers.Add(std::move(answer)); });
  }
  // The reqid of the socket's waiting policy, on the bridge's duplicate.
  uint32_t WaitingReqid(int fd) {
    for (int candidate = 3; candidate < 1024; ++candidate) {
      if (candidate == fd) continue;
      auto policies = kernel.SocketPolicies(candidate);
      if (!policies.empty() && policies.back().action == kernel_glue::PolicyAction::kProtect)
        return policies.back().templates.at(0).reqid;
    }
    return 0;
  }
  void Acquire(uint32_t reqid, uint16_t source_port) {
    kernel_glue::AcquireEvent acquire;
    acquire.selector.src = *kernel_glue::IpAddress::Parse("10.0.0.1");
    acquire.selector.dst = *kernel_glue::IpAddress::Parse("10.0.0.2");
    acquire.selector.protocol = IPPROTO_TCP;
    acquire.selector.src_port = source_port;
    acquire.selector.dst_port = 7777;
    acquire.templ.reqid = reqid;
    bridge_.OnKernelAcquire(acquire);
  }
  void Down(uint64_t ike_sa, ike::sa::FailureReason reason, uint64_t tag) {
    ike::sa::IkeSaDown down;
    down.ike_sa = ike_sa;
    down.reason = reason;
    down.request_tag = tag;
    bridge_.OnAction(down);
  }

  kernel_glue::XfrmInMemory kernel;
  std::vector<Started> started;
  Answers answers;

 private:
  ApiBridge& bridge_;
};

ike::sa::SignRequest Ask(uint64_t ike_sa, uint64_t request, const std::string& holder,
                         std::vector<uint8_t> octets = {1, 2, 3, 4}) {
  ike::sa::SignRequest sign;
  sign.ike_sa = ike_sa;
  sign.request = request;
  sign.holder = holder;
  sign.scheme = ike::crypto::RawSignatureScheme::kEcdsaSha256;
  sign.octets = std::move(octets);
  return sign;
}

class SignerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    bridge.SetSignatureRequester([this](uint64_t signer_id, const std::string& scheme,
                                        const std::string& octets,
                                        ApiBridge::SignatureDone done) {
      asked.push_back({signer_id, scheme, octets, std::move(done)});
    });
    fd = socket(AF_INET, SOCK_STREAM, 0);
    ASSERT_GE(fd, 0);
    request.caller.uid = 1000;
    request.caller.pid = 4242;
    request.socket_fd = fd;
    request.signer_id = 5;
    request.signer_spki = ReadFile("tests/fixtures/crypto/keys/p256.pub.der");
    ASSERT_FALSE(request.signer_spki.empty());
    request.local_identity = "app.example";
  }
  void TearDown() override { close(fd); }

  // RequestProtection, the first packet's ACQUIRE: the started credential.
  std::shared_ptr<const ike::sa::LocalCredentialOverride> Start(uint32_t* reqid) {
    EXPECT_TRUE(bridge.RequestProtection(request).ok());
    *reqid = engine.WaitingReqid(fd);
    EXPECT_NE(*reqid, 0u);
    engine.Acquire(*reqid, 40000);
    if (engine.started.size() != 1) return nullptr;
    return engine.started.back().credential;
  }

  ApiBridge bridge{Policy()};
  SignerBridge engine{bridge};
  std::vector<SignAsked> asked;
  btns_api::ProtectionRequest request;
  int fd = -1;
};

TEST_F(SignerTest, TheDedicatedSaIsSignedByTheRegisteredKeyThroughTheApi) {
  bridge.SetSignerTimeout(std::chrono::milliseconds(2500));
  uint32_t reqid = 0;
  auto credential = Start(&reqid);
  ASSERT_TRUE(credential);
  // The socket got its local port when btnsd took the pToken, so the
  // ACQUIRE of connect() names the whole flow.
  sockaddr_in local{};
  socklen_t length = sizeof local;
  ASSERT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&local), &length), 0);
  EXPECT_NE(local.sin_port, 0);
  EXPECT_EQ(local.sin_addr.s_addr, htonl(INADDR_ANY));
  EXPECT_EQ(engine.started[0].entry, "btns-hosts");
  EXPECT_EQ(engine.started[0].tag, reqid);
  EXPECT_EQ(credential->id, ike::policy::Identity::Fqdn("app.example"));
  // The daemon never holds the private key, only the public one.
  EXPECT_FALSE(credential->credential.private_key.has_value());
  ASSERT_TRUE(credential->credential.external_signer.has_value());
  const ike::sa::ExternalSigner& signer = *credential->credential.external_signer;
  EXPECT_EQ(signer.public_key.type(), ike::crypto::KeyType::kEcdsaP256);
  EXPECT_EQ(signer.public_key.spki_der(), request.signer_spki);
  EXPECT_EQ(signer.timeout, std::chrono::milliseconds(2500));

  // The engine's SignRequest reaches the API thread with the signer's id.
  bridge.OnAction(Ask(0x0100000000000007, 3, signer.holder, {9, 8, 7}));
  ASSERT_EQ(asked.size(), 1u);
  EXPECT_EQ(asked[0].signer_id, 5u);
  EXPECT_EQ(asked[0].scheme, "ecdsa-sha256");
  EXPECT_EQ(asked[0].octets, std::string("\x09\x08\x07"));
  // Nothing reaches the engine before the key holder answers.
  EXPECT_FALSE(engine.answers.Next(std::chrono::milliseconds(0)));
  asked[0].done(std::string("\x30\x06signed"), "");
  auto answer = engine.answers.Next();
  ASSERT_TRUE(answer);
  EXPECT_EQ(answer->ike_sa, 0x0100000000000007u);
  EXPECT_EQ(answer->request, 3u);
  EXPECT_EQ(std::string(answer->signature.begin(), answer->signature.end()),
            std::string("\x30\x06signed"));
  EXPECT_TRUE(answer->refusal.empty());
}

TEST_F(SignerTest, ARefusalOfTheKeyHolderIsTheApplicationsReason) {
  uint32_t reqid = 0;
  auto credential = Start(&reqid);
  ASSERT_TRUE(credential);
  bridge.OnAction(Ask(9, 1, credential->credential.external_signer->holder));
  ASSERT_EQ(asked.size(), 1u);
  asked[0].done(std::nullopt, "C_Sign: CKR_PIN_EXPIRED");
  auto answer = engine.answers.Next();
  ASSERT_TRUE(answer);
  EXPECT_TRUE(answer->signature.empty());
  EXPECT_EQ(answer->refusal, "C_Sign: CKR_PIN_EXPIRED");
  // The engine fails the SA (signer-refused); the socket is blocked with
  // the key holder's words.
  engine.Down(9, ike::sa::FailureReason::kSignerRefused, reqid);
  EXPECT_EQ(bridge.waiting_socket_count(), 0u);
  std::optional<btns_api::Status> failure = bridge.SocketFailure(fd);
  ASSERT_TRUE(failure.has_value());
  EXPECT_EQ(failure->error, EACCES);
  EXPECT_EQ(failure->why, btns_api::Why::kSaSetupFailed);
  EXPECT_NE(failure->message.find("signer-refused: C_Sign: CKR_PIN_EXPIRED"),
            std::string::npos)
      << failure->message;
}

TEST_F(SignerTest, AKeyHolderThatNeverAnswersTimesOutWithItsOwnReason) {
  bridge.SetSignerTimeout(std::chrono::milliseconds(1500));
  uint32_t reqid = 0;
  auto credential = Start(&reqid);
  ASSERT_TRUE(credential);
  bridge.OnAction(Ask(9, 1, credential->credential.external_signer->holder));
  ASSERT_EQ(asked.size(), 1u);
  // The engine's own timer ends the wait (ExternalSigner::timeout).
  engine.Down(9, ike::sa::FailureReason::kSignerTimeout, reqid);
  std::optional<btns_api::Status> failure = bridge.SocketFailure(fd);
  ASSERT_TRUE(failure.has_value());
  EXPECT_EQ(failure->error, ETIMEDOUT);
  EXPECT_EQ(failure->why, btns_api::Why::kSaSetupFailed);
  EXPECT_NE(failure->message.find("did not sign in 1500 ms"), std::string::npos)
      << failure->message;
  // A late answer still goes to the engine, which ignores it; the bridge
  // keeps nothing of it.
  asked[0].done(std::nullopt, "too late");
  EXPECT_TRUE(engine.answers.Next());
}

TEST_F(SignerTest, WithoutTheApiServiceTheEngineIsAnsweredAtOnce) {
  bridge.SetSignatureRequester(nullptr);
  bridge.OnAction(Ask(9, 1, "api-signer:5"));
  auto answer = engine.answers.Next(std::chrono::milliseconds(0));
  ASSERT_TRUE(answer);
  EXPECT_EQ(answer->request, 1u);
  EXPECT_NE(answer->refusal.find("not running"), std::string::npos) << answer->refusal;
  // A holder the API did not make is refused, not asked.
  bridge.SetSignatureRequester(
      [this](uint64_t, const std::string&, const std::string&, ApiBridge::SignatureDone) {
        ADD_FAILURE() << "asked a holder the API does not know";
      });
  for (const char* holder : {"token:7", "api-signer:", "api-signer:0", "api-signer:12x",
                             "api-signer:99999999999999999999"}) {
    bridge.OnAction(Ask(9, 2, holder));
    answer = engine.answers.Next(std::chrono::milliseconds(0));
    ASSERT_TRUE(answer) << holder;
    EXPECT_NE(answer->refusal.find("not a key registered"), std::string::npos) << holder;
  }
}

TEST_F(SignerTest, MisuseGetsClearErrorsAndStartsNothing) {
  btns_api::ProtectionRequest r = request;
  r.listener = true;
  EXPECT_EQ(bridge.RequestProtection(r).why, btns_api::Why::kNotSupported);
  r = request;
  r.conversation = btns_api::FiveTuple{{V4("10.0.0.1"), 40000}, {V4("10.0.0.2"), 7777},
                                       IPPROTO_TCP};
  EXPECT_EQ(bridge.RequestProtection(r).error, EISCONN);
  r = request;
  r.local_identity.reset();
  btns_api::Status status = bridge.RequestProtection(r);
  EXPECT_EQ(status.why, btns_api::Why::kBadArgument);
  EXPECT_NE(status.message.find("identity"), std::string::npos) << status.message;
  r = request;
  r.local_identity = "ipv4:not-an-address";
  EXPECT_EQ(bridge.RequestProtection(r).why, btns_api::Why::kBadArgument);
  r = request;
  r.signer_spki = {0x30, 0x03, 0x02, 0x01, 0x01};
  status = bridge.RequestProtection(r);
  EXPECT_EQ(status.why, btns_api::Why::kBadArgument);
  EXPECT_NE(status.message.find("public key"), std::string::npos) << status.message;
  r = request;
  r.credential_fd = fd;  // a file and a key at once
  EXPECT_EQ(bridge.RequestProtection(r).why, btns_api::Why::kBadArgument);
  r = request;
  r.signer_id = 0;
  r.signer_spki.clear();
  r.credential_uri = "pkcs11:token=x;object=y";
  status = bridge.RequestProtection(r);
  EXPECT_EQ(status.error, ENOTSUP);
  EXPECT_NE(status.message.find("IPSEC_BTNS_CREDENTIAL"), std::string::npos) << status.message;
  EXPECT_EQ(bridge.waiting_socket_count(), 0u);
  EXPECT_TRUE(engine.started.empty());
}

// The real thing on the API side: the C library registers a SoftHSM2 key,
// ipsec_set_socket_pToken reaches the bridge through the API service, the
// engine's SignRequest is signed in the token by the library's thread, and
// the signature verifies with the key the credential carries. When the
// application frees its tokens, the next request is refused with the
// server's reason, and that reason is what the socket reports.
TEST(SignerServiceTest, ATokenInTheApplicationSignsTheDaemonsRequest) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  const std::string token_dir = std::string(tmp ? tmp : "/tmp") + "/softhsm-bridge";
  ASSERT_EQ(std::system(("rm -rf '" + token_dir + "'").c_str()), 0);
  btns::testing::SoftHsmToken token(token_dir);
  ASSERT_EQ(token.error(), "");
  CK_OBJECT_HANDLE key = token.GenerateP256("app");
  ASSERT_NE(key, 0u) << token.error();

  // The endpoint's path must fit sun_path: not under TEST_TMPDIR.
  char folder[] = "/tmp/btns-signer.XXXXXX";
  ASSERT_NE(mkdtemp(folder), nullptr);
  const std::string path = std::string(folder) + "/api.sock";
  ApiBridge bridge(Policy());
  SignerBridge engine(bridge);
  auto service = std::make_unique<ApiService>(bridge);
  std::string why;
  ASSERT_TRUE(service->Start(path, "", &why)) << why;
  ASSERT_EQ(ipsec_api_set_endpoint(path.c_str()), 0);

  ipsec_pkcs11_credential cred{token.functions(), token.session(), key};
  ipsec_iToken_t me = get_new_iToken("app.example");
  ASSERT_EQ(ipsec_set_iToken_attr(me, IPSEC_BTNS_CREDENTIAL, &cred, sizeof cred), 0)
      << ipsec_api_why();
  ipsec_iToken_t peer = get_new_iToken("bob.example");
  ipsec_pToken_t ptoken = get_new_pToken(me, peer);
  ASSERT_NE(ptoken, nullptr);
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_EQ(ipsec_set_socket_pToken(fd, ptoken), 0) << ipsec_api_why();
  const uint32_t reqid = engine.WaitingReqid(fd);
  ASSERT_NE(reqid, 0u);
  engine.Acquire(reqid, 40001);
  ASSERT_EQ(engine.started.size(), 1u);
  auto credential = engine.started[0].credential;
  ASSERT_TRUE(credential && credential->credential.external_signer);
  const ike::sa::ExternalSigner& signer = *credential->credential.external_signer;
  EXPECT_EQ(credential->id, ike::policy::Identity::Fqdn("app.example"));

  std::vector<uint8_t> octets(700);
  for (size_t i = 0; i < octets.size(); ++i) octets[i] = uint8_t(i * 7);
  bridge.OnAction(Ask(0x0200000000000001, 1, signer.holder, octets));
  auto answer = engine.answers.Next();
  ASSERT_TRUE(answer);
  ASSERT_FALSE(answer->signature.empty()) << answer->refusal;
  EXPECT_EQ(answer->ike_sa, 0x0200000000000001u);
  ike::crypto::SignatureOptions options;
  options.hash = ike::wire::HashAlgorithm::kSha2_256;
  auto auth = ike::crypto::AuthFromRawSignature(
      signer.public_key, ike::wire::AuthMethod::kDigitalSignature, options,
      ike::crypto::ByteView(answer->signature.data(), answer->signature.size()),
      ike::crypto::ByteView(octets.data(), octets.size()));
  EXPECT_TRUE(auth.ok()) << auth.error().message;

  // The application lets go of the key: the signer is withdrawn.
  ipsec_free_pToken(ptoken);
  ipsec_free_iToken(me);
  ipsec_free_iToken(peer);
  std::optional<ike::sa::SignatureDelivered> refused;
  for (uint64_t attempt = 2; attempt < 200 && !refused; ++attempt) {
    bridge.OnAction(Ask(0x0200000000000001, attempt, signer.holder, octets));
    answer = engine.answers.Next();
    ASSERT_TRUE(answer);
    if (answer->signature.empty()) {
      refused = answer;
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
  ASSERT_TRUE(refused);
  EXPECT_NE(refused->refusal.find("not registered"), std::string::npos) << refused->refusal;
  engine.Down(0x0200000000000001, ike::sa::FailureReason::kSignerRefused, reqid);
  std::optional<btns_api::Status> failure = bridge.SocketFailure(fd);
  ASSERT_TRUE(failure.has_value());
  EXPECT_NE(failure->message.find("not registered"), std::string::npos) << failure->message;

  // Stopped service: the engine is answered at once, never left waiting.
  service->Stop("test over");
  bridge.OnAction(Ask(0x0200000000000002, 1, signer.holder));
  answer = engine.answers.Next(std::chrono::milliseconds(0));
  ASSERT_TRUE(answer);
  EXPECT_NE(answer->refusal.find("not running"), std::string::npos) << answer->refusal;
  close(fd);
  service.reset();
  unlink(path.c_str());
  rmdir(folder);
}

}  // namespace
}  // namespace btnsd::daemon
