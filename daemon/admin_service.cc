#include "daemon/admin_service.h"

#include <algorithm>

#include <cerrno>
#include <future>
#include <memory>

#include "config/loader.h"
#include "daemon/credentials.h"
#include "daemon/kernel_translate.h"
#include "daemon/log.h"

namespace btnsd::daemon {

namespace pb = btns::api::v1;
using btns_api::Status;
using btns_api::Why;

namespace {

std::string EncrName(ike::wire::EncrId id) {
  using ike::wire::EncrId;
  switch (id) {
    case EncrId::kDes: return "DES";
    case EncrId::k3Des: return "3DES";
    case EncrId::kNull: return "NULL";
    case EncrId::kAesCbc: return "AES_CBC";
    case EncrId::kAesCtr: return "AES_CTR";
    case EncrId::kAesCcm8: return "AES_CCM_8";
    case EncrId::kAesCcm12: return "AES_CCM_12";
    case EncrId::kAesCcm16: return "AES_CCM_16";
    case EncrId::kAesGcm8: return "AES_GCM_8";
    case EncrId::kAesGcm12: return "AES_GCM_12";
    case EncrId::kAesGcm16: return "AES_GCM_16";
    case EncrId::kNullAuthAesGmac: return "NULL_AUTH_AES_GMAC";
    case EncrId::kChaCha20Poly1305: return "CHACHA20_POLY1305";
  }
  return "ENCR_" + std::to_string(static_cast<unsigned>(id));
}

std::string PrfName(ike::wire::PrfId id) {
  using ike::wire::PrfId;
  switch (id) {
    case PrfId::kHmacMd5: return "PRF_HMAC_MD5";
    case PrfId::kHmacSha1: return "PRF_HMAC_SHA1";
    case PrfId::kAes128Xcbc: return "PRF_AES128_XCBC";
    case PrfId::kHmacSha2_256: return "PRF_HMAC_SHA2_256";
    case PrfId::kHmacSha2_384: return "PRF_HMAC_SHA2_384";
    case PrfId::kHmacSha2_512: return "PRF_HMAC_SHA2_512";
    case PrfId::kAes128Cmac: return "PRF_AES128_CMAC";
  }
  return "PRF_" + std::to_string(static_cast<unsigned>(id));
}

std::string IntegName(ike::wire::IntegId id) {
  using ike::wire::IntegId;
  switch (id) {
    case IntegId::kNone: return "";
    case IntegId::kHmacMd5_96: return "HMAC_MD5_96";
    case IntegId::kHmacSha1_96: return "HMAC_SHA1_96";
    case IntegId::kAesXcbc96: return "AES_XCBC_96";
    case IntegId::kHmacSha2_256_128: return "HMAC_SHA2_256_128";
    case IntegId::kHmacSha2_384_192: return "HMAC_SHA2_384_192";
    case IntegId::kHmacSha2_512_256: return "HMAC_SHA2_512_256";
  }
  return "INTEG_" + std::to_string(static_cast<unsigned>(id));
}

std::string GroupName(ike::wire::KeGroup id) {
  using ike::wire::KeGroup;
  switch (id) {
    case KeGroup::kNone: return "NONE";
    case KeGroup::kCurve25519: return "CURVE_25519";
    case KeGroup::kCurve448: return "CURVE_448";
    case KeGroup::kEcp256: return "ECP_256";
    case KeGroup::kEcp384: return "ECP_384";
    case KeGroup::kEcp521: return "ECP_521";
    default:
      return "MODP/" + std::to_string(static_cast<unsigned>(id));
  }
}

std::string EndpointText(const ike::sa::Endpoint& e) {
  if (e.address.family == ike::policy::IpFamily::kV6)
    return "[" + e.address.ToString() + "]:" + std::to_string(e.port);
  return e.address.ToString() + ":" + std::to_string(e.port);
}

std::string AuthName(const ike::sa::PeerIdentity& peer) {
  switch (peer.auth) {
    case ike::sa::PeerAuthKind::kSharedKey: return "psk";
    case ike::sa::PeerAuthKind::kCertificate: return "certificate";
    case ike::sa::PeerAuthKind::kRawPublicKey:
      return peer.authenticated ? "pinned-key" : "raw-key";
    case ike::sa::PeerAuthKind::kNull: return "null";
  }
  return "?";
}

std::string PeerName(const ike::sa::PeerIdentity& peer) {
  return !peer.recorded_identity.empty() ? peer.recorded_identity
                                         : peer.asserted_id.ToString();
}

std::time_t Plus(std::time_t start, uint64_t seconds) {
  return seconds == 0 || start == 0 ? 0 : start + static_cast<std::time_t>(seconds);
}

std::string TsText(const ike::policy::TrafficSelector& ts) { return ts.ToString(); }

}  // namespace

std::string IkeTransformsText(const ike::crypto::TransformSet& set) {
  std::string text = EncrName(set.encr);
  if (set.encr_key_bits != 0) text += "-" + std::to_string(set.encr_key_bits);
  const std::string integ = IntegName(set.integ);
  if (!integ.empty()) text += "/" + integ;
  return text + "/" + PrfName(set.prf) + "/" + GroupName(set.ke);
}

AdminService::AdminService(Daemon& daemon, Options options)
    : daemon_(daemon), options_(std::move(options)) {}

void AdminService::SetEventSink(EventSink sink) {
  std::lock_guard lock(sink_mu_);
  sink_ = std::move(sink);
}

void AdminService::Publish(pb::AdminEvent event) {
  event.set_time_unix_ms(std::chrono::duration_cast<std::chrono::milliseconds>(
                             std::chrono::system_clock::now().time_since_epoch())
                             .count());
  std::lock_guard lock(sink_mu_);
  if (sink_) sink_(event);
}

void AdminService::OnReloaded() {
  pb::AdminEvent e;
  e.set_kind("reloaded");
  e.set_text("reloaded " + options_.config_path);
  Publish(std::move(e));
}

void AdminService::OnAction(const ike::sa::Action& action) {
  using namespace ike::sa;
  std::lock_guard records_lock(records_mu_);
  const std::time_t now = std::time(nullptr);
  if (auto* up = std::get_if<IkeSaUp>(&action)) {
    auto [it, fresh] = ike_records_.try_emplace(up->ike_sa);
    pb::AdminEvent e;
    e.set_ike_sa_id(up->ike_sa);
    e.set_peer_id(PeerName(up->peer));
    if (fresh) {
      it->second.established = now;
      Count("ike_sa_up");
      e.set_kind("ike-sa-up");
      e.set_text(EndpointText(up->local) + " <-> " + EndpointText(up->remote) +
                 (up->initiator ? " (initiator)" : " (responder)") + ", pad " +
                 up->peer.pad_entry + ", auth " + AuthName(up->peer));
    } else {
      it->second.rekeyed = now;
      Count("ike_sa_rekeyed");
      e.set_kind("ike-sa-rekeyed");
      e.set_text("IKE SA #" + std::to_string(up->ike_sa) + " rekeyed");
    }
    Publish(std::move(e));
  } else if (auto* install = std::get_if<InstallChildSa>(&action)) {
    ChildRecord& r = child_records_[install->child_sa];
    r.ike_sa = install->ike_sa;
    r.mode = install->mode;
    if (install->direction == SaDirection::kOutbound) {
      r.outbound_destination = install->destination;
      r.lifetime = install->lifetime;
      std::string text = install->transform.kernel_encryption;
      if (install->transform.encryption_key_bits != 0)
        text += "-" + std::to_string(install->transform.encryption_key_bits);
      if (!install->transform.aead && !install->transform.kernel_integrity.empty())
        text += "+" + install->transform.kernel_integrity;
      if (install->transform.extended_sequence_numbers) text += "+esn";
      r.algorithms = text;
    } else {
      r.inbound_destination = install->destination;
    }
  } else if (auto* child = std::get_if<ChildSaUp>(&action)) {
    ChildRecord& r = child_records_[child->child_sa];
    r.established = now;
    r.replaces = child->replaces;
    Count(child->replaces ? "child_sa_rekeyed" : "child_sa_up");
    pb::AdminEvent e;
    e.set_kind(child->replaces ? "child-sa-rekeyed" : "child-sa-up");
    e.set_ike_sa_id(child->ike_sa);
    e.set_child_sa_id(child->child_sa);
    e.set_spd_entry(child->spd_entry);
    char spis[48];
    std::snprintf(spis, sizeof spis, "spi in %08x out %08x", child->inbound_spi,
                  child->outbound_spi);
    e.set_text(std::string(spis) +
               (child->replaces ? ", replaces CHILD SA #" + std::to_string(child->replaces)
                                : std::string()));
    Publish(std::move(e));
  } else if (auto* child_down = std::get_if<ChildSaDown>(&action)) {
    child_records_.erase(child_down->child_sa);
    const std::string reason(FailureReasonName(child_down->reason));
    Count("child_sa_down." + reason);
    pb::AdminEvent e;
    e.set_kind("child-sa-down");
    e.set_reason(reason);
    e.set_ike_sa_id(child_down->ike_sa);
    e.set_child_sa_id(child_down->child_sa);
    Publish(std::move(e));
  } else if (auto* down = std::get_if<IkeSaDown>(&action)) {
    ike_records_.erase(down->ike_sa);
    std::erase_if(child_records_,
                  [&](const auto& entry) { return entry.second.ike_sa == down->ike_sa; });
    const std::string reason(FailureReasonName(down->reason));
    Count("ike_sa_down." + reason);
    pb::AdminEvent e;
    e.set_kind("ike-sa-down");
    e.set_reason(reason);
    e.set_ike_sa_id(down->ike_sa);
    Publish(std::move(e));
  } else if (auto* log = std::get_if<Log>(&action)) {
    if (log->reason == FailureReason::kNone) return;
    const std::string reason(FailureReasonName(log->reason));
    Count("failure." + reason);
    if (log->level > LogLevel::kWarning) return;
    pb::AdminEvent e;
    e.set_kind("alert");
    e.set_reason(reason);
    e.set_ike_sa_id(log->ike_sa);
    e.set_text(log->text);
    Publish(std::move(e));
  }
}

Status AdminService::OnProtocolThread(
    const std::function<Status(pb::Reply*)>& work, pb::Reply* reply) {
  struct Answer {
    std::promise<std::pair<Status, pb::Reply>> promise;
  };
  auto answer = std::make_shared<Answer>();
  auto future = answer->promise.get_future();
  daemon_.Post([answer, work] {
    pb::Reply r;
    Status st = work(&r);
    answer->promise.set_value({std::move(st), std::move(r)});
  });
  if (future.wait_for(options_.timeout) != std::future_status::ready) {
    return Status::Fail(ETIMEDOUT, Why::kDaemonUnavailable,
                        "btnsd's protocol thread did not answer within " +
                            std::to_string(options_.timeout.count()) +
                            " ms; it may be stopping or overloaded");
  }
  auto [status, r] = future.get();
  // Keep the request's id and version set by the caller.
  r.set_id(reply->id());
  r.set_version(reply->version());
  *reply = std::move(r);
  return status;
}

std::optional<gid_t> AdminService::AdminGroup() {
  pb::Reply reply;
  std::optional<gid_t> gid;
  auto shared = std::make_shared<std::optional<gid_t>>();
  Status st = OnProtocolThread(
      [this, shared](pb::Reply*) {
        auto snapshot = daemon_.snapshot();
        if (snapshot && snapshot->api.admin_gid)
          *shared = static_cast<gid_t>(*snapshot->api.admin_gid);
        return Status::Ok();
      },
      &reply);
  if (st.ok()) gid = *shared;
  return gid;
}

std::string AdminService::AdminGroupName() {
  pb::Reply reply;
  auto shared = std::make_shared<std::string>();
  OnProtocolThread(
      [this, shared](pb::Reply*) {
        auto snapshot = daemon_.snapshot();
        if (snapshot) *shared = snapshot->api.admin_group;
        return Status::Ok();
      },
      &reply);
  return *shared;
}

Status AdminService::Handle(const pb::Request& request, pb::Reply* reply) {
  switch (request.body_case()) {
    case pb::Request::kAdminListSas:
      return OnProtocolThread(
          [this](pb::Reply* r) { return ListSas(r->mutable_sa_list()); }, reply);
    case pb::Request::kAdminListPolicy:
      return OnProtocolThread(
          [this](pb::Reply* r) { return ListPolicy(r->mutable_policy_list()); },
          reply);
    case pb::Request::kAdminInitiate: {
      const std::string name = request.admin_initiate().spd_entry();
      return OnProtocolThread(
          [this, name](pb::Reply* r) {
            return Initiate(name, r->mutable_admin_result());
          },
          reply);
    }
    case pb::Request::kAdminTerminate:
    case pb::Request::kAdminRekey: {
      const bool rekey = request.body_case() == pb::Request::kAdminRekey;
      const uint64_t ike = rekey ? request.admin_rekey().ike_sa_id()
                                 : request.admin_terminate().ike_sa_id();
      const uint64_t child = rekey ? request.admin_rekey().child_sa_id()
                                   : request.admin_terminate().child_sa_id();
      if ((ike == 0) == (child == 0))
        return Status::Fail(EINVAL, Why::kBadArgument,
                            "name exactly one of an IKE SA id or a CHILD SA id");
      return OnProtocolThread(
          [this, ike, child, rekey](pb::Reply* r) {
            return Terminate(ike, child, rekey, r->mutable_admin_result());
          },
          reply);
    }
    case pb::Request::kAdminReload:
      return OnProtocolThread(
          [this](pb::Reply* r) { return Reload(r->mutable_admin_result()); },
          reply);
    case pb::Request::kAdminStats:
      return OnProtocolThread(
          [this](pb::Reply* r) {
            Stats(r->mutable_stats());
            return Status::Ok();
          },
          reply);
    case pb::Request::kAdminVersion:
      reply->mutable_version_info()->set_daemon(kDaemonVersion);
      return Status::Ok();
    default:
      return Status::Fail(EOPNOTSUPP, Why::kNotSupported,
                          "unknown administrative request");
  }
}

Status AdminService::ListSas(pb::SaList* out) {
  auto snapshot = daemon_.snapshot();
  const KernelTags tags = ToKernelTags(snapshot->daemon.ownership);
  const ike::sa::EngineSettings defaults;
  // Every shard's SAs first, then a copy of the records: a shard thread may
  // be inside OnAction (holding records_mu_) while we wait for it.
  const std::vector<ike::sa::IkeSaView> views = daemon_.ListIkeSas();
  std::map<ike::sa::IkeSaHandle, IkeRecord> ike_records;
  std::map<ike::sa::ChildSaHandle, ChildRecord> child_records;
  {
    std::lock_guard records_lock(records_mu_);
    ike_records = ike_records_;
    child_records = child_records_;
  }
  for (const ike::sa::IkeSaView& view : views) {
    pb::IkeSaStatus* ike = out->add_ike_sas();
    ike->set_id(view.handle);
    ike->set_state(view.rekeyed                                     ? "rekeyed"
                   : view.state == ike::sa::IkeSaState::kEstablished ? "established"
                   : view.state == ike::sa::IkeSaState::kDeleting  ? "deleting"
                                                                   : "connecting");
    ike->set_initiator(view.initiator);
    ike->set_initiator_spi(view.initiator_spi);
    ike->set_responder_spi(view.responder_spi);
    ike->set_local(EndpointText(view.local));
    ike->set_remote(EndpointText(view.remote));
    if (view.peer) {
      ike->set_peer_id(PeerName(*view.peer));
      ike->set_auth_method(AuthName(*view.peer));
      ike->set_authenticated(view.peer->authenticated);
      ike->set_pad_entry(view.peer->pad_entry);
    }
    if (view.state != ike::sa::IkeSaState::kConnecting)
      ike->set_algorithms(IkeTransformsText(view.transforms));
    auto record = ike_records.find(view.handle);
    if (record != ike_records.end()) {
      const std::time_t since =
          record->second.rekeyed ? record->second.rekeyed : record->second.established;
      ike->set_established_unix(record->second.established);
      // The IKE lifetime of the SPD entry behind its first CHILD SA, else
      // the engine's default.
      ike::policy::Lifetime lifetime;
      for (const auto& child : view.children)
        for (const auto& entry : snapshot->spd.entries())
          if (entry.name == child.spd_entry && lifetime.hard_seconds == 0)
            lifetime = entry.protect.ike_lifetime;
      uint64_t soft = lifetime.soft_seconds, hard = lifetime.hard_seconds;
      if (hard == 0) {
        soft = std::chrono::duration_cast<std::chrono::seconds>(defaults.default_ike_soft).count();
        hard = std::chrono::duration_cast<std::chrono::seconds>(defaults.default_ike_hard).count();
      }
      ike->set_rekey_unix(Plus(since, soft));
      ike->set_expire_unix(Plus(since, hard));
    }
    for (const ike::sa::ChildSaView& c : view.children) {
      pb::ChildSaStatus* child = ike->add_children();
      child->set_id(c.handle);
      child->set_spd_entry(c.spd_entry);
      child->set_inbound_spi(c.inbound_spi);
      child->set_outbound_spi(c.outbound_spi);
      child->set_state(c.state == ike::sa::ChildSaState::kRekeyed    ? "rekeyed"
                       : c.state == ike::sa::ChildSaState::kDeleting ? "deleting"
                                                                     : "active");
      for (const auto& ts : c.local_ts) child->add_local_ts(TsText(ts));
      for (const auto& ts : c.remote_ts) child->add_remote_ts(TsText(ts));
      auto cr = child_records.find(c.handle);
      if (cr == child_records.end()) continue;
      const ChildRecord& r = cr->second;
      child->set_replaces(r.replaces);
      child->set_mode(std::string(ike::policy::IpsecModeName(r.mode)));
      child->set_algorithms(r.algorithms);
      child->set_established_unix(r.established);
      child->set_rekey_unix(Plus(r.established, r.lifetime.soft_seconds));
      child->set_expire_unix(Plus(r.established, r.lifetime.hard_seconds));
      if (options_.kernel.xfrm == nullptr) continue;
      std::string error;
      auto query = [&](const ike::policy::IpAddress& destination, uint32_t spi,
                       uint64_t* bytes, uint64_t* packets) {
        if (spi == 0) return;
        kernel_glue::SaId id{ToKernel(destination), spi, kernel_glue::kIpProtoEsp,
                             tags.mark};
        std::lock_guard lock(*options_.kernel.mutex);
        auto info = options_.kernel.xfrm->QuerySa(id);
        if (!info.ok()) {
          error = info.error().ToString();
          return;
        }
        *bytes = info.value().counters.bytes;
        *packets = info.value().counters.packets;
      };
      uint64_t bytes_in = 0, packets_in = 0, bytes_out = 0, packets_out = 0;
      query(r.inbound_destination, c.inbound_spi, &bytes_in, &packets_in);
      query(r.outbound_destination, c.outbound_spi, &bytes_out, &packets_out);
      child->set_bytes_in(bytes_in);
      child->set_packets_in(packets_in);
      child->set_bytes_out(bytes_out);
      child->set_packets_out(packets_out);
      if (!error.empty()) child->set_counters_error(error);
    }
  }
  return Status::Ok();
}

Status AdminService::ListPolicy(pb::PolicyList* out) {
  auto snapshot = daemon_.snapshot();
  out->set_source_file(snapshot->source_file);
  for (const auto& e : snapshot->pad.entries()) {
    pb::PadEntryStatus* p = out->add_pad();
    p->set_name(e.name);
    p->set_peer(e.IsBtns() ? "any" : e.peer_id.ToString());
    p->set_auth(std::string(ike::policy::PeerAuthMethodName(e.auth)));
    p->set_btns(e.IsBtns());
    p->set_local_identity(e.local_identity);
    for (const auto& ts : e.remote_ts) p->add_remote_ts(ts.ToString());
  }
  std::map<std::string, uint32_t> running;
  for (const auto& view : daemon_.ListIkeSas())
    for (const auto& child : view.children) ++running[child.spd_entry];
  for (const auto& e : snapshot->spd.entries()) {
    pb::SpdEntryStatus* s = out->add_spd();
    s->set_name(e.name);
    s->set_selector(e.selector.ToString());
    s->set_action(std::string(ike::policy::SpdActionName(e.action)));
    if (e.action == ike::policy::SpdAction::kProtect) {
      s->set_peer(e.protect.peer);
      s->set_mode(std::string(ike::policy::IpsecModeName(e.protect.mode)));
      s->set_start(std::string(ike::policy::StartActionName(e.protect.start)));
      s->set_esp_proposals(e.protect.esp_proposals);
      s->set_ike_proposals(e.protect.ike_proposals);
    }
    s->set_child_sas(running[e.name]);
  }
  return Status::Ok();
}

Status AdminService::Initiate(const std::string& spd_entry, pb::AdminResult* out) {
  auto snapshot = daemon_.snapshot();
  const ike::policy::SpdEntry* entry = nullptr;
  for (const auto& e : snapshot->spd.entries())
    if (e.name == spd_entry) entry = &e;
  if (entry == nullptr)
    return Status::Fail(ENOENT, Why::kBadArgument,
                        "no SPD entry '" + spd_entry + "' in " +
                            snapshot->source_file + " (see btnsctl list-spd)");
  if (entry->action != ike::policy::SpdAction::kProtect)
    return Status::Fail(EINVAL, Why::kBadArgument,
                        "SPD entry '" + spd_entry + "' is " +
                            std::string(ike::policy::SpdActionName(entry->action)) +
                            ", not protect: there is nothing to negotiate");
  BTNSD_LOG(Level::kInfo, "initiate", {"spd", spd_entry}, {"why", "api"});
  daemon_.Dispatch(ike::sa::InitiateRequest{spd_entry, std::nullopt, std::nullopt,
                                            std::nullopt});
  out->set_message("initiating SPD entry '" + spd_entry +
                   "'; follow with btnsctl events or list-sas");
  return Status::Ok();
}

Status AdminService::Terminate(uint64_t ike_sa, uint64_t child_sa, bool rekey,
                               pb::AdminResult* out) {
  const char* verb = rekey ? "rekeying" : "terminating";
  if (ike_sa != 0) {
    const auto views = daemon_.ListIkeSas();
    if (std::none_of(views.begin(), views.end(),
                     [ike_sa](const auto& view) { return view.handle == ike_sa; }))
      return Status::Fail(ESRCH, Why::kBadArgument,
                          "no IKE SA #" + std::to_string(ike_sa) +
                              " (see btnsctl list-sas)");
    BTNSD_LOG(Level::kInfo, rekey ? "rekey-requested" : "terminate-requested",
              {"ike_sa", ike_sa}, {"why", "api"});
    if (rekey) {
      daemon_.Dispatch(ike::sa::RekeyRequest{ike_sa, 0});
    } else {
      daemon_.Dispatch(ike::sa::DeleteRequest{ike_sa, 0});
    }
    out->set_ike_sa_id(ike_sa);
    out->set_message(std::string(verb) + " IKE SA #" + std::to_string(ike_sa));
    return Status::Ok();
  }
  for (const auto& view : daemon_.ListIkeSas()) {
    for (const auto& child : view.children) {
      if (child.handle != child_sa) continue;
      BTNSD_LOG(Level::kInfo, rekey ? "rekey-requested" : "terminate-requested",
                {"ike_sa", view.handle}, {"child_sa", child_sa}, {"why", "api"});
      if (rekey) {
        daemon_.Dispatch(ike::sa::RekeyRequest{0, child_sa});
      } else {
        daemon_.Dispatch(ike::sa::DeleteRequest{view.handle, child_sa});
      }
      out->set_ike_sa_id(view.handle);
      out->set_child_sa_id(child_sa);
      out->set_message(std::string(verb) + " CHILD SA #" + std::to_string(child_sa) +
                       " of IKE SA #" + std::to_string(view.handle));
      return Status::Ok();
    }
  }
  return Status::Fail(ESRCH, Why::kBadArgument,
                      "no CHILD SA #" + std::to_string(child_sa) +
                          " (see btnsctl list-sas)");
}

Status AdminService::Reload(pb::AdminResult* out) {
  // Validate first only to return the errors to the caller; the reload
  // itself is Daemon::Reload, exactly what SIGHUP runs.
  auto loaded = config::LoadConfigFile(options_.config_path);
  std::vector<std::string> errors;
  for (const auto& error : loaded.errors) errors.push_back(error.ToString());
  if (loaded.ok()) {
    CredentialLoad credentials = LoadCredentials(*loaded.snapshot);
    for (const auto& error : credentials.errors)
      errors.push_back(options_.config_path + ": " + error);
  }
  BTNSD_LOG(Level::kInfo, "reload-requested", {"why", "api"});
  // A reload that applies is announced by OnReloaded, for SIGHUP as well.
  if (daemon_.Reload()) {
    out->set_message("reloaded " + options_.config_path);
    return Status::Ok();
  }
  pb::AdminEvent e;
  e.set_kind("reload-rejected");
  if (errors.empty()) errors.push_back(options_.config_path + ": rejected (see the log)");
  for (const auto& error : errors) out->add_errors(error);
  out->set_message(options_.config_path + ": " + std::to_string(errors.size()) +
                   " error" + (errors.size() == 1 ? "" : "s") +
                   "; running configuration kept");
  e.set_reason("config-invalid");
  e.set_text(out->message());
  Publish(std::move(e));
  return Status::Fail(EINVAL, Why::kBadArgument, out->message());
}

void AdminService::Stats(pb::StatsReply* out) {
  auto add = [out](const std::string& name, uint64_t value) {
    pb::Counter* c = out->add_counters();
    c->set_name(name);
    c->set_value(value);
  };
  uint64_t ike_sas = 0, child_sas = 0, half_open = 0, cookies = 0;
  daemon_.VisitShards([&](size_t, ike::sa::SaManager& manager) {
    ike_sas += manager.ike_sa_count();
    child_sas += manager.child_sa_count();
    half_open += manager.half_open_count();
    cookies += manager.cookies_demanded();
  });
  add("ike_sas", ike_sas);
  add("child_sas", child_sas);
  add("half_open", half_open);
  add("cookies_demanded", cookies);
  const DaemonCounters& c = daemon_.counters();
  add("datagrams_received", c.datagrams_received);
  add("datagrams_dropped", c.datagrams_dropped);
  add("datagrams_sent", c.datagrams_sent);
  add("send_errors", c.send_errors);
  add("kernel_jobs", c.kernel_jobs);
  add("reloads", c.reloads);
  add("reloads_rejected", c.reloads_rejected);
  std::lock_guard records_lock(records_mu_);
  for (const auto& [name, value] : counters_) add(name, value);
}

}  // namespace btnsd::daemon
