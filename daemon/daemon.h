// btnsd's composition root: the Asio event loop around one ike::sa::SaManager.
//
// Threads. The engine is single-threaded (SaManager is "one event at a time")
// and owns every IKE SA, so it runs on one protocol thread: the one calling
// Run(). Its IKE SPIs are chosen inside the engine, so a dispatcher in front
// of several SaManagers could not route a responder-SPI-addressed message to
// its shard without an engine hook; until one exists there is one shard.
// The second core goes to a kernel thread that executes the netlink work
// (SA/policy installs, deletes, trap sync, flushes) and reads the kernel's
// ACQUIRE/EXPIRE events, so a slow netlink round trip never stalls datagram
// processing. The engine's ordering contract (install inbound SA, then send
// the message that lets the peer use it) is kept: while kernel work is in
// flight, datagrams to send queue behind it on the kernel thread and come
// back to the protocol thread when it is done. Only SPI allocation, which
// the engine needs synchronously, uses netlink on the protocol thread,
// through its own socket.
//
// Memory under floods: datagrams are read from a fixed buffer and handed to
// the engine one at a time; nothing queues per datagram in the daemon, so
// the engine's cookie and half-open limits bound what a flood can cost.
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
  KernelAccess spi_kernel;  // SPI allocation on the protocol thread
  KernelAccess kernel;      // everything else, on the kernel thread
  ike::crypto::RandomSource* random = nullptr;
  // Loads the config for a reload; defaults to config::LoadConfigFile.
  std::function<ike::policy::PolicySnapshotPtr(const std::string& path,
                                               std::vector<std::string>& errors)>
      load_config;
  // Sees every engine action before it is executed, on the protocol thread
  // (the BTNS API's SA table).
  std::function<void(const ike::sa::Action&)> action_observer;
  // Sees every kernel ACQUIRE, on the kernel thread, before the engine does
  // (the BTNS API's sockets waiting for their SA).
  std::function<void(const kernel_glue::AcquireEvent&)> acquire_observer;
};

struct DaemonCounters {
  uint64_t datagrams_received = 0;
  uint64_t datagrams_dropped = 0;  // ESP/keepalive/too short on 4500
  uint64_t datagrams_sent = 0;
  uint64_t send_errors = 0;
  uint64_t kernel_jobs = 0;
  uint64_t reloads = 0;
  uint64_t reloads_rejected = 0;
};

class Daemon {
 public:
  Daemon(std::string config_path, ike::policy::PolicySnapshotPtr snapshot,
         ike::sa::CredentialStore credentials, DaemonDependencies deps,
         ike::sa::EngineSettings settings = {});
  ~Daemon();
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  // Flushes stale owned kernel state, opens the IKE sockets (bypass policy,
  // UDP encapsulation on the NAT port), installs traps, starts the kernel
  // thread and initiates SPD entries with start action "start". False (with
  // the reason logged) when the daemon cannot run.
  bool Start();
  // Runs the protocol loop on the calling thread until Stop; then deletes
  // every IKE SA (telling peers), flushes owned kernel state, and returns.
  void Run();
  // Thread-safe; also wired to SIGTERM/SIGINT (and SIGHUP to Reload) when
  // HandleSignals() was called.
  void Stop();
  void HandleSignals();
  // Re-reads the config; a config (or credential) that fails validation
  // changes nothing. Must run on the protocol thread (use Post).
  bool Reload();

  // Runs `task` on the protocol thread (tests, signals, the API later).
  void Post(std::function<void()> task);
  // Hands an event to the engine and executes the resulting actions. Only
  // on the protocol thread.
  void Dispatch(const ike::sa::Event& event);

  ike::sa::SaManager& manager() { return *manager_; }
  const DaemonCounters& counters() const { return counters_; }
  // Local port actually bound for a configured port (0 in the config means
  // "any", for tests running several daemons on one host).
  std::vector<ike::sa::Endpoint> bound_endpoints() const;
  std::vector<int> socket_fds() const;
  ike::policy::PolicySnapshotPtr snapshot() const { return snapshot_; }

 private:
  struct IkeSocket;
  class SpiAllocator;

  bool OpenSockets();
  void ArmReceive(IkeSocket& socket);
  void ReceiveReady(IkeSocket& socket);
  void Execute(ike::sa::Actions& actions);
  void SendNow(const ike::sa::SendDatagram& datagram);
  void ArmTimer(const ike::sa::ArmTimer& timer);
  void CancelTimer(ike::sa::TimerId id);
  void LogAction(const ike::sa::Action& action);
  // Runs `job` on the kernel thread (or inline once it is gone), keeping the
  // order of everything posted.
  void KernelJob(std::function<void()> job);
  void WatchKernelEvents();
  void ArmKernelEvents();
  void KernelEventsReady();
  void Shutdown();
  ike::sa::Instant Now() const;

  std::string config_path_;
  ike::policy::PolicySnapshotPtr snapshot_;
  DaemonDependencies deps_;
  KernelTags tags_;
  boost::asio::io_context io_;
  boost::asio::io_context kernel_io_;
  std::optional<boost::asio::executor_work_guard<
      boost::asio::io_context::executor_type>>
      kernel_work_;
  std::thread kernel_thread_;
  bool kernel_thread_running_ = false;
  // Kernel jobs and the sends queued behind them, not yet finished (only
  // touched on the protocol thread).
  uint64_t in_flight_ = 0;
  std::unique_ptr<SpiAllocator> spi_allocator_;
  std::unique_ptr<ike::sa::SaManager> manager_;
  std::unique_ptr<KernelState> kernel_state_;  // kernel thread only
  std::unique_ptr<boost::asio::posix::stream_descriptor> kernel_events_;
  std::vector<std::unique_ptr<IkeSocket>> sockets_;
  std::map<ike::sa::TimerId, std::unique_ptr<boost::asio::steady_timer>> timers_;
  std::unique_ptr<boost::asio::signal_set> signals_;
  std::vector<uint8_t> receive_buffer_;
  DaemonCounters counters_;
  std::atomic<bool> stopping_{false};
};

// sd_notify(3)'s protocol without libsystemd: a datagram to $NOTIFY_SOCKET.
// False when not run by systemd (no variable) or the send failed.
bool NotifySystemd(const std::string& state);

}  // namespace btnsd::daemon
