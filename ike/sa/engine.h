// The IKEv2 protocol engine (RFC 7296) as a sans-I/O state machine.
//
// The daemon owns one SaManager per protocol thread (see shard_bits). It turns everything that
// happens outside (a UDP datagram, a timer expiring, an operator command, a
// kernel ACQUIRE/EXPIRE) into an Event, hands it to SaManager::Handle together
// with the current monotonic time, and executes the Actions it gets back, in
// order. The engine never touches a socket, a clock, a thread or the kernel;
// time and randomness are injected, so a test can run any number of
// SaManagers in one process against a fake clock.
//
// Contract for the code executing actions:
//   * Actions are returned in the order they must be executed. In
//     particular an InstallChildSa for the inbound direction precedes the
//     SendDatagram that lets the peer start using it, and the outbound
//     direction is installed before the SaUp/ChildSaUp notification, with
//     one exception: as responder of a CHILD_SA rekey the new outbound SA
//     is installed only when the peer deletes the CHILD_SA it replaces
//     (RFC 7296 2.8), after ChildSaUp and before the old SA's
//     DeleteChildSa.
//   * Timers are one-shot. ArmTimer with an id that is already armed
//     re-arms it (the old deadline is forgotten). A TimerFired for an id the
//     engine has cancelled or never armed is ignored, so races between a
//     CancelTimer and an expiry already queued are harmless.
//   * ESP SPIs are allocated synchronously through the injected SpiAllocator
//     (the daemon backs it with XFRM_MSG_ALLOCSPI); every SPI it hands out is
//     given back with SpiAllocator::Release or consumed by an InstallChildSa
//     (inbound) whose SA is later removed with DeleteChildSa.
//   * The engine never throws. Untrusted bytes are bounds-checked by
//     ike/wire; every failure is reported as a Log action with a typed
//     FailureReason, and, when the protocol says so, a notify to the peer.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "ike/crypto/auth.h"
#include "ike/crypto/credentials.h"
#include "ike/crypto/random.h"
#include "ike/crypto/result.h"
#include "ike/crypto/transforms.h"
#include "ike/policy/address.h"
#include "ike/policy/pad.h"
#include "ike/policy/snapshot.h"
#include "ike/policy/spd.h"
#include "ike/wire/constants.h"

namespace ike::sa {

// ------------------------------------------------------------------ time

// A monotonic clock the engine never reads: the caller passes "now" with
// every event. Its epoch is arbitrary (the daemon uses steady_clock's).
struct EngineClock {
  using duration = std::chrono::milliseconds;
  using rep = duration::rep;
  using period = duration::period;
  using time_point = std::chrono::time_point<EngineClock>;
  static constexpr bool is_steady = true;
};
using Instant = EngineClock::time_point;
using Duration = std::chrono::milliseconds;

// ------------------------------------------------------------------ handles

// Names one IKE SA for the life of the conversation with the peer: the handle
// stays the same across IKE SA rekeys (RFC 7296 section 2.18), so consumers
// (BTNS API pTokens, btnsctl) do not have to follow SPI changes. Never 0.
using IkeSaHandle = uint64_t;
// Names one CHILD_SA (one pair of ESP SAs). A rekeyed CHILD_SA gets a new
// handle; ChildSaUp carries the handle it replaces. Never 0.
using ChildSaHandle = uint64_t;
// Opaque timer name for ArmTimer/CancelTimer/TimerFired. Never 0.
using TimerId = uint64_t;

struct Endpoint {
  policy::IpAddress address;
  uint16_t port = 500;
  bool operator==(const Endpoint&) const = default;
};

// ------------------------------------------------------------------ events

// A UDP datagram from the IKE sockets. `bytes` is the IKE message itself:
// the caller strips the 4-byte non-ESP marker of port 4500 (RFC 3948) and
// drops datagrams that carry ESP or keepalives.
struct DatagramReceived {
  Endpoint local;
  Endpoint remote;
  std::vector<uint8_t> bytes;
};

struct TimerFired {
  TimerId timer = 0;
};

struct LocalCredentialOverride;

// Operator/application request to bring up protection for one SPD entry.
// The engine reuses an established IKE SA with the same peer and PAD entry
// when one exists (creating only a CHILD_SA), otherwise starts a new one.
struct InitiateRequest {
  std::string spd_entry;  // PROTECT entry name in the policy snapshot
  // Where to send IKE_SA_INIT. Defaults: the entry's tunnel_remote, or the
  // single-host remote selector of the entry.
  std::optional<Endpoint> remote;
  std::optional<Endpoint> local;  // source address/port for IKE; default any
  // The packet that triggered the request (narrows the proposed TS to it, in
  // addition to the entry's selector, RFC 7296 section 2.9).
  std::optional<policy::PacketFiveTuple> trigger;
  // Present this identity and credential in IKE_AUTH instead of the local
  // identity the PAD entry names (the peer's PAD still decides whether it
  // accepts it). Such a request always starts an IKE SA of its own, which
  // no other request reuses, and its CHILD_SA proposes only `trigger`'s
  // flow (one connection), or the entry's selectors without a trigger.
  std::shared_ptr<const LocalCredentialOverride> local_credential{};
  // Echoed in IkeSaUp and IkeSaDown of the IKE SA this request starts, so
  // the requester learns its outcome; 0 for none.
  uint64_t request_tag = 0;
};

// The kernel found outbound traffic matching a trap policy without an SA
// (XFRM_MSG_ACQUIRE). Treated like an InitiateRequest for the SPD entry that
// covers the packet; repeated acquires while negotiating are absorbed. An
// entry with start: none (responder only) does not initiate on its holding
// policy's acquire: it is logged and the packet stays held back by the
// kernel until the peer brings the CHILD_SA up.
struct KernelAcquire {
  policy::PacketFiveTuple packet;
  std::optional<Endpoint> local;
  // An application's per-socket policy (BTNS API) raised it: the
  // application asked for protection of this flow, which initiates even
  // for a start: none entry.
  bool from_socket = false;
};

struct RekeyRequest {
  // Exactly one of these: the IKE SA itself, or one of its CHILD_SAs.
  IkeSaHandle ike_sa = 0;
  ChildSaHandle child_sa = 0;
};

struct DeleteRequest {
  // child_sa == 0: delete the IKE SA with all its CHILD_SAs.
  IkeSaHandle ike_sa = 0;
  ChildSaHandle child_sa = 0;
};

// The kernel reported a lifetime expiry (XFRM_MSG_EXPIRE) of one ESP SA.
// Soft: rekey the CHILD_SA; hard: the kernel has removed it, delete the
// CHILD_SA (both directions) and tell the peer.
struct KernelExpire {
  policy::IpAddress destination;
  uint32_t spi = 0;  // host byte order
  bool hard = false;
};

// The kernel received UDP-encapsulated ESP for one of our inbound SAs from
// another address or port than the SA names (XFRM_MSG_MAPPING): the peer's
// NAT mapping changed (RFC 3948, RFC 7296 section 2.23). The packet passed
// the SA's integrity check, so it is as authentic as an IKE message.
struct KernelMapping {
  policy::IpAddress destination;  // our address, as in the inbound SA
  uint32_t spi = 0;               // inbound SPI, host byte order
  Endpoint new_remote;
};

// The answer to a SignRequest: the raw signature, or why the key holder
// refused (an empty `signature`). Answers to requests the engine no longer
// waits for (the SA ended, the signer timed out) are ignored.
struct SignatureDelivered {
  IkeSaHandle ike_sa = 0;
  uint64_t request = 0;
  std::vector<uint8_t> signature;
  std::string refusal;  // when `signature` is empty: the holder's reason
};

using Event = std::variant<DatagramReceived, TimerFired, InitiateRequest,
                           KernelAcquire, RekeyRequest, DeleteRequest,
                           KernelExpire, KernelMapping, SignatureDelivered>;

// ------------------------------------------------------------------ actions

// Send an IKE message. When `non_esp_marker` is set the caller prepends the
// four zero octets of RFC 3948 (messages on port 4500).
struct SendDatagram {
  Endpoint local;
  Endpoint remote;
  std::vector<uint8_t> bytes;
  bool non_esp_marker = false;
};

struct ArmTimer {
  TimerId timer = 0;
  Duration delay{0};  // from the `now` of the event being handled
};

struct CancelTimer {
  TimerId timer = 0;
};

// The negotiated ESP transform with both its IANA and its XFRM names.
struct EspTransform {
  wire::EncrId encryption = wire::EncrId::kAesGcm16;
  uint16_t encryption_key_bits = 0;
  wire::IntegId integrity = wire::IntegId::kNone;
  bool extended_sequence_numbers = false;
  bool aead = false;
  std::string kernel_encryption;  // "rfc4106(gcm(aes))", "cbc(aes)", ...
  std::string kernel_integrity;   // "hmac(sha256)"; empty for AEAD
  size_t icv_bits = 0;            // AEAD tag or truncated HMAC length
};

// NAT traversal: ESP in UDP (RFC 3948), ports in host order.
struct UdpEncapsulation {
  uint16_t source_port = 4500;
  uint16_t destination_port = 4500;
  bool operator==(const UdpEncapsulation&) const = default;
};

enum class SaDirection : uint8_t { kInbound, kOutbound };

// Add one ESP SA to the kernel's SAD. Inbound: destination is us and `spi`
// came from our SpiAllocator. Outbound: destination is the peer, `spi` is the
// one it chose.
struct InstallChildSa {
  IkeSaHandle ike_sa = 0;
  ChildSaHandle child_sa = 0;
  SaDirection direction = SaDirection::kInbound;
  uint32_t spi = 0;  // host byte order
  policy::IpAddress source;
  policy::IpAddress destination;
  policy::IpsecMode mode = policy::IpsecMode::kTransport;
  // Same for every generation of a CHILD_SA (rekeys keep it), so the
  // policies installed with it stay valid across rekeys.
  uint32_t reqid = 0;
  EspTransform transform;
  crypto::Secret encryption_key;  // for AEAD: key || 4-byte salt
  crypto::Secret integrity_key;   // empty for AEAD
  // Traffic this SA carries, from its source's view: for outbound SAs
  // `source_ts` are our selectors, for inbound ones the peer's.
  std::vector<policy::TrafficSelector> source_ts;
  std::vector<policy::TrafficSelector> destination_ts;
  // Kernel lifetimes; soft limits already lowered by the configured jitter.
  // The hard limit is what the kernel enforces; the engine also keeps timers
  // of its own, so kernel expire events are a backup, not a requirement.
  policy::Lifetime lifetime;
  std::optional<UdpEncapsulation> encapsulation;
};

// Remove one ESP SA (identified as the kernel does: destination + SPI).
struct DeleteChildSa {
  IkeSaHandle ike_sa = 0;
  ChildSaHandle child_sa = 0;
  SaDirection direction = SaDirection::kInbound;
  policy::IpAddress destination;
  uint32_t spi = 0;
};

// The peer's NAT mapping moved to another port: the installed ESP SA keeps
// its keys, sequence numbers and counters; only its UDP encapsulation ports
// change (an SA installed with InstallChildSa and not yet deleted).
struct UpdateChildSaEncapsulation {
  IkeSaHandle ike_sa = 0;
  ChildSaHandle child_sa = 0;
  SaDirection direction = SaDirection::kInbound;
  policy::IpAddress destination;
  uint32_t spi = 0;  // host byte order
  UdpEncapsulation encapsulation;  // from the SA's source's view
};

// The peer, behind a NAT, now appears at another address (RFC 7296 section
// 2.23): install the ESP SA `spi` (installed with InstallChildSa at
// `old_destination`) again between the new addresses, with its keys,
// sequence numbers, replay window and counters. An outbound SA gets a new
// destination: the copy is added beside the old one, which a DeleteChildSa
// of `old_destination` removes once the policies name the new address. An
// inbound SA keeps its destination and SPI and is replaced in place.
struct MoveChildSa {
  IkeSaHandle ike_sa = 0;
  ChildSaHandle child_sa = 0;
  SaDirection direction = SaDirection::kInbound;
  uint32_t spi = 0;  // host byte order
  policy::IpAddress old_destination;
  policy::IpAddress source;
  policy::IpAddress destination;
  std::optional<UdpEncapsulation> encapsulation;  // from the SA's source's view
  // The traffic the SA carries now, as in InstallChildSa (transport mode
  // across a NAT names the peer's public address).
  std::vector<policy::TrafficSelector> source_ts;
  std::vector<policy::TrafficSelector> destination_ts;
};

enum class PolicyDirection : uint8_t { kIn, kOut, kForward };

// Add an IPsec policy that sends matching traffic to the SAs of `reqid`.
// Ranges that are not prefixes are split into prefixes by the caller.
// Emitted once per CHILD_SA (not again on its rekeys, which keep the reqid).
struct InstallPolicy {
  ChildSaHandle child_sa = 0;
  PolicyDirection direction = PolicyDirection::kOut;
  policy::TrafficSelector source;
  policy::TrafficSelector destination;
  policy::IpsecMode mode = policy::IpsecMode::kTransport;
  policy::IpAddress tunnel_source;  // outer addresses (also for transport)
  policy::IpAddress tunnel_destination;
  uint32_t reqid = 0;
};

struct RemovePolicy {
  ChildSaHandle child_sa = 0;
  PolicyDirection direction = PolicyDirection::kOut;
  policy::TrafficSelector source;
  policy::TrafficSelector destination;
};

// How the peer proved who it is (for the BTNS API iToken).
enum class PeerAuthKind : uint8_t {
  kSharedKey,    // AUTH method 2 against a PSK PAD entry
  kCertificate,  // signature, X.509 end-entity certificate
  kRawPublicKey, // signature, RFC 7670 raw key (pinned or BTNS)
  kNull,         // RFC 7619 NULL authentication (BTNS)
};

struct PeerIdentity {
  policy::Identity asserted_id;  // ID payload as received
  PeerAuthKind auth = PeerAuthKind::kNull;
  // SHA-256 of the peer's SubjectPublicKeyInfo (raw key or certificate).
  std::optional<policy::Sha256> spki_sha256;
  // What the PAD says we know it as (policy::PadMatch::recorded_identity).
  std::string recorded_identity;
  std::string pad_entry;
  bool authenticated = false;  // false for BTNS matches
};

// The IKE SA is established (IKE_AUTH done) or rekeyed; peer identity and
// how it authenticated, for the BTNS API.
struct IkeSaUp {
  IkeSaHandle ike_sa = 0;
  Endpoint local;
  Endpoint remote;
  bool initiator = false;
  PeerIdentity peer;
  uint64_t request_tag = 0;  // InitiateRequest::request_tag, or 0
  // What we presented: the ID text ("fqdn:alice.example") and whether it
  // came from an InitiateRequest::local_credential.
  std::string local_id;
  bool local_overridden = false;
};

struct ChildSaUp {
  IkeSaHandle ike_sa = 0;
  ChildSaHandle child_sa = 0;
  ChildSaHandle replaces = 0;  // nonzero after a CHILD_SA rekey
  std::string spd_entry;
  uint32_t inbound_spi = 0;
  uint32_t outbound_spi = 0;
  policy::IpsecMode mode = policy::IpsecMode::kTransport;
  std::vector<policy::TrafficSelector> local_ts;
  std::vector<policy::TrafficSelector> remote_ts;
  // The group of the key exchange these keys came from (PFS, RFC 7296
  // 1.3.1); kNone when they derive from SK_d and the nonces alone (IKE_AUTH,
  // or a CREATE_CHILD_SA without KE payloads).
  wire::KeGroup pfs_group = wire::KeGroup::kNone;
};

// Why something failed or ended; also carried by Log lines.
enum class FailureReason : uint8_t {
  kNone,
  kNoProposalChosen,       // no common IKE or ESP proposal
  kInvalidKePayload,       // peer rejected our group and we could not retry
  kAuthenticationFailed,   // AUTH did not verify (or peer said so)
  kPeerUnknown,            // no PAD entry for the peer's ID/credentials
  kPadAuthMismatch,        // matched an authenticated entry with other proof
  kNullAuthNotAllowed,     // NULL/BTNS peer on an authenticated entry
  kTsUnacceptable,         // traffic selectors outside SPD/PAD
  kRetransmitTimeout,      // no answer after the retransmission limit
  kHalfOpenTimeout,        // IKE_SA_INIT never followed by IKE_AUTH
  kDeadPeer,               // liveness check failed
  kDeletedByPeer,          // peer sent a Delete
  kDeletedLocally,         // operator/application asked for it
  kExpired,                // hard lifetime reached
  kRekeyed,                // replaced by a rekeyed SA (normal end)
  kInvalidSyntax,          // malformed message
  kIntegrityCheckFailed,   // SK payload did not decrypt/verify
  kInvalidSpi,             // peer does not know the SA
  kPeerError,              // any other error notify from the peer
  kPolicyMissing,          // SPD/PAD entry or credential not configured
  kInternalError,          // a crypto or allocation step failed
  kSignerRefused,          // the external key holder refused to sign, or
                           // its signature did not verify
  kSignerTimeout,          // no answer from the external key holder in time
  kNoFreeReqid,            // live CHILD_SAs hold every reqid of the range
};
std::string_view FailureReasonName(FailureReason reason);

struct IkeSaDown {
  IkeSaHandle ike_sa = 0;
  FailureReason reason = FailureReason::kNone;
  // The error notify that ended it (received or sent), if any.
  std::optional<wire::NotifyType> notify;
  uint64_t request_tag = 0;  // InitiateRequest::request_tag, or 0
};

struct ChildSaDown {
  IkeSaHandle ike_sa = 0;
  ChildSaHandle child_sa = 0;
  FailureReason reason = FailureReason::kNone;
};

// The local credential's private key is held outside the engine
// (ExternalSigner): ask its holder to sign the AUTH signed octets of one
// IKE_AUTH (RFC 7296 section 2.15) with `scheme`, and answer with a
// SignatureDelivered naming `ike_sa` and `request`. IKE_AUTH waits for the
// answer (at most ExternalSigner::timeout); retransmissions of the peer's
// IKE_AUTH request meanwhile are absorbed.
struct SignRequest {
  IkeSaHandle ike_sa = 0;
  uint64_t request = 0;  // never 0
  std::string holder;    // ExternalSigner::holder
  crypto::RawSignatureScheme scheme = crypto::RawSignatureScheme::kEcdsaSha256;
  std::vector<uint8_t> octets;  // the signed octets, not hashed
};

enum class LogLevel : uint8_t { kError, kWarning, kInfo, kDebug };

struct Log {
  LogLevel level = LogLevel::kInfo;
  IkeSaHandle ike_sa = 0;  // 0 when not about one SA
  FailureReason reason = FailureReason::kNone;
  std::string text;
};

using Action =
    std::variant<SendDatagram, ArmTimer, CancelTimer, InstallChildSa,
                 DeleteChildSa, InstallPolicy, RemovePolicy, IkeSaUp,
                 ChildSaUp, IkeSaDown, ChildSaDown, Log,
                 UpdateChildSaEncapsulation, SignRequest, MoveChildSa>;
using Actions = std::vector<Action>;

// ------------------------------------------------------------------ inputs

// ESP SPI allocation, synchronous: the daemon implements it with
// XFRM_MSG_ALLOCSPI (the kernel then holds a larval SA for the SPI), tests
// with a counter. Returns 0 on failure.
class SpiAllocator {
 public:
  virtual ~SpiAllocator() = default;
  virtual uint32_t Allocate(const policy::IpAddress& local,
                            const policy::IpAddress& remote) = 0;
  // The SPI will never be installed (negotiation failed): forget it.
  virtual void Release(const policy::IpAddress& local, uint32_t spi) = 0;
};

// A private key the engine never holds (a PKCS#11 token in a BTNS API
// client): only its public key is here; each AUTH signature is asked for
// with a SignRequest.
struct ExternalSigner {
  std::string holder;  // opaque to the engine, echoed in SignRequest
  crypto::PublicKey public_key;
  Duration timeout{10000};  // per signature; then kSignerTimeout
};

// Keys and certificates, loaded by the daemon (ike/ reads no files).
struct LocalCredential {
  std::optional<crypto::PrivateKey> private_key;
  // Used when private_key is empty.
  std::optional<ExternalSigner> external_signer;
  // End entity first; empty for raw keys (the public key of private_key,
  // or of external_signer, is then sent in CERT encoding 15, RFC 7670).
  std::vector<crypto::Certificate> certificate_chain;
};

// The identity and credential one initiation presents instead of those the
// PAD entry names (an application's own key, or a configured identity the
// application picked; InitiateRequest::local_credential). Shared by the
// request and the IKE SA it starts, which drops it after IKE_AUTH.
struct LocalCredentialOverride {
  policy::Identity id;  // sent in IDi; never NULL (a key is required)
  LocalCredential credential;
  // Used only when `credential` has no key: AUTH method 2 with this secret
  // (a configured identity whose proof is a shared key).
  std::vector<uint8_t> shared_key;
  // For logs: where the credential came from ("identity 'alice'",
  // "credential file of uid 1000").
  std::string label;
};

struct CredentialStore {
  // By policy::LocalIdentity::name.
  std::map<std::string, LocalCredential> local;
  // By file name as written in policy::PadEntry::ca_files.
  std::map<std::string, std::vector<crypto::Certificate>> trust_anchors;
  // By file name as written in policy::PadEntry::pinned_key_files: a peer
  // with a pinned key may sign without sending any CERT payload (keys
  // configured on both sides), so the key itself must be at hand.
  std::map<std::string, crypto::PublicKey> pinned_keys;
};

struct EngineSettings {
  // Retransmission of requests (RFC 7296 section 2.1): timeout doubles.
  Duration retransmit_initial{1000};
  Duration retransmit_max{30000};
  uint32_t retransmit_tries = 5;  // sends after the first before giving up
  // A responder SA without IKE_AUTH after this long is deleted.
  Duration half_open_timeout{30000};
  // Cookies (RFC 7296 section 2.6) are demanded while this many half-open
  // SAs exist; 0 demands them always.
  size_t cookie_threshold = 1000;
  Duration cookie_secret_lifetime{120000};
  // Liveness check when nothing was received for this long; 0 disables.
  Duration dpd_interval{0};
  // IKE_SA lifetime when the SPD entry has none (soft rekey, hard delete).
  Duration default_ike_soft{std::chrono::hours(3)};
  Duration default_ike_hard{std::chrono::hours(4)};
  // IKE fragmentation (RFC 7383). Encrypted messages longer than this many
  // octets (IKE header included, non-ESP marker not) are sent as fragments
  // of at most this size when the peer announced support; 0 turns it off
  // (IKEV2_FRAGMENTATION_SUPPORTED is then not announced and fragments are
  // dropped).
  size_t fragment_size = 1280;
  // Reassembly bounds, per message being collected (at most one request
  // and one response per IKE SA): more fragments or more decrypted octets
  // than this and the message is dropped.
  uint16_t max_fragments = 64;
  size_t max_reassembly_bytes = 64 * 1024;
  // Several managers in one process (one per protocol thread): the top
  // `shard_bits` bits of every IKE SPI this manager chooses, and bits 48-55
  // of every IkeSaHandle and ChildSaHandle it assigns, hold `shard_index`,
  // so a dispatcher can route a message by our SPI, or a request by its
  // handle, without asking any manager. 0 bits: a lone manager.
  uint8_t shard_bits = 0;
  uint8_t shard_index = 0;
  // The reqids this manager gives new CHILD_SAs (a rekey keeps the old
  // one): `first` to `last`, starting at `start` and wrapping to `first`.
  // Once wrapped, a reqid a live CHILD_SA still holds is skipped; with
  // every one held, the CHILD_SA is refused. Several managers in one process
  // get disjoint ranges, so no two CHILD_SAs share a kernel reqid.
  struct ReqidRange {
    uint32_t first = 1;
    uint32_t last = UINT32_MAX;
    uint32_t start = 1;  // clamped into [first, last]
  };
  ReqidRange reqids;
};

// A read-only view of one IKE SA, for btnsctl and the BTNS API.
enum class ChildSaState : uint8_t {
  kActive,
  kRekeyed,   // replaced by a rekey; kept until its Delete exchange completes
  kDeleting,  // a Delete of it is queued or under way
};
struct ChildSaView {
  ChildSaHandle handle = 0;
  ChildSaState state = ChildSaState::kActive;
  std::string spd_entry;
  uint32_t inbound_spi = 0;
  uint32_t outbound_spi = 0;
  std::vector<policy::TrafficSelector> local_ts;
  std::vector<policy::TrafficSelector> remote_ts;
};
enum class IkeSaState : uint8_t {
  kConnecting,   // IKE_SA_INIT/IKE_AUTH in progress
  kEstablished,
  kDeleting,
};
struct IkeSaView {
  IkeSaHandle handle = 0;
  IkeSaState state = IkeSaState::kConnecting;
  bool initiator = false;
  uint64_t initiator_spi = 0;
  uint64_t responder_spi = 0;
  Endpoint local;
  Endpoint remote;
  std::optional<PeerIdentity> peer;
  // The old SPIs of an IKE SA that a rekey replaced: the SA itself (its
  // handle, CHILD_SAs and peer) lives on under the new SPIs; this entry,
  // with a handle of its own, only waits for or runs the Delete exchange
  // of the old SPIs (state kDeleting, no children).
  bool rekeyed = false;
  // The negotiated IKE SA transforms (meaningful once established).
  crypto::TransformSet transforms;
  std::vector<ChildSaView> children;
};

// ------------------------------------------------------------------ manager

class SaManagerImpl;

// All IKE SAs of the host: dispatches datagrams by IKE SPI (a responder SA is
// created for each acceptable IKE_SA_INIT request), tracks half-open SAs and
// cookies, owns every timer. Not thread-safe: one event at a time.
class SaManager {
 public:
  // `random` and `spis` must outlive the manager.
  SaManager(EngineSettings settings, policy::PolicySnapshotPtr policy,
            CredentialStore credentials, crypto::RandomSource& random,
            SpiAllocator& spis);
  ~SaManager();
  SaManager(const SaManager&) = delete;
  SaManager& operator=(const SaManager&) = delete;

  // The one entry point: handle an event at time `now`, return what to do.
  Actions Handle(const Event& event, Instant now);
  // Same, appending to `out` (no allocation of a fresh vector per event).
  void Handle(const Event& event, Instant now, Actions& out);

  // New policy for new negotiations; existing SAs keep theirs until rekeyed.
  void UpdatePolicy(policy::PolicySnapshotPtr policy);
  void UpdateCredentials(CredentialStore credentials);

  size_t ike_sa_count() const;
  size_t half_open_count() const;
  // IKE_SA_INIT requests answered with a COOKIE demand (RFC 7296 2.6).
  uint64_t cookies_demanded() const;
  size_t child_sa_count() const;
  std::vector<IkeSaView> List() const;
  std::optional<IkeSaView> Find(IkeSaHandle handle) const;

 private:
  std::unique_ptr<SaManagerImpl> impl_;
};

}  // namespace ike::sa
