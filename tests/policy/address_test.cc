#include "ike/policy/address.h"

#include <gtest/gtest.h>

#include "ike/policy/identity.h"

namespace ike::policy {
namespace {

IpRange R(const char* text) {
  auto r = IpRange::Parse(text);
  EXPECT_TRUE(r.has_value()) << text;
  return r.value_or(IpRange{});
}

TEST(IpAddressTest, ParsesAndFormatsBothFamilies) {
  EXPECT_EQ(IpAddress::Parse("192.0.2.1")->ToString(), "192.0.2.1");
  EXPECT_EQ(IpAddress::Parse("2001:db8::1")->ToString(), "2001:db8::1");
  EXPECT_EQ(IpAddress::Parse("2001:DB8:0:0:1:0:0:1")->ToString(),
            "2001:db8::1:0:0:1");
  EXPECT_EQ(IpAddress::Parse("::")->ToString(), "::");
  EXPECT_EQ(IpAddress::Parse("::ffff:192.0.2.1")->ToString(),
            "::ffff:c000:201");
  auto bytes = IpAddress::Parse("198.51.100.7")->ToBytes();
  EXPECT_EQ(bytes, (std::vector<uint8_t>{198, 51, 100, 7}));
}

TEST(IpAddressTest, RejectsMalformed) {
  for (const char* bad : {"", "1.2.3", "1.2.3.4.5", "256.1.1.1", "01.2.3.4",
                          "1::2::3", "12345::", "1:2:3:4:5:6:7:8:9", "g::1",
                          "1.2.3.4 "}) {
    EXPECT_FALSE(IpAddress::Parse(bad).has_value()) << bad;
  }
}

TEST(IpRangeTest, PrefixRangeAndHost) {
  IpRange p = R("192.0.2.0/24");
  EXPECT_EQ(p.start.ToString(), "192.0.2.0");
  EXPECT_EQ(p.end.ToString(), "192.0.2.255");
  EXPECT_EQ(p.ToString(), "192.0.2.0/24");
  EXPECT_EQ(R("192.0.2.10-192.0.2.20").ToString(), "192.0.2.10-192.0.2.20");
  EXPECT_EQ(R("2001:db8::/32").ToString(), "2001:db8::/32");
  EXPECT_EQ(R("0.0.0.0/0").ToString(), "0.0.0.0/0");
  EXPECT_EQ(R("::/0").ToString(), "::/0");
  std::string why;
  EXPECT_FALSE(IpRange::Parse("192.0.2.1/24", &why));
  EXPECT_NE(why.find("host bits"), std::string::npos);
  EXPECT_FALSE(IpRange::Parse("192.0.2.0/33", &why));
  EXPECT_FALSE(IpRange::Parse("192.0.2.9-192.0.2.1", &why));
  EXPECT_FALSE(IpRange::Parse("192.0.2.1-2001:db8::1", &why));
}

TEST(IpRangeTest, SubtractSplits) {
  auto pieces = R("192.0.2.0/24").Subtract(R("192.0.2.128/25"));
  ASSERT_EQ(pieces.size(), 1u);
  EXPECT_EQ(pieces[0].ToString(), "192.0.2.0/25");
  pieces = R("192.0.2.0/24").Subtract(R("192.0.2.10"));
  ASSERT_EQ(pieces.size(), 2u);
  EXPECT_EQ(pieces[0].ToString(), "192.0.2.0-192.0.2.9");
  EXPECT_EQ(pieces[1].ToString(), "192.0.2.11-192.0.2.255");
  EXPECT_TRUE(R("192.0.2.0/24").Subtract(R("0.0.0.0/0")).empty());
  EXPECT_EQ(R("192.0.2.0/24").Subtract(R("2001:db8::/32")).size(), 1u);
}

TEST(TrafficSelectorTest, IntersectNarrowsProtocolAndPorts) {
  TrafficSelector any{R("0.0.0.0/0"), 0, {}};
  TrafficSelector nfs{R("198.51.100.7"), 6, {2049, 2049}};
  auto i = any.Intersect(nfs);
  ASSERT_TRUE(i);
  EXPECT_EQ(*i, nfs);
  TrafficSelector udp{R("198.51.100.0/24"), 17, {}};
  EXPECT_FALSE(nfs.Intersect(udp));
  EXPECT_TRUE(any.Contains(nfs));
  EXPECT_FALSE(nfs.Contains(any));
}

TEST(IdentityTest, ParseAndPrint) {
  std::string why;
  for (const char* text : {"ipv4:192.0.2.1", "ipv6:2001:db8::1",
                           "fqdn:host.example.com", "email:a@example.com",
                           "keyid:0a0b0c", "null"}) {
    auto id = ParseSimpleIdentity(text, &why);
    ASSERT_TRUE(id) << text << ": " << why;
    EXPECT_EQ(id->ToString(), text);
  }
  EXPECT_FALSE(ParseSimpleIdentity("ipv4:2001:db8::1", &why));
  EXPECT_FALSE(ParseSimpleIdentity("keyid:abc", &why));
  EXPECT_FALSE(ParseSimpleIdentity("host.example.com", &why));
  EXPECT_NE(why.find("TYPE:VALUE"), std::string::npos);
  EXPECT_EQ(Identity::Null().data.size(), 0u);
  EXPECT_EQ(Identity::Address(*IpAddress::Parse("192.0.2.1")).type,
            IdType::kIpv4Addr);
}

TEST(IdMatcherTest, WildcardsAndSubnets) {
  IdMatcher dom{IdMatcher::Kind::kDomainSuffix, {}, "example.com", {}};
  EXPECT_TRUE(dom.Matches(Identity::Fqdn("a.example.com")));
  EXPECT_TRUE(dom.Matches(Identity::Fqdn("B.A.EXAMPLE.COM")));
  EXPECT_FALSE(dom.Matches(Identity::Fqdn("example.com")));
  EXPECT_FALSE(dom.Matches(Identity::Fqdn("badexample.com")));
  EXPECT_FALSE(dom.Matches(Identity::Rfc822("a@example.com")));

  IdMatcher mail{IdMatcher::Kind::kEmailDomain, {}, "example.com", {}};
  EXPECT_TRUE(mail.Matches(Identity::Rfc822("alice@example.com")));
  EXPECT_FALSE(mail.Matches(Identity::Rfc822("alice@sub.example.com")));
  EXPECT_FALSE(mail.Matches(Identity::Fqdn("example.com")));

  IdMatcher net{IdMatcher::Kind::kSubnet, {}, {}, R("198.51.100.0/24")};
  EXPECT_TRUE(net.Matches(Identity::Address(*IpAddress::Parse("198.51.100.9"))));
  EXPECT_FALSE(net.Matches(Identity::Address(*IpAddress::Parse("192.0.2.9"))));
  EXPECT_FALSE(net.Matches(Identity::Fqdn("198.51.100.9")));

  IdMatcher any;
  EXPECT_TRUE(any.Matches(Identity::Null()));
  IdMatcher exact{IdMatcher::Kind::kExact, Identity::Fqdn("x.example"), {}, {}};
  EXPECT_TRUE(exact.Matches(Identity::Fqdn("x.example")));
  EXPECT_FALSE(exact.Matches(Identity::Fqdn("y.example")));
}

}  // namespace
}  // namespace ike::policy
