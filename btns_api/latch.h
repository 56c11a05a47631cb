// Connection latches (RFC 5660 section 2.3): the Latch Database. Pure
// logic: the server feeds it SA events and gets back the alerts to deliver.
#ifndef BTNS_API_LATCH_H_
#define BTNS_API_LATCH_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "btns_api/sa_directory.h"

namespace btns_api {

// Numeric values are IPSEC_LATCH_* of the C header.
enum class LatchState : uint32_t {
  kNone = 0,  // not latched
  kListener = 1,
  kEstablished = 2,
  kBroken = 3,
  kClosed = 4,
};
const char* LatchStateName(LatchState s);

struct Latch {
  uint64_t id = 0;
  uint64_t owner = 0;        // API connection (session) holding it
  uint64_t socket_key = 0;   // inode of the application's socket
  LatchState state = LatchState::kNone;
  FiveTuple conversation;    // listener: local endpoint and protocol only
  // Latched parameters (RFC 5660 2.1): taken from the first SA.
  std::optional<SaInfo> latched;
  // Peer the application demanded (UC2/UC3); an SA with another peer
  // conflicts even before anything is latched.
  std::optional<std::string> expected_peer;
  // Child SAs covering the conversation that conflict with the latch.
  std::map<uint64_t, SaInfo> conflicting;
  uint64_t subscription_id = 0;  // request id events go to; 0: none
};

struct LatchAlert {
  uint64_t latch_id = 0;
  uint64_t owner = 0;
  uint64_t subscription_id = 0;
  LatchState old_state = LatchState::kNone;
  LatchState new_state = LatchState::kNone;
  Why why = Why::kNone;
  std::string message;
  FiveTuple conversation;
  std::optional<PeerIdentity> peer;
};

// Same peer and the same latched protection (RFC 5660 congruence). A NULL
// peer has no key, so only its own IKE SA or that SA's rekeyed successor
// counts as the same peer.
bool SamePeer(const SaInfo& latched, const SaInfo& candidate);
bool Congruent(const SaInfo& latched, const SaInfo& candidate);

class LatchDatabase {
 public:
  // CREATE_CONNECTION_LATCH: latches on the SAs that cover the conversation
  // now. With no SA yet the latch waits (ESTABLISHED, nothing latched) and
  // latches on the first SA that appears.
  Latch& CreateConnectionLatch(uint64_t owner, uint64_t socket_key,
                               const FiveTuple& conversation,
                               const std::vector<SaInfo>& current,
                               std::optional<std::string> expected_peer);
  Latch& CreateListenerLatch(uint64_t owner, uint64_t socket_key,
                             const Endpoint& local, uint8_t protocol);

  Latch* Find(uint64_t latch_id);
  Latch* FindBySocket(uint64_t owner, uint64_t socket_key);
  // The owner's connection latch for these addresses (any protocol: one
  // local address and port pair is one socket at a time).
  Latch* FindByConversation(uint64_t owner, const Endpoint& local,
                            const Endpoint& remote);
  Latch* FindListener(uint64_t owner, const Endpoint& local);
  // The owner's LISTENER latch whose 3-tuple covers the conversation.
  Latch* FindListenerFor(uint64_t owner, const FiveTuple& conversation);

  // RELEASE_LATCH by the owner: momentary CLOSED, no alert.
  bool Release(uint64_t owner, uint64_t latch_id);
  // The owner went away (its API connection closed).
  void ReleaseOwner(uint64_t owner);
  // Administrative close of every latch (e.g. the daemon shutting down).
  std::vector<LatchAlert> CloseAll(const std::string& message);

  // Applies one SA event; returns the alerts for state changes.
  std::vector<LatchAlert> OnSaEvent(const SaEvent& event);

  size_t size() const { return latches_.size(); }
  const std::map<uint64_t, Latch>& all() const { return latches_; }
  size_t CountOwned(uint64_t owner) const;

 private:
  std::vector<LatchAlert> Evaluate(Latch& latch, const SaEvent& event);
  LatchAlert MakeAlert(const Latch& latch, LatchState old_state, Why why,
                       std::string message,
                       std::optional<PeerIdentity> peer) const;

  uint64_t next_id_ = 1;
  std::map<uint64_t, Latch> latches_;
};

}  // namespace btns_api

#endif  // BTNS_API_LATCH_H_
