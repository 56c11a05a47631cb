#include "daemon/api_bridge.h"

#include <grp.h>
#include <sys/stat.h>
#include <netinet/in.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "btns_api/epoll_runner.h"
#include "btns_api/server.h"
#include "daemon/log.h"

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

ApiBridge::~ApiBridge() = default;

void ApiBridge::SetPoster(Poster poster) {
  std::lock_guard lock(mu_);
  poster_ = std::move(poster);
}

void ApiBridge::SetInitiator(Initiator initiator) {
  std::lock_guard lock(mu_);
  initiator_ = std::move(initiator);
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
    info.local = LocalIdentityFor(ike->pad_entry);
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
  return info;
}

void ApiBridge::OnIkeSaUp(const ike::sa::IkeSaUp& up) {
  std::unique_lock lock(mu_);
  IkeSaRecord record{ToApiPeer(up.peer), up.peer.pad_entry};
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
  children_[up.child_sa] = info;
  Emit(SaEventKind::kUp, info);
}

void ApiBridge::OnInstallChildSa(const ike::sa::InstallChildSa& install) {
  if (install.direction != ike::sa::SaDirection::kOutbound) return;
  std::lock_guard lock(mu_);
  pending_algorithms_[install.child_sa] = AlgorithmsText(install.transform);
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
  // Child SA handles grow with time, so map order is "newest last".
  std::vector<SaInfo> out;
  for (const auto& [handle, info] : children_)
    if (info.Covers(conversation)) out.push_back(info);
  return out;
}

Status ApiBridge::RequestProtection(const btns_api::ProtectionRequest& request) {
  std::unique_lock lock(mu_);
  const ike::policy::PolicySnapshotPtr snapshot = snapshot_;
  if (!snapshot)
    return Status::Fail(EAGAIN, Why::kDaemonUnavailable,
                        "btnsd has no policy loaded yet");
  if (request.credential_fd >= 0 || !request.credential_uri.empty())
    return Status::Fail(ENOTSUP, Why::kNotSupported,
                        "btnsd does not take credentials from applications yet; "
                        "configure the identity in the daemon's policy file");
  if (request.local_identity) {
    const std::string& wanted = *request.local_identity;
    const ike::policy::LocalIdentity* identity = snapshot->FindIdentity(wanted);
    if (identity == nullptr) {
      for (const auto& candidate : snapshot->identities)
        if (candidate.id.ToString() == wanted) identity = &candidate;
    }
    if (identity == nullptr)
      return Status::Fail(ENOENT, Why::kPolicyForbids,
                          "no local identity '" + wanted + "' in " +
                              snapshot->source_file + " (identities)");
    if (request.caller.uid != 0 &&
        !snapshot->api.MayUseIdentity(request.caller.uid, {request.caller.gid},
                                      identity->name))
      return Status::Fail(EACCES, Why::kPrivilegeRequired,
                          "uid " + std::to_string(request.caller.uid) +
                              " may not present identity '" + identity->name +
                              "' (api grants in " + snapshot->source_file + ")");
  }
  // A listener's traffic is governed by the SPD; the server keeps its latch.
  if (request.listener) return Status::Ok();
  if (!request.conversation)
    return Status::Fail(ENOTCONN, Why::kNotConnected,
                        "per-socket policies before connect() are not supported "
                        "yet; connect the socket first");
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
  runner_ = std::make_unique<btns_api::EpollRunner>(*server_, fd);
  btns_api::EpollRunner* runner = runner_.get();
  bridge_.SetPoster([runner](std::function<void()> task) {
    runner->Post(std::move(task));
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
  // Two more loop turns after CLOSED is queued, so the runner can write it.
  runner->Post([server, runner, message] {
    server->CloseAllLatches(message);
    runner->Post([runner] { runner->Stop(); });
  });
  thread_.join();
  runner_.reset();
  server_.reset();  // unsubscribes
}

}  // namespace btnsd::daemon
