// A NAT that translates addresses as well as ports (Simulation::nat): A
// (10.0.0.1, private) reaches B (10.0.0.2) only as the NAT's public
// address 10.0.9.1.
//   * Transport mode across the NAT (RFC 7296 section 2.23.1): each side
//     names its own address in its selectors; B's kernel selectors and SAs
//     name the NAT's address, A's its own, for CHILD_SAs set up and rekeyed
//     by either side.
//   * The NAT gets a new public address (RFC 7296 section 2.23, no
//     MOBIKE): B learns it from an authenticated packet (ESP through the
//     kernel's MAPPING event, or IKE) and moves its IKE SA, its ESP SAs
//     (same SPIs) and the policies naming the address; traffic and IKE
//     go on there.
#include <gtest/gtest.h>

#include <algorithm>

#include "tests/sa/expect.h"
#include "tests/sa/fixtures.h"
#include "tests/sa/sim.h"

namespace ike::sa::testing {
namespace {

constexpr char kNat[] = "10.0.9.1";
constexpr char kNat2[] = "10.0.9.2";
constexpr char kInnerA[] = "10.1.0.1";
constexpr char kInnerB[] = "10.2.0.1";

// B (public) knows A only by the NAT's address: its PAD entry and SPD name
// kNat. In tunnel mode the inner networks are 10.1.0.1 (A) and 10.2.0.1 (B).
PskPair NatPolicies(policy::IpsecMode mode) {
  const bool tunnel = mode == policy::IpsecMode::kTunnel;
  PolicyBuilder a, b;
  policy::SpdEntry to_b = tunnel ? ProtectEntry("a-b", kInnerA, kInnerB, "b", mode)
                                 : ProtectEntry("a-b", kA, kB, "b", mode);
  policy::SpdEntry to_a = tunnel ? ProtectEntry("b-a", kInnerB, kInnerA, "a", mode)
                                 : ProtectEntry("b-a", kB, kNat, "a", mode);
  // A second entry of B with the same traffic, so B can start a CHILD_SA of
  // its own over the IKE SA A opened.
  policy::SpdEntry to_a_again = to_a;
  to_a_again.name = "b-a-again";
  if (tunnel) {
    to_b.protect.tunnel_local = Ip(kA);
    to_b.protect.tunnel_remote = Ip(kB);
    to_a.protect.tunnel_local = Ip(kB);
    to_a.protect.tunnel_remote = Ip(kNat);
    to_a_again.protect = to_a.protect;
  }
  a.Identity("me", policy::Identity::Fqdn("a.example"))
      .Secret("k", "nat secret")
      .Pad(PskEntry("b", "b.example", "k", tunnel ? kInnerB : kB, "me"))
      .Spd(to_b);
  b.Identity("me", policy::Identity::Fqdn("b.example"))
      .Secret("k", "nat secret")
      .Pad(PskEntry("a", "a.example", "k", tunnel ? kInnerA : kNat, "me"))
      .Spd(to_a)
      .Spd(to_a_again);
  return {a.Build(), b.Build()};
}

struct NatLink {
  Simulation sim{91};
  Node* a = nullptr;
  Node* b = nullptr;
  explicit NatLink(policy::IpsecMode mode) {
    auto p = NatPolicies(mode);
    EngineSettings settings;
    settings.dpd_interval = Duration(5000);
    a = &sim.AddNode("a", kA, p.a, {}, settings);
    b = &sim.AddNode("b", kB, p.b, {}, settings);
    sim.nat = Nat{"a", Ip(kNat)};
    sim.Feed(*a, Initiate("a-b"));
    sim.RunFor(Duration(2000));
  }
  std::vector<const InstallChildSa*> Sas(const Node& n, SaDirection d) const {
    std::vector<const InstallChildSa*> out;
    for (const auto& [k, sa] : n.sad)
      if (sa.direction == d) out.push_back(&sa);
    return out;
  }
  // Every outbound SA of one side is an inbound SA of the other with the
  // same SPI and keys (the NAT hides A's address from B, so the SAD keys
  // differ in the destination).
  std::string Consistent() const {
    auto check = [](const Node& from, const Node& to) -> std::string {
      for (const auto& [k, out] : from.sad) {
        if (out.direction != SaDirection::kOutbound) continue;
        auto in = to.sad.find({to.address.value, out.spi});
        if (in == to.sad.end() || in->second.direction != SaDirection::kInbound ||
            in->second.encryption_key != out.encryption_key)
          return from.name + " outbound spi " + std::to_string(out.spi) +
                 " has no matching inbound SA at " + to.name;
      }
      return "";
    };
    std::string r = check(*a, *b);
    return r.empty() ? check(*b, *a) : r;
  }
};

bool NamesHost(const std::vector<policy::TrafficSelector>& ts,
               const std::string& address) {
  return std::any_of(ts.begin(), ts.end(), [&](const auto& t) {
    return t.addresses == policy::IpRange::Host(Ip(address));
  });
}

// The kernel view of each side after a transport CHILD_SA across the NAT.
void ExpectTransportViews(const NatLink& n) {
  for (const auto* sa : n.Sas(*n.b, SaDirection::kOutbound)) {
    EXPECT_EQ(sa->destination, Ip(kNat));
    EXPECT_TRUE(NamesHost(sa->destination_ts, kNat));
    ASSERT_TRUE(sa->encapsulation.has_value());
    EXPECT_EQ(sa->encapsulation->destination_port, 31001);
  }
  for (const auto* sa : n.Sas(*n.b, SaDirection::kInbound)) {
    EXPECT_EQ(sa->source, Ip(kNat));
    EXPECT_TRUE(NamesHost(sa->source_ts, kNat));
  }
  for (const auto* sa : n.Sas(*n.a, SaDirection::kOutbound)) {
    EXPECT_EQ(sa->destination, Ip(kB));
    EXPECT_TRUE(NamesHost(sa->source_ts, kA));
    EXPECT_FALSE(NamesHost(sa->source_ts, kNat));
  }
  for (const auto& p : n.b->spd) {
    const auto& peer = p.direction == PolicyDirection::kOut ? p.destination : p.source;
    EXPECT_EQ(peer.addresses, policy::IpRange::Host(Ip(kNat)));
  }
  for (const auto& p : n.a->spd) {
    const auto& own = p.direction == PolicyDirection::kOut ? p.source : p.destination;
    EXPECT_EQ(own.addresses, policy::IpRange::Host(Ip(kA)));
  }
  EXPECT_EQ(n.Consistent(), "");
}

TEST(NatAddressTest, TransportSelectorsAcrossNatInBothRoles) {
  NatLink n(policy::IpsecMode::kTransport);
  ExpectEstablished(*n.a, *n.b);
  ASSERT_EQ(n.b->child_up.size(), 1u);
  ASSERT_EQ(n.b->ike_up.size(), 1u);
  EXPECT_EQ(n.b->ike_up[0].remote.address, Ip(kNat));
  // A initiated with its own address; B (responder) put the NAT's in its
  // kernel selectors.
  EXPECT_TRUE(NamesHost(n.a->child_up[0].local_ts, kA));
  EXPECT_TRUE(NamesHost(n.b->child_up[0].remote_ts, kNat));
  EXPECT_FALSE(NamesHost(n.b->child_up[0].remote_ts, kA));
  ExpectTransportViews(n);

  // B starts a CHILD_SA of its own over A's IKE SA: it proposes the NAT's
  // address for A, which A (responder behind the NAT) maps to its own.
  n.sim.Feed(*n.b, Initiate("b-a-again"));
  n.sim.RunFor(Duration(2000));
  ASSERT_EQ(n.b->child_up.size(), 2u);
  ASSERT_EQ(n.a->child_up.size(), 2u);
  EXPECT_TRUE(NamesHost(n.a->child_up[1].local_ts, kA));
  EXPECT_FALSE(NamesHost(n.a->child_up[1].local_ts, kNat));
  EXPECT_TRUE(NamesHost(n.b->child_up[1].remote_ts, kNat));
  ExpectTransportViews(n);

  // Rekeys by each side keep both views.
  n.sim.Feed(*n.a, RekeyRequest{0, n.a->child_up[0].child_sa});
  n.sim.RunFor(Duration(2000));
  n.sim.Feed(*n.b, RekeyRequest{0, n.b->child_up[1].child_sa});
  n.sim.RunFor(Duration(2000));
  ASSERT_EQ(n.b->child_up.size(), 4u);
  EXPECT_NE(n.b->child_up[2].replaces, 0u);
  EXPECT_NE(n.b->child_up[3].replaces, 0u);
  ExpectTransportViews(n);
  EXPECT_EQ(n.a->errors + n.b->errors, 0u)
      << ::testing::PrintToString(n.a->error_texts)
      << ::testing::PrintToString(n.b->error_texts);
  EXPECT_TRUE(n.a->continuity_gaps.empty() && n.b->continuity_gaps.empty());
}

// The NAT's public address changes; B hears of it from `learn`.
void Renumber(NatLink& n) {
  n.sim.nat->public_address = Ip(kNat2);
  n.sim.nat->port_500 = 32000;
  n.sim.nat->port_4500 = 32001;
}

void ExpectMovedTo(const NatLink& n, const std::string& address, uint16_t port,
                   const std::vector<uint32_t>& spis_before) {
  const Endpoint where{Ip(address), port};
  ASSERT_EQ(n.b->manager->List().size(), 1u);
  EXPECT_EQ(n.b->manager->List()[0].remote, where);
  std::vector<uint32_t> spis;
  for (const auto& [k, sa] : n.b->sad) {
    spis.push_back(sa.spi);
    ASSERT_TRUE(sa.encapsulation.has_value());
    if (sa.direction == SaDirection::kOutbound) {
      EXPECT_EQ(sa.destination, Ip(address));
      EXPECT_EQ(sa.encapsulation->destination_port, port);
    } else {
      EXPECT_EQ(sa.source, Ip(address));
      EXPECT_EQ(sa.encapsulation->source_port, port);
    }
  }
  std::sort(spis.begin(), spis.end());
  EXPECT_EQ(spis, spis_before);  // the same SAs, moved
  EXPECT_EQ(n.Consistent(), "");
}

std::vector<uint32_t> Spis(const Node& n) {
  std::vector<uint32_t> spis;
  for (const auto& [k, sa] : n.sad) spis.push_back(sa.spi);
  std::sort(spis.begin(), spis.end());
  return spis;
}

TEST(NatAddressTest, NewNatAddressFromEspMovesTunnelSasAndTemplates) {
  NatLink n(policy::IpsecMode::kTunnel);
  ExpectEstablished(*n.a, *n.b);
  const auto spis = Spis(*n.b);
  const size_t policies = n.b->spd.size();
  ASSERT_EQ(policies, 3u);  // out, in, fwd
  Renumber(n);
  n.sim.Feed(*n.b, KernelMapping{Ip(kB), n.b->child_up[0].inbound_spi,
                                 Endpoint{Ip(kNat2), 32001}});
  EXPECT_EQ(n.b->errors, 0u) << ::testing::PrintToString(n.b->error_texts);
  ExpectMovedTo(n, kNat2, 32001, spis);
  ASSERT_EQ(n.b->spd.size(), policies);
  for (const auto& p : n.b->spd) {
    // Inner selectors unchanged; the templates name the new address.
    EXPECT_EQ(p.mode, policy::IpsecMode::kTunnel);
    if (p.direction == PolicyDirection::kOut) {
      EXPECT_EQ(p.tunnel_destination, Ip(kNat2));
      EXPECT_EQ(p.destination.addresses, policy::IpRange::Host(Ip(kInnerA)));
    } else {
      EXPECT_EQ(p.tunnel_source, Ip(kNat2));
    }
  }
  EXPECT_TRUE(n.b->continuity_gaps.empty())
      << ::testing::PrintToString(n.b->continuity_gaps);

  // B's liveness checks and rekeys now reach A through the new address.
  const size_t down = n.b->ike_down.size();
  n.sim.RunFor(Duration(30000));
  EXPECT_EQ(n.b->ike_down.size(), down);  // not declared dead
  EXPECT_EQ(n.b->sent.back().remote, (Endpoint{Ip(kNat2), 32001}));
  n.sim.Feed(*n.b, RekeyRequest{0, n.b->child_up[0].child_sa});
  n.sim.RunFor(Duration(2000));
  ASSERT_EQ(n.b->child_up.size(), 2u);
  for (const auto& [k, sa] : n.b->sad) {
    if (sa.direction == SaDirection::kOutbound) {
      EXPECT_EQ(sa.destination, Ip(kNat2));
    }
  }
  EXPECT_EQ(n.Consistent(), "");
  EXPECT_EQ(n.a->errors + n.b->errors, 0u);
}

TEST(NatAddressTest, NewNatAddressFromIkeMovesTransportSelectors) {
  NatLink n(policy::IpsecMode::kTransport);
  ExpectEstablished(*n.a, *n.b);
  const auto spis = Spis(*n.b);
  Renumber(n);
  // An authenticated IKE request from A (a liveness check) comes through
  // the NAT's new address.
  const size_t before = n.b->logs.size();
  n.sim.RunFor(Duration(6000));
  bool moved = false;
  for (size_t i = before; i < n.b->logs.size(); ++i)
    moved = moved || n.b->logs[i].text.find("-> 10.0.9.2") != std::string::npos;
  ASSERT_TRUE(moved) << "B never heard from the new address";
  ExpectMovedTo(n, kNat2, 32001, spis);
  // The kernel selectors follow the NAT (policies and SAs); A's view and the
  // selectors B's rekeys propose stay A's own address.
  for (const auto& p : n.b->spd) {
    const auto& peer = p.direction == PolicyDirection::kOut ? p.destination : p.source;
    EXPECT_EQ(peer.addresses, policy::IpRange::Host(Ip(kNat2)));
  }
  EXPECT_EQ(n.b->spd.size(), 2u);
  for (const auto& [k, sa] : n.b->sad) {
    const auto& peer_ts = sa.direction == SaDirection::kOutbound ? sa.destination_ts : sa.source_ts;
    EXPECT_TRUE(NamesHost(peer_ts, kNat2));
  }
  n.sim.Feed(*n.b, RekeyRequest{0, n.b->child_up[0].child_sa});
  n.sim.RunFor(Duration(2000));
  ASSERT_EQ(n.b->child_up.size(), 2u);
  ASSERT_EQ(n.a->child_up.size(), 2u);
  EXPECT_TRUE(NamesHost(n.a->child_up[1].local_ts, kA));
  EXPECT_TRUE(NamesHost(n.b->child_up[1].remote_ts, kNat2));
  EXPECT_EQ(n.Consistent(), "");
  EXPECT_EQ(n.a->errors + n.b->errors, 0u)
      << ::testing::PrintToString(n.b->error_texts);
  EXPECT_TRUE(n.b->continuity_gaps.empty())
      << ::testing::PrintToString(n.b->continuity_gaps);
}

// B's liveness check went out to the old address (lost) when ESP from the
// new one arrives: B sends it again there at once instead of declaring the
// peer dead when its retransmissions, all sent to the old address, run out.
TEST(NatAddressTest, LivenessCheckUnderWayFollowsTheNewAddress) {
  Simulation sim(92);
  auto p = NatPolicies(policy::IpsecMode::kTunnel);
  EngineSettings quiet;  // A sends nothing of its own
  EngineSettings checking;
  checking.dpd_interval = Duration(5000);
  checking.retransmit_initial = Duration(1000);
  checking.retransmit_max = Duration(2000);
  checking.retransmit_tries = 2;
  Node& a = sim.AddNode("a", kA, p.a, {}, quiet);
  Node& b = sim.AddNode("b", kB, p.b, {}, checking);
  sim.nat = Nat{"a", Ip(kNat)};
  sim.Feed(a, Initiate("a-b"));
  sim.RunFor(Duration(500));
  ExpectEstablished(a, b);
  sim.nat->public_address = Ip(kNat2);
  sim.nat->port_4500 = 32001;
  // The check goes out after 5 s and twice more, to the old address.
  sim.RunFor(Duration(8500));
  ASSERT_TRUE(b.ike_down.empty());
  ASSERT_EQ(b.sent.back().remote.address, Ip(kNat));
  sim.Feed(b, KernelMapping{Ip(kB), b.child_up[0].inbound_spi,
                            Endpoint{Ip(kNat2), 32001}});
  EXPECT_EQ(b.sent.back().remote, (Endpoint{Ip(kNat2), 32001}));
  sim.RunFor(Duration(10000));
  EXPECT_TRUE(b.ike_down.empty()) << "declared dead";
  EXPECT_EQ(b.manager->List().size(), 1u);
}

// Only a peer behind a NAT may move: when only we are behind one, an
// authenticated packet from another address of the peer changes nothing.
TEST(NatAddressTest, PeerNotBehindNatKeepsItsAddress) {
  NatLink n(policy::IpsecMode::kTransport);
  ExpectEstablished(*n.a, *n.b);
  const auto spis = Spis(*n.a);
  Actions actions = n.a->manager->Handle(
      KernelMapping{Ip(kA), n.a->child_up[0].inbound_spi, Endpoint{Ip("10.0.0.3"), 4500}},
      n.sim.now());
  for (const auto& action : actions) {
    EXPECT_FALSE(std::holds_alternative<MoveChildSa>(action));
    EXPECT_FALSE(std::holds_alternative<InstallPolicy>(action));
  }
  EXPECT_EQ(n.a->manager->List()[0].remote, (Endpoint{Ip(kB), 4500}));
  EXPECT_EQ(Spis(*n.a), spis);
}

}  // namespace
}  // namespace ike::sa::testing
