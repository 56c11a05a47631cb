#include "daemon/api_bridge.h"

#include <netinet/in.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <string>
#include <memory>
#include <vector>

#include <gtest/gtest.h>

#include "btns_api/epoll_runner.h"
#include "btns_api/server.h"
#include "daemon/kernel_translate.h"
#include "kernel_glue/xfrm_in_memory.h"

namespace btnsd::daemon {
namespace {

using ike::policy::IpAddress;
using ike::policy::TrafficSelector;

IpAddress V4(const char* text) { return *IpAddress::Parse(text); }

TrafficSelector Host(const char* address) {
  TrafficSelector ts;
  ts.addresses = ike::policy::IpRange::Host(V4(address));
  return ts;  // any protocol, any port
}

btns_api::FiveTuple Tcp(const char* local, uint16_t lport, const char* remote,
                        uint16_t rport) {
  return {{V4(local), lport}, {V4(remote), rport}, IPPROTO_TCP};
}

ike::sa::IkeSaUp NullPeerUp(uint64_t ike_sa) {
  ike::sa::IkeSaUp up;
  up.ike_sa = ike_sa;
  up.peer.asserted_id = ike::policy::Identity::Null();
  up.peer.auth = ike::sa::PeerAuthKind::kNull;
  up.peer.recorded_identity = "null";
  up.peer.pad_entry = "anyone";
  return up;
}

ike::sa::ChildSaUp ChildUp(uint64_t ike_sa, uint64_t child, const char* local,
                           const char* remote) {
  ike::sa::ChildSaUp up;
  up.ike_sa = ike_sa;
  up.child_sa = child;
  up.spd_entry = "btns-hosts";
  up.local_ts = {Host(local)};
  up.remote_ts = {Host(remote)};
  return up;
}

ike::sa::InstallChildSa OutboundInstall(uint64_t child) {
  ike::sa::InstallChildSa install;
  install.child_sa = child;
  install.direction = ike::sa::SaDirection::kOutbound;
  install.transform.kernel_encryption = "rfc4106(gcm(aes))";
  install.transform.encryption_key_bits = 256;
  install.transform.aead = true;
  return install;
}

class RecordingSink : public btns_api::SaEventSink {
 public:
  void OnSaEvent(const btns_api::SaEvent& event) override {
    events.push_back(event);
  }
  std::vector<btns_api::SaEvent> events;
};

std::shared_ptr<ike::policy::PolicySnapshot> Policy() {
  auto snapshot = std::make_shared<ike::policy::PolicySnapshot>();
  snapshot->source_file = "test.yaml";
  ike::policy::SpdEntry protect;
  protect.name = "btns-hosts";
  protect.selector.remote = ike::policy::IpRange::Host(V4("10.0.0.2"));
  protect.action = ike::policy::SpdAction::kProtect;
  ike::policy::SpdEntry bypass;
  bypass.name = "clear";
  bypass.action = ike::policy::SpdAction::kBypass;
  snapshot->spd = ike::policy::Spd({protect, bypass});
  ike::policy::LocalIdentity alice;
  alice.name = "alice";
  alice.id = ike::policy::Identity::Fqdn("alice.example");
  snapshot->identities = {alice};
  ike::policy::ApiGrant grant;
  grant.name = "apps";
  grant.uids = {1000};
  grant.identities = {"alice"};
  snapshot->api.grants = {grant};
  return snapshot;
}

TEST(ApiBridgeTest, FindSasMatchesTheChildSelectorsWithPeerAndAlgorithms) {
  ApiBridge bridge(Policy());
  bridge.OnAction(NullPeerUp(7));
  bridge.OnAction(OutboundInstall(70));
  bridge.OnAction(ChildUp(7, 70, "10.0.0.1", "10.0.0.2"));

  auto found = bridge.FindSas(Tcp("10.0.0.1", 40000, "10.0.0.2", 7777));
  ASSERT_EQ(found.size(), 1u);
  EXPECT_EQ(found[0].child_sa_id, 70u);
  EXPECT_EQ(found[0].ike_sa_id, 7u);
  EXPECT_EQ(found[0].peer.auth, btns_api::AuthKind::kNull);
  EXPECT_EQ(found[0].peer.id, "null");
  EXPECT_EQ(found[0].algorithms, "rfc4106(gcm(aes))-256");
  EXPECT_TRUE(found[0].privacy);
  EXPECT_FALSE(found[0].tunnel);
  EXPECT_EQ(found[0].policy_name, "btns-hosts");
  // Another remote host, or the direction reversed, is not covered.
  EXPECT_TRUE(bridge.FindSas(Tcp("10.0.0.1", 40000, "10.0.0.3", 7777)).empty());
  EXPECT_TRUE(bridge.FindSas(Tcp("10.0.0.2", 7777, "10.0.0.1", 40000)).empty());
}

TEST(ApiBridgeTest, EventsFollowTheEngineAndIkeSaDownEndsItsChildren) {
  ApiBridge bridge(Policy());
  RecordingSink sink;
  bridge.Subscribe(&sink);
  bridge.OnAction(NullPeerUp(7));
  bridge.OnAction(ChildUp(7, 70, "10.0.0.1", "10.0.0.2"));
  bridge.OnAction(ChildUp(7, 71, "10.0.0.1", "10.0.0.2"));
  ike::sa::ChildSaDown down;
  down.ike_sa = 7;
  down.child_sa = 70;
  bridge.OnAction(down);
  ASSERT_EQ(sink.events.size(), 3u);
  EXPECT_EQ(sink.events[0].kind, btns_api::SaEventKind::kUp);
  EXPECT_EQ(sink.events[2].kind, btns_api::SaEventKind::kDown);
  EXPECT_EQ(sink.events[2].sa.child_sa_id, 70u);
  EXPECT_EQ(bridge.child_sa_count(), 1u);

  // The IKE SA goes: its remaining child goes with it.
  ike::sa::IkeSaDown ike_down;
  ike_down.ike_sa = 7;
  bridge.OnAction(ike_down);
  ASSERT_EQ(sink.events.size(), 4u);
  EXPECT_EQ(sink.events[3].kind, btns_api::SaEventKind::kDown);
  EXPECT_EQ(sink.events[3].sa.child_sa_id, 71u);
  EXPECT_EQ(bridge.child_sa_count(), 0u);
}

TEST(ApiBridgeTest, RekeyedIkeSaWithAnotherPeerIsAPeerChange) {
  ApiBridge bridge(Policy());
  RecordingSink sink;
  bridge.OnAction(NullPeerUp(7));
  bridge.OnAction(ChildUp(7, 70, "10.0.0.1", "10.0.0.2"));
  bridge.Subscribe(&sink);
  bridge.OnAction(NullPeerUp(7));  // same peer again: nothing to say
  EXPECT_TRUE(sink.events.empty());
  ike::sa::IkeSaUp keyed = NullPeerUp(7);
  keyed.peer.auth = ike::sa::PeerAuthKind::kRawPublicKey;
  keyed.peer.recorded_identity = "sha256:ab";
  keyed.peer.spki_sha256 = ike::policy::Sha256{0xab};
  bridge.OnAction(keyed);
  ASSERT_EQ(sink.events.size(), 1u);
  EXPECT_EQ(sink.events[0].kind, btns_api::SaEventKind::kPeerChanged);
  EXPECT_EQ(sink.events[0].sa.peer.auth, btns_api::AuthKind::kRawKey);
  EXPECT_EQ(sink.events[0].sa.peer.id, "sha256:ab");
}

TEST(ApiBridgeTest, ResponderChildBeforeIkeSaUpWaitsForThePeer) {
  ApiBridge bridge(Policy());
  RecordingSink sink;
  bridge.Subscribe(&sink);
  bridge.OnAction(ChildUp(9, 90, "10.0.0.1", "10.0.0.2"));
  EXPECT_TRUE(sink.events.empty());
  EXPECT_TRUE(bridge.FindSas(Tcp("10.0.0.1", 1, "10.0.0.2", 2)).empty());
  bridge.OnAction(NullPeerUp(9));
  ASSERT_EQ(sink.events.size(), 1u);
  EXPECT_EQ(sink.events[0].kind, btns_api::SaEventKind::kUp);
  EXPECT_EQ(sink.events[0].sa.peer.id, "null");
  EXPECT_EQ(bridge.FindSas(Tcp("10.0.0.1", 1, "10.0.0.2", 2)).size(), 1u);
}

TEST(ApiBridgeTest, EventsGoThroughThePoster) {
  ApiBridge bridge(Policy());
  RecordingSink sink;
  bridge.Subscribe(&sink);
  std::vector<std::function<void()>> queued;
  bridge.SetPoster([&queued](std::function<void()> task) {
    queued.push_back(std::move(task));
  });
  bridge.OnAction(NullPeerUp(7));
  bridge.OnAction(ChildUp(7, 70, "10.0.0.1", "10.0.0.2"));
  EXPECT_TRUE(sink.events.empty());  // not on the notifying thread
  ASSERT_EQ(queued.size(), 1u);
  queued[0]();
  ASSERT_EQ(sink.events.size(), 1u);
  EXPECT_EQ(sink.events[0].sa.child_sa_id, 70u);
}

TEST(ApiBridgeTest, AuthKindsMapToTheApi) {
  ike::sa::PeerIdentity peer;
  peer.auth = ike::sa::PeerAuthKind::kRawPublicKey;
  peer.authenticated = true;
  EXPECT_EQ(ToApiAuth(peer), btns_api::AuthKind::kPinnedKey);
  peer.authenticated = false;
  EXPECT_EQ(ToApiAuth(peer), btns_api::AuthKind::kRawKey);
  peer.auth = ike::sa::PeerAuthKind::kSharedKey;
  EXPECT_EQ(ToApiAuth(peer), btns_api::AuthKind::kPsk);
  peer.auth = ike::sa::PeerAuthKind::kCertificate;
  EXPECT_EQ(ToApiAuth(peer), btns_api::AuthKind::kCertificate);
}

btns_api::ProtectionRequest Connected(const char* remote) {
  btns_api::ProtectionRequest request;
  request.caller.uid = 1000;
  request.caller.gid = 1000;
  request.conversation = Tcp("10.0.0.1", 40000, remote, 7777);
  return request;
}

TEST(ApiBridgeTest, RequestProtectionInitiatesTheCoveringSpdEntry) {
  ApiBridge bridge(Policy());
  std::vector<std::string> initiated;
  bridge.SetInitiator([&](const std::string& entry,
                          const ike::policy::PacketFiveTuple& packet) {
    initiated.push_back(entry + " " + packet.remote.ToString());
  });
  EXPECT_TRUE(bridge.RequestProtection(Connected("10.0.0.2")).ok());
  ASSERT_EQ(initiated.size(), 1u);
  EXPECT_EQ(initiated[0], "btns-hosts 10.0.0.2");

  // Once an SA covers the conversation nothing more is started.
  bridge.OnAction(NullPeerUp(7));
  bridge.OnAction(ChildUp(7, 70, "10.0.0.1", "10.0.0.2"));
  EXPECT_TRUE(bridge.RequestProtection(Connected("10.0.0.2")).ok());
  EXPECT_EQ(initiated.size(), 1u);

  // A bypassed destination cannot be protected per socket (yet).
  btns_api::Status bypassed = bridge.RequestProtection(Connected("10.9.9.9"));
  EXPECT_EQ(bypassed.why, btns_api::Why::kNotSupported);
  EXPECT_NE(bypassed.message.find("'clear'"), std::string::npos);
}

TEST(ApiBridgeTest, RequestProtectionChecksTheCallersIdentityGrant) {
  ApiBridge bridge(Policy());
  bridge.SetInitiator([](const std::string&, const ike::policy::PacketFiveTuple&) {});
  btns_api::ProtectionRequest request = Connected("10.0.0.2");
  request.local_identity = "alice";
  EXPECT_TRUE(bridge.RequestProtection(request).ok());
  request.local_identity = "fqdn:alice.example";  // by its ID text
  EXPECT_TRUE(bridge.RequestProtection(request).ok());
  request.caller.uid = 1001;
  btns_api::Status refused = bridge.RequestProtection(request);
  EXPECT_EQ(refused.why, btns_api::Why::kPrivilegeRequired);
  EXPECT_EQ(refused.error, EACCES);
  request.local_identity = "mallory";
  EXPECT_EQ(bridge.RequestProtection(request).why, btns_api::Why::kPolicyForbids);
  request.local_identity.reset();
  request.credential_uri = "pkcs11:token=x";
  EXPECT_EQ(bridge.RequestProtection(request).why, btns_api::Why::kNotSupported);
  request.credential_uri.clear();
  request.conversation.reset();
  // Before connect(), asking nothing more than the SPD is a no-op; asking
  // for a peer needs per-socket policies, which this bridge was not given.
  EXPECT_TRUE(bridge.RequestProtection(request).ok());
  request.remote_identity = "fqdn:bob.example";
  EXPECT_EQ(bridge.RequestProtection(request).why, btns_api::Why::kNotSupported);
}

ike::sa::IkeSaUp PeerUp(uint64_t ike_sa, const char* fqdn) {
  ike::sa::IkeSaUp up;
  up.ike_sa = ike_sa;
  up.peer.asserted_id = ike::policy::Identity::Fqdn(fqdn);
  up.peer.auth = ike::sa::PeerAuthKind::kCertificate;
  up.peer.recorded_identity = std::string("fqdn:") + fqdn;
  up.peer.pad_entry = "lab";
  up.peer.authenticated = true;
  return up;
}

// A socket given a pToken before connect(): its per-socket policy asks for
// a reqid no SA has, the ACQUIRE of its first packet names the
// conversation, and the SA that then covers it decides.
class WaitingSocketTest : public ::testing::Test {
 protected:
  void SetUp() override {
    bridge.SetSocketPolicies(&kernel);
    fd = socket(AF_INET, SOCK_STREAM, 0);
    ASSERT_GE(fd, 0);
    request.caller.uid = 1000;
    request.socket_fd = fd;
    request.remote_identity = "fqdn:bob.example";
    ASSERT_TRUE(bridge.RequestProtection(request).ok());
    ASSERT_EQ(bridge.waiting_socket_count(), 1u);
    // The bridge keeps its own duplicate: find the reqid on it.
    for (int candidate = fd + 1; candidate < fd + 16; ++candidate) {
      auto policies = kernel.SocketPolicies(candidate);
      if (!policies.empty()) {
        waiting_reqid = policies.back().templates.at(0).reqid;
        duplicate = candidate;
      }
    }
    ASSERT_NE(waiting_reqid, 0u);
  }
  void TearDown() override { close(fd); }

  kernel_glue::AcquireEvent Acquire() {
    kernel_glue::AcquireEvent acquire;
    acquire.selector.src = *kernel_glue::IpAddress::Parse("10.0.0.1");
    acquire.selector.dst = *kernel_glue::IpAddress::Parse("10.0.0.2");
    acquire.selector.protocol = IPPROTO_TCP;
    acquire.selector.dst_port = 7777;
    acquire.templ.reqid = waiting_reqid;
    return acquire;
  }
  void BringUp(uint64_t ike_sa, const char* fqdn, uint64_t child, uint32_t reqid) {
    bridge.OnAction(PeerUp(ike_sa, fqdn));
    ike::sa::InstallChildSa install = OutboundInstall(child);
    install.reqid = reqid;
    bridge.OnAction(install);
    bridge.OnAction(ChildUp(ike_sa, child, "10.0.0.1", "10.0.0.2"));
  }

  kernel_glue::XfrmInMemory kernel;
  ApiBridge bridge{Policy()};
  btns_api::ProtectionRequest request;
  int fd = -1;
  int duplicate = -1;
  uint32_t waiting_reqid = 0;
};

TEST_F(WaitingSocketTest, TheWantedPeerBindsTheSocketToItsSa) {
  const KernelTags tags = ToKernelTags(Policy()->daemon.ownership);
  // Not a trap's reqid (those count down from the top of the band).
  EXPECT_LE(waiting_reqid, tags.ownership.reqid_max - 4096);
  auto pending = kernel.SocketPolicies(duplicate);
  ASSERT_EQ(pending.size(), 2u);  // out and in
  bridge.OnKernelAcquire(Acquire());
  EXPECT_EQ(bridge.waiting_socket_count(), 1u);  // no SA yet: IKE runs
  BringUp(7, "bob.example", 70, 5);
  EXPECT_EQ(bridge.waiting_socket_count(), 0u);
  auto bound = kernel.SocketPolicies(duplicate);
  ASSERT_EQ(bound.size(), 4u);
  EXPECT_EQ(bound[2].action, kernel_glue::PolicyAction::kProtect);
  EXPECT_EQ(bound[2].templates.at(0).reqid, KernelReqid(5, tags));
  EXPECT_EQ(bound[3].templates.at(0).reqid, KernelReqid(5, tags));
  EXPECT_FALSE(bridge.SocketFailure(fd).has_value());
}

TEST_F(WaitingSocketTest, AnotherPeerAtTheAddressBlocksTheSocketWithAReason) {
  BringUp(8, "carol.example", 80, 6);  // already up when the socket sends
  bridge.OnKernelAcquire(Acquire());
  EXPECT_EQ(bridge.waiting_socket_count(), 0u);
  auto policies = kernel.SocketPolicies(duplicate);
  ASSERT_EQ(policies.size(), 4u);
  EXPECT_EQ(policies[2].action, kernel_glue::PolicyAction::kDiscard);
  EXPECT_EQ(policies[3].action, kernel_glue::PolicyAction::kDiscard);
  std::optional<btns_api::Status> failure = bridge.SocketFailure(fd);
  ASSERT_TRUE(failure.has_value());
  EXPECT_EQ(failure->why, btns_api::Why::kPeerMismatch);
  EXPECT_EQ(failure->error, ECONNREFUSED);
  EXPECT_NE(failure->message.find("'fqdn:carol.example', not 'fqdn:bob.example'"),
            std::string::npos);
  // Another socket has no such record.
  int other = socket(AF_INET, SOCK_STREAM, 0);
  EXPECT_FALSE(bridge.SocketFailure(other).has_value());
  close(other);
}

TEST_F(WaitingSocketTest, AnAcquireForAnotherReqidIsNotTheSockets) {
  kernel_glue::AcquireEvent acquire = Acquire();
  acquire.templ.reqid = waiting_reqid + 1;
  BringUp(8, "carol.example", 80, 6);
  bridge.OnKernelAcquire(acquire);
  EXPECT_EQ(bridge.waiting_socket_count(), 1u);
  EXPECT_FALSE(bridge.SocketFailure(fd).has_value());
}

TEST(ApiBridgeTest, AWaitingSocketIsRefusedAtItsDeadlineWithoutAnotherRequest) {
  kernel_glue::XfrmInMemory kernel;
  ApiBridge bridge{Policy()};
  bridge.SetSocketPolicies(&kernel);
  bridge.SetWaitForSa(std::chrono::milliseconds(150));
  btns_api::Server server(bridge);
  char folder[] = "/tmp/api-bridge-timer-XXXXXX";
  ASSERT_NE(mkdtemp(folder), nullptr);
  const std::string path = std::string(folder) + "/api.sock";
  std::string why;
  const int listen_fd = btns_api::CreateEndpoint({path, std::nullopt, 0600}, &why);
  ASSERT_GE(listen_fd, 0) << why;
  btns_api::EpollRunner runner(server, listen_fd);

  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  btns_api::ProtectionRequest request;
  request.caller.uid = 1000;
  request.socket_fd = fd;
  request.remote_identity = "fqdn:bob.example";
  ASSERT_TRUE(bridge.RequestProtection(request).ok());
  ASSERT_EQ(bridge.waiting_socket_count(), 1u);
  ASSERT_TRUE(bridge.NextDeadline().has_value());

  // No SA comes and no client asks again: the loop wakes for the deadline.
  const auto start = std::chrono::steady_clock::now();
  while (bridge.waiting_socket_count() > 0 &&
         std::chrono::steady_clock::now() - start < std::chrono::seconds(3)) {
    runner.PollOnce(2000);
  }
  const auto waited = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(bridge.waiting_socket_count(), 0u);
  EXPECT_GE(waited, std::chrono::milliseconds(140));
  EXPECT_LT(waited, std::chrono::milliseconds(1500));
  EXPECT_FALSE(bridge.NextDeadline().has_value());
  std::optional<btns_api::Status> failure = bridge.SocketFailure(fd);
  ASSERT_TRUE(failure.has_value());
  EXPECT_EQ(failure->error, ETIMEDOUT);
  EXPECT_EQ(failure->why, btns_api::Why::kSaSetupFailed);
  EXPECT_NE(failure->message.find("in 150 ms"), std::string::npos) << failure->message;
  close(fd);
  unlink(path.c_str());
  rmdir(folder);
}

// A credential file: the key is read from the descriptor, the first
// packet's ACQUIRE starts a dedicated IKE SA with it, and only that SA may
// carry the socket; the peer's refusal reaches the application.
class CredentialFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    bridge.SetSocketPolicies(&kernel);
    bridge.SetCredentialInitiator(
        [this](const std::string& entry, const ike::policy::PacketFiveTuple& packet,
               std::shared_ptr<const ike::sa::LocalCredentialOverride> credential,
               uint64_t tag) {
          started.push_back({entry, packet, credential, tag});
        });
    fd = socket(AF_INET, SOCK_STREAM, 0);
    ASSERT_GE(fd, 0);
    request.caller.uid = 1000;
    request.socket_fd = fd;
  }
  void TearDown() override {
    close(fd);
    if (key_fd >= 0) close(key_fd);
  }
  void UseFile(const std::string& path) {
    key_fd = open(path.c_str(), O_RDONLY);
    ASSERT_GE(key_fd, 0) << path;
    request.credential_fd = key_fd;
  }
  kernel_glue::AcquireEvent Acquire(uint32_t reqid) {
    kernel_glue::AcquireEvent acquire;
    acquire.selector.src = *kernel_glue::IpAddress::Parse("10.0.0.1");
    acquire.selector.dst = *kernel_glue::IpAddress::Parse("10.0.0.2");
    acquire.selector.protocol = IPPROTO_TCP;
    acquire.selector.src_port = 40000;
    acquire.selector.dst_port = 7777;
    acquire.templ.reqid = reqid;
    return acquire;
  }
  uint32_t WaitingReqid() {
    for (int candidate = fd + 1; candidate < fd + 16; ++candidate) {
      auto policies = kernel.SocketPolicies(candidate);
      if (!policies.empty()) {
        duplicate = candidate;
        return policies.back().templates.at(0).reqid;
      }
    }
    return 0;
  }
  struct Started {
    std::string entry;
    ike::policy::PacketFiveTuple packet;
    std::shared_ptr<const ike::sa::LocalCredentialOverride> credential;
    uint64_t tag;
  };
  kernel_glue::XfrmInMemory kernel;
  ApiBridge bridge{Policy()};
  btns_api::ProtectionRequest request;
  std::vector<Started> started;
  int fd = -1, key_fd = -1, duplicate = -1;
};

const char kKeyDir[] = "tests/fixtures/crypto/keys/";

TEST_F(CredentialFileTest, TheDedicatedSaCarriesTheSocketAndNoOtherDoes) {
  UseFile(std::string(kKeyDir) + "p256.pem");
  request.local_identity = "app.example";  // a bare name is an FQDN
  ASSERT_TRUE(bridge.RequestProtection(request).ok());
  const uint32_t reqid = WaitingReqid();
  ASSERT_NE(reqid, 0u);
  bridge.OnKernelAcquire(Acquire(reqid));
  ASSERT_EQ(started.size(), 1u);
  EXPECT_EQ(started[0].entry, "btns-hosts");
  EXPECT_EQ(started[0].tag, reqid);
  EXPECT_EQ(started[0].packet.local_port, 40000);
  ASSERT_TRUE(started[0].credential);
  EXPECT_EQ(started[0].credential->id, ike::policy::Identity::Fqdn("app.example"));
  EXPECT_TRUE(started[0].credential->credential.private_key.has_value());
  // An SA of the host's own identity covering the flow is not the socket's.
  bridge.OnAction(PeerUp(3, "bob.example"));
  ike::sa::InstallChildSa other = OutboundInstall(30);
  other.reqid = 4;
  bridge.OnAction(other);
  bridge.OnAction(ChildUp(3, 30, "10.0.0.1", "10.0.0.2"));
  EXPECT_EQ(bridge.waiting_socket_count(), 1u);
  // The dedicated one is.
  ike::sa::IkeSaUp mine = PeerUp(9, "bob.example");
  mine.request_tag = reqid;
  mine.local_overridden = true;
  mine.local_id = "fqdn:app.example";
  bridge.OnAction(mine);
  ike::sa::InstallChildSa install = OutboundInstall(90);
  install.reqid = 7;
  bridge.OnAction(install);
  bridge.OnAction(ChildUp(9, 90, "10.0.0.1", "10.0.0.2"));
  EXPECT_EQ(bridge.waiting_socket_count(), 0u);
  const KernelTags tags = ToKernelTags(Policy()->daemon.ownership);
  auto bound = kernel.SocketPolicies(duplicate);
  ASSERT_EQ(bound.size(), 4u);
  EXPECT_EQ(bound[2].templates.at(0).reqid, KernelReqid(7, tags));
  EXPECT_FALSE(bridge.SocketFailure(fd).has_value());
  auto sas = bridge.FindSas(Tcp("10.0.0.1", 40000, "10.0.0.2", 7777));
  ASSERT_EQ(sas.size(), 2u);
  EXPECT_EQ(sas.back().local.id, "fqdn:app.example");
}

TEST_F(CredentialFileTest, ThePeersRefusalIsTheApplicationsReason) {
  UseFile(std::string(kKeyDir) + "p256.pem");
  request.local_identity = "fqdn:app.example";
  ASSERT_TRUE(bridge.RequestProtection(request).ok());
  const uint32_t reqid = WaitingReqid();
  bridge.OnKernelAcquire(Acquire(reqid));
  ASSERT_EQ(started.size(), 1u);
  ike::sa::IkeSaDown down;
  down.ike_sa = 9;
  down.reason = ike::sa::FailureReason::kAuthenticationFailed;
  down.notify = ike::wire::NotifyType::kAuthenticationFailed;
  down.request_tag = reqid;
  bridge.OnAction(down);
  EXPECT_EQ(bridge.waiting_socket_count(), 0u);
  auto policies = kernel.SocketPolicies(duplicate);
  ASSERT_EQ(policies.size(), 4u);
  EXPECT_EQ(policies[2].action, kernel_glue::PolicyAction::kDiscard);
  std::optional<btns_api::Status> failure = bridge.SocketFailure(fd);
  ASSERT_TRUE(failure.has_value());
  EXPECT_EQ(failure->why, btns_api::Why::kAuthenticationFailed);
  EXPECT_EQ(failure->error, ECONNREFUSED);
  EXPECT_NE(failure->message.find("authentication-failed"), std::string::npos);
}

TEST_F(CredentialFileTest, BadContentAndMisuseGetClearErrors) {
  UseFile(std::string(kKeyDir) + "ca.crt");  // a certificate, no key
  request.local_identity = "app.example";
  btns_api::Status status = bridge.RequestProtection(request);
  EXPECT_EQ(status.why, btns_api::Why::kCredentialFile);
  EXPECT_EQ(status.error, EINVAL);
  EXPECT_NE(status.message.find("private key"), std::string::npos) << status.message;
  close(key_fd);
  UseFile(std::string(kKeyDir) + "p256.pem");
  request.local_identity.reset();  // bare key and no identity to present
  EXPECT_EQ(bridge.RequestProtection(request).why, btns_api::Why::kBadArgument);
  request.local_identity = "app.example";
  request.listener = true;
  EXPECT_EQ(bridge.RequestProtection(request).why, btns_api::Why::kNotSupported);
  request.listener = false;
  request.conversation = Tcp("10.0.0.1", 40000, "10.0.0.2", 7777);
  EXPECT_EQ(bridge.RequestProtection(request).error, EISCONN);
  EXPECT_EQ(bridge.waiting_socket_count(), 0u);
  EXPECT_TRUE(started.empty());
}

TEST(ApiBridgeTest, PinSocketBindsALatchedSocketToTheSaReqid) {
  kernel_glue::XfrmInMemory kernel;
  ApiBridge bridge(Policy());
  btns_api::SaInfo sa;
  sa.kernel_reqid = 0x10005;
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  // Without per-socket policies the latch is only reported, not enforced.
  EXPECT_TRUE(bridge.PinSocket(fd, sa).ok());
  bridge.SetSocketPolicies(&kernel);
  EXPECT_TRUE(bridge.PinSocket(fd, sa).ok());
  auto policies = kernel.SocketPolicies(fd);
  ASSERT_EQ(policies.size(), 2u);
  EXPECT_EQ(policies[0].templates.at(0).reqid, 0x10005u);
  sa.tunnel = true;  // a tunnel SA cannot be named by a transport template
  EXPECT_TRUE(bridge.PinSocket(fd, sa).ok());
  EXPECT_EQ(kernel.SocketPolicies(fd).size(), 2u);
  close(fd);
}

}  // namespace
}  // namespace btnsd::daemon
