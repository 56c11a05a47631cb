// IKE SA rekeying (RFC 7296 sections 1.3.2, 2.8, 2.18): new keys and SPIs,
// CHILD_SAs moved to the new IKE SA untouched, the old IKE SA deleted on
// both sides, the IKE SA handle kept.
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
  // The one IKE SA of a node that is not a retired one (handle order).
  static IkeSaView Only(const Node& n) {
    auto v = n.manager->List();
    EXPECT_EQ(v.size(), 1u) << n.name;
    IkeSaView best;
    for (const auto& x : v)
      if (best.handle == 0 || x.handle < best.handle) best = x;
    return best;
  }
};

// What both sides hold before an IKE rekey, to compare with after it.
struct Before {
  IkeSaHandle handle_a, handle_b;
  uint64_t spi_i, spi_r;
  std::map<SadKey, InstallChildSa> sad_a, sad_b;
  size_t child_up_a, child_up_b;
  explicit Before(const Established& e) {
    auto va = Established::Only(*e.a), vb = Established::Only(*e.b);
    handle_a = va.handle;
    handle_b = vb.handle;
    spi_i = va.initiator_spi;
    spi_r = va.responder_spi;
    sad_a = e.a->sad;
    sad_b = e.b->sad;
    child_up_a = e.a->child_up.size();
    child_up_b = e.b->child_up.size();
  }
};

std::vector<SadKey> Keys(const std::map<SadKey, InstallChildSa>& sad) {
  std::vector<SadKey> out;
  for (const auto& [k, v] : sad) out.push_back(k);
  return out;
}

// One IKE SA per side, under the old handles, with new SPIs both sides
// agree on; the CHILD_SAs and the SAD untouched; nothing reported down.
void ExpectRekeyed(const Established& e, const Before& before) {
  ASSERT_EQ(e.a->manager->ike_sa_count(), 1u);
  ASSERT_EQ(e.b->manager->ike_sa_count(), 1u);
  auto va = Established::Only(*e.a), vb = Established::Only(*e.b);
  EXPECT_EQ(va.handle, before.handle_a);
  EXPECT_EQ(vb.handle, before.handle_b);
  EXPECT_EQ(va.state, IkeSaState::kEstablished);
  EXPECT_EQ(vb.state, IkeSaState::kEstablished);
  EXPECT_EQ(va.initiator_spi, vb.initiator_spi);
  EXPECT_EQ(va.responder_spi, vb.responder_spi);
  EXPECT_NE(va.initiator_spi, before.spi_i);
  EXPECT_NE(va.responder_spi, before.spi_r);
  EXPECT_NE(va.initiator, vb.initiator);
  EXPECT_EQ(Keys(e.a->sad), Keys(before.sad_a));
  EXPECT_EQ(Keys(e.b->sad), Keys(before.sad_b));
  EXPECT_EQ(e.a->child_up.size(), before.child_up_a);
  EXPECT_EQ(e.b->child_up.size(), before.child_up_b);
  EXPECT_TRUE(e.a->ike_down.empty());
  EXPECT_TRUE(e.b->ike_down.empty());
  EXPECT_TRUE(e.a->child_down.empty());
  EXPECT_TRUE(e.b->child_down.empty());
  EXPECT_EQ(CheckPairConsistent(*e.a, *e.b), "");
  EXPECT_EQ(e.a->manager->child_sa_count(), 1u);
  EXPECT_EQ(e.b->manager->child_sa_count(), 1u);
  EXPECT_EQ(e.a->errors + e.b->errors, 0u);
  EXPECT_EQ(e.a->spis->outstanding() + e.b->spis->outstanding(), 0u);
}

// The rekeyed IKE SA carries a CHILD_SA rekey and then a delete.
void ExpectNewSaWorks(Established& e, Node& actor) {
  ChildSaHandle child = Established::Only(actor).children.at(0).handle;
  e.sim.Feed(actor, RekeyRequest{0, child});
  e.sim.RunFor(Duration(3000));
  ASSERT_EQ(actor.child_down.size(), 1u);
  EXPECT_EQ(actor.child_down[0].reason, FailureReason::kRekeyed);
  EXPECT_EQ(e.a->manager->child_sa_count(), 1u);
  EXPECT_EQ(e.b->manager->child_sa_count(), 1u);
  EXPECT_EQ(CheckPairConsistent(*e.a, *e.b), "");
  ChildSaHandle rekeyed = Established::Only(actor).children.at(0).handle;
  EXPECT_NE(rekeyed, child);
  e.sim.Feed(actor, DeleteRequest{0, rekeyed});
  e.sim.RunFor(Duration(3000));
  EXPECT_TRUE(e.a->sad.empty());
  EXPECT_TRUE(e.b->sad.empty());
  EXPECT_EQ(e.a->manager->ike_sa_count(), 1u);
  EXPECT_EQ(e.b->manager->ike_sa_count(), 1u);
  EXPECT_EQ(e.a->errors + e.b->errors, 0u);
  EXPECT_EQ(e.a->spis->outstanding() + e.b->spis->outstanding(), 0u);
}

TEST(IkeRekeyTest, RekeyedByEitherSideKeepsChildSas) {
  for (bool by_initiator : {true, false}) {
    SCOPED_TRACE(by_initiator ? "by original initiator" : "by responder");
    Established e(70);
    Before before(e);
    Node& r = by_initiator ? *e.a : *e.b;
    e.sim.Feed(r, RekeyRequest{Established::Only(r).handle, 0});
    e.sim.RunFor(Duration(3000));
    ExpectRekeyed(e, before);
    // The rekey's initiator is the new SA's original initiator (2.18).
    EXPECT_TRUE(Established::Only(r).initiator);
    ExpectNewSaWorks(e, by_initiator ? *e.b : *e.a);
  }
}

TEST(IkeRekeyTest, RekeyedTwiceInARow) {
  Established e(71);
  Before before(e);
  e.sim.Feed(*e.b, RekeyRequest{Established::Only(*e.b).handle, 0});
  e.sim.RunFor(Duration(3000));
  e.sim.Feed(*e.a, RekeyRequest{Established::Only(*e.a).handle, 0});
  e.sim.RunFor(Duration(3000));
  ExpectRekeyed(e, before);
  ExpectNewSaWorks(e, *e.a);
}

PskPair WithIkePolicy(PskPair p, std::vector<wire::KeGroup> a_groups,
                      std::vector<wire::KeGroup> b_groups,
                      policy::Lifetime a_lifetime = {}) {
  auto set = [](const policy::PolicySnapshotPtr& base,
                std::vector<wire::KeGroup> groups, policy::Lifetime life) {
    auto s = std::make_shared<policy::PolicySnapshot>(*base);
    policy::ProposalSet ike = policy::DefaultIkeProposals();
    ike.name = "ike-test";
    ike.proposals.resize(1);
    ike.proposals[0].ke = groups;
    s->proposals.push_back(ike);
    std::vector<policy::SpdEntry> entries = s->spd.entries();
    for (auto& e : entries) {
      e.protect.ike_proposals = "ike-test";
      e.protect.ike_lifetime = life;
    }
    s->spd = policy::Spd(entries);
    return policy::PolicySnapshotPtr(s);
  };
  return {set(p.a, a_groups, a_lifetime), set(p.b, b_groups, {})};
}

TEST(IkeRekeyTest, SoftLifetimeRekeys) {
  policy::Lifetime life;
  life.soft_seconds = 100;
  life.hard_seconds = 200;
  life.jitter_percent = 10;
  Established e(72, WithIkePolicy(MakePskPair(), {wire::KeGroup::kCurve25519},
                                  {wire::KeGroup::kCurve25519}, life));
  Before before(e);
  // Before the soft limit nothing happens.
  e.sim.RunFor(Duration(85000));
  EXPECT_EQ(Established::Only(*e.a).initiator_spi, before.spi_i);
  // Between soft (90..100 s with jitter) and hard (200 s): rekeyed.
  e.sim.RunFor(Duration(65000));
  ExpectRekeyed(e, before);
  // The new SA got fresh lifetimes: still alive past the old hard limit.
  e.sim.RunFor(Duration(100000));
  EXPECT_EQ(e.a->manager->ike_sa_count(), 1u);
  EXPECT_EQ(e.b->manager->ike_sa_count(), 1u);
  EXPECT_TRUE(e.a->ike_down.empty());
  EXPECT_EQ(e.a->manager->child_sa_count(), 1u);
}

TEST(IkeRekeyTest, LostResponsesDuringIkeRekey) {
  for (bool by_initiator : {true, false}) {
    SCOPED_TRACE(by_initiator ? "by original initiator" : "by responder");
    Established e(73);
    Before before(e);
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
    Node& r = by_initiator ? *e.a : *e.b;
    e.sim.Feed(r, RekeyRequest{Established::Only(r).handle, 0});
    e.sim.RunFor(Duration(5000));
    // The new SA is in use on both sides at once; the old one lingers
    // only on the side whose Delete answer was lost.
    EXPECT_EQ(e.a->manager->Find(before.handle_a)->initiator_spi,
              e.b->manager->Find(before.handle_b)->initiator_spi);
    EXPECT_NE(e.a->manager->Find(before.handle_a)->initiator_spi,
              before.spi_i);
    // The peer forgot the old SA, so the Delete is retried until the
    // retransmission limit (about a minute) ends it, silently.
    e.sim.RunFor(Duration(90000));
    EXPECT_EQ(lost, 2);
    ExpectRekeyed(e, before);
  }
}

TEST(IkeRekeyTest, InvalidKeDuringIkeRekey) {
  // Both accept both groups for IKE_SA_INIT, but prefer different ones.
  Established e(74, WithIkePolicy(
                        MakePskPair(),
                        {wire::KeGroup::kEcp256, wire::KeGroup::kCurve25519},
                        {wire::KeGroup::kCurve25519}));
  Before before(e);
  auto count_invalid_ke = [](const Node& n) {
    size_t c = 0;
    for (const auto& l : n.logs)
      c += l.reason == FailureReason::kInvalidKePayload;
    return c;
  };
  size_t before_a = count_invalid_ke(*e.a);
  e.sim.Feed(*e.a, RekeyRequest{Established::Only(*e.a).handle, 0});
  e.sim.RunFor(Duration(5000));
  EXPECT_GT(count_invalid_ke(*e.a), before_a);
  ExpectRekeyed(e, before);
}

// Both ends ask at once (2.8.2): both rekeys are answered, the new IKE SA
// with the lowest nonce is deleted by its initiator, and both end on the
// same single new IKE SA without TEMPORARY_FAILURE and retries.
TEST(IkeRekeyTest, SimultaneousIkeRekey) {
  for (uint64_t seed = 80; seed < 88; ++seed) {
    SCOPED_TRACE(seed);
    Established e(seed);
    Before before(e);
    e.sim.Feed(*e.a, RekeyRequest{before.handle_a, 0});
    e.sim.Feed(*e.b, RekeyRequest{before.handle_b, 0});
    e.sim.RunFor(Duration(30000));
    ExpectRekeyed(e, before);
    // The requests did cross, and nobody was told to wait.
    size_t refused = 0, crossed = 0;
    for (Node* n : {e.a, e.b})
      for (const auto& l : n->logs) {
        refused += l.text.find("TEMPORARY_FAILURE") != std::string::npos;
        crossed += l.text.find("with the lowest nonce") != std::string::npos;
      }
    EXPECT_EQ(refused, 0u);
    EXPECT_EQ(crossed, 2u);
    ExpectNewSaWorks(e, seed % 2 ? *e.a : *e.b);
  }
}

TEST(IkeRekeyTest, RekeyRequestForAnUnknownOrRetiredSaIsIgnored) {
  Established e(75);
  Before before(e);
  e.sim.Feed(*e.a, RekeyRequest{before.handle_a + 1000, 0});
  e.sim.RunFor(Duration(3000));
  EXPECT_EQ(Established::Only(*e.a).initiator_spi, before.spi_i);
  EXPECT_EQ(e.a->manager->ike_sa_count(), 1u);
}

}  // namespace
}  // namespace ike::sa::testing
