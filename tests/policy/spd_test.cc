#include "ike/policy/spd.h"

#include <gtest/gtest.h>

namespace ike::policy {
namespace {

IpAddress A(const char* t) { return *IpAddress::Parse(t); }
IpRange R(const char* t) { return *IpRange::Parse(t); }

Spd ExampleSpd() {
  SpdEntry ssh;
  ssh.name = "bypass-ssh";
  ssh.action = SpdAction::kBypass;
  ssh.selector.protocol = 6;
  ssh.selector.local_ports = {22, 22};
  SpdEntry nfs;
  nfs.name = "nfs-btns";
  nfs.selector.local = R("192.0.2.1");
  nfs.selector.protocol = 6;
  nfs.selector.local_ports = {2049, 2049};
  nfs.protect.peer = "btns-any";
  nfs.protect.unauthenticated_ok = true;
  SpdEntry site;
  site.name = "site-b";
  site.selector.local = R("192.0.2.0/24");
  site.selector.remote = R("198.51.100.0/24");
  site.protect.peer = "sg-b";
  site.protect.mode = IpsecMode::kTunnel;
  SpdEntry drop;
  drop.name = "drop-v6";
  drop.action = SpdAction::kDiscard;
  drop.selector.remote = R("2001:db8::/32");
  return Spd({ssh, nfs, site, drop});
}

TEST(SpdTest, FirstMatchByFiveTuple) {
  Spd spd = ExampleSpd();
  auto* e = spd.Lookup({A("192.0.2.1"), A("198.51.100.5"), 6, 22, 40000});
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->name, "bypass-ssh");  // earlier than site-b
  e = spd.Lookup({A("192.0.2.1"), A("198.51.100.5"), 6, 443, 40000});
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->name, "site-b");
  e = spd.Lookup({A("192.0.2.1"), A("203.0.113.9"), 6, 2049, 700});
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->name, "nfs-btns");
  e = spd.Lookup({A("2001:db8::1"), A("2001:db8::2"), 17, 53, 53});
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->action, SpdAction::kDiscard);
  // ICMP has no ports, so port-bound entries are skipped.
  e = spd.Lookup({A("192.0.2.1"), A("203.0.113.9"), 1, 0, 0});
  EXPECT_EQ(e, nullptr);
}

TEST(SpdTest, LookupByTrafficSelectorsNarrowsAndChecksPeer) {
  Spd spd = ExampleSpd();
  TrafficSelector local{R("192.0.0.0/16"), 0, {}};
  TrafficSelector remote{R("198.51.100.0/24"), 0, {}};
  auto m = spd.LookupByTrafficSelectors(local, remote, "sg-b", true);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->entry->name, "site-b");
  EXPECT_EQ(m->local.addresses.ToString(), "192.0.2.0/24");
  EXPECT_FALSE(spd.LookupByTrafficSelectors(local, remote, "other", true));
  TrafficSelector far{R("203.0.113.0/24"), 0, {}};
  EXPECT_FALSE(spd.LookupByTrafficSelectors(local, far, "sg-b", true));
}

TEST(SpdTest, UnauthenticatedPeersOnlyGetFlaggedEntries) {
  Spd spd = ExampleSpd();
  TrafficSelector local{R("192.0.2.1"), 0, {}};
  TrafficSelector remote{R("203.0.113.9"), 0, {}};
  auto m = spd.LookupByTrafficSelectors(local, remote, "btns-any", false);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->local.protocol, 6);
  EXPECT_EQ(m->local.ports, (PortRange{2049, 2049}));
  // The same pair toward an entry lacking the flag is refused.
  EXPECT_FALSE(spd.LookupByTrafficSelectors(
      {R("192.0.2.0/24"), 0, {}}, {R("198.51.100.1"), 0, {}}, "sg-b", false));
}

}  // namespace
}  // namespace ike::policy
