// Rekey and delete collisions (RFC 7296 sections 2.8, 2.8.1, 2.8.2, 2.25):
// a named list of scenarios, each run with the deterministic simulation and
// ending with exactly one CHILD_SA per direction on both sides (or both
// sides clean where the IKE SA is deleted), the same SAs on both sides, and
// no moment where a live CHILD_SA had no SA to carry its traffic or a side
// sent on an SA its peer had already removed as replaced.
#include <gtest/gtest.h>

#include "ike/wire/message.h"
#include "tests/sa/established.h"
#include "tests/sa/expect.h"
#include "tests/sa/fixtures.h"
#include "tests/sa/sim.h"

namespace ike::sa::testing {
namespace {

struct Established : EstablishedPair {
  IkeSaHandle ike_a = 0, ike_b = 0;
  explicit Established(uint64_t seed, PskPair p = MakePskPair(),
                       EngineSettings settings = {})
      : EstablishedPair(seed, std::move(p), settings),
        ike_a(Live(*a).handle),
        ike_b(Live(*b).handle) {}
  // The IKE SA that carries the CHILD_SAs (retired ones carry none).
  static IkeSaView Live(const Node& n) {
    for (const auto& v : n.manager->List())
      if (v.state != IkeSaState::kDeleting) return v;
    return {};
  }
  ChildSaHandle ChildOf(const Node& n) const {
    auto v = Live(n);
    return v.children.size() == 1 ? v.children[0].handle : 0;
  }
  // Lets retransmissions and bounded waits run out after a faulty period.
  void Settle() {
    sim.faults = {};
    sim.drop_if = nullptr;
    sim.RunFor(Duration(180000));
  }
};

// One IKE SA per side under the handles they had, one CHILD_SA per
// direction, the same on both sides, nothing lost on the way.
void ExpectOneOfEach(const Established& e) {
  for (Node* n : {e.a, e.b}) {
    SCOPED_TRACE(n->name);
    EXPECT_EQ(n->manager->ike_sa_count(), 1u);
    EXPECT_EQ(n->manager->child_sa_count(), 1u);
    EXPECT_EQ(n->InboundCount(), 1u);
    EXPECT_EQ(n->OutboundCount(), 1u);
    EXPECT_EQ(n->spd.size(), 2u);
    EXPECT_TRUE(n->ike_down.empty());
    EXPECT_EQ(n->errors, 0u);
    EXPECT_EQ(n->spis->outstanding(), 0u);
    ExpectContinuous(*n);
  }
  EXPECT_EQ(Established::Live(*e.a).handle, e.ike_a);
  EXPECT_EQ(Established::Live(*e.b).handle, e.ike_b);
  auto va = Established::Live(*e.a), vb = Established::Live(*e.b);
  EXPECT_EQ(va.initiator_spi, vb.initiator_spi);
  EXPECT_EQ(va.responder_spi, vb.responder_spi);
  EXPECT_NE(va.initiator, vb.initiator);
  EXPECT_EQ(CheckPairConsistent(*e.a, *e.b), "");
}

size_t CountLogs(const Node& n, const std::string& needle) {
  size_t c = 0;
  for (const auto& l : n.logs) c += l.text.find(needle) != std::string::npos;
  return c;
}

// Faults that reorder, duplicate and lose datagrams.
Faults Lossy(double loss) {
  Faults f;
  f.loss = loss;
  f.duplicate = 0.2;
  f.min_delay = Duration(5);
  f.max_delay = Duration(300);
  return f;
}

bool IsResponse(const Datagram& d, wire::ExchangeType exchange) {
  auto h = wire::DecodeHeader(d.event.bytes);
  return h.ok() && h->IsResponse() && h->exchange == exchange;
}
bool IsRequest(const Datagram& d, wire::ExchangeType exchange) {
  auto h = wire::DecodeHeader(d.event.bytes);
  return h.ok() && !h->IsResponse() && h->exchange == exchange;
}

// While the Delete of an IKE SA's old SPIs is being lost, each side lists
// the SA once as live (its handle, its CHILD_SA) and the old SPIs as a
// separate entry marked rekeyed, with no children.
TEST(RekeyListingTest, OldIkeSpisAreMarkedRekeyed) {
  Established e(175);
  int lost = 0;
  e.sim.drop_if = [&](const Datagram& d) {
    auto h = wire::DecodeHeader(d.event.bytes);
    if (!h.ok() || d.from != "a" || h->IsResponse() ||
        h->exchange != wire::ExchangeType::kInformational || lost >= 2)
      return false;
    ++lost;
    return true;
  };
  e.sim.Feed(*e.a, RekeyRequest{e.ike_a, 0});
  e.sim.RunFor(Duration(500));
  for (Node* n : {e.a, e.b}) {
    SCOPED_TRACE(n->name);
    auto views = n->manager->List();
    ASSERT_EQ(views.size(), 2u);
    size_t live = 0, rekeyed = 0;
    for (const auto& v : views) {
      if (v.rekeyed) {
        ++rekeyed;
        EXPECT_TRUE(v.children.empty());
        EXPECT_EQ(v.state, IkeSaState::kDeleting);
      } else {
        ++live;
        EXPECT_EQ(v.handle, n == e.a ? e.ike_a : e.ike_b);
        ASSERT_EQ(v.children.size(), 1u);
        EXPECT_EQ(v.children[0].state, ChildSaState::kActive);
      }
    }
    EXPECT_EQ(live, 1u);
    EXPECT_EQ(rekeyed, 1u);
  }
  e.sim.RunFor(Duration(5000));
  e.Settle();
  EXPECT_EQ(lost, 2);
  ExpectOneOfEach(e);
  for (Node* n : {e.a, e.b}) EXPECT_FALSE(n->manager->List()[0].rekeyed);
}

// RFC 7296 2.8: the responder of a CHILD_SA rekey keeps sending on the old
// SA until the initiator, which has installed the new pair by then, deletes
// the old one; only then is the new outbound SA installed, and before the
// old one goes. Either side rekeys; the delete is lost a few times.
TEST(RekeyResponderTest, NewOutboundSaOnlyAfterTheOldOneIsDeleted) {
  for (bool a_rekeys : {true, false}) {
    SCOPED_TRACE(a_rekeys);
    Established e(170 + a_rekeys);
    Node& initiator = a_rekeys ? *e.a : *e.b;
    Node& responder = a_rekeys ? *e.b : *e.a;
    uint32_t old_out = responder.child_up[0].outbound_spi;
    // Lose the first two INFORMATIONAL requests (the Delete) on the way.
    int lost = 0;
    e.sim.drop_if = [&](const Datagram& d) {
      auto h = wire::DecodeHeader(d.event.bytes);
      if (!h.ok() || d.from != initiator.name || h->IsResponse() ||
          h->exchange != wire::ExchangeType::kInformational || lost >= 2)
        return false;
      ++lost;
      return true;
    };
    size_t trace_from = responder.sad_trace.size();
    e.sim.Feed(initiator, RekeyRequest{0, e.ChildOf(initiator)});
    // After the CREATE_CHILD_SA answer, while the Delete is being lost:
    // the responder has the new inbound SA, and still only the old
    // outbound one.
    e.sim.RunFor(Duration(500));
    ASSERT_EQ(responder.child_up.size(), 2u);
    uint32_t new_out = responder.child_up[1].outbound_spi;
    EXPECT_EQ(responder.InboundCount(), 2u);
    EXPECT_EQ(responder.OutboundCount(), 1u);
    EXPECT_TRUE(responder.sad.count({initiator.address.value, old_out}));
    // Both list the old CHILD_SA as replaced, not as a second live one.
    for (Node* n : {&initiator, &responder}) {
      auto v = Established::Live(*n);
      ASSERT_EQ(v.children.size(), 2u) << n->name;
      EXPECT_EQ(v.children[0].state, ChildSaState::kRekeyed) << n->name;
      EXPECT_EQ(v.children[1].state, ChildSaState::kActive) << n->name;
    }
    e.sim.RunFor(Duration(2000));  // the second Delete is lost too
    EXPECT_EQ(responder.OutboundCount(), 1u);
    e.sim.RunFor(Duration(5000));
    e.Settle();
    EXPECT_EQ(lost, 2);
    ExpectOneOfEach(e);
    EXPECT_EQ(responder.child_up[1].outbound_spi, new_out);
    // The new outbound SA was installed before the old one was removed.
    std::vector<std::string> trace(responder.sad_trace.begin() + trace_from,
                                   responder.sad_trace.end());
    auto at = [&](const std::string& step) {
      return std::find(trace.begin(), trace.end(), step) - trace.begin();
    };
    ASSERT_LT(size_t(at("+out " + std::to_string(new_out) + " reqid 1")),
              trace.size());
    EXPECT_LT(at("+out " + std::to_string(new_out) + " reqid 1"),
              at("-out " + std::to_string(old_out)));
  }
}


// ------------------------------------------------------------ CHILD_SA

TEST(CollisionTest, SimultaneousChildRekey) {
  for (uint64_t seed = 100; seed < 110; ++seed) {
    SCOPED_TRACE(seed);
    Established e(seed);
    e.sim.Feed(*e.a, RekeyRequest{0, e.ChildOf(*e.a)});
    e.sim.Feed(*e.b, RekeyRequest{0, e.ChildOf(*e.b)});
    e.Settle();
    ExpectOneOfEach(e);
    // Both rekeys were answered; the one with the lowest nonce was undone.
    EXPECT_EQ(e.a->child_up.size(), 3u);
    EXPECT_EQ(e.b->child_up.size(), 3u);
  }
}

TEST(CollisionTest, SimultaneousChildRekeyLossyNetwork) {
  for (uint64_t seed = 110; seed < 120; ++seed) {
    SCOPED_TRACE(seed);
    Established e(seed);
    e.sim.faults = Lossy(0.2);
    e.sim.Feed(*e.a, RekeyRequest{0, e.ChildOf(*e.a)});
    e.sim.Feed(*e.b, RekeyRequest{0, e.ChildOf(*e.b)});
    e.sim.RunFor(Duration(20000));
    e.Settle();
    if (e.a->manager->ike_sa_count() == 0 ||
        e.b->manager->ike_sa_count() == 0) {
      // A side gave up after its retransmission limit: both clean then.
      continue;
    }
    ExpectOneOfEach(e);
  }
}

TEST(CollisionTest, ChildRekeyCrossingChildDelete) {
  for (bool rekey_by_a : {true, false}) {
    SCOPED_TRACE(rekey_by_a ? "a rekeys, b deletes" : "b rekeys, a deletes");
    Established e(120);
    Node& rekeyer = rekey_by_a ? *e.a : *e.b;
    Node& deleter = rekey_by_a ? *e.b : *e.a;
    e.sim.Feed(rekeyer, RekeyRequest{0, e.ChildOf(rekeyer)});
    e.sim.Feed(deleter, DeleteRequest{0, e.ChildOf(deleter)});
    e.Settle();
    // The delete wins (2.25): no CHILD_SA left on either side, the IKE SA
    // stays, and the rekey's SPI is given back.
    for (Node* n : {e.a, e.b}) {
      SCOPED_TRACE(n->name);
      EXPECT_EQ(n->manager->ike_sa_count(), 1u);
      EXPECT_EQ(n->manager->child_sa_count(), 0u);
      EXPECT_TRUE(n->sad.empty());
      EXPECT_TRUE(n->spd.empty());
      EXPECT_EQ(n->errors, 0u);
      EXPECT_EQ(n->spis->outstanding(), 0u);
      ExpectContinuous(*n);
    }
  }
}

TEST(CollisionTest, LostResponsesDuringChildRekey) {
  Established e(121);
  int lost = 0;
  e.sim.drop_if = [&](const Datagram& d) {
    if (lost == 0 && IsResponse(d, wire::ExchangeType::kCreateChildSa))
      return ++lost, true;
    if (lost == 1 && IsResponse(d, wire::ExchangeType::kInformational))
      return ++lost, true;
    return false;
  };
  e.sim.Feed(*e.a, RekeyRequest{0, e.ChildOf(*e.a)});
  e.sim.RunFor(Duration(20000));
  EXPECT_EQ(lost, 2);
  e.Settle();
  ExpectOneOfEach(e);
  EXPECT_EQ(e.a->child_up.size(), 2u);
}

PskPair WithGroups(PskPair p, std::vector<wire::KeGroup> a_groups,
                   std::vector<wire::KeGroup> b_groups) {
  auto set = [](const policy::PolicySnapshotPtr& base,
                std::vector<wire::KeGroup> groups) {
    auto s = std::make_shared<policy::PolicySnapshot>(*base);
    policy::ProposalSet esp = policy::DefaultEspProposals();
    esp.name = "pfs";
    esp.proposals.resize(1);
    esp.proposals[0].ke = groups;
    policy::ProposalSet ike = policy::DefaultIkeProposals();
    ike.name = "ike-test";
    ike.proposals.resize(1);
    ike.proposals[0].ke = groups;
    s->proposals.push_back(esp);
    s->proposals.push_back(ike);
    std::vector<policy::SpdEntry> entries = s->spd.entries();
    for (auto& e : entries) {
      e.protect.esp_proposals = "pfs";
      e.protect.ike_proposals = "ike-test";
    }
    s->spd = policy::Spd(entries);
    return policy::PolicySnapshotPtr(s);
  };
  return {set(p.a, a_groups), set(p.b, b_groups)};
}

// A prefers P-256, B only takes X25519: every rekey A starts first gets
// INVALID_KE_PAYLOAD and is retried with X25519.
PskPair PreferenceMismatch() {
  return WithGroups(MakePskPair(),
                    {wire::KeGroup::kEcp256, wire::KeGroup::kCurve25519},
                    {wire::KeGroup::kCurve25519});
}

TEST(CollisionTest, InvalidKeDuringChildRekey) {
  Established e(122, PreferenceMismatch());
  size_t before = CountLogs(*e.a, "asks for KE group");
  e.sim.Feed(*e.a, RekeyRequest{0, e.ChildOf(*e.a)});
  e.Settle();
  EXPECT_GT(CountLogs(*e.a, "asks for KE group"), before);
  ExpectOneOfEach(e);
}

TEST(CollisionTest, InvalidKeDuringSimultaneousChildRekey) {
  for (uint64_t seed = 123; seed < 128; ++seed) {
    SCOPED_TRACE(seed);
    Established e(seed, PreferenceMismatch());
    e.sim.Feed(*e.a, RekeyRequest{0, e.ChildOf(*e.a)});
    e.sim.Feed(*e.b, RekeyRequest{0, e.ChildOf(*e.b)});
    e.Settle();
    ExpectOneOfEach(e);
  }
}

// ------------------------------------------------------------ IKE SA

// 2.8.2: both rekey the IKE SA at once. Both rekeys are answered (no
// TEMPORARY_FAILURE), the new IKE SA with the lowest nonce is deleted by
// its initiator, the other one keeps the CHILD_SAs.
TEST(CollisionTest, SimultaneousIkeRekey) {
  size_t a_won = 0, b_won = 0;
  for (uint64_t seed = 130; seed < 146; ++seed) {
    SCOPED_TRACE(seed);
    Established e(seed);
    auto before_a = e.a->sad;
    e.sim.Feed(*e.a, RekeyRequest{e.ike_a, 0});
    e.sim.Feed(*e.b, RekeyRequest{e.ike_b, 0});
    e.Settle();
    ExpectOneOfEach(e);
    EXPECT_EQ(CountLogs(*e.a, "TEMPORARY_FAILURE"), 0u);
    EXPECT_EQ(CountLogs(*e.b, "TEMPORARY_FAILURE"), 0u);
    EXPECT_EQ(CountLogs(*e.a, "with the lowest nonce"), 1u);
    EXPECT_EQ(CountLogs(*e.b, "with the lowest nonce"), 1u);
    // The CHILD_SAs were not touched.
    EXPECT_EQ(e.a->sad.size(), before_a.size());
    for (const auto& [k, v] : before_a) EXPECT_TRUE(e.a->sad.count(k));
    EXPECT_EQ(e.a->child_up.size(), 1u);
    // The survivor's initiator is the original initiator of the new SA.
    if (Established::Live(*e.a).initiator) ++a_won; else ++b_won;
    // The survivor carries further exchanges.
    e.sim.Feed(*e.b, RekeyRequest{0, e.ChildOf(*e.b)});
    e.Settle();
    ExpectOneOfEach(e);
    EXPECT_EQ(e.b->child_up.size(), 2u);
  }
  // Over 16 seeds each side's rekey survives sometimes.
  EXPECT_GT(a_won, 0u);
  EXPECT_GT(b_won, 0u);
}

TEST(CollisionTest, SimultaneousIkeRekeyLossyNetwork) {
  size_t settled = 0;
  for (uint64_t seed = 150; seed < 170; ++seed) {
    SCOPED_TRACE(seed);
    Established e(seed);
    e.sim.faults = Lossy(0.2);
    e.sim.Feed(*e.a, RekeyRequest{e.ike_a, 0});
    e.sim.Feed(*e.b, RekeyRequest{e.ike_b, 0});
    e.sim.RunFor(Duration(30000));
    e.Settle();
    if (e.a->manager->ike_sa_count() == 0 ||
        e.b->manager->ike_sa_count() == 0) {
      EXPECT_EQ(e.a->manager->ike_sa_count() + e.b->manager->ike_sa_count(),
                0u);
      EXPECT_TRUE(e.a->sad.empty());
      EXPECT_TRUE(e.b->sad.empty());
      continue;
    }
    ++settled;
    ExpectOneOfEach(e);
    EXPECT_EQ(e.a->child_up.size(), 1u);
    EXPECT_EQ(e.b->child_up.size(), 1u);
  }
  EXPECT_GE(settled, 15u);
}

// One side's answer is lost, so the other side's rekey completes before it
// sees the collision: the late request meets a replaced SA and is refused,
// and the side that answered the completed rekey adopts it.
TEST(CollisionTest, SimultaneousIkeRekeyOneSideFinishesFirst) {
  for (bool lose_a_request : {true, false}) {
    SCOPED_TRACE(lose_a_request ? "a's request lost once"
                                : "b's request lost once");
    Established e(171);
    bool lost = false;
    const std::string from = lose_a_request ? "a" : "b";
    e.sim.drop_if = [&](const Datagram& d) {
      if (!lost && d.from == from &&
          IsRequest(d, wire::ExchangeType::kCreateChildSa))
        return lost = true, true;
      return false;
    };
    e.sim.Feed(*e.a, RekeyRequest{e.ike_a, 0});
    e.sim.Feed(*e.b, RekeyRequest{e.ike_b, 0});
    e.Settle();
    EXPECT_TRUE(lost);
    ExpectOneOfEach(e);
    // The side whose request got through first owns the new IKE SA.
    EXPECT_EQ(Established::Live(lose_a_request ? *e.b : *e.a).initiator,
              true);
  }
}

TEST(CollisionTest, LostResponsesDuringIkeRekey) {
  Established e(172);
  int lost = 0;
  e.sim.drop_if = [&](const Datagram& d) {
    if (lost == 0 && IsResponse(d, wire::ExchangeType::kCreateChildSa))
      return ++lost, true;
    if (lost == 1 && IsResponse(d, wire::ExchangeType::kInformational))
      return ++lost, true;
    return false;
  };
  e.sim.Feed(*e.b, RekeyRequest{e.ike_b, 0});
  e.sim.RunFor(Duration(90000));
  EXPECT_EQ(lost, 2);
  e.Settle();
  ExpectOneOfEach(e);
}

TEST(CollisionTest, InvalidKeDuringSimultaneousIkeRekey) {
  for (uint64_t seed = 173; seed < 178; ++seed) {
    SCOPED_TRACE(seed);
    Established e(seed, PreferenceMismatch());
    e.sim.Feed(*e.a, RekeyRequest{e.ike_a, 0});
    e.sim.Feed(*e.b, RekeyRequest{e.ike_b, 0});
    e.Settle();
    ExpectOneOfEach(e);
  }
}

// 2.25.1: an IKE rekey meeting a CHILD_SA rekey of the same IKE SA is
// answered with TEMPORARY_FAILURE and retried; both end rekeyed.
TEST(CollisionTest, IkeRekeyWhileChildRekeyInProgress) {
  for (bool ike_by_a : {true, false}) {
    SCOPED_TRACE(ike_by_a ? "a: IKE, b: CHILD" : "a: CHILD, b: IKE");
    Established e(180);
    auto spi_before = Established::Live(*e.a).initiator_spi;
    Node& ike = ike_by_a ? *e.a : *e.b;
    Node& child = ike_by_a ? *e.b : *e.a;
    e.sim.Feed(child, RekeyRequest{0, e.ChildOf(child)});
    e.sim.Feed(ike, RekeyRequest{Established::Live(ike).handle, 0});
    e.Settle();
    ExpectOneOfEach(e);
    EXPECT_NE(Established::Live(*e.a).initiator_spi, spi_before);
    EXPECT_EQ(child.child_up.size(), 2u);
    EXPECT_GT(CountLogs(ike, "TEMPORARY_FAILURE"), 0u);
  }
}

// Our own CHILD_SA rekey queued behind our IKE rekey runs on the new SA.
TEST(CollisionTest, ChildRekeyQueuedBehindIkeRekey) {
  Established e(181);
  e.sim.Feed(*e.a, RekeyRequest{e.ike_a, 0});
  e.sim.Feed(*e.a, RekeyRequest{0, e.ChildOf(*e.a)});
  e.Settle();
  ExpectOneOfEach(e);
  EXPECT_EQ(e.a->child_up.size(), 2u);
  EXPECT_TRUE(Established::Live(*e.a).initiator);
}

// Deleting the IKE SA while the peer rekeys a CHILD_SA or the IKE SA:
// both sides end with nothing, cleanly.
TEST(CollisionTest, IkeDeleteCrossingChildRekey) {
  for (bool delete_by_a : {true, false}) {
    SCOPED_TRACE(delete_by_a ? "a deletes" : "b deletes");
    Established e(182);
    Node& deleter = delete_by_a ? *e.a : *e.b;
    Node& rekeyer = delete_by_a ? *e.b : *e.a;
    e.sim.Feed(rekeyer, RekeyRequest{0, e.ChildOf(rekeyer)});
    e.sim.Feed(deleter, DeleteRequest{Established::Live(deleter).handle, 0});
    e.Settle();
    ExpectClean(*e.a);
    ExpectClean(*e.b);
    ExpectContinuous(*e.a);
    ExpectContinuous(*e.b);
    ASSERT_EQ(deleter.ike_down.size(), 1u);
    EXPECT_EQ(deleter.ike_down[0].reason, FailureReason::kDeletedLocally);
  }
}

TEST(CollisionTest, IkeDeleteCrossingIkeRekey) {
  for (bool delete_by_a : {true, false}) {
    SCOPED_TRACE(delete_by_a ? "a deletes" : "b deletes");
    Established e(183);
    Node& deleter = delete_by_a ? *e.a : *e.b;
    Node& rekeyer = delete_by_a ? *e.b : *e.a;
    e.sim.Feed(rekeyer, RekeyRequest{Established::Live(rekeyer).handle, 0});
    e.sim.Feed(deleter, DeleteRequest{Established::Live(deleter).handle, 0});
    e.Settle();
    ExpectClean(*e.a);
    ExpectClean(*e.b);
    ASSERT_EQ(deleter.ike_down.size(), 1u);
    ASSERT_EQ(rekeyer.ike_down.size(), 1u);
    EXPECT_EQ(rekeyer.ike_down[0].reason, FailureReason::kDeletedByPeer);
  }
}

// A CHILD_SA deleted while the IKE SA is being rekeyed by the peer.
TEST(CollisionTest, ChildDeleteCrossingIkeRekey) {
  for (bool delete_by_a : {true, false}) {
    SCOPED_TRACE(delete_by_a ? "a deletes the child" : "b deletes the child");
    Established e(184);
    Node& deleter = delete_by_a ? *e.a : *e.b;
    Node& rekeyer = delete_by_a ? *e.b : *e.a;
    e.sim.Feed(rekeyer, RekeyRequest{Established::Live(rekeyer).handle, 0});
    e.sim.Feed(deleter, DeleteRequest{0, e.ChildOf(deleter)});
    e.Settle();
    for (Node* n : {e.a, e.b}) {
      SCOPED_TRACE(n->name);
      EXPECT_EQ(n->manager->ike_sa_count(), 1u);
      EXPECT_EQ(n->manager->child_sa_count(), 0u);
      EXPECT_TRUE(n->sad.empty());
      EXPECT_TRUE(n->spd.empty());
      EXPECT_TRUE(n->ike_down.empty());
      EXPECT_EQ(n->errors, 0u);
      EXPECT_EQ(n->spis->outstanding(), 0u);
    }
    auto va = Established::Live(*e.a), vb = Established::Live(*e.b);
    EXPECT_EQ(va.initiator_spi, vb.initiator_spi);
  }
}

// Everything at once over a bad network: both sides rekey the IKE SA and
// the CHILD_SA repeatedly; whatever the interleaving, one of each stays.
TEST(CollisionTest, RekeyStormLossyNetwork) {
  size_t settled = 0;
  for (uint64_t seed = 190; seed < 200; ++seed) {
    SCOPED_TRACE(seed);
    Established e(seed);
    e.sim.faults = Lossy(0.1);
    for (int round = 0; round < 3; ++round) {
      e.sim.Feed(*e.a, RekeyRequest{e.ike_a, 0});
      e.sim.Feed(*e.b, RekeyRequest{0, e.ChildOf(*e.b)});
      e.sim.Feed(*e.b, RekeyRequest{e.ike_b, 0});
      e.sim.Feed(*e.a, RekeyRequest{0, e.ChildOf(*e.a)});
      e.sim.RunFor(Duration(15000));
    }
    e.Settle();
    if (e.a->manager->ike_sa_count() == 0 ||
        e.b->manager->ike_sa_count() == 0) {
      EXPECT_TRUE(e.a->sad.empty());
      EXPECT_TRUE(e.b->sad.empty());
      continue;
    }
    ++settled;
    ExpectOneOfEach(e);
  }
  EXPECT_GE(settled, 8u);
}

}  // namespace
}  // namespace ike::sa::testing
