#include "btns_api/latch.h"

namespace btns_api {

const char* LatchStateName(LatchState s) {
  switch (s) {
    case LatchState::kNone: return "NOT_LATCHED";
    case LatchState::kListener: return "LISTENER";
    case LatchState::kEstablished: return "ESTABLISHED";
    case LatchState::kBroken: return "BROKEN";
    case LatchState::kClosed: return "CLOSED";
  }
  return "UNKNOWN";
}

bool SamePeer(const SaInfo& latched, const SaInfo& candidate) {
  const PeerIdentity& a = latched.peer;
  const PeerIdentity& b = candidate.peer;
  if (a.auth == AuthKind::kNull || b.auth == AuthKind::kNull) {
    if (a.auth != b.auth) return false;
    return candidate.ike_sa_id == latched.ike_sa_id ||
           candidate.predecessor_ike_sa_id == latched.ike_sa_id;
  }
  // Key-based identities compare by key: the ID payload of a raw-key peer
  // carries no authority (RFC 5386 section 3).
  if (a.spki_sha256 && b.spki_sha256) return *a.spki_sha256 == *b.spki_sha256;
  return a.auth == b.auth && a.id == b.id &&
         a.certificate_dn == b.certificate_dn &&
         a.certificate_authority_dn == b.certificate_authority_dn;
}

bool Congruent(const SaInfo& latched, const SaInfo& candidate) {
  // Algorithms may change on rekey (c-api-04 allows it); the protection
  // kind and mode may not.
  return SamePeer(latched, candidate) &&
         latched.privacy == candidate.privacy &&
         latched.integrity == candidate.integrity &&
         latched.tunnel == candidate.tunnel;
}

namespace {

bool MatchesExpected(const std::optional<std::string>& expected,
                     const SaInfo& sa) {
  return !expected || *expected == sa.peer.id;
}

bool IsUnspecified(const IpAddress& a) { return a.value == 0; }

}  // namespace

Latch& LatchDatabase::CreateConnectionLatch(
    uint64_t owner, uint64_t socket_key, const FiveTuple& conversation,
    const std::vector<SaInfo>& current,
    std::optional<std::string> expected_peer) {
  Latch latch;
  latch.id = next_id_++;
  latch.owner = owner;
  latch.socket_key = socket_key;
  latch.conversation = conversation;
  latch.expected_peer = std::move(expected_peer);
  latch.state = LatchState::kEstablished;
  for (const SaInfo& sa : current) {
    if (!latch.latched && MatchesExpected(latch.expected_peer, sa)) {
      latch.latched = sa;
    } else if (!latch.latched || !Congruent(*latch.latched, sa)) {
      latch.conflicting[sa.child_sa_id] = sa;
    }
  }
  if (!latch.conflicting.empty()) latch.state = LatchState::kBroken;
  auto [it, inserted] = latches_.emplace(latch.id, std::move(latch));
  return it->second;
}

Latch& LatchDatabase::CreateListenerLatch(uint64_t owner, uint64_t socket_key,
                                          const Endpoint& local,
                                          uint8_t protocol) {
  Latch latch;
  latch.id = next_id_++;
  latch.owner = owner;
  latch.socket_key = socket_key;
  latch.conversation.local = local;
  latch.conversation.protocol = protocol;
  latch.state = LatchState::kListener;
  auto [it, inserted] = latches_.emplace(latch.id, std::move(latch));
  return it->second;
}

Latch* LatchDatabase::Find(uint64_t latch_id) {
  auto it = latches_.find(latch_id);
  return it == latches_.end() ? nullptr : &it->second;
}

Latch* LatchDatabase::FindBySocket(uint64_t owner, uint64_t socket_key) {
  for (auto& [id, latch] : latches_) {
    if (latch.owner == owner && latch.socket_key == socket_key) return &latch;
  }
  return nullptr;
}

Latch* LatchDatabase::FindByConversation(uint64_t owner, const Endpoint& local,
                                         const Endpoint& remote) {
  for (auto& [id, latch] : latches_) {
    if (latch.owner == owner && latch.state != LatchState::kListener &&
        latch.conversation.local == local && latch.conversation.remote == remote) {
      return &latch;
    }
  }
  return nullptr;
}

Latch* LatchDatabase::FindListener(uint64_t owner, const Endpoint& local) {
  for (auto& [id, latch] : latches_) {
    if (latch.owner == owner && latch.state == LatchState::kListener &&
        latch.conversation.local == local) {
      return &latch;
    }
  }
  return nullptr;
}

Latch* LatchDatabase::FindListenerFor(uint64_t owner, const FiveTuple& t) {
  for (auto& [id, latch] : latches_) {
    if (latch.owner != owner || latch.state != LatchState::kListener) continue;
    const Endpoint& l = latch.conversation.local;
    if (latch.conversation.protocol == t.protocol && l.port == t.local.port &&
        (IsUnspecified(l.address) || l.address == t.local.address)) {
      return &latch;
    }
  }
  return nullptr;
}

size_t LatchDatabase::CountOwned(uint64_t owner) const {
  size_t n = 0;
  for (const auto& [id, latch] : latches_) n += latch.owner == owner;
  return n;
}

bool LatchDatabase::Release(uint64_t owner, uint64_t latch_id) {
  auto it = latches_.find(latch_id);
  if (it == latches_.end() || it->second.owner != owner) return false;
  latches_.erase(it);
  return true;
}

void LatchDatabase::ReleaseOwner(uint64_t owner) {
  std::erase_if(latches_,
                [owner](const auto& kv) { return kv.second.owner == owner; });
}

std::vector<LatchAlert> LatchDatabase::CloseAll(const std::string& message) {
  std::vector<LatchAlert> alerts;
  for (auto& [id, latch] : latches_) {
    LatchState old = latch.state;
    latch.state = LatchState::kClosed;
    alerts.push_back(MakeAlert(latch, old, Why::kAdministrativelyClosed,
                               message, std::nullopt));
  }
  latches_.clear();
  return alerts;
}

LatchAlert LatchDatabase::MakeAlert(const Latch& latch, LatchState old_state,
                                    Why why, std::string message,
                                    std::optional<PeerIdentity> peer) const {
  LatchAlert a;
  a.latch_id = latch.id;
  a.owner = latch.owner;
  a.subscription_id = latch.subscription_id;
  a.old_state = old_state;
  a.new_state = latch.state;
  a.why = why;
  a.message = std::move(message);
  a.conversation = latch.conversation;
  a.peer = std::move(peer);
  return a;
}

std::vector<LatchAlert> LatchDatabase::OnSaEvent(const SaEvent& event) {
  std::vector<LatchAlert> alerts;
  for (auto& [id, latch] : latches_) {
    if (latch.state != LatchState::kEstablished &&
        latch.state != LatchState::kBroken) {
      continue;
    }
    auto more = Evaluate(latch, event);
    alerts.insert(alerts.end(), more.begin(), more.end());
  }
  return alerts;
}

std::vector<LatchAlert> LatchDatabase::Evaluate(Latch& latch,
                                                const SaEvent& event) {
  const SaInfo& sa = event.sa;
  const LatchState old = latch.state;
  std::vector<LatchAlert> alerts;
  if (event.kind == SaEventKind::kDown) {
    latch.conflicting.erase(sa.child_sa_id);
  } else if (sa.Covers(latch.conversation)) {
    if (!latch.latched && MatchesExpected(latch.expected_peer, sa)) {
      latch.latched = sa;  // first SA of a waiting latch
      latch.conflicting.erase(sa.child_sa_id);
    } else if (latch.latched && Congruent(*latch.latched, sa)) {
      // A rekey or congruent replacement is invisible; follow the IKE SA
      // chain so a NULL peer's later rekeys stay recognisable.
      latch.latched->ike_sa_id = sa.ike_sa_id;
      latch.latched->child_sa_id = sa.child_sa_id;
      latch.latched->algorithms = sa.algorithms;
      latch.conflicting.erase(sa.child_sa_id);
    } else {
      latch.conflicting[sa.child_sa_id] = sa;
    }
  } else {
    // A kPeerChanged or rekey may move an SA off the conversation.
    latch.conflicting.erase(sa.child_sa_id);
  }
  latch.state = latch.conflicting.empty() ? LatchState::kEstablished
                                          : LatchState::kBroken;
  if (latch.state == old) return alerts;
  if (latch.state == LatchState::kBroken) {
    const SaInfo& culprit = latch.conflicting.begin()->second;
    std::string message =
        "an SA with peer '" + culprit.peer.id + "' covers " +
        latch.conversation.ToString() + " latched to peer '" +
        (latch.latched ? latch.latched->peer.id
                       : "(expected " + latch.expected_peer.value_or("?") + ")") +
        "'";
    alerts.push_back(MakeAlert(latch, old, Why::kLatchBroken,
                               std::move(message), culprit.peer));
  } else {
    alerts.push_back(MakeAlert(
        latch, old, Why::kConflictCleared,
        "the conflicting SA is gone; " + latch.conversation.ToString() +
            " is protected only by the latched peer again",
        latch.latched ? std::optional<PeerIdentity>(latch.latched->peer)
                      : std::nullopt));
  }
  return alerts;
}

}  // namespace btns_api
