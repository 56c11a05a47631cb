// The seam between the BTNS API server and the daemon: what the server asks
// of the SA table and the kernel, and the SA events it must be told about.
// The daemon implements SaDirectory; tests use FakeSaDirectory.
#ifndef BTNS_API_SA_DIRECTORY_H_
#define BTNS_API_SA_DIRECTORY_H_

#include <sys/types.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "ike/policy/address.h"

namespace btns_api {

using ike::policy::IpAddress;
using ike::policy::TrafficSelector;

struct Endpoint {
  IpAddress address;
  uint16_t port = 0;
  bool operator==(const Endpoint&) const = default;
};

// One transport conversation as the socket sees it.
struct FiveTuple {
  Endpoint local;
  Endpoint remote;
  uint8_t protocol = 0;  // IPPROTO_TCP, IPPROTO_UDP, ...
  bool operator==(const FiveTuple&) const = default;
  std::string ToString() const;
};

// Who is calling: SO_PEERCRED (pid, effective uid and gid) and
// SO_PEERGROUPS (supplementary groups) of the API connection, both taken by
// the kernel at connect() (see ReadPeerCaller in btns_api/admin.h).
struct Caller {
  pid_t pid = 0;
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;  // supplementary; empty when unknown
  // The primary group followed by the supplementary ones: what system
  // policy (api.grants, api.admin_group) matches a group against.
  std::vector<uint32_t> AllGroups() const;
  bool InGroup(gid_t group) const;
};

// How the peer proved its identity (maps onto IPSEC_API_ATTR_authMeth_*).
enum class AuthKind {
  kNull,         // RFC 7619 NULL authentication: no key at all
  kRawKey,       // RFC 7670 raw key (or self-signed cert) matched by BTNS PAD
  kPinnedKey,    // a raw key known in advance (leap of faith / pinned)
  kCertificate,  // certificate chain to a trust anchor
  kPsk,          // pre-shared key
};

struct PeerIdentity {
  AuthKind auth = AuthKind::kNull;
  // The identity the PAD recorded: the asserted ID for authenticated peers,
  // "sha256:<hex>" for raw keys, "null" for NULL authentication.
  std::string id;
  std::optional<std::array<uint8_t, 32>> spki_sha256;
  // The subjectPublicKey BIT STRING contents (channel binding input).
  std::vector<uint8_t> public_key;
  std::string certificate_dn;
  std::string certificate_authority_dn;
};

// What the daemon knows about the SA protecting a conversation.
struct SaInfo {
  uint64_t child_sa_id = 0;  // local handle, never an SPI
  uint64_t ike_sa_id = 0;    // local handle of the IKE SA
  // Set when this IKE SA replaced another by rekeying (RFC 7296 2.18):
  // a NULL-authenticated peer stays "the same" only along this chain.
  uint64_t predecessor_ike_sa_id = 0;
  PeerIdentity peer;
  PeerIdentity local;
  bool privacy = true;
  bool integrity = true;
  bool tunnel = false;
  bool compression = false;
  std::string policy_name;
  std::string algorithms;  // e.g. "ENCR_AES_GCM_16-256"
  // The kernel reqid of the child SA's ESP SAs (the same across its
  // rekeys); 0 when unknown. A latched socket is pinned to it.
  uint32_t kernel_reqid = 0;
  // The child SA's traffic selectors (local side, remote side).
  std::vector<TrafficSelector> local_ts;
  std::vector<TrafficSelector> remote_ts;

  bool Covers(const FiveTuple& t) const;
  // Covers the local address, port and protocol (listener 3-tuple).
  bool CoversLocal(const Endpoint& local, uint8_t protocol) const;
};

enum class SaEventKind {
  kUp,           // a child SA was installed (new or rekeyed)
  kDown,         // a child SA was deleted or expired
  kPeerChanged,  // the IKE SA behind a child SA now has another peer
};

struct SaEvent {
  SaEventKind kind = SaEventKind::kUp;
  SaInfo sa;
};

// Failure reasons shared with the client (IPSEC_API_WHY_* in the C header).
enum class Why : uint32_t {
  kNone = 0,
  kMalformed = 1,
  kUnsupportedVersion = 2,
  kNoDescriptor = 3,
  kNotASocket = 4,
  kNotConnected = 5,
  kNotProtected = 6,
  kPolicyForbids = 7,
  kPrivilegeRequired = 8,
  kPeerMismatch = 9,
  kSaSetupFailed = 10,
  kLatchBroken = 11,
  kLatchConflict = 12,
  kNotSupported = 13,
  kTooLarge = 14,
  kUnknownLatch = 15,
  kInternal = 16,
  kDaemonUnavailable = 17,
  kAuthenticationFailed = 18,
  kLocalSpdBlock = 19,
  kPeerSpdBlock = 20,
  kAdministrativelyClosed = 21,
  kCongruentSa = 22,
  kConflictCleared = 23,
  kListenerSpawned = 24,
  kBadArgument = 25,
  kCredentialFile = 26,
};

struct Status {
  int error = 0;  // errno value; 0 for success
  Why why = Why::kNone;
  std::string message;
  bool ok() const { return error == 0; }
  static Status Ok() { return {}; }
  static Status Fail(int err, Why why, std::string message) {
    return {err, why, std::move(message)};
  }
};

// An application's request for protection on one of its sockets (from
// ipsec_set_socket_pToken or a sendmsg() with a pToken).
struct ProtectionRequest {
  Caller caller;
  // The application's socket, valid only during the call. The daemon may
  // set a per-socket XFRM policy on it (kernel_glue SetSocketPolicy) or dup
  // it; it must not keep a dup past the connection's life.
  int socket_fd = -1;
  std::optional<FiveTuple> conversation;  // when the socket is connected
  bool listener = false;
  std::optional<std::string> local_identity;   // unset: system policy
  std::optional<std::string> remote_identity;  // unset: any the PAD allows
  // Credential file opened by the client library (never a path): -1 if
  // none. Valid only during the call; dup it to keep it.
  int credential_fd = -1;
  std::string credential_uri;
  // IPSEC_BTNS_CREDENTIAL: a key in the caller's PKCS#11 token, registered
  // by its library (Server::RequestSignature asks it to sign); 0: none.
  uint64_t signer_id = 0;
  std::vector<uint8_t> signer_spki;  // DER SubjectPublicKeyInfo of that key
  bool require_privacy = false;
  bool require_integrity = false;
  bool require_tunnel = false;
  std::string policy_name;
};

class SaEventSink {
 public:
  virtual ~SaEventSink() = default;
  // Called on the server's thread, before the SA carries traffic where
  // possible, so a latch breaks before data can reach the new peer.
  virtual void OnSaEvent(const SaEvent& event) = 0;
};

class SaDirectory {
 public:
  virtual ~SaDirectory() = default;
  // The child SAs whose selectors cover the conversation, newest last.
  virtual std::vector<SaInfo> FindSas(const FiveTuple& conversation) = 0;
  // Installs a per-socket policy and/or starts IKE so that the socket's
  // traffic is negotiated with the requested identities; enforces system
  // policy (which local identities this caller may present, never less
  // protection than the SPD demands).
  virtual Status RequestProtection(const ProtectionRequest& request) = 0;
  // One sink at a time; nullptr detaches.
  virtual void Subscribe(SaEventSink* sink) = 0;
  // Binds a latched socket to the SA it latched on (a per-socket policy
  // that only that SA's reqid satisfies), so that its traffic never leaves
  // under another SA, whatever peer that SA has. Called with the socket
  // during the request only. Default: no enforcement in the kernel.
  virtual Status PinSocket(int /*socket_fd*/, const SaInfo& /*sa*/) {
    return Status::Ok();
  }
  // A failure recorded for this socket after an earlier request (e.g. the
  // host at the connected address authenticated as someone other than the
  // pToken asked for), so the application can read why connect() failed.
  virtual std::optional<Status> SocketFailure(int /*socket_fd*/) {
    return std::nullopt;
  }
  // When the next time-driven decision is due (e.g. a socket that has
  // waited too long for its SA is refused), so the server's loop can wake
  // for it without a request; ExpireDue() makes the decisions due by now.
  virtual std::optional<std::chrono::steady_clock::time_point> NextDeadline() {
    return std::nullopt;
  }
  virtual void ExpireDue() {}
};

}  // namespace btns_api

#endif  // BTNS_API_SA_DIRECTORY_H_
