// An initiation that presents its own identity and credential
// (InitiateRequest::local_credential) instead of the PAD entry's: what an
// application's credential file or a configured identity picked per socket
// becomes in the engine. The responder's PAD alone decides whether it is
// accepted; the SA is the request's own and carries only its flow.
#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <set>

#include "tests/sa/established.h"
#include "tests/sa/expect.h"
#include "tests/sa/fixtures.h"
#include "tests/sa/sim.h"

namespace ike::sa::testing {
namespace {

constexpr uint16_t kAppPort = 40000;
constexpr uint16_t kServicePort = 7;

// A signs as a.example with the shared key by default. B knows a.example
// by that key and app.example by a pinned Ed25519 key.
struct TwoHosts {
  crypto::PrivateKey app_key = MakeEd25519("application key");
  policy::PolicySnapshotPtr a, b;
  // Without B's SPD entry for the application's PAD entry ("b-app"), the
  // application authenticates but gets no CHILD_SA.
  explicit TwoHosts(bool b_protects_app = true) {
    PolicyBuilder pa, pb;
    pa.Identity("me", policy::Identity::Fqdn("a.example"))
        .Secret("k", "correct horse")
        .Pad(PskEntry("b", "b.example", "k", kB, "me"))
        .Spd(ProtectEntry("a-b", kA, kB, "b"));
    policy::PadEntry app;
    app.name = "app";
    app.peer_id = MatchFqdn("app.example");
    app.auth = policy::PeerAuthMethod::kPinnedKey;
    app.pinned_keys = {FingerprintOf(app_key)};
    app.remote_ts = {HostTs(kA)};
    app.local_identity = "me";
    // B answers the application with the shared key too: its identity
    // names the secret, whatever the matched entry's method.
    pb.Identity("me", policy::Identity::Fqdn("b.example"),
                policy::CredentialKind::kNone, "k")
        .Secret("k", "correct horse")
        .Pad(PskEntry("a", "a.example", "k", kA, "me"))
        .Pad(app)
        .Spd(ProtectEntry("b-a", kB, kA, "a"));
    if (b_protects_app) pb.Spd(ProtectEntry("b-app", kB, kA, "app"));
    a = pa.Build();
    b = pb.Build();
  }
  // The two hosts as simulated nodes "a" and "b", before any exchange.
  TwoPeers Simulate(uint64_t seed, EngineSettings a_settings = {}) const {
    return TwoPeers(seed, {a, {}, a_settings}, {b});
  }
};

policy::PacketFiveTuple Flow() {
  policy::PacketFiveTuple t;
  t.local = Ip(kA);
  t.remote = Ip(kB);
  t.protocol = 6;
  t.local_port = kAppPort;
  t.remote_port = kServicePort;
  return t;
}

std::shared_ptr<LocalCredentialOverride> Credential(
    std::optional<crypto::PrivateKey> key, const std::string& fqdn) {
  auto credential = std::make_shared<LocalCredentialOverride>();
  credential->id = policy::Identity::Fqdn(fqdn);
  credential->credential.private_key = std::move(key);
  credential->label = "test credential";
  return credential;
}

InitiateRequest WithCredential(std::shared_ptr<LocalCredentialOverride> c,
                               uint64_t tag) {
  InitiateRequest r = Initiate("a-b");
  r.trigger = Flow();
  r.local_credential = std::move(c);
  r.request_tag = tag;
  return r;
}

const ChildSaUp* ChildOf(const Node& n, IkeSaHandle ike) {
  for (const auto& c : n.child_up)
    if (c.ike_sa == ike) return &c;
  return nullptr;
}

TEST(LocalCredentialTest, PeerSeesTheRequestedIdentityOnAnSaOfItsOwn) {
  TwoHosts s;
  TwoPeers peers = s.Simulate(41);
  auto& [sim, a, b] = peers;
  sim.Feed(a, Initiate("a-b"));
  sim.RunFor(Duration(1000));
  ASSERT_EQ(a.ike_up.size(), 1u);
  EXPECT_FALSE(a.ike_up[0].local_overridden);
  EXPECT_EQ(a.ike_up[0].local_id, "fqdn:a.example");

  auto credential = Credential(s.app_key, "app.example");
  sim.Feed(a, WithCredential(credential, 77));
  sim.RunFor(Duration(1000));
  // A second IKE SA, next to the default one (not a CHILD_SA on it).
  ASSERT_EQ(a.ike_up.size(), 2u);
  ASSERT_EQ(b.ike_up.size(), 2u);
  EXPECT_EQ(a.manager->ike_sa_count(), 2u);
  // Once IKE_AUTH is done the engine holds the credential no longer.
  EXPECT_EQ(credential.use_count(), 1);
  const IkeSaUp& mine = a.ike_up[1];
  EXPECT_EQ(mine.request_tag, 77u);
  EXPECT_TRUE(mine.local_overridden);
  EXPECT_EQ(mine.local_id, "fqdn:app.example");
  EXPECT_EQ(mine.peer.pad_entry, "b");  // A still checks B by its PAD entry
  const IkeSaUp& seen = b.ike_up[1];
  EXPECT_EQ(seen.peer.asserted_id, policy::Identity::Fqdn("app.example"));
  EXPECT_EQ(seen.peer.pad_entry, "app");
  EXPECT_EQ(seen.peer.auth, PeerAuthKind::kRawPublicKey);
  EXPECT_TRUE(seen.peer.authenticated);
  EXPECT_EQ(seen.peer.spki_sha256, FingerprintOf(s.app_key));
  EXPECT_EQ(seen.request_tag, 0u);  // the responder had no request
  EXPECT_EQ(b.ike_up[0].peer.asserted_id, policy::Identity::Fqdn("a.example"));

  // Its CHILD_SA carries the one flow, on both sides.
  const ChildSaUp* ours = ChildOf(a, mine.ike_sa);
  const ChildSaUp* theirs = ChildOf(b, seen.ike_sa);
  ASSERT_NE(ours, nullptr);
  ASSERT_NE(theirs, nullptr);
  ASSERT_EQ(ours->local_ts.size(), 1u);
  ASSERT_EQ(ours->remote_ts.size(), 1u);
  EXPECT_EQ(ours->local_ts[0].protocol, 6);
  EXPECT_EQ(ours->local_ts[0].ports.low, kAppPort);
  EXPECT_EQ(ours->local_ts[0].ports.high, kAppPort);
  EXPECT_EQ(ours->remote_ts[0].ports.low, kServicePort);
  ASSERT_EQ(theirs->local_ts.size(), 1u);
  EXPECT_EQ(theirs->local_ts[0].ports.low, kServicePort);
  EXPECT_EQ(theirs->remote_ts[0].ports.low, kAppPort);
  EXPECT_EQ(theirs->remote_ts[0].ports.high, kAppPort);
  ExpectContinuous(a);
  ExpectContinuous(b);
}

TEST(LocalCredentialTest, OtherRequestsNeverShareItsIkeSa) {
  TwoHosts s;
  TwoPeers peers = s.Simulate(42);
  auto& [sim, a, b] = peers;
  sim.Feed(a, WithCredential(Credential(s.app_key, "app.example"), 5));
  sim.RunFor(Duration(1000));
  ASSERT_EQ(a.ike_up.size(), 1u);
  // The SPD entry's own request starts a second IKE SA as a.example.
  sim.Feed(a, Initiate("a-b"));
  sim.RunFor(Duration(1000));
  ASSERT_EQ(a.ike_up.size(), 2u);
  EXPECT_EQ(a.ike_up[1].local_id, "fqdn:a.example");
  EXPECT_FALSE(a.ike_up[1].local_overridden);
  ASSERT_EQ(b.ike_up.size(), 2u);
  EXPECT_EQ(b.ike_up[1].peer.asserted_id, policy::Identity::Fqdn("a.example"));
  EXPECT_EQ(b.ike_up[1].peer.pad_entry, "a");
  // And a second request with a credential gets a third, not the first.
  sim.Feed(a, WithCredential(Credential(s.app_key, "app.example"), 6));
  sim.RunFor(Duration(1000));
  ASSERT_EQ(a.ike_up.size(), 3u);
  EXPECT_EQ(a.ike_up[2].request_tag, 6u);
  EXPECT_EQ(a.manager->ike_sa_count(), 3u);
}

TEST(LocalCredentialTest, UntrustedKeyFailsWithTheRequestTagAndTheReason) {
  TwoHosts s;
  TwoPeers peers = s.Simulate(43);
  auto& [sim, a, b] = peers;
  sim.Feed(a, Initiate("a-b"));
  sim.RunFor(Duration(1000));
  ASSERT_EQ(a.ike_up.size(), 1u);
  sim.Feed(a, WithCredential(Credential(
                                 MakeEd25519("a key B never saw"), "app.example"), 9));
  sim.RunFor(Duration(60000));
  ASSERT_EQ(a.ike_down.size(), 1u);
  EXPECT_EQ(a.ike_down[0].request_tag, 9u);
  EXPECT_EQ(a.ike_down[0].notify, wire::NotifyType::kAuthenticationFailed);
  EXPECT_EQ(a.ike_down[0].reason, FailureReason::kAuthenticationFailed);
  EXPECT_TRUE(b.Logged(FailureReason::kPadAuthMismatch));
  // The default SA is untouched.
  EXPECT_EQ(a.manager->ike_sa_count(), 1u);
  EXPECT_EQ(b.manager->ike_sa_count(), 1u);
  EXPECT_EQ(a.ike_up.size(), 1u);
  EXPECT_EQ(b.ike_up.size(), 1u);
}

TEST(LocalCredentialTest, IdentityNoPadEntryKnowsIsRefused) {
  TwoHosts s;
  TwoPeers peers = s.Simulate(44);
  auto& [sim, a, b] = peers;
  sim.Feed(a, WithCredential(Credential(s.app_key, "stranger.example"), 3));
  sim.RunFor(Duration(60000));
  ASSERT_EQ(a.ike_down.size(), 1u);
  EXPECT_EQ(a.ike_down[0].request_tag, 3u);
  EXPECT_EQ(a.ike_down[0].notify, wire::NotifyType::kAuthenticationFailed);
  EXPECT_TRUE(a.ike_up.empty());
  EXPECT_TRUE(b.ike_up.empty());
  ExpectClean(a);
  ExpectClean(b);
}

// Authenticated, but the peer's SPD has nothing for that identity: the
// request's IKE SA is deleted and its end names the refusal.
TEST(LocalCredentialTest, RefusedChildSaEndsTheRequestsIkeSa) {
  TwoHosts s(/*b_protects_app=*/false);
  TwoPeers peers = s.Simulate(46);
  auto& [sim, a, b] = peers;
  sim.Feed(a, WithCredential(Credential(s.app_key, "app.example"), 8));
  sim.RunFor(Duration(10000));
  ASSERT_EQ(a.ike_down.size(), 1u);
  EXPECT_EQ(a.ike_down[0].request_tag, 8u);
  EXPECT_EQ(a.ike_down[0].reason, FailureReason::kTsUnacceptable);
  EXPECT_TRUE(a.child_up.empty());
  ExpectClean(a);
  ExpectClean(b);
}

// Two requests in flight when one reqid is left: both pass the check at
// initiation; the first to send its IKE_AUTH reserves the reqid, the other
// fails there with its tag and a reason of its own, before the peer set up
// anything for its CHILD_SA. No two CHILD_SAs ever share a reqid.
TEST(LocalCredentialTest, TwoRequestsRacingForTheLastReqid) {
  TwoHosts s;
  EngineSettings settings;
  settings.reqids = {10, 11, 10};
  TwoPeers peers = s.Simulate(47, settings);
  auto& [sim, a, b] = peers;
  sim.Feed(a, Initiate("a-b"));  // takes reqid 10
  sim.RunFor(Duration(1000));
  ASSERT_EQ(a.child_up.size(), 1u);
  sim.Feed(a, WithCredential(Credential(s.app_key, "app.example"), 1));
  sim.Feed(a, WithCredential(Credential(s.app_key, "app.example"), 2));
  EXPECT_EQ(a.manager->ike_sa_count(), 3u);  // both let through at first
  sim.RunFor(Duration(10000));

  ASSERT_EQ(a.ike_down.size(), 1u);
  const uint64_t loser = a.ike_down[0].request_tag;
  EXPECT_TRUE(loser == 1 || loser == 2) << loser;
  EXPECT_EQ(a.ike_down[0].reason, FailureReason::kNoFreeReqid);
  EXPECT_TRUE(a.Logged(FailureReason::kNoFreeReqid));
  ASSERT_EQ(a.ike_up.size(), 2u);  // the default SA and the winner's
  EXPECT_EQ(a.ike_up[1].request_tag, loser == 1 ? 2u : 1u);
  EXPECT_EQ(a.child_up.size(), 2u);
  // Each reqid belongs to one CHILD_SA; both are in the range.
  std::map<uint32_t, std::set<ChildSaHandle>> children_by_reqid;
  for (const auto& [key, sa] : a.sad) children_by_reqid[sa.reqid].insert(sa.child_sa);
  EXPECT_EQ(children_by_reqid.size(), 2u);
  for (const auto& [reqid, children] : children_by_reqid) {
    EXPECT_TRUE(reqid == 10 || reqid == 11) << reqid;
    EXPECT_EQ(children.size(), 1u) << "reqid " << reqid;
  }
  // The peer never got the loser's IKE_AUTH: it holds the same CHILD_SAs.
  EXPECT_EQ(b.child_up.size(), 2u);
  EXPECT_EQ(a.sad.size(), 4u);
  EXPECT_EQ(b.sad.size(), 4u);
  EXPECT_EQ(a.errors, 0u);
  EXPECT_EQ(a.manager->ike_sa_count(), 2u);

  // Once a CHILD_SA is gone, the next request gets its reqid.
  sim.Feed(a, DeleteRequest{a.ike_up[0].ike_sa, 0});
  sim.RunFor(Duration(2000));
  sim.Feed(a, WithCredential(Credential(s.app_key, "app.example"), 3));
  sim.RunFor(Duration(10000));
  EXPECT_EQ(a.ike_down.size(), 2u);  // the deleted default SA only
  EXPECT_EQ(a.ike_up.back().request_tag, 3u);
  EXPECT_EQ(a.manager->ike_sa_count(), 2u);
  EXPECT_EQ(a.sad.size(), 4u);
}

TEST(LocalCredentialTest, MissingKeyIsAPolicyErrorNotACrash) {
  TwoHosts s;
  TwoPeers peers = s.Simulate(45);
  auto& [sim, a, b] = peers;
  sim.Feed(a, WithCredential(Credential(std::nullopt, "app.example"), 4));
  sim.RunFor(Duration(60000));
  ASSERT_EQ(a.ike_down.size(), 1u);
  EXPECT_EQ(a.ike_down[0].request_tag, 4u);
  EXPECT_EQ(a.ike_down[0].reason, FailureReason::kPolicyMissing);
  ExpectClean(a);
}

}  // namespace
}  // namespace ike::sa::testing

namespace ike::sa::testing {
namespace {

// A configured identity whose proof is a shared key (no private key): the
// override carries the secret, and the peer's PAD entry for that identity
// checks it; a wrong secret is the peer's AUTHENTICATION_FAILED.
policy::PolicySnapshotPtr TeamResponder() {
  PolicyBuilder pb;
  pb.Identity("me", policy::Identity::Fqdn("b.example"),
              policy::CredentialKind::kNone, "k")
      .Secret("k", "correct horse")
      .Secret("team", "team secret")
      .Pad(PskEntry("a", "a.example", "k", kA, "me"))
      .Pad(PskEntry("team", "team.example", "team", kA, "me"))
      .Spd(ProtectEntry("b-a", kB, kA, "a"))
      .Spd(ProtectEntry("b-team", kB, kA, "team"));
  return pb.Build();
}

// PSK proves both sides with one secret: B answers team.example with it,
// so A's PAD entry for B must name the same secret.
policy::PolicySnapshotPtr TeamInitiator() {
  PolicyBuilder pa;
  pa.Identity("me", policy::Identity::Fqdn("a.example"))
      .Secret("k", "team secret")
      .Pad(PskEntry("b", "b.example", "k", kB, "me"))
      .Spd(ProtectEntry("a-b", kA, kB, "b"));
  return pa.Build();
}

std::shared_ptr<LocalCredentialOverride> SharedKeyCredential(const std::string& secret) {
  auto credential = std::make_shared<LocalCredentialOverride>();
  credential->id = policy::Identity::Fqdn("team.example");
  credential->shared_key.assign(secret.begin(), secret.end());
  credential->label = "identity 'team'";
  return credential;
}

TEST(LocalCredentialTest, AConfiguredIdentityMayProveItselfWithItsSharedKey) {
  Simulation sim(47);
  Node& a = sim.AddNode("a", kA, TeamInitiator());
  Node& b = sim.AddNode("b", kB, TeamResponder());
  sim.Feed(a, WithCredential(SharedKeyCredential("team secret"), 12));
  sim.RunFor(Duration(2000));
  ASSERT_EQ(a.ike_up.size(), 1u);
  EXPECT_EQ(a.ike_up[0].request_tag, 12u);
  EXPECT_TRUE(a.ike_up[0].local_overridden);
  EXPECT_EQ(a.ike_up[0].local_id, "fqdn:team.example");
  ASSERT_EQ(b.ike_up.size(), 1u);
  EXPECT_EQ(b.ike_up[0].peer.pad_entry, "team");
  EXPECT_EQ(b.ike_up[0].peer.auth, PeerAuthKind::kSharedKey);
  EXPECT_EQ(b.ike_up[0].peer.asserted_id, policy::Identity::Fqdn("team.example"));
  EXPECT_NE(ChildOf(a, a.ike_up[0].ike_sa), nullptr);
  ExpectContinuous(a);
  ExpectContinuous(b);
}

TEST(LocalCredentialTest, AWrongSharedKeyIsThePeersRefusal) {
  Simulation sim(48);
  Node& a = sim.AddNode("a", kA, TeamInitiator());
  Node& b = sim.AddNode("b", kB, TeamResponder());
  sim.Feed(a, WithCredential(SharedKeyCredential("not the secret"), 13));
  sim.RunFor(Duration(60000));
  ASSERT_EQ(a.ike_down.size(), 1u);
  EXPECT_EQ(a.ike_down[0].request_tag, 13u);
  EXPECT_EQ(a.ike_down[0].notify, wire::NotifyType::kAuthenticationFailed);
  EXPECT_TRUE(a.ike_up.empty());
  EXPECT_TRUE(b.ike_up.empty());
  ExpectClean(a);
  ExpectClean(b);
}

}  // namespace
}  // namespace ike::sa::testing
