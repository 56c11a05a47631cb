// After establishment: INFORMATIONAL (delete, liveness), CREATE_CHILD_SA
// (new CHILD_SA, rekey, PFS, lifetimes) and the rekey/delete collisions of
// RFC 7296 section 2.8.1 and 2.25.
#include <gtest/gtest.h>

#include "ike/wire/message.h"
#include "tests/sa/established.h"
#include "tests/sa/expect.h"
#include "tests/sa/fixtures.h"
#include "tests/sa/sim.h"

namespace ike::sa::testing {
namespace {

struct Established : EstablishedPair {
  using EstablishedPair::EstablishedPair;
  ChildSaHandle ChildOf(const Node& n) const {
    auto v = n.manager->List();
    return v.size() == 1 && v[0].children.size() == 1
               ? v[0].children[0].handle
               : 0;
  }
  IkeSaHandle IkeOf(const Node& n) const {
    auto v = n.manager->List();
    return v.size() == 1 ? v[0].handle : 0;
  }
};

// Exactly one CHILD_SA per side, installed in both directions, agreeing.
void ExpectOneChild(const Node& a, const Node& b) {
  ASSERT_EQ(a.manager->child_sa_count(), 1u);
  ASSERT_EQ(b.manager->child_sa_count(), 1u);
  EXPECT_EQ(a.InboundCount(), 1u);
  EXPECT_EQ(a.OutboundCount(), 1u);
  EXPECT_EQ(b.InboundCount(), 1u);
  EXPECT_EQ(b.OutboundCount(), 1u);
  EXPECT_EQ(CheckPairConsistent(a, b), "");
  // Policies stay in place through rekeys: still one in/out pair.
  EXPECT_EQ(a.spd.size(), 2u);
  EXPECT_EQ(b.spd.size(), 2u);
  auto va = a.manager->List(), vb = b.manager->List();
  ASSERT_EQ(va.size(), 1u);
  ASSERT_EQ(vb.size(), 1u);
  EXPECT_EQ(va[0].children[0].outbound_spi, vb[0].children[0].inbound_spi);
  EXPECT_EQ(a.errors + b.errors, 0u);
  EXPECT_EQ(a.spis->outstanding() + b.spis->outstanding(), 0u);
}

TEST(DeleteTest, ChildSaDeletedByEitherSide) {
  for (bool by_initiator : {true, false}) {
    Established e(30);
    ASSERT_EQ(e.a->child_up.size(), 1u);
    Node& deleter = by_initiator ? *e.a : *e.b;
    Node& other = by_initiator ? *e.b : *e.a;
    e.sim.Feed(deleter, DeleteRequest{0, e.ChildOf(deleter)});
    e.sim.RunFor(Duration(1000));
    for (Node* n : {e.a, e.b}) {
      EXPECT_TRUE(n->sad.empty()) << n->name;
      EXPECT_TRUE(n->spd.empty()) << n->name;
      EXPECT_EQ(n->manager->ike_sa_count(), 1u);
      EXPECT_EQ(n->child_down.size(), 1u);
      EXPECT_EQ(n->errors, 0u);
    }
    EXPECT_EQ(deleter.child_down[0].reason, FailureReason::kDeletedLocally);
    EXPECT_EQ(other.child_down[0].reason, FailureReason::kDeletedByPeer);
  }
}

TEST(DeleteTest, IkeSaDeletedByEitherSide) {
  for (bool by_initiator : {true, false}) {
    Established e(31);
    Node& deleter = by_initiator ? *e.a : *e.b;
    Node& other = by_initiator ? *e.b : *e.a;
    e.sim.Feed(deleter, DeleteRequest{e.IkeOf(deleter), 0});
    e.sim.RunFor(Duration(1000));
    ExpectClean(*e.a);
    ExpectClean(*e.b);
    ASSERT_EQ(deleter.ike_down.size(), 1u);
    EXPECT_EQ(deleter.ike_down[0].reason, FailureReason::kDeletedLocally);
    ASSERT_EQ(other.ike_down.size(), 1u);
    EXPECT_EQ(other.ike_down[0].reason, FailureReason::kDeletedByPeer);
  }
}

TEST(DeleteTest, SimultaneousIkeDeletesBothEndClean) {
  Established e(32);
  e.sim.Feed(*e.a, DeleteRequest{e.IkeOf(*e.a), 0});
  e.sim.Feed(*e.b, DeleteRequest{e.IkeOf(*e.b), 0});
  e.sim.RunFor(Duration(60000));
  ExpectClean(*e.a);
  ExpectClean(*e.b);
}

TEST(LivenessTest, DeadPeerIsDetectedAndCleanedUp) {
  EngineSettings s;
  s.dpd_interval = Duration(10000);
  Established e(33, MakePskPair(), s);
  ASSERT_EQ(e.a->ike_up.size(), 1u);
  e.sim.faults.loss = 1.0;  // the peer vanishes
  e.sim.RunFor(Duration(300000));
  ASSERT_EQ(e.a->ike_down.size(), 1u);
  EXPECT_EQ(e.a->ike_down[0].reason, FailureReason::kDeadPeer);
  EXPECT_TRUE(e.a->sad.empty());
  EXPECT_TRUE(e.a->spd.empty());
  EXPECT_EQ(e.a->manager->ike_sa_count(), 0u);
}

TEST(LivenessTest, LivePeerAnswersEmptyInformationals) {
  EngineSettings s;
  s.dpd_interval = Duration(10000);
  Established e(34, MakePskPair(), s);
  size_t before = e.a->sent.size();
  e.sim.RunFor(Duration(60000));
  EXPECT_GT(e.a->sent.size(), before);  // liveness checks went out
  EXPECT_TRUE(e.a->ike_down.empty());
  EXPECT_TRUE(e.b->ike_down.empty());
  ExpectOneChild(*e.a, *e.b);
}

TEST(CreateChildTest, SecondSpdEntryUsesTheExistingIkeSa) {
  auto p = MakePskPair();
  auto a_snap = std::make_shared<policy::PolicySnapshot>(*p.a);
  auto b_snap = std::make_shared<policy::PolicySnapshot>(*p.b);
  auto web_a = ProtectEntry("a-b-web", kA, kB, "b");
  web_a.selector.protocol = 6;
  web_a.selector.remote_ports = {443, 443};
  auto web_b = ProtectEntry("b-a-web", kB, kA, "a");
  web_b.selector.protocol = 6;
  web_b.selector.local_ports = {443, 443};
  // The specific entries come first (SPD order decides).
  a_snap->spd = policy::Spd({web_a, ProtectEntry("a-b", kA, kB, "b")});
  b_snap->spd = policy::Spd({web_b, ProtectEntry("b-a", kB, kA, "a")});
  Established e(35, {a_snap, b_snap});
  ASSERT_EQ(e.a->child_up.size(), 1u);
  e.sim.Feed(*e.a, Initiate("a-b-web"));
  e.sim.RunFor(Duration(1000));
  EXPECT_EQ(e.a->manager->ike_sa_count(), 1u);
  ASSERT_EQ(e.a->child_up.size(), 2u);
  ASSERT_EQ(e.b->child_up.size(), 2u);
  EXPECT_EQ(e.b->child_up[1].spd_entry, "b-a-web");
  ASSERT_EQ(e.b->child_up[1].local_ts.size(), 1u);
  EXPECT_EQ(e.b->child_up[1].local_ts[0].ports, (policy::PortRange{443, 443}));
  EXPECT_EQ(e.b->child_up[1].local_ts[0].protocol, 6);
  EXPECT_EQ(e.a->sad.size(), 4u);
  EXPECT_EQ(CheckPairConsistent(*e.a, *e.b), "");
  // A second request for the same entry adds nothing.
  e.sim.Feed(*e.a, Initiate("a-b-web"));
  e.sim.RunFor(Duration(1000));
  EXPECT_EQ(e.a->child_up.size(), 2u);
}

// `entry` narrowed to TCP to or from one port (of the remote side or ours).
policy::SpdEntry TcpPort(policy::SpdEntry entry, uint16_t port, bool remote) {
  entry.selector.protocol = 6;
  (remote ? entry.selector.remote_ports : entry.selector.local_ports) =
      policy::PortRange{port, port};
  return entry;
}

// New CHILD_SAs take their reqids from EngineSettings::reqids: from `start`,
// wrapping to `first`, skipping reqids live CHILD_SAs hold, and refusing a
// CHILD_SA when all are held (one manager's range must never hand out a
// reqid twice: the daemon gives each protocol shard its own range).
TEST(ReqidTest, NewChildSasTakeFreeReqidsOfTheConfiguredRange) {
  auto p = MakePskPair();
  auto a_snap = std::make_shared<policy::PolicySnapshot>(*p.a);
  auto b_snap = std::make_shared<policy::PolicySnapshot>(*p.b);
  a_snap->spd = policy::Spd({TcpPort(ProtectEntry("a-b-web", kA, kB, "b"), 443, true),
                             TcpPort(ProtectEntry("a-b-ssh", kA, kB, "b"), 22, true),
                             ProtectEntry("a-b", kA, kB, "b")});
  b_snap->spd = policy::Spd({TcpPort(ProtectEntry("b-a-web", kB, kA, "a"), 443, false),
                             TcpPort(ProtectEntry("b-a-ssh", kB, kA, "a"), 22, false),
                             ProtectEntry("b-a", kB, kA, "a")});
  EngineSettings settings;
  settings.reqids = {/*first=*/100, /*last=*/101, /*start=*/101};
  Established e(41, {a_snap, b_snap}, settings);
  // The reqid of the newest CHILD_SA on `n` (its policies carry it).
  auto newest_reqid = [](const Node& n) -> uint32_t {
    if (n.child_up.empty()) return 0;
    for (const auto& policy : n.spd)
      if (policy.child_sa == n.child_up.back().child_sa) return policy.reqid;
    return 0;
  };
  auto child_of = [](const Node& n, const std::string& entry) {
    ChildSaHandle child = 0;
    for (const auto& up : n.child_up)
      if (up.spd_entry == entry) child = up.child_sa;
    return child;
  };
  ASSERT_EQ(e.a->child_up.size(), 1u);
  ASSERT_EQ(e.b->child_up.size(), 1u);
  EXPECT_EQ(newest_reqid(*e.a), 101u);  // from `start`
  EXPECT_EQ(newest_reqid(*e.b), 101u);

  e.sim.Feed(*e.a, Initiate("a-b-web"));
  e.sim.RunFor(Duration(1000));
  ASSERT_EQ(e.a->child_up.size(), 2u);
  ASSERT_EQ(e.b->child_up.size(), 2u);
  EXPECT_EQ(newest_reqid(*e.a), 100u);  // wrapped to `first`
  EXPECT_EQ(newest_reqid(*e.b), 100u);

  // Both reqids are held: the initiator asks for no third CHILD_SA rather
  // than give it a live reqid.
  const size_t sent = e.a->sent.size();
  e.sim.Feed(*e.a, Initiate("a-b-ssh"));
  e.sim.RunFor(Duration(1000));
  EXPECT_EQ(e.a->sent.size(), sent);
  EXPECT_TRUE(e.a->Logged(FailureReason::kInternalError));
  EXPECT_EQ(e.a->child_up.size(), 2u);
  EXPECT_EQ(e.b->child_up.size(), 2u);
  EXPECT_EQ(e.a->manager->child_sa_count(), 2u);
  EXPECT_EQ(e.b->manager->child_sa_count(), 2u);

  // With the web CHILD_SA gone its reqid is free; "a-b"'s (the next in
  // turn) is still held and skipped.
  e.sim.Feed(*e.a, DeleteRequest{0, child_of(*e.a, "a-b-web")});
  e.sim.RunFor(Duration(1000));
  e.sim.Feed(*e.a, Initiate("a-b-ssh"));
  e.sim.RunFor(Duration(1000));
  ASSERT_EQ(e.a->child_up.size(), 3u);
  ASSERT_EQ(e.b->child_up.size(), 3u);
  EXPECT_EQ(e.a->child_up.back().spd_entry, "a-b-ssh");
  EXPECT_EQ(newest_reqid(*e.a), 100u);
  EXPECT_EQ(newest_reqid(*e.b), 100u);
  EXPECT_EQ(e.a->manager->child_sa_count(), 2u);
  EXPECT_EQ(CheckPairConsistent(*e.a, *e.b), "");
  EXPECT_EQ(e.a->errors + e.b->errors, 0u);
}

// A responder whose reqids are all held refuses the CHILD_SA (nothing is
// installed on either side) and serves again once one is free.
TEST(ReqidTest, ResponderWithoutAFreeReqidRefusesTheChildSa) {
  auto p = MakePskPair();
  auto a_snap = std::make_shared<policy::PolicySnapshot>(*p.a);
  a_snap->spd = policy::Spd({TcpPort(ProtectEntry("a-b-web", kA, kB, "b"), 443, true),
                             ProtectEntry("a-b", kA, kB, "b")});
  EngineSettings one_reqid;
  one_reqid.reqids = {/*first=*/7, /*last=*/7, /*start=*/7};
  TwoPeers peers(42, {a_snap}, {p.b, {}, one_reqid});
  auto& [sim, a, b] = peers;
  sim.Feed(a, Initiate("a-b"));
  sim.RunFor(Duration(1000));
  ASSERT_EQ(b.child_up.size(), 1u);
  ASSERT_EQ(b.spd.size(), 2u);
  EXPECT_EQ(b.spd[0].reqid, 7u);
  sim.Feed(a, Initiate("a-b-web"));
  sim.RunFor(Duration(1000));
  EXPECT_EQ(a.child_up.size(), 1u);
  EXPECT_EQ(b.child_up.size(), 1u);
  EXPECT_EQ(a.manager->child_sa_count(), 1u);
  EXPECT_EQ(b.manager->child_sa_count(), 1u);
  EXPECT_EQ(a.sad.size(), 2u);
  EXPECT_EQ(b.sad.size(), 2u);
  EXPECT_TRUE(b.Logged(FailureReason::kNoFreeReqid));
  EXPECT_EQ(a.spis->outstanding() + b.spis->outstanding(), 0u);
  // With the first CHILD_SA gone, its reqid serves the next one.
  sim.Feed(a, DeleteRequest{0, a.child_up[0].child_sa});
  sim.RunFor(Duration(1000));
  ASSERT_EQ(b.manager->child_sa_count(), 0u);
  sim.Feed(a, Initiate("a-b-web"));
  sim.RunFor(Duration(1000));
  ASSERT_EQ(b.child_up.size(), 2u);
  ASSERT_EQ(b.spd.size(), 2u);
  EXPECT_EQ(b.spd[0].reqid, 7u);
  EXPECT_EQ(CheckPairConsistent(a, b), "");
  EXPECT_EQ(a.errors + b.errors, 0u);
}

TEST(RekeyTest, ChildSaRekeyedByEitherSide) {
  for (bool by_initiator : {true, false}) {
    Established e(36);
    Node& r = by_initiator ? *e.a : *e.b;
    ChildSaHandle old = e.ChildOf(r);
    uint32_t old_spi = r.child_up[0].inbound_spi;
    e.sim.Feed(r, RekeyRequest{0, old});
    e.sim.RunFor(Duration(2000));
    ExpectOneChild(*e.a, *e.b);
    ASSERT_EQ(r.child_up.size(), 2u);
    EXPECT_EQ(r.child_up[1].replaces, old);
    EXPECT_NE(r.child_up[1].inbound_spi, old_spi);
    ASSERT_EQ(r.child_down.size(), 1u);
    EXPECT_EQ(r.child_down[0].reason, FailureReason::kRekeyed);
  }
}

PskPair WithEspProposals(PskPair p, std::vector<wire::KeGroup> a_groups,
                         std::vector<wire::KeGroup> b_groups) {
  auto set = [](const policy::PolicySnapshotPtr& base,
                std::vector<wire::KeGroup> groups) {
    auto s = std::make_shared<policy::PolicySnapshot>(*base);
    policy::ProposalSet esp = policy::DefaultEspProposals();
    esp.name = "pfs";
    esp.proposals.resize(1);
    esp.proposals[0].ke = groups;
    s->proposals.push_back(esp);
    std::vector<policy::SpdEntry> entries = s->spd.entries();
    for (auto& e : entries) e.protect.esp_proposals = "pfs";
    s->spd = policy::Spd(entries);
    return policy::PolicySnapshotPtr(s);
  };
  return {set(p.a, a_groups), set(p.b, b_groups)};
}

TEST(RekeyTest, ChildSaRekeyWithPfs) {
  Established e(37, WithEspProposals(MakePskPair(),
                                     {wire::KeGroup::kCurve25519},
                                     {wire::KeGroup::kCurve25519}));
  ASSERT_EQ(e.a->child_up.size(), 1u);  // IKE_AUTH child: no KE
  e.sim.Feed(*e.a, RekeyRequest{0, e.ChildOf(*e.a)});
  e.sim.RunFor(Duration(2000));
  ExpectOneChild(*e.a, *e.b);
  ASSERT_EQ(e.a->child_up.size(), 2u);
  ASSERT_EQ(e.b->child_up.size(), 2u);
  // Both sides report the group the rekey's keys came from; the IKE_AUTH
  // CHILD_SA's keys came from SK_d alone.
  EXPECT_EQ(e.a->child_up[0].pfs_group, wire::KeGroup::kNone);
  EXPECT_EQ(e.b->child_up[0].pfs_group, wire::KeGroup::kNone);
  EXPECT_EQ(e.a->child_up[1].pfs_group, wire::KeGroup::kCurve25519);
  EXPECT_EQ(e.b->child_up[1].pfs_group, wire::KeGroup::kCurve25519);
}

TEST(RekeyTest, ChildSaRekeyWithoutPfsReportsNoGroup) {
  Established e(39);
  e.sim.Feed(*e.b, RekeyRequest{0, e.ChildOf(*e.b)});
  e.sim.RunFor(Duration(2000));
  ExpectOneChild(*e.a, *e.b);
  ASSERT_EQ(e.a->child_up.size(), 2u);
  ASSERT_EQ(e.b->child_up.size(), 2u);
  EXPECT_EQ(e.a->child_up[1].pfs_group, wire::KeGroup::kNone);
  EXPECT_EQ(e.b->child_up[1].pfs_group, wire::KeGroup::kNone);
}

TEST(RekeyTest, SoftLifetimeRekeysAndHardLifetimeDeletes) {
  auto p = MakePskPair();
  auto lifetimes = [](const policy::PolicySnapshotPtr& base, uint64_t soft,
                      uint64_t hard) {
    auto s = std::make_shared<policy::PolicySnapshot>(*base);
    std::vector<policy::SpdEntry> entries = s->spd.entries();
    for (auto& e : entries) {
      e.protect.child_lifetime.soft_seconds = soft;
      e.protect.child_lifetime.hard_seconds = hard;
      e.protect.child_lifetime.jitter_percent = 10;
    }
    s->spd = policy::Spd(entries);
    return policy::PolicySnapshotPtr(s);
  };
  Established e(38, {lifetimes(p.a, 100, 200), lifetimes(p.b, 0, 0)});
  ASSERT_EQ(e.a->child_up.size(), 1u);
  // Kernel lifetimes carry the (jittered) soft limit.
  const auto& installed = e.a->sad.begin()->second;
  EXPECT_LE(installed.lifetime.soft_seconds, 100u);
  EXPECT_GE(installed.lifetime.soft_seconds, 90u);
  EXPECT_EQ(installed.lifetime.hard_seconds, 200u);
  e.sim.RunFor(Duration(150000));
  ExpectOneChild(*e.a, *e.b);
  EXPECT_GE(e.a->child_up.size(), 2u);  // rekeyed at least once
  // A kernel hard expire deletes the CHILD_SA on both sides.
  auto v = e.a->manager->List();
  e.sim.Feed(*e.a, KernelExpire{Ip(kA), v[0].children[0].inbound_spi, true});
  e.sim.RunFor(Duration(1000));
  EXPECT_TRUE(e.a->sad.empty());
  EXPECT_TRUE(e.b->sad.empty());
}

// ------------------------------------------------- collision scenarios
// Each ends with exactly one CHILD_SA per direction on both sides, the
// same on both, and no traffic-carrying SA missing.

TEST(CollisionTest, SimultaneousChildRekey) {
  for (uint64_t seed = 40; seed < 48; ++seed) {
    Established e(seed);
    e.sim.Feed(*e.a, RekeyRequest{0, e.ChildOf(*e.a)});
    e.sim.Feed(*e.b, RekeyRequest{0, e.ChildOf(*e.b)});
    e.sim.RunFor(Duration(5000));
    ExpectOneChild(*e.a, *e.b);
  }
}

TEST(CollisionTest, RekeyCrossingADelete) {
  Established e(50);
  e.sim.Feed(*e.a, RekeyRequest{0, e.ChildOf(*e.a)});
  e.sim.Feed(*e.b, DeleteRequest{0, e.ChildOf(*e.b)});
  e.sim.RunFor(Duration(5000));
  // The delete wins: nobody keeps SAs the other does not have.
  EXPECT_EQ(CheckPairConsistent(*e.a, *e.b), "");
  EXPECT_EQ(e.a->manager->child_sa_count(), e.b->manager->child_sa_count());
  EXPECT_EQ(e.a->InboundCount(), e.b->OutboundCount());
  EXPECT_EQ(e.a->errors + e.b->errors, 0u);
  EXPECT_EQ(e.a->spis->outstanding() + e.b->spis->outstanding(), 0u);
}

TEST(CollisionTest, LostResponsesDuringRekey) {
  Established e(51);
  // Lose the first CREATE_CHILD_SA response and the first Delete response.
  int lost = 0;
  e.sim.drop_if = [&](const Datagram& d) {
    auto h = wire::DecodeHeader(d.event.bytes);
    if (!h.ok() || !h->IsResponse()) return false;
    if (h->exchange == wire::ExchangeType::kCreateChildSa && lost == 0)
      return ++lost, true;
    if (h->exchange == wire::ExchangeType::kInformational && lost == 1)
      return ++lost, true;
    return false;
  };
  e.sim.Feed(*e.a, RekeyRequest{0, e.ChildOf(*e.a)});
  e.sim.RunFor(Duration(20000));
  EXPECT_EQ(lost, 2);
  ExpectOneChild(*e.a, *e.b);
}

TEST(CollisionTest, InvalidKeDuringRekey) {
  Established e(52, WithEspProposals(
                        MakePskPair(),
                        {wire::KeGroup::kEcp256, wire::KeGroup::kCurve25519},
                        {wire::KeGroup::kCurve25519}));
  e.sim.Feed(*e.a, RekeyRequest{0, e.ChildOf(*e.a)});
  e.sim.RunFor(Duration(5000));
  EXPECT_TRUE(e.a->Logged(FailureReason::kInvalidKePayload));
  ExpectOneChild(*e.a, *e.b);
  EXPECT_EQ(e.a->child_up.size(), 2u);
}

TEST(CollisionTest, SimultaneousChildRekeyOverALossyNetwork) {
  for (uint64_t seed = 60; seed < 66; ++seed) {
    Established e(seed);
    e.sim.faults.loss = 0.3;
    e.sim.faults.duplicate = 0.2;
    e.sim.faults.min_delay = Duration(5);
    e.sim.faults.max_delay = Duration(300);
    e.sim.Feed(*e.a, RekeyRequest{0, e.ChildOf(*e.a)});
    e.sim.Feed(*e.b, RekeyRequest{0, e.ChildOf(*e.b)});
    e.sim.RunFor(Duration(20000));
    e.sim.faults = {};
    e.sim.RunFor(Duration(120000));
    if (e.a->manager->ike_sa_count() == 0) {
      // Retransmissions gave up (dead peer): both must then be clean.
      EXPECT_TRUE(e.a->sad.empty()) << seed;
      continue;
    }
    ExpectOneChild(*e.a, *e.b);
  }
}

}  // namespace
}  // namespace ike::sa::testing
