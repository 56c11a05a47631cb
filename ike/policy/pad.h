// The Peer Authorization Database (RFC 4301 section 4.4.3) extended for
// unauthenticated peers: BTNS entries (RFC 5386) that accept NULL
// authentication (RFC 7619) or unverified raw public keys (RFC 7670).
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "ike/policy/address.h"
#include "ike/policy/identity.h"

namespace ike::policy {

using Sha256 = std::array<uint8_t, 32>;
std::string FingerprintToString(const Sha256& fp);  // "sha256:<hex>"
std::optional<Sha256> ParseFingerprint(std::string_view text);

// How a PAD entry requires the peer to prove its identity.
enum class PeerAuthMethod {
  kPsk,        // shared key (AUTH method 2)
  kCa,         // certificate chain to one of the trust anchors
  kPinnedKey,  // a known public key (raw key or certificate carrying it)
  kBtns,       // unauthenticated: NULL auth and/or any raw public key
};
std::string_view PeerAuthMethodName(PeerAuthMethod m);

struct BtnsOptions {
  bool accept_null = true;     // RFC 7619 AUTH method 13
  bool accept_raw_key = true;  // RFC 7670 raw key or unverified certificate
  // Empty: the wildcard BTNS entry (any key). Otherwise the entry matches
  // only these SPKI fingerprints (RFC 5386 non-wildcard BTNS entry).
  std::vector<Sha256> keys;
  bool operator==(const BtnsOptions&) const = default;
};

struct PadEntry {
  std::string name;
  IdMatcher peer_id;
  PeerAuthMethod auth = PeerAuthMethod::kPsk;
  std::string psk_name;                 // kPsk: name in the secrets file
  std::vector<std::string> ca_files;    // kCa: trust anchor certificates
  std::vector<Sha256> pinned_keys;      // kPinnedKey: SPKI SHA-256
  std::vector<std::string> pinned_key_files;  // where they were read from
  BtnsOptions btns;                     // kBtns
  // Child SA authorization data (RFC 4301 4.4.3.3): what the peer may
  // claim as its side of a traffic selector pair.
  std::vector<TrafficSelector> remote_ts;
  std::string local_identity;  // name of the identity to present

  bool IsBtns() const { return auth == PeerAuthMethod::kBtns; }
  bool IsWildcardBtns() const { return IsBtns() && btns.keys.empty(); }
  bool operator==(const PadEntry&) const = default;
};

// What the peer used in its AUTH payload, as seen before verification.
enum class PresentedAuth {
  kNull,          // AUTH method 13
  kSharedKey,     // AUTH method 2
  kCertificate,   // signature with an X.509 certificate (CERT enc. 4)
  kRawPublicKey,  // signature with a raw key (CERT enc. 15)
};

struct PeerCredentials {
  Identity id;  // the ID payload the peer sent
  PresentedAuth auth = PresentedAuth::kNull;
  // SHA-256 of the DER SubjectPublicKeyInfo of the key in the CERT payload
  // (raw key or end-entity certificate); absent for PSK and NULL.
  std::optional<Sha256> spki_sha256;
};

enum class PadRejection {
  kNoMatchingEntry,
  // The ID matched an authenticated entry but the peer offered a different
  // kind of proof; RFC 5386: such a peer is never tried against BTNS.
  kAuthMethodMismatch,
  // The ID matched a pinned-key entry and the key is a different one.
  kPinnedKeyMismatch,
  // RFC 7619: NULL auth for an ID whose entry demands authentication.
  kNullAuthForAuthenticatedEntry,
};
std::string_view PadRejectionName(PadRejection r);
// Every PAD rejection is answered with AUTHENTICATION_FAILED (RFC 7296 2.21.2).
inline ike::wire::NotifyType NotifyFor(PadRejection) {
  return ike::wire::NotifyType::kAuthenticationFailed;
}

// Outcome of a PAD lookup; `entry` points into the Pad, so keep the
// PolicySnapshot that owns it alive while using it. The caller then verifies the AUTH payload with
// the entry's method; if that fails the IKE SA is rejected (a matched
// authenticated entry has no fallback).
struct PadMatch {
  const PadEntry* entry = nullptr;
  bool authenticated = false;  // false for BTNS matches
  // The identity to record for the peer: its asserted ID for authenticated
  // entries; "sha256:<hex>" of its key, or "null", for BTNS peers, whose
  // asserted ID carries no authority (RFC 5386 section 3, RFC 7619).
  std::string recorded_identity;
};

struct PadLookup {
  std::optional<PadMatch> match;
  PadRejection rejection = PadRejection::kNoMatchingEntry;
  bool ok() const { return match.has_value(); }
};

enum class TsRejection {
  kOutsideAllowed,  // nothing of the proposal is in the entry's remote_ts
  // BTNS only: everything proposed belongs to authenticated peers.
  kClaimsAuthenticatedAddresses,
};

// Selectors the PAD refuses are answered with TS_UNACCEPTABLE.
inline ike::wire::NotifyType NotifyFor(TsRejection) {
  return ike::wire::NotifyType::kTsUnacceptable;
}

struct TsAuthorization {
  std::vector<TrafficSelector> narrowed;
  std::optional<TsRejection> rejection;
  bool ok() const { return !rejection.has_value(); }
};

class Pad {
 public:
  Pad() = default;
  explicit Pad(std::vector<PadEntry> entries) : entries_(std::move(entries)) {}

  const std::vector<PadEntry>& entries() const { return entries_; }
  const PadEntry* Find(std::string_view name) const;

  // RFC 5386 lookup: non-BTNS entries in order by asserted ID; only if none
  // matches, BTNS entries in order by key (or NULL auth).
  PadLookup MatchPeer(const PeerCredentials& peer) const;

  // Narrows the peer's proposed selectors (its side of the pair) to the
  // entry's child SA authorization data. For BTNS entries the result is
  // further cut so that it never touches an address range authorised for a
  // non-BTNS entry (RFC 5386 second PAD pass).
  TsAuthorization AuthorizeChildSelectors(
      const PadEntry& entry, const std::vector<TrafficSelector>& proposed) const;

  // Address ranges authorised for non-BTNS entries.
  std::vector<IpRange> AuthenticatedRanges() const;

 private:
  std::vector<PadEntry> entries_;
};

// RFC 7619 section 5: an unauthenticated peer MUST NOT replace the Child
// SAs of an authenticated peer. The state machine asks before it lets a new
// CHILD_SA take over selectors held by another IKE SA.
struct PeerStanding {
  bool authenticated = false;
  std::string recorded_identity;
};
enum class ReplaceDecision { kAllowed, kDeniedUnauthenticatedOverAuthenticated };
ReplaceDecision MayReplaceChildSa(const PeerStanding& current_owner,
                                  const PeerStanding& newcomer);

}  // namespace ike::policy
