#include "daemon/api_bridge.h"

#include <grp.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fcntl.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "btns_api/epoll_runner.h"
#include "btns_api/server.h"
#include "daemon/credential_files.h"
#include "daemon/kernel_translate.h"
#include "daemon/log.h"
#include "ike/crypto/auth.h"
#include "ike/crypto/credentials.h"

#ifndef SO_COOKIE
#define SO_COOKIE 57
#endif

namespace btnsd::daemon {

using btns_api::AuthKind;
using btns_api::SaEvent;
using btns_api::SaEventKind;
using btns_api::SaInfo;
using btns_api::Status;
using btns_api::Why;

std::string AlgorithmsText(const ike::sa::EspTransform& transform) {
  std::string text = transform.kernel_encryption;
  if (transform.encryption_key_bits != 0)
    text += "-" + std::to_string(transform.encryption_key_bits);
  if (!transform.aead && !transform.kernel_integrity.empty())
    text += "+" + transform.kernel_integrity;
  if (transform.extended_sequence_numbers) text += "+esn";
  return text;
}

AuthKind ToApiAuth(const ike::sa::PeerIdentity& peer) {
  switch (peer.auth) {
    case ike::sa::PeerAuthKind::kSharedKey: return AuthKind::kPsk;
    case ike::sa::PeerAuthKind::kCertificate: return AuthKind::kCertificate;
    case ike::sa::PeerAuthKind::kRawPublicKey:
      // A key the PAD pinned is known in advance; one a BTNS entry took is not.
      return peer.authenticated ? AuthKind::kPinnedKey : AuthKind::kRawKey;
    case ike::sa::PeerAuthKind::kNull: return AuthKind::kNull;
  }
  return AuthKind::kNull;
}

namespace {

btns_api::PeerIdentity ToApiPeer(const ike::sa::PeerIdentity& peer) {
  btns_api::PeerIdentity out;
  out.auth = ToApiAuth(peer);
  out.id = !peer.recorded_identity.empty() ? peer.recorded_identity
                                           : peer.asserted_id.ToString();
  out.spki_sha256 = peer.spki_sha256;
  return out;
}

// By name, by the ID text ("fqdn:alice.example") it presents, or by name
// as get_new_iToken("alice") writes it ("fqdn:alice": a bare name is an FQDN).
const ike::policy::LocalIdentity* FindConfiguredIdentity(
    const ike::policy::PolicySnapshot& snapshot, const std::string& wanted) {
  const ike::policy::LocalIdentity* identity = snapshot.FindIdentity(wanted);
  if (identity != nullptr) return identity;
  for (const auto& candidate : snapshot.identities)
    if (candidate.id.ToString() == wanted) return &candidate;
  constexpr std::string_view kFqdn = "fqdn:";
  if (wanted.rfind(kFqdn, 0) == 0) return snapshot.FindIdentity(wanted.substr(kFqdn.size()));
  return nullptr;
}

// How much of `endpoint` the narrowest selector of `selectors` that
// contains it pins down (address bits, protocol, port), as the kernel's
// policy priorities count it (PolicyPriority).
int SelectorSpecificity(const std::vector<ike::policy::TrafficSelector>& selectors,
                        const btns_api::Endpoint& endpoint, uint8_t protocol) {
  int best = 0;
  for (const auto& ts : selectors) {
    if (ts.addresses.start.family != endpoint.address.family ||
        endpoint.address.value < ts.addresses.start.value ||
        endpoint.address.value > ts.addresses.end.value)
      continue;
    if (ts.protocol != ike::policy::kAnyProtocol && ts.protocol != protocol) continue;
    if (!ts.ports.Contains(endpoint.port)) continue;
    ike::policy::Uint128 span = ts.addresses.end.value - ts.addresses.start.value;
    int free_bits = 0;
    while (span != 0) {
      ++free_bits;
      span >>= 1;
    }
    int pinned = (ike::policy::FamilyBits(endpoint.address.family) - free_bits) * 4;
    if (ts.protocol != ike::policy::kAnyProtocol) pinned += 1;
    if (ts.ports.low == ts.ports.high) pinned += 1;
    best = std::max(best, pinned);
  }
  return best;
}

int Specificity(const SaInfo& sa, const btns_api::FiveTuple& conversation) {
  return SelectorSpecificity(sa.local_ts, conversation.local, conversation.protocol) +
         SelectorSpecificity(sa.remote_ts, conversation.remote, conversation.protocol);
}

constexpr size_t kMaxFailures = 1024;
constexpr size_t kMaxWaitingSockets = 1024;

std::string WaitText(std::chrono::milliseconds wait) {
  if (wait.count() % 1000 == 0) return std::to_string(wait.count() / 1000) + " s";
  return std::to_string(wait.count()) + " ms";
}

std::optional<uint64_t> SocketCookie(int fd) {
  uint64_t cookie = 0;
  socklen_t length = sizeof(cookie);
  if (getsockopt(fd, SOL_SOCKET, SO_COOKIE, &cookie, &length) != 0) return std::nullopt;
  return cookie;
}

ike::policy::PacketFiveTuple ToPacket(const btns_api::FiveTuple& t) {
  ike::policy::PacketFiveTuple packet;
  packet.local = t.local.address;
  packet.remote = t.remote.address;
  packet.protocol = t.protocol;
  packet.local_port = t.local.port;
  packet.remote_port = t.remote.port;
  return packet;
}

}  // namespace

ApiBridge::ApiBridge(ike::policy::PolicySnapshotPtr snapshot)
    : snapshot_(std::move(snapshot)) {}

ApiBridge::~ApiBridge() {
  for (auto& [reqid, socket] : waiting_sockets_)
    if (socket.fd >= 0) close(socket.fd);
}

void ApiBridge::SetPoster(Poster poster) {
  std::lock_guard lock(mu_);
  poster_ = std::move(poster);
}

void ApiBridge::SetInitiator(Initiator initiator) {
  std::lock_guard lock(mu_);
  initiator_ = std::move(initiator);
}

void ApiBridge::SetCredentialInitiator(CredentialInitiator initiator) {
  std::lock_guard lock(mu_);
  credential_initiator_ = std::move(initiator);
}

void ApiBridge::SetSocketPolicies(kernel_glue::XfrmInterface* xfrm) {
  std::lock_guard lock(mu_);
  xfrm_ = xfrm;
}

size_t ApiBridge::waiting_socket_count() const {
  std::lock_guard lock(mu_);
  return waiting_sockets_.size();
}

void ApiBridge::UpdatePolicy(ike::policy::PolicySnapshotPtr snapshot) {
  std::lock_guard lock(mu_);
  snapshot_ = std::move(snapshot);
}

void ApiBridge::Subscribe(btns_api::SaEventSink* sink) {
  std::lock_guard lock(mu_);
  sink_ = sink;
}

size_t ApiBridge::child_sa_count() const {
  std::lock_guard lock(mu_);
  return children_.size();
}

btns_api::PeerIdentity ApiBridge::LocalIdentityFor(
    const std::string& pad_entry) const {
  btns_api::PeerIdentity local;
  local.auth = AuthKind::kNull;
  local.id = "null";
  if (!snapshot_) return local;
  const ike::policy::PadEntry* pad = nullptr;
  for (const auto& entry : snapshot_->pad.entries())
    if (entry.name == pad_entry) pad = &entry;
  if (pad == nullptr) return local;
  const ike::policy::LocalIdentity* identity =
      snapshot_->FindIdentity(pad->local_identity);
  if (identity != nullptr) local.id = identity->id.ToString();
  if (pad->auth == ike::policy::PeerAuthMethod::kPsk) {
    local.auth = AuthKind::kPsk;
  } else if (identity != nullptr) {
    switch (identity->credential) {
      case ike::policy::CredentialKind::kCertificate:
        local.auth = AuthKind::kCertificate;
        break;
      case ike::policy::CredentialKind::kRawKey:
        local.auth = AuthKind::kRawKey;
        break;
      case ike::policy::CredentialKind::kNone:
        local.auth = AuthKind::kNull;
        break;
    }
  }
  return local;
}

SaInfo ApiBridge::BuildInfo(const ike::sa::ChildSaUp& up,
                            const IkeSaRecord* ike) const {
  SaInfo info;
  info.child_sa_id = up.child_sa;
  info.ike_sa_id = up.ike_sa;
  // The engine keeps the IKE SA handle across IKE rekeys, so a NULL peer's
  // chain is one handle: no predecessor to report.
  info.predecessor_ike_sa_id = 0;
  if (ike != nullptr) {
    info.peer = ike->peer;
    info.local = ike->local ? *ike->local : LocalIdentityFor(ike->pad_entry);
  }
  info.tunnel = up.mode == ike::policy::IpsecMode::kTunnel;
  info.policy_name = up.spd_entry;
  auto algorithms = pending_algorithms_.find(up.child_sa);
  if (algorithms != pending_algorithms_.end()) {
    info.algorithms = algorithms->second;
    // ESP with ENCR_NULL authenticates but does not hide the payload.
    info.privacy = algorithms->second.rfind("ecb(cipher_null)", 0) != 0 &&
                   algorithms->second.rfind("cipher_null", 0) != 0;
  }
  info.integrity = true;
  info.compression = false;
  info.local_ts = up.local_ts;
  info.remote_ts = up.remote_ts;
  auto reqid = pending_reqids_.find(up.child_sa);
  if (reqid != pending_reqids_.end() && snapshot_)
    info.kernel_reqid = KernelReqid(reqid->second, Tags());
  return info;
}

void ApiBridge::OnIkeSaUp(const ike::sa::IkeSaUp& up) {
  std::unique_lock lock(mu_);
  IkeSaRecord record{ToApiPeer(up.peer), up.peer.pad_entry, std::nullopt};
  if (up.local_overridden) {
    btns_api::PeerIdentity local;
    local.id = up.local_id;
    local.auth = AuthKind::kRawKey;
    record.local = local;
  }
  // A rekeyed IKE SA may not repeat the tag: its record says it is one.
  if (up.request_tag != 0 || dedicated_ike_sas_.count(up.ike_sa))
    NoteDedicatedUp(up, record);
  signer_refusals_.erase(up.ike_sa);  // IKE_AUTH is done
  auto [it, inserted] = ike_sas_.try_emplace(up.ike_sa, record);
  if (!inserted) {
    // A rekeyed IKE SA announces itself again; only a different peer is news.
    const bool changed = it->second.peer.auth != record.peer.auth ||
                         it->second.peer.id != record.peer.id ||
                         it->second.peer.spki_sha256 != record.peer.spki_sha256;
    it->second = record;
    if (changed) {
      for (auto& [handle, info] : children_) {
        if (info.ike_sa_id != up.ike_sa) continue;
        info.peer = record.peer;
        Emit(SaEventKind::kPeerChanged, info);
      }
    }
  }
  auto waiting = waiting_.find(up.ike_sa);
  if (waiting != waiting_.end()) {
    for (const auto& child : waiting->second) AddChild(child, &it->second);
    waiting_.erase(waiting);
  }
  std::vector<SaEvent> events;
  events.swap(outbox_);
  lock.unlock();
  for (const auto& event : events) Deliver(event);
}

void ApiBridge::AddChild(const ike::sa::ChildSaUp& up, const IkeSaRecord* ike) {
  SaInfo info = BuildInfo(up, ike);
  pending_algorithms_.erase(up.child_sa);
  pending_reqids_.erase(up.child_sa);
  children_[up.child_sa] = info;
  Emit(SaEventKind::kUp, info);
  for (auto it = waiting_sockets_.begin(); it != waiting_sockets_.end();) {
    if (it->second.conversation && info.Covers(*it->second.conversation) &&
        Decide(it->second)) {
      it = waiting_sockets_.erase(it);
    } else {
      ++it;
    }
  }
}

void ApiBridge::OnInstallChildSa(const ike::sa::InstallChildSa& install) {
  if (install.direction != ike::sa::SaDirection::kOutbound) return;
  std::lock_guard lock(mu_);
  pending_algorithms_[install.child_sa] = AlgorithmsText(install.transform);
  pending_reqids_[install.child_sa] = install.reqid;
}

void ApiBridge::OnChildSaUp(const ike::sa::ChildSaUp& up) {
  std::unique_lock lock(mu_);
  auto ike = ike_sas_.find(up.ike_sa);
  if (ike == ike_sas_.end()) {
    waiting_[up.ike_sa].push_back(up);
    return;
  }
  AddChild(up, &ike->second);
  std::vector<SaEvent> events;
  events.swap(outbox_);
  lock.unlock();
  for (const auto& event : events) Deliver(event);
}

void ApiBridge::OnChildSaDown(const ike::sa::ChildSaDown& down) {
  std::unique_lock lock(mu_);
  pending_algorithms_.erase(down.child_sa);
  pending_reqids_.erase(down.child_sa);
  auto waiting = waiting_.find(down.ike_sa);
  if (waiting != waiting_.end()) {
    std::erase_if(waiting->second, [&](const ike::sa::ChildSaUp& up) {
      return up.child_sa == down.child_sa;
    });
  }
  auto it = children_.find(down.child_sa);
  if (it != children_.end()) {
    Emit(SaEventKind::kDown, it->second);
    children_.erase(it);
  }
  std::vector<SaEvent> events;
  events.swap(outbox_);
  lock.unlock();
  for (const auto& event : events) Deliver(event);
}

void ApiBridge::OnIkeSaDown(const ike::sa::IkeSaDown& down) {
  std::unique_lock lock(mu_);
  // Children the engine did not report one by one go with their IKE SA.
  for (auto it = children_.begin(); it != children_.end();) {
    if (it->second.ike_sa_id == down.ike_sa) {
      Emit(SaEventKind::kDown, it->second);
      it = children_.erase(it);
    } else {
      ++it;
    }
  }
  ike_sas_.erase(down.ike_sa);
  waiting_.erase(down.ike_sa);
  dedicated_ike_sas_.erase(down.ike_sa);
  std::optional<Status> signer_failure = SignerFailure(down);
  if (down.request_tag != 0) {
    auto socket = waiting_sockets_.find(uint32_t(down.request_tag));
    if (socket != waiting_sockets_.end() && socket->second.dedicated && signer_failure) {
      Refuse(socket->second, *signer_failure);
      waiting_sockets_.erase(socket);
    } else if (socket != waiting_sockets_.end() && socket->second.dedicated) {
      const std::string reason(ike::sa::FailureReasonName(down.reason));
      const bool refused = down.reason == ike::sa::FailureReason::kAuthenticationFailed ||
                           down.notify == ike::wire::NotifyType::kAuthenticationFailed;
      const bool no_policy = down.reason == ike::sa::FailureReason::kTsUnacceptable;
      const bool no_reqid = down.reason == ike::sa::FailureReason::kNoFreeReqid;
      Refuse(socket->second,
             Status::Fail(refused     ? ECONNREFUSED
                          : no_policy ? EACCES
                          : no_reqid  ? EAGAIN
                                      : EHOSTUNREACH,
                          refused     ? Why::kAuthenticationFailed
                          : no_policy ? Why::kPeerSpdBlock
                                      : Why::kSaSetupFailed,
                          "IKE presenting " + socket->second.presenting + " failed (" + reason +
                              (refused ? "): the peer does not accept that identity or key"
                               : no_reqid
                                   ? "): live CHILD_SAs hold every reqid btnsd may give "
                                     "one; retry when SAs have gone"
                                   : ")") +
                              "; nothing was sent"));
      waiting_sockets_.erase(socket);
    }
  }
  std::vector<SaEvent> events;
  events.swap(outbox_);
  lock.unlock();
  for (const auto& event : events) Deliver(event);
}

void ApiBridge::OnAction(const ike::sa::Action& action) {
  if (auto* ike_up = std::get_if<ike::sa::IkeSaUp>(&action)) {
    OnIkeSaUp(*ike_up);
  } else if (auto* install = std::get_if<ike::sa::InstallChildSa>(&action)) {
    OnInstallChildSa(*install);
  } else if (auto* child_up = std::get_if<ike::sa::ChildSaUp>(&action)) {
    OnChildSaUp(*child_up);
  } else if (auto* child_down = std::get_if<ike::sa::ChildSaDown>(&action)) {
    OnChildSaDown(*child_down);
  } else if (auto* ike_down = std::get_if<ike::sa::IkeSaDown>(&action)) {
    OnIkeSaDown(*ike_down);
  } else if (auto* sign = std::get_if<ike::sa::SignRequest>(&action)) {
    OnSignRequest(*sign);
  }
}

void ApiBridge::Emit(SaEventKind kind, const SaInfo& sa) {
  outbox_.push_back(SaEvent{kind, sa});
}

void ApiBridge::Deliver(const SaEvent& event) {
  auto deliver = [this, event] {
    btns_api::SaEventSink* sink;
    {
      std::lock_guard lock(mu_);
      sink = sink_;
    }
    if (sink != nullptr) sink->OnSaEvent(event);
  };
  {
    // Posting under the lock: once SetPoster(nullptr) returns, nothing more
    // reaches the runner being torn down.
    std::lock_guard lock(mu_);
    if (sink_ == nullptr) return;
    if (poster_) {
      poster_(std::move(deliver));
      return;
    }
  }
  deliver();
}

std::vector<SaInfo> ApiBridge::FindSas(const btns_api::FiveTuple& conversation) {
  std::lock_guard lock(mu_);
  // Child SA handles grow with time, so map order is "newest last". Of
  // several, the kernel uses those with the narrowest selectors (their
  // policies are preferred): an SA of one socket's own next to the host's.
  std::vector<SaInfo> out;
  int best = -1;
  for (const auto& [handle, info] : children_) {
    if (!info.Covers(conversation)) continue;
    const int specificity = Specificity(info, conversation);
    if (specificity < best) continue;
    if (specificity > best) out.clear();
    best = specificity;
    out.push_back(info);
  }
  return out;
}

Status ApiBridge::RequestProtection(const btns_api::ProtectionRequest& request) {
  std::unique_lock lock(mu_);
  const ike::policy::PolicySnapshotPtr snapshot = snapshot_;
  if (!snapshot)
    return Status::Fail(EAGAIN, Why::kDaemonUnavailable,
                        "btnsd has no policy loaded yet");
  if (!request.credential_uri.empty() && request.signer_id == 0)
    return Status::Fail(ENOTSUP, Why::kNotSupported,
                        "btnsd opens no PKCS#11 token itself; give the library "
                        "the token's session (IPSEC_BTNS_CREDENTIAL)");
  std::shared_ptr<ike::sa::LocalCredentialOverride> credential;
  if (request.signer_id != 0) {
    if (request.credential_fd >= 0)
      return Status::Fail(EINVAL, Why::kBadArgument,
                          "a local iToken takes one credential: a PKCS#11 key "
                          "or a credential file, not both");
    Status signer = SignerCredential(request, &credential);
    if (!signer.ok()) return signer;
  } else if (request.credential_fd >= 0) {
    // The application proves the identity with its own key; the peer's PAD
    // decides whether it accepts it, and the SA serves only this socket.
    if (request.listener)
      return Status::Fail(ENOTSUP, Why::kNotSupported,
                          "a credential file is used by the initiator (set it "
                          "before connect()); an acceptor's identity is the PAD's");
    if (request.conversation)
      return Status::Fail(EISCONN, Why::kNotSupported,
                          "set a pToken with a credential file before connect()");
    auto loaded = LoadApplicationCredential(request.credential_fd);
    if (!loaded.ok())
      return Status::Fail(EINVAL, Why::kCredentialFile, loaded.error().message);
    credential = std::make_shared<ike::sa::LocalCredentialOverride>();
    if (request.local_identity) {
      std::string why;
      const std::string& text = *request.local_identity;
      auto id = text.find(':') == std::string::npos
                    ? std::optional(ike::policy::Identity::Fqdn(text))
                    : ike::policy::ParseSimpleIdentity(text, &why);
      if (!id || id->type == ike::wire::IdType::kNull)
        return Status::Fail(EINVAL, Why::kBadArgument,
                            "identity '" + text + "' for the credential file: " +
                                (why.empty() ? "NULL cannot sign" : why));
      credential->id = *id;
    } else if (!loaded->certificate_chain.empty()) {
      const auto& ee = loaded->certificate_chain[0];
      credential->id = ike::policy::Identity::DerDn(ee.subject_der(), ee.subject());
    } else {
      return Status::Fail(EINVAL, Why::kBadArgument,
                          "a credential file with a bare key needs the local "
                          "iToken's identity (the ID to present)");
    }
    credential->credential.private_key = std::move(loaded->key);
    credential->credential.certificate_chain = std::move(loaded->certificate_chain);
    credential->label = "credential file of uid " + std::to_string(request.caller.uid);
  }
  if (request.local_identity && !credential) {
    const std::string& wanted = *request.local_identity;
    const ike::policy::LocalIdentity* identity = FindConfiguredIdentity(*snapshot, wanted);
    if (identity == nullptr)
      return Status::Fail(ENOENT, Why::kPolicyForbids,
                          "no local identity '" + wanted + "' in " +
                              snapshot->source_file + " (identities)");
    if (request.caller.uid != 0 &&
        !snapshot->api.MayUseIdentity(request.caller.uid, request.caller.AllGroups(),
                                      identity->name))
      return Status::Fail(EACCES, Why::kPrivilegeRequired,
                          "uid " + std::to_string(request.caller.uid) +
                              " may not present identity '" + identity->name +
                              "' (api grants in " + snapshot->source_file + ")");
  }
  // A listener's traffic is governed by the SPD; the server keeps its latch.
  if (request.listener) return Status::Ok();
  if (!request.conversation) {
    // Nothing beyond system policy asked for: the SPD alone decides.
    if (!request.remote_identity && !request.local_identity && !credential &&
        !request.require_privacy && !request.require_integrity)
      return Status::Ok();
    if (request.require_tunnel)
      return Status::Fail(ENOTSUP, Why::kNotSupported,
                          "a tunnel per socket is not supported; the SPD "
                          "decides the mode");
    if (xfrm_ == nullptr || request.socket_fd < 0)
      return Status::Fail(ENOTSUP, Why::kNotSupported,
                          "btnsd cannot set per-socket policies here");
    ExpireWaiting();
    if (waiting_sockets_.size() >= kMaxWaitingSockets)
      return Status::Fail(EAGAIN, Why::kTooLarge,
                          "too many sockets are waiting for their SA; retry");
    WaitingSocket waiting;
    waiting.caller = request.caller;
    waiting.remote_identity = request.remote_identity;
    if (credential) {
      Status bound = BindEphemeralPort(request.socket_fd);
      if (!bound.ok()) return bound;
      waiting.credential = credential;
      waiting.dedicated = true;
    } else if (request.local_identity) {
      const ike::policy::LocalIdentity* identity = FindConfiguredIdentity(
          *snapshot, *request.local_identity);
      waiting.local_identity =
          identity ? identity->id.ToString() : *request.local_identity;
      if (identity) {
        waiting.configured_identity = identity->name;
        Status bound = BindEphemeralPort(request.socket_fd);
        if (!bound.ok()) return bound;
      }
    }
    waiting.require_privacy = request.require_privacy;
    waiting.deadline = std::chrono::steady_clock::now() + wait_for_sa_;
    waiting.reqid = NextWaitingReqid();
    if (waiting.reqid == 0)
      return Status::Fail(EAGAIN, Why::kTooLarge,
                          "no free reqid for a waiting socket; retry");
    // Our own reference, so the socket can be bound or blocked once the
    // peer is known; closed as soon as that is decided.
    waiting.fd = fcntl(request.socket_fd, F_DUPFD_CLOEXEC, 0);
    if (waiting.fd < 0)
      return Status::Fail(errno, Why::kInternal,
                          std::string("cannot keep the socket: ") +
                              std::strerror(errno));
    Status set = SetSocketReqid(waiting.fd, waiting.reqid);
    if (!set.ok()) {
      close(waiting.fd);
      return set;
    }
    BTNSD_LOG(Level::kInfo, "api-socket-waiting",
              {"reqid", static_cast<uint64_t>(waiting.reqid)},
              {"peer", waiting.remote_identity.value_or("any")},
              {"uid", static_cast<uint64_t>(request.caller.uid)});
    waiting_sockets_.emplace(waiting.reqid, std::move(waiting));
    return Status::Ok();
  }
  const btns_api::FiveTuple& tuple = *request.conversation;
  const ike::policy::PacketFiveTuple packet = ToPacket(tuple);
  const ike::policy::SpdEntry* entry = snapshot->spd.Lookup(packet);
  if (entry == nullptr || entry->action == ike::policy::SpdAction::kDiscard)
    return Status::Fail(EACCES, Why::kLocalSpdBlock,
                        "the SPD discards " + tuple.ToString() +
                            (entry ? " (entry '" + entry->name + "')" : ""));
  if (entry->action == ike::policy::SpdAction::kBypass)
    return Status::Fail(ENOTSUP, Why::kNotSupported,
                        "SPD entry '" + entry->name + "' bypasses " +
                            tuple.ToString() +
                            "; per-socket protection beyond the SPD is not "
                            "supported yet");
  if (request.require_tunnel &&
      entry->protect.mode != ike::policy::IpsecMode::kTunnel)
    return Status::Fail(ENOTSUP, Why::kNotSupported,
                        "SPD entry '" + entry->name +
                            "' protects in transport mode; a tunnel per socket "
                            "is not supported yet");
  for (const auto& [handle, info] : children_)
    if (info.Covers(tuple)) return Status::Ok();
  Initiator initiator = initiator_;
  lock.unlock();
  if (!initiator)
    return Status::Fail(EAGAIN, Why::kSaSetupFailed,
                        "no SA covers " + tuple.ToString() +
                            " and btnsd cannot initiate from the API here");
  initiator(entry->name, packet);
  BTNSD_LOG(Level::kInfo, "api-initiate", {"spd", entry->name},
            {"conversation", tuple.ToString()},
            {"uid", static_cast<uint64_t>(request.caller.uid)});
  return Status::Ok();
}

namespace {

constexpr char kSignerHolderPrefix[] = "api-signer:";

std::optional<uint64_t> SignerOfHolder(const std::string& holder) {
  const std::string prefix(kSignerHolderPrefix);
  if (holder.compare(0, prefix.size(), prefix) != 0) return std::nullopt;
  uint64_t id = 0;
  for (size_t i = prefix.size(); i < holder.size(); ++i) {
    if (holder[i] < '0' || holder[i] > '9' || id > (UINT64_MAX - 9) / 10) return std::nullopt;
    id = id * 10 + uint64_t(holder[i] - '0');
  }
  if (id == 0) return std::nullopt;
  return id;
}

}  // namespace

Status ApiBridge::BindEphemeralPort(int socket_fd) {
  // The kernel raises the ACQUIRE of connect() before it picks the source
  // port, and a dedicated SA names one flow (never another socket's traffic
  // to the same service): so the port is picked now, as
  // an explicit bind() would (the address stays the wildcard, connect()
  // still chooses it by route).
  sockaddr_storage local{};
  socklen_t length = sizeof local;
  if (getsockname(socket_fd, reinterpret_cast<sockaddr*>(&local), &length) != 0)
    return Status::Fail(errno, Why::kNotASocket,
                        std::string("cannot read the socket's address: ") + std::strerror(errno));
  uint16_t port = 0;
  if (local.ss_family == AF_INET) {
    port = reinterpret_cast<sockaddr_in*>(&local)->sin_port;
  } else if (local.ss_family == AF_INET6) {
    port = reinterpret_cast<sockaddr_in6*>(&local)->sin6_port;
  } else {
    return Status::Fail(EAFNOSUPPORT, Why::kNotSupported,
                        "a dedicated SA needs an IPv4 or IPv6 socket");
  }
  if (port != 0) return Status::Ok();  // bound by the application
  sockaddr_storage any{};
  any.ss_family = local.ss_family;
  const socklen_t any_length = local.ss_family == AF_INET ? sizeof(sockaddr_in)
                                                          : sizeof(sockaddr_in6);
  if (bind(socket_fd, reinterpret_cast<sockaddr*>(&any), any_length) != 0)
    return Status::Fail(errno, Why::kInternal,
                        std::string("cannot give the socket a local port for its own SA: ") +
                            std::strerror(errno));
  return Status::Ok();
}

Status ApiBridge::SignerCredential(
    const btns_api::ProtectionRequest& request,
    std::shared_ptr<ike::sa::LocalCredentialOverride>* credential) const {
  // Same rules as a credential file (item 18): the initiator's own key, for
  // one connection, on an SA nobody else uses.
  if (request.listener)
    return Status::Fail(ENOTSUP, Why::kNotSupported,
                        "a PKCS#11 key is used by the initiator (set it before "
                        "connect()); an acceptor's identity is the PAD's");
  if (request.conversation)
    return Status::Fail(EISCONN, Why::kNotSupported,
                        "set a pToken with a PKCS#11 key before connect()");
  auto key = ike::crypto::PublicKey::FromSpki(
      ike::crypto::ByteView(request.signer_spki.data(), request.signer_spki.size()),
      "the registered PKCS#11 key");
  if (!key.ok())
    return Status::Fail(EINVAL, Why::kBadArgument,
                        "signer " + std::to_string(request.signer_id) +
                            ": the public key is not usable: " + key.error().message);
  if (!request.local_identity)
    return Status::Fail(EINVAL, Why::kBadArgument,
                        "a PKCS#11 key needs the local iToken's identity (the ID "
                        "to present)");
  const std::string& text = *request.local_identity;
  std::string why;
  auto id = text.find(':') == std::string::npos
                ? std::optional(ike::policy::Identity::Fqdn(text))
                : ike::policy::ParseSimpleIdentity(text, &why);
  if (!id || id->type == ike::wire::IdType::kNull)
    return Status::Fail(EINVAL, Why::kBadArgument,
                        "identity '" + text + "' for the PKCS#11 key: " +
                            (why.empty() ? "NULL cannot sign" : why));
  auto out = std::make_shared<ike::sa::LocalCredentialOverride>();
  out->id = *id;
  ike::sa::ExternalSigner signer;
  signer.holder = kSignerHolderPrefix + std::to_string(request.signer_id);
  signer.public_key = std::move(key.value());
  signer.timeout = ike::sa::Duration(signer_timeout_.count());
  out->credential.external_signer = std::move(signer);
  out->label = "PKCS#11 key of uid " + std::to_string(request.caller.uid) + " (signer " +
               std::to_string(request.signer_id) + ")";
  *credential = std::move(out);
  return Status::Ok();
}

std::optional<Status> ApiBridge::SignerFailure(const ike::sa::IkeSaDown& down) {
  auto refusal = signer_refusals_.find(down.ike_sa);
  std::string holder_said;
  if (refusal != signer_refusals_.end()) {
    holder_said = refusal->second;
    signer_refusals_.erase(refusal);
  }
  if (down.reason == ike::sa::FailureReason::kSignerTimeout)
    return Status::Fail(ETIMEDOUT, Why::kSaSetupFailed,
                        "the application's PKCS#11 key did not sign in " +
                            WaitText(signer_timeout_) + " (signer-timeout); nothing was sent");
  if (down.reason == ike::sa::FailureReason::kSignerRefused)
    return Status::Fail(EACCES, Why::kSaSetupFailed,
                        "the application's PKCS#11 key did not sign (signer-refused" +
                            (holder_said.empty() ? std::string() : ": " + holder_said) +
                            "); nothing was sent");
  return std::nullopt;
}

void ApiBridge::OnSignRequest(const ike::sa::SignRequest& request) {
  std::unique_lock lock(mu_);
  const std::optional<uint64_t> signer = SignerOfHolder(request.holder);
  std::string refusal;
  if (!signer) {
    refusal = "'" + request.holder + "' is not a key registered through the BTNS API";
  } else if (!signature_requester_) {
    refusal = "the BTNS API is not running, so the application's key cannot be asked";
  } else if (!signature_deliverer_) {
    refusal = "btnsd cannot hand a signature back to the engine here";
  }
  if (refusal.empty()) {
    signer_refusals_.try_emplace(request.ike_sa);
    BTNSD_LOG(Level::kInfo, "api-sign-request", {"signer", *signer},
              {"scheme", ike::crypto::RawSignatureSchemeName(request.scheme)});
    // Posting under the lock, like Deliver: once the API service withdrew
    // the requester, nothing more reaches its runner.
    signature_requester_(
        *signer, ike::crypto::RawSignatureSchemeName(request.scheme),
        std::string(request.octets.begin(), request.octets.end()),
        [this, request](std::optional<std::string> signature, std::string why) {
          SignatureAnswered(request, std::move(signature), std::move(why));
        });
    return;
  }
  SignatureDeliverer deliverer = signature_deliverer_;
  lock.unlock();
  BTNSD_LOG(Level::kWarning, "api-sign-refused", {"holder", request.holder},
            {"reason", refusal});
  if (deliverer) {
    ike::sa::SignatureDelivered answer;
    answer.ike_sa = request.ike_sa;
    answer.request = request.request;
    answer.refusal = refusal;
    deliverer(std::move(answer));
  }
  // Without a deliverer the engine's signer timeout ends the negotiation.
}

void ApiBridge::SignatureAnswered(const ike::sa::SignRequest& request,
                                  std::optional<std::string> signature,
                                  std::string refusal) {
  ike::sa::SignatureDelivered answer;
  answer.ike_sa = request.ike_sa;
  answer.request = request.request;
  if (signature && !signature->empty()) {
    answer.signature.assign(signature->begin(), signature->end());
  } else {
    answer.refusal = refusal.empty() ? "refused" : refusal;
  }
  SignatureDeliverer deliverer;
  {
    std::lock_guard lock(mu_);
    deliverer = signature_deliverer_;
    // Kept only while the IKE SA negotiates (OnIkeSaUp/Down drop it).
    auto pending = signer_refusals_.find(request.ike_sa);
    if (pending != signer_refusals_.end() && answer.signature.empty())
      pending->second = answer.refusal;
  }
  if (!answer.signature.empty()) {
    BTNSD_LOG(Level::kInfo, "api-signed", {"octets", uint64_t(answer.signature.size())});
  } else {
    BTNSD_LOG(Level::kWarning, "api-sign-refused", {"holder", request.holder},
              {"reason", answer.refusal});
  }
  if (deliverer) deliverer(std::move(answer));
}

void ApiBridge::SetSignatureRequester(SignatureRequester requester) {
  std::lock_guard lock(mu_);
  signature_requester_ = std::move(requester);
}

void ApiBridge::SetSignatureDeliverer(SignatureDeliverer deliverer) {
  std::lock_guard lock(mu_);
  signature_deliverer_ = std::move(deliverer);
}

void ApiBridge::SetSignerTimeout(std::chrono::milliseconds timeout) {
  std::lock_guard lock(mu_);
  signer_timeout_ = timeout;
}

uint32_t ApiBridge::NextWaitingReqid() {
  if (!snapshot_) return 0;
  const KernelTags tags = Tags();
  // Engine reqids count up from reqid_min, trap policies count down from
  // reqid_max (one per SPD entry): waiting sockets use the 1024 reqids below
  // the top 4096, so a trap's larval state never stands for one of them.
  const uint32_t span = tags.ownership.reqid_max - tags.ownership.reqid_min;
  if (span < 2 * (kTrapReqids + kWaitingReqids)) return 0;
  const uint32_t top = tags.ownership.reqid_max - kTrapReqids;
  for (uint32_t tries = 0; tries < kWaitingReqids; ++tries) {
    const uint32_t reqid = top - (next_waiting_++ % kWaitingReqids);
    if (!waiting_sockets_.count(reqid)) return reqid;
  }
  return 0;
}

btns_api::Status ApiBridge::SetSocketReqid(int fd, uint32_t reqid) {
  for (auto direction : {kernel_glue::Direction::kOut, kernel_glue::Direction::kIn}) {
    kernel_glue::SocketPolicy policy;
    policy.direction = direction;
    policy.action = kernel_glue::PolicyAction::kProtect;
    kernel_glue::PolicyTemplate templ;
    templ.mode = kernel_glue::Mode::kTransport;
    templ.reqid = reqid;
    policy.templates.push_back(templ);
    kernel_glue::Status status = xfrm_->SetSocketPolicy(fd, policy);
    if (!status.ok())
      return Status::Fail(status.error().error_number, Why::kInternal,
                          status.error().ToString());
  }
  return Status::Ok();
}

bool ApiBridge::OnKernelAcquire(const kernel_glue::AcquireEvent& acquire) {
  std::unique_lock lock(mu_);
  auto it = waiting_sockets_.find(acquire.templ.reqid);
  if (it == waiting_sockets_.end()) return false;
  auto local = FromKernel(acquire.selector.src);
  auto remote = FromKernel(acquire.selector.dst);
  if (!local || !remote) return false;
  btns_api::FiveTuple conversation;
  conversation.local = {*local, acquire.selector.src_port};
  conversation.remote = {*remote, acquire.selector.dst_port};
  conversation.protocol = acquire.selector.protocol;
  it->second.conversation = conversation;
  BTNSD_LOG(Level::kInfo, "api-socket-acquire",
            {"reqid", static_cast<uint64_t>(acquire.templ.reqid)},
            {"conversation", conversation.ToString()});
  std::function<void()> initiate;
  // The kernel repeats the ACQUIRE while the socket retries; a socket with
  // an IKE SA of its own is answered by that request alone.
  bool consumed = it->second.dedicated;
  if (!it->second.dedicated && !it->second.configured_identity.empty() &&
      !ChooseConfiguredIdentity(it->second)) {
    waiting_sockets_.erase(it);
    consumed = true;
  } else if (it->second.credential) {
    consumed = true;
    const ike::policy::PacketFiveTuple packet = ToPacket(conversation);
    const ike::policy::SpdEntry* entry = snapshot_ ? snapshot_->spd.Lookup(packet) : nullptr;
    if (entry == nullptr || entry->action != ike::policy::SpdAction::kProtect ||
        !credential_initiator_) {
      Refuse(it->second,
             Status::Fail(EACCES, Why::kLocalSpdBlock,
                          "no PROTECT entry of the SPD covers " + conversation.ToString() +
                              (credential_initiator_ ? "" : " (or btnsd cannot initiate here)")));
      waiting_sockets_.erase(it);
    } else {
      // The engine holds the key from here on, only until IKE_AUTH is done.
      initiate = [initiator = credential_initiator_, name = entry->name, packet,
                  credential = std::move(it->second.credential), tag = it->first] {
        initiator(name, packet, credential, tag);
      };
      it->second.credential.reset();
      BTNSD_LOG(Level::kInfo, "api-initiate-credential", {"spd", entry->name},
                {"conversation", conversation.ToString()},
                {"uid", static_cast<uint64_t>(it->second.caller.uid)});
    }
  } else if (Decide(it->second)) {
    waiting_sockets_.erase(it);
  }
  std::vector<SaEvent> events;
  events.swap(outbox_);
  lock.unlock();
  if (initiate) initiate();
  for (const auto& event : events) Deliver(event);
  return consumed;
}

bool ApiBridge::Decide(WaitingSocket& socket) {
  if (!socket.conversation) return false;
  const btns_api::FiveTuple& conversation = *socket.conversation;
  const SaInfo* chosen = nullptr;
  for (const auto& [handle, info] : children_) {
    if (!info.Covers(conversation)) continue;
    // A socket with its own credential takes only its dedicated SA.
    auto dedicated = dedicated_ike_sas_.find(info.ike_sa_id);
    const bool mine = dedicated != dedicated_ike_sas_.end() &&
                      dedicated->second.reqid == socket.reqid;
    if (socket.dedicated != mine) continue;
    chosen = &info;  // newest last
  }
  if (chosen == nullptr && socket.dedicated) return false;  // IKE runs
  if (chosen == nullptr) {
    // The SPD must protect this traffic for IKE to start at all.
    const ike::policy::SpdEntry* entry =
        snapshot_ ? snapshot_->spd.Lookup(ToPacket(conversation)) : nullptr;
    if (entry == nullptr || entry->action != ike::policy::SpdAction::kProtect) {
      Refuse(socket, Status::Fail(EACCES, entry ? Why::kNotSupported : Why::kLocalSpdBlock,
                                  "no PROTECT entry of the SPD covers " +
                                      conversation.ToString() +
                                      (entry ? " (entry '" + entry->name + "' does not protect)"
                                             : "")));
      return true;
    }
    return false;  // IKE is running (the engine saw the same ACQUIRE)
  }
  const SaInfo& sa = *chosen;
  const std::string where = conversation.remote.address.ToString();
  if (socket.remote_identity && sa.peer.id != *socket.remote_identity) {
    Refuse(socket, Status::Fail(ECONNREFUSED, Why::kPeerMismatch,
                                "the host at " + where + " authenticated as '" +
                                    sa.peer.id + "', not '" +
                                    *socket.remote_identity +
                                    "'; nothing was sent to it"));
    return true;
  }
  if (!socket.dedicated && socket.local_identity &&
      sa.local.id != *socket.local_identity) {
    Refuse(socket, Status::Fail(EACCES, Why::kPolicyForbids,
                                "the SA with " + where + " presents '" + sa.local.id +
                                    "', not '" + *socket.local_identity +
                                    "' (the PAD entry chooses the local identity)"));
    return true;
  }
  if (socket.require_privacy && !sa.privacy) {
    Refuse(socket, Status::Fail(EACCES, Why::kPolicyForbids,
                                "the SA with " + where + " does not encrypt"));
    return true;
  }
  if (sa.kernel_reqid == 0 || sa.tunnel) {
    Refuse(socket, Status::Fail(ENOTSUP, Why::kNotSupported,
                                "the SA with " + where +
                                    " cannot carry one socket (tunnel mode)"));
    return true;
  }
  Status bound = SetSocketReqid(socket.fd, sa.kernel_reqid);
  if (!bound.ok()) {
    Refuse(socket, bound);
    return true;
  }
  if (socket.dedicated) WatchDedicated(socket, sa);
  BTNSD_LOG(Level::kInfo, "api-socket-bound", {"conversation", conversation.ToString()},
            {"peer", sa.peer.id}, {"reqid", static_cast<uint64_t>(sa.kernel_reqid)});
  close(socket.fd);
  socket.fd = -1;
  return true;
}

void ApiBridge::Refuse(WaitingSocket& socket, const Status& why) {
  // Blocked first, so not even a reset leaves; then the pending connect()
  // ends (ECONNRESET for TCP) and the reason waits for the application.
  for (auto direction : {kernel_glue::Direction::kOut, kernel_glue::Direction::kIn}) {
    kernel_glue::SocketPolicy block;
    block.direction = direction;
    block.action = kernel_glue::PolicyAction::kDiscard;
    (void)xfrm_->SetSocketPolicy(socket.fd, block);
  }
  if (auto cookie = SocketCookie(socket.fd)) {
    if (socket_failures_.size() >= kMaxFailures && !failure_order_.empty()) {
      socket_failures_.erase(failure_order_.front());
      failure_order_.erase(failure_order_.begin());
    }
    socket_failures_[*cookie] = why;
    failure_order_.push_back(*cookie);
  }
  shutdown(socket.fd, SHUT_RDWR);
  BTNSD_LOG(Level::kWarning, "api-socket-refused",
            {"conversation", socket.conversation ? socket.conversation->ToString() : "-"},
            {"uid", static_cast<uint64_t>(socket.caller.uid)}, {"reason", why.message});
  close(socket.fd);
  socket.fd = -1;
}

void ApiBridge::ExpireWaiting() {
  if (waiting_sockets_.empty()) return;
  const auto now = std::chrono::steady_clock::now();
  for (auto it = waiting_sockets_.begin(); it != waiting_sockets_.end();) {
    if (it->second.deadline <= now) {
      Refuse(it->second,
             Status::Fail(ETIMEDOUT, Why::kSaSetupFailed,
                          "no SA came up for " +
                              (it->second.conversation
                                   ? it->second.conversation->ToString()
                                   : std::string("the socket (it never sent)")) +
                              " in " + WaitText(wait_for_sa_)));
      it = waiting_sockets_.erase(it);
    } else {
      ++it;
    }
  }
}

Status ApiBridge::PinSocket(int socket_fd, const SaInfo& sa) {
  std::lock_guard lock(mu_);
  if (xfrm_ == nullptr || sa.kernel_reqid == 0 || sa.tunnel) return Status::Ok();
  return SetSocketReqid(socket_fd, sa.kernel_reqid);
}

void ApiBridge::SetReqidOffset(uint32_t offset) {
  std::lock_guard lock(mu_);
  reqid_offset_ = offset;
  next_waiting_ = offset;  // waiting sockets start elsewhere in their band too
}

KernelTags ApiBridge::Tags() const {
  KernelTags tags = ToKernelTags(snapshot_->daemon.ownership);
  tags.reqid_offset = reqid_offset_;
  return tags;
}

void ApiBridge::SetWaitForSa(std::chrono::milliseconds wait) {
  std::lock_guard lock(mu_);
  wait_for_sa_ = wait;
}

std::optional<std::chrono::steady_clock::time_point> ApiBridge::NextDeadline() {
  std::lock_guard lock(mu_);
  std::optional<std::chrono::steady_clock::time_point> next = NextWatch();
  for (const auto& [reqid, socket] : waiting_sockets_)
    if (!next || socket.deadline < *next) next = socket.deadline;
  return next;
}

void ApiBridge::ExpireDue() {
  std::unique_lock lock(mu_);
  ExpireWaiting();
  const std::vector<ike::sa::IkeSaHandle> due = DueDedicatedDeletes();
  Terminator terminator = terminator_;
  lock.unlock();
  if (terminator)
    for (ike::sa::IkeSaHandle handle : due) terminator(handle);
}

std::optional<Status> ApiBridge::SocketFailure(int socket_fd) {
  std::lock_guard lock(mu_);
  ExpireWaiting();
  if (socket_failures_.empty()) return std::nullopt;
  auto cookie = SocketCookie(socket_fd);
  if (!cookie) return std::nullopt;
  auto it = socket_failures_.find(*cookie);
  if (it == socket_failures_.end()) return std::nullopt;
  return it->second;
}

// ------------------------------ configured identities, dedicated IKE SAs

void ApiBridge::UpdateCredentials(
    std::shared_ptr<const ike::sa::CredentialStore> credentials) {
  std::lock_guard lock(mu_);
  credentials_ = std::move(credentials);
}

void ApiBridge::SetTerminator(Terminator terminator) {
  std::lock_guard lock(mu_);
  terminator_ = std::move(terminator);
}

void ApiBridge::SetSocketProbe(SocketProbe probe) {
  std::lock_guard lock(mu_);
  socket_probe_ = std::move(probe);
}

void ApiBridge::SetDedicatedGrace(std::chrono::milliseconds grace,
                                  std::chrono::milliseconds interval) {
  std::lock_guard lock(mu_);
  dedicated_grace_ = grace;
  watch_interval_ = interval;
}

size_t ApiBridge::dedicated_ike_sa_count() const {
  std::lock_guard lock(mu_);
  return dedicated_ike_sas_.size();
}

const ike::sa::LocalCredential* ApiBridge::LoadedKey(const std::string& identity) const {
  if (!credentials_) return nullptr;
  auto loaded = credentials_->local.find(identity);
  if (loaded == credentials_->local.end()) return nullptr;
  if (!loaded->second.private_key && !loaded->second.external_signer) return nullptr;
  return &loaded->second;
}

btns_api::PeerIdentity ApiBridge::PresentedIdentity(
    const ike::policy::LocalIdentity& identity) const {
  btns_api::PeerIdentity local;
  local.id = identity.id.ToString();
  const ike::sa::LocalCredential* key = LoadedKey(identity.name);
  if (key == nullptr) {
    local.auth = AuthKind::kPsk;
  } else if (!key->certificate_chain.empty()) {
    local.auth = AuthKind::kCertificate;
  } else {
    local.auth = AuthKind::kRawKey;
  }
  return local;
}

std::shared_ptr<ike::sa::LocalCredentialOverride> ApiBridge::ConfiguredCredential(
    const ike::policy::LocalIdentity& identity, Status* why) const {
  const std::string source = snapshot_ ? snapshot_->source_file : std::string("the policy");
  if (identity.id.type == ike::wire::IdType::kNull) {
    *why = Status::Fail(EACCES, Why::kPolicyForbids,
                        "identity '" + identity.name + "' is NULL: it proves nothing, so "
                        "no IKE SA of its own can present it");
    return nullptr;
  }
  auto credential = std::make_shared<ike::sa::LocalCredentialOverride>();
  credential->id = identity.id;
  credential->label = "identity '" + identity.name + "'";
  if (const ike::sa::LocalCredential* key = LoadedKey(identity.name)) {
    credential->credential = *key;
    return credential;
  }
  const ike::policy::Secret* secret =
      identity.psk_name.empty() || !snapshot_ ? nullptr
                                              : snapshot_->FindSecret(identity.psk_name);
  if (secret != nullptr) {
    credential->shared_key = secret->value;
    return credential;
  }
  *why = Status::Fail(EACCES, Why::kPolicyForbids,
                      "identity '" + identity.name + "' has no key, certificate or "
                      "shared key loaded by btnsd (identities in " + source + ")");
  return nullptr;
}

bool ApiBridge::ChooseConfiguredIdentity(WaitingSocket& socket) {
  const btns_api::FiveTuple& conversation = *socket.conversation;
  const ike::policy::LocalIdentity* identity =
      snapshot_ ? snapshot_->FindIdentity(socket.configured_identity) : nullptr;
  if (identity == nullptr) {
    // A reload removed it while the socket waited.
    Refuse(socket, Status::Fail(ENOENT, Why::kPolicyForbids,
                                "identity '" + socket.configured_identity +
                                    "' is no longer configured"));
    return false;
  }
  const ike::policy::SpdEntry* entry = snapshot_->spd.Lookup(ToPacket(conversation));
  if (entry == nullptr || entry->action != ike::policy::SpdAction::kProtect)
    return true;  // Decide refuses it with the SPD's reason
  const ike::policy::PadEntry* pad = snapshot_->pad.Find(entry->protect.peer);
  // The PAD entry presents it anyway: the host's shared SA serves.
  if (pad != nullptr && pad->local_identity == identity->name) return true;
  Status why;
  auto credential = ConfiguredCredential(*identity, &why);
  if (!credential) {
    Refuse(socket, why);
    return false;
  }
  socket.credential = std::move(credential);
  socket.dedicated = true;
  socket.presented = PresentedIdentity(*identity);
  socket.presenting = "identity '" + identity->name + "'";
  BTNSD_LOG(Level::kInfo, "api-configured-identity", {"identity", identity->name},
            {"pad", pad ? pad->name : std::string("-")},
            {"conversation", conversation.ToString()},
            {"uid", static_cast<uint64_t>(socket.caller.uid)});
  return true;
}

void ApiBridge::NoteDedicatedUp(const ike::sa::IkeSaUp& up, IkeSaRecord& record) {
  auto [it, fresh] = dedicated_ike_sas_.try_emplace(up.ike_sa);
  if (fresh) {
    it->second.reqid = uint32_t(up.request_tag);
    auto socket = waiting_sockets_.find(it->second.reqid);
    if (socket != waiting_sockets_.end()) {
      it->second.local = socket->second.presented;
    } else {
      // Its socket gave up waiting (refused at the deadline) while IKE ran:
      // nobody will use it.
      it->second.orphaned = true;
      if (poster_) poster_([] {});
    }
  }
  if (it->second.local) record.local = it->second.local;
}

void ApiBridge::WatchDedicated(const WaitingSocket& socket, const SaInfo& sa) {
  auto dedicated = dedicated_ike_sas_.find(sa.ike_sa_id);
  if (dedicated == dedicated_ike_sas_.end() || !socket.conversation) return;
  auto cookie = SocketCookie(socket.fd);
  if (!cookie) return;  // cannot be told apart from a later socket: kept
  dedicated->second.sockets.push_back(WatchedSocket{*socket.conversation, *cookie});
  dedicated->second.released_since.reset();
  // The API thread may be asleep without a deadline: make it look again.
  if (poster_) poster_([] {});
}

std::optional<std::chrono::steady_clock::time_point> ApiBridge::NextWatch() const {
  for (const auto& [handle, dedicated] : dedicated_ike_sas_)
    if ((!dedicated.sockets.empty() || dedicated.orphaned) && !dedicated.deleting)
      return next_watch_;
  return std::nullopt;
}

std::vector<ike::sa::IkeSaHandle> ApiBridge::DueDedicatedDeletes() {
  std::vector<ike::sa::IkeSaHandle> due;
  const auto now = std::chrono::steady_clock::now();
  if (now < next_watch_ || !NextWatch()) return due;
  next_watch_ = now + watch_interval_;
  for (auto& [handle, dedicated] : dedicated_ike_sas_) {
    if ((dedicated.sockets.empty() && !dedicated.orphaned) || dedicated.deleting) continue;
    const bool released = std::all_of(
        dedicated.sockets.begin(), dedicated.sockets.end(),
        [this](const WatchedSocket& s) { return socket_probe_(s) == SocketHold::kReleased; });
    if (!released) {
      dedicated.released_since.reset();
      continue;
    }
    if (!dedicated.released_since) dedicated.released_since = now;
    if (now - *dedicated.released_since < dedicated_grace_) continue;
    dedicated.deleting = true;
    due.push_back(handle);
    BTNSD_LOG(Level::kInfo, "api-dedicated-sa-closed", {"ike_sa", handle},
              {"conversation", dedicated.sockets.empty()
                                    ? std::string("-")
                                    : dedicated.sockets.front().conversation.ToString()},
              {"why", dedicated.orphaned ? "its socket stopped waiting before it was up"
                                         : "the socket it served is closed"});
  }
  return due;
}

// ------------------------------------------------------------ ApiService

ApiService::ApiService(ApiBridge& bridge) : bridge_(bridge) {}

ApiService::~ApiService() { Stop("btnsd stopping"); }

bool ApiService::Start(const std::string& path, const std::string& group,
                       std::string* why) {
  btns_api::EndpointOptions options;
  options.path = path;
  if (!group.empty()) {
    const struct group* entry = getgrnam(group.c_str());
    if (entry == nullptr) {
      *why = "api_group '" + group + "' is not a group on this host";
      return false;
    }
    options.group = entry->gr_gid;
  } else {
    options.mode = 0600;
  }
  // /run is a tmpfs: the socket's folder does not survive a reboot.
  const size_t slash = path.rfind('/');
  if (slash != std::string::npos && slash > 0) {
    const std::string folder = path.substr(0, slash);
    if (mkdir(folder.c_str(), 0755) != 0 && errno != EEXIST) {
      *why = "cannot create " + folder + ": " + std::strerror(errno);
      return false;
    }
  }
  const int fd = btns_api::CreateEndpoint(options, why);
  if (fd < 0) return false;
  server_ = std::make_unique<btns_api::Server>(bridge_);  // subscribes itself
  server_->SetAdmin(admin_);
  {
    std::lock_guard lock(runner_mu_);
    runner_ = std::make_unique<btns_api::EpollRunner>(*server_, fd);
  }
  btns_api::EpollRunner* runner = runner_.get();
  bridge_.SetPoster([runner](std::function<void()> task) {
    runner->Post(std::move(task));
  });
  btns_api::Server* server = server_.get();
  bridge_.SetSignatureRequester([server, runner](uint64_t signer_id, const std::string& scheme,
                                                 const std::string& octets,
                                                 ApiBridge::SignatureDone done) {
    runner->Post([server, signer_id, scheme, octets, done = std::move(done)]() mutable {
      server->RequestSignature(signer_id, scheme, octets, std::move(done));
    });
  });
  thread_ = std::thread([runner] { runner->Run(); });
  return true;
}

void ApiService::Stop(const std::string& message) {
  if (!thread_.joinable()) return;
  btns_api::Server* server = server_.get();
  btns_api::EpollRunner* runner = runner_.get();
  // No more SA events for a server that is going away.
  bridge_.Subscribe(nullptr);
  bridge_.SetPoster(nullptr);
  // Signatures still asked for get no answer: the engines' signer timeout
  // ends those negotiations.
  bridge_.SetSignatureRequester(nullptr);
  // Two more loop turns after CLOSED is queued, so the runner can write it.
  runner->Post([server, runner, message] {
    server->CloseAllLatches(message);
    runner->Post([runner] { runner->Stop(); });
  });
  thread_.join();
  {
    std::lock_guard lock(runner_mu_);
    runner_.reset();
  }
  server_.reset();  // unsubscribes
}

void ApiService::PublishAdminEvent(const btns::api::v1::AdminEvent& event) {
  std::lock_guard lock(runner_mu_);
  if (!runner_ || !server_) return;
  btns_api::Server* server = server_.get();
  runner_->Post([server, event] { server->PublishAdminEvent(event); });
}

}  // namespace btnsd::daemon
