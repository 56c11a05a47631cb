// RFC 7296 section 2.23 and RFC 3948: a host not behind the NAT follows the
// peer's NAT mapping. A (behind a NAT) talks to B; then the NAT gives A's
// port 4500 a new public port. B learns it from the kernel (XFRM_MSG_MAPPING
// after an authenticated ESP packet, as KernelMapping) or from an
// authenticated IKE request, and moves its IKE SA and the UDP encapsulation
// of its ESP SAs there, keeping the SAs themselves.
#include <gtest/gtest.h>

#include "tests/sa/expect.h"
#include "tests/sa/fixtures.h"
#include "tests/sa/sim.h"

namespace ike::sa::testing {
namespace {

// Establishes A (behind a NAT mapping 500 -> 31000, 4500 -> *port4500) with B.
struct NatPair {
  Simulation sim{81};
  uint16_t port4500 = 31001;
  Node* a = nullptr;
  Node* b = nullptr;
  NatPair() {
    auto p = MakePskPair();
    a = &sim.AddNode("a", kA, p.a);
    b = &sim.AddNode("b", kB, p.b);
    sim.tamper = [this](Datagram& d) {
      if (d.from == "a")
        d.event.remote.port = d.event.remote.port == 500 ? 31000 : port4500;
    };
    sim.Feed(*a, Initiate("a-b"));
    sim.RunFor(Duration(2000));
  }
  const InstallChildSa* BSa(SaDirection direction) const {
    for (const auto& [k, sa] : b->sad)
      if (sa.direction == direction) return &sa;
    return nullptr;
  }
};

TEST(NatMappingTest, KernelMappingMovesEspEncapsulationAndIkeSa) {
  NatPair n;
  ExpectEstablished(*n.a, *n.b);
  ASSERT_EQ(n.b->child_up.size(), 1u);
  ASSERT_EQ(n.BSa(SaDirection::kOutbound)->encapsulation->destination_port, 31001);

  n.port4500 = 32001;
  const size_t sad_before = n.b->sad.size();
  n.sim.Feed(*n.b, KernelMapping{Ip(kB), n.b->child_up[0].inbound_spi,
                                 Endpoint{Ip(kA), 32001}});
  EXPECT_EQ(n.b->errors, 0u) << ::testing::PrintToString(n.b->error_texts);
  EXPECT_EQ(n.b->sad.size(), sad_before);  // the same SAs, not new ones
  const InstallChildSa* out = n.BSa(SaDirection::kOutbound);
  const InstallChildSa* in = n.BSa(SaDirection::kInbound);
  EXPECT_EQ(out->encapsulation->source_port, 4500);
  EXPECT_EQ(out->encapsulation->destination_port, 32001);
  EXPECT_EQ(in->encapsulation->source_port, 32001);
  EXPECT_EQ(in->encapsulation->destination_port, 4500);

  // B's next IKE request goes to the new mapping, and A answers it.
  const size_t sent_before = n.b->sent.size();
  n.sim.Feed(*n.b, RekeyRequest{0, n.b->child_up[0].child_sa});
  ASSERT_GT(n.b->sent.size(), sent_before);
  EXPECT_EQ(n.b->sent.back().remote.port, 32001);
  n.sim.RunFor(Duration(2000));
  ASSERT_EQ(n.b->child_up.size(), 2u);  // the rekey completed
  EXPECT_EQ(n.BSa(SaDirection::kOutbound)->encapsulation->destination_port, 32001);
  EXPECT_EQ(n.b->errors, 0u);
}

TEST(NatMappingTest, AuthenticatedIkeRequestFromNewPortMovesEsp) {
  NatPair n;
  ExpectEstablished(*n.a, *n.b);
  n.port4500 = 33001;
  // A request from A (a CHILD_SA rekey) arrives through the new mapping.
  n.sim.Feed(*n.a, RekeyRequest{0, n.a->child_up[0].child_sa});
  n.sim.RunFor(Duration(2000));
  EXPECT_EQ(n.b->errors, 0u) << ::testing::PrintToString(n.b->error_texts);
  for (const auto& [k, sa] : n.b->sad) {
    ASSERT_TRUE(sa.encapsulation.has_value());
    const uint16_t peer_port = sa.direction == SaDirection::kOutbound
                                   ? sa.encapsulation->destination_port
                                   : sa.encapsulation->source_port;
    EXPECT_EQ(peer_port, 33001);
  }
  EXPECT_EQ(n.b->sent.back().remote.port, 33001);
}

TEST(NatMappingTest, MappingForUnknownSpiOrWithoutNatChangesNothing) {
  NatPair n;
  ExpectEstablished(*n.a, *n.b);
  Actions actions = n.b->manager->Handle(
      KernelMapping{Ip(kB), 0xdeadbeef, Endpoint{Ip(kA), 40000}}, n.sim.now());
  EXPECT_TRUE(actions.empty());

  // Without a NAT there is no encapsulation to move: the event is ignored.
  Simulation sim(82);
  auto p = MakePskPair();
  Node& a = sim.AddNode("a", kA, p.a);
  Node& b = sim.AddNode("b", kB, p.b);
  sim.Feed(a, Initiate("a-b"));
  sim.RunFor(Duration(2000));
  ExpectEstablished(a, b);
  Actions none = b.manager->Handle(
      KernelMapping{Ip(kB), b.child_up[0].inbound_spi, Endpoint{Ip(kA), 40000}},
      sim.now());
  for (const auto& action : none)
    EXPECT_FALSE(std::holds_alternative<UpdateChildSaEncapsulation>(action));
  EXPECT_EQ(b.manager->List()[0].remote.port, 500);
}

}  // namespace
}  // namespace ike::sa::testing
