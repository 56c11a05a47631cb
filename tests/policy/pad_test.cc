#include "ike/policy/pad.h"

#include <gtest/gtest.h>

namespace ike::policy {
namespace {

TrafficSelector Ts(const char* range, uint8_t proto = 0,
                   PortRange ports = {}) {
  return {*IpRange::Parse(range), proto, ports};
}

Sha256 Key(uint8_t fill) {
  Sha256 k;
  k.fill(fill);
  return k;
}

// The RFC 5386 example PAD for a security gateway: two authenticated
// peers, then a wildcard BTNS entry.
Pad ExamplePad() {
  PadEntry b;
  b.name = "sg-b";
  b.peer_id = {IdMatcher::Kind::kExact, Identity::Fqdn("sg-b.example.net"), {}, {}};
  b.auth = PeerAuthMethod::kCa;
  b.remote_ts = {Ts("198.51.100.0/24")};
  PadEntry q;
  q.name = "host-q";
  q.peer_id = {IdMatcher::Kind::kDomainSuffix, {}, "q.example.org", {}};
  q.auth = PeerAuthMethod::kPsk;
  q.remote_ts = {Ts("192.0.2.10")};
  PadEntry pinned;
  pinned.name = "pinned";
  pinned.peer_id = {IdMatcher::Kind::kSubnet, {}, {}, *IpRange::Parse("192.0.2.64/26")};
  pinned.auth = PeerAuthMethod::kPinnedKey;
  pinned.pinned_keys = {Key(0x11)};
  pinned.remote_ts = {Ts("192.0.2.64/26")};
  PadEntry known_btns;
  known_btns.name = "btns-known";
  known_btns.auth = PeerAuthMethod::kBtns;
  known_btns.btns.keys = {Key(0x22)};
  known_btns.remote_ts = {Ts("0.0.0.0/0")};
  PadEntry any;
  any.name = "btns-any";
  any.auth = PeerAuthMethod::kBtns;
  any.remote_ts = {Ts("0.0.0.0/0")};
  return Pad({b, q, pinned, known_btns, any});
}

TEST(PadTest, AuthenticatedPeerMatchesItsEntry) {
  Pad pad = ExamplePad();
  auto r = pad.MatchPeer({Identity::Fqdn("sg-b.example.net"),
                          PresentedAuth::kCertificate, Key(1)});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.match->entry->name, "sg-b");
  EXPECT_TRUE(r.match->authenticated);
  EXPECT_EQ(r.match->recorded_identity, "fqdn:sg-b.example.net");

  r = pad.MatchPeer({Identity::Fqdn("nfs.q.example.org"),
                     PresentedAuth::kSharedKey, std::nullopt});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.match->entry->name, "host-q");
}

TEST(PadTest, WrongProofForAuthenticatedIdIsRejectedNotBtns) {
  Pad pad = ExamplePad();
  // A rogue claims SG-B's ID but shows only a raw key: the BTNS wildcard
  // would accept the key, yet RFC 5386 forbids the fallback.
  auto r = pad.MatchPeer({Identity::Fqdn("sg-b.example.net"),
                          PresentedAuth::kRawPublicKey, Key(9)});
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.rejection, PadRejection::kAuthMethodMismatch);
  EXPECT_EQ(NotifyFor(r.rejection), ike::wire::NotifyType::kAuthenticationFailed);

  r = pad.MatchPeer({Identity::Fqdn("sg-b.example.net"), PresentedAuth::kNull,
                     std::nullopt});
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.rejection, PadRejection::kNullAuthForAuthenticatedEntry);
}

TEST(PadTest, PinnedKeyMustMatch) {
  Pad pad = ExamplePad();
  Identity id = Identity::Address(*IpAddress::Parse("192.0.2.70"));
  auto good = pad.MatchPeer({id, PresentedAuth::kRawPublicKey, Key(0x11)});
  ASSERT_TRUE(good.ok());
  EXPECT_EQ(good.match->entry->name, "pinned");
  auto bad = pad.MatchPeer({id, PresentedAuth::kRawPublicKey, Key(0x12)});
  EXPECT_FALSE(bad.ok());
  EXPECT_EQ(bad.rejection, PadRejection::kPinnedKeyMismatch);
}

TEST(PadTest, UnknownPeersFallToBtnsByKeyOrNull) {
  Pad pad = ExamplePad();
  auto r = pad.MatchPeer({Identity::Fqdn("c.example.com"),
                          PresentedAuth::kRawPublicKey, Key(0x33)});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.match->entry->name, "btns-any");
  EXPECT_FALSE(r.match->authenticated);
  EXPECT_EQ(r.match->recorded_identity, FingerprintToString(Key(0x33)));

  // A specific BTNS entry (a known key) wins over the wildcard.
  r = pad.MatchPeer({Identity::Null(), PresentedAuth::kRawPublicKey, Key(0x22)});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.match->entry->name, "btns-known");

  r = pad.MatchPeer({Identity::Null(), PresentedAuth::kNull, std::nullopt});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.match->entry->name, "btns-any");
  EXPECT_EQ(r.match->recorded_identity, "null");
}

TEST(PadTest, PskPeerWithUnknownIdHasNoEntry) {
  Pad pad = ExamplePad();
  auto r = pad.MatchPeer({Identity::Fqdn("nobody.example"),
                          PresentedAuth::kSharedKey, std::nullopt});
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.rejection, PadRejection::kNoMatchingEntry);
}

TEST(PadTest, BtnsEntryRespectsAcceptFlags) {
  PadEntry e;
  e.name = "raw-only";
  e.auth = PeerAuthMethod::kBtns;
  e.btns.accept_null = false;
  e.remote_ts = {Ts("0.0.0.0/0")};
  Pad pad({e});
  EXPECT_FALSE(pad.MatchPeer({Identity::Null(), PresentedAuth::kNull, {}}).ok());
  EXPECT_TRUE(pad.MatchPeer({Identity::Null(), PresentedAuth::kRawPublicKey,
                             Key(5)}).ok());
}

TEST(PadTest, ChildSelectorsAreNarrowed) {
  Pad pad = ExamplePad();
  const PadEntry* b = pad.Find("sg-b");
  auto r = pad.AuthorizeChildSelectors(*b, {Ts("198.51.0.0/16")});
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r.narrowed.size(), 1u);
  EXPECT_EQ(r.narrowed[0].ToString(), "198.51.100.0/24");
  r = pad.AuthorizeChildSelectors(*b, {Ts("203.0.113.0/24")});
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(*r.rejection, TsRejection::kOutsideAllowed);
  EXPECT_EQ(NotifyFor(*r.rejection), ike::wire::NotifyType::kTsUnacceptable);
}

TEST(PadTest, BtnsPeerCannotClaimAuthenticatedAddresses) {
  Pad pad = ExamplePad();
  const PadEntry* any = pad.Find("btns-any");
  // Claiming Q's address: refused outright.
  auto r = pad.AuthorizeChildSelectors(*any, {Ts("192.0.2.10")});
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(*r.rejection, TsRejection::kClaimsAuthenticatedAddresses);
  // Claiming a range around it: cut to what nobody else owns.
  r = pad.AuthorizeChildSelectors(*any, {Ts("192.0.2.8-192.0.2.12")});
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r.narrowed.size(), 2u);
  EXPECT_EQ(r.narrowed[0].ToString(), "192.0.2.8/31");
  EXPECT_EQ(r.narrowed[1].ToString(), "192.0.2.11-192.0.2.12");
  // Its own address is fine.
  r = pad.AuthorizeChildSelectors(*any, {Ts("203.0.113.5", 6, {2049, 2049})});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.narrowed[0].ToString(), "203.0.113.5 tcp port 2049");
}

TEST(PadTest, UnauthenticatedMayNotReplaceAuthenticatedChildSas) {
  PeerStanding authed{true, "fqdn:sg-b.example.net"};
  PeerStanding anon{false, "null"};
  PeerStanding key{false, "sha256:00"};
  EXPECT_EQ(MayReplaceChildSa(authed, anon),
            ReplaceDecision::kDeniedUnauthenticatedOverAuthenticated);
  EXPECT_EQ(MayReplaceChildSa(authed, key),
            ReplaceDecision::kDeniedUnauthenticatedOverAuthenticated);
  EXPECT_EQ(MayReplaceChildSa(anon, authed), ReplaceDecision::kAllowed);
  EXPECT_EQ(MayReplaceChildSa(anon, key), ReplaceDecision::kAllowed);
}

TEST(PadTest, FingerprintRoundTrip) {
  auto fp = ParseFingerprint(FingerprintToString(Key(0xab)));
  ASSERT_TRUE(fp);
  EXPECT_EQ(*fp, Key(0xab));
  EXPECT_FALSE(ParseFingerprint("sha256:abcd"));
  EXPECT_FALSE(ParseFingerprint(std::string(64, 'z')));
}

}  // namespace
}  // namespace ike::policy
