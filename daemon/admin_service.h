// The daemon's answers to administrative API calls (btnsctl): SA and policy
// listings from the protocol thread's real state, initiate/terminate/rekey
// as engine events, reload through Daemon::Reload (the SIGHUP path),
// counters, and the event stream for FollowEvents.
//
// Threads. Handle() runs on the API thread; it posts a closure to the
// protocol thread (Daemon::Post) and waits for its answer for a bounded
// time; SA listings and counters are gathered from every protocol shard on
// that shard's own thread (Daemon::ListIkeSas, VisitShards), so an engine is
// only ever touched by its own thread. OnAction runs on whichever shard
// thread produced the action, hence records_mu_.
#pragma once

#include <chrono>
#include <cstdint>
#include <ctime>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>

#include "btns_api/admin.h"
#include "daemon/daemon.h"
#include "ike/sa/engine.h"

namespace btnsd::daemon {

inline constexpr char kDaemonVersion[] = "btnsd 0.1.0";

class AdminService : public btns_api::AdminBackend {
 public:
  struct Options {
    std::string config_path;
    // Read on the protocol thread for the SAs' byte and packet counters.
    KernelAccess kernel;
    std::chrono::milliseconds timeout{5000};
  };
  using EventSink = std::function<void(const btns::api::v1::AdminEvent&)>;

  AdminService(Daemon& daemon, Options options);

  // Protocol thread: records times, algorithms and counters, emits events.
  void OnAction(const ike::sa::Action& action);
  // A new policy is in force (SIGHUP or Reload): tells the event followers.
  void OnReloaded();
  // Where events go (e.g. posted to the API thread); thread-safe.
  void SetEventSink(EventSink sink);

  // btns_api::AdminBackend, on the API thread.
  std::optional<gid_t> AdminGroup() override;
  std::string AdminGroupName() override;
  btns_api::Status Handle(const btns::api::v1::Request& request,
                          btns::api::v1::Reply* reply) override;

 private:
  struct ChildRecord {
    ike::sa::IkeSaHandle ike_sa = 0;
    std::time_t established = 0;
    std::string algorithms;
    ike::policy::Lifetime lifetime;
    ike::policy::IpAddress inbound_destination;
    ike::policy::IpAddress outbound_destination;
    ike::policy::IpsecMode mode = ike::policy::IpsecMode::kTransport;
    ike::sa::ChildSaHandle replaces = 0;
  };
  struct IkeRecord {
    std::time_t established = 0;
    std::time_t rekeyed = 0;
  };

  // Runs `work` on the protocol thread and waits at most options_.timeout.
  btns_api::Status OnProtocolThread(
      const std::function<btns_api::Status(btns::api::v1::Reply*)>& work,
      btns::api::v1::Reply* reply);
  // These run on the protocol thread.
  btns_api::Status ListSas(btns::api::v1::SaList* out);
  btns_api::Status ListPolicy(btns::api::v1::PolicyList* out);
  btns_api::Status Initiate(const std::string& spd_entry,
                            btns::api::v1::AdminResult* out);
  btns_api::Status Terminate(uint64_t ike_sa, uint64_t child_sa, bool rekey,
                             btns::api::v1::AdminResult* out);
  btns_api::Status Reload(btns::api::v1::AdminResult* out);
  void Stats(btns::api::v1::StatsReply* out);
  void Publish(btns::api::v1::AdminEvent event);
  void Count(const std::string& name, uint64_t n = 1) { counters_[name] += n; }

  Daemon& daemon_;
  Options options_;
  // Written by OnAction on any shard thread; guarded by records_mu_. Never
  // held while waiting for a shard (it may be waiting for this lock).
  std::mutex records_mu_;
  std::map<ike::sa::IkeSaHandle, IkeRecord> ike_records_;
  std::map<ike::sa::ChildSaHandle, ChildRecord> child_records_;
  std::map<std::string, uint64_t> counters_;
  std::mutex sink_mu_;
  EventSink sink_;
};

// "AES_GCM_16-256/PRF_HMAC_SHA2_256/CURVE25519" for an IKE SA's transforms.
std::string IkeTransformsText(const ike::crypto::TransformSet& set);

}  // namespace btnsd::daemon
