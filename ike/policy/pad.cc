#include "ike/policy/pad.h"

namespace ike::policy {

std::string FingerprintToString(const Sha256& fp) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string s = "sha256:";
  for (uint8_t b : fp) {
    s += kHex[b >> 4];
    s += kHex[b & 15];
  }
  return s;
}

std::optional<Sha256> ParseFingerprint(std::string_view text) {
  constexpr std::string_view kPrefix = "sha256:";
  if (text.substr(0, kPrefix.size()) == kPrefix) text.remove_prefix(kPrefix.size());
  std::string hex;
  for (char c : text)
    if (c != ':') hex += c;  // accept "ab:cd:..." too
  if (hex.size() != 64) return std::nullopt;
  Sha256 out{};
  for (size_t i = 0; i < 32; ++i) {
    int v = 0;
    for (int k = 0; k < 2; ++k) {
      char c = hex[2 * i + k];
      int d = (c >= '0' && c <= '9')   ? c - '0'
              : (c >= 'a' && c <= 'f') ? c - 'a' + 10
              : (c >= 'A' && c <= 'F') ? c - 'A' + 10
                                       : -1;
      if (d < 0) return std::nullopt;
      v = v * 16 + d;
    }
    out[i] = static_cast<uint8_t>(v);
  }
  return out;
}

std::string_view PeerAuthMethodName(PeerAuthMethod m) {
  switch (m) {
    case PeerAuthMethod::kPsk: return "psk";
    case PeerAuthMethod::kCa: return "ca";
    case PeerAuthMethod::kPinnedKey: return "pubkey";
    case PeerAuthMethod::kBtns: return "btns";
  }
  return "?";
}

std::string_view PadRejectionName(PadRejection r) {
  switch (r) {
    case PadRejection::kNoMatchingEntry: return "no PAD entry matches";
    case PadRejection::kAuthMethodMismatch:
      return "ID matched an authenticated entry with another auth method";
    case PadRejection::kPinnedKeyMismatch:
      return "public key differs from the pinned key";
    case PadRejection::kNullAuthForAuthenticatedEntry:
      return "NULL authentication for an ID that requires authentication";
  }
  return "?";
}

const PadEntry* Pad::Find(std::string_view name) const {
  for (const auto& e : entries_)
    if (e.name == name) return &e;
  return nullptr;
}

namespace {

bool MethodFits(const PadEntry& e, PresentedAuth a) {
  switch (e.auth) {
    case PeerAuthMethod::kPsk: return a == PresentedAuth::kSharedKey;
    case PeerAuthMethod::kCa: return a == PresentedAuth::kCertificate;
    case PeerAuthMethod::kPinnedKey:
      return a == PresentedAuth::kRawPublicKey ||
             a == PresentedAuth::kCertificate;
    case PeerAuthMethod::kBtns: return false;
  }
  return false;
}

}  // namespace

PadLookup Pad::MatchPeer(const PeerCredentials& peer) const {
  // Pass 1: non-BTNS entries by the asserted ID. The first entry whose ID
  // matcher fits decides; a wrong proof is a rejection, never a fallback.
  for (const auto& e : entries_) {
    if (e.IsBtns() || !e.peer_id.Matches(peer.id)) continue;
    if (peer.auth == PresentedAuth::kNull)
      return {std::nullopt, PadRejection::kNullAuthForAuthenticatedEntry};
    if (!MethodFits(e, peer.auth))
      return {std::nullopt, PadRejection::kAuthMethodMismatch};
    if (e.auth == PeerAuthMethod::kPinnedKey) {
      bool known = false;
      for (const auto& k : e.pinned_keys)
        if (peer.spki_sha256 && *peer.spki_sha256 == k) known = true;
      if (!known) return {std::nullopt, PadRejection::kPinnedKeyMismatch};
    }
    return {PadMatch{&e, true, peer.id.ToString()}, {}};
  }
  // Pass 2: the peer's ID is coerced to its public key (RFC 5386), or to
  // "null" for NULL authentication, and BTNS entries are searched.
  for (const auto& e : entries_) {
    if (!e.IsBtns()) continue;
    if (peer.auth == PresentedAuth::kNull) {
      if (e.btns.accept_null && e.btns.keys.empty())
        return {PadMatch{&e, false, "null"}, {}};
      continue;
    }
    bool key_based = peer.auth == PresentedAuth::kRawPublicKey ||
                     peer.auth == PresentedAuth::kCertificate;
    if (!key_based || !peer.spki_sha256 || !e.btns.accept_raw_key) continue;
    bool key_ok = e.btns.keys.empty();
    for (const auto& k : e.btns.keys)
      if (k == *peer.spki_sha256) key_ok = true;
    if (key_ok)
      return {PadMatch{&e, false, FingerprintToString(*peer.spki_sha256)}, {}};
  }
  return {std::nullopt, PadRejection::kNoMatchingEntry};
}

std::vector<IpRange> Pad::AuthenticatedRanges() const {
  std::vector<IpRange> out;
  for (const auto& e : entries_)
    if (!e.IsBtns())
      for (const auto& ts : e.remote_ts) out.push_back(ts.addresses);
  return out;
}

TsAuthorization Pad::AuthorizeChildSelectors(
    const PadEntry& entry, const std::vector<TrafficSelector>& proposed) const {
  TsAuthorization out;
  out.narrowed = NarrowSelectors(proposed, entry.remote_ts);
  if (out.narrowed.empty()) {
    out.rejection = TsRejection::kOutsideAllowed;
    return out;
  }
  if (entry.IsBtns()) {
    out.narrowed = SubtractAddresses(out.narrowed, AuthenticatedRanges());
    if (out.narrowed.empty())
      out.rejection = TsRejection::kClaimsAuthenticatedAddresses;
  }
  return out;
}

ReplaceDecision MayReplaceChildSa(const PeerStanding& current_owner,
                                  const PeerStanding& newcomer) {
  if (current_owner.authenticated && !newcomer.authenticated)
    return ReplaceDecision::kDeniedUnauthenticatedOverAuthenticated;
  return ReplaceDecision::kAllowed;
}

}  // namespace ike::policy
