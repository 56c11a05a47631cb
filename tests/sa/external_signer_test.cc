// IKE_AUTH signed by a key the engine never holds (ExternalSigner): the
// engine asks with SignRequest and resumes on SignatureDelivered, in both
// roles, with loss and retransmissions while the signature is pending, and
// fails with a typed reason when the holder refuses, answers wrongly or
// never answers.
#include <botan/ec_group.h>
#include <botan/ecdsa.h>
#include <botan/pubkey.h>

#include "tests/sa/established.h"
#include "tests/sa/expect.h"

namespace ike::sa::testing {
namespace {

crypto::PrivateKey MakeP256(const std::string& seed) {
  crypto::DeterministicRandomSource random(crypto::ByteView(
      reinterpret_cast<const uint8_t*>(seed.data()), seed.size()));
  Botan::ECDSA_PrivateKey key(random.AsBotan(), Botan::EC_Group("secp256r1"));
  std::string pem = Botan::PKCS8::PEM_encode(key);
  return std::move(*crypto::PrivateKey::FromBytes(
      crypto::ByteView(reinterpret_cast<const uint8_t*>(pem.data()),
                       pem.size()),
      "generated P-256 key"));
}

// What a PKCS#11 token returns for the scheme: r || s for ECDSA, R || S
// for Ed25519.
std::vector<uint8_t> RawSign(const crypto::PrivateKey& key,
                             const SignRequest& request) {
  Botan::AutoSeeded_RNG rng;
  std::string padding =
      request.scheme == crypto::RawSignatureScheme::kEd25519 ? "Pure"
      : request.scheme == crypto::RawSignatureScheme::kEcdsaSha384
          ? "EMSA1(SHA-384)"
          : "EMSA1(SHA-256)";
  Botan::PK_Signer signer(key.botan(), rng, padding, Botan::IEEE_1363);
  return signer.sign_message(request.octets, rng);
}

SignatureDelivered Answer(const crypto::PrivateKey& key,
                          const SignRequest& request) {
  return {request.ike_sa, request.request, RawSign(key, request), ""};
}

size_t AuthRequestsSent(const Node& n) {
  size_t count = 0;
  for (const auto& s : n.sent)  // exchange type is octet 18 of the header
    if (s.bytes.size() > 18 && s.bytes[18] == 35 && !(s.bytes[19] & 0x20))
      ++count;
  return count;
}
size_t AuthResponsesSent(const Node& n) {
  size_t count = 0;
  for (const auto& s : n.sent)
    if (s.bytes.size() > 18 && s.bytes[18] == 35 && (s.bytes[19] & 0x20))
      ++count;
  return count;
}

// A signs with an external key and pins B's key; B accepts any raw key
// (BTNS) and signs with `b_key` (or externally, `b_external`).
struct Pair {
  policy::PolicySnapshotPtr a, b;
  CredentialStore ca, cb;
};
Pair MakePair(const crypto::PrivateKey& a_key, bool a_external,
              const crypto::PrivateKey& b_key, bool b_external) {
  PolicyBuilder a, b;
  a.Identity("me", policy::Identity::Fqdn("a.example"),
             policy::CredentialKind::kRawKey)
      .Pad(BtnsEntry("keys", "10.0.0.0/24", "me"))
      .Spd(ProtectEntry("a-b", kA, kB, "keys", policy::IpsecMode::kTransport,
                        true));
  b.Identity("me", policy::Identity::Fqdn("b.example"),
             policy::CredentialKind::kRawKey)
      .Pad(BtnsEntry("keys", "10.0.0.0/24", "me"))
      .Spd(ProtectEntry("b-any", kB, "10.0.0.0/24", "keys",
                        policy::IpsecMode::kTransport, true));
  Pair p{a.Build(), b.Build(), {}, {}};
  if (a_external) {
    p.ca.local["me"].external_signer =
        ExternalSigner{"token-a", a_key.public_key(), Duration(5000)};
  } else {
    p.ca.local["me"].private_key = a_key;
  }
  if (b_external) {
    p.cb.local["me"].external_signer =
        ExternalSigner{"token-b", b_key.public_key(), Duration(5000)};
  } else {
    p.cb.local["me"].private_key = b_key;
  }
  return p;
}

// One test's keys, MakePair's policies and its two nodes, "a" at kA and "b"
// at kB, in a fresh simulation.
struct SignerPair {
  SignerPair(uint64_t seed, crypto::PrivateKey a_key, bool a_external,
        crypto::PrivateKey b_key, bool b_external)
      : key_a(std::move(a_key)),
        key_b(std::move(b_key)),
        pair(MakePair(key_a, a_external, key_b, b_external)),
        peers(seed, {pair.a, pair.ca}, {pair.b, pair.cb}) {}
  crypto::PrivateKey key_a, key_b;
  Pair pair;
  TwoPeers peers;
};

TEST(ExternalSignerTest, InitiatorWaitsForTheSignatureThenAuthenticates) {
  SignerPair setup(21, MakeP256("token key a"), true, MakeEd25519("key b"), false);
  auto& [key_a, key_b, pair, peers] = setup;
  auto& [sim, na, nb] = peers;
  sim.Feed(na, Initiate("a-b"));
  sim.RunFor(Duration(500));
  ASSERT_EQ(na.sign_requests.size(), 1u);
  const SignRequest& request = na.sign_requests[0];
  EXPECT_EQ(request.holder, "token-a");
  // B announced SIGNATURE_HASH_ALGORITHMS: RFC 7427 with SHA-256.
  EXPECT_EQ(request.scheme, crypto::RawSignatureScheme::kEcdsaSha256);
  EXPECT_NE(request.request, 0u);
  EXPECT_FALSE(request.octets.empty());
  EXPECT_EQ(AuthRequestsSent(na), 0u);  // nothing to send before the signature
  EXPECT_TRUE(na.ike_up.empty());
  sim.Feed(na, Answer(key_a, request));
  sim.RunFor(Duration(1000));
  ExpectEstablished(na, nb);
  EXPECT_EQ(na.sign_requests.size(), 1u);
  // B sees the token's key: the public key went out, the private key never
  // entered the engine.
  EXPECT_EQ(nb.ike_up[0].peer.auth, PeerAuthKind::kRawPublicKey);
  EXPECT_EQ(nb.ike_up[0].peer.spki_sha256, FingerprintOf(key_a));
}

TEST(ExternalSignerTest, LegacyEcdsaMethodWhenThePeerNamesNoHashes) {
  // A peer without SIGNATURE_HASH_ALGORITHMS gets RFC 4754 ECDSA (method 9),
  // whose r || s is exactly the token's output.
  SignerPair setup(22, MakeP256("token key a"), true, MakeEd25519("key b"), false);
  auto& [key_a, key_b, pair, peers] = setup;
  auto& [sim, na, nb] = peers;
  sim.tamper = [](Datagram& d) {
    // Strip B's notify by renaming its type to a private-use status
    // (41000): IKE_SA_INIT is not integrity-protected.
    if (d.from != "b" || d.event.bytes.size() < 28 || d.event.bytes[18] != 34)
      return;
    auto& b = d.event.bytes;
    for (size_t i = 28; i + 8 <= b.size(); ++i)
      if (b[i - 2] == 0 && b[i - 1] == 0 && b[i] == 0x40 && b[i + 1] == 0x2f) {  // 16431 SIGNATURE_HASH_ALGORITHMS
        b[i] = 0xa0;
        b[i + 1] = 0x28;
      }
  };
  sim.Feed(na, Initiate("a-b"));
  sim.RunFor(Duration(500));
  ASSERT_EQ(na.sign_requests.size(), 1u);
  sim.Feed(na, Answer(key_a, na.sign_requests[0]));
  sim.RunFor(Duration(1000));
  ASSERT_EQ(nb.ike_up.size(), 1u);
  EXPECT_EQ(nb.ike_up[0].peer.spki_sha256, FingerprintOf(key_a));
}

TEST(ExternalSignerTest, LostAuthRequestIsRetransmittedWithoutSigningAgain) {
  SignerPair setup(23, MakeP256("token key a"), true, MakeEd25519("key b"), false);
  auto& [key_a, key_b, pair, peers] = setup;
  auto& [sim, na, nb] = peers;
  int dropped_auth = 0;
  sim.drop_if = [&](const Datagram& d) {
    bool auth_request = d.from == "a" && d.event.bytes.size() > 19 &&
                        d.event.bytes[18] == 35;
    if (auth_request && dropped_auth < 2) {
      ++dropped_auth;
      return true;
    }
    return false;
  };
  sim.Feed(na, Initiate("a-b"));
  sim.RunFor(Duration(200));
  ASSERT_EQ(na.sign_requests.size(), 1u);
  sim.Feed(na, Answer(key_a, na.sign_requests[0]));
  sim.RunFor(Duration(10000));
  EXPECT_EQ(dropped_auth, 2);
  EXPECT_EQ(AuthRequestsSent(na), 3u);
  EXPECT_EQ(na.sign_requests.size(), 1u);
  ExpectEstablished(na, nb);
}

TEST(ExternalSignerTest, ResponderAbsorbsRetransmissionsWhileSigning) {
  SignerPair setup(24, MakeEd25519("key a"), false, MakeEd25519("token key b"), true);
  auto& [key_a, key_b, pair, peers] = setup;
  auto& [sim, na, nb] = peers;
  bool dropped_response = false;
  sim.drop_if = [&](const Datagram& d) {
    if (d.from == "b" && d.event.bytes.size() > 19 &&
        d.event.bytes[18] == 35 && !dropped_response) {
      dropped_response = true;  // the first IKE_AUTH response is lost
      return true;
    }
    return false;
  };
  sim.Feed(na, Initiate("a-b"));
  // A retransmits IKE_AUTH at 1 s and 3 s while B's token takes 3.5 s.
  sim.RunFor(Duration(3500));
  ASSERT_EQ(nb.sign_requests.size(), 1u);
  EXPECT_EQ(nb.sign_requests[0].scheme, crypto::RawSignatureScheme::kEd25519);
  EXPECT_GE(AuthRequestsSent(na), 3u);
  EXPECT_EQ(AuthResponsesSent(nb), 0u);
  EXPECT_TRUE(nb.ike_up.empty());
  sim.Feed(nb, Answer(key_b, nb.sign_requests[0]));
  sim.RunFor(Duration(20000));
  EXPECT_TRUE(dropped_response);
  EXPECT_EQ(nb.sign_requests.size(), 1u);  // signed once
  EXPECT_GE(AuthResponsesSent(nb), 2u);    // the cached answer was resent
  ExpectEstablished(na, nb);
  EXPECT_EQ(na.ike_up[0].peer.spki_sha256, FingerprintOf(key_b));
}

TEST(ExternalSignerTest, NoAnswerIsSignerTimeoutAndLateAnswersAreIgnored) {
  SignerPair setup(25, MakeP256("token key a"), true, MakeEd25519("key b"), false);
  auto& [key_a, key_b, pair, peers] = setup;
  auto& [sim, na, nb] = peers;
  sim.Feed(na, Initiate("a-b"));
  sim.RunFor(Duration(6000));
  ASSERT_EQ(na.sign_requests.size(), 1u);
  ASSERT_EQ(na.ike_down.size(), 1u);
  EXPECT_EQ(na.ike_down[0].reason, FailureReason::kSignerTimeout);
  EXPECT_TRUE(na.Logged(FailureReason::kSignerTimeout));
  EXPECT_EQ(AuthRequestsSent(na), 0u);
  size_t sent = na.sent.size();
  sim.Feed(na, Answer(key_a, na.sign_requests[0]));
  EXPECT_EQ(na.sent.size(), sent);
  EXPECT_EQ(na.manager->ike_sa_count(), 0u);
  ExpectClean(na);
  sim.RunFor(Duration(60000));
  ExpectClean(nb);  // B's half-open SA timed out
}

TEST(ExternalSignerTest, RefusalAndWrongKeyAreSignerRefused) {
  auto other = MakeP256("some other key");
  for (bool refuse : {true, false}) {
    SignerPair setup(26, MakeP256("token key a"), true, MakeEd25519("key b"), false);
    auto& [sim, na, nb] = setup.peers;
    sim.Feed(na, Initiate("a-b"));
    sim.RunFor(Duration(200));
    ASSERT_EQ(na.sign_requests.size(), 1u);
    const SignRequest& r = na.sign_requests[0];
    // A stale request id changes nothing.
    sim.Feed(na, SignatureDelivered{r.ike_sa, r.request + 1, {1, 2, 3}, ""});
    EXPECT_TRUE(na.ike_down.empty());
    if (refuse) {
      sim.Feed(na, SignatureDelivered{r.ike_sa, r.request, {}, "user said no"});
    } else {
      sim.Feed(na, Answer(other, r));  // a token holding another key
    }
    ASSERT_EQ(na.ike_down.size(), 1u) << refuse;
    EXPECT_EQ(na.ike_down[0].reason, FailureReason::kSignerRefused);
    EXPECT_EQ(AuthRequestsSent(na), 0u);  // no bad AUTH reached the wire
    ExpectClean(na);
    bool named = false;
    for (const auto& l : na.logs)
      named |= l.reason == FailureReason::kSignerRefused &&
               l.text.find(refuse ? "user said no" : "does not verify") !=
                   std::string::npos;
    EXPECT_TRUE(named) << refuse;
  }
}

TEST(ExternalSignerTest, ResponderRefusalTellsThePeerAuthenticationFailed) {
  SignerPair setup(27, MakeEd25519("key a"), false, MakeP256("token key b"), true);
  auto& [key_a, key_b, pair, peers] = setup;
  auto& [sim, na, nb] = peers;
  sim.Feed(na, Initiate("a-b"));
  sim.RunFor(Duration(200));
  ASSERT_EQ(nb.sign_requests.size(), 1u);
  const SignRequest& r = nb.sign_requests[0];
  sim.Feed(nb, SignatureDelivered{r.ike_sa, r.request, {}, "locked"});
  sim.RunFor(Duration(1000));
  EXPECT_EQ(AuthResponsesSent(nb), 1u);
  ASSERT_EQ(na.ike_down.size(), 1u);
  EXPECT_EQ(na.ike_down[0].reason, FailureReason::kAuthenticationFailed);
  EXPECT_TRUE(nb.Logged(FailureReason::kSignerRefused));
  ExpectClean(na);
  ExpectClean(nb);
}

}  // namespace
}  // namespace ike::sa::testing
