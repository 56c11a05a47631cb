// The single conversion point between the engine's types and kernel_glue's.
#include "daemon/kernel_translate.h"

#include "gtest/gtest.h"

namespace btnsd::daemon {
namespace {

using ike::policy::IpAddress;
using ike::policy::IpRange;
using ike::policy::TrafficSelector;

IpAddress Ip(const char* text) { return *IpAddress::Parse(text); }
TrafficSelector Ts(const char* start, const char* end, uint8_t protocol = 0,
                   uint16_t low = 0, uint16_t high = 65535) {
  return TrafficSelector{IpRange{Ip(start), Ip(end)}, protocol, {low, high}};
}
KernelTags Tags() {
  ike::policy::KernelOwnership ownership;  // config defaults
  return ToKernelTags(ownership);
}

TEST(KernelTranslateTest, AddressesKeepFamilyAndBytes) {
  const kernel_glue::IpAddress v4 = ToKernel(Ip("192.0.2.7"));
  EXPECT_EQ(v4.family, kernel_glue::AddressFamily::kIpv4);
  EXPECT_EQ(v4.ToString(), "192.0.2.7");
  const kernel_glue::IpAddress v6 = ToKernel(Ip("2001:db8::42"));
  EXPECT_EQ(v6.family, kernel_glue::AddressFamily::kIpv6);
  EXPECT_EQ(v6.ToString(), "2001:db8::42");
  EXPECT_EQ(FromKernel(v6), Ip("2001:db8::42"));
  EXPECT_EQ(FromKernel(v4), Ip("192.0.2.7"));
}

TEST(KernelTranslateTest, RangesSplitIntoExactPrefixes) {
  auto prefixes = RangeToPrefixes(IpRange{Ip("10.0.0.1"), Ip("10.0.0.6")});
  ASSERT_EQ(prefixes.size(), 4u);
  EXPECT_EQ(prefixes[0].first, Ip("10.0.0.1"));
  EXPECT_EQ(prefixes[0].second, 32);
  EXPECT_EQ(prefixes[1].first, Ip("10.0.0.2"));
  EXPECT_EQ(prefixes[1].second, 31);
  EXPECT_EQ(prefixes[2].first, Ip("10.0.0.4"));
  EXPECT_EQ(prefixes[2].second, 31);
  EXPECT_EQ(prefixes[3].first, Ip("10.0.0.6"));
  EXPECT_EQ(prefixes[3].second, 32);

  auto all_v4 = RangeToPrefixes(IpRange::All(ike::policy::IpFamily::kV4));
  ASSERT_EQ(all_v4.size(), 1u);
  EXPECT_EQ(all_v4[0].second, 0);
  auto all_v6 = RangeToPrefixes(IpRange::All(ike::policy::IpFamily::kV6));
  ASSERT_EQ(all_v6.size(), 1u);
  EXPECT_EQ(all_v6[0].second, 0);
  auto host = RangeToPrefixes(IpRange::Host(Ip("2001:db8::1")));
  ASSERT_EQ(host.size(), 1u);
  EXPECT_EQ(host[0].second, 128);
}

TEST(KernelTranslateTest, SplitPrefixesCoverTheRangeExactly) {
  // Every prefix lies inside the range, and together they count its size.
  const IpRange range{Ip("192.0.2.3"), Ip("192.0.2.200")};
  unsigned covered = 0;
  for (const auto& [start, length] : RangeToPrefixes(range)) {
    const unsigned size = 1u << (32 - length);
    EXPECT_EQ(static_cast<unsigned>(start.value) % size, 0u) << "unaligned";
    EXPECT_GE(start.value, range.start.value);
    EXPECT_LE(start.value + size - 1, range.end.value);
    covered += size;
  }
  EXPECT_EQ(covered, 198u);
}

TEST(KernelTranslateTest, SelectorsAreTheCrossProductWithPorts) {
  auto selectors = ToKernelSelectors(Ts("10.0.0.0", "10.0.0.1", 6, 80, 80),
                                     Ts("10.0.1.0", "10.0.1.2", 6));
  ASSERT_TRUE(std::holds_alternative<std::vector<kernel_glue::Selector>>(selectors));
  const auto& list = std::get<std::vector<kernel_glue::Selector>>(selectors);
  ASSERT_EQ(list.size(), 2u);  // 1 source prefix x 2 destination prefixes
  EXPECT_EQ(list[0].src_prefix, 31);
  EXPECT_EQ(list[0].dst_prefix, 31);
  EXPECT_EQ(list[1].dst_prefix, 32);
  EXPECT_EQ(list[0].protocol, 6);
  EXPECT_EQ(list[0].src_port, 80);
  EXPECT_EQ(list[0].dst_port, 0);
}

TEST(KernelTranslateTest, PortRangesTheKernelCannotMatchAreRefused) {
  auto selectors = ToKernelSelectors(Ts("10.0.0.1", "10.0.0.1", 6, 1024, 2048),
                                     Ts("10.0.0.2", "10.0.0.2", 6));
  ASSERT_TRUE(std::holds_alternative<std::string>(selectors));
  EXPECT_NE(std::get<std::string>(selectors).find("1024"), std::string::npos);
  auto mixed = ToKernelSelectors(Ts("10.0.0.1", "10.0.0.1"), Ts("2001:db8::", "2001:db8::"));
  EXPECT_TRUE(std::holds_alternative<std::string>(mixed));
}

ike::sa::InstallChildSa GcmSa() {
  ike::sa::InstallChildSa sa;
  sa.ike_sa = 1;
  sa.child_sa = 2;
  sa.direction = ike::sa::SaDirection::kOutbound;
  sa.spi = 0xc0ffee01;
  sa.source = Ip("192.0.2.1");
  sa.destination = Ip("192.0.2.2");
  sa.reqid = 0x10001;
  sa.transform.encryption = ike::wire::EncrId::kAesGcm16;
  sa.transform.encryption_key_bits = 256;
  sa.transform.aead = true;
  sa.encryption_key.assign(36, 0x5a);
  sa.source_ts = {Ts("192.0.2.1", "192.0.2.1")};
  sa.destination_ts = {Ts("192.0.2.2", "192.0.2.2")};
  sa.lifetime.soft_seconds = 2700;
  sa.lifetime.hard_seconds = 3600;
  sa.lifetime.hard_bytes = 1u << 30;
  return sa;
}

TEST(KernelTranslateTest, AeadSaKeepsKeyLifetimesAndBindsTransportSelector) {
  auto translated = ToKernelSa(GcmSa(), Tags());
  ASSERT_TRUE(std::holds_alternative<kernel_glue::SaParams>(translated))
      << std::get<std::string>(translated);
  const auto& sa = std::get<kernel_glue::SaParams>(translated);
  EXPECT_EQ(sa.id.spi, 0xc0ffee01u);
  EXPECT_EQ(sa.id.dst.ToString(), "192.0.2.2");
  EXPECT_EQ(sa.src.ToString(), "192.0.2.1");
  EXPECT_EQ(sa.cipher, kernel_glue::Cipher::kAesGcm16);
  EXPECT_EQ(sa.integrity, kernel_glue::Integrity::kNone);
  EXPECT_EQ(sa.encryption_key.size(), 36u);
  EXPECT_EQ(sa.reqid, 0x10001u);
  EXPECT_EQ(sa.lifetime.soft_add_seconds, 2700u);
  EXPECT_EQ(sa.lifetime.hard_add_seconds, 3600u);
  EXPECT_EQ(sa.lifetime.hard_bytes, 1u << 30);
  EXPECT_FALSE(sa.encap.has_value());
  ASSERT_TRUE(sa.selector.has_value());
  EXPECT_EQ(sa.selector->dst_prefix, 32);
  EXPECT_FALSE(sa.id.mark.has_value());
}

TEST(KernelTranslateTest, CbcShaSaWithEsnAndNatTraversal) {
  ike::sa::InstallChildSa in = GcmSa();
  in.transform.encryption = ike::wire::EncrId::kAesCbc;
  in.transform.integrity = ike::wire::IntegId::kHmacSha2_256_128;
  in.transform.aead = false;
  in.transform.extended_sequence_numbers = true;
  in.encryption_key.assign(16, 1);
  in.integrity_key.assign(32, 2);
  in.encapsulation = ike::sa::UdpEncapsulation{4500, 31337};
  in.mode = ike::policy::IpsecMode::kTunnel;
  auto translated = ToKernelSa(in, Tags());
  ASSERT_TRUE(std::holds_alternative<kernel_glue::SaParams>(translated));
  const auto& sa = std::get<kernel_glue::SaParams>(translated);
  EXPECT_EQ(sa.cipher, kernel_glue::Cipher::kAesCbc);
  EXPECT_EQ(sa.integrity, kernel_glue::Integrity::kHmacSha256_128);
  EXPECT_EQ(sa.integrity_key.size(), 32u);
  EXPECT_TRUE(sa.extended_sequence_numbers);
  EXPECT_GT(sa.replay_window, 0u);
  ASSERT_TRUE(sa.encap.has_value());
  EXPECT_EQ(sa.encap->dst_port, 31337);
  EXPECT_EQ(sa.mode, kernel_glue::Mode::kTunnel);
  EXPECT_FALSE(sa.selector.has_value()) << "tunnel SAs are steered by policies";
}

TEST(KernelTranslateTest, UnsupportedTransformsAreNamed) {
  ike::sa::InstallChildSa in = GcmSa();
  in.transform.encryption = ike::wire::EncrId::k3Des;
  auto translated = ToKernelSa(in, Tags());
  ASSERT_TRUE(std::holds_alternative<std::string>(translated));
  EXPECT_NE(std::get<std::string>(translated).find("encryption"), std::string::npos);
}

TEST(KernelTranslateTest, EngineReqidsAreMovedIntoTheOwnedRange) {
  const KernelTags tags = Tags();
  EXPECT_EQ(KernelReqid(0x10007, tags), 0x10007u) << "owned reqids pass unchanged";
  const uint32_t one = KernelReqid(1, tags);
  const uint32_t two = KernelReqid(2, tags);
  EXPECT_TRUE(tags.ownership.OwnsReqid(one));
  EXPECT_TRUE(tags.ownership.OwnsReqid(two));
  EXPECT_NE(one, two);
  EXPECT_NE(one, tags.ownership.reqid_min) << "reserved for larval SAs";
  ike::sa::InstallChildSa sa = GcmSa();
  sa.reqid = 1;
  EXPECT_EQ(std::get<kernel_glue::SaParams>(ToKernelSa(sa, tags)).reqid, one);
}

// Protocol shards number their CHILD_SAs in disjoint slices of the SA part
// of the owned band (above the larval reqid_min, below the reserved top);
// the SA install passes those reqids to the kernel unchanged.
TEST(KernelTranslateTest, ShardsGetDisjointReqidSlicesOfTheOwnedBand) {
  KernelTags tags = Tags();
  tags.reqid_offset = 0x9e3779b9u;
  const uint32_t sa_top = tags.ownership.reqid_max - kTrapReqids - kWaitingReqids;
  for (size_t shards : {1u, 2u, 3u, 8u}) {
    uint32_t previous_last = tags.ownership.reqid_min;
    for (size_t shard = 0; shard < shards; ++shard) {
      const auto range = ShardReqids(tags, shard, shards);
      EXPECT_GT(range.first, previous_last) << shards << " shards, shard " << shard;
      EXPECT_LE(range.first, range.start);
      EXPECT_LE(range.start, range.last);
      EXPECT_LE(range.last, sa_top);
      EXPECT_GE(uint64_t{range.last} - range.first + 1,
                (sa_top - tags.ownership.reqid_min) / shards);
      for (uint32_t reqid : {range.first, range.start, range.last})
        EXPECT_EQ(KernelReqid(reqid, tags), reqid);
      previous_last = range.last;
    }
  }
  // The offset moves where a shard starts, not its slice.
  KernelTags other = tags;
  other.reqid_offset = 12345;
  EXPECT_EQ(ShardReqids(other, 1, 2).first, ShardReqids(tags, 1, 2).first);
  EXPECT_NE(ShardReqids(other, 1, 2).start, ShardReqids(tags, 1, 2).start);
  // A band of one reqid: every shard shares it (nothing else is owned).
  KernelTags narrow = tags;
  narrow.ownership.reqid_min = narrow.ownership.reqid_max = 0x500;
  const auto only = ShardReqids(narrow, 1, 2);
  EXPECT_EQ(only.first, 0x500u);
  EXPECT_EQ(only.last, 0x500u);
}

TEST(KernelTranslateTest, MarkAndOwnershipComeFromTheConfig) {
  ike::policy::KernelOwnership ownership;
  ownership.mark = 0x42;
  ownership.mark_mask = 0;
  ownership.reqid_min = 0x20000;
  ownership.reqid_max = 0x2ffff;
  const KernelTags tags = ToKernelTags(ownership);
  ASSERT_TRUE(tags.mark.has_value());
  EXPECT_EQ(tags.mark->value, 0x42u);
  EXPECT_EQ(tags.mark->mask, 0xffffffffu);
  EXPECT_TRUE(tags.ownership.OwnsReqid(0x20001));
  EXPECT_FALSE(tags.ownership.OwnsReqid(0x10001));
  auto sa = ToKernelSa(GcmSa(), tags);
  EXPECT_EQ(std::get<kernel_glue::SaParams>(sa).id.mark, tags.mark);
}

TEST(KernelTranslateTest, MoreSpecificPoliciesArePreferred) {
  const KernelTags tags = Tags();
  kernel_glue::Selector host = kernel_glue::Selector::HostToHost(
      ToKernel(Ip("192.0.2.1")), ToKernel(Ip("192.0.2.2")));
  kernel_glue::Selector net = host;
  net.dst_prefix = 24;
  kernel_glue::Selector port = host;
  port.protocol = 6;
  port.dst_port = 22;
  EXPECT_LT(PolicyPriority(host, tags), PolicyPriority(net, tags));
  EXPECT_LT(PolicyPriority(port, tags), PolicyPriority(host, tags));
  for (const auto& s : {host, net, port}) {
    EXPECT_TRUE(tags.ownership.OwnsPriority(PolicyPriority(s, tags)));
  }
}

TEST(KernelTranslateTest, PolicyTemplatesFollowTheMode) {
  ike::sa::InstallPolicy transport;
  transport.direction = ike::sa::PolicyDirection::kIn;
  transport.source = Ts("192.0.2.2", "192.0.2.2");
  transport.destination = Ts("192.0.2.1", "192.0.2.1");
  transport.tunnel_source = Ip("192.0.2.2");
  transport.tunnel_destination = Ip("192.0.2.1");
  transport.reqid = 0x10005;
  auto t = ToKernelPolicies(transport, Tags());
  ASSERT_TRUE(std::holds_alternative<std::vector<kernel_glue::PolicyParams>>(t));
  const auto& tp = std::get<std::vector<kernel_glue::PolicyParams>>(t).at(0);
  EXPECT_EQ(tp.id.direction, kernel_glue::Direction::kIn);
  EXPECT_EQ(tp.templates.at(0).mode, kernel_glue::Mode::kTransport);
  EXPECT_EQ(tp.templates.at(0).reqid, 0x10005u);
  EXPECT_EQ(tp.templates.at(0).tunnel_dst.ToString(), "0.0.0.0");

  ike::sa::InstallPolicy tunnel = transport;
  tunnel.direction = ike::sa::PolicyDirection::kForward;
  tunnel.mode = ike::policy::IpsecMode::kTunnel;
  tunnel.source = Ts("10.2.0.0", "10.2.255.255");
  auto u = ToKernelPolicies(tunnel, Tags());
  const auto& up = std::get<std::vector<kernel_glue::PolicyParams>>(u).at(0);
  EXPECT_EQ(up.id.direction, kernel_glue::Direction::kFwd);
  EXPECT_EQ(up.id.selector.src_prefix, 16);
  EXPECT_EQ(up.templates.at(0).tunnel_src.ToString(), "192.0.2.2");
  EXPECT_EQ(up.templates.at(0).tunnel_dst.ToString(), "192.0.2.1");

  ike::sa::RemovePolicy remove{0, ike::sa::PolicyDirection::kForward, tunnel.source,
                               tunnel.destination};
  auto ids = ToKernelPolicyIds(remove, Tags());
  ASSERT_TRUE(std::holds_alternative<std::vector<kernel_glue::PolicyId>>(ids));
  EXPECT_EQ(std::get<std::vector<kernel_glue::PolicyId>>(ids).at(0), up.id);
}

TEST(KernelTranslateTest, TrapsNeedARemoteRangeAndTunnelEndpoints) {
  ike::policy::SpdEntry entry;
  entry.name = "wide";
  entry.action = ike::policy::SpdAction::kProtect;
  auto no_remote = TrapPolicies(entry, 0x1ffff, Tags());
  ASSERT_TRUE(std::holds_alternative<std::string>(no_remote));
  EXPECT_NE(std::get<std::string>(no_remote).find("wide"), std::string::npos);

  entry.selector.remote = IpRange::Host(Ip("192.0.2.2"));
  entry.protect.mode = ike::policy::IpsecMode::kTunnel;
  EXPECT_TRUE(std::holds_alternative<std::string>(TrapPolicies(entry, 0x1ffff, Tags())));

  entry.protect.tunnel_local = Ip("198.51.100.1");
  entry.protect.tunnel_remote = Ip("198.51.100.2");
  auto traps = TrapPolicies(entry, 0x1ffff, Tags());
  ASSERT_TRUE(std::holds_alternative<std::vector<kernel_glue::PolicyParams>>(traps));
  const auto& trap = std::get<std::vector<kernel_glue::PolicyParams>>(traps).at(0);
  EXPECT_EQ(trap.id.direction, kernel_glue::Direction::kOut);
  EXPECT_EQ(trap.id.selector.src_prefix, 0) << "no local range: any local address";
  EXPECT_EQ(trap.id.selector.dst_prefix, 32);
  EXPECT_EQ(trap.templates.at(0).reqid, 0x1ffffu);
  EXPECT_EQ(trap.templates.at(0).tunnel_dst.ToString(), "198.51.100.2");

  // A tunnel's CHILD_SA has out, in and fwd policies: so do its holding
  // policies, the inbound ones from the remote range with the reversed
  // tunnel template (RFC 4301 5.2: clear inbound traffic is dropped).
  const auto& all = std::get<std::vector<kernel_glue::PolicyParams>>(traps);
  ASSERT_EQ(all.size(), 3u);
  for (size_t i : {size_t{1}, size_t{2}}) {
    EXPECT_EQ(all[i].id.direction,
              i == 1 ? kernel_glue::Direction::kIn : kernel_glue::Direction::kFwd);
    EXPECT_EQ(all[i].id.selector.src.ToString(), "192.0.2.2");
    EXPECT_EQ(all[i].id.selector.src_prefix, 32);
    EXPECT_EQ(all[i].id.selector.dst_prefix, 0);
    EXPECT_EQ(all[i].templates.at(0).reqid, 0x1ffffu);
    EXPECT_EQ(all[i].templates.at(0).tunnel_src.ToString(), "198.51.100.2");
    EXPECT_EQ(all[i].templates.at(0).tunnel_dst.ToString(), "198.51.100.1");
  }
  EXPECT_TRUE(NeighborDiscoveryBypasses(all[2], Tags()).empty());

  entry.protect.mode = ike::policy::IpsecMode::kTransport;
  auto transport = TrapPolicies(entry, 0x1ffff, Tags());
  ASSERT_TRUE(std::holds_alternative<std::vector<kernel_glue::PolicyParams>>(transport));
  EXPECT_EQ(std::get<std::vector<kernel_glue::PolicyParams>>(transport).size(), 2u)
      << "out and in, no fwd in transport mode";
}

TEST(KernelTranslateTest, KernelEventsBecomeEngineEvents) {
  kernel_glue::AcquireEvent acquire;
  acquire.selector = kernel_glue::Selector::HostToHost(ToKernel(Ip("192.0.2.1")),
                                                       ToKernel(Ip("192.0.2.2")));
  acquire.selector.protocol = 6;
  acquire.selector.dst_port = 443;
  acquire.src = ToKernel(Ip("192.0.2.1"));
  acquire.dst = ToKernel(Ip("192.0.2.2"));
  auto event = FromKernelAcquire(acquire, 500);
  ASSERT_TRUE(event.has_value());
  EXPECT_EQ(event->packet.remote, Ip("192.0.2.2"));
  EXPECT_EQ(event->packet.protocol, 6);
  EXPECT_EQ(event->packet.remote_port, 443);
  ASSERT_TRUE(event->local.has_value());
  EXPECT_EQ(event->local->port, 500);

  kernel_glue::ExpireEvent expire;
  expire.id.dst = ToKernel(Ip("2001:db8::1"));
  expire.id.spi = 0x1234;
  expire.hard = true;
  auto expired = FromKernelExpire(expire);
  ASSERT_TRUE(expired.has_value());
  EXPECT_EQ(expired->destination, Ip("2001:db8::1"));
  EXPECT_EQ(expired->spi, 0x1234u);
  EXPECT_TRUE(expired->hard);
}

// The daemon tells a socket's ACQUIRE from a holding policy's by its reqid:
// the BTNS API's waiting band sits right below the trap reqids.
TEST(KernelTranslateTest, SocketWaitingReqidsAreTheBandBelowTheTraps) {
  const KernelTags tags = ToKernelTags(ike::policy::KernelOwnership{});
  const uint32_t top = tags.ownership.reqid_max - kTrapReqids;
  EXPECT_TRUE(IsSocketWaitingReqid(top, tags));
  EXPECT_TRUE(IsSocketWaitingReqid(top - kWaitingReqids + 1, tags));
  EXPECT_FALSE(IsSocketWaitingReqid(top - kWaitingReqids, tags)) << "an SA reqid";
  EXPECT_FALSE(IsSocketWaitingReqid(top + 1, tags)) << "a trap reqid";
  EXPECT_FALSE(IsSocketWaitingReqid(tags.ownership.reqid_max, tags));
  ike::policy::KernelOwnership narrow;
  narrow.reqid_max = narrow.reqid_min + 100;  // too narrow to reserve a band
  EXPECT_FALSE(IsSocketWaitingReqid(narrow.reqid_max - kTrapReqids, ToKernelTags(narrow)));
}

}  // namespace
}  // namespace btnsd::daemon
