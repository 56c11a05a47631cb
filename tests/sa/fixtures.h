// Policy and credential builders shared by the ike/sa tests and benchmark.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <botan/auto_rng.h>
#include <botan/ed25519.h>
#include <botan/pkcs8.h>

#include "ike/crypto/credentials.h"
#include "ike/crypto/random.h"
#include "ike/policy/snapshot.h"
#include "ike/sa/engine.h"

namespace ike::sa::testing {

inline policy::IpAddress Ip(const std::string& text) {
  return *policy::IpAddress::Parse(text);
}

inline policy::TrafficSelector HostTs(const std::string& address) {
  return {policy::IpRange::Host(Ip(address)), 0, {}};
}

inline std::vector<uint8_t> Text(const std::string& s) {
  return {s.begin(), s.end()};
}

// A mutable snapshot under construction.
struct PolicyBuilder {
  std::shared_ptr<policy::PolicySnapshot> snap =
      std::make_shared<policy::PolicySnapshot>();
  std::vector<policy::PadEntry> pad;
  std::vector<policy::SpdEntry> spd;

  PolicyBuilder& Identity(const std::string& name, policy::Identity id,
                          policy::CredentialKind kind =
                              policy::CredentialKind::kNone,
                          const std::string& psk_name = "") {
    policy::LocalIdentity li;
    li.name = name;
    li.id = std::move(id);
    li.credential = kind;
    li.psk_name = psk_name;
    snap->identities.push_back(li);
    return *this;
  }
  PolicyBuilder& Secret(const std::string& name, const std::string& value) {
    snap->secrets.push_back({name, Text(value)});
    return *this;
  }
  PolicyBuilder& Pad(policy::PadEntry e) {
    pad.push_back(std::move(e));
    return *this;
  }
  PolicyBuilder& Spd(policy::SpdEntry e) {
    spd.push_back(std::move(e));
    return *this;
  }
  PolicyBuilder& Proposals(policy::ProposalSet set) {
    snap->proposals.push_back(std::move(set));
    return *this;
  }
  policy::PolicySnapshotPtr Build() {
    snap->pad = policy::Pad(pad);
    snap->spd = policy::Spd(spd);
    return snap;
  }
};

inline policy::IdMatcher MatchFqdn(const std::string& fqdn) {
  policy::IdMatcher m;
  m.kind = policy::IdMatcher::Kind::kExact;
  m.exact = policy::Identity::Fqdn(fqdn);
  return m;
}
inline policy::IdMatcher MatchAny() { return {}; }

inline policy::PadEntry PskEntry(const std::string& name,
                                 const std::string& peer_fqdn,
                                 const std::string& psk_name,
                                 const std::string& peer_address,
                                 const std::string& local_identity) {
  policy::PadEntry e;
  e.name = name;
  e.peer_id = MatchFqdn(peer_fqdn);
  e.auth = policy::PeerAuthMethod::kPsk;
  e.psk_name = psk_name;
  e.remote_ts = {HostTs(peer_address)};
  e.local_identity = local_identity;
  return e;
}

inline policy::PadEntry BtnsEntry(const std::string& name,
                                  const std::string& peer_range,
                                  const std::string& local_identity) {
  policy::PadEntry e;
  e.name = name;
  e.peer_id = MatchAny();
  e.auth = policy::PeerAuthMethod::kBtns;
  e.remote_ts = {{*policy::IpRange::Parse(peer_range), 0, {}}};
  e.local_identity = local_identity;
  return e;
}

inline policy::SpdEntry ProtectEntry(
    const std::string& name, const std::string& local,
    const std::string& remote, const std::string& peer,
    policy::IpsecMode mode = policy::IpsecMode::kTransport,
    bool unauthenticated_ok = false) {
  policy::SpdEntry e;
  e.name = name;
  e.selector.local = *policy::IpRange::Parse(local);
  e.selector.remote = *policy::IpRange::Parse(remote);
  e.action = policy::SpdAction::kProtect;
  e.protect.peer = peer;
  e.protect.mode = mode;
  e.protect.unauthenticated_ok = unauthenticated_ok;
  return e;
}

// A fresh Ed25519 key from a seeded generator, as the daemon would load it.
inline crypto::PrivateKey MakeEd25519(const std::string& seed) {
  crypto::DeterministicRandomSource random(
      crypto::ByteView(reinterpret_cast<const uint8_t*>(seed.data()),
                       seed.size()));
  Botan::Ed25519_PrivateKey key(random.AsBotan());
  std::string pem = Botan::PKCS8::PEM_encode(key);
  return std::move(*crypto::PrivateKey::FromBytes(
      crypto::ByteView(reinterpret_cast<const uint8_t*>(pem.data()),
                       pem.size()),
      "generated Ed25519 key"));
}

inline policy::Sha256 FingerprintOf(const crypto::PrivateKey& key) {
  auto fp = key.public_key().Fingerprint();
  policy::Sha256 out;
  std::copy(fp.begin(), fp.end(), out.begin());
  return out;
}

constexpr char kA[] = "10.0.0.1";
constexpr char kB[] = "10.0.0.2";

// Both sides use one PSK; A initiates to B.
struct PskPair {
  policy::PolicySnapshotPtr a, b;
};
inline PskPair MakePskPair(const std::string& psk_a = "correct horse",
                    const std::string& psk_b = "correct horse") {
  PolicyBuilder a, b;
  a.Identity("me", policy::Identity::Fqdn("a.example"))
      .Secret("k", psk_a)
      .Pad(PskEntry("b", "b.example", "k", kB, "me"))
      .Spd(ProtectEntry("a-b", kA, kB, "b"));
  b.Identity("me", policy::Identity::Fqdn("b.example"))
      .Secret("k", psk_b)
      .Pad(PskEntry("a", "a.example", "k", kA, "me"))
      .Spd(ProtectEntry("b-a", kB, kA, "a"));
  return {a.Build(), b.Build()};
}

inline InitiateRequest Initiate(const std::string& entry) {
  InitiateRequest r;
  r.spd_entry = entry;
  return r;
}

}  // namespace ike::sa::testing
