// The routing of btnsd's protocol shards: SPI and handle bits, new
// IKE_SA_INIT requests by peer address, locally started negotiations by the
// peer the engine will talk to, kernel SAs by (destination, SPI); and the
// engine hook that puts the shard into the SPIs and handles it chooses.
#include "daemon/shard_router.h"

#include <cstdlib>
#include <fstream>
#include <set>

#include "config/loader.h"
#include "gtest/gtest.h"
#include "ike/crypto/random.h"
#include "ike/sa/engine.h"

namespace btnsd::daemon {
namespace {

using ike::policy::IpAddress;

IpAddress Ip(const char* text) { return *IpAddress::Parse(text); }

// An IKE header: SPIs, exchange, flags (28 octets, message ID 0).
std::vector<uint8_t> Header(uint64_t spi_i, uint64_t spi_r, uint8_t exchange,
                            uint8_t flags) {
  std::vector<uint8_t> h(28, 0);
  for (int i = 0; i < 8; ++i) {
    h[i] = uint8_t(spi_i >> (56 - 8 * i));
    h[8 + i] = uint8_t(spi_r >> (56 - 8 * i));
  }
  h[16] = 33;  // SA
  h[17] = 0x20;
  h[18] = exchange;
  h[19] = flags;
  h[27] = 28;
  return h;
}
constexpr uint8_t kInitiator = 0x08, kResponse = 0x20;

TEST(ShardRouterTest, SpiBitsCoverTheShardCount) {
  EXPECT_EQ(ShardRouter(1, 7).spi_bits(), 0);
  EXPECT_EQ(ShardRouter(2, 7).spi_bits(), 1);
  EXPECT_EQ(ShardRouter(3, 7).spi_bits(), 2);
  EXPECT_EQ(ShardRouter(4, 7).spi_bits(), 2);
  EXPECT_EQ(ShardRouter(64, 7).spi_bits(), 6);
  EXPECT_EQ(ShardRouter(0, 7).shard_count(), 1u);
  EXPECT_EQ(ShardRouter(1000, 7).shard_count(), ShardRouter::kMaxShards);
}

TEST(ShardRouterTest, OurSpiNamesItsShardAndForeignBandsAreRejected) {
  ShardRouter router(3, 1);  // two bits: band 3 belongs to nobody
  EXPECT_EQ(router.OfSpi(0x0123456789abcdefull), 0u);
  EXPECT_EQ(router.OfSpi(0x4123456789abcdefull), 1u);
  EXPECT_EQ(router.OfSpi(0x8123456789abcdefull), 2u);
  EXPECT_EQ(router.OfSpi(0xc123456789abcdefull), std::nullopt);
  EXPECT_EQ(router.OfSpi(0), std::nullopt);
  EXPECT_EQ(ShardRouter(1, 1).OfSpi(0xc123456789abcdefull), 0u);
  EXPECT_EQ(router.OfHandle((uint64_t{2} << 48) | 17), 2u);
  EXPECT_EQ(router.OfHandle((uint64_t{5} << 48) | 17), std::nullopt);
  EXPECT_EQ(router.OfHandle(0), std::nullopt);
}

TEST(ShardRouterTest, DatagramsGoBySpiOfOursWhateverTheirSource) {
  ShardRouter router(2, 99);
  const uint64_t ours = 0x8000000000000042ull;  // shard 1
  const uint64_t theirs = 0x0000000000001234ull;
  // Find two sources that hash to different shards, so the test shows the
  // SPI wins over the source.
  const IpAddress a = Ip("192.0.2.1");
  IpAddress b = Ip("192.0.2.2");
  for (int i = 2; router.OfPeer(b) == router.OfPeer(a); ++i)
    b = Ip(("192.0.2." + std::to_string(i)).c_str());
  for (const IpAddress& from : {a, b}) {
    // A request from the original initiator names our SPI as responder SPI.
    auto request = Header(theirs, ours, 35, kInitiator);
    auto r1 = router.OfDatagram(request.data(), request.size(), from);
    EXPECT_EQ(r1.shard, 1u);
    EXPECT_FALSE(r1.by_peer);
    // A response to our IKE_SA_INIT (responder SPI theirs, or 0 in a
    // COOKIE/INVALID_KE answer) names ours as initiator SPI.
    auto response = Header(ours, 0, 34, kResponse);
    EXPECT_EQ(router.OfDatagram(response.data(), response.size(), from).shard, 1u);
    // A request from the peer when we were the original initiator.
    auto peer_request = Header(ours, theirs, 37, 0);
    EXPECT_EQ(router.OfDatagram(peer_request.data(), peer_request.size(), from).shard,
              1u);
  }
}

TEST(ShardRouterTest, NewInitRequestsAndJunkGoByPeerAddress) {
  ShardRouter router(2, 99);
  std::set<size_t> seen;
  for (int i = 1; i < 64; ++i) {
    const IpAddress from = Ip(("198.51.100." + std::to_string(i)).c_str());
    auto init = Header(0x1111000000000000ull + i, 0, 34, kInitiator);
    auto route = router.OfDatagram(init.data(), init.size(), from);
    EXPECT_TRUE(route.by_peer);
    EXPECT_EQ(route.shard, router.OfPeer(from));
    // The cookie retry (new initiator SPI even) lands on the same shard.
    auto retry = Header(0x2222000000000000ull + i, 0, 34, kInitiator);
    EXPECT_EQ(router.OfDatagram(retry.data(), retry.size(), from).shard, route.shard);
    seen.insert(route.shard);
    const uint8_t junk[3] = {1, 2, 3};
    EXPECT_EQ(router.OfDatagram(junk, sizeof junk, from).shard, route.shard);
  }
  EXPECT_EQ(seen.size(), 2u) << "63 addresses all hashed to one shard";
  // A forged SPI outside every band goes by address too.
  ShardRouter three(3, 99);
  auto forged = Header(0x42, 0xc000000000000001ull, 35, kInitiator);
  auto route = three.OfDatagram(forged.data(), forged.size(), Ip("203.0.113.9"));
  EXPECT_TRUE(route.by_peer);
  EXPECT_EQ(route.shard, three.OfPeer(Ip("203.0.113.9")));
}

TEST(ShardRouterTest, AddressHashIsKeyedAndBalanced) {
  ShardRouter one(4, 1), other(4, 2);
  size_t counts[4] = {};
  int differ = 0;
  for (int i = 0; i < 4000; ++i) {
    IpAddress a = Ip("10.0.0.0");
    a.value += i;
    ++counts[one.OfPeer(a)];
    differ += one.OfPeer(a) != other.OfPeer(a);
  }
  for (size_t c : counts) EXPECT_NEAR(double(c), 1000.0, 150.0);
  EXPECT_GT(differ, 2000) << "the seed does not change the mapping";
  EXPECT_EQ(one.OfPeer(Ip("10.0.0.7")), one.OfPeer(Ip("10.0.0.7")));
}

std::string WriteConfig(const std::string& text) {
  const char* dir = std::getenv("TEST_TMPDIR");
  const std::string path = std::string(dir ? dir : "/tmp") + "/router.yaml";
  std::ofstream(path) << text;
  return path;
}

ike::policy::PolicySnapshotPtr Policy() {
  auto loaded = config::LoadConfigFile(WriteConfig(
      "daemon:\n  listen: [192.0.2.1]\n"
      "pad:\n  - name: anyone\n    auth: btns\n"
      "    btns: {accept_null: true, accept_raw_key: false}\n"
      "identities:\n  anonymous:\n    id: null\n"
      "spd:\n"
      "  - name: host\n    local: 192.0.2.1\n    remote: 192.0.2.7\n"
      "    action: protect\n    peer: anyone\n    unauthenticated_ok: true\n"
      "  - name: net\n    local: 10.1.0.0/16\n    remote: 10.2.0.0/16\n"
      "    action: protect\n    peer: anyone\n    unauthenticated_ok: true\n"
      "    mode: tunnel\n    tunnel: {local: 192.0.2.1, remote: 192.0.2.9}\n"));
  for (const auto& e : loaded.errors) ADD_FAILURE() << e.ToString();
  return loaded.snapshot;
}

TEST(ShardRouterTest, LocalNegotiationsGoToTheShardOfTheirPeer) {
  auto policy = Policy();
  ASSERT_NE(policy, nullptr);
  ShardRouter router(4, 5);
  // Transport entry: the single-host remote selector is the peer.
  ike::sa::InitiateRequest host{"host", std::nullopt, std::nullopt, std::nullopt};
  EXPECT_EQ(ShardRouter::PeerOf(host, *policy), Ip("192.0.2.7"));
  EXPECT_EQ(router.OfEvent(host, *policy), router.OfPeer(Ip("192.0.2.7")));
  // Tunnel entry: the gateway, whatever the triggering packet.
  ike::policy::PacketFiveTuple packet{Ip("10.1.0.5"), Ip("10.2.3.4"), 6, 1000, 80};
  ike::sa::InitiateRequest net{"net", std::nullopt, std::nullopt, packet};
  EXPECT_EQ(ShardRouter::PeerOf(net, *policy), Ip("192.0.2.9"));
  ike::sa::KernelAcquire acquire{packet, std::nullopt};
  EXPECT_EQ(ShardRouter::PeerOf(acquire, *policy), Ip("192.0.2.9"));
  EXPECT_EQ(router.OfEvent(acquire, *policy), router.OfPeer(Ip("192.0.2.9")));
  // A transport acquire: the packet's destination, as for an IKE_SA_INIT
  // that peer would send us, so both directions meet in one shard.
  ike::policy::PacketFiveTuple direct{Ip("192.0.2.1"), Ip("192.0.2.7"), 1, 0, 0};
  EXPECT_EQ(router.OfEvent(ike::sa::KernelAcquire{direct, std::nullopt}, *policy),
            router.OfPeer(Ip("192.0.2.7")));
  auto init = Header(0x77, 0, 34, kInitiator);
  EXPECT_EQ(router.OfDatagram(init.data(), init.size(), Ip("192.0.2.7")).shard,
            router.OfPeer(Ip("192.0.2.7")));
  // Requests about an SA go by the handle; unknown entries to nobody.
  EXPECT_EQ(router.OfEvent(ike::sa::DeleteRequest{(uint64_t{3} << 48) | 9, 0}, *policy),
            3u);
  EXPECT_EQ(router.OfEvent(ike::sa::RekeyRequest{0, (uint64_t{2} << 48) | 4}, *policy),
            2u);
  // An application's signature comes back from the API thread to the shard
  // whose IKE SA asked for it.
  ike::sa::SignatureDelivered signature;
  signature.ike_sa = (uint64_t{1} << 48) | 5;
  signature.request = 1;
  EXPECT_EQ(router.OfEvent(signature, *policy), 1u);
  EXPECT_EQ(router.OfEvent(ike::sa::InitiateRequest{"nope", std::nullopt,
                                                    std::nullopt, std::nullopt},
                           *policy),
            std::nullopt);
}

TEST(ShardRouterTest, KernelSasMapToTheShardThatInstalledThem) {
  SaShardMap map;
  map.Installed(Ip("192.0.2.1"), 0x1000, 1);
  map.Installed(Ip("192.0.2.2"), 0x1000, 0);
  map.Installed(*IpAddress::Parse("2001:db8::1"), 0x1000, 3);
  EXPECT_EQ(map.Find(Ip("192.0.2.1"), 0x1000), 1u);
  EXPECT_EQ(map.Find(Ip("192.0.2.2"), 0x1000), 0u);
  EXPECT_EQ(map.Find(*IpAddress::Parse("2001:db8::1"), 0x1000), 3u);
  EXPECT_EQ(map.Find(Ip("192.0.2.1"), 0x1001), std::nullopt);
  map.Deleted(Ip("192.0.2.1"), 0x1000);
  EXPECT_EQ(map.Find(Ip("192.0.2.1"), 0x1000), std::nullopt);
  EXPECT_EQ(map.size(), 2u);
}

class CountingSpis : public ike::sa::SpiAllocator {
 public:
  uint32_t Allocate(const IpAddress&, const IpAddress&) override { return ++next_; }
  void Release(const IpAddress&, uint32_t) override {}
  uint32_t next_ = 0x100;
};

// The engine hook: every IKE SPI and handle a shard's engine chooses
// carries its shard, so the router finds it again.
TEST(ShardRouterTest, EachShardEngineChoosesSpisAndHandlesInItsBand) {
  auto policy = Policy();
  ASSERT_NE(policy, nullptr);
  ShardRouter router(3, 5);
  for (size_t shard = 0; shard < 3; ++shard) {
    ike::crypto::DrbgRandomSource random;
    CountingSpis spis;
    ike::sa::SaManager manager(router.SettingsFor(shard, {}), policy, {}, random, spis);
    for (int i = 0; i < 50; ++i) {
      ike::sa::InitiateRequest request{
          "host", ike::sa::Endpoint{Ip("192.0.2.7"), uint16_t(500 + i)},
          ike::sa::Endpoint{Ip("192.0.2.1"), 500}, std::nullopt};
      manager.Handle(request, ike::sa::Instant{});
    }
    const auto views = manager.List();
    ASSERT_FALSE(views.empty());
    for (const auto& view : views) {
      EXPECT_EQ(router.OfSpi(view.initiator_spi), shard)
          << std::hex << view.initiator_spi;
      EXPECT_EQ(router.OfHandle(view.handle), shard) << std::hex << view.handle;
    }
  }
}

}  // namespace
}  // namespace btnsd::daemon
