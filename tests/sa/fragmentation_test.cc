// IKE fragmentation (RFC 7383): announcement, fragmented IKE_AUTH and
// later exchanges, reassembly under loss, duplication and reordering, the
// bounds and rules of section 2.6 on malformed or surplus fragments, and
// the fall-back to smaller fragments of section 2.5.2.
#include <gtest/gtest.h>

#include "daemon/credential_files.h"
#include "ike/sa/fragments.h"
#include "ike/wire/message.h"
#include "tests/sa/established.h"
#include "tests/sa/expect.h"
#include "tests/sa/fixtures.h"
#include "tests/sa/sim.h"

namespace ike::sa::testing {
namespace {

using internal::Reassembly;
using internal::ReassemblyLimits;

bool IsFragment(const std::vector<uint8_t>& bytes) {
  auto where = wire::LocateSk(bytes);
  return where.ok() && where->type == wire::PayloadType::kSkf;
}

EngineSettings FragmentAt(size_t size) {
  EngineSettings s;
  s.fragment_size = size;
  return s;
}

size_t CountFragments(const Node& n, size_t* largest) {
  size_t c = 0;
  for (const auto& s : n.sent)
    if (IsFragment(s.bytes)) {
      ++c;
      *largest = std::max(*largest, s.bytes.size());
    }
  return c;
}

bool Announces(const std::vector<uint8_t>& init) {
  auto msg = wire::DecodeMessage(init);
  if (!msg.ok()) return false;
  for (const auto& p : msg->payloads)
    if (auto* n = std::get_if<wire::NotifyPayload>(&p.body))
      if (n->type == wire::NotifyType::kIkev2FragmentationSupported)
        return true;
  return false;
}

// A PSK pair whose nodes fragment messages above `a_size` and `b_size`
// octets (0: no fragmentation, not announced).
TwoPeers FragmentingPair(uint64_t seed, size_t a_size, size_t b_size) {
  auto p = MakePskPair();
  return TwoPeers(seed, {p.a, {}, FragmentAt(a_size)}, {p.b, {}, FragmentAt(b_size)});
}

TEST(FragmentationTest, IkeAuthAndLaterExchangesAreFragmented) {
  TwoPeers peers = FragmentingPair(200, 160, 160);
  auto& [sim, a, b] = peers;
  sim.Feed(a, Initiate("a-b"));
  sim.RunFor(Duration(2000));
  ExpectEstablished(a, b);
  EXPECT_TRUE(Announces(a.sent[0].bytes));
  EXPECT_TRUE(Announces(b.sent[0].bytes));
  EXPECT_FALSE(IsFragment(a.sent[0].bytes));  // IKE_SA_INIT never
  size_t largest = 0;
  EXPECT_GE(CountFragments(a, &largest), 2u);  // IKE_AUTH request
  EXPECT_GE(CountFragments(b, &largest), 2u);  // IKE_AUTH response
  EXPECT_LE(largest, 160u);
  // A CHILD_SA rekey and an IKE SA rekey over fragments.
  size_t before = CountFragments(a, &largest) + CountFragments(b, &largest);
  auto v = a.manager->List();
  sim.Feed(a, RekeyRequest{0, v[0].children[0].handle});
  sim.RunFor(Duration(3000));
  sim.Feed(b, RekeyRequest{b.manager->List()[0].handle, 0});
  sim.RunFor(Duration(60000));
  EXPECT_GT(CountFragments(a, &largest) + CountFragments(b, &largest), before);
  EXPECT_LE(largest, 160u);
  EXPECT_EQ(a.manager->ike_sa_count(), 1u);
  EXPECT_EQ(b.manager->ike_sa_count(), 1u);
  EXPECT_EQ(a.manager->child_sa_count(), 1u);
  EXPECT_EQ(CheckPairConsistent(a, b), "");
  EXPECT_EQ(a.errors + b.errors, 0u);
  ExpectContinuous(a);
  ExpectContinuous(b);
}

TEST(FragmentationTest, NotUsedWithAPeerThatDidNotAnnounceIt) {
  TwoPeers peers = FragmentingPair(201, 160, 0);
  auto& [sim, a, b] = peers;
  sim.Feed(a, Initiate("a-b"));
  sim.RunFor(Duration(2000));
  ExpectEstablished(a, b);
  EXPECT_FALSE(Announces(b.sent[0].bytes));
  size_t largest = 0;
  EXPECT_EQ(CountFragments(a, &largest) + CountFragments(b, &largest), 0u);
  EXPECT_GT(a.sent[1].bytes.size(), 160u);  // sent whole
}

TEST(FragmentationTest, LossDuplicationAndReorderingOfFragments) {
  size_t up = 0;
  for (uint64_t seed = 210; seed < 230; ++seed) {
    SCOPED_TRACE(seed);
    TwoPeers peers = FragmentingPair(seed, 120, 120);
    auto& [sim, a, b] = peers;
    sim.faults.loss = 0.1;
    sim.faults.duplicate = 0.3;
    sim.faults.min_delay = Duration(1);
    sim.faults.max_delay = Duration(200);
    sim.Feed(a, Initiate("a-b"));
    sim.RunFor(Duration(60000));
    sim.faults = {};
    sim.RunFor(Duration(120000));
    if (a.manager->ike_sa_count() == 0) {
      EXPECT_TRUE(a.sad.empty());
      continue;
    }
    ++up;
    EXPECT_EQ(a.manager->child_sa_count(), 1u);
    EXPECT_EQ(b.manager->child_sa_count(), 1u);
    EXPECT_EQ(CheckPairConsistent(a, b), "");
    EXPECT_EQ(a.errors + b.errors, 0u);
    size_t largest = 0;
    EXPECT_GE(CountFragments(a, &largest), 2u);
  }
  EXPECT_GE(up, 18u);
}

// Fragments whose numbers were altered in flight fail to decode (number 0
// or above the total) or to authenticate (the total is covered by the
// ICV): they are dropped, and the retransmission completes the exchange.
TEST(FragmentationTest, MalformedFragmentNumbersAreDropped) {
  for (int kind = 0; kind < 4; ++kind) {
    SCOPED_TRACE(kind);
    TwoPeers peers = FragmentingPair(240 + kind, 120, 120);
    auto& [sim, a, b] = peers;
    int tampered = 0;
    sim.tamper = [&](Datagram& d) {
      if (d.from != "a" || !IsFragment(d.event.bytes) || tampered >= 3) return;
      auto where = wire::LocateSk(d.event.bytes);
      size_t at = where->body_offset - 4;  // number (2 octets), total (2)
      auto& m = d.event.bytes;
      switch (kind) {
        case 0: m[at] = 0, m[at + 1] = 0; break;           // number 0
        case 1: m[at] = 0xff, m[at + 1] = 0xff; break;     // above total
        case 2: m[at + 2] = 0x7f, m[at + 3] = 0xff; break; // huge total
        case 3: m[at + 3] ^= 1; break;                     // other total
      }
      ++tampered;
    };
    sim.Feed(a, Initiate("a-b"));
    sim.RunFor(Duration(30000));
    EXPECT_EQ(tampered, 3);
    ExpectEstablished(a, b);
    EXPECT_TRUE(b.Logged(FailureReason::kInvalidSyntax));
  }
}

// ------------------------------------------------- smaller fragments (2.5.2)

// Both sides sign with the P-256 certificate of chain.pem and send the
// whole chain (end entity and CA, about 800 octets of DER), so each
// IKE_AUTH message is well above 548 octets; each trusts ca.crt.
// `raw_key_initiator`: "a" signs with an Ed25519 raw key instead (a small
// request, a large response).
struct CertPair {
  policy::PolicySnapshotPtr a, b;
  CredentialStore ca, cb;
};
CertPair MakeCertPair(bool raw_key_initiator = false) {
  const std::string dir = "tests/fixtures/crypto/keys/";
  auto key = btnsd::daemon::LoadPrivateKeyFile(dir + "p256.pem");
  auto chain = btnsd::daemon::LoadCertificateChainFile(dir + "chain.pem");
  auto anchor = btnsd::daemon::LoadCertificateChainFile(dir + "ca.crt");
  EXPECT_TRUE(key.ok() && chain.ok() && anchor.ok());
  EXPECT_EQ(chain->size(), 2u);
  policy::Identity dn = policy::Identity::DerDn((*chain)[0].subject_der(),
                                                (*chain)[0].subject());
  auto key_a = MakeEd25519("pmtu a");
  auto by_ca = [&](const std::string& name, const std::string& address) {
    policy::PadEntry e;
    e.name = name;
    e.peer_id.kind = policy::IdMatcher::Kind::kExact;
    e.peer_id.exact = dn;
    e.auth = policy::PeerAuthMethod::kCa;
    e.ca_files = {"ca.crt"};
    e.remote_ts = {HostTs(address)};
    e.local_identity = "me";
    return e;
  };
  PolicyBuilder a, b;
  CertPair out;
  if (raw_key_initiator) {
    a.Identity("me", policy::Identity::Fqdn("a.example"),
               policy::CredentialKind::kRawKey);
    policy::PadEntry pinned;
    pinned.name = "a";
    pinned.peer_id = MatchFqdn("a.example");
    pinned.auth = policy::PeerAuthMethod::kPinnedKey;
    pinned.pinned_keys = {FingerprintOf(key_a)};
    pinned.remote_ts = {HostTs(kA)};
    pinned.local_identity = "me";
    b.Pad(pinned);
    out.ca.local["me"].private_key = key_a;
  } else {
    a.Identity("me", dn, policy::CredentialKind::kCertificate);
    b.Pad(by_ca("a", kA));
    out.ca.local["me"].private_key = *key;
    out.ca.local["me"].certificate_chain = *chain;
  }
  a.Pad(by_ca("b", kB)).Spd(ProtectEntry("a-b", kA, kB, "b"));
  b.Identity("me", dn, policy::CredentialKind::kCertificate)
      .Spd(ProtectEntry("b-a", kB, kA, "a"));
  out.ca.trust_anchors["ca.crt"] = *anchor;
  out.cb.local["me"].private_key = *key;
  out.cb.local["me"].certificate_chain = *chain;
  out.cb.trust_anchors["ca.crt"] = *anchor;
  out.a = a.Build();
  out.b = b.Build();
  return out;
}

// An IPv4 path whose MTU is 576: IKE datagrams above 548 octets (576 less
// the IP and UDP headers) never arrive.
constexpr size_t kSmallPath = 548;

size_t Largest(const std::vector<SendDatagram>& sent, size_t from = 0) {
  size_t largest = 0;
  for (size_t i = from; i < sent.size(); ++i)
    largest = std::max(largest, sent[i].bytes.size());
  return largest;
}

// A certificate pair (MakeCertPair) as simulated nodes; `b_settings` for b.
TwoPeers CertPeers(uint64_t seed, bool raw_key_initiator = false,
                   EngineSettings b_settings = {}) {
  auto p = MakeCertPair(raw_key_initiator);
  return TwoPeers(seed, {p.a, p.ca}, {p.b, p.cb, b_settings});
}

// A path that drops every datagram longer than `size` octets.
std::function<bool(const Datagram&)> DropLargerThan(size_t size) {
  return [size](const Datagram& d) { return d.event.bytes.size() > size; };
}

// The initiator's certificate-laden IKE_AUTH request (about 1100 octets,
// under the 1280 fragment size, so sent whole) goes unanswered twice, then
// leaves as fragments that fit 576; the responder answers that fragmented
// request in fragments no larger than the request's.
TEST(PmtuFallbackTest, ShrinksUntilTheExchangeGetsThrough) {
  TwoPeers peers = CertPeers(260);
  auto& [sim, a, b] = peers;
  sim.drop_if = DropLargerThan(kSmallPath);
  sim.Feed(a, Initiate("a-b"));
  sim.RunFor(Duration(10000));
  ExpectEstablished(a, b);
  EXPECT_EQ(a.ike_up[0].peer.auth, PeerAuthKind::kCertificate);
  EXPECT_EQ(b.ike_up[0].peer.auth, PeerAuthKind::kCertificate);
  // IKE_SA_INIT (small) + two whole IKE_AUTH requests above the limit,
  // then fragments that fit.
  ASSERT_GE(a.sent.size(), 4u);
  EXPECT_LE(a.sent[0].bytes.size(), kSmallPath);
  EXPECT_GT(a.sent[1].bytes.size(), kSmallPath);
  EXPECT_FALSE(IsFragment(a.sent[1].bytes));
  EXPECT_EQ(a.sent[2].bytes, a.sent[1].bytes);  // the plain retransmission
  EXPECT_TRUE(IsFragment(a.sent[3].bytes));
  EXPECT_LE(Largest(a.sent, 3), kSmallPath);
  EXPECT_LE(Largest(b.sent), kSmallPath);  // never a lost response
  EXPECT_EQ(sim.dropped, 2u);
  bool logged = false;
  for (const auto& l : a.logs)
    logged = logged || l.text.find("RFC 7383 2.5.2") != std::string::npos;
  EXPECT_TRUE(logged);
  // The smaller size holds for later exchanges of the IKE SA.
  ASSERT_EQ(a.manager->ike_sa_count(), 1u);
  size_t before = a.sent.size();
  sim.Feed(a, RekeyRequest{a.manager->List()[0].handle, 0});
  sim.RunFor(Duration(5000));
  EXPECT_EQ(a.manager->ike_sa_count(), 1u);
  EXPECT_LE(Largest(a.sent, before), kSmallPath);
  EXPECT_EQ(a.errors + b.errors, 0u);
}

// The request is small; the responder's answer is not. The initiator's
// retransmissions tell the responder its answer does not arrive: on the
// second it re-seals the answer in smaller fragments.
TEST(PmtuFallbackTest, ResponderShrinksItsCachedAnswer) {
  TwoPeers peers = CertPeers(261, /*raw_key_initiator=*/true);
  auto& [sim, a, b] = peers;
  sim.drop_if = DropLargerThan(kSmallPath);
  sim.Feed(a, Initiate("a-b"));
  sim.RunFor(Duration(10000));
  ExpectEstablished(a, b);
  EXPECT_LE(Largest(a.sent), kSmallPath);  // the request always fit
  ASSERT_GE(b.sent.size(), 4u);
  EXPECT_GT(b.sent[1].bytes.size(), kSmallPath);  // answer, whole
  EXPECT_EQ(b.sent[2].bytes, b.sent[1].bytes);    // again, as cached
  EXPECT_TRUE(IsFragment(b.sent[3].bytes));       // then in fragments
  EXPECT_LE(Largest(b.sent, 3), kSmallPath);
  EXPECT_EQ(a.errors + b.errors, 0u);
}

// Nothing of IKE_AUTH gets through, whatever its size: the initiator goes
// down to the 576-octet size, stops after its retransmission limit and
// leaves nothing behind; the responder's half-open SA expires.
TEST(PmtuFallbackTest, GivesUpCleanlyWhenNothingGetsThrough) {
  TwoPeers peers = CertPeers(262);
  auto& [sim, a, b] = peers;
  sim.drop_if = [](const Datagram& d) {
    auto h = wire::DecodeHeader(d.event.bytes);
    return h.ok() && h->exchange == wire::ExchangeType::kIkeAuth;
  };
  sim.Feed(a, Initiate("a-b"));
  sim.RunFor(Duration(180000));
  EXPECT_TRUE(a.Logged(FailureReason::kRetransmitTimeout));
  ASSERT_EQ(a.ike_down.size(), 1u);
  EXPECT_EQ(a.ike_down[0].reason, FailureReason::kRetransmitTimeout);
  EXPECT_TRUE(b.Logged(FailureReason::kHalfOpenTimeout));
  EXPECT_TRUE(a.ike_up.empty());
  EXPECT_TRUE(b.ike_up.empty());
  // 1 + retransmit_tries sends of IKE_AUTH: two whole, then fragments.
  EngineSettings defaults;
  size_t whole = 0, fragments = 0;
  for (size_t i = 1; i < a.sent.size(); ++i)
    (IsFragment(a.sent[i].bytes) ? fragments : whole) += 1;
  EXPECT_EQ(whole, 2u);
  EXPECT_GE(fragments, 2 * (defaults.retransmit_tries - 1));
  EXPECT_LE(Largest(a.sent, 3), kSmallPath);
  ExpectClean(a);
  ExpectClean(b);
}

// Without the peer's IKEV2_FRAGMENTATION_SUPPORTED nothing is re-sealed:
// the request goes out whole every time, and the negotiation times out.
TEST(PmtuFallbackTest, NeverFragmentsForAPeerWithoutSupport) {
  TwoPeers peers = CertPeers(263, /*raw_key_initiator=*/false, FragmentAt(0));
  auto& [sim, a, b] = peers;
  sim.drop_if = DropLargerThan(kSmallPath);
  sim.Feed(a, Initiate("a-b"));
  sim.RunFor(Duration(180000));
  EXPECT_TRUE(a.ike_up.empty());
  for (const auto& s : a.sent) EXPECT_FALSE(IsFragment(s.bytes));
  ExpectClean(a);
  ExpectClean(b);
}

// ------------------------------------------------- Reassembly directly

struct Keys {
  crypto::TransformSet set;
  std::vector<uint8_t> encryption = std::vector<uint8_t>(36, 0x42);
  internal::IkeDirectionKeys view() const {
    return {crypto::View(encryption), {}};
  }
};

std::vector<uint8_t> Fragment(const Keys& k, uint32_t id, uint16_t number,
                              uint16_t total, const std::vector<uint8_t>& plain,
                              crypto::RandomSource& random) {
  wire::Header h;
  h.initiator_spi = 1;
  h.responder_spi = 2;
  h.exchange = wire::ExchangeType::kInformational;
  h.message_id = id;
  auto f = internal::SealFragment(k.set, k.view(), h,
                                  uint8_t(wire::PayloadType::kNotify), number,
                                  total, crypto::View(plain), random);
  EXPECT_TRUE(f.ok());
  return *f;
}

// A notify payload (INITIAL_CONTACT) split in two halves.
std::vector<uint8_t> NotifyChain() {
  auto chain = wire::EncodePayloadChain(
      {wire::MakePayload(wire::NotifyPayload{
          0, wire::NotifyType::kInitialContact, {}, std::vector<uint8_t>(40, 7)})});
  EXPECT_TRUE(chain.ok());
  return chain->bytes;
}

Reassembly::Step Feed(Reassembly& r, const Keys& k,
                      const std::vector<uint8_t>& datagram,
                      ReassemblyLimits limits = {}) {
  auto msg = wire::DecodeMessage(datagram);
  EXPECT_TRUE(msg.ok());
  const auto* skf = wire::FindFirst<wire::SkfPayload>(msg->payloads);
  EXPECT_NE(skf, nullptr);
  return r.Add(k.set, k.view(), datagram, msg->header.message_id, *skf,
               limits);
}

TEST(ReassemblyTest, RulesOfSection26) {
  crypto::DeterministicRandomSource random(crypto::View(Text("frag")));
  Keys k;
  auto all = NotifyChain();
  std::vector<uint8_t> first(all.begin(), all.begin() + 20),
      second(all.begin() + 20, all.end());
  using O = Reassembly::Outcome;

  // Out of order, with a duplicate: completes once, with the payload.
  Reassembly r;
  EXPECT_EQ(Feed(r, k, Fragment(k, 5, 2, 2, second, random)).outcome,
            O::kIncomplete);
  EXPECT_EQ(Feed(r, k, Fragment(k, 5, 2, 2, second, random)).outcome,
            O::kIncomplete);
  auto done = Feed(r, k, Fragment(k, 5, 1, 2, first, random));
  ASSERT_EQ(done.outcome, O::kComplete);
  ASSERT_EQ(done.payloads.size(), 1u);
  auto* n = std::get_if<wire::NotifyPayload>(&done.payloads[0].body);
  ASSERT_NE(n, nullptr);
  EXPECT_EQ(n->type, wire::NotifyType::kInitialContact);
  EXPECT_FALSE(r.active());

  // A larger total restarts; a smaller one is dropped.
  Reassembly r2;
  std::vector<uint8_t> third(all.begin() + 30, all.end());
  second.assign(all.begin() + 20, all.begin() + 30);
  EXPECT_EQ(Feed(r2, k, Fragment(k, 6, 1, 2, first, random)).outcome,
            O::kIncomplete);
  EXPECT_EQ(Feed(r2, k, Fragment(k, 6, 2, 3, second, random)).outcome,
            O::kIncomplete);  // restarted with 3: fragment 1 forgotten
  EXPECT_EQ(Feed(r2, k, Fragment(k, 6, 1, 2, first, random)).outcome,
            O::kDropped);     // total 2 < 3
  EXPECT_EQ(Feed(r2, k, Fragment(k, 6, 3, 3, third, random)).outcome,
            O::kIncomplete);
  EXPECT_EQ(Feed(r2, k, Fragment(k, 6, 1, 3, first, random)).outcome,
            O::kComplete);

  // Forged fragments (other keys) are dropped without being stored.
  Keys other;
  other.encryption[0] ^= 1;
  Reassembly r3;
  EXPECT_EQ(Feed(r3, k, Fragment(other, 7, 1, 2, first, random)).outcome,
            O::kDropped);
  EXPECT_FALSE(r3.active());

  // Too many fragments, too many octets.
  ReassemblyLimits tight;
  tight.max_fragments = 4;
  tight.max_bytes = 30;
  Reassembly r4;
  EXPECT_EQ(Feed(r4, k, Fragment(k, 8, 1, 5, first, random), tight).outcome,
            O::kDropped);
  EXPECT_EQ(Feed(r4, k, Fragment(k, 8, 1, 2, first, random), tight).outcome,
            O::kIncomplete);
  auto over = Feed(r4, k, Fragment(k, 8, 2, 2, all, random), tight);
  EXPECT_EQ(over.outcome, O::kDropped);
  EXPECT_FALSE(r4.active());

  // A fragment of a newer message replaces the one being collected.
  Reassembly r5;
  EXPECT_EQ(Feed(r5, k, Fragment(k, 9, 1, 2, first, random)).outcome,
            O::kIncomplete);
  EXPECT_EQ(Feed(r5, k, Fragment(k, 10, 2, 2, second, random)).outcome,
            O::kIncomplete);
  EXPECT_EQ(r5.message_id(), 10u);
}

}  // namespace
}  // namespace ike::sa::testing
