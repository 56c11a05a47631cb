// KernelState::MoveSa: an ESP SA installed again between new addresses (the
// peer's NAT got another public address), against the in-memory XFRM.
#include <mutex>

#include "daemon/kernel_state.h"
#include "gtest/gtest.h"
#include "kernel_glue/xfrm_in_memory.h"

namespace btnsd::daemon {
namespace {

using ike::policy::IpAddress;
using ike::policy::IpRange;
using ike::policy::TrafficSelector;
using ike::sa::SaDirection;

IpAddress Ip(const char* text) { return *IpAddress::Parse(text); }
TrafficSelector Host(const char* a) { return TrafficSelector{IpRange::Host(Ip(a)), 0, {}}; }

class KernelStateMoveTest : public ::testing::Test {
 protected:
  KernelStateMoveTest()
      : tags_(ToKernelTags(ike::policy::KernelOwnership{})),
        xfrm_(tags_.ownership),
        state_(xfrm_, mutex_, tags_) {}

  // Transport mode across a NAT: 192.0.2.1 (us) and the NAT's 192.0.2.254.
  ike::sa::InstallChildSa Sa(SaDirection direction, uint32_t spi) {
    ike::sa::InstallChildSa sa;
    sa.ike_sa = 1;
    sa.child_sa = 1;
    sa.direction = direction;
    sa.spi = spi;
    const bool in = direction == SaDirection::kInbound;
    sa.source = Ip(in ? "192.0.2.254" : "192.0.2.1");
    sa.destination = Ip(in ? "192.0.2.1" : "192.0.2.254");
    sa.source_ts = {Host(in ? "192.0.2.254" : "192.0.2.1")};
    sa.destination_ts = {Host(in ? "192.0.2.1" : "192.0.2.254")};
    sa.reqid = 0x10001;
    sa.transform.encryption = ike::wire::EncrId::kAesGcm16;
    sa.transform.aead = true;
    sa.encryption_key.assign(20, in ? 7 : 8);
    sa.encapsulation = in ? ike::sa::UdpEncapsulation{20001, 4500}
                          : ike::sa::UdpEncapsulation{4500, 20001};
    return sa;
  }
  static kernel_glue::SaId Id(const char* destination, uint32_t spi) {
    kernel_glue::SaId id;
    id.dst = ToKernel(Ip(destination));
    id.spi = spi;
    return id;
  }

  KernelTags tags_;
  std::mutex mutex_;
  kernel_glue::XfrmInMemory xfrm_;
  KernelState state_;
};

TEST_F(KernelStateMoveTest, OutboundSaIsCopiedToTheNewAddressWithItsCounters) {
  ASSERT_TRUE(state_.InstallSa(Sa(SaDirection::kOutbound, 0xabcd0001)));
  ASSERT_TRUE(xfrm_.AddTraffic(Id("192.0.2.254", 0xabcd0001), 5000, 40).ok());
  ike::sa::MoveChildSa move{1, 1, SaDirection::kOutbound, 0xabcd0001,
                            Ip("192.0.2.254"), Ip("192.0.2.1"), Ip("192.0.2.253"),
                            ike::sa::UdpEncapsulation{4500, 22001},
                            {Host("192.0.2.1")}, {Host("192.0.2.253")}};
  ASSERT_TRUE(state_.MoveSa(move));
  // The old one stays until the engine deletes it (make before break).
  EXPECT_EQ(xfrm_.sa_count(), 2u);
  auto moved = xfrm_.QuerySa(Id("192.0.2.253", 0xabcd0001));
  ASSERT_TRUE(moved.ok());
  EXPECT_EQ(moved.value().src, ToKernel(Ip("192.0.2.1")));
  EXPECT_EQ(moved.value().reqid, 0x10001u);
  ASSERT_TRUE(moved.value().encap.has_value());
  EXPECT_EQ(moved.value().encap->dst_port, 22001);
  EXPECT_EQ(moved.value().counters.bytes, 5000u);
  EXPECT_EQ(moved.value().counters.packets, 40u);
  // What MoveSa installed is known to the daemon: its ports can move too,
  // and deleting the old one leaves the new one.
  ike::sa::UpdateChildSaEncapsulation update{
      1, 1, SaDirection::kOutbound, Ip("192.0.2.253"), 0xabcd0001,
      ike::sa::UdpEncapsulation{4500, 22002}};
  EXPECT_TRUE(state_.UpdateEncapsulation(update));
  ASSERT_TRUE(state_.DeleteSa(ike::sa::DeleteChildSa{
      1, 1, SaDirection::kOutbound, Ip("192.0.2.254"), 0xabcd0001}));
  EXPECT_EQ(xfrm_.sa_count(), 1u);
  EXPECT_TRUE(xfrm_.HasSa(Id("192.0.2.253", 0xabcd0001)));
}

TEST_F(KernelStateMoveTest, InboundSaIsReplacedInPlace) {
  ASSERT_TRUE(state_.InstallSa(Sa(SaDirection::kInbound, 0xc0000001)));
  ASSERT_TRUE(xfrm_.AddTraffic(Id("192.0.2.1", 0xc0000001), 700, 7).ok());
  ike::sa::MoveChildSa move{1, 1, SaDirection::kInbound, 0xc0000001,
                            Ip("192.0.2.1"), Ip("192.0.2.253"), Ip("192.0.2.1"),
                            ike::sa::UdpEncapsulation{22001, 4500},
                            {Host("192.0.2.253")}, {Host("192.0.2.1")}};
  ASSERT_TRUE(state_.MoveSa(move));
  EXPECT_EQ(xfrm_.sa_count(), 1u);
  auto moved = xfrm_.QuerySa(Id("192.0.2.1", 0xc0000001));
  ASSERT_TRUE(moved.ok());
  EXPECT_EQ(moved.value().src, ToKernel(Ip("192.0.2.253")));
  EXPECT_EQ(moved.value().encap->src_port, 22001);
  EXPECT_EQ(moved.value().counters.packets, 7u);
}

TEST_F(KernelStateMoveTest, UnknownSaOrKernelRefusalFails) {
  ike::sa::MoveChildSa move{1, 1, SaDirection::kOutbound, 0xabcd0009,
                            Ip("192.0.2.254"), Ip("192.0.2.1"), Ip("192.0.2.253"),
                            std::nullopt, {}, {}};
  EXPECT_FALSE(state_.MoveSa(move));
  ASSERT_TRUE(state_.InstallSa(Sa(SaDirection::kOutbound, 0xabcd0009)));
  xfrm_.FailNextOperation(ENOMEM);  // the query: the SA is still moved
  EXPECT_TRUE(state_.MoveSa(move));
  EXPECT_TRUE(xfrm_.HasSa(Id("192.0.2.253", 0xabcd0009)));
}

}  // namespace
}  // namespace btnsd::daemon
