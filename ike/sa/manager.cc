// SaManager: the IKE SA table, the dispatcher by IKE SPI, and the exchanges
// of RFC 7296 (IKE_SA_INIT, IKE_AUTH, CREATE_CHILD_SA, INFORMATIONAL).
//
// Memory: an established IKE SA keeps its keys as raw octets and keys the
// Botan cipher/PRF objects per message (ike/crypto reuses them per thread),
// so an idle SA holds no key schedules.
#include <algorithm>
#include <deque>
#include <unordered_map>
#include <unordered_set>

#include <botan/certstor.h>
#include <botan/hash.h>
#include <botan/x509path.h>

#include "ike/crypto/auth.h"
#include "ike/crypto/key_derivation.h"
#include "ike/crypto/key_exchange.h"
#include "ike/crypto/prf.h"
#include "ike/sa/codec_helpers.h"
#include "ike/sa/engine.h"
#include "ike/sa/fragments.h"
#include "ike/wire/message.h"
#include "ike/wire/names.h"

namespace ike::sa {

using namespace internal;  // NOLINT: helpers of this library only
using crypto::ByteView;
using crypto::View;
using wire::ExchangeType;
using wire::NotifyType;

namespace {

constexpr size_t kNonceSize = 32;
// RFC 7383 2.5.2: how many times a message goes out at one fragment size
// without an answer before it is sent again in smaller fragments.
constexpr uint8_t kSendsPerFragmentSize = 2;
constexpr uint64_t kChildTimerFlag = 1ull << 63;

enum class IkeTimer : uint8_t {
  kRetransmit = 1,
  kHalfOpen = 2,
  kSoftLifetime = 3,
  kHardLifetime = 4,
  kDpd = 5,
  kSign = 6,  // waiting for an external signer (SignRequest)
};
enum class ChildTimer : uint8_t { kSoft = 1, kHard = 2 };

TimerId MakeIkeTimer(IkeSaHandle h, IkeTimer k) {
  return (h << 4) | uint64_t(k);
}
TimerId MakeChildTimer(ChildSaHandle h, ChildTimer k) {
  return kChildTimerFlag | (h << 4) | uint64_t(k);
}

enum class State : uint8_t {
  kInitSent,    // initiator: IKE_SA_INIT request outstanding
  kAuthSent,    // initiator: IKE_AUTH request outstanding
  kHalfOpen,    // responder: IKE_SA_INIT answered, waiting for IKE_AUTH
  kEstablished,
  kDeleting,
};

enum class ChildState : uint8_t { kActive, kRekeyed, kDeleting };

struct ChildSa {
  ChildSaHandle handle = 0;
  uint32_t reqid = 0;
  std::string spd_entry;
  policy::IpsecMode mode = policy::IpsecMode::kTransport;
  uint32_t spi_in = 0;
  uint32_t spi_out = 0;
  crypto::TransformSet set;
  std::vector<policy::TrafficSelector> local_ts, remote_ts;
  // Transport mode across a NAT (RFC 7296 section 2.23.1): the selectors as
  // negotiated with the peer, which name its own address where local_ts and
  // remote_ts (the kernel's) name the NAT's. Empty when they do not differ.
  std::vector<policy::TrafficSelector> wire_local_ts, wire_remote_ts;
  policy::Lifetime lifetime;
  ChildState state = ChildState::kActive;
  bool owns_policies = false;
  uint8_t armed_timers = 0;  // bit per ChildTimer
  // Responder of a CHILD_SA rekey (RFC 7296 2.8): the new outbound SA,
  // held back until the initiator deletes the CHILD_SA it replaces
  // (`waits_for`), so nothing is sent on it before the initiator, which
  // deletes the old one only after it installed the new pair, can receive.
  std::unique_ptr<InstallChildSa> deferred_out;
  ChildSaHandle waits_for = 0;
  bool outbound_installed = true;
};

enum class ReqKind : uint8_t {
  kInit,
  kAuth,
  kCreateChild,
  kRekeyChild,
  kDeleteChild,
  kDeleteIke,
  kDpd,
  kRekeyIke,
};

// Our IKE SA rekey (2.18) until its response arrives.
struct IkeRekey {
  uint64_t spi = 0;  // our SPI of the new IKE SA
  crypto::Bytes nonce;
  std::unique_ptr<crypto::KeyExchange> ke;
  std::vector<crypto::TransformSet> offered;
};

// Everything a CHILD_SA negotiation needs until its response arrives.
struct ChildNegotiation {
  std::string spd_entry;
  policy::IpsecMode mode = policy::IpsecMode::kTransport;
  uint32_t spi_in = 0;
  std::vector<policy::TrafficSelector> ts_i, ts_r;
  std::vector<crypto::TransformSet> offered;
  policy::Lifetime lifetime;
  crypto::Bytes nonce;  // CREATE_CHILD_SA only
  std::unique_ptr<crypto::KeyExchange> ke;
  ChildSaHandle rekeys = 0;
  uint32_t reqid = 0;  // of the CHILD_SA being rekeyed
  // Set when the peer rekeyed the same CHILD_SA while we waited (2.8.1).
  bool collided = false;
  crypto::Bytes peer_nonce_i, our_nonce_r;
  ChildSaHandle peer_created = 0;
};

// A peer's IKE SA rekey we answered while our own was outstanding (2.8.2):
// which of the two new IKE SAs survives is known once ours is answered.
struct PeerRekey {
  crypto::TransformSet set;
  crypto::IkeSaKeys keys;
  crypto::Bytes ni, nr;  // the peer's request nonce, our response nonce
  uint64_t spi_i = 0;    // the peer's SPI of its new IKE SA
  uint64_t spi_r = 0;    // ours (reserved in the SPI table)
};

// One message as sent: a single datagram, or its RFC 7383 fragments.
using Datagrams = std::vector<std::vector<uint8_t>>;

struct Pending {
  ReqKind kind = ReqKind::kInit;
  uint32_t message_id = 0;
  Datagrams bytes;
  uint32_t sends = 0;
  uint8_t sends_at_size = 0;  // of `bytes` as they are now fragmented
  Duration timeout{0};
  std::optional<ChildNegotiation> child;
  std::optional<IkeRekey> ike_rekey;
  ChildSaHandle target = 0;  // kDeleteChild
  FailureReason delete_reason = FailureReason::kDeletedLocally;
};

struct Task {
  ReqKind kind = ReqKind::kCreateChild;
  ChildSaHandle child = 0;
  std::string spd_entry{};
  std::optional<policy::PacketFiveTuple> trigger{};
  FailureReason reason = FailureReason::kDeletedLocally;
  // After INVALID_KE_PAYLOAD: the group the peer asked for.
  wire::KeGroup group = wire::KeGroup::kNone;
};

struct IkeSa {
  IkeSaHandle handle = 0;
  bool initiator = false;
  State state = State::kInitSent;
  uint64_t spi_i = 0, spi_r = 0;
  Endpoint local, remote;
  Endpoint init_remote;  // responder: where IKE_SA_INIT came from
  policy::Uint128 indexed_address = 0;  // key in by_remote_
  policy::Uint128 indexed_local = 0;    // with it, the key in by_pair_
  bool nat_local = false, nat_remote = false;
  policy::PolicySnapshotPtr policy;
  const policy::PadEntry* pad = nullptr;  // known after IKE_AUTH (responder)
  std::string spd_entry;                  // initiator: the requested entry
  std::optional<policy::PacketFiveTuple> trigger;
  // Initiator: the identity and credential the request asked us to present
  // instead of the PAD entry's; such an SA is never reused for other
  // requests. The tag goes back in IkeSaUp/IkeSaDown.
  // The credential is dropped once IKE_AUTH is done (rekeys do not sign);
  // `dedicated` stays.
  std::shared_ptr<const LocalCredentialOverride> local_credential;
  bool dedicated = false;
  uint64_t request_tag = 0;
  std::string local_id;  // what our ID payload said, once sent
  crypto::TransformSet set;
  crypto::IkeSaKeys keys;
  crypto::Bytes ni, nr;
  std::unique_ptr<crypto::KeyExchange> ke;
  wire::KeGroup ke_group = wire::KeGroup::kNone;
  uint8_t ke_retries = 0, cookie_retries = 0;
  crypto::Bytes cookie;
  crypto::Bytes init_request, init_response;  // until IKE_AUTH is done
  std::vector<wire::HashAlgorithm> peer_hashes;
  uint32_t next_request_id = 0;
  uint32_t expected_request_id = 0;
  std::optional<Pending> pending;
  std::optional<PeerRekey> peer_rekey;
  std::deque<Task> tasks;
  bool has_response = false;
  uint32_t response_id = 0;
  Datagrams response;
  // RFC 7383: the peer announced fragmentation; fragments being collected
  // (allocated only while a fragmented message arrives).
  bool peer_fragmentation = false;
  // Sends of the cached response as it is now fragmented (2.5.2).
  uint8_t response_sends = 0;
  // Fragment size learnt from the path (2.5.2); 0: the configured one.
  uint16_t fragment_limit = 0;
  std::unique_ptr<Reassembly> request_fragments, response_fragments;
  std::vector<ChildSa> children;
  std::optional<PeerIdentity> peer;
  bool announced = false;  // IkeSaUp was emitted
  // Replaced by a rekey and only waiting for its Delete exchange: the
  // handle it had lives on in the new IKE SA, so its end is not reported.
  bool retired = false;
  Instant last_received{};
  uint8_t armed_timers = 0;  // bit per IkeTimer

  uint64_t our_spi() const { return initiator ? spi_i : spi_r; }
  bool marker() const { return local.port != 500; }
  ChildSa* FindChild(ChildSaHandle h) {
    for (auto& c : children)
      if (c.handle == h) return &c;
    return nullptr;
  }
  // Keys of whoever sends / receives in our role.
  IkeDirectionKeys OutKeys() const {
    return initiator ? IkeDirectionKeys{View(keys.sk_ei), View(keys.sk_ai)}
                     : IkeDirectionKeys{View(keys.sk_er), View(keys.sk_ar)};
  }
  IkeDirectionKeys InKeys() const {
    return initiator ? IkeDirectionKeys{View(keys.sk_er), View(keys.sk_ar)}
                     : IkeDirectionKeys{View(keys.sk_ei), View(keys.sk_ai)};
  }
};

struct HalfOpenKey {
  uint64_t spi_i;
  policy::Uint128 address;
  uint16_t port;
  bool operator==(const HalfOpenKey&) const = default;
};
struct HalfOpenKeyHash {
  size_t operator()(const HalfOpenKey& k) const {
    return std::hash<uint64_t>()(k.spi_i ^ uint64_t(k.address) ^
                                 (uint64_t(k.port) << 48));
  }
};

wire::Payload Notify(NotifyType type, crypto::Bytes data = {},
                     uint8_t protocol = 0, crypto::Bytes spi = {}) {
  wire::NotifyPayload n;
  n.type = type;
  n.data = std::move(data);
  n.protocol = protocol;
  n.spi = std::move(spi);
  return wire::MakePayload(std::move(n));
}

const wire::NotifyPayload* FindNotify(const std::vector<wire::Payload>& ps,
                                      NotifyType type) {
  for (const auto& p : ps)
    if (auto* n = std::get_if<wire::NotifyPayload>(&p.body))
      if (n->type == type) return n;
  return nullptr;
}

// The first error notify (types below 16384, RFC 7296 section 3.10.1).
const wire::NotifyPayload* FindError(const std::vector<wire::Payload>& ps) {
  for (const auto& p : ps)
    if (auto* n = std::get_if<wire::NotifyPayload>(&p.body))
      if (uint16_t(n->type) < 16384) return n;
  return nullptr;
}

FailureReason ReasonForNotify(NotifyType t) {
  switch (t) {
    case NotifyType::kNoProposalChosen: return FailureReason::kNoProposalChosen;
    case NotifyType::kInvalidKePayload: return FailureReason::kInvalidKePayload;
    case NotifyType::kAuthenticationFailed:
      return FailureReason::kAuthenticationFailed;
    case NotifyType::kTsUnacceptable: return FailureReason::kTsUnacceptable;
    case NotifyType::kInvalidSyntax: return FailureReason::kInvalidSyntax;
    case NotifyType::kInvalidSpi: return FailureReason::kInvalidSpi;
    default: return FailureReason::kPeerError;
  }
}

std::string NotifyText(NotifyType t) { return wire::NotifyName(t); }

crypto::Bytes GroupBytes(wire::KeGroup g) {
  return {uint8_t(uint16_t(g) >> 8), uint8_t(uint16_t(g))};
}

policy::Lifetime Jittered(policy::Lifetime l, crypto::RandomSource& random) {
  if (l.jitter_percent == 0 || l.soft_seconds == 0) return l;
  uint8_t r[2];
  random.Fill(r);
  uint64_t span = l.soft_seconds * std::min<uint8_t>(l.jitter_percent, 100) /
                  100;
  if (span > 0) l.soft_seconds -= (uint64_t(r[0]) << 8 | r[1]) % (span + 1);
  return l;
}

// Nonces compare octet by octet, as unsigned numbers when of equal length
// (2.8.1, 2.8.2).
bool NonceLess(const crypto::Bytes& a, const crypto::Bytes& b) {
  return std::lexicographical_compare(a.begin(), a.end(), b.begin(), b.end());
}
const crypto::Bytes& MinNonce(const crypto::Bytes& a, const crypto::Bytes& b) {
  return NonceLess(a, b) ? a : b;
}

struct Failure {
  FailureReason reason = FailureReason::kInternalError;
  std::optional<NotifyType> notify;
  std::string text;
};

}  // namespace

// -------------------------------------------------------------------------

class SaManagerImpl {
 public:
  SaManagerImpl(EngineSettings settings, policy::PolicySnapshotPtr policy,
                CredentialStore credentials, crypto::RandomSource& random,
                SpiAllocator& spis)
      : settings_(settings),
        credentials_(std::move(credentials)),
        random_(random),
        spis_(spis) {
    SetPolicy(std::move(policy));
    next_handle_ = next_child_handle_ =
        (uint64_t(settings_.shard_index) << 48) | 1;
    // 0 is no reqid (the kernel's "any").
    EngineSettings::ReqidRange& reqids = settings_.reqids;
    reqids.first = std::max<uint32_t>(reqids.first, 1);
    reqids.last = std::max(reqids.last, reqids.first);
    next_reqid_ = std::clamp(reqids.start, reqids.first, reqids.last);
  }

  void Handle(const Event& event, Instant now, Actions& out) {
    now_ = now;
    out_ = &out;
    std::visit([this](const auto& e) { On(e); }, event);
    out_ = nullptr;
  }

  void SetPolicy(policy::PolicySnapshotPtr policy) {
    policy_ = std::move(policy);
    responder_ike_sets_.clear();
    if (!policy_) return;
    // A responder does not know its peer during IKE_SA_INIT: it accepts
    // the union of the IKE proposals of all PROTECT entries.
    std::vector<std::string> names;
    for (const auto& e : policy_->spd.entries())
      if (e.action == policy::SpdAction::kProtect &&
          std::find(names.begin(), names.end(), e.protect.ike_proposals) ==
              names.end())
        names.push_back(e.protect.ike_proposals);
    if (names.empty()) names.push_back("default-ike");
    responder_certreq_ = AllCaHashes();
    for (const auto& n : names) {
      policy::ProposalSet set = IkeProposalSet(n);
      for (auto& s : ExpandProposals(set, wire::ProtocolId::kIke, false))
        responder_ike_sets_.push_back(s);
    }
  }
  void SetCredentials(CredentialStore c) {
    credentials_ = std::move(c);
    responder_certreq_ = AllCaHashes();
  }

  size_t ike_sa_count() const { return sas_.size(); }
  size_t half_open_count() const { return half_open_count_; }
  uint64_t cookies_demanded() const { return cookies_demanded_; }
  size_t child_sa_count() const {
    size_t n = 0;
    for (const auto& [h, sa] : sas_) n += sa->children.size();
    return n;
  }

  std::optional<IkeSaView> MakeView(IkeSaHandle h) const {
    auto it = sas_.find(h);
    if (it == sas_.end()) return std::nullopt;
    const IkeSa& sa = *it->second;
    IkeSaView v;
    v.handle = sa.handle;
    v.state = sa.state == State::kEstablished ? IkeSaState::kEstablished
              : sa.state == State::kDeleting  ? IkeSaState::kDeleting
                                              : IkeSaState::kConnecting;
    v.initiator = sa.initiator;
    v.initiator_spi = sa.spi_i;
    v.responder_spi = sa.spi_r;
    v.local = sa.local;
    v.remote = sa.remote;
    v.peer = sa.peer;
    v.transforms = sa.set;
    v.rekeyed = sa.retired;
    for (const auto& c : sa.children) {
      // The rekey initiator deletes the old CHILD_SA: it is "rekeyed" when
      // a live successor has its reqid.
      bool replaced = c.state == ChildState::kRekeyed;
      for (const auto& other : sa.children)
        replaced = replaced || (c.state == ChildState::kDeleting &&
                                other.handle != c.handle &&
                                other.reqid == c.reqid &&
                                other.state == ChildState::kActive);
      v.children.push_back(
          {c.handle,
           replaced                           ? ChildSaState::kRekeyed
           : c.state == ChildState::kDeleting ? ChildSaState::kDeleting
                                              : ChildSaState::kActive,
           c.spd_entry, c.spi_in, c.spi_out, c.local_ts, c.remote_ts});
    }
    return v;
  }
  std::vector<IkeSaView> List() const {
    std::vector<IkeSaView> out;
    for (const auto& [h, sa] : sas_) out.push_back(*MakeView(h));
    return out;
  }

 private:
  // ------------------------------------------------------------ plumbing

  void Emit(Action a) { out_->push_back(std::move(a)); }
  void LogLine(LogLevel level, IkeSaHandle h, FailureReason reason,
               std::string text) {
    Emit(Log{level, h, reason, std::move(text)});
  }

  void Arm(IkeSa& sa, IkeTimer k, Duration d) {
    sa.armed_timers |= uint8_t(1u << uint8_t(k));
    Emit(ArmTimer{MakeIkeTimer(sa.handle, k), d});
  }
  void Disarm(IkeSa& sa, IkeTimer k) {
    uint8_t bit = uint8_t(1u << uint8_t(k));
    if (!(sa.armed_timers & bit)) return;
    sa.armed_timers &= uint8_t(~bit);
    Emit(CancelTimer{MakeIkeTimer(sa.handle, k)});
  }
  void Arm(ChildSa& c, ChildTimer k, Duration d) {
    c.armed_timers |= uint8_t(1u << uint8_t(k));
    Emit(ArmTimer{MakeChildTimer(c.handle, k), d});
  }
  void Disarm(ChildSa& c, ChildTimer k) {
    uint8_t bit = uint8_t(1u << uint8_t(k));
    if (!(c.armed_timers & bit)) return;
    c.armed_timers &= uint8_t(~bit);
    Emit(CancelTimer{MakeChildTimer(c.handle, k)});
  }

  policy::ProposalSet IkeProposalSet(const std::string& name) const {
    if (policy_)
      if (auto* p = policy_->FindProposals(name)) return *p;
    return name == "default-esp" ? policy::DefaultEspProposals()
                                 : policy::DefaultIkeProposals();
  }
  static policy::ProposalSet ProposalsOf(const policy::PolicySnapshot& snap,
                                         const std::string& name, bool esp) {
    if (auto* p = snap.FindProposals(name)) return *p;
    return esp ? policy::DefaultEspProposals() : policy::DefaultIkeProposals();
  }

  uint64_t NewIkeSpi() {
    for (;;) {
      uint8_t b[8];
      random_.Fill(b);
      uint64_t v = 0;
      for (uint8_t x : b) v = v << 8 | x;
      if (settings_.shard_bits != 0)
        v = (v >> settings_.shard_bits) |
            (uint64_t(settings_.shard_index) << (64 - settings_.shard_bits));
      if (v != 0 && !by_spi_.count(v)) return v;
    }
  }

  void SendBytes(IkeSa& sa, const std::vector<uint8_t>& bytes) {
    Emit(SendDatagram{sa.local, sa.remote, bytes, sa.marker()});
  }
  void SendBytes(IkeSa& sa, const Datagrams& message) {
    for (const auto& d : message) SendBytes(sa, d);
  }

  size_t FragmentLimit(const IkeSa& sa) const {
    return sa.fragment_limit == 0
               ? settings_.fragment_size
               : std::min<size_t>(sa.fragment_limit, settings_.fragment_size);
  }

  // An encrypted message, as RFC 7383 fragments when it is larger than
  // the fragment size and the peer supports them (never IKE_SA_INIT).
  crypto::Result<Datagrams> Seal(IkeSa& sa, const wire::Header& h,
                                 const std::vector<wire::Payload>& inner) {
    auto bytes = SealMessage(sa.set, sa.OutKeys(), h, inner, random_);
    if (!bytes.ok()) return bytes.error();
    size_t limit = FragmentLimit(sa);
    if (!sa.peer_fragmentation || limit == 0 || bytes->size() <= limit)
      return Datagrams{std::move(*bytes)};
    auto fragments =
        SealFragments(sa.set, sa.OutKeys(), h, inner, limit, random_);
    if (!fragments.ok()) return fragments.error();
    return std::move(*fragments);
  }

  // RFC 7383 2.5.2: the next fragment size to fall back to when datagrams
  // of up to `largest_sent` octets go unanswered: what fits the IPv6
  // minimum MTU (1280 octets) and, over IPv4, the 576-octet datagram every
  // host accepts, less the IP and UDP headers and the non-ESP marker.
  // 0 when nothing smaller is left.
  static size_t SmallerFragmentSize(const IkeSa& sa, size_t largest_sent) {
    bool v6 = sa.remote.address.family == policy::IpFamily::kV6;
    size_t overhead = (v6 ? 40 : 20) + 8 + (sa.marker() ? 4 : 0);
    for (size_t mtu : {size_t(1280), size_t(576)}) {
      if (v6 && mtu < 1280) break;
      if (mtu - overhead < largest_sent) return mtu - overhead;
    }
    return 0;
  }

  // The inner payloads of a message we sealed, recovered with our own
  // keys: a message is kept only as the datagrams that went out, and is
  // opened again only in the rare case it must be re-fragmented.
  std::optional<std::vector<wire::Payload>> UnsealOwn(
      IkeSa& sa, const Datagrams& message) {
    Reassembly collect;
    for (const auto& d : message) {
      auto msg = wire::DecodeMessage(d);
      if (!msg.ok()) return std::nullopt;
      const auto* skf = msg->payloads.empty()
                            ? nullptr
                            : std::get_if<wire::SkfPayload>(
                                  &msg->payloads.front().body);
      if (!skf) {
        if (message.size() != 1) return std::nullopt;
        auto opened = OpenMessage(sa.set, sa.OutKeys(), d, *msg);
        if (auto* ps = std::get_if<std::vector<wire::Payload>>(&opened))
          return std::move(*ps);
        return std::nullopt;
      }
      auto step = collect.Add(sa.set, sa.OutKeys(), d, msg->header.message_id,
                              *skf, {0xffff, SIZE_MAX});
      if (step.outcome == Reassembly::Outcome::kComplete)
        return std::move(step.payloads);
      if (step.outcome == Reassembly::Outcome::kDropped) return std::nullopt;
    }
    return std::nullopt;
  }

  // After kSendsPerFragmentSize unanswered sends, `message` (a request of
  // ours, or the response a retransmitted request keeps asking for) is
  // sealed again in smaller fragments (RFC 7383 2.5.2); the smaller size
  // then holds for the rest of the IKE SA. False when it stays as it is.
  bool Refragment(IkeSa& sa, Datagrams& message) {
    if (!sa.peer_fragmentation || settings_.fragment_size == 0 ||
        message.empty())
      return false;
    size_t largest = 0;
    for (const auto& d : message) largest = std::max(largest, d.size());
    size_t next = SmallerFragmentSize(sa, largest);
    if (next == 0) return false;
    auto header = wire::DecodeHeader(message[0]);
    if (!header.ok() || header->exchange == ExchangeType::kIkeSaInit)
      return false;
    auto inner = UnsealOwn(sa, message);
    if (!inner) return false;
    auto fragments =
        SealFragments(sa.set, sa.OutKeys(), *header, *inner, next, random_);
    if (!fragments.ok()) return false;
    LogLine(LogLevel::kInfo, sa.handle, FailureReason::kNone,
            std::string(header->IsResponse() ? "response " : "request ") +
                std::to_string(header->message_id) + " unanswered after " +
                std::to_string(kSendsPerFragmentSize) +
                " sends in datagrams of up to " + std::to_string(largest) +
                " octets; sending it in fragments of at most " +
                std::to_string(next) + " (RFC 7383 2.5.2)");
    sa.fragment_limit = uint16_t(next);
    message = std::move(*fragments);
    return true;
  }

  // Decodes and decrypts a request or response of `sa`, or adds it to the
  // fragments being collected. Nothing when it was dropped or is a
  // fragment of a message not complete yet.
  std::optional<std::vector<wire::Payload>> OpenIncoming(
      IkeSa& sa, const DatagramReceived& d, const wire::Header& h,
      bool response) {
    const char* what = response ? "response " : "request ";
    auto msg = wire::DecodeMessage(d.bytes);
    if (!msg.ok()) {
      LogLine(LogLevel::kInfo, sa.handle, FailureReason::kInvalidSyntax,
              what + std::to_string(h.message_id) + " from " +
                  d.remote.address.ToString() + ": " + msg.error().message);
      return std::nullopt;
    }
    const auto* skf = msg->payloads.empty()
                          ? nullptr
                          : std::get_if<wire::SkfPayload>(
                                &msg->payloads.front().body);
    if (!skf) {
      auto opened = OpenMessage(sa.set, sa.InKeys(), d.bytes, *msg);
      if (auto* err = std::get_if<OpenError>(&opened)) {
        // Unauthenticated garbage must not change any state (2.21.2).
        LogLine(LogLevel::kInfo, sa.handle, err->reason,
                what + std::to_string(h.message_id) + " from " +
                    d.remote.address.ToString() + " dropped: " + err->text);
        return std::nullopt;
      }
      return std::move(std::get<std::vector<wire::Payload>>(opened));
    }
    if (settings_.fragment_size == 0 || h.exchange == ExchangeType::kIkeSaInit) {
      LogLine(LogLevel::kInfo, sa.handle, FailureReason::kInvalidSyntax,
              std::string("fragment dropped: ") +
                  (settings_.fragment_size == 0
                       ? "fragmentation is off"
                       : "IKE_SA_INIT is never fragmented"));
      return std::nullopt;
    }
    auto& slot = response ? sa.response_fragments : sa.request_fragments;
    if (!slot) slot = std::make_unique<Reassembly>();
    ReassemblyLimits limits{settings_.max_fragments,
                            settings_.max_reassembly_bytes};
    auto step = slot->Add(sa.set, sa.InKeys(), d.bytes, h.message_id, *skf,
                          limits);
    switch (step.outcome) {
      case Reassembly::Outcome::kIncomplete:
        return std::nullopt;
      case Reassembly::Outcome::kDropped:
        LogLine(LogLevel::kInfo, sa.handle, FailureReason::kInvalidSyntax,
                std::string("fragment of ") + what +
                    std::to_string(h.message_id) + " dropped: " + step.why);
        if (!slot->active()) slot.reset();
        return std::nullopt;
      case Reassembly::Outcome::kComplete:
        slot.reset();
        // Answer a fragmented request in fragments no larger than its own:
        // the peer may have shrunk them to get through (2.5.2).
        if (!response && step.largest_fragment != 0 &&
            step.largest_fragment < FragmentLimit(sa))
          sa.fragment_limit = uint16_t(step.largest_fragment);
        return std::move(step.payloads);
    }
    return std::nullopt;
  }

  // Whether a retransmitted request deserves the cached response again:
  // for a fragmented request only its first fragment does (RFC 7383 2.6.1),
  // so a lost fragment does not multiply the answer.
  static bool ResendsResponse(const std::vector<uint8_t>& datagram) {
    auto where = wire::LocateSk(datagram);
    if (!where.ok() || where->type != wire::PayloadType::kSkf) return true;
    size_t at = where->body_offset - 4;
    return (uint16_t(datagram[at]) << 8 | datagram[at + 1]) == 1;
  }

  // ------------------------------------------------------------ CERTREQ

  // The Certification Authority field of a CERTREQ (RFC 7296 3.7): SHA-1
  // of the SubjectPublicKeyInfo of each trust anchor of `entry`, appended
  // to `out` unless already there.
  void AppendCaHashes(const policy::PadEntry& entry, crypto::Bytes& out) const {
    if (entry.auth != policy::PeerAuthMethod::kCa) return;
    for (const auto& file : entry.ca_files) {
      auto it = credentials_.trust_anchors.find(file);
      if (it == credentials_.trust_anchors.end()) continue;
      for (const auto& cert : it->second) {
        auto sha1 = Botan::HashFunction::create_or_throw("SHA-1");
        const auto& spki = cert.public_key().spki_der();
        sha1->update(spki.data(), spki.size());
        auto digest = sha1->final_stdvec();
        bool known = false;
        for (size_t i = 0; i + 20 <= out.size() && !known; i += 20)
          known = std::equal(digest.begin(), digest.end(), out.begin() + i);
        if (!known) out.insert(out.end(), digest.begin(), digest.end());
      }
    }
  }
  // A responder does not know its peer in IKE_SA_INIT: every CA entry.
  crypto::Bytes AllCaHashes() const {
    crypto::Bytes out;
    if (policy_)
      for (const auto& e : policy_->pad.entries()) AppendCaHashes(e, out);
    return out;
  }
  static void AppendCertReq(crypto::Bytes hashes,
                            std::vector<wire::Payload>& ps) {
    if (hashes.empty()) return;
    ps.push_back(wire::MakePayload(
        wire::CertReqPayload{wire::CertEncoding::kX509Signature,
                             std::move(hashes)}));
  }
  // We always send our certificate chain or raw key with a signature, so a
  // CERTREQ is already honoured; it is logged for the operator.
  void NoteCertReq(const IkeSa& sa, const std::vector<wire::Payload>& ps) {
    for (const auto& p : ps)
      if (auto* r = std::get_if<wire::CertReqPayload>(&p.body))
        LogLine(LogLevel::kDebug, sa.handle, FailureReason::kNone,
                "peer sent CERTREQ (encoding " +
                    std::to_string(int(r->encoding)) + ") naming CA key " +
                    "hashes [" + ToHex(r->authority) + "]");
  }

  // ------------------------------------------------------------ SA table

  IkeSa& NewSa(bool initiator) {
    auto sa = std::make_unique<IkeSa>();
    sa->handle = next_handle_++;
    sa->initiator = initiator;
    sa->policy = policy_;
    sa->last_received = now_;
    IkeSa& ref = *sa;
    sas_.emplace(ref.handle, std::move(sa));
    return ref;
  }

  void RemoveChild(IkeSa& sa, ChildSa& c, FailureReason reason) {
    Disarm(c, ChildTimer::kSoft);
    Disarm(c, ChildTimer::kHard);
    Emit(DeleteChildSa{sa.handle, c.handle, SaDirection::kInbound,
                       sa.local.address, c.spi_in});
    if (c.outbound_installed)
      Emit(DeleteChildSa{sa.handle, c.handle, SaDirection::kOutbound,
                         sa.remote.address, c.spi_out});
    c.deferred_out.reset();
    if (c.owns_policies) {
      // A replacement with the same reqid (rekey) keeps the policies.
      ChildSa* heir = nullptr;
      for (auto& other : sa.children)
        if (other.handle != c.handle && other.reqid == c.reqid) heir = &other;
      if (heir) {
        heir->owns_policies = true;
        c.owns_policies = false;
      } else {
        EmitPolicies(sa, c, /*install=*/false);
      }
    }
    Emit(ChildSaDown{sa.handle, c.handle, reason});
    child_owner_.erase(c.handle);
    spi_to_child_.erase(c.spi_in);
  }

  void RemoveSa(IkeSa& sa, FailureReason reason,
                std::optional<NotifyType> notify = std::nullopt) {
    for (auto& c : sa.children) RemoveChild(sa, c, reason);
    sa.children.clear();
    if (sa.pending && sa.pending->child && sa.pending->child->spi_in)
      spis_.Release(sa.local.address, sa.pending->child->spi_in);
    for (uint8_t k = 1; k <= 6; ++k) Disarm(sa, IkeTimer(k));
    signing_.erase(sa.handle);
    if (sa.state == State::kHalfOpen) --half_open_count_;
    if (!sa.initiator)
      init_index_.erase(
          {sa.spi_i, sa.init_remote.address.value, sa.init_remote.port});
    LogLine(reason == FailureReason::kDeletedLocally ||
                    reason == FailureReason::kDeletedByPeer ||
                    reason == FailureReason::kRekeyed
                ? LogLevel::kInfo
                : LogLevel::kWarning,
            sa.handle, reason,
            "IKE SA " + ToHex(SpiBytes(sa.spi_i)) + "/" +
                ToHex(SpiBytes(sa.spi_r)) + " with " +
                sa.remote.address.ToString() + " ended: " +
                std::string(FailureReasonName(reason)));
    // The daemon learns of responder SAs only when they come up.
    if ((sa.initiator || sa.announced) && !sa.retired)
      Emit(IkeSaDown{sa.handle, reason, notify, sa.request_tag});
    if (sa.peer_rekey)
      if (auto it = by_spi_.find(sa.peer_rekey->spi_r);
          it != by_spi_.end() && it->second == sa.handle)
        by_spi_.erase(it);
    if (sa.our_spi())
      if (auto it = by_spi_.find(sa.our_spi());
          it != by_spi_.end() && it->second == sa.handle)
        by_spi_.erase(it);
    UnindexByPeer(sa);
    sas_.erase(sa.handle);  // destroys `sa`
  }

  static uint64_t PairKey(policy::Uint128 remote, policy::Uint128 local) {
    uint64_t r = uint64_t(remote) ^ uint64_t(remote >> 64);
    uint64_t l = uint64_t(local) ^ uint64_t(local >> 64);
    return r * 0x9e3779b97f4a7c15ull ^ (l + 0x632be59bd9b4e019ull + (r << 6));
  }
  void UnindexByPeer(IkeSa& sa) {
    auto [first, last] = by_remote_.equal_range(uint64_t(sa.indexed_address));
    for (auto it = first; it != last; ++it)
      if (it->second == sa.handle) {
        by_remote_.erase(it);
        break;
      }
    auto [pfirst, plast] =
        by_pair_.equal_range(PairKey(sa.indexed_address, sa.indexed_local));
    for (auto it = pfirst; it != plast; ++it)
      if (it->second == sa.handle) {
        by_pair_.erase(it);
        break;
      }
  }
  void IndexByPeer(IkeSa& sa) {
    sa.indexed_address = sa.remote.address.value;
    sa.indexed_local = sa.local.address.value;
    by_remote_.emplace(uint64_t(sa.indexed_address), sa.handle);
    by_pair_.emplace(PairKey(sa.indexed_address, sa.indexed_local),
                     sa.handle);
  }

  IkeSa* FindSa(IkeSaHandle h) {
    auto it = sas_.find(h);
    return it == sas_.end() ? nullptr : it->second.get();
  }

  // ------------------------------------------------------------ events

  void On(const InitiateRequest& r) {
    Initiate(r.spd_entry, r.remote, r.local, r.trigger, r.local_credential,
             r.request_tag);
  }

  void On(const KernelAcquire& a) {
    if (!policy_) return;
    const policy::SpdEntry* e = policy_->spd.Lookup(a.packet);
    if (!e || e->action != policy::SpdAction::kProtect) {
      LogLine(LogLevel::kWarning, 0, FailureReason::kPolicyMissing,
              "acquire for " + a.packet.local.ToString() + " -> " +
                  a.packet.remote.ToString() +
                  " matches no PROTECT entry of the SPD");
      return;
    }
    // The holding policy of a responder-only entry raised this: the packet
    // waits (and is dropped when the kernel gives up) until the peer
    // brings the CHILD_SA up; it never starts a negotiation.
    if (e->protect.start == policy::StartAction::kNone && !a.from_socket) {
      LogLine(LogLevel::kInfo, 0, FailureReason::kNone,
              "acquire for " + a.packet.local.ToString() + " -> " +
                  a.packet.remote.ToString() + " held: SPD entry '" + e->name +
                  "' has start: none (the peer initiates)");
      return;
    }
    Initiate(e->name, std::nullopt, a.local, a.packet);
  }

  // Where an initiation runs from or to when the request does not say: the
  // tunnel endpoint of the entry, the triggering packet, or the entry's
  // selector when it names a single address.
  static std::optional<Endpoint> DefaultEndpoint(
      const policy::SpdEntry& e,
      const std::optional<policy::PacketFiveTuple>& trigger, bool local_side) {
    const auto& tunnel =
        local_side ? e.protect.tunnel_local : e.protect.tunnel_remote;
    if (tunnel) return Endpoint{*tunnel, 500};
    if (trigger)
      return Endpoint{local_side ? trigger->local : trigger->remote, 500};
    const auto& range = local_side ? e.selector.local : e.selector.remote;
    if (range && range->start == range->end)
      return Endpoint{range->start, 500};
    return std::nullopt;
  }

  void Initiate(const std::string& entry_name, std::optional<Endpoint> remote,
                std::optional<Endpoint> local,
                std::optional<policy::PacketFiveTuple> trigger,
                std::shared_ptr<const LocalCredentialOverride> credential =
                    nullptr,
                uint64_t request_tag = 0) {
    const policy::SpdEntry* e = policy_ ? policy_->spd.Find(entry_name)
                                        : nullptr;
    if (!e || e->action != policy::SpdAction::kProtect) {
      LogLine(LogLevel::kError, 0, FailureReason::kPolicyMissing,
              "initiate: SPD entry '" + entry_name +
                  "' does not exist or is not a PROTECT entry");
      return;
    }
    if (!remote) remote = DefaultEndpoint(*e, trigger, /*local_side=*/false);
    if (!remote) {
      LogLine(LogLevel::kError, 0, FailureReason::kPolicyMissing,
              "initiate: SPD entry '" + entry_name +
                  "' names no single peer address; give one");
      return;
    }
    if (!local) local = DefaultEndpoint(*e, trigger, /*local_side=*/true);
    if (!local)
      local = Endpoint{policy::IpAddress{remote->address.family, 0}, 500};
    // Reuse an IKE SA with the same peer and PAD entry.
    // With a given local address only SAs between the same two addresses
    // qualify: look them up by the pair rather than scanning every SA with
    // this peer (a gateway may hold thousands to one address).
    bool any_local = local->address.value == 0;
    auto [first, last] =
        any_local ? by_remote_.equal_range(remote->address.value)
                  : by_pair_.equal_range(
                        PairKey(remote->address.value, local->address.value));
    // A request with its own credential never shares an IKE SA.
    if (credential) first = last;
    for (auto it = first; it != last; ++it) {
      IkeSa* sa = FindSa(it->second);
      if (!sa) continue;
      if (sa->dedicated) continue;
      if (!sa->initiator && !sa->pad) continue;
      if (sa->remote.address != remote->address) continue;
      if (local && local->address.value != 0 &&
          sa->local.address != local->address)
        continue;
      if (sa->state == State::kDeleting) continue;
      const std::string& pad_name =
          sa->pad ? sa->pad->name : sa->policy->spd.Find(sa->spd_entry)
                                        ? sa->policy->spd.Find(sa->spd_entry)
                                              ->protect.peer
                                        : std::string();
      if (pad_name != e->protect.peer) continue;
      // Already negotiating or holding this entry: nothing to do.
      if (sa->spd_entry == entry_name && sa->state != State::kEstablished)
        return;
      for (auto& c : sa->children)
        if (c.spd_entry == entry_name && c.state == ChildState::kActive) return;
      if (sa->pending && sa->pending->child &&
          sa->pending->child->spd_entry == entry_name)
        return;
      for (auto& t : sa->tasks)
        if (t.kind == ReqKind::kCreateChild && t.spd_entry == entry_name)
          return;
      if (NoFreeReqid(entry_name)) return;
      sa->tasks.push_back(Task{ReqKind::kCreateChild, 0, entry_name, trigger});
      RunTasks(*sa);
      return;
    }
    if (NoFreeReqid(entry_name)) return;
    IkeSa& sa = NewSa(true);
    sa.spd_entry = entry_name;
    sa.trigger = trigger;
    sa.dedicated = credential != nullptr;
    sa.local_credential = std::move(credential);
    sa.request_tag = request_tag;
    sa.local = *local;
    sa.remote = *remote;
    sa.spi_i = NewIkeSpi();
    by_spi_[sa.spi_i] = sa.handle;
    IndexByPeer(sa);
    sa.pad = policy_->pad.Find(e->protect.peer);
    if (!sa.pad) {
      RemoveSa(sa, FailureReason::kPolicyMissing);
      return;
    }
    policy::ProposalSet ike = ProposalsOf(*policy_, e->protect.ike_proposals,
                                          false);
    auto sets = ExpandProposals(ike, wire::ProtocolId::kIke, false);
    if (sets.empty()) {
      LogLine(LogLevel::kError, sa.handle, FailureReason::kPolicyMissing,
              "IKE proposal set '" + e->protect.ike_proposals +
                  "' has no implemented transform set");
      RemoveSa(sa, FailureReason::kPolicyMissing);
      return;
    }
    sa.ke_group = sets[0].ke;
    sa.ni = random_.Generate(kNonceSize);
    // The initiator's bound is the retransmission limit (no half-open timer).
    SendInitRequest(sa);
  }

  void SendInitRequest(IkeSa& sa) {
    auto ke = crypto::KeyExchange::Generate(sa.ke_group, random_);
    if (!ke.ok()) {
      LogLine(LogLevel::kError, sa.handle, FailureReason::kInternalError,
              ke.error().message);
      RemoveSa(sa, FailureReason::kInternalError);
      return;
    }
    sa.ke = std::move(*ke);
    const policy::SpdEntry* e = sa.policy->spd.Find(sa.spd_entry);
    policy::ProposalSet ike =
        ProposalsOf(*sa.policy, e->protect.ike_proposals, false);
    wire::Message m;
    m.header.initiator_spi = sa.spi_i;
    m.header.exchange = ExchangeType::kIkeSaInit;
    m.header.flags = wire::header_flags::kInitiator;
    m.header.message_id = 0;
    if (!sa.cookie.empty())
      m.payloads.push_back(Notify(NotifyType::kCookie, sa.cookie));
    m.payloads.push_back(wire::MakePayload(
        BuildOffer(ike, wire::ProtocolId::kIke, {}, false)));
    m.payloads.push_back(wire::MakePayload(
        wire::KePayload{sa.ke_group, sa.ke->public_value()}));
    m.payloads.push_back(wire::MakePayload(wire::NoncePayload{sa.ni}));
    AppendInitNotifies(sa, m.payloads);
    auto bytes = wire::EncodeMessage(m);
    if (!bytes.ok()) {
      LogLine(LogLevel::kError, sa.handle, FailureReason::kInternalError,
              bytes.error().message);
      RemoveSa(sa, FailureReason::kInternalError);
      return;
    }
    sa.init_request = *bytes;
    sa.state = State::kInitSent;
    StartRequest(sa, ReqKind::kInit, 0, Datagrams{std::move(*bytes)});
  }

  void AppendInitNotifies(IkeSa& sa, std::vector<wire::Payload>& ps) {
    ps.push_back(Notify(NotifyType::kNatDetectionSourceIp,
                        NatDetectionHash(sa.spi_i, sa.spi_r, sa.local)));
    ps.push_back(Notify(NotifyType::kNatDetectionDestinationIp,
                        NatDetectionHash(sa.spi_i, sa.spi_r, sa.remote)));
    if (settings_.fragment_size != 0)
      ps.push_back(Notify(NotifyType::kIkev2FragmentationSupported));
    crypto::Bytes hashes;
    for (auto h : crypto::SupportedSignatureHashes()) {
      hashes.push_back(uint8_t(uint16_t(h) >> 8));
      hashes.push_back(uint8_t(uint16_t(h)));
    }
    ps.push_back(Notify(NotifyType::kSignatureHashAlgorithms, hashes));
  }

  // Sends a request and keeps it for retransmission (window size 1).
  void StartRequest(IkeSa& sa, ReqKind kind, uint32_t id, Datagrams bytes,
                    std::optional<ChildNegotiation> child = std::nullopt,
                    ChildSaHandle target = 0,
                    FailureReason reason = FailureReason::kDeletedLocally) {
    Pending p;
    p.kind = kind;
    p.message_id = id;
    p.bytes = std::move(bytes);
    p.sends = 1;
    p.sends_at_size = 1;
    p.timeout = settings_.retransmit_initial;
    p.child = std::move(child);
    p.target = target;
    p.delete_reason = reason;
    SendBytes(sa, p.bytes);
    Arm(sa, IkeTimer::kRetransmit, p.timeout);
    sa.pending = std::move(p);
  }

  void On(const TimerFired& t) {
    if (t.timer & kChildTimerFlag) {
      ChildSaHandle ch = (t.timer & ~kChildTimerFlag) >> 4;
      auto kind = ChildTimer(t.timer & 15);
      auto it = child_owner_.find(ch);
      if (it == child_owner_.end()) return;
      IkeSa* sa = FindSa(it->second);
      if (!sa) return;
      ChildSa* c = sa->FindChild(ch);
      if (!c) return;
      uint8_t bit = uint8_t(1u << uint8_t(kind));
      if (!(c->armed_timers & bit)) return;
      c->armed_timers &= uint8_t(~bit);
      if (kind == ChildTimer::kSoft) {
        QueueRekeyChild(*sa, *c);
      } else {
        QueueDeleteChild(*sa, *c, FailureReason::kExpired);
      }
      return;
    }
    IkeSa* sa = FindSa(t.timer >> 4);
    if (!sa) return;
    auto kind = IkeTimer(t.timer & 15);
    uint8_t bit = uint8_t(1u << uint8_t(kind));
    if (!(sa->armed_timers & bit)) return;
    sa->armed_timers &= uint8_t(~bit);
    switch (kind) {
      case IkeTimer::kRetransmit:
        Retransmit(*sa);
        break;
      case IkeTimer::kHalfOpen:
        if (sa->state != State::kEstablished && sa->state != State::kDeleting)
          RemoveSa(*sa, sa->initiator ? FailureReason::kRetransmitTimeout
                                      : FailureReason::kHalfOpenTimeout);
        break;
      case IkeTimer::kSoftLifetime:
        QueueRekeyIke(*sa);
        break;
      case IkeTimer::kHardLifetime:
        if (sa->retired) {
          RemoveSa(*sa, FailureReason::kRekeyed);  // the peer never deleted it
        } else {
          QueueDeleteIke(*sa, FailureReason::kExpired);
        }
        break;
      case IkeTimer::kSign:
        SigningFailed(*sa, FailureReason::kSignerTimeout,
                      "no signature from the external key holder in time");
        break;
      case IkeTimer::kDpd:
        if (now_ - sa->last_received >= settings_.dpd_interval) {
          if (!sa->pending && sa->tasks.empty()) {
            sa->tasks.push_back(Task{ReqKind::kDpd});
            RunTasks(*sa);
          }
        }
        if (FindSa(t.timer >> 4) && sa->state == State::kEstablished)
          Arm(*sa, IkeTimer::kDpd, settings_.dpd_interval);
        break;
    }
  }

  void Retransmit(IkeSa& sa) {
    if (!sa.pending) return;
    Pending& p = *sa.pending;
    if (p.sends > settings_.retransmit_tries) {
      bool early = sa.state != State::kEstablished &&
                   sa.state != State::kDeleting;
      if (p.kind == ReqKind::kDeleteIke) {
        RemoveSa(sa, p.delete_reason);
      } else {
        RemoveSa(sa, early ? FailureReason::kRetransmitTimeout
                           : FailureReason::kDeadPeer);
      }
      return;
    }
    ++p.sends;
    p.timeout = std::min(p.timeout * 2, settings_.retransmit_max);
    if (p.kind != ReqKind::kInit && p.sends_at_size >= kSendsPerFragmentSize &&
        Refragment(sa, p.bytes))
      p.sends_at_size = 0;
    ++p.sends_at_size;
    SendBytes(sa, p.bytes);
    Arm(sa, IkeTimer::kRetransmit, p.timeout);
  }

  void On(const RekeyRequest& r) {
    if (r.child_sa) {
      auto it = child_owner_.find(r.child_sa);
      if (it == child_owner_.end()) return;
      IkeSa* sa = FindSa(it->second);
      if (ChildSa* c = sa ? sa->FindChild(r.child_sa) : nullptr)
        QueueRekeyChild(*sa, *c);
      return;
    }
    if (IkeSa* sa = FindSa(r.ike_sa))
      if (!sa->retired) QueueRekeyIke(*sa);
  }

  void QueueRekeyIke(IkeSa& sa, wire::KeGroup group = wire::KeGroup::kNone) {
    if (sa.state != State::kEstablished || sa.retired) return;
    for (auto& t : sa.tasks)
      if (t.kind == ReqKind::kRekeyIke) return;
    if (sa.pending && sa.pending->kind == ReqKind::kRekeyIke) return;
    Task t{ReqKind::kRekeyIke};
    t.group = group;
    sa.tasks.push_back(std::move(t));
    RunTasks(sa);
  }

  void On(const DeleteRequest& r) {
    if (r.child_sa) {
      auto it = child_owner_.find(r.child_sa);
      if (it == child_owner_.end()) return;
      IkeSa* sa = FindSa(it->second);
      if (ChildSa* c = sa ? sa->FindChild(r.child_sa) : nullptr)
        QueueDeleteChild(*sa, *c, FailureReason::kDeletedLocally);
      return;
    }
    if (IkeSa* sa = FindSa(r.ike_sa))
      if (!sa->retired) QueueDeleteIke(*sa, FailureReason::kDeletedLocally);
  }

  void On(const KernelExpire& e) {
    auto find = [&](uint32_t spi) -> std::pair<IkeSa*, ChildSa*> {
      for (auto& [h, sa] : sas_)
        for (auto& c : sa->children)
          if ((c.spi_in == spi && sa->local.address == e.destination) ||
              (c.spi_out == spi && sa->remote.address == e.destination))
            return {sa.get(), &c};
      return {nullptr, nullptr};
    };
    auto [sa, c] = find(e.spi);
    if (!c) return;
    if (e.hard) {
      QueueDeleteChild(*sa, *c, FailureReason::kExpired);
    } else {
      QueueRekeyChild(*sa, *c);
    }
  }

  void On(const KernelMapping& m) {
    for (auto& [h, sa] : sas_) {
      if (sa->retired || sa->local.address != m.destination) continue;
      for (const auto& c : sa->children) {
        if (c.spi_in != m.spi) continue;
        FollowPeer(*sa, m.new_remote, "ESP");
        return;
      }
    }
  }

  // RFC 7296 section 2.23: a host not behind a NAT sends to the address and
  // port of the last authenticated packet from the peer. A new port moves
  // the IKE SA and the UDP encapsulation of its ESP SAs. A new address of a
  // peer behind a NAT (the NAT got another public address) moves the IKE
  // SA, the ESP SAs (MoveChildSa: same SPIs, keys and sequence numbers) and
  // the policies that name the address: tunnel templates, and in transport
  // mode the selectors that stand for the peer's own address (2.23.1).
  void FollowPeer(IkeSa& sa, const Endpoint& seen, const char* why) {
    if (seen == sa.remote || !(sa.nat_local || sa.nat_remote) ||
        sa.state != State::kEstablished)
      return;
    const Endpoint old = sa.remote;
    const bool port_only = old.address == seen.address;
    if (!port_only &&
        (!sa.nat_remote || seen.address.family != old.address.family)) {
      LogLine(LogLevel::kInfo, sa.handle, FailureReason::kNone,
              std::string("authenticated packet (") + why + ") from " +
                  seen.address.ToString() + ":" + std::to_string(seen.port) +
                  " ignored: the peer is not behind a NAT, its address stays " +
                  old.address.ToString());
      return;
    }
    sa.remote = seen;
    LogLine(LogLevel::kInfo, sa.handle, FailureReason::kNone,
            std::string("NAT mapping changed (") + why + "): " +
                old.address.ToString() + ":" + std::to_string(old.port) +
                " -> " + seen.address.ToString() + ":" +
                std::to_string(seen.port));
    ResendPendingRequest(sa);
    if (!port_only) {
      MovePeerAddress(sa, old.address);
      return;
    }
    for (const auto& c : sa.children) {
      Emit(UpdateChildSaEncapsulation{
          sa.handle, c.handle, SaDirection::kInbound, sa.local.address,
          c.spi_in, UdpEncapsulation{seen.port, sa.local.port}});
      if (c.deferred_out)
        c.deferred_out->encapsulation =
            UdpEncapsulation{sa.local.port, seen.port};
      if (!c.outbound_installed) continue;
      Emit(UpdateChildSaEncapsulation{
          sa.handle, c.handle, SaDirection::kOutbound, seen.address,
          c.spi_out, UdpEncapsulation{sa.local.port, seen.port}});
    }
  }

  // The sends of an outstanding request so far went to the peer's old NAT
  // mapping, which is gone: send it again now, to the new one, with a fresh
  // retransmission budget, so a liveness check under way does not declare
  // the peer dead that just proved it is alive.
  void ResendPendingRequest(IkeSa& sa) {
    if (!sa.pending) return;
    Pending& p = *sa.pending;
    p.sends = 1;
    p.timeout = settings_.retransmit_initial;
    SendBytes(sa, p.bytes);
    Arm(sa, IkeTimer::kRetransmit, p.timeout);
  }

  // The second half of FollowPeer for a new address (sa.remote holds it):
  // make before break, so outbound traffic always finds an SA its policy
  // names. Inbound SAs move first (in place), then each outbound SA is
  // copied to the new address, the policies are replaced, and the old
  // outbound SAs go.
  void MovePeerAddress(IkeSa& sa, const policy::IpAddress& old) {
    UnindexByPeer(sa);
    IndexByPeer(sa);
    const UdpEncapsulation out_encap{sa.local.port, sa.remote.port};
    const UdpEncapsulation in_encap{sa.remote.port, sa.local.port};
    struct OldPolicies {
      const ChildSa* child;
      std::vector<policy::TrafficSelector> local_ts, remote_ts;
    };
    std::vector<OldPolicies> replaced;
    for (auto& c : sa.children) {
      const auto old_remote_ts = c.remote_ts;
      // Transport mode across the NAT: the kernel's selectors name the
      // NAT's address for the peer's own; they follow the NAT, while the
      // peer's view (wire_*_ts, for rekeys) stays.
      if (c.mode == policy::IpsecMode::kTransport)
        for (auto& ts : c.remote_ts)
          if (ts.addresses.start == old && ts.addresses.end == old)
            ts.addresses = policy::IpRange::Host(sa.remote.address);
      if (c.remote_ts != old_remote_ts && c.wire_local_ts.empty()) {
        c.wire_local_ts = c.local_ts;
        c.wire_remote_ts = old_remote_ts;
      }
      const bool policies_change = c.mode == policy::IpsecMode::kTunnel ||
                                   c.remote_ts != old_remote_ts;
      if (c.owns_policies && policies_change)
        replaced.push_back({&c, c.local_ts, old_remote_ts});
      Emit(MoveChildSa{sa.handle, c.handle, SaDirection::kInbound, c.spi_in,
                       sa.local.address, sa.remote.address, sa.local.address,
                       in_encap, c.remote_ts, c.local_ts});
      if (c.deferred_out) {
        c.deferred_out->destination = sa.remote.address;
        c.deferred_out->encapsulation = out_encap;
        c.deferred_out->destination_ts = c.remote_ts;
      }
      if (c.outbound_installed)
        Emit(MoveChildSa{sa.handle, c.handle, SaDirection::kOutbound,
                         c.spi_out, old, sa.local.address, sa.remote.address,
                         out_encap, c.local_ts, c.remote_ts});
    }
    // Install the new policies before removing the old: the same selectors
    // (tunnel mode) are replaced in place, others are added first.
    for (const auto& r : replaced) EmitPolicies(sa, *r.child, true);
    for (const auto& r : replaced)
      EmitPolicySet(sa, r.child->handle, r.child->mode, r.child->reqid,
                    r.local_ts, r.remote_ts, false);
    for (const auto& c : sa.children)
      if (c.outbound_installed)
        Emit(DeleteChildSa{sa.handle, c.handle, SaDirection::kOutbound, old,
                           c.spi_out});
  }

  void QueueRekeyChild(IkeSa& sa, ChildSa& c) {
    if (c.state != ChildState::kActive || sa.state != State::kEstablished)
      return;
    for (auto& t : sa.tasks)
      if (t.kind == ReqKind::kRekeyChild && t.child == c.handle) return;
    if (sa.pending && sa.pending->child && sa.pending->child->rekeys == c.handle)
      return;
    sa.tasks.push_back(Task{ReqKind::kRekeyChild, c.handle});
    RunTasks(sa);
  }

  void QueueDeleteChild(IkeSa& sa, ChildSa& c, FailureReason reason) {
    if (c.state == ChildState::kDeleting) return;
    c.state = ChildState::kDeleting;
    if (sa.state != State::kEstablished) return;
    sa.tasks.push_back(Task{ReqKind::kDeleteChild, c.handle, {}, {}, reason});
    RunTasks(sa);
  }

  void QueueDeleteIke(IkeSa& sa, FailureReason reason) {
    if (sa.state != State::kEstablished) {
      RemoveSa(sa, reason);
      return;
    }
    sa.state = State::kDeleting;
    sa.tasks.clear();
    sa.tasks.push_back(Task{ReqKind::kDeleteIke, 0, {}, {}, reason});
    RunTasks(sa);
  }

  // Starts the next queued exchange when none is outstanding.
  void RunTasks(IkeSa& sa) {
    while (!sa.pending && !sa.tasks.empty() &&
           (sa.state == State::kEstablished || sa.state == State::kDeleting)) {
      Task t = std::move(sa.tasks.front());
      sa.tasks.pop_front();
      IkeSaHandle h = sa.handle;
      switch (t.kind) {
        case ReqKind::kCreateChild:
          StartCreateChild(sa, t.spd_entry, t.trigger, nullptr, t.group);
          break;
        case ReqKind::kRekeyChild:
          if (ChildSa* c = sa.FindChild(t.child))
            if (c->state == ChildState::kActive)
              StartCreateChild(sa, c->spd_entry, std::nullopt, c, t.group);
          break;
        case ReqKind::kDeleteChild:
          if (ChildSa* c = sa.FindChild(t.child)) {
            wire::DeletePayload d{wire::ProtocolId::kEsp, 4,
                                  {SpiBytes32(c->spi_in)}};
            SendEncryptedRequest(sa, ReqKind::kDeleteChild,
                                 ExchangeType::kInformational,
                                 {wire::MakePayload(std::move(d))},
                                 std::nullopt, c->handle, t.reason);
          }
          break;
        case ReqKind::kDeleteIke: {
          wire::DeletePayload d{wire::ProtocolId::kIke, 0, {}};
          SendEncryptedRequest(sa, ReqKind::kDeleteIke,
                               ExchangeType::kInformational,
                               {wire::MakePayload(std::move(d))},
                               std::nullopt, 0, t.reason);
          break;
        }
        case ReqKind::kDpd:
          SendEncryptedRequest(sa, ReqKind::kDpd, ExchangeType::kInformational,
                               {});
          break;
        case ReqKind::kRekeyIke:
          StartRekeyIke(sa, t.group);
          break;
        default:
          break;
      }
      if (!FindSa(h)) return;
    }
  }

  void SendEncryptedRequest(IkeSa& sa, ReqKind kind, ExchangeType exchange,
                            const std::vector<wire::Payload>& inner,
                            std::optional<ChildNegotiation> child =
                                std::nullopt,
                            ChildSaHandle target = 0,
                            FailureReason reason =
                                FailureReason::kDeletedLocally) {
    wire::Header h;
    h.initiator_spi = sa.spi_i;
    h.responder_spi = sa.spi_r;
    h.exchange = exchange;
    h.flags = sa.initiator ? wire::header_flags::kInitiator : 0;
    h.message_id = sa.next_request_id;
    auto bytes = Seal(sa, h, inner);
    if (!bytes.ok()) {
      LogLine(LogLevel::kError, sa.handle, FailureReason::kInternalError,
              "sealing " + wire::ExchangeName(exchange) +
                  " request: " + bytes.error().message);
      if (child && child->spi_in) spis_.Release(sa.local.address, child->spi_in);
      return;
    }
    uint32_t id = sa.next_request_id++;
    StartRequest(sa, kind, id, std::move(*bytes), std::move(child), target,
                 reason);
  }

  void SendResponse(IkeSa& sa, const wire::Header& req, ExchangeType exchange,
                    const std::vector<wire::Payload>& inner) {
    wire::Header h;
    h.initiator_spi = sa.spi_i;
    h.responder_spi = sa.spi_r;
    h.exchange = exchange;
    h.flags = uint8_t(wire::header_flags::kResponse |
                      (sa.initiator ? wire::header_flags::kInitiator : 0));
    h.message_id = req.message_id;
    auto bytes = Seal(sa, h, inner);
    if (!bytes.ok()) {
      LogLine(LogLevel::kError, sa.handle, FailureReason::kInternalError,
              "sealing response: " + bytes.error().message);
      return;
    }
    sa.has_response = true;
    sa.response_id = req.message_id;
    sa.response = std::move(*bytes);
    sa.response_sends = 1;
    SendBytes(sa, sa.response);
  }

  // ------------------------------------------------------------ datagrams

  void On(const DatagramReceived& d) {
    auto header = wire::DecodeHeader(d.bytes);
    if (!header.ok()) {
      LogLine(LogLevel::kDebug, 0, FailureReason::kInvalidSyntax,
              "datagram from " + d.remote.address.ToString() +
                  " dropped: " + header.error().message);
      return;
    }
    const wire::Header& h = *header;
    bool from_original_initiator = h.IsInitiator();
    if (h.exchange == ExchangeType::kIkeSaInit && !h.IsResponse() &&
        from_original_initiator && h.responder_spi == 0 &&
        h.message_id == 0) {
      RespondInit(d, h);
      return;
    }
    uint64_t ours = from_original_initiator ? h.responder_spi
                                            : h.initiator_spi;
    auto it = by_spi_.find(ours);
    if (it == by_spi_.end()) {
      LogLine(LogLevel::kDebug, 0, FailureReason::kInvalidSpi,
              "message for unknown IKE SPI " + ToHex(SpiBytes(ours)) +
                  " from " + d.remote.address.ToString() + " dropped");
      return;
    }
    IkeSa* sa = FindSa(it->second);
    if (!sa) return;
    // The role bit must fit our role and the other SPI must match.
    if (from_original_initiator == sa->initiator) return;
    if (sa->initiator && sa->state != State::kInitSent &&
        h.responder_spi != sa->spi_r)
      return;
    if (!sa->initiator && h.initiator_spi != sa->spi_i) return;
    if (h.IsResponse()) {
      OnResponse(*sa, d, h);
    } else {
      OnRequest(*sa, d, h);
    }
  }

  // --- responder: IKE_SA_INIT (stateless until a proposal is acceptable)

  void SendStatelessInitReply(const DatagramReceived& d, const wire::Header& req,
                              std::vector<wire::Payload> payloads) {
    wire::Message m;
    m.header.initiator_spi = req.initiator_spi;
    m.header.responder_spi = 0;
    m.header.exchange = ExchangeType::kIkeSaInit;
    m.header.flags = wire::header_flags::kResponse;
    m.payloads = std::move(payloads);
    auto bytes = wire::EncodeMessage(m);
    if (bytes.ok())
      Emit(SendDatagram{d.local, d.remote, std::move(*bytes),
                        d.local.port != 500});
  }

  crypto::Bytes CookieFor(const crypto::Bytes& ni, const Endpoint& remote,
                          uint64_t spi_i, uint8_t version) {
    const crypto::Bytes& secret =
        version == cookie_version_ ? cookie_secret_ : previous_cookie_secret_;
    auto sha = Botan::HashFunction::create_or_throw("SHA-256");
    sha->update(ni.data(), ni.size());
    auto ip = remote.address.ToBytes();
    sha->update(ip.data(), ip.size());
    auto spi = SpiBytes(spi_i);
    sha->update(spi.data(), spi.size());
    sha->update(secret.data(), secret.size());
    auto digest = sha->final();
    crypto::Bytes out(1 + digest.size());
    out[0] = version;
    std::copy(digest.begin(), digest.end(), out.begin() + 1);
    return out;
  }

  void RotateCookieSecret() {
    if (!cookie_secret_.empty() &&
        now_ - cookie_secret_born_ < settings_.cookie_secret_lifetime)
      return;
    previous_cookie_secret_ = cookie_secret_;
    cookie_secret_ = random_.Generate(32);
    ++cookie_version_;
    cookie_secret_born_ = now_;
  }

  void RespondInit(const DatagramReceived& d, const wire::Header& h) {
    // A retransmitted request: answer with the same response.
    // (Also a replay of one whose SA exists: ignored, no new state.)
    auto known = init_index_.find({h.initiator_spi, d.remote.address.value,
                                   d.remote.port});
    if (known != init_index_.end()) {
      if (IkeSa* sa = FindSa(known->second)) {
        if (sa->state == State::kHalfOpen && d.bytes == sa->init_request &&
            !sa->init_response.empty())
          Emit(SendDatagram{sa->local, sa->remote, sa->init_response,
                            sa->marker()});
      }
      return;
    }
    auto msg = wire::DecodeMessage(d.bytes);
    if (!msg.ok()) {
      LogLine(LogLevel::kInfo, 0, FailureReason::kInvalidSyntax,
              "IKE_SA_INIT from " + d.remote.address.ToString() + ": " +
                  msg.error().message);
      std::vector<wire::Payload> ps;
      crypto::Bytes data;
      if (msg.error().notify == NotifyType::kUnsupportedCriticalPayload)
        data = {msg.error().unsupported_payload_type};
      ps.push_back(Notify(msg.error().notify, data));
      SendStatelessInitReply(d, h, std::move(ps));
      return;
    }
    const auto& ps = msg->payloads;
    const auto* sa_payload = wire::FindFirst<wire::SaPayload>(ps);
    const auto* ke_payload = wire::FindFirst<wire::KePayload>(ps);
    const auto* nonce = wire::FindFirst<wire::NoncePayload>(ps);
    if (!sa_payload || !ke_payload || !nonce || nonce->data.size() < 16 ||
        nonce->data.size() > 256) {
      LogLine(LogLevel::kInfo, 0, FailureReason::kInvalidSyntax,
              "IKE_SA_INIT from " + d.remote.address.ToString() +
                  " lacks an SA, KE or valid Nonce payload");
      SendStatelessInitReply(d, h, {Notify(NotifyType::kInvalidSyntax)});
      return;
    }
    // RFC 7296 section 2.6: demand a cookie while too many SAs are half-open.
    if (half_open_count_ >= settings_.cookie_threshold) {
      RotateCookieSecret();
      const auto* cookie = FindNotify(ps, NotifyType::kCookie);
      bool valid = false;
      if (cookie && !cookie->data.empty()) {
        uint8_t v = cookie->data[0];
        if (v == cookie_version_ ||
            (v == uint8_t(cookie_version_ - 1) &&
             !previous_cookie_secret_.empty()))
          valid = crypto::ConstantTimeEqual(
              View(CookieFor(nonce->data, d.remote, h.initiator_spi, v)),
              View(cookie->data));
      }
      if (!valid) {
        ++cookies_demanded_;
        SendStatelessInitReply(
            d, h,
            {Notify(NotifyType::kCookie,
                    CookieFor(nonce->data, d.remote, h.initiator_spi,
                              cookie_version_))});
        return;
      }
    }
    auto selected = crypto::SelectProposal(
        wire::ProtocolId::kIke, responder_ike_sets_,
        ToCryptoProposals(*sa_payload, false));
    if (!selected.ok()) {
      LogLine(LogLevel::kWarning, 0, FailureReason::kNoProposalChosen,
              "IKE_SA_INIT from " + d.remote.address.ToString() + ": " +
                  selected.error().message);
      SendStatelessInitReply(d, h, {Notify(NotifyType::kNoProposalChosen)});
      return;
    }
    const crypto::TransformSet& set = selected->transforms;
    if (ke_payload->group != set.ke) {
      LogLine(LogLevel::kInfo, 0, FailureReason::kInvalidKePayload,
              "IKE_SA_INIT from " + d.remote.address.ToString() +
                  ": KE group " + std::to_string(uint16_t(ke_payload->group)) +
                  " differs from the selected " +
                  std::to_string(uint16_t(set.ke)) + "; asking for it");
      SendStatelessInitReply(
          d, h, {Notify(NotifyType::kInvalidKePayload, GroupBytes(set.ke))});
      return;
    }
    if (!crypto::ValidatePeerKeValue(set.ke, View(ke_payload->data)).ok()) {
      SendStatelessInitReply(d, h, {Notify(NotifyType::kInvalidSyntax)});
      return;
    }
    IkeSa& sa = NewSa(false);
    sa.local = d.local;
    sa.remote = d.remote;
    sa.spi_i = h.initiator_spi;
    sa.spi_r = NewIkeSpi();
    by_spi_[sa.spi_r] = sa.handle;
    IndexByPeer(sa);
    sa.set = set;
    sa.ni = nonce->data;
    sa.nr = random_.Generate(kNonceSize);
    sa.state = State::kHalfOpen;
    ++half_open_count_;
    sa.init_remote = d.remote;
    init_index_[{sa.spi_i, sa.remote.address.value, sa.remote.port}] =
        sa.handle;
    auto ke = crypto::KeyExchange::Generate(set.ke, random_);
    if (!ke.ok()) {
      RemoveSa(sa, FailureReason::kInternalError);
      return;
    }
    auto shared = (*ke)->ComputeSharedSecret(View(ke_payload->data));
    if (!shared.ok()) {
      LogLine(LogLevel::kInfo, sa.handle, FailureReason::kInvalidSyntax,
              "KE payload: " + shared.error().message);
      SendStatelessInitReply(d, h, {Notify(NotifyType::kInvalidSyntax)});
      RemoveSa(sa, FailureReason::kInvalidSyntax);
      return;
    }
    if (!DeriveKeys(sa, View(*shared))) {
      RemoveSa(sa, FailureReason::kInternalError);
      return;
    }
    ReadInitNotifies(sa, ps);
    wire::Message m;
    m.header.initiator_spi = sa.spi_i;
    m.header.responder_spi = sa.spi_r;
    m.header.exchange = ExchangeType::kIkeSaInit;
    m.header.flags = wire::header_flags::kResponse;
    m.payloads.push_back(wire::MakePayload(
        BuildChosen(set, wire::ProtocolId::kIke, selected->proposal_number,
                    {}, true)));
    m.payloads.push_back(
        wire::MakePayload(wire::KePayload{set.ke, (*ke)->public_value()}));
    m.payloads.push_back(wire::MakePayload(wire::NoncePayload{sa.nr}));
    AppendCertReq(responder_certreq_, m.payloads);
    AppendInitNotifies(sa, m.payloads);
    auto bytes = wire::EncodeMessage(m);
    if (!bytes.ok()) {
      RemoveSa(sa, FailureReason::kInternalError);
      return;
    }
    sa.init_request = d.bytes;
    sa.init_response = *bytes;
    sa.expected_request_id = 1;
    Arm(sa, IkeTimer::kHalfOpen, settings_.half_open_timeout);
    SendBytes(sa, sa.init_response);
  }

  bool DeriveKeys(IkeSa& sa, ByteView shared) {
    auto skeyseed = crypto::ComputeSkeyseed(sa.set.prf, View(sa.ni),
                                            View(sa.nr), shared);
    if (!skeyseed.ok()) return false;
    auto keys = crypto::DeriveIkeSaKeys(sa.set, View(*skeyseed), View(sa.ni),
                                        View(sa.nr), View(SpiBytes(sa.spi_i)),
                                        View(SpiBytes(sa.spi_r)));
    if (!keys.ok()) {
      LogLine(LogLevel::kError, sa.handle, FailureReason::kInternalError,
              keys.error().message);
      return false;
    }
    sa.keys = std::move(*keys);
    return true;
  }

  // NAT detection (2.23) and the peer's announced capabilities.
  void ReadInitNotifies(IkeSa& sa, const std::vector<wire::Payload>& ps) {
    NoteCertReq(sa, ps);
    bool saw_src = false, src_match = false;
    for (const auto& p : ps) {
      auto* n = std::get_if<wire::NotifyPayload>(&p.body);
      if (!n) continue;
      if (n->type == NotifyType::kNatDetectionSourceIp) {
        saw_src = true;
        if (n->data == NatDetectionHash(sa.spi_i, sa.initiator ? sa.spi_r : 0,
                                        sa.remote))
          src_match = true;
      } else if (n->type == NotifyType::kNatDetectionDestinationIp) {
        sa.nat_local = n->data != NatDetectionHash(
                                      sa.spi_i, sa.initiator ? sa.spi_r : 0,
                                      sa.local);
      } else if (n->type == NotifyType::kIkev2FragmentationSupported) {
        sa.peer_fragmentation = true;
      } else if (n->type == NotifyType::kSignatureHashAlgorithms) {
        sa.peer_hashes.clear();
        for (size_t i = 0; i + 1 < n->data.size(); i += 2)
          sa.peer_hashes.push_back(
              wire::HashAlgorithm(uint16_t(n->data[i] << 8 | n->data[i + 1])));
      }
    }
    // Several source notifies may come (multihomed peer); one match is enough.
    sa.nat_remote = saw_src && !src_match;
  }

  // --- initiator: IKE_SA_INIT response

  void OnInitResponse(IkeSa& sa, const DatagramReceived& d,
                      const wire::Header& h) {
    auto msg = wire::DecodeMessage(d.bytes);
    if (!msg.ok()) return;  // may be forged; wait for a good one or timeout
    const auto& ps = msg->payloads;
    if (const auto* cookie = FindNotify(ps, NotifyType::kCookie)) {
      if (sa.cookie_retries++ >= 3 || cookie->data.empty() ||
          cookie->data.size() > 64)
        return;
      sa.cookie = cookie->data;
      ClearPending(sa);
      SendInitRequest(sa);
      return;
    }
    if (const auto* ike = FindNotify(ps, NotifyType::kInvalidKePayload)) {
      if (ike->data.size() == 2 && sa.ke_retries++ < 2) {
        auto group = wire::KeGroup(uint16_t(ike->data[0] << 8 | ike->data[1]));
        const policy::SpdEntry* e = sa.policy->spd.Find(sa.spd_entry);
        auto sets = ExpandProposals(
            ProposalsOf(*sa.policy, e->protect.ike_proposals, false),
            wire::ProtocolId::kIke, false);
        bool offered = std::any_of(sets.begin(), sets.end(),
                                   [&](auto& s) { return s.ke == group; });
        if (offered && group != sa.ke_group) {
          LogLine(LogLevel::kInfo, sa.handle, FailureReason::kInvalidKePayload,
                  "responder asks for KE group " +
                      std::to_string(uint16_t(group)) + "; retrying");
          sa.ke_group = group;
          ClearPending(sa);
          SendInitRequest(sa);
          return;
        }
      }
      ClearPending(sa);
      RemoveSa(sa, FailureReason::kInvalidKePayload,
               NotifyType::kInvalidKePayload);
      return;
    }
    if (const auto* err = FindError(ps)) {
      LogLine(LogLevel::kWarning, sa.handle, ReasonForNotify(err->type),
              "IKE_SA_INIT refused by " + sa.remote.address.ToString() +
                  " with " + NotifyText(err->type));
      ClearPending(sa);
      RemoveSa(sa, ReasonForNotify(err->type), err->type);
      return;
    }
    const auto* sa_payload = wire::FindFirst<wire::SaPayload>(ps);
    const auto* ke_payload = wire::FindFirst<wire::KePayload>(ps);
    const auto* nonce = wire::FindFirst<wire::NoncePayload>(ps);
    if (!sa_payload || !ke_payload || !nonce || nonce->data.size() < 16 ||
        nonce->data.size() > 256 || h.responder_spi == 0)
      return;
    const policy::SpdEntry* e = sa.policy->spd.Find(sa.spd_entry);
    auto offered = ExpandProposals(
        ProposalsOf(*sa.policy, e->protect.ike_proposals, false),
        wire::ProtocolId::kIke, false);
    auto set = AcceptChosen(*sa_payload, wire::ProtocolId::kIke, offered,
                            nullptr);
    if (!set || set->ke != sa.ke_group || ke_payload->group != sa.ke_group) {
      ClearPending(sa);
      LogLine(LogLevel::kWarning, sa.handle, FailureReason::kNoProposalChosen,
              "IKE_SA_INIT response chose a proposal we did not offer");
      RemoveSa(sa, FailureReason::kNoProposalChosen);
      return;
    }
    auto shared = sa.ke->ComputeSharedSecret(View(ke_payload->data));
    if (!crypto::ValidatePeerKeValue(sa.ke_group, View(ke_payload->data))
             .ok() ||
        !shared.ok()) {
      ClearPending(sa);
      RemoveSa(sa, FailureReason::kInvalidSyntax);
      return;
    }
    ClearPending(sa);
    sa.set = *set;
    sa.spi_r = h.responder_spi;
    sa.nr = nonce->data;
    sa.init_response = d.bytes;
    sa.ke.reset();
    if (!DeriveKeys(sa, View(*shared))) {
      RemoveSa(sa, FailureReason::kInternalError);
      return;
    }
    ReadInitNotifies(sa, ps);
    sa.next_request_id = 1;
    if (sa.nat_local || sa.nat_remote) {
      // RFC 7296 section 2.23: continue on port 4500 once a NAT is seen.
      sa.local.port = 4500;
      sa.remote.port = 4500;
    }
    SendAuthRequest(sa);
  }

  void ClearPending(IkeSa& sa) {
    Disarm(sa, IkeTimer::kRetransmit);
    sa.pending.reset();
  }

  // --- authentication helpers

  struct OurAuth {
    wire::AuthPayload auth;
    std::vector<wire::CertPayload> certs;
    policy::Identity id;
  };

  // The signature an OurAuth still lacks, asked of an ExternalSigner.
  struct NeedSignature {
    OurAuth partial;  // id, certs and auth.method; auth.data empty
    crypto::SignatureOptions options;
    crypto::RawSignatureScheme scheme{};
    crypto::Bytes octets;
    ExternalSigner signer;
  };

  std::variant<OurAuth, Failure, NeedSignature> BuildOurAuth(IkeSa& sa,
                                              const policy::PadEntry& pad,
                                              bool initiator_side,
                                              ByteView real_message,
                                              ByteView peer_nonce) {
    const policy::PolicySnapshot& snap = *sa.policy;
    // Only an initiator is ever asked to present another credential; the
    // responder's identity stays the PAD entry's.
    const LocalCredentialOverride* override =
        initiator_side ? sa.local_credential.get() : nullptr;
    const policy::LocalIdentity* local =
        override || pad.local_identity.empty()
            ? nullptr
            : snap.FindIdentity(pad.local_identity);
    if (!override && !pad.local_identity.empty() && !local)
      return Failure{FailureReason::kPolicyMissing, std::nullopt,
                     "PAD entry '" + pad.name + "' names local identity '" +
                         pad.local_identity + "', which is not configured"};
    // A configured identity the application picked may prove itself with
    // its shared key instead of a private key.
    const bool override_psk = override && !override->credential.private_key &&
                              !override->credential.external_signer &&
                              !override->shared_key.empty();
    if (override && ((!override->credential.private_key &&
                      !override->credential.external_signer && !override_psk) ||
                     override->id.type == wire::IdType::kNull))
      return Failure{FailureReason::kPolicyMissing, std::nullopt,
                     "the credential asked for (" + override->label +
                         ") has no key or no identity"};
    OurAuth out;
    out.id = override ? override->id
                      : local ? local->id : policy::Identity::Null();
    sa.local_id = out.id.ToString();
    auto prf = crypto::Prf::Create(sa.set.prf);
    if (!prf.ok())
      return Failure{FailureReason::kInternalError, std::nullopt,
                     prf.error().message};
    const crypto::Secret& sk_p = initiator_side ? sa.keys.sk_pi : sa.keys.sk_pr;
    auto octets = crypto::BuildSignedOctets(
        *prf, real_message, peer_nonce, View(sk_p),
        View(IdPayloadBody(out.id.type, out.id.data)));
    auto fail = [&](const std::string& what) {
      return Failure{FailureReason::kInternalError, std::nullopt, what};
    };
    if (out.id.type == wire::IdType::kNull) {
      auto a = crypto::ComputeNullAuth(sa.set.prf, View(sk_p), View(octets));
      if (!a.ok()) return fail(a.error().message);
      out.auth = {wire::AuthMethod::kNull, std::move(*a)};
      return out;
    }
    const LocalCredential* cred = nullptr;
    if (override) {
      cred = &override->credential;
    } else if (auto it = credentials_.local.find(local->name);
               it != credentials_.local.end() &&
               (it->second.private_key || it->second.external_signer)) {
      cred = &it->second;
    }
    if (override_psk) {
      auto a = crypto::ComputeSharedKeyAuth(sa.set.prf, View(override->shared_key),
                                            View(octets));
      if (!a.ok()) return fail(a.error().message);
      out.auth = {wire::AuthMethod::kSharedKeyMic, std::move(*a)};
      return out;
    }
    // An overriding key always signs, whatever the entry's method.
    bool use_psk = !override &&
                   (pad.auth == policy::PeerAuthMethod::kPsk || !cred);
    if (use_psk) {
      std::string psk_name = pad.auth == policy::PeerAuthMethod::kPsk &&
                                     !pad.psk_name.empty()
                                 ? pad.psk_name
                                 : local->psk_name;
      const policy::Secret* secret =
          psk_name.empty() ? nullptr : snap.FindSecret(psk_name);
      if (!secret)
        return Failure{FailureReason::kPolicyMissing, std::nullopt,
                       "no shared key '" + psk_name + "' and no private key "
                       "for local identity '" + local->name + "'"};
      auto a = crypto::ComputeSharedKeyAuth(sa.set.prf, View(secret->value),
                                            View(octets));
      if (!a.ok()) return fail(a.error().message);
      out.auth = {wire::AuthMethod::kSharedKeyMic, std::move(*a)};
      return out;
    }
    const crypto::PublicKey& public_key =
        cred->private_key ? cred->private_key->public_key()
                          : cred->external_signer->public_key;
    auto ours = crypto::SupportedSignatureHashes();
    auto hash =
        crypto::SelectSignatureHash(public_key.type(), ours, sa.peer_hashes);
    wire::AuthMethod method = wire::AuthMethod::kDigitalSignature;
    crypto::SignatureOptions options;
    crypto::KeyType key_type = public_key.type();
    if (hash) {
      options.hash = *hash;
    } else if (key_type == crypto::KeyType::kEd25519) {
      options.hash = wire::HashAlgorithm::kIdentity;
    } else if (key_type == crypto::KeyType::kRsa) {
      method = wire::AuthMethod::kRsaSig;
    } else if (key_type == crypto::KeyType::kEcdsaP256) {
      method = wire::AuthMethod::kEcdsa256;
    } else if (key_type == crypto::KeyType::kEcdsaP384) {
      method = wire::AuthMethod::kEcdsa384;
    } else if (key_type == crypto::KeyType::kEcdsaP521) {
      method = wire::AuthMethod::kEcdsa521;
    } else {
      return fail("no signature method fits the local key");
    }
    if (cred->certificate_chain.empty()) {
      out.certs.push_back(
          {wire::CertEncoding::kRawPublicKey, public_key.spki_der()});
    } else {
      for (const auto& c : cred->certificate_chain)
        out.certs.push_back({wire::CertEncoding::kX509Signature, c.der()});
    }
    if (!cred->private_key) {
      // The key stays with its holder: only the octets go out.
      if (key_type == crypto::KeyType::kRsa) options.rsa_pss = false;
      auto scheme = crypto::RawSchemeFor(key_type, method, options);
      if (!scheme.ok()) return fail(scheme.error().message);
      out.auth.method = method;
      return NeedSignature{std::move(out), options, *scheme, std::move(octets),
                           *cred->external_signer};
    }
    auto a = crypto::SignAuth(*cred->private_key, method, options,
                              View(octets), random_);
    if (!a.ok()) return fail(a.error().message);
    out.auth = {method, std::move(*a)};
    return out;
  }

  struct PeerAuthResult {
    const policy::PadEntry* entry = nullptr;
    PeerIdentity identity;
  };

  struct PendingSignature {
    uint64_t request = 0;
    NeedSignature need;
    // Responder: the IKE_AUTH request being answered.
    std::optional<wire::Header> header;
    std::vector<wire::Payload> payloads;
    PeerAuthResult peer;
  };

  void StartSigning(IkeSa& sa, PendingSignature pending) {
    pending.request = next_sign_request_++;
    const NeedSignature& need = pending.need;
    LogLine(LogLevel::kDebug, sa.handle, FailureReason::kNone,
            "IKE_AUTH waits for a " +
                std::string(crypto::RawSignatureSchemeName(need.scheme)) +
                " signature from '" + need.signer.holder + "'");
    Emit(SignRequest{sa.handle, pending.request, need.signer.holder,
                     need.scheme, need.octets});
    Arm(sa, IkeTimer::kSign, need.signer.timeout);
    signing_[sa.handle] = std::move(pending);
  }

  void On(const SignatureDelivered& d) {
    auto it = signing_.find(d.ike_sa);
    if (it == signing_.end() || it->second.request != d.request) return;
    IkeSa* sa = FindSa(d.ike_sa);
    if (!sa) {
      signing_.erase(it);
      return;
    }
    if (d.signature.empty()) {
      SigningFailed(*sa, FailureReason::kSignerRefused,
                    "the key holder '" + it->second.need.signer.holder +
                        "' refused to sign" +
                        (d.refusal.empty() ? "" : ": " + d.refusal));
      return;
    }
    PendingSignature p = std::move(it->second);
    signing_.erase(it);
    Disarm(*sa, IkeTimer::kSign);
    auto auth = crypto::AuthFromRawSignature(
        p.need.signer.public_key, p.need.partial.auth.method, p.need.options,
        ByteView(d.signature.data(), d.signature.size()), View(p.need.octets));
    if (!auth.ok()) {
      signing_.emplace(sa->handle, std::move(p));
      SigningFailed(*sa, FailureReason::kSignerRefused, auth.error().message);
      return;
    }
    OurAuth a = std::move(p.need.partial);
    a.auth.data = std::move(*auth);
    if (sa->initiator) {
      FinishAuthRequest(*sa, a);
    } else {
      FinishAuthResponse(*sa, *p.header, p.payloads, p.peer, a);
    }
  }

  // The external signer failed us: the initiator gives up, the responder
  // answers the waiting IKE_AUTH request before it does.
  void SigningFailed(IkeSa& sa, FailureReason reason, const std::string& why) {
    auto it = signing_.find(sa.handle);
    if (it == signing_.end()) return;
    PendingSignature p = std::move(it->second);
    signing_.erase(it);
    LogLine(LogLevel::kError, sa.handle, reason, why);
    if (p.header) {
      SendResponse(sa, *p.header, ExchangeType::kIkeAuth,
                   {Notify(NotifyType::kAuthenticationFailed)});
      RemoveSa(sa, reason, NotifyType::kAuthenticationFailed);
    } else {
      RemoveSa(sa, reason);
    }
  }

  // The key a pinned-key PAD entry for `id` names, for a peer that signed
  // without sending a CERT payload. Only keys whose fingerprint the entry
  // pins are returned, so a stale key file cannot widen the policy.
  std::optional<crypto::PublicKey> PinnedKeyFor(const IkeSa& sa,
                                                const policy::Identity& id) {
    for (const auto& entry : sa.policy->pad.entries()) {
      if (entry.auth != policy::PeerAuthMethod::kPinnedKey ||
          !entry.peer_id.Matches(id))
        continue;
      for (const auto& file : entry.pinned_key_files) {
        auto it = credentials_.pinned_keys.find(file);
        if (it == credentials_.pinned_keys.end()) continue;
        auto fp = it->second.Fingerprint();
        policy::Sha256 sha;
        std::copy(fp.begin(), fp.end(), sha.begin());
        if (std::find(entry.pinned_keys.begin(), entry.pinned_keys.end(),
                      sha) != entry.pinned_keys.end())
          return it->second;
      }
      return std::nullopt;  // the first matching entry decides (RFC 4301)
    }
    return std::nullopt;
  }

  // PAD lookup and AUTH verification of the peer's IKE_AUTH message.
  std::variant<PeerAuthResult, Failure> VerifyPeer(
      IkeSa& sa, const std::vector<wire::Payload>& ps, bool peer_is_initiator,
      ByteView real_message, ByteView our_nonce) {
    auto deny = [](FailureReason r, std::string text) {
      return Failure{r, NotifyType::kAuthenticationFailed, std::move(text)};
    };
    const wire::IdPayload* id =
        peer_is_initiator
            ? static_cast<const wire::IdPayload*>(
                  wire::FindFirst<wire::IdiPayload>(ps))
            : static_cast<const wire::IdPayload*>(
                  wire::FindFirst<wire::IdrPayload>(ps));
    const auto* auth = wire::FindFirst<wire::AuthPayload>(ps);
    if (!id || !auth)
      return Failure{FailureReason::kInvalidSyntax, NotifyType::kInvalidSyntax,
                     std::string("IKE_AUTH lacks the ") +
                         (id ? "AUTH" : (peer_is_initiator ? "IDi" : "IDr")) +
                         " payload"};
    policy::PeerCredentials creds;
    creds.id = IdentityFromPayload(*id);
    std::optional<crypto::PublicKey> key;
    std::vector<crypto::Certificate> chain;
    switch (auth->method) {
      case wire::AuthMethod::kNull:
        creds.auth = policy::PresentedAuth::kNull;
        break;
      case wire::AuthMethod::kSharedKeyMic:
        creds.auth = policy::PresentedAuth::kSharedKey;
        break;
      case wire::AuthMethod::kRsaSig:
      case wire::AuthMethod::kEcdsa256:
      case wire::AuthMethod::kEcdsa384:
      case wire::AuthMethod::kEcdsa521:
      case wire::AuthMethod::kDigitalSignature: {
        const wire::CertPayload* cert = wire::FindFirst<wire::CertPayload>(ps);
        if (!cert) {
          // Keys configured on both sides (RFC 7670 section 3 allows not
          // sending the key): use the key pinned by the PAD entry that
          // matches the peer's ID.
          key = PinnedKeyFor(sa, creds.id);
          if (!key)
            return deny(FailureReason::kAuthenticationFailed,
                        "signature AUTH without a CERT payload, and no PAD "
                        "entry for " + creds.id.ToString() +
                            " pins a key to verify it with");
          creds.auth = policy::PresentedAuth::kRawPublicKey;
        } else if (cert->encoding == wire::CertEncoding::kRawPublicKey) {
          auto k = crypto::PublicKey::FromSpki(View(cert->data),
                                               "peer CERT (raw public key)");
          if (!k.ok())
            return deny(FailureReason::kAuthenticationFailed,
                        k.error().message);
          key = std::move(*k);
          creds.auth = policy::PresentedAuth::kRawPublicKey;
        } else if (cert->encoding == wire::CertEncoding::kX509Signature) {
          for (const auto& p : ps)
            if (auto* c = std::get_if<wire::CertPayload>(&p.body))
              if (c->encoding == wire::CertEncoding::kX509Signature) {
                auto parsed = crypto::Certificate::ChainFromBytes(
                    View(c->data), "peer CERT payload");
                if (!parsed.ok() || parsed->empty())
                  return deny(FailureReason::kAuthenticationFailed,
                              parsed.ok() ? "empty certificate"
                                          : parsed.error().message);
                chain.push_back((*parsed)[0]);
              }
          key = chain[0].public_key();
          creds.auth = policy::PresentedAuth::kCertificate;
        } else {
          return deny(FailureReason::kAuthenticationFailed,
                      "CERT encoding " +
                          std::to_string(int(cert->encoding)) +
                          " is not supported (expected 4 or 15)");
        }
        auto fp = key->Fingerprint();
        policy::Sha256 s;
        std::copy(fp.begin(), fp.end(), s.begin());
        creds.spki_sha256 = s;
        break;
      }
      default:
        return deny(FailureReason::kAuthenticationFailed,
                    "AUTH method " + std::to_string(int(auth->method)) +
                        " is not supported");
    }
    policy::PadLookup lookup = sa.policy->pad.MatchPeer(creds);
    if (!lookup.ok()) {
      FailureReason r = FailureReason::kPeerUnknown;
      if (lookup.rejection ==
          policy::PadRejection::kNullAuthForAuthenticatedEntry)
        r = FailureReason::kNullAuthNotAllowed;
      else if (lookup.rejection != policy::PadRejection::kNoMatchingEntry)
        r = FailureReason::kPadAuthMismatch;
      return deny(r, "PAD rejects " + creds.id.ToString() + ": " +
                         std::string(policy::PadRejectionName(lookup.rejection)));
    }
    const policy::PadEntry& entry = *lookup.match->entry;
    if (!peer_is_initiator && sa.pad && sa.pad->name != entry.name)
      return deny(FailureReason::kPeerUnknown,
                  "responder " + creds.id.ToString() + " matched PAD entry '" +
                      entry.name + "', not the configured '" + sa.pad->name +
                      "'");
    auto prf = crypto::Prf::Create(sa.set.prf);
    if (!prf.ok())
      return Failure{FailureReason::kInternalError, std::nullopt,
                     prf.error().message};
    const crypto::Secret& sk_p =
        peer_is_initiator ? sa.keys.sk_pi : sa.keys.sk_pr;
    auto octets = crypto::BuildSignedOctets(
        *prf, real_message, our_nonce, View(sk_p),
        View(IdPayloadBody(id->type, id->data)));
    PeerAuthResult result;
    result.entry = &entry;
    result.identity.asserted_id = creds.id;
    result.identity.spki_sha256 = creds.spki_sha256;
    result.identity.recorded_identity = lookup.match->recorded_identity;
    result.identity.pad_entry = entry.name;
    result.identity.authenticated = lookup.match->authenticated;
    crypto::Status verified = crypto::Ok{};
    switch (creds.auth) {
      case policy::PresentedAuth::kNull:
        result.identity.auth = PeerAuthKind::kNull;
        verified = crypto::VerifyNullAuth(sa.set.prf, View(sk_p), View(octets),
                                          View(auth->data));
        break;
      case policy::PresentedAuth::kSharedKey: {
        result.identity.auth = PeerAuthKind::kSharedKey;
        const policy::Secret* secret = sa.policy->FindSecret(entry.psk_name);
        if (!secret)
          return deny(FailureReason::kPolicyMissing,
                      "PAD entry '" + entry.name + "' names shared key '" +
                          entry.psk_name + "', which is not configured");
        verified = crypto::VerifySharedKeyAuth(
            sa.set.prf, View(secret->value), View(octets), View(auth->data));
        break;
      }
      case policy::PresentedAuth::kRawPublicKey:
      case policy::PresentedAuth::kCertificate: {
        result.identity.auth = creds.auth == policy::PresentedAuth::kCertificate
                                   ? PeerAuthKind::kCertificate
                                   : PeerAuthKind::kRawPublicKey;
        auto hashes = crypto::SupportedSignatureHashes();
        verified = crypto::VerifyAuth(*key, auth->method, View(auth->data),
                                      View(octets), hashes);
        if (verified.ok() && entry.auth == policy::PeerAuthMethod::kCa) {
          if (auto why = CheckChain(entry, chain, creds.id))
            return deny(FailureReason::kAuthenticationFailed, *why);
        }
        break;
      }
    }
    if (!verified.ok())
      return deny(FailureReason::kAuthenticationFailed,
                  "AUTH payload of " + creds.id.ToString() +
                      " does not verify: " + verified.error().message);
    return result;
  }

  // Path validation to the entry's trust anchors, and the ID bound to the
  // certificate. Returns why it failed, or nothing.
  std::optional<std::string> CheckChain(
      const policy::PadEntry& entry,
      const std::vector<crypto::Certificate>& chain,
      const policy::Identity& id) {
    if (chain.empty()) return "no certificate";
    try {
      Botan::Certificate_Store_In_Memory store;
      for (const auto& file : entry.ca_files) {
        auto it = credentials_.trust_anchors.find(file);
        if (it == credentials_.trust_anchors.end())
          return "trust anchor file '" + file + "' is not loaded";
        for (const auto& c : it->second) store.add_certificate(c.botan());
      }
      std::vector<Botan::X509_Certificate> path;
      for (const auto& c : chain) path.push_back(c.botan());
      Botan::Path_Validation_Restrictions restrictions;
      auto result = Botan::x509_path_validate(path, restrictions, store);
      if (!result.successful_validation())
        return "certificate chain of " + chain[0].subject() +
               " does not validate: " + result.result_string();
      const auto& ee = chain[0];
      switch (id.type) {
        case wire::IdType::kDerAsn1Dn:
          if (ee.subject_der() != id.data)
            return "ID " + id.ToString() +
                   " is not the certificate subject " + ee.subject();
          break;
        case wire::IdType::kFqdn:
          if (!ee.botan().matches_dns_name(
                  std::string(id.data.begin(), id.data.end())))
            return "ID " + id.ToString() +
                   " is not a DNS name of the certificate";
          break;
        default:
          break;
      }
    } catch (const std::exception& e) {
      return std::string("certificate validation: ") + e.what();
    }
    return std::nullopt;
  }

  // --- initiator: IKE_AUTH request

  // The selectors we propose for an SPD entry (our side, peer side).
  std::pair<std::vector<policy::TrafficSelector>,
            std::vector<policy::TrafficSelector>>
  ProposedSelectors(const IkeSa& sa, const policy::SpdEntry& e,
                    const std::optional<policy::PacketFiveTuple>& trigger) {
    const auto& s = e.selector;
    bool transport = e.protect.mode == policy::IpsecMode::kTransport;
    auto fam = sa.remote.address.family;
    policy::IpRange l = s.local.value_or(
        transport ? policy::IpRange::Host(sa.local.address)
                  : policy::IpRange::All(fam));
    policy::IpRange r = s.remote.value_or(
        transport ? policy::IpRange::Host(sa.remote.address)
                  : policy::IpRange::All(fam));
    std::vector<policy::TrafficSelector> ts_i, ts_r;
    if (trigger) {
      // RFC 7296 section 2.9: the packet that caused the request first.
      ts_i.push_back({policy::IpRange::Host(trigger->local), trigger->protocol,
                      {trigger->local_port, trigger->local_port}});
      ts_r.push_back({policy::IpRange::Host(trigger->remote),
                      trigger->protocol,
                      {trigger->remote_port, trigger->remote_port}});
      if (trigger->protocol == 0 || (trigger->local_port == 0 &&
                                     trigger->remote_port == 0)) {
        ts_i.back().ports = {};
        ts_r.back().ports = {};
      }
      // An SA negotiated with a request's own credential carries only the
      // flow it was asked for (one application's connection).
      if (sa.dedicated) return {ts_i, ts_r};
    }
    ts_i.push_back({l, s.protocol, s.local_ports});
    ts_r.push_back({r, s.protocol, s.remote_ports});
    return {ts_i, ts_r};
  }

  std::optional<ChildNegotiation> PrepareChild(
      IkeSa& sa, const std::string& entry_name,
      const std::optional<policy::PacketFiveTuple>& trigger, bool with_ke) {
    const policy::SpdEntry* e = sa.policy->spd.Find(entry_name);
    if (!e) return std::nullopt;
    ChildNegotiation c;
    c.spd_entry = entry_name;
    c.mode = e->protect.mode;
    c.lifetime = e->protect.child_lifetime;
    auto [ts_i, ts_r] = ProposedSelectors(sa, *e, trigger);
    c.ts_i = std::move(ts_i);
    c.ts_r = std::move(ts_r);
    c.offered = ExpandProposals(
        ProposalsOf(*sa.policy, e->protect.esp_proposals, true),
        wire::ProtocolId::kEsp, !with_ke);
    if (c.offered.empty()) return std::nullopt;
    c.spi_in = spis_.Allocate(sa.local.address, sa.remote.address);
    if (c.spi_in == 0) {
      LogLine(LogLevel::kError, sa.handle, FailureReason::kInternalError,
              "ESP SPI allocation failed");
      return std::nullopt;
    }
    return c;
  }

  void AppendChildOffer(IkeSa& sa, const ChildNegotiation& c,
                        std::vector<wire::Payload>& ps, bool with_ke) {
    if (c.mode == policy::IpsecMode::kTransport)
      ps.push_back(Notify(NotifyType::kUseTransportMode));
    ps.push_back(wire::MakePayload(BuildOffer(
        ProposalsOf(*sa.policy, sa.policy->spd.Find(c.spd_entry)
                                    ->protect.esp_proposals,
                    true),
        wire::ProtocolId::kEsp, SpiBytes32(c.spi_in), !with_ke)));
  }

  void AppendSelectors(std::vector<wire::Payload>& ps,
                       const std::vector<policy::TrafficSelector>& ts_i,
                       const std::vector<policy::TrafficSelector>& ts_r) {
    wire::TsiPayload tsi;
    tsi.selectors = ToWire(ts_i);
    wire::TsrPayload tsr;
    tsr.selectors = ToWire(ts_r);
    ps.push_back(wire::MakePayload(std::move(tsi)));
    ps.push_back(wire::MakePayload(std::move(tsr)));
  }

  void SendAuthRequest(IkeSa& sa) {
    auto built = BuildOurAuth(sa, *sa.pad, true, View(sa.init_request),
                              View(sa.nr));
    if (auto* f = std::get_if<Failure>(&built)) {
      LogLine(LogLevel::kError, sa.handle, f->reason, f->text);
      RemoveSa(sa, f->reason);
      return;
    }
    if (auto* need = std::get_if<NeedSignature>(&built)) {
      StartSigning(sa, PendingSignature{0, std::move(*need), {}, {}, {}});
      return;
    }
    FinishAuthRequest(sa, std::get<OurAuth>(built));
  }

  void FinishAuthRequest(IkeSa& sa, OurAuth& a) {
    auto child = PrepareChild(sa, sa.spd_entry, sa.trigger, false);
    if (!child) {
      RemoveSa(sa, FailureReason::kPolicyMissing);
      return;
    }
    // The CHILD_SA's reqid is taken now, before the peer sets up its side:
    // of two requests in flight for the last free reqid the later one fails
    // here, with nothing of it left at the peer.
    child->reqid = AllocateReqid();
    if (child->reqid == 0) {
      spis_.Release(sa.local.address, child->spi_in);
      LogLine(LogLevel::kError, sa.handle, FailureReason::kNoFreeReqid,
              "CHILD_SA for '" + sa.spd_entry +
                  "': every reqid of the configured range is in use");
      RemoveSa(sa, FailureReason::kNoFreeReqid);
      return;
    }
    std::vector<wire::Payload> ps;
    wire::IdiPayload idi;
    idi.type = a.id.type;
    idi.data = a.id.data;
    ps.push_back(wire::MakePayload(std::move(idi)));
    for (auto& c : a.certs) ps.push_back(wire::MakePayload(std::move(c)));
    crypto::Bytes hashes;
    AppendCaHashes(*sa.pad, hashes);
    AppendCertReq(std::move(hashes), ps);
    ps.push_back(wire::MakePayload(std::move(a.auth)));
    AppendChildOffer(sa, *child, ps, false);
    AppendSelectors(ps, child->ts_i, child->ts_r);
    sa.state = State::kAuthSent;
    SendEncryptedRequest(sa, ReqKind::kAuth, ExchangeType::kIkeAuth, ps,
                         std::move(child));
  }

  // --- requests from the peer

  void OnRequest(IkeSa& sa, const DatagramReceived& d, const wire::Header& h) {
    if (sa.has_response && h.message_id == sa.response_id &&
        h.message_id + 1 == sa.expected_request_id) {
      // RFC 7296 section 2.1: a retransmitted request gets the same answer,
      // in smaller fragments once it seems not to get through (RFC 7383
      // 2.5.2: the responder never retransmits on its own).
      if (ResendsResponse(d.bytes)) {
        if (sa.response_sends >= kSendsPerFragmentSize &&
            Refragment(sa, sa.response))
          sa.response_sends = 0;
        if (sa.response_sends < 255) ++sa.response_sends;
        SendBytes(sa, sa.response);
      }
      return;
    }
    if (h.message_id != sa.expected_request_id) return;
    if (sa.state == State::kHalfOpen && h.exchange != ExchangeType::kIkeAuth)
      return;
    auto opened = OpenIncoming(sa, d, h, /*response=*/false);
    if (!opened) return;
    auto& ps = *opened;
    sa.last_received = now_;
    ++sa.expected_request_id;
    FollowPeer(sa, d.remote, "IKE");
    switch (h.exchange) {
      case ExchangeType::kIkeAuth:
        if (sa.state == State::kHalfOpen) {
          OnAuthRequest(sa, d, h, ps);
        } else {
          SendResponse(sa, h, h.exchange, {Notify(NotifyType::kInvalidSyntax)});
        }
        break;
      case ExchangeType::kInformational:
        OnInformationalRequest(sa, h, ps);
        break;
      case ExchangeType::kCreateChildSa:
        OnCreateChildRequest(sa, h, ps);
        break;
      default:
        SendResponse(sa, h, h.exchange, {Notify(NotifyType::kInvalidSyntax)});
        break;
    }
  }

  void OnAuthRequest(IkeSa& sa, const DatagramReceived& d,
                     const wire::Header& h,
                     const std::vector<wire::Payload>& ps) {
    if (d.remote != sa.remote) sa.remote = d.remote;  // floated to 4500
    sa.local = d.local;
    NoteCertReq(sa, ps);
    auto verified = VerifyPeer(sa, ps, true, View(sa.init_request),
                               View(sa.nr));
    if (auto* f = std::get_if<Failure>(&verified)) {
      LogLine(LogLevel::kWarning, sa.handle, f->reason, f->text);
      SendResponse(sa, h, ExchangeType::kIkeAuth,
                   {Notify(f->notify.value_or(
                       NotifyType::kAuthenticationFailed))});
      RemoveSa(sa, f->reason, f->notify);
      return;
    }
    PeerAuthResult& peer = std::get<PeerAuthResult>(verified);
    sa.pad = peer.entry;
    auto built = BuildOurAuth(sa, *sa.pad, false, View(sa.init_response),
                              View(sa.ni));
    if (auto* f = std::get_if<Failure>(&built)) {
      LogLine(LogLevel::kError, sa.handle, f->reason, f->text);
      SendResponse(sa, h, ExchangeType::kIkeAuth,
                   {Notify(NotifyType::kAuthenticationFailed)});
      RemoveSa(sa, f->reason, NotifyType::kAuthenticationFailed);
      return;
    }
    if (auto* need = std::get_if<NeedSignature>(&built)) {
      StartSigning(sa, PendingSignature{0, std::move(*need), h, ps,
                                        std::move(peer)});
      return;
    }
    FinishAuthResponse(sa, h, ps, peer, std::get<OurAuth>(built));
  }

  void FinishAuthResponse(IkeSa& sa, const wire::Header& h,
                          const std::vector<wire::Payload>& ps,
                          const PeerAuthResult& peer, OurAuth& a) {
    sa.pad = peer.entry;
    sa.peer = peer.identity;
    Disarm(sa, IkeTimer::kHalfOpen);
    --half_open_count_;
    sa.state = State::kEstablished;
    // Keep only the init messages' memory no longer needed.
    sa.init_request.clear();
    sa.init_request.shrink_to_fit();
    sa.init_response.clear();
    sa.init_response.shrink_to_fit();

    std::vector<wire::Payload> out;
    wire::IdrPayload idr;
    idr.type = a.id.type;
    idr.data = a.id.data;
    out.push_back(wire::MakePayload(std::move(idr)));
    for (auto& c : a.certs) out.push_back(wire::MakePayload(std::move(c)));
    out.push_back(wire::MakePayload(std::move(a.auth)));
    Actions deferred;
    AnswerChild(sa, ps, nullptr, {}, out, /*ike_auth=*/true);
    AnnounceIke(sa);
    SendResponse(sa, h, ExchangeType::kIkeAuth, out);
    StartIkeTimers(sa);
  }

  void AnnounceIke(IkeSa& sa) {
    sa.announced = true;
    Emit(IkeSaUp{sa.handle, sa.local, sa.remote, sa.initiator, *sa.peer,
                 sa.request_tag, sa.local_id, sa.dedicated});
    LogLine(LogLevel::kInfo, sa.handle, FailureReason::kNone,
            "IKE SA established with " + sa.remote.address.ToString() +
                " as " + sa.peer->recorded_identity + " (PAD entry '" +
                sa.peer->pad_entry + "')");
  }

  void StartIkeTimers(IkeSa& sa) {
    const policy::SpdEntry* e = nullptr;
    for (const auto& c : sa.children)
      if ((e = sa.policy->spd.Find(c.spd_entry))) break;
    if (!e && !sa.spd_entry.empty()) e = sa.policy->spd.Find(sa.spd_entry);
    Duration hard = settings_.default_ike_hard;
    if (e && e->protect.ike_lifetime.hard_seconds)
      hard = std::chrono::seconds(e->protect.ike_lifetime.hard_seconds);
    Arm(sa, IkeTimer::kHardLifetime, hard);
    policy::Lifetime soft_life;
    if (e) soft_life = e->protect.ike_lifetime;
    soft_life.soft_seconds =
        soft_life.soft_seconds
            ? soft_life.soft_seconds
            : uint64_t(std::chrono::duration_cast<std::chrono::seconds>(
                           settings_.default_ike_soft)
                           .count());
    soft_life = Jittered(soft_life, random_);
    Duration soft = std::chrono::seconds(soft_life.soft_seconds);
    if (soft < hard) Arm(sa, IkeTimer::kSoftLifetime, soft);
    if (settings_.dpd_interval.count() > 0)
      Arm(sa, IkeTimer::kDpd, settings_.dpd_interval);
  }

  // Responder side of a CHILD_SA negotiation, in IKE_AUTH or
  // CREATE_CHILD_SA. Appends the answer (SA, TSi, TSr or an error notify)
  // to `out`; installs the SAs on success.
  void AnswerChild(IkeSa& sa, const std::vector<wire::Payload>& ps,
                   ChildSa* rekeyed, const crypto::Bytes& nonce_r,
                   std::vector<wire::Payload>& out, bool ike_auth,
                   ByteView shared = {}, wire::KeGroup ke_group =
                                             wire::KeGroup::kNone) {
    const auto* sa_payload = wire::FindFirst<wire::SaPayload>(ps);
    const auto* tsi = wire::FindFirst<wire::TsiPayload>(ps);
    const auto* tsr = wire::FindFirst<wire::TsrPayload>(ps);
    if (!sa_payload || !tsi || !tsr) {
      if (!ike_auth) out.push_back(Notify(NotifyType::kInvalidSyntax));
      return;  // childless IKE_AUTH (RFC 6023) simply sets up no child
    }
    auto fail = [&](NotifyType n, FailureReason r, std::string text) {
      LogLine(LogLevel::kWarning, sa.handle, r, text);
      out.push_back(Notify(n));
    };
    auto proposed_i = FromWire(tsi->selectors);
    auto proposed_r = FromWire(tsr->selectors);
    bool wants_transport = FindNotify(ps, NotifyType::kUseTransportMode);
    // RFC 7296 section 2.23.1: in transport mode across a NAT a host names
    // its own address in its selectors, but the packets arrive here from
    // the NAT's. Look up and install with the IKE SA's addresses; answer
    // with the selectors as the peer knows them.
    std::optional<policy::IpAddress> peer_own, local_own;
    if (!rekeyed && wants_transport) {
      if (sa.nat_remote)
        peer_own = SubstituteHost(proposed_i, sa.remote.address);
      if (sa.nat_local)
        local_own = SubstituteHost(proposed_r, sa.local.address);
    }
    // Find the SPD entry: the first pair of proposed selectors that fits an
    // entry bound to the peer's PAD entry, narrowed by the PAD's child SA
    // authorization data (the peer's side).
    const policy::SpdEntry* entry = nullptr;
    std::vector<policy::TrafficSelector> local_ts, remote_ts;
    bool authenticated = sa.peer && sa.peer->authenticated;
    if (rekeyed) {
      entry = sa.policy->spd.Find(rekeyed->spd_entry);
      local_ts = rekeyed->local_ts;
      remote_ts = rekeyed->remote_ts;
    } else {
      for (const auto& ti : proposed_i) {
        for (const auto& tr : proposed_r) {
          auto m = sa.policy->spd.LookupByTrafficSelectors(
              tr, ti, sa.pad->name, authenticated);
          if (!m) continue;
          auto allowed = sa.policy->pad.AuthorizeChildSelectors(*sa.pad,
                                                                {m->remote});
          if (!allowed.ok()) continue;
          entry = m->entry;
          local_ts = {m->local};
          remote_ts = allowed.narrowed;
          break;
        }
        if (entry) break;
      }
      // RFC 7296 section 2.9: when the first pair is the packet that
      // triggered the request, the initiator's policy follows it. Accept the
      // widest later pair of the same SPD entry that still includes that
      // first choice, so one CHILD_SA carries the whole policy rather than
      // the single flow that started the negotiation.
      if (entry && remote_ts.size() == 1) {
        for (const auto& ti : proposed_i) {
          for (const auto& tr : proposed_r) {
            auto m = sa.policy->spd.LookupByTrafficSelectors(
                tr, ti, sa.pad->name, authenticated);
            if (!m || m->entry != entry) continue;
            auto allowed = sa.policy->pad.AuthorizeChildSelectors(
                *sa.pad, {m->remote});
            if (!allowed.ok() || allowed.narrowed.size() != 1) continue;
            if (m->local.Contains(local_ts[0]) &&
                allowed.narrowed[0].Contains(remote_ts[0])) {
              local_ts = {m->local};
              remote_ts = allowed.narrowed;
            }
          }
        }
      }
    }
    if (!entry || local_ts.empty() || remote_ts.empty()) {
      fail(NotifyType::kTsUnacceptable, FailureReason::kTsUnacceptable,
           "no SPD entry for peer '" + (sa.pad ? sa.pad->name : "") +
               "' covers the proposed traffic selectors");
      return;
    }
    policy::IpsecMode mode = entry->protect.mode;
    if (mode == policy::IpsecMode::kTransport && !wants_transport) {
      fail(NotifyType::kNoProposalChosen, FailureReason::kNoProposalChosen,
           "SPD entry '" + entry->name +
               "' needs transport mode; the peer asked for a tunnel");
      return;
    }
    bool with_ke = ke_group != wire::KeGroup::kNone;
    auto ours = ExpandProposals(
        ProposalsOf(*sa.policy, entry->protect.esp_proposals, true),
        wire::ProtocolId::kEsp, !with_ke && !ike_auth ? false : ike_auth);
    if (!with_ke && !ike_auth) {
      // No KE payload: only sets without PFS qualify.
      std::erase_if(ours, [](auto& s) { return s.ke != wire::KeGroup::kNone; });
    }
    auto selected = crypto::SelectProposal(
        wire::ProtocolId::kEsp, ours, ToCryptoProposals(*sa_payload, ike_auth));
    if (!selected.ok() || selected->spi.size() != 4) {
      fail(NotifyType::kNoProposalChosen, FailureReason::kNoProposalChosen,
           "ESP proposal: " + (selected.ok() ? std::string("bad SPI size")
                                             : selected.error().message));
      return;
    }
    if (with_ke && selected->transforms.ke != ke_group) {
      out.push_back(Notify(NotifyType::kInvalidKePayload,
                           GroupBytes(selected->transforms.ke)));
      return;
    }
    uint32_t spi_in = spis_.Allocate(sa.local.address, sa.remote.address);
    if (spi_in == 0) {
      fail(NotifyType::kNoAdditionalSas, FailureReason::kInternalError,
           "ESP SPI allocation failed");
      return;
    }
    ChildSa child;
    child.spd_entry = entry->name;
    child.mode = mode;
    child.spi_in = spi_in;
    child.spi_out = SpiFromBytes32(selected->spi);
    child.set = selected->transforms;
    child.local_ts = local_ts;
    child.remote_ts = remote_ts;
    if (rekeyed) {
      child.wire_local_ts = rekeyed->wire_local_ts;
      child.wire_remote_ts = rekeyed->wire_remote_ts;
    } else if (peer_own || local_own) {
      child.wire_local_ts = WithHost(local_ts, sa.local.address, local_own);
      child.wire_remote_ts = WithHost(remote_ts, sa.remote.address, peer_own);
    }
    // Responder's TSi is the peer's side, TSr ours.
    auto answer_i = child.wire_remote_ts.empty() ? remote_ts
                                                 : child.wire_remote_ts;
    auto answer_r = child.wire_local_ts.empty() ? local_ts
                                                : child.wire_local_ts;
    child.lifetime = entry->protect.child_lifetime;
    const crypto::Bytes& ni_child = ike_auth ? sa.ni : last_peer_nonce_;
    const crypto::Bytes& nr_child = ike_auth ? sa.nr : nonce_r;
    if (!InstallChild(sa, child, ni_child, nr_child, shared, rekeyed,
                      /*inherit_reqid=*/0, /*defer_outbound=*/rekeyed)) {
      spis_.Release(sa.local.address, spi_in);
      out.push_back(Notify(NotifyType::kNoProposalChosen));
      return;
    }
    if (mode == policy::IpsecMode::kTransport)
      out.push_back(Notify(NotifyType::kUseTransportMode));
    out.push_back(wire::MakePayload(
        BuildChosen(selected->transforms, wire::ProtocolId::kEsp,
                    selected->proposal_number, SpiBytes32(spi_in), with_ke)));
    if (!ike_auth && with_ke && pending_ke_public_)
      out.push_back(wire::MakePayload(
          wire::KePayload{ke_group, *pending_ke_public_}));
    if (!ike_auth) out.push_back(wire::MakePayload(wire::NoncePayload{nonce_r}));
    AppendSelectors(out, answer_i, answer_r);
  }

  // Replaces the address of every single-host selector of `seen`'s family
  // by `seen` (RFC 7296 section 2.23.1); returns the first address replaced
  // that differed, nullopt if none did.
  static std::optional<policy::IpAddress> SubstituteHost(
      std::vector<policy::TrafficSelector>& selectors,
      const policy::IpAddress& seen) {
    std::optional<policy::IpAddress> own;
    for (auto& ts : selectors) {
      if (ts.addresses.family() != seen.family ||
          ts.addresses.start != ts.addresses.end || ts.addresses.start == seen)
        continue;
      if (!own) own = ts.addresses.start;
      ts.addresses = policy::IpRange::Host(seen);
    }
    return own;
  }

  // `selectors` with the host `seen` named `own` instead, as the peer knows
  // it; unchanged without `own`.
  static std::vector<policy::TrafficSelector> WithHost(
      std::vector<policy::TrafficSelector> selectors,
      const policy::IpAddress& seen,
      const std::optional<policy::IpAddress>& own) {
    if (own)
      for (auto& ts : selectors)
        if (ts.addresses == policy::IpRange::Host(seen))
          ts.addresses = policy::IpRange::Host(*own);
    return selectors;
  }

  // The reqids live CHILD_SAs hold, and those our CHILD_SA requests in
  // flight reserved when they were sent.
  std::unordered_set<uint32_t> HeldReqids() const {
    std::unordered_set<uint32_t> held;
    for (const auto& [handle, sa] : sas_) {
      for (const auto& c : sa->children) held.insert(c.reqid);
      if (sa->pending && sa->pending->child && sa->pending->child->reqid)
        held.insert(sa->pending->child->reqid);
    }
    return held;
  }

  // The next reqid of settings_.reqids for a new CHILD_SA; 0 when live
  // CHILD_SAs (and requests in flight) hold all of them. Until the range
  // first wraps every reqid handed out is fresh; after that held ones are
  // skipped.
  uint32_t AllocateReqid() {
    const EngineSettings::ReqidRange& range = settings_.reqids;
    std::unordered_set<uint32_t> live;
    if (reqids_wrapped_) live = HeldReqids();
    const uint64_t size = uint64_t{range.last} - range.first + 1;
    for (uint64_t tried = 0; tried < size; ++tried) {
      const uint32_t candidate = next_reqid_;
      if (next_reqid_ == range.last) {
        next_reqid_ = range.first;
        reqids_wrapped_ = true;
      } else {
        ++next_reqid_;
      }
      if (live.count(candidate) == 0) return candidate;
    }
    return 0;
  }

  // Before asking the peer for a new CHILD_SA: refused (and logged) when
  // live CHILD_SAs hold every reqid of the range, rather than leaving the
  // peer with a CHILD_SA we could not install.
  bool NoFreeReqid(const std::string& entry_name) {
    if (!reqids_wrapped_) return false;  // next_reqid_ onwards are unused
    const std::unordered_set<uint32_t> live = HeldReqids();
    const uint64_t size =
        uint64_t{settings_.reqids.last} - settings_.reqids.first + 1;
    if (live.size() < size) return false;
    LogLine(LogLevel::kError, 0, FailureReason::kInternalError,
            "initiate: SPD entry '" + entry_name +
                "': every reqid of the configured range is in use");
    return true;
  }

  // Derives KEYMAT, emits the installs and takes the CHILD_SA into the SA.
  // `rekeyed`: the CHILD_SA it replaces (policies move to the new one).
  bool InstallChild(IkeSa& sa, ChildSa& child, const crypto::Bytes& ni,
                    const crypto::Bytes& nr, ByteView shared,
                    ChildSa* rekeyed, uint32_t inherit_reqid = 0,
                    bool defer_outbound = false) {
    auto algs = crypto::EspAlgorithmsFor(child.set);
    if (!algs.ok()) {
      LogLine(LogLevel::kError, sa.handle, FailureReason::kInternalError,
              algs.error().message);
      return false;
    }
    auto keymat = crypto::DeriveChildKeymat(sa.set.prf, View(sa.keys.sk_d),
                                            shared, View(ni), View(nr),
                                            algs->keymat_bytes());
    if (!keymat.ok()) return false;
    auto keys = crypto::SplitEspKeymat(child.set, View(*keymat));
    if (!keys.ok()) return false;
    child.reqid = rekeyed         ? rekeyed->reqid
                  : inherit_reqid ? inherit_reqid
                                  : AllocateReqid();
    if (child.reqid == 0) {
      // Only as responder (our requests reserve theirs when sent); the
      // peer is answered NO_PROPOSAL_CHOSEN.
      LogLine(LogLevel::kError, sa.handle, FailureReason::kNoFreeReqid,
              "every reqid of the configured range is in use");
      return false;
    }
    child.handle = next_child_handle_++;
    child.lifetime = Jittered(child.lifetime, random_);
    EspTransform t;
    t.encryption = child.set.encr;
    t.encryption_key_bits = child.set.encr_key_bits;
    t.integrity = child.set.integ;
    t.extended_sequence_numbers = child.set.esn == wire::EsnId::kEsn;
    t.aead = keys->algorithms.aead;
    t.kernel_encryption = keys->algorithms.encryption_name;
    t.kernel_integrity = keys->algorithms.integrity_name;
    t.icv_bits = keys->algorithms.icv_bits;
    const crypto::EspDirectionKeys& in_keys =
        sa.initiator ? keys->responder_to_initiator
                     : keys->initiator_to_responder;
    const crypto::EspDirectionKeys& out_keys =
        sa.initiator ? keys->initiator_to_responder
                     : keys->responder_to_initiator;
    std::optional<UdpEncapsulation> encap;
    if (sa.nat_local || sa.nat_remote)
      encap = UdpEncapsulation{sa.local.port, sa.remote.port};
    InstallChildSa in;
    in.ike_sa = sa.handle;
    in.child_sa = child.handle;
    in.direction = SaDirection::kInbound;
    in.spi = child.spi_in;
    in.source = sa.remote.address;
    in.destination = sa.local.address;
    in.mode = child.mode;
    in.reqid = child.reqid;
    in.transform = t;
    in.encryption_key = in_keys.encryption_key;
    in.integrity_key = in_keys.integrity_key;
    in.source_ts = child.remote_ts;
    in.destination_ts = child.local_ts;
    in.lifetime = child.lifetime;
    in.encapsulation = encap;
    if (encap) std::swap(in.encapsulation->source_port,
                         in.encapsulation->destination_port);
    InstallChildSa out = in;
    out.direction = SaDirection::kOutbound;
    out.spi = child.spi_out;
    out.source = sa.local.address;
    out.destination = sa.remote.address;
    out.encryption_key = out_keys.encryption_key;
    out.integrity_key = out_keys.integrity_key;
    out.source_ts = child.local_ts;
    out.destination_ts = child.remote_ts;
    out.encapsulation = encap;
    Emit(std::move(in));
    if (defer_outbound) {
      child.deferred_out = std::make_unique<InstallChildSa>(std::move(out));
      child.waits_for = rekeyed->handle;
      child.outbound_installed = false;
    } else {
      Emit(std::move(out));
    }
    // One CHILD_SA per reqid owns the policies; a rekey takes them over.
    ChildSa* owner = nullptr;
    for (auto& other : sa.children)
      if (other.reqid == child.reqid && other.owns_policies) owner = &other;
    if (!owner) {
      child.owns_policies = true;
      EmitPolicies(sa, child, true);
    } else if (owner == rekeyed) {
      owner->owns_policies = false;
      child.owns_policies = true;
    }
    Emit(ChildSaUp{sa.handle, child.handle, rekeyed ? rekeyed->handle : 0,
                   child.spd_entry, child.spi_in, child.spi_out, child.mode,
                   child.local_ts, child.remote_ts,
                   shared.empty() ? wire::KeGroup::kNone : child.set.ke});
    child_owner_[child.handle] = sa.handle;
    spi_to_child_[child.spi_in] = child.handle;
    if (child.lifetime.soft_seconds)
      Arm(child, ChildTimer::kSoft,
          std::chrono::seconds(child.lifetime.soft_seconds));
    if (child.lifetime.hard_seconds)
      Arm(child, ChildTimer::kHard,
          std::chrono::seconds(child.lifetime.hard_seconds));
    sa.children.push_back(std::move(child));
    return true;
  }

  // The CHILD_SA `gone` is being deleted: a successor whose outbound SA
  // waited for that (RFC 7296 2.8) installs it now, before the old
  // outbound SA goes, so traffic always has an SA.
  void InstallDeferredOutbound(IkeSa& sa, ChildSaHandle gone) {
    for (auto& c : sa.children) {
      if (!c.deferred_out || c.waits_for != gone) continue;
      LogLine(LogLevel::kDebug, sa.handle, FailureReason::kNone,
              "rekeyed CHILD_SA: outbound SPI " +
                  ToHex(SpiBytes32(c.spi_out)) +
                  " in use now that the peer deleted the old one");
      Emit(std::move(*c.deferred_out));
      c.deferred_out.reset();
      c.waits_for = 0;
      c.outbound_installed = true;
    }
  }

  void EmitPolicies(IkeSa& sa, const ChildSa& c, bool install) {
    EmitPolicySet(sa, c.handle, c.mode, c.reqid, c.local_ts, c.remote_ts,
                  install);
  }

  void EmitPolicySet(IkeSa& sa, ChildSaHandle handle, policy::IpsecMode mode,
                     uint32_t reqid,
                     const std::vector<policy::TrafficSelector>& local_ts,
                     const std::vector<policy::TrafficSelector>& remote_ts,
                     bool install) {
    for (const auto& l : local_ts)
      for (const auto& r : remote_ts) {
        if (install) {
          InstallPolicy out{handle, PolicyDirection::kOut, l, r, mode,
                            sa.local.address, sa.remote.address, reqid};
          InstallPolicy in{handle, PolicyDirection::kIn, r, l, mode,
                           sa.remote.address, sa.local.address, reqid};
          Emit(out);
          Emit(in);
          if (mode == policy::IpsecMode::kTunnel) {
            in.direction = PolicyDirection::kForward;
            Emit(in);
          }
        } else {
          Emit(RemovePolicy{handle, PolicyDirection::kOut, l, r});
          Emit(RemovePolicy{handle, PolicyDirection::kIn, r, l});
          if (mode == policy::IpsecMode::kTunnel)
            Emit(RemovePolicy{handle, PolicyDirection::kForward, r, l});
        }
      }
  }

  void OnInformationalRequest(IkeSa& sa, const wire::Header& h,
                              const std::vector<wire::Payload>& ps) {
    std::vector<wire::Payload> out;
    std::vector<crypto::Bytes> deleted_in;
    bool delete_ike = false;
    for (const auto& p : ps) {
      if (auto* d = std::get_if<wire::DeletePayload>(&p.body)) {
        if (d->protocol == wire::ProtocolId::kIke) {
          delete_ike = true;
        } else if (d->protocol == wire::ProtocolId::kEsp) {
          for (const auto& spi : d->spis) {
            uint32_t peer_in = SpiFromBytes32(spi);
            for (auto it = sa.children.begin(); it != sa.children.end(); ++it) {
              if (it->spi_out != peer_in) continue;
              deleted_in.push_back(SpiBytes32(it->spi_in));
              FailureReason r = it->state == ChildState::kRekeyed
                                    ? FailureReason::kRekeyed
                                    : FailureReason::kDeletedByPeer;
              // Our own delete of it crossing this one: answer, forget it.
              InstallDeferredOutbound(sa, it->handle);
              RemoveChild(sa, *it, r);
              sa.children.erase(it);
              break;
            }
          }
        }
      } else if (auto* n = std::get_if<wire::NotifyPayload>(&p.body)) {
        if (n->type == NotifyType::kAuthenticationFailed) {
          // 2.21.2: the initiator rejected our IKE_AUTH answer.
          SendResponse(sa, h, ExchangeType::kInformational, {});
          RemoveSa(sa, FailureReason::kAuthenticationFailed,
                   NotifyType::kAuthenticationFailed);
          return;
        }
        if (n->type == NotifyType::kInvalidSpi && n->data.size() == 4) {
          // The peer got ESP for an SPI it does not know: our outbound SA.
          uint32_t spi = SpiFromBytes32(n->data);
          for (auto& c : sa.children)
            if (c.spi_out == spi) {
              LogLine(LogLevel::kWarning, sa.handle, FailureReason::kInvalidSpi,
                      "peer reports INVALID_SPI for our outbound SPI " +
                          ToHex(n->data) + "; deleting the CHILD_SA");
              QueueDeleteChild(sa, c, FailureReason::kInvalidSpi);
              break;
            }
        }
      }
    }
    if (delete_ike) {
      if (sa.peer_rekey && !sa.retired) {
        // The peer deletes the old IKE SA: its rekey, which crossed ours
        // and which we answered, survived (2.8.2). Our request on the old
        // SA is moot.
        if (sa.pending && sa.pending->child && sa.pending->child->spi_in)
          spis_.Release(sa.local.address, sa.pending->child->spi_in);
        ClearPending(sa);
        IkeSa* old = AdoptPeerRekey(sa);
        if (!old) return;
        SendResponse(*old, h, ExchangeType::kInformational, {});
        RemoveSa(*old, FailureReason::kRekeyed);
        return;
      }
      SendResponse(sa, h, ExchangeType::kInformational, {});
      RemoveSa(sa, sa.retired ? FailureReason::kRekeyed
                              : FailureReason::kDeletedByPeer);
      return;
    }
    if (!deleted_in.empty())
      out.push_back(wire::MakePayload(
          wire::DeletePayload{wire::ProtocolId::kEsp, 4, deleted_in}));
    SendResponse(sa, h, ExchangeType::kInformational, out);
  }

  void OnCreateChildRequest(IkeSa& sa, const wire::Header& h,
                            const std::vector<wire::Payload>& ps) {
    if (sa.state != State::kEstablished) {
      SendResponse(sa, h, h.exchange, {Notify(NotifyType::kTemporaryFailure)});
      return;
    }
    const auto* nonce = wire::FindFirst<wire::NoncePayload>(ps);
    const auto* sa_payload = wire::FindFirst<wire::SaPayload>(ps);
    if (!nonce || nonce->data.size() < 16 || nonce->data.size() > 256 ||
        !sa_payload || sa_payload->proposals.empty()) {
      SendResponse(sa, h, h.exchange, {Notify(NotifyType::kInvalidSyntax)});
      return;
    }
    if (sa_payload->proposals[0].protocol == wire::ProtocolId::kIke) {
      AnswerRekeyIke(sa, h, ps, *sa_payload, nonce->data);
      return;
    }
    ChildSa* rekeyed = nullptr;
    if (const auto* rekey = FindNotify(ps, NotifyType::kRekeySa)) {
      uint32_t spi = SpiFromBytes32(rekey->spi);
      for (auto& c : sa.children)
        if (c.spi_out == spi) rekeyed = &c;
      if (!rekeyed) {
        SendResponse(sa, h, h.exchange,
                     {Notify(NotifyType::kChildSaNotFound, {},
                             uint8_t(wire::ProtocolId::kEsp), rekey->spi)});
        return;
      }
      if (rekeyed->state != ChildState::kActive) {
        // Already replaced or being deleted (2.25): let the peer wait.
        SendResponse(sa, h, h.exchange,
                     {Notify(NotifyType::kTemporaryFailure)});
        return;
      }
    }
    crypto::Bytes nr = random_.Generate(kNonceSize);
    last_peer_nonce_ = nonce->data;
    std::optional<crypto::Secret> shared;
    std::unique_ptr<crypto::KeyExchange> ke;
    wire::KeGroup group = wire::KeGroup::kNone;
    pending_ke_public_.reset();
    if (const auto* kp = wire::FindFirst<wire::KePayload>(ps)) {
      group = kp->group;
      auto k = crypto::KeyExchange::Generate(group, random_);
      if (!k.ok() ||
          !crypto::ValidatePeerKeValue(group, View(kp->data)).ok()) {
        SendResponse(sa, h, h.exchange, {Notify(NotifyType::kInvalidSyntax)});
        return;
      }
      auto s = (*k)->ComputeSharedSecret(View(kp->data));
      if (!s.ok()) {
        SendResponse(sa, h, h.exchange, {Notify(NotifyType::kInvalidSyntax)});
        return;
      }
      shared = std::move(*s);
      ke = std::move(*k);
      pending_ke_public_ = ke->public_value();
    }
    std::vector<wire::Payload> out;
    ChildSaHandle rekeyed_handle = rekeyed ? rekeyed->handle : 0;
    size_t before = sa.children.size();
    AnswerChild(sa, ps, rekeyed, nr, out, false,
                shared ? View(*shared) : ByteView{}, group);
    pending_ke_public_.reset();
    bool created = sa.children.size() > before;
    if (created && rekeyed_handle) {
      ChildSa* old = sa.FindChild(rekeyed_handle);
      old->state = ChildState::kRekeyed;
      Disarm(*old, ChildTimer::kSoft);
      // 2.8.1: our own rekey of the same CHILD_SA is outstanding.
      if (sa.pending && sa.pending->child &&
          sa.pending->child->rekeys == rekeyed_handle) {
        ChildNegotiation& mine = *sa.pending->child;
        mine.collided = true;
        mine.peer_nonce_i = nonce->data;
        mine.our_nonce_r = nr;
        mine.peer_created = sa.children.back().handle;
      }
    }
    SendResponse(sa, h, h.exchange, out);
  }

  // --- our CREATE_CHILD_SA requests

  void StartCreateChild(IkeSa& sa, const std::string& entry_name,
                        const std::optional<policy::PacketFiveTuple>& trigger,
                        ChildSa* rekeyed, wire::KeGroup requested) {
    const policy::SpdEntry* e = sa.policy->spd.Find(entry_name);
    if (!e) return;
    auto esp = ProposalsOf(*sa.policy, e->protect.esp_proposals, true);
    // PFS when the first ESP proposal names a group.
    wire::KeGroup group = requested;
    if (group == wire::KeGroup::kNone && !esp.proposals.empty() &&
        !esp.proposals[0].ke.empty())
      group = esp.proposals[0].ke[0];
    bool with_ke = group != wire::KeGroup::kNone;
    auto child = PrepareChild(sa, entry_name, trigger, with_ke);
    if (!child) return;
    if (rekeyed) {
      // The peer's view of the selectors (2.23.1), the kernel's otherwise.
      bool nat_view = !rekeyed->wire_local_ts.empty();
      child->ts_i = nat_view ? rekeyed->wire_local_ts : rekeyed->local_ts;
      child->ts_r = nat_view ? rekeyed->wire_remote_ts : rekeyed->remote_ts;
      child->rekeys = rekeyed->handle;
      child->reqid = rekeyed->reqid;
      child->mode = rekeyed->mode;
    } else {
      child->reqid = AllocateReqid();  // reserved while the request is out
      if (child->reqid == 0) {
        spis_.Release(sa.local.address, child->spi_in);
        LogLine(LogLevel::kError, sa.handle, FailureReason::kNoFreeReqid,
                "CHILD_SA for '" + entry_name +
                    "': every reqid of the configured range is in use");
        Emit(ChildSaDown{sa.handle, 0, FailureReason::kNoFreeReqid});
        return;
      }
    }
    child->nonce = random_.Generate(kNonceSize);
    std::vector<wire::Payload> ps;
    if (rekeyed)
      ps.push_back(Notify(NotifyType::kRekeySa, {},
                          uint8_t(wire::ProtocolId::kEsp),
                          SpiBytes32(rekeyed->spi_in)));
    AppendChildOffer(sa, *child, ps, with_ke);
    ps.push_back(wire::MakePayload(wire::NoncePayload{child->nonce}));
    if (with_ke) {
      auto ke = crypto::KeyExchange::Generate(group, random_);
      if (!ke.ok()) {
        spis_.Release(sa.local.address, child->spi_in);
        return;
      }
      ps.push_back(
          wire::MakePayload(wire::KePayload{group, (*ke)->public_value()}));
      child->ke = std::move(*ke);
    }
    AppendSelectors(ps, child->ts_i, child->ts_r);
    SendEncryptedRequest(sa, rekeyed ? ReqKind::kRekeyChild
                                     : ReqKind::kCreateChild,
                         ExchangeType::kCreateChildSa, ps, std::move(child));
  }

  // --- IKE SA rekey (RFC 7296 sections 1.3.2, 2.18)

  // The IKE proposals of the SPD entry this SA serves (ours, in our order).
  std::vector<crypto::TransformSet> IkeSetsOf(const IkeSa& sa) const {
    const policy::SpdEntry* e = sa.policy->spd.Find(sa.spd_entry);
    for (const auto& c : sa.children)
      if (!e) e = sa.policy->spd.Find(c.spd_entry);
    policy::ProposalSet set =
        e ? ProposalsOf(*sa.policy, e->protect.ike_proposals, false)
          : policy::DefaultIkeProposals();
    return ExpandProposals(set, wire::ProtocolId::kIke, false);
  }

  void StartRekeyIke(IkeSa& sa, wire::KeGroup requested) {
    const policy::SpdEntry* e = sa.policy->spd.Find(sa.spd_entry);
    for (const auto& c : sa.children)
      if (!e) e = sa.policy->spd.Find(c.spd_entry);
    policy::ProposalSet set =
        e ? ProposalsOf(*sa.policy, e->protect.ike_proposals, false)
          : policy::DefaultIkeProposals();
    IkeRekey r;
    r.offered = ExpandProposals(set, wire::ProtocolId::kIke, false);
    if (r.offered.empty()) return;
    wire::KeGroup group =
        requested != wire::KeGroup::kNone ? requested : r.offered[0].ke;
    auto ke = crypto::KeyExchange::Generate(group, random_);
    if (!ke.ok()) {
      LogLine(LogLevel::kError, sa.handle, FailureReason::kInternalError,
              "IKE SA rekey: " + ke.error().message);
      return;
    }
    r.ke = std::move(*ke);
    r.spi = NewIkeSpi();
    r.nonce = random_.Generate(kNonceSize);
    std::vector<wire::Payload> ps;
    ps.push_back(wire::MakePayload(
        BuildOffer(set, wire::ProtocolId::kIke, SpiBytes(r.spi), false)));
    ps.push_back(wire::MakePayload(wire::NoncePayload{r.nonce}));
    ps.push_back(wire::MakePayload(wire::KePayload{group, r.ke->public_value()}));
    SendEncryptedRequest(sa, ReqKind::kRekeyIke, ExchangeType::kCreateChildSa,
                         ps);
    if (sa.pending && sa.pending->kind == ReqKind::kRekeyIke)
      sa.pending->ike_rekey = std::move(r);
  }

  void OnRekeyIkeResponse(IkeSa& sa, const std::vector<wire::Payload>& ps,
                          Pending& p) {
    IkeRekey& r = *p.ike_rekey;
    if (const auto* err = FindError(ps)) {
      if (sa.peer_rekey) {
        // The peer refused ours (e.g. it had finished its own first): its
        // new IKE SA, which we answered, is the one that stays.
        AdoptPeerRekey(sa);
        return;
      }
      if (err->type == NotifyType::kInvalidKePayload && err->data.size() == 2) {
        auto group = wire::KeGroup(uint16_t(err->data[0] << 8 | err->data[1]));
        bool offered = false;
        for (const auto& o : r.offered) offered |= o.ke == group;
        if (offered && group != r.ke->group()) {
          LogLine(LogLevel::kInfo, sa.handle, FailureReason::kInvalidKePayload,
                  "IKE SA rekey: peer asks for KE group " +
                      std::to_string(uint16_t(group)) + "; retrying");
          Task t{ReqKind::kRekeyIke};
          t.group = group;
          sa.tasks.push_front(std::move(t));
          return;
        }
      }
      if (err->type == NotifyType::kTemporaryFailure) {
        // The peer is busy with a CHILD_SA exchange of this IKE SA
        // (2.25.1): try again after a random 1..5 s.
        uint8_t b[2];
        random_.Fill(b);
        Duration delay(1000 + (uint32_t(b[0]) << 8 | b[1]) % 4000);
        LogLine(LogLevel::kInfo, sa.handle, FailureReason::kNone,
                "IKE SA rekey answered with TEMPORARY_FAILURE; retrying in " +
                    std::to_string(delay.count()) + " ms");
        Arm(sa, IkeTimer::kSoftLifetime, delay);
        return;
      }
      LogLine(LogLevel::kWarning, sa.handle, ReasonForNotify(err->type),
              "IKE SA rekey refused with " + NotifyText(err->type) +
                  "; the IKE SA stays as it is");
      return;
    }
    const auto* sa_payload = wire::FindFirst<wire::SaPayload>(ps);
    const auto* ke_payload = wire::FindFirst<wire::KePayload>(ps);
    const auto* nonce = wire::FindFirst<wire::NoncePayload>(ps);
    crypto::Bytes peer_spi;
    std::optional<crypto::TransformSet> set;
    if (sa_payload)
      set = AcceptChosen(*sa_payload, wire::ProtocolId::kIke, r.offered,
                         &peer_spi);
    std::optional<crypto::Secret> shared;
    if (set && peer_spi.size() == 8 && SpiFromBytes64(peer_spi) != 0 &&
        ke_payload && ke_payload->group == r.ke->group() &&
        set->ke == r.ke->group() && nonce && nonce->data.size() >= 16 &&
        nonce->data.size() <= 256 &&
        crypto::ValidatePeerKeValue(set->ke, View(ke_payload->data)).ok()) {
      auto s = r.ke->ComputeSharedSecret(View(ke_payload->data));
      if (s.ok()) shared = std::move(*s);
    }
    std::optional<crypto::IkeSaKeys> keys;
    if (shared)
      keys = RekeyedKeys(sa, *set, View(*shared), r.nonce, nonce->data, r.spi,
                         SpiFromBytes64(peer_spi));
    if (!keys) {
      LogLine(LogLevel::kWarning, sa.handle, FailureReason::kInvalidSyntax,
              "IKE SA rekey answer lacks a valid SA (IKE, 8-octet SPI), KE "
              "of the offered group or Nr");
      if (sa.peer_rekey) AdoptPeerRekey(sa);
      return;
    }
    uint64_t peer_new_spi = SpiFromBytes64(peer_spi);
    if (!sa.peer_rekey) {
      SwitchToRekeyed(sa, /*we_initiated=*/true, *set, std::move(*keys),
                      r.nonce, nonce->data, r.spi, peer_new_spi);
      return;
    }
    // Both sides rekeyed at once (2.8.2): two new IKE SAs exist. The one
    // created with the lowest of the four nonces is deleted by its
    // initiator; the CHILD_SAs go to the other, whose initiator deletes the
    // old IKE SA.
    PeerRekey& pr = *sa.peer_rekey;
    bool ours_lose =
        NonceLess(MinNonce(r.nonce, nonce->data), MinNonce(pr.ni, pr.nr));
    LogLine(LogLevel::kInfo, sa.handle, FailureReason::kNone,
            std::string("IKE SA rekeys crossed; the new IKE SA with the "
                        "lowest nonce is ") +
                (ours_lose ? "ours, we delete it" : "the peer's, it deletes it"));
    if (ours_lose) {
      IkeSa& mine = NewRetiredSa(sa, /*initiator=*/true, *set,
                                 std::move(*keys), r.spi, peer_new_spi);
      RetireWith(mine, /*we_delete=*/true);
      AdoptPeerRekey(sa);
    } else {
      PeerRekey theirs = std::move(pr);
      sa.peer_rekey.reset();
      IkeSa& loser = NewRetiredSa(sa, /*initiator=*/false, theirs.set,
                                  std::move(theirs.keys), theirs.spi_i,
                                  theirs.spi_r);
      RetireWith(loser, /*we_delete=*/false);
      SwitchToRekeyed(sa, /*we_initiated=*/true, *set, std::move(*keys),
                      r.nonce, nonce->data, r.spi, peer_new_spi);
    }
  }

  // Responder side of an IKE SA rekey. Answers on the old SA, then moves,
  // unless our own rekey of this SA is outstanding (then 2.8.2 decides
  // when its answer comes).
  void AnswerRekeyIke(IkeSa& sa, const wire::Header& h,
                      const std::vector<wire::Payload>& ps,
                      const wire::SaPayload& offer, const crypto::Bytes& ni) {
    bool crossing = sa.pending && sa.pending->kind == ReqKind::kRekeyIke &&
                    sa.pending->ike_rekey && !sa.peer_rekey;
    if ((sa.pending && !crossing) || sa.retired) {
      // A CHILD_SA exchange or a delete of ours is outstanding on this SA
      // (2.25.1), or it is already replaced: the peer retries later.
      SendResponse(sa, h, h.exchange, {Notify(NotifyType::kTemporaryFailure)});
      return;
    }
    auto ours = IkeSetsOf(sa);
    auto selected = crypto::SelectProposal(wire::ProtocolId::kIke, ours,
                                           ToCryptoProposals(offer, false));
    if (!selected.ok() || selected->spi.size() != 8 ||
        SpiFromBytes64(selected->spi) == 0) {
      SendResponse(sa, h, h.exchange, {Notify(NotifyType::kNoProposalChosen)});
      LogLine(LogLevel::kWarning, sa.handle, FailureReason::kNoProposalChosen,
              "IKE SA rekey from peer: no acceptable IKE proposal with an "
              "8-octet SPI");
      return;
    }
    const crypto::TransformSet& set = selected->transforms;
    const auto* kp = wire::FindFirst<wire::KePayload>(ps);
    if (!kp || kp->group != set.ke) {
      SendResponse(sa, h, h.exchange,
                   {Notify(NotifyType::kInvalidKePayload, GroupBytes(set.ke))});
      return;
    }
    auto ke = crypto::KeyExchange::Generate(set.ke, random_);
    if (!ke.ok() || !crypto::ValidatePeerKeValue(set.ke, View(kp->data)).ok()) {
      SendResponse(sa, h, h.exchange, {Notify(NotifyType::kInvalidSyntax)});
      return;
    }
    auto shared = (*ke)->ComputeSharedSecret(View(kp->data));
    if (!shared.ok()) {
      SendResponse(sa, h, h.exchange, {Notify(NotifyType::kInvalidSyntax)});
      return;
    }
    uint64_t new_spi = NewIkeSpi();
    uint64_t peer_spi = SpiFromBytes64(selected->spi);
    crypto::Bytes nr = random_.Generate(kNonceSize);
    auto keys = RekeyedKeys(sa, set, View(*shared), ni, nr, peer_spi, new_spi);
    if (!keys) {
      SendResponse(sa, h, h.exchange, {Notify(NotifyType::kNoProposalChosen)});
      return;
    }
    SendResponse(
        sa, h, h.exchange,
        {wire::MakePayload(BuildChosen(set, wire::ProtocolId::kIke,
                                       selected->proposal_number,
                                       SpiBytes(new_spi), true)),
         wire::MakePayload(wire::NoncePayload{nr}),
         wire::MakePayload(wire::KePayload{set.ke, (*ke)->public_value()})});
    if (crossing) {
      // Reserve our new SPI; the SA is keyed when the collision resolves.
      by_spi_[new_spi] = sa.handle;
      sa.peer_rekey =
          PeerRekey{set, std::move(*keys), ni, nr, peer_spi, new_spi};
      return;
    }
    SwitchToRekeyed(sa, /*we_initiated=*/false, set, std::move(*keys), ni, nr,
                    peer_spi, new_spi);
  }

  // SKEYSEED and the keys of a new IKE SA from `sa` (2.18), nonces and SPIs
  // in the roles of the rekey exchange.
  std::optional<crypto::IkeSaKeys> RekeyedKeys(IkeSa& sa,
                                               const crypto::TransformSet& set,
                                               ByteView shared,
                                               const crypto::Bytes& ni,
                                               const crypto::Bytes& nr,
                                               uint64_t spi_i, uint64_t spi_r) {
    auto skeyseed = crypto::ComputeRekeySkeyseed(
        sa.set.prf, View(sa.keys.sk_d), shared, View(ni), View(nr));
    if (!skeyseed.ok()) return std::nullopt;
    auto keys = crypto::DeriveIkeSaKeys(set, View(*skeyseed), View(ni),
                                        View(nr), View(SpiBytes(spi_i)),
                                        View(SpiBytes(spi_r)));
    if (!keys.ok()) {
      LogLine(LogLevel::kError, sa.handle, FailureReason::kInternalError,
              "IKE SA rekey: " + keys.error().message);
      return std::nullopt;
    }
    return std::move(*keys);
  }

  // An IKE SA that carries nothing and is only there to run or answer the
  // Delete exchange of a superseded set of SPIs; its end is not reported.
  IkeSa& NewRetiredSa(const IkeSa& like, bool initiator,
                      const crypto::TransformSet& set, crypto::IkeSaKeys keys,
                      uint64_t spi_i, uint64_t spi_r) {
    IkeSa& r = NewSa(initiator);
    r.retired = true;
    r.state = State::kDeleting;
    r.spi_i = spi_i;
    r.spi_r = spi_r;
    r.local = like.local;
    r.remote = like.remote;
    r.nat_local = like.nat_local;
    r.nat_remote = like.nat_remote;
    r.policy = like.policy;
    r.set = set;
    r.keys = std::move(keys);
    r.peer = like.peer;
    r.peer_fragmentation = like.peer_fragmentation;
    r.fragment_limit = like.fragment_limit;
    by_spi_[r.our_spi()] = r.handle;
    return r;
  }

  // The retired SA deletes itself (we created it) or waits, bounded, for
  // the peer's Delete.
  void RetireWith(IkeSa& r, bool we_delete) {
    if (we_delete) {
      r.tasks.push_back(
          Task{ReqKind::kDeleteIke, 0, {}, {}, FailureReason::kRekeyed});
      RunTasks(r);
    } else {
      Arm(r, IkeTimer::kHardLifetime, settings_.half_open_timeout);
    }
  }

  // Moves `sa` (handle, CHILD_SAs, queued tasks) onto the new IKE SA and
  // leaves the old SPIs and keys in a retired SA, which is returned. The
  // initiator of the surviving rekey deletes the old SA (2.18, 2.8.2).
  IkeSa* SwitchToRekeyed(IkeSa& sa, bool we_initiated,
                         const crypto::TransformSet& set,
                         crypto::IkeSaKeys keys, const crypto::Bytes& ni,
                         const crypto::Bytes& nr, uint64_t new_spi_i,
                         uint64_t new_spi_r) {
    if (sa.peer_rekey) {
      if (auto it = by_spi_.find(sa.peer_rekey->spi_r);
          it != by_spi_.end() && it->second == sa.handle)
        by_spi_.erase(it);
      sa.peer_rekey.reset();
    }
    IkeSa& old = NewRetiredSa(sa, sa.initiator, sa.set, std::move(sa.keys),
                              sa.spi_i, sa.spi_r);
    old.next_request_id = sa.next_request_id;
    old.expected_request_id = sa.expected_request_id;
    old.has_response = sa.has_response;
    old.response_id = sa.response_id;
    old.response = std::move(sa.response);
    old.response_sends = sa.response_sends;
    if (!sa.initiator)
      init_index_.erase(
          {sa.spi_i, sa.init_remote.address.value, sa.init_remote.port});

    sa.initiator = we_initiated;
    sa.spi_i = new_spi_i;
    sa.spi_r = new_spi_r;
    sa.set = set;
    sa.keys = std::move(keys);
    sa.ni = ni;
    sa.nr = nr;
    sa.next_request_id = 0;
    sa.expected_request_id = 0;
    sa.has_response = false;
    sa.response.clear();
    by_spi_[sa.our_spi()] = sa.handle;
    Disarm(sa, IkeTimer::kSoftLifetime);
    Disarm(sa, IkeTimer::kHardLifetime);
    Disarm(sa, IkeTimer::kDpd);
    LogLine(LogLevel::kInfo, sa.handle, FailureReason::kNone,
            "IKE SA rekeyed: " + ToHex(SpiBytes(old.spi_i)) + "/" +
                ToHex(SpiBytes(old.spi_r)) + " -> " +
                ToHex(SpiBytes(sa.spi_i)) + "/" + ToHex(SpiBytes(sa.spi_r)));
    if (sa.peer) AnnounceIke(sa);
    StartIkeTimers(sa);
    IkeSaHandle old_handle = old.handle;
    RetireWith(old, we_initiated);
    RunTasks(sa);
    return FindSa(old_handle);
  }

  // Our rekey failed or lost while we had answered the peer's own (2.8.2,
  // 2.25.2): the peer's new IKE SA is the one both sides keep. Returns the
  // retired old SA, which waits for the peer's Delete.
  IkeSa* AdoptPeerRekey(IkeSa& sa) {
    PeerRekey pr = std::move(*sa.peer_rekey);
    LogLine(LogLevel::kInfo, sa.handle, FailureReason::kNone,
            "IKE SA rekeys crossed; the peer's new IKE SA is kept");
    return SwitchToRekeyed(sa, /*we_initiated=*/false, pr.set,
                           std::move(pr.keys), pr.ni, pr.nr, pr.spi_i,
                           pr.spi_r);
  }

  // --- responses to our requests

  void OnResponse(IkeSa& sa, const DatagramReceived& d, const wire::Header& h) {
    if (!sa.pending || h.message_id != sa.pending->message_id) return;
    if (sa.pending->kind == ReqKind::kInit) {
      if (h.exchange != ExchangeType::kIkeSaInit) return;
      OnInitResponse(sa, d, h);
      return;
    }
    auto opened = OpenIncoming(sa, d, h, /*response=*/true);
    if (!opened) return;
    auto& ps = *opened;
    sa.last_received = now_;
    Pending p = std::move(*sa.pending);
    ClearPending(sa);
    IkeSaHandle handle = sa.handle;
    switch (p.kind) {
      case ReqKind::kAuth:
        OnAuthResponse(sa, ps, p);
        break;
      case ReqKind::kCreateChild:
      case ReqKind::kRekeyChild:
        OnCreateChildResponse(sa, ps, p);
        break;
      case ReqKind::kDeleteChild:
        if (ChildSa* c = sa.FindChild(p.target)) {
          InstallDeferredOutbound(sa, c->handle);
          RemoveChild(sa, *c, p.delete_reason);
          std::erase_if(sa.children,
                        [&](const ChildSa& x) { return x.handle == p.target; });
        }
        break;
      case ReqKind::kDeleteIke:
        RemoveSa(sa, p.delete_reason);
        return;
      case ReqKind::kRekeyIke:
        if (h.exchange == ExchangeType::kCreateChildSa && p.ike_rekey)
          OnRekeyIkeResponse(sa, ps, p);
        break;
      default:
        break;
    }
    if (IkeSa* still = FindSa(handle)) RunTasks(*still);
  }

  void OnAuthResponse(IkeSa& sa, const std::vector<wire::Payload>& ps,
                      Pending& p) {
    ChildNegotiation& child = *p.child;
    if (!wire::FindFirst<wire::AuthPayload>(ps)) {
      const auto* err = FindError(ps);
      NotifyType n = err ? err->type : NotifyType::kAuthenticationFailed;
      LogLine(LogLevel::kWarning, sa.handle, ReasonForNotify(n),
              "IKE_AUTH refused by " + sa.remote.address.ToString() + " with " +
                  NotifyText(n));
      spis_.Release(sa.local.address, child.spi_in);
      RemoveSa(sa, ReasonForNotify(n), n);
      return;
    }
    auto verified = VerifyPeer(sa, ps, false, View(sa.init_response),
                               View(sa.ni));
    if (auto* f = std::get_if<Failure>(&verified)) {
      LogLine(LogLevel::kWarning, sa.handle, f->reason, f->text);
      spis_.Release(sa.local.address, child.spi_in);
      // RFC 7296 section 2.21.2: tell the responder in a new INFORMATIONAL
      // that the IKE SA is gone (the IKE SA itself is unusable to us).
      wire::Header h;
      h.initiator_spi = sa.spi_i;
      h.responder_spi = sa.spi_r;
      h.exchange = ExchangeType::kInformational;
      h.flags = wire::header_flags::kInitiator;
      h.message_id = sa.next_request_id++;
      if (auto bytes = SealMessage(sa.set, sa.OutKeys(), h,
                                   {Notify(NotifyType::kAuthenticationFailed)},
                                   random_);
          bytes.ok())
        SendBytes(sa, *bytes);
      RemoveSa(sa, f->reason, NotifyType::kAuthenticationFailed);
      return;
    }
    sa.peer = std::get<PeerAuthResult>(verified).identity;
    sa.state = State::kEstablished;
    Disarm(sa, IkeTimer::kHalfOpen);
    sa.init_request.clear();
    sa.init_request.shrink_to_fit();
    sa.init_response.clear();
    sa.init_response.shrink_to_fit();
    AnnounceIke(sa);
    sa.local_credential.reset();  // the key is not needed any more
    child_failure_ = FailureReason::kNone;
    FinishChild(sa, ps, child, true);
    if (sa.dedicated && sa.children.empty()) {
      // The SA exists for that one CHILD_SA: without it, it goes.
      sa.tasks.push_back(Task{ReqKind::kDeleteIke, 0, {}, {},
                              child_failure_ != FailureReason::kNone
                                  ? child_failure_
                                  : FailureReason::kTsUnacceptable});
      RunTasks(sa);
      return;
    }
    StartIkeTimers(sa);
  }

  // Initiator side: checks the responder's answer and installs the child.
  void FinishChild(IkeSa& sa, const std::vector<wire::Payload>& ps,
                   ChildNegotiation& child, bool ike_auth) {
    auto give_up = [&](FailureReason r, std::string text) {
      LogLine(LogLevel::kWarning, sa.handle, r,
              "CHILD_SA for '" + child.spd_entry + "': " + text);
      spis_.Release(sa.local.address, child.spi_in);
      Emit(ChildSaDown{sa.handle, 0, r});
      child_failure_ = r;
    };
    if (const auto* err = FindError(ps)) {
      give_up(ReasonForNotify(err->type), "refused with " +
                                              NotifyText(err->type));
      return;
    }
    const auto* sa_payload = wire::FindFirst<wire::SaPayload>(ps);
    const auto* tsi = wire::FindFirst<wire::TsiPayload>(ps);
    const auto* tsr = wire::FindFirst<wire::TsrPayload>(ps);
    if (!sa_payload || !tsi || !tsr) {
      give_up(FailureReason::kInvalidSyntax, "answer lacks SA, TSi or TSr");
      return;
    }
    crypto::Bytes spi;
    auto set = AcceptChosen(*sa_payload, wire::ProtocolId::kEsp, child.offered,
                            &spi);
    if (!set || spi.size() != 4) {
      give_up(FailureReason::kNoProposalChosen,
              "responder chose an ESP proposal we did not offer");
      return;
    }
    auto got_i = FromWire(tsi->selectors);
    auto got_r = FromWire(tsr->selectors);
    auto within = [](const std::vector<policy::TrafficSelector>& got,
                     const std::vector<policy::TrafficSelector>& offered) {
      if (got.empty()) return false;
      for (const auto& g : got) {
        bool ok = false;
        for (const auto& o : offered) ok = ok || o.Contains(g);
        if (!ok) return false;
      }
      return true;
    };
    // RFC 7296 section 2.23.1: across a NAT in transport mode the responder
    // may answer with the addresses it sees, the NAT's for ours; the kernel
    // here needs the addresses of this IKE SA.
    if ((!within(got_i, child.ts_i) || !within(got_r, child.ts_r)) &&
        child.mode == policy::IpsecMode::kTransport &&
        FindNotify(ps, NotifyType::kUseTransportMode)) {
      if (sa.nat_local) SubstituteHost(got_i, sa.local.address);
      if (sa.nat_remote) SubstituteHost(got_r, sa.remote.address);
    }
    if (!within(got_i, child.ts_i) || !within(got_r, child.ts_r)) {
      give_up(FailureReason::kTsUnacceptable,
              "responder's selectors are not within what we proposed");
      return;
    }
    bool transport = FindNotify(ps, NotifyType::kUseTransportMode);
    if ((child.mode == policy::IpsecMode::kTransport) != transport) {
      give_up(FailureReason::kNoProposalChosen,
              "responder did not accept the requested IPsec mode");
      return;
    }
    std::optional<crypto::Secret> shared;
    crypto::Bytes nr;
    if (!ike_auth) {
      const auto* nonce = wire::FindFirst<wire::NoncePayload>(ps);
      if (!nonce || nonce->data.size() < 16 || nonce->data.size() > 256) {
        give_up(FailureReason::kInvalidSyntax, "answer lacks a valid Nonce");
        return;
      }
      nr = nonce->data;
      if (set->ke != wire::KeGroup::kNone) {
        const auto* kp = wire::FindFirst<wire::KePayload>(ps);
        if (!kp || !child.ke || kp->group != child.ke->group() ||
            !crypto::ValidatePeerKeValue(kp->group, View(kp->data)).ok()) {
          give_up(FailureReason::kInvalidSyntax, "answer lacks a valid KE");
          return;
        }
        auto s = child.ke->ComputeSharedSecret(View(kp->data));
        if (!s.ok()) {
          give_up(FailureReason::kInvalidSyntax, s.error().message);
          return;
        }
        shared = std::move(*s);
      }
    }
    ChildSa c;
    c.spd_entry = child.spd_entry;
    c.mode = child.mode;
    c.spi_in = child.spi_in;
    c.spi_out = SpiFromBytes32(spi);
    c.set = *set;
    c.local_ts = got_i;
    c.remote_ts = got_r;
    c.lifetime = child.lifetime;
    ChildSa* old = child.rekeys ? sa.FindChild(child.rekeys) : nullptr;
    if (old && !old->wire_local_ts.empty()) {
      // A rekey across a NAT in transport mode keeps the kernel's selectors.
      c.wire_local_ts = got_i;
      c.wire_remote_ts = got_r;
      c.local_ts = old->local_ts;
      c.remote_ts = old->remote_ts;
    }
    if (!InstallChild(sa, c, ike_auth ? sa.ni : child.nonce,
                      ike_auth ? sa.nr : nr,
                      shared ? View(*shared) : ByteView{}, old,
                      child.reqid)) {
      give_up(FailureReason::kInternalError, "key derivation failed");
      return;
    }
    ChildSaHandle created = sa.children.back().handle;
    if (!child.rekeys) return;
    old = sa.FindChild(child.rekeys);  // the vector may have moved
    // RFC 7296 section 2.8: the rekey initiator deletes the old CHILD_SA;
    // on a collision (2.8.1) the exchange with the lowest nonce loses and
    // its initiator deletes the SA it created instead.
    bool we_lost = false;
    if (child.collided) {
      auto min_of = [](const crypto::Bytes& a, const crypto::Bytes& b) {
        return std::lexicographical_compare(a.begin(), a.end(), b.begin(),
                                            b.end())
                   ? a
                   : b;
      };
      crypto::Bytes ours = min_of(child.nonce, nr);
      crypto::Bytes theirs = min_of(child.peer_nonce_i, child.our_nonce_r);
      we_lost = std::lexicographical_compare(ours.begin(), ours.end(),
                                             theirs.begin(), theirs.end());
    }
    if (we_lost) {
      ChildSa* mine = sa.FindChild(created);
      ChildSa* peers = sa.FindChild(child.peer_created);
      // The peer's new CHILD_SA carries the traffic from now on.
      if (mine && peers && mine->owns_policies) {
        mine->owns_policies = false;
        peers->owns_policies = true;
      }
      if (mine) {
        // Stop sending on it now: the peer may remove its inbound SA as
        // soon as our Delete arrives. The old SA carries the traffic until
        // the peer deletes it and its new one takes over.
        if (mine->outbound_installed) {
          Emit(DeleteChildSa{sa.handle, mine->handle, SaDirection::kOutbound,
                             sa.remote.address, mine->spi_out});
          mine->outbound_installed = false;
        }
        mine->state = ChildState::kActive;
        QueueDeleteChild(sa, *mine, FailureReason::kRekeyed);
      }
    } else if (old) {
      // 2.8.1: the peer deletes the CHILD_SA it created; its outbound SA
      // (held back as for any rekey we answered) is never needed.
      if (ChildSa* peers = child.collided ? sa.FindChild(child.peer_created)
                                          : nullptr)
        if (peers->deferred_out) {
          peers->deferred_out.reset();
          peers->waits_for = 0;
        }
      old->state = ChildState::kRekeyed;
      Disarm(*old, ChildTimer::kSoft);
      old->state = ChildState::kActive;  // QueueDeleteChild wants to mark it
      QueueDeleteChild(sa, *old, FailureReason::kRekeyed);
    }
  }

  void OnCreateChildResponse(IkeSa& sa, const std::vector<wire::Payload>& ps,
                             Pending& p) {
    ChildNegotiation& child = *p.child;
    const auto* invalid_ke = FindNotify(ps, NotifyType::kInvalidKePayload);
    if (invalid_ke && invalid_ke->data.size() == 2 && child.ke) {
      auto group = wire::KeGroup(
          uint16_t(invalid_ke->data[0] << 8 | invalid_ke->data[1]));
      bool offered = std::any_of(child.offered.begin(), child.offered.end(),
                                 [&](auto& s) { return s.ke == group; });
      if (offered && group != child.ke->group()) {
        // 1.3: retry once with the group the responder asked for.
        LogLine(LogLevel::kInfo, sa.handle, FailureReason::kInvalidKePayload,
                "CREATE_CHILD_SA: peer asks for KE group " +
                    std::to_string(uint16_t(group)) + "; retrying");
        spis_.Release(sa.local.address, child.spi_in);
        Task t{child.rekeys ? ReqKind::kRekeyChild : ReqKind::kCreateChild,
               child.rekeys, child.spd_entry};
        t.group = group;
        sa.tasks.push_front(std::move(t));
        return;
      }
    }
    if (const auto* err = FindError(ps);
        err && err->type == NotifyType::kTemporaryFailure && child.rekeys) {
      // The peer is busy with this CHILD_SA or the IKE SA (2.25): the
      // rekey is tried again after a random 1..5 s.
      ChildSa* c = sa.FindChild(child.rekeys);
      if (c && c->state == ChildState::kActive) {
        uint8_t b[2];
        random_.Fill(b);
        Duration delay(1000 + (uint32_t(b[0]) << 8 | b[1]) % 4000);
        LogLine(LogLevel::kInfo, sa.handle, FailureReason::kNone,
                "CHILD_SA rekey answered with TEMPORARY_FAILURE; retrying in " +
                    std::to_string(delay.count()) + " ms");
        spis_.Release(sa.local.address, child.spi_in);
        Arm(*c, ChildTimer::kSoft, delay);
        return;
      }
    }
    if (child.rekeys && !sa.FindChild(child.rekeys) && !child.collided) {
      // The CHILD_SA went away meanwhile (peer deleted it): keep the new
      // one only if the answer is a success.
      child.rekeys = 0;
    }
    FinishChild(sa, ps, child, false);
  }

  // ------------------------------------------------------------ state

  EngineSettings settings_;
  policy::PolicySnapshotPtr policy_;
  CredentialStore credentials_;
  crypto::RandomSource& random_;
  SpiAllocator& spis_;
  Instant now_{};
  Actions* out_ = nullptr;

  std::unordered_map<IkeSaHandle, std::unique_ptr<IkeSa>> sas_;
  // IKE_AUTH messages waiting for an external signature, by IKE SA.
  std::unordered_map<IkeSaHandle, PendingSignature> signing_;
  uint64_t next_sign_request_ = 1;
  std::unordered_map<uint64_t, IkeSaHandle> by_spi_;
  // Responder SAs by (SPIi, initiator address): recognises retransmitted
  // and replayed IKE_SA_INIT requests.
  std::unordered_map<HalfOpenKey, IkeSaHandle, HalfOpenKeyHash> init_index_;
  std::unordered_map<ChildSaHandle, IkeSaHandle> child_owner_;
  // IKE SAs by the peer address they were set up with (reuse on initiate).
  std::unordered_multimap<uint64_t, IkeSaHandle> by_remote_;
  // The same by (peer address, local address).
  std::unordered_multimap<uint64_t, IkeSaHandle> by_pair_;
  std::unordered_map<uint32_t, ChildSaHandle> spi_to_child_;
  size_t half_open_count_ = 0;
  // Why the last CHILD_SA answer we checked was refused (FinishChild).
  FailureReason child_failure_ = FailureReason::kNone;

  uint64_t cookies_demanded_ = 0;
  IkeSaHandle next_handle_ = 1;
  ChildSaHandle next_child_handle_ = 1;
  uint32_t next_reqid_ = 1;  // set from settings_.reqids
  bool reqids_wrapped_ = false;
  std::vector<crypto::TransformSet> responder_ike_sets_;
  crypto::Bytes responder_certreq_;  // CA hashes for IKE_SA_INIT responses

  crypto::Bytes cookie_secret_, previous_cookie_secret_;
  uint8_t cookie_version_ = 0;
  Instant cookie_secret_born_{};

  // Scratch for the CREATE_CHILD_SA responder path.
  crypto::Bytes last_peer_nonce_;
  std::optional<crypto::Bytes> pending_ke_public_;
};

// -------------------------------------------------------------------------

SaManager::SaManager(EngineSettings settings, policy::PolicySnapshotPtr policy,
                     CredentialStore credentials, crypto::RandomSource& random,
                     SpiAllocator& spis)
    : impl_(std::make_unique<SaManagerImpl>(settings, std::move(policy),
                                            std::move(credentials), random,
                                            spis)) {}
SaManager::~SaManager() = default;

Actions SaManager::Handle(const Event& event, Instant now) {
  Actions out;
  Handle(event, now, out);
  return out;
}
void SaManager::Handle(const Event& event, Instant now, Actions& out) {
  impl_->Handle(event, now, out);
}
void SaManager::UpdatePolicy(policy::PolicySnapshotPtr policy) {
  impl_->SetPolicy(std::move(policy));
}
void SaManager::UpdateCredentials(CredentialStore credentials) {
  impl_->SetCredentials(std::move(credentials));
}
size_t SaManager::ike_sa_count() const { return impl_->ike_sa_count(); }
size_t SaManager::half_open_count() const { return impl_->half_open_count(); }
uint64_t SaManager::cookies_demanded() const {
  return impl_->cookies_demanded();
}
size_t SaManager::child_sa_count() const { return impl_->child_sa_count(); }
std::vector<IkeSaView> SaManager::List() const { return impl_->List(); }
std::optional<IkeSaView> SaManager::Find(IkeSaHandle handle) const {
  return impl_->MakeView(handle);
}

}  // namespace ike::sa
