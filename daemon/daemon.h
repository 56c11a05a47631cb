// btnsd's composition root: the Asio event loops around the protocol engine.
//
// Threads (see daemon/README.md for the reasoning):
//   * the front thread (the one calling Run) reads every IKE socket, routes
//     each datagram to its protocol shard (ShardRouter), and runs signals,
//     reloads and Post()ed tasks;
//   * N protocol shards, each one thread with its own io_context, its own
//     ike::sa::SaManager and its own timers, all sharing the immutable
//     policy snapshot; an IKE SA lives in exactly one shard, so each engine
//     stays single-threaded and lock-free; shards send on the shared
//     sockets directly;
//   * the kernel thread executes the netlink work (SA/policy installs,
//     deletes, trap sync, flushes) and reads the kernel's events, routing
//     each to the shard owning the SA.
// The engine's ordering contract (install inbound SA, then send the message
// that lets the peer use it) is kept per shard: while its kernel work is in
// flight, the datagrams a shard sends queue behind it on the kernel thread
// and come back to the shard when it is done. Only SPI allocation, which
// the engine needs synchronously, uses netlink on a shard thread, through
// its own socket.
//
// Memory under floods: datagrams are read into one fixed buffer; each shard
// accepts at most kMaxQueuedDatagrams routed datagrams not yet handled (the
// rest are dropped and counted); new IKE_SA_INIT requests are limited per
// source address (a fixed-size table) and dropped once the shard holds its
// share of the half-open limit; the engine demands cookies above its share
// of the cookie threshold.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>  // before Asio: Boost 1.74 needs std::exchange in C++20
#include <vector>

#include <boost/asio.hpp>

#include "daemon/kernel_state.h"
#include "daemon/kernel_translate.h"
#include "daemon/shard_router.h"
#include "ike/crypto/random.h"
#include "ike/policy/snapshot.h"
#include "ike/sa/engine.h"
#include "kernel_glue/xfrm_interface.h"

namespace btnsd::daemon {

// One XfrmInterface and the mutex that serializes its users.
struct KernelAccess {
  kernel_glue::XfrmInterface* xfrm = nullptr;
  std::mutex* mutex = nullptr;
};

struct DaemonDependencies {
  KernelAccess spi_kernel;  // SPI allocation on the protocol threads
  KernelAccess kernel;      // everything else, on the kernel thread
  // Seeds the shard router's address hash. Each shard draws its own
  // randomness from random_factory (default: a DrbgRandomSource each), as a
  // RandomSource is not shared between threads.
  ike::crypto::RandomSource* random = nullptr;
  std::function<std::unique_ptr<ike::crypto::RandomSource>()> random_factory;
  // Loads the config for a reload; defaults to config::LoadConfigFile.
  std::function<ike::policy::PolicySnapshotPtr(const std::string& path,
                                               std::vector<std::string>& errors)>
      load_config;
  // Sees every engine action before it is executed, on the protocol thread
  // of the shard that emitted it (so it must be thread-safe with several
  // shards; the BTNS API's SA table is).
  std::function<void(const ike::sa::Action&)> action_observer;
  // Sees every kernel ACQUIRE, on the kernel thread, before the engine does
  // (the BTNS API's sockets waiting for their SA). True keeps it from the
  // engine: the ACQUIRE was a socket's that gets an IKE SA of its own.
  std::function<bool(const kernel_glue::AcquireEvent&)> acquire_observer;
  // Sees every policy that a reload (SIGHUP or the API) put in force, on the
  // front thread: the BTNS API's grants and identities follow the new file.
  std::function<void(const ike::policy::PolicySnapshotPtr&)> reload_observer;
  // The credentials such a reload loaded, just before reload_observer (the
  // BTNS API presents configured identities with them).
  std::function<void(const std::shared_ptr<const ike::sa::CredentialStore>&)>
      credentials_observer;
};

struct DaemonCounters {
  uint64_t datagrams_received = 0;
  uint64_t datagrams_dropped = 0;  // ESP/keepalive/too short on 4500
  uint64_t datagrams_sent = 0;
  uint64_t send_errors = 0;
  uint64_t kernel_jobs = 0;
  uint64_t reloads = 0;
  uint64_t reloads_rejected = 0;
  // Flood limits (new IKE_SA_INIT requests and routed datagrams dropped).
  uint64_t init_rate_limited = 0;   // over init_rate_per_address
  uint64_t init_half_open_full = 0; // the shard held its half_open_limit share
  uint64_t shard_queue_full = 0;    // the shard had kMaxQueuedDatagrams waiting
};

// Live totals of the engines, readable from any thread without waiting.
struct EngineTotals {
  size_t ike_sas = 0;
  size_t half_open = 0;
};

class Daemon {
 public:
  // Datagrams routed to one shard and not yet handled, at most.
  static constexpr size_t kMaxQueuedDatagrams = 4096;

  Daemon(std::string config_path, ike::policy::PolicySnapshotPtr snapshot,
         ike::sa::CredentialStore credentials, DaemonDependencies deps,
         ike::sa::EngineSettings settings = {});
  ~Daemon();
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  // Flushes stale owned kernel state, opens the IKE sockets (bypass policy,
  // UDP encapsulation on the NAT port), installs traps, starts the kernel
  // and shard threads and initiates SPD entries with start action "start".
  // False (with the reason logged) when the daemon cannot run.
  bool Start();
  // Runs the front loop on the calling thread until Stop; then deletes
  // every IKE SA (telling peers), flushes owned kernel state, and returns.
  void Run();
  // Thread-safe; also wired to SIGTERM/SIGINT (and SIGHUP to Reload) when
  // HandleSignals() was called.
  void Stop();
  void HandleSignals();
  // Re-reads the config; a config (or credential) that fails validation
  // changes nothing. On the front thread (use Post); the shards apply the
  // new policy each on its own thread, shortly after.
  bool Reload();

  // Runs `task` on the front thread (tests, signals, the API).
  void Post(std::function<void()> task);
  // Runs `task` on shard `shard`'s protocol thread.
  void PostToShard(size_t shard, std::function<void()> task);
  // Hands an event to the engine of the shard that owns it (ShardRouter)
  // and executes the resulting actions there. Thread-safe: runs at once on
  // the owning shard's thread, is posted to it from any other.
  void Dispatch(const ike::sa::Event& event);
  // Runs `visit` on every shard's thread in turn, with that shard's
  // engine, and returns when all are done. Not from a shard thread.
  void VisitShards(const std::function<void(size_t shard, ike::sa::SaManager&)>& visit);
  // Every IKE SA of every shard (VisitShards).
  std::vector<ike::sa::IkeSaView> ListIkeSas();
  size_t ChildSaCount();

  size_t shard_count() const { return shards_.size(); }
  // The shard that owns every IKE SA with `peer` (ShardRouter::OfPeer).
  size_t ShardOfPeer(const ike::policy::IpAddress& peer) const {
    return router_->OfPeer(peer);
  }
  // One shard's engine: only on that shard's thread, or after Run returned.
  ike::sa::SaManager& manager(size_t shard = 0);
  DaemonCounters counters() const;
  EngineTotals engine_totals() const;
  // Local port actually bound for a configured port (0 in the config means
  // "any", for tests running several daemons on one host).
  std::vector<ike::sa::Endpoint> bound_endpoints() const;
  std::vector<int> socket_fds() const;
  ike::policy::PolicySnapshotPtr snapshot() const;
  // This run's rotation of SA reqids in the owned band (from the random
  // source; the API's socket bindings must use the same).
  uint32_t reqid_offset() const { return tags_.reqid_offset; }

 private:
  struct IkeSocket;
  struct Shard;
  struct AtomicCounters;
  class SpiAllocator;
  class InitRateLimiter;

  bool OpenSockets();
  void ArmReceive(IkeSocket& socket);
  void ReceiveReady(IkeSocket& socket);
  // Whether a new IKE_SA_INIT request may reach `shard` (flood limits).
  bool AdmitInit(const ike::sa::Endpoint& remote, Shard& shard);
  // `admitted_init`: a new IKE_SA_INIT request AdmitInit counted.
  void RouteDatagram(ike::sa::DatagramReceived event, Shard& shard,
                     bool admitted_init = false);
  void DispatchOn(Shard& shard, const ike::sa::Event& event);
  void Execute(Shard& shard, ike::sa::Actions& actions);
  void SendNow(Shard& shard, const ike::sa::SendDatagram& datagram);
  void ArmTimer(Shard& shard, const ike::sa::ArmTimer& timer);
  void CancelTimer(Shard& shard, ike::sa::TimerId id);
  void LogAction(const ike::sa::Action& action);
  // Runs `job` on the kernel thread (or inline once it is gone), keeping the
  // order of everything `shard` posted.
  void KernelJob(Shard& shard, std::function<void()> job);
  void WatchKernelEvents();
  void ArmKernelEvents();
  void KernelEventsReady();
  void ApplyReload(Shard& shard, const ike::policy::PolicySnapshotPtr& next,
                   const ike::sa::CredentialStore& credentials,
                   const ike::policy::SnapshotDiff& diff);
  void StopShardThreads();
  void Shutdown();
  ike::sa::Instant Now() const;

  std::string config_path_;
  mutable std::mutex snapshot_mutex_;
  ike::policy::PolicySnapshotPtr snapshot_;  // guarded by snapshot_mutex_
  DaemonDependencies deps_;
  KernelTags tags_;
  std::unique_ptr<ShardRouter> router_;
  boost::asio::io_context io_;  // the front loop
  boost::asio::io_context kernel_io_;
  std::optional<boost::asio::executor_work_guard<
      boost::asio::io_context::executor_type>>
      kernel_work_;
  std::thread kernel_thread_;
  bool kernel_thread_running_ = false;
  bool shard_threads_running_ = false;
  std::unique_ptr<SpiAllocator> spi_allocator_;
  std::vector<std::unique_ptr<Shard>> shards_;
  std::unique_ptr<KernelState> kernel_state_;  // kernel thread only
  SaShardMap sa_shards_;                       // kernel thread only
  std::unique_ptr<boost::asio::posix::stream_descriptor> kernel_events_;
  std::vector<std::unique_ptr<IkeSocket>> sockets_;
  std::unique_ptr<InitRateLimiter> init_limiter_;  // front thread only
  size_t half_open_per_shard_ = 0;
  std::unique_ptr<boost::asio::signal_set> signals_;
  std::vector<uint8_t> receive_buffer_;
  std::unique_ptr<AtomicCounters> counters_;
  std::atomic<bool> stopping_{false};
};

// sd_notify(3)'s protocol without libsystemd: a datagram to $NOTIFY_SOCKET.
// False when not run by systemd (no variable) or the send failed.
// STOPPING=1 goes out once per process, however many paths announce it.
bool NotifySystemd(const std::string& state);

}  // namespace btnsd::daemon
