// The daemon's only way into the kernel's IPsec state (SAD and SPD).
//
// The IKE state machine's actions are executed against XfrmInterface. Two
// implementations exist: XfrmNetlink (the real kernel, through XFRM netlink)
// and XfrmInMemory (unit tests of ike/ and the daemon). Nothing here depends
// on libnl or kernel headers, so callers can include it freely.
#ifndef KERNEL_GLUE_XFRM_INTERFACE_H_
#define KERNEL_GLUE_XFRM_INTERFACE_H_

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "common/result.h"

namespace kernel_glue {

// ---------------------------------------------------------------- errors

// A failed kernel (or in-memory) operation: what was attempted, the errno the
// kernel answered, and the kernel's extended-ack text when it sent one.
struct KernelError {
  std::string operation;       // e.g. "XFRM_MSG_NEWSA spi=0x1234 dst=192.0.2.2"
  int error_number = 0;        // positive errno value (EEXIST, ENOENT, ...)
  std::string kernel_message;  // NLMSGERR_ATTR_MSG, empty when absent

  std::string ToString() const;
};

// A value or a KernelError; success or a KernelError.
template <typename T>
using Result = btnsd::common::Result<T, KernelError>;
using Status = btnsd::common::Status<KernelError>;

// ---------------------------------------------------------------- values

enum class AddressFamily : uint8_t { kIpv4, kIpv6 };

// An IPv4 or IPv6 address in network byte order (IPv4 uses bytes 0..3).
struct IpAddress {
  AddressFamily family = AddressFamily::kIpv4;
  std::array<uint8_t, 16> bytes{};

  // Parses dotted-quad or RFC 4291 text; nullopt when it is neither.
  static std::optional<IpAddress> Parse(std::string_view text);
  static IpAddress Any(AddressFamily family);
  std::string ToString() const;
  size_t size() const { return family == AddressFamily::kIpv4 ? 4 : 16; }
  bool operator==(const IpAddress& other) const = default;
};

inline constexpr uint8_t kIpProtoEsp = 50;

enum class Mode : uint8_t { kTransport, kTunnel };

// Policy directions (RFC 4301 SPD-I / SPD-O, plus Linux's forward table).
enum class Direction : uint8_t { kIn, kOut, kFwd };

// Traffic selector: addresses with prefix lengths, optional upper protocol
// (0 = any) and ports (0 = any). Both addresses share one family.
struct Selector {
  IpAddress src;
  IpAddress dst;
  uint8_t src_prefix = 0;
  uint8_t dst_prefix = 0;
  uint8_t protocol = 0;
  uint16_t src_port = 0;
  uint16_t dst_port = 0;

  // A /32 or /128 selector between two hosts, any protocol.
  static Selector HostToHost(const IpAddress& src, const IpAddress& dst);
  AddressFamily family() const { return src.family; }
  std::string ToString() const;
  bool operator==(const Selector& other) const = default;
};

// Netfilter-style mark: an SA or policy matches packets whose
// (skb->mark & mask) == value.
struct Mark {
  uint32_t value = 0;
  uint32_t mask = 0;
  bool operator==(const Mark& other) const = default;
};

// Zero means "no limit" for every field.
struct Lifetime {
  uint64_t soft_bytes = 0;
  uint64_t hard_bytes = 0;
  uint64_t soft_packets = 0;
  uint64_t hard_packets = 0;
  uint64_t soft_add_seconds = 0;
  uint64_t hard_add_seconds = 0;
  uint64_t soft_use_seconds = 0;
  uint64_t hard_use_seconds = 0;
  bool operator==(const Lifetime& other) const = default;
};

// ESP encryption transforms the daemon negotiates.
enum class Cipher : uint8_t {
  kAesGcm16,          // rfc4106(gcm(aes)), 128-bit ICV; key includes 4-byte salt
  kChaCha20Poly1305,  // rfc7539esp(chacha20,poly1305); key includes 4-byte salt
  kAesCbc,            // cbc(aes); needs an Integrity other than kNone
};

// ESP integrity transforms (RFC 4868 truncation lengths).
enum class Integrity : uint8_t {
  kNone,              // only with AEAD ciphers
  kHmacSha256_128,
  kHmacSha384_192,
  kHmacSha512_256,
};

// UDP encapsulation of ESP (RFC 3948), ports in host byte order.
struct UdpEncap {
  uint16_t src_port = 4500;
  uint16_t dst_port = 4500;
  bool operator==(const UdpEncap& other) const = default;
};

// Identifies one SA in the kernel's SAD.
struct SaId {
  IpAddress dst;
  uint32_t spi = 0;  // host byte order
  uint8_t protocol = kIpProtoEsp;
  std::optional<Mark> mark;
  std::string ToString() const;
  bool operator==(const SaId& other) const = default;
};

struct SaCounters {
  uint64_t bytes = 0;
  uint64_t packets = 0;
  uint64_t add_time = 0;  // seconds since the epoch
  uint64_t use_time = 0;  // 0 when unused
};

// Where an SA's sequence numbers stand (the kernel's replay state): the
// last one sent (outbound SAs), the highest one received and the window
// bitmap behind it (inbound SAs); the high halves count with ESN.
struct ReplayState {
  uint32_t sent = 0;
  uint32_t sent_high = 0;
  uint32_t received = 0;
  uint32_t received_high = 0;
  std::vector<uint32_t> bitmap;  // (replay_window + 31) / 32 words
  bool operator==(const ReplayState& other) const = default;
};

struct SaParams {
  SaId id;
  IpAddress src;
  Mode mode = Mode::kTransport;
  uint32_t reqid = 0;
  Cipher cipher = Cipher::kAesGcm16;
  std::vector<uint8_t> encryption_key;
  Integrity integrity = Integrity::kNone;
  std::vector<uint8_t> integrity_key;
  bool extended_sequence_numbers = false;
  uint32_t replay_window = 32;  // packets; 0 disables replay protection
  Lifetime lifetime;
  std::optional<UdpEncap> encap;
  // Traffic the SA may carry; when absent a transport SA is bound to its two
  // endpoints and a tunnel SA takes any inner traffic of the outer address
  // family (set it for IPv4-in-IPv6 or IPv6-in-IPv4 tunnels).
  std::optional<Selector> selector;
  // Set to carry on where another SA with the same keys left off (an SA
  // moved to new addresses, which XFRM cannot change in place): its
  // sequence numbers and replay window, and its counters (they count
  // towards the lifetime limits).
  std::optional<ReplayState> replay;
  std::optional<SaCounters> counters;
};

// An SA as read back: its parameters without the keys, plus its counters.
struct SaInfo {
  SaId id;
  IpAddress src;
  Mode mode = Mode::kTransport;
  uint32_t reqid = 0;
  std::string algorithm;  // kernel algorithm name, e.g. "rfc4106(gcm(aes))"
  bool extended_sequence_numbers = false;
  uint32_t replay_window = 0;
  Lifetime lifetime;
  std::optional<UdpEncap> encap;
  SaCounters counters;
  ReplayState replay;
};

// One transform a policy requires (struct xfrm_user_tmpl).
struct PolicyTemplate {
  Mode mode = Mode::kTransport;
  uint32_t reqid = 0;
  // Tunnel endpoints; ignored (may be unset) for transport mode.
  IpAddress tunnel_src;
  IpAddress tunnel_dst;
  bool optional = false;  // "use" instead of "require"
  bool operator==(const PolicyTemplate& other) const = default;
};

enum class PolicyAction : uint8_t { kProtect, kBypass, kDiscard };

// Identifies one policy in the kernel's SPD.
struct PolicyId {
  Selector selector;
  Direction direction = Direction::kOut;
  std::optional<Mark> mark;
  std::string ToString() const;
  bool operator==(const PolicyId& other) const = default;
};

struct PolicyParams {
  PolicyId id;
  uint32_t priority = 0;  // lower value = preferred; must be in the owned band
  PolicyAction action = PolicyAction::kProtect;
  // Required for kProtect. A trap policy is a kProtect policy whose
  // template has no SA yet: matching traffic makes the kernel raise ACQUIRE.
  std::vector<PolicyTemplate> templates;
  Lifetime lifetime;
  bool operator==(const PolicyParams& other) const = default;
};

struct PolicyInfo {
  PolicyParams params;
  uint32_t index = 0;  // kernel-assigned policy index
};

// Which kernel objects belong to this daemon. An SA is owned when its reqid is
// in [reqid_min, reqid_max]; a policy when its priority is in
// [priority_min, priority_max]. Everything else is left alone.
struct Ownership {
  uint32_t reqid_min = 0x00b70000;
  uint32_t reqid_max = 0x00b7ffff;
  uint32_t priority_min = 0x7b000;
  uint32_t priority_max = 0x7bfff;
  bool OwnsReqid(uint32_t reqid) const {
    return reqid >= reqid_min && reqid <= reqid_max;
  }
  bool OwnsPriority(uint32_t priority) const {
    return priority >= priority_min && priority <= priority_max;
  }
};

struct OwnedState {
  std::vector<SaInfo> sas;
  std::vector<PolicyInfo> policies;
};

// ---------------------------------------------------------------- events

// Traffic hit a policy whose template has no SA: negotiate one.
struct AcquireEvent {
  Selector selector;       // the packet's selector (host addresses)
  uint32_t policy_index = 0;
  Direction policy_direction = Direction::kOut;
  PolicyTemplate templ;    // the template that needs an SA
  IpAddress src;           // outer addresses the SA should use
  IpAddress dst;
};

// An SA reached a soft (rekey now) or hard (gone) lifetime limit.
struct ExpireEvent {
  SaId id;
  uint32_t reqid = 0;
  bool hard = false;
};

// The peer's NAT mapping changed (RFC 3948 keepalive/ESP from a new port).
struct MappingEvent {
  SaId id;
  uint32_t reqid = 0;
  IpAddress old_src;
  uint16_t old_src_port = 0;
  IpAddress new_src;
  uint16_t new_src_port = 0;
};

// Events were lost (the event socket overflowed, ENOBUFS) or the socket
// died: the daemon must re-read the kernel state and reconcile.
struct ResyncNeeded {
  KernelError cause;
};

using KernelEvent =
    std::variant<AcquireEvent, ExpireEvent, MappingEvent, ResyncNeeded>;

// ------------------------------------------------------- per-socket policy

// A policy set on one socket: bypass IPsec, or protect with templates.
struct SocketPolicy {
  Direction direction = Direction::kOut;  // kIn or kOut only
  PolicyAction action = PolicyAction::kBypass;
  std::vector<PolicyTemplate> templates;  // for kProtect
  uint32_t priority = 0;
};

// ------------------------------------------------------- batched changes

struct AddSaOp { SaParams sa; };
struct UpdateSaOp { SaParams sa; };
struct DeleteSaOp { SaId id; };
struct AddPolicyOp { PolicyParams policy; };
struct UpdatePolicyOp { PolicyParams policy; };
struct DeletePolicyOp { PolicyId id; };
using XfrmOperation = std::variant<AddSaOp, UpdateSaOp, DeleteSaOp, AddPolicyOp,
                                   UpdatePolicyOp, DeletePolicyOp>;

// ---------------------------------------------------------------- interface

class XfrmInterface {
 public:
  virtual ~XfrmInterface() = default;

  // Reserves an unused SPI in [min_spi, max_spi] for an inbound SA from src
  // to dst (a larval SA the kernel keeps until AddSa/UpdateSa fills it).
  virtual Result<uint32_t> AllocateSpi(const IpAddress& src,
                                       const IpAddress& dst, uint32_t reqid,
                                       uint32_t min_spi = 0x100,
                                       uint32_t max_spi = 0xffffffff) = 0;
  // AddSa fails with EEXIST when the SA exists; UpdateSa fills a larval SA
  // from AllocateSpi (or replaces an SA) and fails with ESRCH when absent,
  // as DeleteSa and QuerySa do.
  virtual Status AddSa(const SaParams& sa) = 0;
  virtual Status UpdateSa(const SaParams& sa) = 0;
  virtual Status DeleteSa(const SaId& id) = 0;
  virtual Result<SaInfo> QuerySa(const SaId& id) = 0;

  // Policies are reference counted: adding an identical policy again only
  // counts one more user; DeletePolicy removes it when the last user goes.
  // Adding a different policy under the same id fails with EEXIST.
  virtual Status AddPolicy(const PolicyParams& policy) = 0;
  // Replaces the policy (templates, priority, action), keeping its count.
  virtual Status UpdatePolicy(const PolicyParams& policy) = 0;
  virtual Status DeletePolicy(const PolicyId& id) = 0;

  // Applies the operations in order, with the same meaning as the single
  // calls, in as few kernel round trips as possible (a CHILD_SA's SAs and
  // policies at once, or a whole reconcile). Returns one Status per
  // operation; a failure does not stop the operations after it.
  virtual std::vector<Status> Apply(const std::vector<XfrmOperation>& operations);

  virtual Result<OwnedState> ListOwned() = 0;
  // Deletes every owned SA and policy (start-up and shutdown).
  virtual Status FlushOwned() = 0;

  // A non-blocking descriptor that becomes readable when events wait;
  // -1 for implementations without one (the in-memory one).
  virtual int event_fd() const = 0;
  // Decodes every message ready now; never blocks.
  virtual Result<std::vector<KernelEvent>> ProcessEvents() = 0;

  // Per-socket policies (IP_XFRM_POLICY / IPV6_XFRM_POLICY) on a descriptor
  // the daemon holds, e.g. one an application passed through the BTNS API.
  virtual Status SetSocketPolicy(int fd, const SocketPolicy& policy) = 0;
  // Makes the socket bypass IPsec in both directions (the IKE sockets).
  virtual Status SetSocketBypass(int fd) = 0;
  // Turns a UDP socket into an ESP-in-UDP (RFC 3948) receiver (port 4500).
  virtual Status EnableUdpEncap(int fd) = 0;
};

}  // namespace kernel_glue

#endif  // KERNEL_GLUE_XFRM_INTERFACE_H_
