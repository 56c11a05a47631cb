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
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "btns_api/epoll_runner.h"
#include "btns_api/server.h"
#include "daemon/credential_files.h"
#include "daemon/kernel_translate.h"
#include "daemon/socket_watch.h"
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
  // The host's own SA serves it: the engine must see the ACQUIRE too.
  EXPECT_FALSE(bridge.OnKernelAcquire(Acquire()));
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

// ------------------------------------------------ configured identities

// The PAD entry "lab" presents "me"; "alice" (a key loaded by the daemon)
// and "team" (a shared key) are configured too, granted to uid 1000.
std::shared_ptr<ike::policy::PolicySnapshot> IdentityPolicy() {
  auto snapshot = Policy();
  ike::policy::SpdEntry protect = snapshot->spd.entries()[0];
  protect.protect.peer = "lab";
  ike::policy::SpdEntry bypass = snapshot->spd.entries()[1];
  snapshot->spd = ike::policy::Spd({protect, bypass});
  ike::policy::PadEntry lab;
  lab.name = "lab";
  lab.local_identity = "me";
  snapshot->pad = ike::policy::Pad({lab});
  ike::policy::LocalIdentity me;
  me.name = "me";
  me.id = ike::policy::Identity::Fqdn("me.example");
  ike::policy::LocalIdentity alice;
  alice.name = "alice";
  alice.id = ike::policy::Identity::Fqdn("alice.example");
  alice.private_key_file = "alice.pem";
  alice.credential = ike::policy::CredentialKind::kRawKey;
  ike::policy::LocalIdentity team;
  team.name = "team";
  team.id = ike::policy::Identity::Fqdn("team.example");
  team.psk_name = "team-key";
  ike::policy::LocalIdentity bare;
  bare.name = "bare";
  bare.id = ike::policy::Identity::Fqdn("bare.example");
  snapshot->identities = {me, alice, team, bare};
  snapshot->secrets = {{"team-key", {'t', 'e', 'a', 'm'}}};
  snapshot->api.grants[0].identities = {"alice", "me", "team", "bare"};
  return snapshot;
}

// A socket names a configured identity before connect(): the ACQUIRE of
// its first packet decides between the host's SA (the PAD entry presents
// it) and an IKE SA of its own presenting it with the loaded key.
class ConfiguredIdentityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto store = std::make_shared<ike::sa::CredentialStore>();
    auto key = LoadPrivateKeyFile("tests/fixtures/crypto/keys/p256.pem");
    ASSERT_TRUE(key.ok());
    store->local["alice"].private_key = std::move(key.value());
    store->local["me"];  // loaded, without a key (the PAD's default)
    bridge.UpdateCredentials(store);
    bridge.SetSocketPolicies(&kernel);
    bridge.SetInitiator([this](const std::string& entry, const ike::policy::PacketFiveTuple&) {
      ordinary.push_back(entry);
    });
    bridge.SetCredentialInitiator(
        [this](const std::string& entry, const ike::policy::PacketFiveTuple& packet,
               std::shared_ptr<const ike::sa::LocalCredentialOverride> credential,
               uint64_t tag) { started.push_back({entry, packet, credential, tag}); });
    bridge.SetTerminator([this](ike::sa::IkeSaHandle handle) { terminated.push_back(handle); });
    bridge.SetSocketProbe([this](const WatchedSocket& socket) {
      probed.push_back(socket);
      return hold;
    });
    bridge.SetDedicatedGrace(std::chrono::milliseconds(40), std::chrono::milliseconds(10));
    fd = socket(AF_INET, SOCK_STREAM, 0);
    ASSERT_GE(fd, 0);
    request.caller.uid = 1000;
    request.caller.gid = 1000;
    request.socket_fd = fd;
  }
  void TearDown() override { close(fd); }
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
  // The engine's answer to the dedicated request: IKE SA `ike_sa` with one
  // CHILD_SA (reqid 7) covering the flow.
  void DedicatedUp(uint64_t ike_sa, uint64_t tag, const char* presented) {
    ike::sa::IkeSaUp up = PeerUp(ike_sa, "bob.example");
    up.request_tag = tag;
    up.local_overridden = true;
    up.local_id = presented;
    bridge.OnAction(up);
    ike::sa::InstallChildSa install = OutboundInstall(ike_sa * 10);
    install.reqid = 7;
    bridge.OnAction(install);
    bridge.OnAction(ChildUp(ike_sa, ike_sa * 10, "10.0.0.1", "10.0.0.2"));
  }
  // Runs the API thread's deadline work until `done` or 2 s.
  template <typename Done>
  void RunDeadlines(Done done) {
    const auto start = std::chrono::steady_clock::now();
    while (!done() && std::chrono::steady_clock::now() - start < std::chrono::seconds(2)) {
      auto next = bridge.NextDeadline();
      if (!next) break;
      std::this_thread::sleep_until(*next);
      bridge.ExpireDue();
    }
  }
  struct Started {
    std::string entry;
    ike::policy::PacketFiveTuple packet;
    std::shared_ptr<const ike::sa::LocalCredentialOverride> credential;
    uint64_t tag;
  };
  kernel_glue::XfrmInMemory kernel;
  ApiBridge bridge{IdentityPolicy()};
  btns_api::ProtectionRequest request;
  std::vector<std::string> ordinary;
  std::vector<Started> started;
  std::vector<ike::sa::IkeSaHandle> terminated;
  std::vector<WatchedSocket> probed;
  SocketHold hold = SocketHold::kHeld;
  int fd = -1, duplicate = -1;
};

TEST_F(ConfiguredIdentityTest, AnIdentityThePadWouldNotPresentGetsAnIkeSaOfItsOwn) {
  request.local_identity = "fqdn:alice";  // get_new_iToken("alice")
  ASSERT_TRUE(bridge.RequestProtection(request).ok());
  const uint32_t reqid = WaitingReqid();
  ASSERT_NE(reqid, 0u);
  // Bound to an ephemeral port, so its ACQUIRE (and its SA) name that port.
  sockaddr_in bound_to{};
  socklen_t length = sizeof(bound_to);
  ASSERT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&bound_to), &length), 0);
  EXPECT_NE(bound_to.sin_port, 0);
  // The socket's ACQUIRE is the dedicated request's alone, however often
  // the kernel repeats it while IKE runs.
  EXPECT_TRUE(bridge.OnKernelAcquire(Acquire(reqid)));
  EXPECT_TRUE(bridge.OnKernelAcquire(Acquire(reqid)));
  ASSERT_EQ(started.size(), 1u);
  EXPECT_TRUE(ordinary.empty());
  EXPECT_EQ(started[0].entry, "btns-hosts");
  EXPECT_EQ(started[0].tag, reqid);
  ASSERT_TRUE(started[0].credential);
  EXPECT_EQ(started[0].credential->id, ike::policy::Identity::Fqdn("alice.example"));
  EXPECT_EQ(started[0].credential->label, "identity 'alice'");
  // The daemon's loaded key, not a file read now.
  ASSERT_TRUE(started[0].credential->credential.private_key.has_value());
  EXPECT_EQ(started[0].credential->credential.private_key->public_key().type(),
            ike::crypto::KeyType::kEcdsaP256);
  // The host's own SA (presenting "me") covering the flow does not serve it.
  bridge.OnAction(PeerUp(3, "bob.example"));
  bridge.OnAction(ChildUp(3, 30, "10.0.0.1", "10.0.0.2"));
  EXPECT_EQ(bridge.waiting_socket_count(), 1u);
  DedicatedUp(9, reqid, "fqdn:alice.example");
  EXPECT_EQ(bridge.waiting_socket_count(), 0u);
  EXPECT_FALSE(bridge.SocketFailure(fd).has_value());
  auto bound = kernel.SocketPolicies(duplicate);
  ASSERT_EQ(bound.size(), 4u);
  EXPECT_EQ(bound[2].templates.at(0).reqid,
            KernelReqid(7, ToKernelTags(IdentityPolicy()->daemon.ownership)));
  auto sas = bridge.FindSas(Tcp("10.0.0.1", 40000, "10.0.0.2", 7777));
  ASSERT_EQ(sas.size(), 2u);
  EXPECT_EQ(sas.back().local.id, "fqdn:alice.example");
  EXPECT_EQ(sas.back().local.auth, btns_api::AuthKind::kRawKey);
  EXPECT_EQ(sas.front().local.id, "fqdn:me.example");
  EXPECT_EQ(bridge.dedicated_ike_sa_count(), 1u);
}

TEST_F(ConfiguredIdentityTest, ThePadEntrysOwnIdentityUsesTheHostsSa) {
  request.local_identity = "me";
  ASSERT_TRUE(bridge.RequestProtection(request).ok());
  const uint32_t reqid = WaitingReqid();
  EXPECT_FALSE(bridge.OnKernelAcquire(Acquire(reqid)));  // the engine's
  EXPECT_TRUE(started.empty());
  bridge.OnAction(PeerUp(3, "bob.example"));
  ike::sa::InstallChildSa install = OutboundInstall(30);
  install.reqid = 4;
  bridge.OnAction(install);
  bridge.OnAction(ChildUp(3, 30, "10.0.0.1", "10.0.0.2"));
  EXPECT_EQ(bridge.waiting_socket_count(), 0u);
  EXPECT_FALSE(bridge.SocketFailure(fd).has_value());
  EXPECT_EQ(bridge.dedicated_ike_sa_count(), 0u);
}

TEST_F(ConfiguredIdentityTest, AnUngrantedCallerIsRefusedBeforeAnythingWaits) {
  request.local_identity = "alice";
  request.caller.uid = 1001;
  request.caller.gid = 1001;
  btns_api::Status refused = bridge.RequestProtection(request);
  EXPECT_EQ(refused.error, EACCES);
  EXPECT_EQ(refused.why, btns_api::Why::kPrivilegeRequired);
  EXPECT_NE(refused.message.find("uid 1001 may not present identity 'alice'"),
            std::string::npos) << refused.message;
  EXPECT_EQ(bridge.waiting_socket_count(), 0u);
  EXPECT_EQ(WaitingReqid(), 0u);  // no per-socket policy was set
  // Root may present any configured identity.
  request.caller.uid = 0;
  EXPECT_TRUE(bridge.RequestProtection(request).ok());
  EXPECT_EQ(bridge.waiting_socket_count(), 1u);
}

// api.grants name groups: a caller's supplementary groups count as much as
// its primary one (an operator's "group: ipsec-users").
TEST_F(ConfiguredIdentityTest, ASupplementaryGroupGrantsTheIdentity) {
  auto snapshot = IdentityPolicy();
  ike::policy::ApiGrant by_group;
  by_group.name = "ipsec-users";
  by_group.gids = {4711};
  by_group.identities = {"alice"};
  snapshot->api.grants = {by_group};
  bridge.UpdatePolicy(snapshot);
  request.local_identity = "alice";
  request.caller.uid = 1001;
  request.caller.gid = 1001;
  request.caller.groups = {27, 4712};  // not the granted group
  btns_api::Status refused = bridge.RequestProtection(request);
  EXPECT_EQ(refused.error, EACCES);
  EXPECT_EQ(refused.why, btns_api::Why::kPrivilegeRequired);
  EXPECT_EQ(bridge.waiting_socket_count(), 0u);
  EXPECT_EQ(WaitingReqid(), 0u);
  request.caller.groups = {27, 4711, 4712};
  btns_api::Status granted = bridge.RequestProtection(request);
  EXPECT_TRUE(granted.ok()) << granted.message;
  EXPECT_EQ(bridge.waiting_socket_count(), 1u);
  // The primary group counts as before.
  const int other = socket(AF_INET, SOCK_STREAM, 0);
  request.socket_fd = other;
  request.caller.gid = 4711;
  request.caller.groups.clear();
  EXPECT_TRUE(bridge.RequestProtection(request).ok());
  EXPECT_EQ(bridge.waiting_socket_count(), 2u);
  close(other);
}

TEST_F(ConfiguredIdentityTest, ThePeersRefusalNamesTheIdentity) {
  request.local_identity = "fqdn:alice.example";  // by its ID text
  ASSERT_TRUE(bridge.RequestProtection(request).ok());
  const uint32_t reqid = WaitingReqid();
  EXPECT_TRUE(bridge.OnKernelAcquire(Acquire(reqid)));
  ASSERT_EQ(started.size(), 1u);
  ike::sa::IkeSaDown down;
  down.ike_sa = 9;
  down.reason = ike::sa::FailureReason::kAuthenticationFailed;
  down.notify = ike::wire::NotifyType::kAuthenticationFailed;
  down.request_tag = reqid;
  bridge.OnAction(down);
  EXPECT_EQ(bridge.waiting_socket_count(), 0u);
  std::optional<btns_api::Status> failure = bridge.SocketFailure(fd);
  ASSERT_TRUE(failure.has_value());
  EXPECT_EQ(failure->error, ECONNREFUSED);
  EXPECT_EQ(failure->why, btns_api::Why::kAuthenticationFailed);
  EXPECT_NE(failure->message.find("identity 'alice'"), std::string::npos) << failure->message;
  EXPECT_EQ(kernel.SocketPolicies(duplicate).back().action, kernel_glue::PolicyAction::kDiscard);
}

// The engine had no reqid left for the socket's CHILD_SA (another request
// took the last one): a reason of its own, to retry later.
TEST_F(ConfiguredIdentityTest, NoFreeReqidIsAReasonToRetry) {
  request.local_identity = "alice";
  ASSERT_TRUE(bridge.RequestProtection(request).ok());
  const uint32_t reqid = WaitingReqid();
  EXPECT_TRUE(bridge.OnKernelAcquire(Acquire(reqid)));
  ASSERT_EQ(started.size(), 1u);
  ike::sa::IkeSaDown down;
  down.ike_sa = 9;
  down.reason = ike::sa::FailureReason::kNoFreeReqid;
  down.request_tag = reqid;
  bridge.OnAction(down);
  EXPECT_EQ(bridge.waiting_socket_count(), 0u);
  std::optional<btns_api::Status> failure = bridge.SocketFailure(fd);
  ASSERT_TRUE(failure.has_value());
  EXPECT_EQ(failure->error, EAGAIN);
  EXPECT_EQ(failure->why, btns_api::Why::kSaSetupFailed);
  EXPECT_NE(failure->message.find("(no-free-reqid): live CHILD_SAs hold every reqid"),
            std::string::npos) << failure->message;
  EXPECT_EQ(kernel.SocketPolicies(duplicate).back().action, kernel_glue::PolicyAction::kDiscard);
}

TEST_F(ConfiguredIdentityTest, ASharedKeyIdentityCarriesItsSecret) {
  request.local_identity = "team";
  ASSERT_TRUE(bridge.RequestProtection(request).ok());
  EXPECT_TRUE(bridge.OnKernelAcquire(Acquire(WaitingReqid())));
  ASSERT_EQ(started.size(), 1u);
  EXPECT_FALSE(started[0].credential->credential.private_key.has_value());
  EXPECT_EQ(started[0].credential->shared_key, (std::vector<uint8_t>{'t', 'e', 'a', 'm'}));
}

TEST_F(ConfiguredIdentityTest, AnIdentityWithNothingToProveItIsRefusedWithAReason) {
  request.local_identity = "bare";
  ASSERT_TRUE(bridge.RequestProtection(request).ok());
  EXPECT_TRUE(bridge.OnKernelAcquire(Acquire(WaitingReqid())));
  EXPECT_TRUE(started.empty());
  EXPECT_TRUE(ordinary.empty());
  std::optional<btns_api::Status> failure = bridge.SocketFailure(fd);
  ASSERT_TRUE(failure.has_value());
  EXPECT_EQ(failure->error, EACCES);
  EXPECT_NE(failure->message.find("'bare' has no key"), std::string::npos) << failure->message;
}

// A socket's own IKE SA ends once the socket is closed, after the grace.
TEST_F(ConfiguredIdentityTest, TheDedicatedSaIsDeletedAfterItsSocketCloses) {
  request.local_identity = "alice";
  ASSERT_TRUE(bridge.RequestProtection(request).ok());
  const uint32_t reqid = WaitingReqid();
  bridge.OnKernelAcquire(Acquire(reqid));
  DedicatedUp(9, reqid, "fqdn:alice.example");
  // Held: nothing happens, however often it is checked.
  ASSERT_TRUE(bridge.NextDeadline().has_value());
  const auto start = std::chrono::steady_clock::now();
  while (std::chrono::steady_clock::now() - start < std::chrono::milliseconds(120)) {
    std::this_thread::sleep_until(*bridge.NextDeadline());
    bridge.ExpireDue();
  }
  EXPECT_TRUE(terminated.empty());
  ASSERT_FALSE(probed.empty());
  EXPECT_EQ(probed.back().conversation, Tcp("10.0.0.1", 40000, "10.0.0.2", 7777));
  uint64_t cookie = 0;
  socklen_t length = sizeof(cookie);
  ASSERT_EQ(getsockopt(fd, SOL_SOCKET, 57 /* SO_COOKIE */, &cookie, &length), 0);
  EXPECT_EQ(probed.back().cookie, cookie);
  // Closed: deleted once, after the grace period.
  hold = SocketHold::kReleased;
  const auto closed = std::chrono::steady_clock::now();
  RunDeadlines([&] { return !terminated.empty(); });
  ASSERT_EQ(terminated.size(), 1u);
  EXPECT_EQ(terminated[0], 9u);
  EXPECT_GE(std::chrono::steady_clock::now() - closed, std::chrono::milliseconds(40));
  bridge.ExpireDue();
  EXPECT_EQ(terminated.size(), 1u);
  EXPECT_FALSE(bridge.NextDeadline().has_value());  // nothing more to watch
  // The engine's IkeSaDown ends the record.
  ike::sa::IkeSaDown down;
  down.ike_sa = 9;
  down.reason = ike::sa::FailureReason::kDeletedLocally;
  down.request_tag = reqid;
  bridge.OnAction(down);
  EXPECT_EQ(bridge.dedicated_ike_sa_count(), 0u);
  EXPECT_EQ(bridge.child_sa_count(), 0u);
}

TEST_F(ConfiguredIdentityTest, ASocketThatComesBackInTheGraceKeepsItsSa) {
  request.local_identity = "alice";
  ASSERT_TRUE(bridge.RequestProtection(request).ok());
  const uint32_t reqid = WaitingReqid();
  bridge.OnKernelAcquire(Acquire(reqid));
  DedicatedUp(9, reqid, "fqdn:alice.example");
  bridge.SetDedicatedGrace(std::chrono::milliseconds(200), std::chrono::milliseconds(10));
  hold = SocketHold::kUnknown;  // sock_diag unavailable: never deleted
  auto start = std::chrono::steady_clock::now();
  while (std::chrono::steady_clock::now() - start < std::chrono::milliseconds(300)) {
    std::this_thread::sleep_until(*bridge.NextDeadline());
    bridge.ExpireDue();
  }
  EXPECT_TRUE(terminated.empty());
  hold = SocketHold::kReleased;
  start = std::chrono::steady_clock::now();
  while (std::chrono::steady_clock::now() - start < std::chrono::milliseconds(100)) {
    std::this_thread::sleep_until(*bridge.NextDeadline());
    bridge.ExpireDue();
  }
  hold = SocketHold::kHeld;  // a moment of doubt is not a close
  bridge.ExpireDue();
  std::this_thread::sleep_for(std::chrono::milliseconds(150));
  bridge.ExpireDue();
  EXPECT_TRUE(terminated.empty());
}

TEST_F(ConfiguredIdentityTest, AnSaUpAfterItsSocketGaveUpIsDeleted) {
  bridge.SetWaitForSa(std::chrono::milliseconds(20));
  request.local_identity = "alice";
  ASSERT_TRUE(bridge.RequestProtection(request).ok());
  const uint32_t reqid = WaitingReqid();
  EXPECT_TRUE(bridge.OnKernelAcquire(Acquire(reqid)));
  ASSERT_EQ(started.size(), 1u);
  RunDeadlines([&] { return bridge.waiting_socket_count() == 0; });
  ASSERT_EQ(bridge.waiting_socket_count(), 0u);
  EXPECT_EQ(bridge.SocketFailure(fd)->error, ETIMEDOUT);
  DedicatedUp(9, reqid, "fqdn:alice.example");  // too late: nobody waits
  RunDeadlines([&] { return !terminated.empty(); });
  ASSERT_EQ(terminated.size(), 1u);
  EXPECT_EQ(terminated[0], 9u);
  EXPECT_TRUE(probed.empty());  // there was no socket to ask about
}

// The kernel prefers the narrowest policy: of a host's SA and an SA of one
// connection's own, FindSas reports the one that carries the conversation.
TEST(ApiBridgeTest, TheNarrowestCoveringSaIsTheConversations) {
  ApiBridge bridge(Policy());
  bridge.OnAction(PeerUp(3, "bob.example"));
  bridge.OnAction(ChildUp(3, 30, "10.0.0.1", "10.0.0.2"));
  ike::sa::ChildSaUp narrow = ChildUp(9, 90, "10.0.0.1", "10.0.0.2");
  narrow.local_ts[0].protocol = IPPROTO_TCP;
  narrow.local_ts[0].ports = {40000, 40000};
  narrow.remote_ts[0].protocol = IPPROTO_TCP;
  narrow.remote_ts[0].ports = {7777, 7777};
  bridge.OnAction(PeerUp(9, "alice.example"));
  bridge.OnAction(narrow);
  auto mine = bridge.FindSas(Tcp("10.0.0.1", 40000, "10.0.0.2", 7777));
  ASSERT_EQ(mine.size(), 1u);
  EXPECT_EQ(mine[0].child_sa_id, 90u);
  auto other = bridge.FindSas(Tcp("10.0.0.1", 40001, "10.0.0.2", 7777));
  ASSERT_EQ(other.size(), 1u);
  EXPECT_EQ(other[0].child_sa_id, 30u);
  // Two SAs alike (a rekey, or two peers) are both reported, newest last.
  bridge.OnAction(ChildUp(3, 31, "10.0.0.1", "10.0.0.2"));
  auto both = bridge.FindSas(Tcp("10.0.0.1", 40001, "10.0.0.2", 7777));
  ASSERT_EQ(both.size(), 2u);
  EXPECT_EQ(both[1].child_sa_id, 31u);
}

// The real probe against this kernel's sock_diag: a TCP connection on
// loopback is held while a descriptor is open and released after close().
TEST(SocketWatchTest, SockDiagSeesAConnectionClosed) {
  const int listener = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(listener, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  ASSERT_EQ(listen(listener, 1), 0);
  socklen_t length = sizeof(address);
  getsockname(listener, reinterpret_cast<sockaddr*>(&address), &length);
  const int client = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_EQ(connect(client, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  sockaddr_in local{};
  length = sizeof(local);
  getsockname(client, reinterpret_cast<sockaddr*>(&local), &length);
  WatchedSocket watched;
  watched.conversation = Tcp("127.0.0.1", ntohs(local.sin_port), "127.0.0.1",
                             ntohs(address.sin_port));
  length = sizeof(watched.cookie);
  ASSERT_EQ(getsockopt(client, SOL_SOCKET, 57 /* SO_COOKIE */, &watched.cookie, &length), 0);
  const SocketHold held = ProbeSocketDiag(watched);
  if (held == SocketHold::kUnknown)
    GTEST_SKIP() << "this kernel answers no sock_diag lookups (inet_diag missing)";
  EXPECT_EQ(held, SocketHold::kHeld);
  WatchedSocket other = watched;
  other.cookie ^= 1;  // the same conversation, another socket
  EXPECT_EQ(ProbeSocketDiag(other), SocketHold::kReleased);
  const int duplicate = dup(client);
  close(client);
  EXPECT_EQ(ProbeSocketDiag(watched), SocketHold::kHeld);  // still one descriptor
  close(duplicate);
  EXPECT_EQ(ProbeSocketDiag(watched), SocketHold::kReleased);
  close(listener);
}

}  // namespace
}  // namespace btnsd::daemon
