// IKE_SA_INIT + IKE_AUTH + first CHILD_SA between SaManagers in the
// simulation: every authentication method in both roles, and the ways a
// handshake must fail.
#include <gtest/gtest.h>

#include <botan/hash.h>

#include "daemon/credential_files.h"
#include "ike/wire/message.h"
#include "tests/sa/expect.h"
#include "tests/sa/fixtures.h"
#include "tests/sa/sim.h"

namespace ike::sa::testing {
namespace {


TEST(HandshakeTest, PskEstablishesIkeAndChildSa) {
  Simulation sim(1);
  auto p = MakePskPair();
  Node& a = sim.AddNode("a", kA, p.a);
  Node& b = sim.AddNode("b", kB, p.b);
  sim.Feed(a, Initiate("a-b"));
  sim.RunFor(Duration(1000));
  ExpectEstablished(a, b);
  EXPECT_EQ(a.ike_up[0].peer.auth, PeerAuthKind::kSharedKey);
  EXPECT_TRUE(a.ike_up[0].peer.authenticated);
  EXPECT_EQ(a.ike_up[0].peer.pad_entry, "b");
  EXPECT_EQ(b.ike_up[0].peer.asserted_id, policy::Identity::Fqdn("a.example"));
  EXPECT_EQ(b.ike_up[0].peer.auth, PeerAuthKind::kSharedKey);
  // Transport mode host to host, narrowed to the two addresses.
  EXPECT_EQ(a.child_up[0].mode, policy::IpsecMode::kTransport);
  ASSERT_EQ(b.child_up[0].remote_ts.size(), 1u);
  EXPECT_EQ(b.child_up[0].remote_ts[0], HostTs(kA));
  // Policies: in and out on each side, bound to the CHILD_SA's reqid.
  ASSERT_EQ(a.spd.size(), 2u);
  EXPECT_EQ(a.spd[0].reqid, a.sad.begin()->second.reqid);
  // AEAD keys (default ESP proposals): key and salt, no integrity key.
  const InstallChildSa& any = a.sad.begin()->second;
  EXPECT_TRUE(any.transform.aead);
  EXPECT_TRUE(any.integrity_key.empty());
  EXPECT_FALSE(any.encryption_key.empty());
  // Two datagrams each way: IKE_SA_INIT and IKE_AUTH.
  EXPECT_EQ(a.sent.size(), 2u);
  EXPECT_EQ(b.sent.size(), 2u);
}

// A kernel ACQUIRE for one flow: the initiator proposes that flow first and
// the SPD entry's range second (RFC 7296 section 2.9); the CHILD_SA must
// cover the whole entry on both sides, not only the packet that triggered it.
TEST(HandshakeTest, AcquireNegotiatesTheWholeSpdEntry) {
  Simulation sim(1);
  auto p = MakePskPair();
  Node& a = sim.AddNode("a", kA, p.a);
  Node& b = sim.AddNode("b", kB, p.b);
  KernelAcquire acquire;
  acquire.packet.local = Ip(kA);
  acquire.packet.remote = Ip(kB);
  acquire.packet.protocol = 17;
  acquire.packet.local_port = 49139;
  acquire.packet.remote_port = 1025;
  sim.Feed(a, acquire);
  sim.RunFor(Duration(1000));
  ExpectEstablished(a, b);
  ASSERT_EQ(a.child_up[0].remote_ts.size(), 1u);
  EXPECT_EQ(a.child_up[0].remote_ts[0], HostTs(kB));
  ASSERT_EQ(b.child_up[0].remote_ts.size(), 1u);
  EXPECT_EQ(b.child_up[0].remote_ts[0], HostTs(kA));
}

// The kernel raises ACQUIRE on the holding policy of every PROTECT entry;
// whether that starts a negotiation is the entry's start action: trap and
// start initiate, none (responder only) keeps the packet held and waits.
policy::PolicySnapshotPtr WithStart(const policy::PolicySnapshotPtr& snapshot,
                                    policy::StartAction start) {
  auto copy = std::make_shared<policy::PolicySnapshot>(*snapshot);
  std::vector<policy::SpdEntry> entries = copy->spd.entries();
  for (auto& entry : entries) entry.protect.start = start;
  copy->spd = policy::Spd(entries);
  return copy;
}

KernelAcquire AcquireToB() {
  KernelAcquire acquire;
  acquire.packet.local = Ip(kA);
  acquire.packet.remote = Ip(kB);
  acquire.packet.protocol = 1;
  return acquire;
}

TEST(HandshakeTest, AcquireInitiatesForTrapAndStartEntries) {
  for (auto start : {policy::StartAction::kTrap, policy::StartAction::kStart}) {
    SCOPED_TRACE(std::string(policy::StartActionName(start)));
    Simulation sim(1);
    auto p = MakePskPair();
    Node& a = sim.AddNode("a", kA, WithStart(p.a, start));
    Node& b = sim.AddNode("b", kB, p.b);
    sim.Feed(a, AcquireToB());
    EXPECT_EQ(a.sent.size(), 1u) << "IKE_SA_INIT goes out at once";
    sim.RunFor(Duration(1000));
    ExpectEstablished(a, b);
  }
}

TEST(HandshakeTest, AcquireForAResponderOnlyEntryDoesNotInitiate) {
  Simulation sim(1);
  auto p = MakePskPair();
  Node& a = sim.AddNode("a", kA, WithStart(p.a, policy::StartAction::kNone));
  Node& b = sim.AddNode("b", kB, p.b);
  sim.Feed(a, AcquireToB());
  sim.Feed(a, AcquireToB());
  sim.RunFor(Duration(1000));
  EXPECT_TRUE(a.sent.empty()) << "start: none never sends IKE_SA_INIT";
  EXPECT_TRUE(a.ike_up.empty());
  EXPECT_TRUE(b.ike_up.empty());
  // The peer may still bring the CHILD_SA up: a answers as responder.
  sim.Feed(b, Initiate("b-a"));
  sim.RunFor(Duration(1000));
  ExpectEstablished(b, a);
}

// An application asked for its socket's flow (BTNS API, per-socket policy):
// that is a request, not a held packet, and initiates even for start: none.
TEST(HandshakeTest, SocketAcquireInitiatesEvenForAResponderOnlyEntry) {
  Simulation sim(1);
  auto p = MakePskPair();
  Node& a = sim.AddNode("a", kA, WithStart(p.a, policy::StartAction::kNone));
  Node& b = sim.AddNode("b", kB, p.b);
  KernelAcquire acquire = AcquireToB();
  acquire.from_socket = true;
  sim.Feed(a, acquire);
  sim.RunFor(Duration(1000));
  ExpectEstablished(a, b);
}

TEST(HandshakeTest, EitherSideCanInitiate) {
  Simulation sim(2);
  auto p = MakePskPair();
  Node& a = sim.AddNode("a", kA, p.a);
  Node& b = sim.AddNode("b", kB, p.b);
  sim.Feed(b, Initiate("b-a"));
  sim.RunFor(Duration(1000));
  ExpectEstablished(b, a);
}

TEST(HandshakeTest, InitSaAnnouncesNatDetectionFragmentationAndHashes) {
  Simulation sim(3);
  auto p = MakePskPair();
  Node& a = sim.AddNode("a", kA, p.a);
  sim.AddNode("b", kB, p.b);
  sim.Feed(a, Initiate("a-b"));
  ASSERT_EQ(a.sent.size(), 1u);
  auto msg = wire::DecodeMessage(a.sent[0].bytes);
  ASSERT_TRUE(msg.ok());
  std::vector<wire::NotifyType> types;
  for (const auto& pl : msg->payloads)
    if (auto* n = std::get_if<wire::NotifyPayload>(&pl.body))
      types.push_back(n->type);
  auto has = [&](wire::NotifyType t) {
    return std::find(types.begin(), types.end(), t) != types.end();
  };
  EXPECT_TRUE(has(wire::NotifyType::kNatDetectionSourceIp));
  EXPECT_TRUE(has(wire::NotifyType::kNatDetectionDestinationIp));
  EXPECT_TRUE(has(wire::NotifyType::kIkev2FragmentationSupported));
  EXPECT_TRUE(has(wire::NotifyType::kSignatureHashAlgorithms));
  EXPECT_NE(wire::FindFirst<wire::SaPayload>(msg->payloads), nullptr);
  EXPECT_NE(wire::FindFirst<wire::KePayload>(msg->payloads), nullptr);
  EXPECT_EQ(msg->header.responder_spi, 0u);
  EXPECT_TRUE(msg->header.IsInitiator());
}

// RFC 7619 NULL authentication between two BTNS PAD entries.
TEST(HandshakeTest, NullAuthBetweenBtnsEntries) {
  PolicyBuilder a, b;
  a.Identity("anon", policy::Identity::Null())
      .Pad(BtnsEntry("any", "10.0.0.0/24", "anon"))
      .Spd(ProtectEntry("a-b", kA, kB, "any", policy::IpsecMode::kTransport,
                        true));
  b.Identity("anon", policy::Identity::Null())
      .Pad(BtnsEntry("any", "10.0.0.0/24", "anon"))
      .Spd(ProtectEntry("b-any", kB, "10.0.0.0/24", "any",
                        policy::IpsecMode::kTransport, true));
  Simulation sim(4);
  Node& na = sim.AddNode("a", kA, a.Build());
  Node& nb = sim.AddNode("b", kB, b.Build());
  sim.Feed(na, Initiate("a-b"));
  sim.RunFor(Duration(1000));
  ExpectEstablished(na, nb);
  for (Node* n : {&na, &nb}) {
    EXPECT_EQ(n->ike_up[0].peer.auth, PeerAuthKind::kNull);
    EXPECT_FALSE(n->ike_up[0].peer.authenticated);
    EXPECT_EQ(n->ike_up[0].peer.recorded_identity, "null");
    EXPECT_EQ(n->ike_up[0].peer.asserted_id.type, wire::IdType::kNull);
  }
}

// RFC 7670 raw Ed25519 keys (CERT encoding 15) and RFC 7427 signatures:
// A pins B's key, B accepts any key through a BTNS entry.
TEST(HandshakeTest, RawPublicKeySignatures) {
  auto key_a = MakeEd25519("key a");
  auto key_b = MakeEd25519("key b");
  PolicyBuilder a, b;
  a.Identity("me", policy::Identity::Fqdn("a.example"),
             policy::CredentialKind::kRawKey);
  policy::PadEntry pinned;
  pinned.name = "b";
  pinned.peer_id = MatchFqdn("b.example");
  pinned.auth = policy::PeerAuthMethod::kPinnedKey;
  pinned.pinned_keys = {FingerprintOf(key_b)};
  pinned.remote_ts = {HostTs(kB)};
  pinned.local_identity = "me";
  a.Pad(pinned).Spd(ProtectEntry("a-b", kA, kB, "b"));
  b.Identity("me", policy::Identity::Fqdn("b.example"),
             policy::CredentialKind::kRawKey)
      .Pad(BtnsEntry("keys", "10.0.0.0/24", "me"))
      .Spd(ProtectEntry("b-any", kB, "10.0.0.0/24", "keys",
                        policy::IpsecMode::kTransport, true));
  CredentialStore ca, cb;
  ca.local["me"].private_key = key_a;
  cb.local["me"].private_key = key_b;
  Simulation sim(5);
  Node& na = sim.AddNode("a", kA, a.Build(), ca);
  Node& nb = sim.AddNode("b", kB, b.Build(), cb);
  sim.Feed(na, Initiate("a-b"));
  sim.RunFor(Duration(1000));
  ExpectEstablished(na, nb);
  EXPECT_EQ(na.ike_up[0].peer.auth, PeerAuthKind::kRawPublicKey);
  EXPECT_TRUE(na.ike_up[0].peer.authenticated);
  EXPECT_EQ(na.ike_up[0].peer.spki_sha256, FingerprintOf(key_b));
  EXPECT_EQ(nb.ike_up[0].peer.auth, PeerAuthKind::kRawPublicKey);
  EXPECT_FALSE(nb.ike_up[0].peer.authenticated);
  EXPECT_EQ(nb.ike_up[0].peer.recorded_identity,
            policy::FingerprintToString(FingerprintOf(key_a)));
}

// X.509: B proves itself with a certificate chained to ca.crt (P-256
// ECDSA), A with a pinned raw key.
TEST(HandshakeTest, CertificateSignatureWithCaValidation) {
  const std::string dir = "tests/fixtures/crypto/keys/";
  auto ee_key = btnsd::daemon::LoadPrivateKeyFile(dir + "p256.pem");
  auto chain = btnsd::daemon::LoadCertificateChainFile(dir + "ee.crt");
  auto ca = btnsd::daemon::LoadCertificateChainFile(dir + "ca.crt");
  ASSERT_TRUE(ee_key.ok() && chain.ok() && ca.ok());
  auto key_a = MakeEd25519("key a");
  policy::Identity b_id =
      policy::Identity::DerDn((*chain)[0].subject_der(), (*chain)[0].subject());

  PolicyBuilder a, b;
  a.Identity("me", policy::Identity::Fqdn("a.example"),
             policy::CredentialKind::kRawKey);
  policy::PadEntry by_ca;
  by_ca.name = "b";
  by_ca.peer_id.kind = policy::IdMatcher::Kind::kExact;
  by_ca.peer_id.exact = b_id;
  by_ca.auth = policy::PeerAuthMethod::kCa;
  by_ca.ca_files = {"ca.crt"};
  by_ca.remote_ts = {HostTs(kB)};
  by_ca.local_identity = "me";
  a.Pad(by_ca).Spd(ProtectEntry("a-b", kA, kB, "b"));
  b.Identity("me", b_id, policy::CredentialKind::kCertificate);
  policy::PadEntry pinned_a;
  pinned_a.name = "a";
  pinned_a.peer_id = MatchFqdn("a.example");
  pinned_a.auth = policy::PeerAuthMethod::kPinnedKey;
  pinned_a.pinned_keys = {FingerprintOf(key_a)};
  pinned_a.remote_ts = {HostTs(kA)};
  pinned_a.local_identity = "me";
  b.Pad(pinned_a).Spd(ProtectEntry("b-a", kB, kA, "a"));
  CredentialStore ca_store, cb;
  ca_store.local["me"].private_key = key_a;
  ca_store.trust_anchors["ca.crt"] = *ca;
  cb.local["me"].private_key = *ee_key;
  cb.local["me"].certificate_chain = *chain;
  Simulation sim(6);
  Node& na = sim.AddNode("a", kA, a.Build(), ca_store);
  Node& nb = sim.AddNode("b", kB, b.Build(), cb);
  sim.Feed(na, Initiate("a-b"));
  sim.RunFor(Duration(1000));
  ExpectEstablished(na, nb);
  EXPECT_EQ(na.ike_up[0].peer.auth, PeerAuthKind::kCertificate);
  EXPECT_TRUE(na.ike_up[0].peer.authenticated);
  EXPECT_EQ(nb.ike_up[0].peer.auth, PeerAuthKind::kRawPublicKey);

  // The same certificate without its trust anchor is refused.
  Simulation sim2(7);
  CredentialStore no_anchor = ca_store;
  no_anchor.trust_anchors["ca.crt"] = *chain;  // the EE is no anchor
  Node& na2 = sim2.AddNode("a", kA, a.Build(), no_anchor);
  Node& nb2 = sim2.AddNode("b", kB, b.Build(), cb);
  sim2.Feed(na2, Initiate("a-b"));
  sim2.RunFor(Duration(60000));
  EXPECT_TRUE(na2.Logged(FailureReason::kAuthenticationFailed));
  ExpectClean(na2);
  ExpectClean(nb2);
}

// RFC 7296 3.7: a side with CA-validated PAD entries asks for certificates
// with CERTREQ (SHA-1 of each trust anchor's SubjectPublicKeyInfo): the
// responder in IKE_SA_INIT, the initiator in IKE_AUTH. The other side
// answers with its certificate. No CERTREQ without CA entries.
TEST(HandshakeTest, CertReqNamesTheTrustAnchors) {
  const std::string dir = "tests/fixtures/crypto/keys/";
  auto ee_key = btnsd::daemon::LoadPrivateKeyFile(dir + "p256.pem");
  auto chain = btnsd::daemon::LoadCertificateChainFile(dir + "ee.crt");
  auto ca = btnsd::daemon::LoadCertificateChainFile(dir + "ca.crt");
  ASSERT_TRUE(ee_key.ok() && chain.ok() && ca.ok());
  auto sha1 = Botan::HashFunction::create_or_throw("SHA-1");
  const auto& spki = (*ca)[0].public_key().spki_der();
  sha1->update(spki.data(), spki.size());
  std::vector<uint8_t> ca_hash = sha1->final_stdvec();
  std::string ca_hex;
  for (uint8_t x : ca_hash) {
    const char* digits = "0123456789abcdef";
    ca_hex += digits[x >> 4];
    ca_hex += digits[x & 15];
  }

  // "c" trusts the CA for "d"; "d" has the CA-issued certificate and a
  // pinned entry for c's raw key.
  auto key_c = MakeEd25519("key c");
  policy::Identity d_id =
      policy::Identity::DerDn((*chain)[0].subject_der(), (*chain)[0].subject());
  PolicyBuilder c, d;
  c.Identity("me", policy::Identity::Fqdn("c.example"),
             policy::CredentialKind::kRawKey);
  policy::PadEntry by_ca;
  by_ca.name = "d";
  by_ca.peer_id.kind = policy::IdMatcher::Kind::kExact;
  by_ca.peer_id.exact = d_id;
  by_ca.auth = policy::PeerAuthMethod::kCa;
  by_ca.ca_files = {"ca.crt"};
  by_ca.remote_ts = {HostTs(kB)};
  by_ca.local_identity = "me";
  c.Pad(by_ca).Spd(ProtectEntry("c-d", kA, kB, "d"));
  d.Identity("me", d_id, policy::CredentialKind::kCertificate);
  policy::PadEntry pinned_c;
  pinned_c.name = "c";
  pinned_c.peer_id = MatchFqdn("c.example");
  pinned_c.auth = policy::PeerAuthMethod::kPinnedKey;
  pinned_c.pinned_keys = {FingerprintOf(key_c)};
  pinned_c.remote_ts = {HostTs(kA)};
  pinned_c.local_identity = "me";
  d.Pad(pinned_c).Spd(ProtectEntry("d-c", kB, kA, "c"));
  CredentialStore cc, cd;
  cc.local["me"].private_key = key_c;
  cc.trust_anchors["ca.crt"] = *ca;
  cd.local["me"].private_key = *ee_key;
  cd.local["me"].certificate_chain = *chain;
  auto logged = [&](const Node& n) {
    for (const auto& l : n.logs)
      if (l.text.find("CERTREQ") != std::string::npos &&
          l.text.find("[" + ca_hex + "]") != std::string::npos)
        return true;
    return false;
  };

  for (bool c_initiates : {true, false}) {
    SCOPED_TRACE(c_initiates ? "c initiates" : "d initiates");
    Simulation sim(8);
    Node& nc = sim.AddNode("c", kA, c.Build(), cc);
    Node& nd = sim.AddNode("d", kB, d.Build(), cd);
    sim.Feed(c_initiates ? nc : nd, Initiate(c_initiates ? "c-d" : "d-c"));
    sim.RunFor(Duration(1000));
    if (c_initiates) {
      ExpectEstablished(nc, nd);
    } else {
      ExpectEstablished(nd, nc);
      // c's IKE_SA_INIT response carries the CERTREQ in clear.
      ASSERT_GE(nc.sent.size(), 1u);
      auto msg = wire::DecodeMessage(nc.sent[0].bytes);
      ASSERT_TRUE(msg.ok());
      const auto* req = wire::FindFirst<wire::CertReqPayload>(msg->payloads);
      ASSERT_NE(req, nullptr);
      EXPECT_EQ(req->encoding, wire::CertEncoding::kX509Signature);
      EXPECT_EQ(req->authority, ca_hash);
      // d's own IKE_SA_INIT request asks for nothing.
      auto first = wire::DecodeMessage(nd.sent[0].bytes);
      ASSERT_TRUE(first.ok());
      EXPECT_EQ(wire::FindFirst<wire::CertReqPayload>(first->payloads),
                nullptr);
    }
    // d saw the CERTREQ (in IKE_AUTH or IKE_SA_INIT) and sent its
    // certificate, which c validated against the CA.
    EXPECT_TRUE(logged(nd));
    EXPECT_FALSE(logged(nc));
    EXPECT_EQ(nc.ike_up[0].peer.auth, PeerAuthKind::kCertificate);
  }

  // Without CA entries nobody asks.
  Simulation sim(9);
  auto p = MakePskPair();
  Node& a = sim.AddNode("a", kA, p.a);
  Node& b = sim.AddNode("b", kB, p.b);
  sim.Feed(a, Initiate("a-b"));
  sim.RunFor(Duration(1000));
  ExpectEstablished(a, b);
  auto resp = wire::DecodeMessage(b.sent[0].bytes);
  ASSERT_TRUE(resp.ok());
  EXPECT_EQ(wire::FindFirst<wire::CertReqPayload>(resp->payloads), nullptr);
  for (const Node* n : {&a, &b})
    for (const auto& l : n->logs)
      EXPECT_EQ(l.text.find("CERTREQ"), std::string::npos) << l.text;
}

TEST(HandshakeTest, InvalidKePayloadRetriesWithRequestedGroup) {
  auto p = MakePskPair();
  // A offers P-256 first and X25519 second; B accepts only X25519.
  auto a_snap = std::make_shared<policy::PolicySnapshot>(*p.a);
  policy::ProposalSet ike = policy::DefaultIkeProposals();
  ike.name = "ecp-first";
  ike.proposals.resize(1);
  ike.proposals[0].ke = {wire::KeGroup::kEcp256, wire::KeGroup::kCurve25519};
  a_snap->proposals.push_back(ike);
  a_snap->spd = policy::Spd([&] {
    auto e = ProtectEntry("a-b", kA, kB, "b");
    e.protect.ike_proposals = "ecp-first";
    return std::vector<policy::SpdEntry>{e};
  }());
  auto b_snap = std::make_shared<policy::PolicySnapshot>(*p.b);
  policy::ProposalSet only = policy::DefaultIkeProposals();
  only.name = "x25519-only";
  only.proposals.resize(1);
  only.proposals[0].ke = {wire::KeGroup::kCurve25519};
  b_snap->proposals.push_back(only);
  b_snap->spd = policy::Spd([&] {
    auto e = ProtectEntry("b-a", kB, kA, "a");
    e.protect.ike_proposals = "x25519-only";
    return std::vector<policy::SpdEntry>{e};
  }());
  Simulation sim(8);
  Node& a = sim.AddNode("a", kA, a_snap);
  Node& b = sim.AddNode("b", kB, b_snap);
  sim.Feed(a, Initiate("a-b"));
  sim.RunFor(Duration(1000));
  ExpectEstablished(a, b);
  EXPECT_TRUE(a.Logged(FailureReason::kInvalidKePayload));
  // First request P-256, retry X25519.
  auto first = wire::DecodeMessage(a.sent[0].bytes);
  auto second = wire::DecodeMessage(a.sent[1].bytes);
  ASSERT_TRUE(first.ok() && second.ok());
  EXPECT_EQ(wire::FindFirst<wire::KePayload>(first->payloads)->group,
            wire::KeGroup::kEcp256);
  EXPECT_EQ(wire::FindFirst<wire::KePayload>(second->payloads)->group,
            wire::KeGroup::kCurve25519);
}

// ---------------------------------------------------------------- failures

TEST(HandshakeFailureTest, WrongPskIsAuthenticationFailed) {
  Simulation sim(10);
  auto p = MakePskPair("one secret", "another secret");
  Node& a = sim.AddNode("a", kA, p.a);
  Node& b = sim.AddNode("b", kB, p.b);
  sim.Feed(a, Initiate("a-b"));
  sim.RunFor(Duration(60000));
  EXPECT_TRUE(b.Logged(FailureReason::kAuthenticationFailed));
  ASSERT_EQ(a.ike_down.size(), 1u);
  EXPECT_EQ(a.ike_down[0].reason, FailureReason::kAuthenticationFailed);
  EXPECT_EQ(a.ike_down[0].notify, wire::NotifyType::kAuthenticationFailed);
  EXPECT_TRUE(b.ike_up.empty());
  ExpectClean(a);
  ExpectClean(b);
}

TEST(HandshakeFailureTest, UnknownIdIsRejected) {
  Simulation sim(11);
  auto p = MakePskPair();
  auto a_snap = std::make_shared<policy::PolicySnapshot>(*p.a);
  a_snap->identities[0].id = policy::Identity::Fqdn("stranger.example");
  Node& a = sim.AddNode("a", kA, a_snap);
  Node& b = sim.AddNode("b", kB, p.b);
  sim.Feed(a, Initiate("a-b"));
  sim.RunFor(Duration(60000));
  EXPECT_TRUE(b.Logged(FailureReason::kPeerUnknown));
  ASSERT_EQ(a.ike_down.size(), 1u);
  EXPECT_EQ(a.ike_down[0].notify, wire::NotifyType::kAuthenticationFailed);
  ExpectClean(a);
  ExpectClean(b);
}

// RFC 5386 / 7619: a NULL-authenticated peer whose ID matches an
// authenticated entry is rejected, never tried against BTNS entries.
TEST(HandshakeFailureTest, NullPeerOnAuthenticatedEntryIsRejected) {
  PolicyBuilder a, b;
  a.Identity("anon", policy::Identity::Null())
      .Pad(BtnsEntry("any", "10.0.0.0/24", "anon"))
      .Spd(ProtectEntry("a-b", kA, kB, "any", policy::IpsecMode::kTransport,
                        true));
  policy::PadEntry everyone = PskEntry("all", "x", "k", kA, "me");
  everyone.peer_id = MatchAny();  // authenticated entry matching every ID
  b.Identity("me", policy::Identity::Fqdn("b.example"))
      .Secret("k", "s")
      .Pad(everyone)
      .Pad(BtnsEntry("btns", "10.0.0.0/24", "me"))
      .Spd(ProtectEntry("b-any", kB, "10.0.0.0/24", "btns",
                        policy::IpsecMode::kTransport, true));
  Simulation sim(12);
  Node& na = sim.AddNode("a", kA, a.Build());
  Node& nb = sim.AddNode("b", kB, b.Build());
  sim.Feed(na, Initiate("a-b"));
  sim.RunFor(Duration(60000));
  EXPECT_TRUE(nb.Logged(FailureReason::kNullAuthNotAllowed));
  ASSERT_EQ(na.ike_down.size(), 1u);
  EXPECT_EQ(na.ike_down[0].reason, FailureReason::kAuthenticationFailed);
  ExpectClean(na);
  ExpectClean(nb);
}

TEST(HandshakeFailureTest, IkeProposalMismatchIsNoProposalChosen) {
  auto p = MakePskPair();
  auto a_snap = std::make_shared<policy::PolicySnapshot>(*p.a);
  policy::ProposalSet cbc;
  cbc.name = "cbc";
  policy::Proposal prop;
  prop.encryption = {{wire::EncrId::kAesCbc, 128}};
  prop.prf = {wire::PrfId::kHmacSha2_256};
  prop.integrity = {wire::IntegId::kHmacSha2_256_128};
  prop.ke = {wire::KeGroup::kCurve25519};
  cbc.proposals = {prop};
  a_snap->proposals.push_back(cbc);
  auto e = ProtectEntry("a-b", kA, kB, "b");
  e.protect.ike_proposals = "cbc";
  a_snap->spd = policy::Spd({e});
  Simulation sim(13);
  Node& a = sim.AddNode("a", kA, a_snap);
  Node& b = sim.AddNode("b", kB, p.b);
  sim.Feed(a, Initiate("a-b"));
  sim.RunFor(Duration(60000));
  ASSERT_EQ(a.ike_down.size(), 1u);
  EXPECT_EQ(a.ike_down[0].reason, FailureReason::kNoProposalChosen);
  EXPECT_EQ(a.ike_down[0].notify, wire::NotifyType::kNoProposalChosen);
  EXPECT_TRUE(b.Logged(FailureReason::kNoProposalChosen));
  ExpectClean(a);
  ExpectClean(b);
}

TEST(HandshakeFailureTest, EspProposalMismatchKeepsIkeSaWithoutChild) {
  auto p = MakePskPair();
  auto a_snap = std::make_shared<policy::PolicySnapshot>(*p.a);
  policy::ProposalSet esp;
  esp.name = "cbc-esp";
  policy::Proposal prop;
  prop.encryption = {{wire::EncrId::kAesCbc, 128}};
  prop.integrity = {wire::IntegId::kHmacSha2_256_128};
  esp.proposals = {prop};
  a_snap->proposals.push_back(esp);
  auto e = ProtectEntry("a-b", kA, kB, "b");
  e.protect.esp_proposals = "cbc-esp";
  a_snap->spd = policy::Spd({e});
  Simulation sim(14);
  Node& a = sim.AddNode("a", kA, a_snap);
  Node& b = sim.AddNode("b", kB, p.b);
  sim.Feed(a, Initiate("a-b"));
  sim.RunFor(Duration(2000));
  EXPECT_EQ(a.ike_up.size(), 1u);
  EXPECT_EQ(b.ike_up.size(), 1u);
  EXPECT_TRUE(a.child_up.empty());
  ASSERT_EQ(a.child_down.size(), 1u);
  EXPECT_EQ(a.child_down[0].reason, FailureReason::kNoProposalChosen);
  EXPECT_TRUE(b.Logged(FailureReason::kNoProposalChosen));
  EXPECT_TRUE(a.sad.empty());
  EXPECT_TRUE(b.sad.empty());
  EXPECT_EQ(a.spis->outstanding(), 0u);
  EXPECT_EQ(b.spis->outstanding(), 0u);
}

TEST(HandshakeFailureTest, TrafficSelectorMismatchIsTsUnacceptable) {
  auto p = MakePskPair();
  auto a_snap = std::make_shared<policy::PolicySnapshot>(*p.a);
  // A wants to protect traffic to an address B does not serve.
  a_snap->spd = policy::Spd(
      {ProtectEntry("a-b", kA, "10.9.9.9", "b")});
  Simulation sim(15);
  Node& a = sim.AddNode("a", kA, a_snap);
  Node& b = sim.AddNode("b", kB, p.b);
  InitiateRequest r = Initiate("a-b");
  r.remote = Endpoint{Ip(kB), 500};
  sim.Feed(a, r);
  sim.RunFor(Duration(2000));
  ASSERT_EQ(a.child_down.size(), 1u);
  EXPECT_EQ(a.child_down[0].reason, FailureReason::kTsUnacceptable);
  EXPECT_TRUE(b.Logged(FailureReason::kTsUnacceptable));
  EXPECT_TRUE(a.sad.empty());
  EXPECT_TRUE(b.sad.empty());
  EXPECT_EQ(b.spis->outstanding(), 0u);
  EXPECT_EQ(a.spis->outstanding(), 0u);
}

// A signature made with one key but sent with another (certificate of a
// different key) does not verify.
TEST(HandshakeFailureTest, BadSignatureIsAuthenticationFailed) {
  const std::string dir = "tests/fixtures/crypto/keys/";
  auto chain = btnsd::daemon::LoadCertificateChainFile(dir + "ee.crt");
  ASSERT_TRUE(chain.ok());
  auto key_a = MakeEd25519("key a");
  PolicyBuilder a, b;
  a.Identity("me", policy::Identity::Fqdn("a.example"),
             policy::CredentialKind::kCertificate)
      .Pad(BtnsEntry("any", "10.0.0.0/24", "me"))
      .Spd(ProtectEntry("a-b", kA, kB, "any", policy::IpsecMode::kTransport,
                        true));
  b.Identity("anon", policy::Identity::Null())
      .Pad(BtnsEntry("any", "10.0.0.0/24", "anon"))
      .Spd(ProtectEntry("b-any", kB, "10.0.0.0/24", "any",
                        policy::IpsecMode::kTransport, true));
  CredentialStore ca;
  ca.local["me"].private_key = key_a;  // Ed25519 key ...
  ca.local["me"].certificate_chain = *chain;  // ... with a P-256 certificate
  Simulation sim(16);
  Node& na = sim.AddNode("a", kA, a.Build(), ca);
  Node& nb = sim.AddNode("b", kB, b.Build());
  sim.Feed(na, Initiate("a-b"));
  sim.RunFor(Duration(60000));
  EXPECT_TRUE(nb.Logged(FailureReason::kAuthenticationFailed));
  ASSERT_EQ(na.ike_down.size(), 1u);
  EXPECT_EQ(na.ike_down[0].notify, wire::NotifyType::kAuthenticationFailed);
  ExpectClean(na);
  ExpectClean(nb);
}

TEST(HandshakeFailureTest, PinnedKeyMismatchIsRejected) {
  auto key_a = MakeEd25519("key a");
  auto other = MakeEd25519("someone else");
  PolicyBuilder a, b;
  a.Identity("me", policy::Identity::Fqdn("a.example"),
             policy::CredentialKind::kRawKey)
      .Pad(BtnsEntry("any", "10.0.0.0/24", "me"))
      .Spd(ProtectEntry("a-b", kA, kB, "any", policy::IpsecMode::kTransport,
                        true));
  policy::PadEntry pinned;
  pinned.name = "a";
  pinned.peer_id = MatchFqdn("a.example");
  pinned.auth = policy::PeerAuthMethod::kPinnedKey;
  pinned.pinned_keys = {FingerprintOf(other)};
  pinned.remote_ts = {HostTs(kA)};
  b.Identity("anon", policy::Identity::Null())
      .Pad(pinned)
      .Spd(ProtectEntry("b-a", kB, kA, "a"));
  CredentialStore ca;
  ca.local["me"].private_key = key_a;
  Simulation sim(17);
  Node& na = sim.AddNode("a", kA, a.Build(), ca);
  Node& nb = sim.AddNode("b", kB, b.Build());
  sim.Feed(na, Initiate("a-b"));
  sim.RunFor(Duration(60000));
  EXPECT_TRUE(nb.Logged(FailureReason::kPadAuthMismatch));
  ExpectClean(na);
  ExpectClean(nb);
}

TEST(HandshakeFailureTest, TruncatedAndGarbageDatagramsChangeNothing) {
  Simulation sim(18);
  auto p = MakePskPair();
  Node& a = sim.AddNode("a", kA, p.a);
  Node& b = sim.AddNode("b", kB, p.b);
  sim.Feed(a, Initiate("a-b"));
  std::vector<uint8_t> init = a.sent[0].bytes;
  DatagramReceived d;
  d.local = {Ip(kB), 500};
  d.remote = {Ip(kA), 500};
  for (size_t len = 0; len < init.size(); len += 7) {
    d.bytes.assign(init.begin(), init.begin() + len);
    sim.Feed(b, d);
  }
  // Length field claiming more than is there.
  d.bytes = init;
  d.bytes.resize(init.size() - 1);
  sim.Feed(b, d);
  EXPECT_EQ(b.manager->ike_sa_count(), 0u);
  EXPECT_EQ(b.manager->half_open_count(), 0u);
  // The real exchange still completes afterwards.
  sim.RunFor(Duration(2000));
  ExpectEstablished(a, b);
}

TEST(HandshakeFailureTest, ReplayedIkeAuthAfterEstablishmentChangesNothing) {
  Simulation sim(19);
  auto p = MakePskPair();
  Node& a = sim.AddNode("a", kA, p.a);
  Node& b = sim.AddNode("b", kB, p.b);
  sim.Feed(a, Initiate("a-b"));
  sim.RunFor(Duration(1000));
  ExpectEstablished(a, b);
  DatagramReceived d;
  d.local = {Ip(kB), 500};
  d.remote = {Ip(kA), 500};
  d.bytes = a.sent[1].bytes;  // the IKE_AUTH request
  size_t sent_before = b.sent.size();
  sim.Feed(b, d);
  // Answered from the cache (same bytes), nothing else.
  ASSERT_EQ(b.sent.size(), sent_before + 1);
  EXPECT_EQ(b.sent.back().bytes, b.sent[1].bytes);
  EXPECT_EQ(b.child_up.size(), 1u);
  EXPECT_EQ(b.sad.size(), 2u);
  // A replayed IKE_SA_INIT request creates nothing new either.
  d.bytes = a.sent[0].bytes;
  sim.Feed(b, d);
  EXPECT_EQ(b.manager->ike_sa_count(), 1u);
  // A corrupted copy of a request is dropped (ICV fails).
  d.bytes = a.sent[1].bytes;
  d.bytes[d.bytes.size() - 3] ^= 1;
  sim.Feed(b, d);
  EXPECT_EQ(b.sad.size(), 2u);
}

}  // namespace
}  // namespace ike::sa::testing

namespace ike::sa::testing {
namespace {

// RFC 7296 section 2.23: NAT_DETECTION_*_IP data is
// SHA-1(SPIi | SPIr | IP address | port), SPIr zero in the request.
TEST(EncodingTest, NatDetectionHashInputs) {
  Simulation sim(70);
  auto p = MakePskPair();
  Node& a = sim.AddNode("a", kA, p.a);
  sim.AddNode("b", kB, p.b);
  sim.Feed(a, Initiate("a-b"));
  auto msg = wire::DecodeMessage(a.sent[0].bytes);
  ASSERT_TRUE(msg.ok());
  auto expected = [&](const std::string& ip, uint16_t port) {
    auto sha1 = Botan::HashFunction::create_or_throw("SHA-1");
    std::vector<uint8_t> in;
    for (int i = 7; i >= 0; --i)
      in.push_back(uint8_t(msg->header.initiator_spi >> (8 * i)));
    in.insert(in.end(), 8, 0);  // SPIr
    auto addr = Ip(ip).ToBytes();
    in.insert(in.end(), addr.begin(), addr.end());
    in.push_back(uint8_t(port >> 8));
    in.push_back(uint8_t(port));
    auto d = sha1->process(in);
    return std::vector<uint8_t>(d.begin(), d.end());
  };
  int seen = 0;
  for (const auto& pl : msg->payloads) {
    auto* n = std::get_if<wire::NotifyPayload>(&pl.body);
    if (!n) continue;
    if (n->type == wire::NotifyType::kNatDetectionSourceIp) {
      EXPECT_EQ(n->data, expected(kA, 500));
      ++seen;
    }
    if (n->type == wire::NotifyType::kNatDetectionDestinationIp) {
      EXPECT_EQ(n->data, expected(kB, 500));
      ++seen;
    }
  }
  EXPECT_EQ(seen, 2);
}

// A NAT in front of A rewrites its source port: both sides notice, A moves
// to port 4500 with the non-ESP marker, and the CHILD_SAs use UDP
// encapsulation.
TEST(NatTraversalTest, NatIsDetectedAndIkeFloatsTo4500) {
  Simulation sim(71);
  auto p = MakePskPair();
  Node& a = sim.AddNode("a", kA, p.a);
  Node& b = sim.AddNode("b", kB, p.b);
  sim.tamper = [](Datagram& d) {
    if (d.from == "a")
      d.event.remote.port = d.event.remote.port == 500 ? 31000 : 31001;
  };
  sim.Feed(a, Initiate("a-b"));
  sim.RunFor(Duration(2000));
  ExpectEstablished(a, b);
  ASSERT_EQ(a.sent.size(), 2u);
  EXPECT_EQ(a.sent[0].local.port, 500);
  EXPECT_FALSE(a.sent[0].non_esp_marker);
  EXPECT_EQ(a.sent[1].local.port, 4500);
  EXPECT_EQ(a.sent[1].remote.port, 4500);
  EXPECT_TRUE(a.sent[1].non_esp_marker);
  // B answers IKE_AUTH where it came from (the NAT's mapping).
  EXPECT_EQ(b.sent[1].remote.port, 31001);
  for (const auto& [k, sa] : a.sad) {
    ASSERT_TRUE(sa.encapsulation.has_value());
  }
  for (const auto& [k, sa] : b.sad) {
    ASSERT_TRUE(sa.encapsulation.has_value());
    if (sa.direction == SaDirection::kOutbound) {
      EXPECT_EQ(sa.encapsulation->source_port, 4500);
      EXPECT_EQ(sa.encapsulation->destination_port, 31001);
    }
  }
}

TEST(NatTraversalTest, NoNatMeansNoEncapsulation) {
  Simulation sim(72);
  auto p = MakePskPair();
  Node& a = sim.AddNode("a", kA, p.a);
  Node& b = sim.AddNode("b", kB, p.b);
  sim.Feed(a, Initiate("a-b"));
  sim.RunFor(Duration(2000));
  ExpectEstablished(a, b);
  EXPECT_EQ(a.sent[1].local.port, 500);
  for (const auto& [k, sa] : a.sad) EXPECT_FALSE(sa.encapsulation.has_value());
}

}  // namespace
}  // namespace ike::sa::testing
