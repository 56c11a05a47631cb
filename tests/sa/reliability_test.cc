// Retransmission, duplicates, half-open expiry, cookies and a randomised
// many-peer run with loss, duplication, reordering and clock jumps.
#include <gtest/gtest.h>

#include "ike/wire/message.h"
#include "tests/sa/expect.h"
#include "tests/sa/fixtures.h"
#include "tests/sa/sim.h"

namespace ike::sa::testing {
namespace {

std::vector<int64_t> RetransmitDelays(const Node& n) {
  // Retransmit timers are the ones armed repeatedly with growing delays;
  // the engine's timer ids name the kind in their low 4 bits (1).
  std::vector<int64_t> out;
  for (const auto& t : n.armed)
    if ((t.timer & 15) == 1 && !(t.timer >> 63)) out.push_back(t.delay.count());
  return out;
}

TEST(ReliabilityTest, LostMessagesAreRetransmitted) {
  Simulation sim(20);
  auto p = MakePskPair();
  Node& a = sim.AddNode("a", kA, p.a);
  Node& b = sim.AddNode("b", kB, p.b);
  // Lose the first IKE_SA_INIT request and the first IKE_AUTH response.
  int from_a = 0, from_b = 0;
  sim.drop_if = [&](const Datagram& d) {
    if (d.from == "a") return from_a++ == 0;
    return from_b++ == 1;
  };
  sim.Feed(a, Initiate("a-b"));
  sim.RunFor(Duration(10000));
  ExpectEstablished(a, b);
  // The duplicate IKE_AUTH request was answered from the cache: B sent the
  // same response bytes twice and set up one CHILD_SA.
  ASSERT_EQ(b.sent.size(), 3u);
  EXPECT_EQ(b.sent[1].bytes, b.sent[2].bytes);
  auto delays = RetransmitDelays(a);
  ASSERT_GE(delays.size(), 3u);
  EXPECT_EQ(delays[0], 1000);
  EXPECT_EQ(delays[1], 2000);  // doubled on the first retransmission
}

TEST(ReliabilityTest, GivesUpAfterTheRetransmissionLimitWithBackoff) {
  Simulation sim(21);
  auto p = MakePskPair();
  Node& a = sim.AddNode("a", kA, p.a);
  Node& b = sim.AddNode("b", kB, p.b);
  sim.faults.loss = 1.0;
  sim.Feed(a, Initiate("a-b"));
  sim.RunFor(Duration(600000));
  ASSERT_EQ(a.ike_down.size(), 1u);
  EXPECT_EQ(a.ike_down[0].reason, FailureReason::kRetransmitTimeout);
  auto delays = RetransmitDelays(a);
  // One first send plus retransmit_tries resends, capped backoff.
  EXPECT_EQ(a.sent.size(), 1u + EngineSettings{}.retransmit_tries);
  for (size_t i = 1; i < delays.size(); ++i)
    EXPECT_EQ(delays[i],
              std::min<int64_t>(delays[i - 1] * 2,
                                EngineSettings{}.retransmit_max.count()));
  ExpectClean(a);
  ExpectClean(b);
}

TEST(ReliabilityTest, DuplicatedDatagramsAreHarmless) {
  Simulation sim(22);
  auto p = MakePskPair();
  Node& a = sim.AddNode("a", kA, p.a);
  Node& b = sim.AddNode("b", kB, p.b);
  sim.faults.duplicate = 1.0;
  sim.Feed(a, Initiate("a-b"));
  sim.RunFor(Duration(5000));
  ExpectEstablished(a, b);
}

TEST(ReliabilityTest, HalfOpenResponderSaExpires) {
  Simulation sim(23);
  auto p = MakePskPair();
  Node& a = sim.AddNode("a", kA, p.a);
  Node& b = sim.AddNode("b", kB, p.b);
  // Only the IKE_SA_INIT exchange gets through.
  sim.drop_if = [](const Datagram& d) {
    auto h = wire::DecodeHeader(d.event.bytes);
    return h.ok() && h->exchange != wire::ExchangeType::kIkeSaInit;
  };
  sim.Feed(a, Initiate("a-b"));
  sim.RunFor(Duration(5000));
  EXPECT_EQ(b.manager->half_open_count(), 1u);
  sim.RunFor(Duration(60000));
  EXPECT_TRUE(b.Logged(FailureReason::kHalfOpenTimeout));
  ExpectClean(a);
  ExpectClean(b);
}

TEST(ReliabilityTest, CookiesAreDemandedAboveTheHalfOpenThreshold) {
  Simulation sim(24);
  auto p = MakePskPair();
  EngineSettings strict;
  strict.cookie_threshold = 0;  // always demand a cookie
  Node& a = sim.AddNode("a", kA, p.a);
  Node& b = sim.AddNode("b", kB, p.b, {}, strict);
  sim.Feed(a, Initiate("a-b"));
  sim.RunFor(Duration(5000));
  ExpectEstablished(a, b);
  // B's first answer was a stateless COOKIE, A's second request echoed it
  // as the first payload.
  auto first = wire::DecodeMessage(b.sent[0].bytes);
  ASSERT_TRUE(first.ok());
  ASSERT_EQ(first->payloads.size(), 1u);
  auto* cookie = std::get_if<wire::NotifyPayload>(&first->payloads[0].body);
  ASSERT_NE(cookie, nullptr);
  EXPECT_EQ(cookie->type, wire::NotifyType::kCookie);
  EXPECT_EQ(first->header.responder_spi, 0u);
  auto second = wire::DecodeMessage(a.sent[1].bytes);
  ASSERT_TRUE(second.ok());
  auto* echoed = std::get_if<wire::NotifyPayload>(&second->payloads[0].body);
  ASSERT_NE(echoed, nullptr);
  EXPECT_EQ(echoed->data, cookie->data);
}

TEST(ReliabilityTest, ForgedCookieIsRefusedWithoutState) {
  Simulation sim(25);
  auto p = MakePskPair();
  EngineSettings strict;
  strict.cookie_threshold = 0;
  Node& a = sim.AddNode("a", kA, p.a);
  Node& b = sim.AddNode("b", kB, p.b, {}, strict);
  sim.Feed(a, Initiate("a-b"));
  // Take A's request and add a made-up cookie.
  auto m = wire::DecodeMessage(a.sent[0].bytes);
  ASSERT_TRUE(m.ok());
  wire::NotifyPayload fake;
  fake.type = wire::NotifyType::kCookie;
  fake.data = std::vector<uint8_t>(33, 0x42);
  m->payloads.insert(m->payloads.begin(), wire::MakePayload(fake));
  auto bytes = wire::EncodeMessage(*m);
  ASSERT_TRUE(bytes.ok());
  DatagramReceived d{{Ip(kB), 500}, {Ip(kA), 500}, *bytes};
  sim.Feed(b, d);
  EXPECT_EQ(b.manager->ike_sa_count(), 0u);
  auto answer = wire::DecodeMessage(b.sent.back().bytes);
  ASSERT_TRUE(answer.ok());
  auto* n = std::get_if<wire::NotifyPayload>(&answer->payloads[0].body);
  ASSERT_NE(n, nullptr);
  EXPECT_EQ(n->type, wire::NotifyType::kCookie);
  EXPECT_NE(n->data, fake.data);
}

// Many initiators, one responder, a lossy network that duplicates and
// reorders, and clock jumps: every pair ends up with one consistent IKE SA
// and CHILD_SA.
TEST(ReliabilityTest, ManyPeersOverALossyNetworkConverge) {
  constexpr int kPeers = 24;
  PolicyBuilder server;
  server.Identity("me", policy::Identity::Fqdn("server.example"))
      .Secret("k", "group secret");
  policy::PadEntry clients;
  clients.name = "clients";
  clients.peer_id.kind = policy::IdMatcher::Kind::kDomainSuffix;
  clients.peer_id.suffix = "clients.example";
  clients.auth = policy::PeerAuthMethod::kPsk;
  clients.psk_name = "k";
  clients.remote_ts = {{*policy::IpRange::Parse("10.1.0.0/16"), 0, {}}};
  clients.local_identity = "me";
  server.Pad(clients).Spd(
      ProtectEntry("to-clients", "10.0.0.100", "10.1.0.0/16", "clients"));
  Simulation sim(26);
  sim.faults.loss = 0.2;
  sim.faults.duplicate = 0.1;
  sim.faults.min_delay = Duration(5);
  sim.faults.max_delay = Duration(400);
  Node& s = sim.AddNode("server", "10.0.0.100", server.Build());
  std::vector<Node*> peers;
  for (int i = 0; i < kPeers; ++i) {
    std::string addr = "10.1.0." + std::to_string(i + 1);
    std::string fqdn = "c" + std::to_string(i) + ".clients.example";
    PolicyBuilder c;
    c.Identity("me", policy::Identity::Fqdn(fqdn))
        .Secret("k", "group secret")
        .Pad(PskEntry("server", "server.example", "k", "10.0.0.100", "me"))
        .Spd(ProtectEntry("to-server", addr, "10.0.0.100", "server"));
    Node& n = sim.AddNode("c" + std::to_string(i), addr, c.Build());
    peers.push_back(&n);
    sim.Feed(n, Initiate("to-server"));
  }
  sim.RunFor(Duration(3000));
  sim.JumpClock(Duration(4000));  // e.g. a suspended host
  sim.RunFor(Duration(120000));
  int established = 0;
  for (Node* n : peers) {
    if (n->manager->ike_sa_count() == 1 && n->child_up.size() == 1) {
      ++established;
      EXPECT_EQ(CheckPairConsistent(*n, s), "") << n->name;
    } else {
      // Gave up after the retransmission limit: must be clean.
      EXPECT_EQ(n->manager->ike_sa_count(), 0u) << n->name;
      EXPECT_TRUE(n->sad.empty()) << n->name;
    }
    EXPECT_EQ(n->errors, 0u) << n->name;
    EXPECT_EQ(n->spis->outstanding(), 0u) << n->name;
  }
  // With 20 % loss and 5 retransmissions nearly all must make it.
  EXPECT_GE(established, kPeers - 2);
  EXPECT_EQ(s.manager->ike_sa_count(), size_t(established));
  EXPECT_EQ(s.manager->half_open_count(), 0u);
  EXPECT_EQ(s.InboundCount(), size_t(established));
  EXPECT_EQ(s.errors, 0u);
  EXPECT_EQ(s.spis->outstanding(), 0u);
}

}  // namespace
}  // namespace ike::sa::testing
