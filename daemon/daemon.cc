#include "daemon/daemon.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <ctime>
#include <cstring>
#include <exception>
#include <future>

#include "config/loader.h"
#include "daemon/credentials.h"
#include "daemon/log.h"
#include "ike/policy/pad.h"
#include "ike/policy/proposal.h"

namespace btnsd::daemon {

namespace asio = boost::asio;
using ike::policy::IpAddress;
using ike::policy::IpFamily;

// ------------------------------------------------------------ SPI allocator

// XFRM_MSG_ALLOCSPI on the protocol thread's own netlink socket. The larval
// SA carries the first owned reqid, so a crash leaves nothing FlushOwned
// would not find.
class Daemon::SpiAllocator : public ike::sa::SpiAllocator {
 public:
  SpiAllocator(KernelAccess access, KernelTags tags)
      : access_(access), tags_(tags) {}
  uint32_t Allocate(const IpAddress& local, const IpAddress& remote) override {
    std::lock_guard lock(*access_.mutex);
    auto spi = access_.xfrm->AllocateSpi(ToKernel(remote), ToKernel(local),
                                         tags_.ownership.reqid_min);
    if (!spi.ok()) {
      BTNSD_LOG(Level::kError, "spi-allocation-failed",
                {"error", spi.error().ToString()});
      return 0;
    }
    return spi.value();
  }
  void Release(const IpAddress& local, uint32_t spi) override {
    std::lock_guard lock(*access_.mutex);
    kernel_glue::SaId id{ToKernel(local), spi, kernel_glue::kIpProtoEsp,
                         tags_.mark};
    auto status = access_.xfrm->DeleteSa(id);
    if (!status.ok() && status.error().error_number != ENOENT &&
        status.error().error_number != ESRCH)
      BTNSD_LOG(Level::kWarning, "spi-release-failed",
                {"error", status.error().ToString()});
  }

 private:
  KernelAccess access_;
  KernelTags tags_;
};

// ------------------------------------------------------------ sockets

struct Daemon::IkeSocket {
  explicit IkeSocket(asio::io_context& io) : socket(io) {}
  asio::ip::udp::socket socket;
  IpAddress address;    // as configured (may be unspecified)
  uint16_t port = 0;    // bound port
  bool nat_port = false;  // RFC 3948 non-ESP marker on this port
};

namespace {

std::optional<asio::ip::address> ToAsio(const IpAddress& address) {
  const std::vector<uint8_t> bytes = address.ToBytes();
  if (address.family == IpFamily::kV4) {
    asio::ip::address_v4::bytes_type b{};
    std::copy(bytes.begin(), bytes.end(), b.begin());
    return asio::ip::address(asio::ip::address_v4(b));
  }
  asio::ip::address_v6::bytes_type b{};
  std::copy(bytes.begin(), bytes.end(), b.begin());
  return asio::ip::address(asio::ip::address_v6(b));
}

std::optional<ike::sa::Endpoint> FromSockaddr(const sockaddr_storage& storage) {
  if (storage.ss_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(&storage);
    auto address = IpAddress::FromBytes(
        reinterpret_cast<const uint8_t*>(&in->sin_addr), 4);
    if (!address) return std::nullopt;
    return ike::sa::Endpoint{*address, ntohs(in->sin_port)};
  }
  if (storage.ss_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&storage);
    auto address = IpAddress::FromBytes(in6->sin6_addr.s6_addr, 16);
    if (!address) return std::nullopt;
    return ike::sa::Endpoint{*address, ntohs(in6->sin6_port)};
  }
  return std::nullopt;
}

std::string EndpointText(const ike::sa::Endpoint& endpoint) {
  if (endpoint.address.family == IpFamily::kV6)
    return "[" + endpoint.address.ToString() + "]:" + std::to_string(endpoint.port);
  return endpoint.address.ToString() + ":" + std::to_string(endpoint.port);
}

Level ToLevel(ike::sa::LogLevel level) {
  switch (level) {
    case ike::sa::LogLevel::kError: return Level::kError;
    case ike::sa::LogLevel::kWarning: return Level::kWarning;
    case ike::sa::LogLevel::kInfo: return Level::kInfo;
    case ike::sa::LogLevel::kDebug: return Level::kDebug;
  }
  return Level::kInfo;
}

constexpr size_t kReceiveBufferBytes = 65536;
constexpr uint8_t kExchangeIkeSaInit = 34;
constexpr uint8_t kFlagResponse = 0x20;

// A new IKE_SA_INIT request: responder SPI 0, not a response.
bool IsInitRequest(const uint8_t* data, size_t size) {
  if (size < 28 || data[18] != kExchangeIkeSaInit || (data[19] & kFlagResponse) != 0)
    return false;
  for (int i = 8; i < 16; ++i)
    if (data[i] != 0) return false;
  return true;
}

size_t ShareOf(uint64_t total, size_t shards) {
  return static_cast<size_t>((total + shards - 1) / shards);
}

size_t DefaultShardCount() {
  const unsigned cpus = std::thread::hardware_concurrency();
  return cpus == 0 ? 1 : cpus;
}
// Datagrams read per readiness wake-up before yielding to timers and the
// other sockets, so one flooded socket cannot starve the rest.
constexpr int kReceiveBurst = 64;

}  // namespace

// ------------------------------------------------------------ counters

struct Daemon::AtomicCounters {
  std::atomic<uint64_t> datagrams_received{0};
  std::atomic<uint64_t> datagrams_dropped{0};
  std::atomic<uint64_t> datagrams_sent{0};
  std::atomic<uint64_t> send_errors{0};
  std::atomic<uint64_t> kernel_jobs{0};
  std::atomic<uint64_t> reloads{0};
  std::atomic<uint64_t> reloads_rejected{0};
  std::atomic<uint64_t> init_rate_limited{0};
  std::atomic<uint64_t> init_half_open_full{0};
  std::atomic<uint64_t> shard_queue_full{0};
};

// ------------------------------------------------------------ shards

// One protocol thread with its engine. Everything here but the atomics is
// touched only on the shard's own thread (or after it was joined).
struct Daemon::Shard {
  Shard(size_t index_in, std::unique_ptr<ike::crypto::RandomSource> random_in)
      : index(index_in), random(std::move(random_in)) {}
  const size_t index;
  std::unique_ptr<ike::crypto::RandomSource> random;
  std::unique_ptr<ike::sa::SaManager> manager;
  asio::io_context io;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work;
  std::thread thread;
  std::map<ike::sa::TimerId, std::unique_ptr<asio::steady_timer>> timers;
  // Kernel jobs and the sends queued behind them, not yet finished.
  uint64_t in_flight = 0;
  AtomicCounters counters;
  std::atomic<size_t> queued_datagrams{0};
  // Mirrors of the engine's counts after each event, for the front thread.
  std::atomic<size_t> half_open{0};
  std::atomic<size_t> ike_sas{0};
  // New IKE_SA_INIT requests admitted but not yet handled: each may become
  // a half-open SA, so the cap counts them (a burst arrives faster than the
  // shard updates half_open).
  std::atomic<size_t> inits_queued{0};
};

namespace {
// The shard whose thread is running (nullptr on any other thread).
thread_local const void* current_shard = nullptr;
}  // namespace

// ------------------------------------------------------------ flood limits

// New IKE_SA_INIT requests per source address and second, in a fixed table:
// memory does not grow with the number of addresses. Addresses that share a
// slot share a budget, which errs towards dropping; the keyed hash keeps a
// sender from choosing a victim's slot.
class Daemon::InitRateLimiter {
 public:
  InitRateLimiter(uint32_t per_second, uint64_t key) : per_second_(per_second), key_(key) {}
  bool Admit(const IpAddress& address, ike::sa::Instant now) {
    if (per_second_ == 0) return true;
    const uint64_t second = static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count());
    Slot& slot = slots_[Hash(address) % kSlots];
    if (slot.second != second) {
      slot.second = second;
      slot.count = 0;
    }
    if (slot.count >= per_second_) return false;
    ++slot.count;
    return true;
  }

 private:
  static constexpr size_t kSlots = 8192;
  struct Slot {
    uint64_t second = 0;
    uint32_t count = 0;
  };
  uint64_t Hash(const IpAddress& address) const {
    uint64_t x = key_ ^ static_cast<uint64_t>(address.value) ^
                 (static_cast<uint64_t>(address.value >> 64) * 0x9e3779b97f4a7c15ull);
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
  }
  uint32_t per_second_;
  uint64_t key_;
  std::vector<Slot> slots_ = std::vector<Slot>(kSlots);
};

// ------------------------------------------------------------ daemon

Daemon::Daemon(std::string config_path, ike::policy::PolicySnapshotPtr snapshot,
               ike::sa::CredentialStore credentials, DaemonDependencies deps,
               ike::sa::EngineSettings settings)
    : config_path_(std::move(config_path)),
      snapshot_(std::move(snapshot)),
      deps_(std::move(deps)),
      tags_(ToKernelTags(snapshot_->daemon.ownership)),
      receive_buffer_(kReceiveBufferBytes),
      counters_(std::make_unique<AtomicCounters>()) {
  const auto& daemon_settings = snapshot_->daemon;
  const size_t shard_count = std::min<size_t>(
      daemon_settings.threads != 0 ? daemon_settings.threads : DefaultShardCount(),
      ShardRouter::kMaxShards);
  uint64_t seed = 0;
  if (deps_.random != nullptr) {
    uint8_t bytes[8];
    deps_.random->Fill(bytes);
    for (uint8_t b : bytes) seed = seed << 8 | b;
  }
  // A new run numbers its SA reqids from elsewhere in the owned band than
  // the last (see KernelTags::reqid_offset).
  tags_.reqid_offset = static_cast<uint32_t>(seed >> 32);
  router_ = std::make_unique<ShardRouter>(shard_count, seed);
  init_limiter_ = std::make_unique<InitRateLimiter>(
      daemon_settings.init_rate_per_address, seed ^ 0x5bd1e995u);
  half_open_per_shard_ = ShareOf(daemon_settings.half_open_limit, shard_count);
  settings.cookie_threshold = ShareOf(daemon_settings.cookie_threshold, shard_count);
  spi_allocator_ = std::make_unique<SpiAllocator>(deps_.spi_kernel, tags_);
  for (size_t i = 0; i < shard_count; ++i) {
    auto random = deps_.random_factory
                      ? deps_.random_factory()
                      : std::make_unique<ike::crypto::DrbgRandomSource>();
    auto shard = std::make_unique<Shard>(i, std::move(random));
    ike::sa::EngineSettings shard_settings = router_->SettingsFor(i, settings);
    shard_settings.reqids = ShardReqids(tags_, i, shard_count);
    shard->manager = std::make_unique<ike::sa::SaManager>(
        shard_settings, snapshot_, credentials, *shard->random, *spi_allocator_);
    shards_.push_back(std::move(shard));
  }
  kernel_state_ = std::make_unique<KernelState>(*deps_.kernel.xfrm,
                                                *deps_.kernel.mutex, tags_);
  if (!deps_.load_config) {
    deps_.load_config = [](const std::string& path,
                           std::vector<std::string>& errors) {
      auto result = btnsd::config::LoadConfigFile(path);
      for (const auto& error : result.errors) errors.push_back(error.ToString());
      return result.snapshot;
    };
  }
}

Daemon::~Daemon() {
  StopShardThreads();
  if (kernel_thread_running_) {
    kernel_work_.reset();
    kernel_io_.stop();
    kernel_thread_.join();
  }
}

ike::sa::Instant Daemon::Now() const {
  return ike::sa::Instant(std::chrono::duration_cast<ike::sa::Duration>(
      std::chrono::steady_clock::now().time_since_epoch()));
}

ike::policy::PolicySnapshotPtr Daemon::snapshot() const {
  std::lock_guard lock(snapshot_mutex_);
  return snapshot_;
}

ike::sa::SaManager& Daemon::manager(size_t shard) { return *shards_.at(shard)->manager; }

DaemonCounters Daemon::counters() const {
  DaemonCounters out;
  auto add = [&out](const AtomicCounters& c) {
    out.datagrams_received += c.datagrams_received;
    out.datagrams_dropped += c.datagrams_dropped;
    out.datagrams_sent += c.datagrams_sent;
    out.send_errors += c.send_errors;
    out.kernel_jobs += c.kernel_jobs;
    out.reloads += c.reloads;
    out.reloads_rejected += c.reloads_rejected;
    out.init_rate_limited += c.init_rate_limited;
    out.init_half_open_full += c.init_half_open_full;
    out.shard_queue_full += c.shard_queue_full;
  };
  add(*counters_);
  for (const auto& shard : shards_) add(shard->counters);
  return out;
}

EngineTotals Daemon::engine_totals() const {
  EngineTotals out;
  for (const auto& shard : shards_) {
    out.ike_sas += shard->ike_sas;
    out.half_open += shard->half_open;
  }
  return out;
}

bool Daemon::Start() {
  const auto snapshot = this->snapshot();
  // Whatever an earlier run left behind is stale: its IKE SAs died with it.
  if (!kernel_state_->FlushOwned()) return false;
  if (!OpenSockets()) return false;
  const size_t trap_failures = kernel_state_->SyncTraps(*snapshot);
  if (trap_failures != 0)
    BTNSD_LOG(Level::kWarning, "traps-incomplete", {"failed", trap_failures});
  WatchKernelEvents();
  kernel_work_.emplace(kernel_io_.get_executor());
  kernel_thread_ = std::thread([this] { kernel_io_.run(); });
  kernel_thread_running_ = true;
  for (auto& shard_ptr : shards_) {
    Shard& shard = *shard_ptr;
    shard.work.emplace(shard.io.get_executor());
    shard.thread = std::thread([&shard] {
      current_shard = &shard;
      shard.io.run();
      current_shard = nullptr;
    });
  }
  shard_threads_running_ = true;
  for (const auto& entry : snapshot->spd.entries()) {
    if (entry.action == ike::policy::SpdAction::kProtect &&
        entry.protect.start == ike::policy::StartAction::kStart) {
      BTNSD_LOG(Level::kInfo, "initiate", {"spd", entry.name}, {"why", "start"});
      Dispatch(ike::sa::InitiateRequest{entry.name, std::nullopt, std::nullopt,
                                        std::nullopt});
    }
  }
  BTNSD_LOG(Level::kInfo, "started", {"config", config_path_},
            {"sockets", sockets_.size()}, {"threads", shards_.size()},
            {"pad", snapshot->pad.entries().size()},
            {"spd", snapshot->spd.entries().size()});
  return true;
}

bool Daemon::OpenSockets() {
  for (const auto& listen : snapshot_->daemon.listen) {
    auto socket = std::make_unique<IkeSocket>(io_);
    socket->address = listen.address;
    socket->nat_port = listen.port == snapshot_->daemon.nat_port;
    const auto address = ToAsio(listen.address);
    const asio::ip::udp::endpoint endpoint(*address, listen.port);
    const std::string where = EndpointText({listen.address, listen.port});
    boost::system::error_code error;
    socket->socket.open(endpoint.protocol(), error);
    if (error) {
      // A host without IPv6 still runs on IPv4 when listening on "any".
      const bool optional = listen.address.value == 0 &&
                            listen.address.family == IpFamily::kV6;
      BTNSD_LOG(optional ? Level::kWarning : Level::kError, "socket-open-failed",
                {"address", where}, {"error", error.message()});
      if (optional) continue;
      return false;
    }
    const int fd = socket->socket.native_handle();
    const int one = 1;
    if (listen.address.family == IpFamily::kV6) {
      setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
      setsockopt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &one, sizeof one);
    } else {
      setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &one, sizeof one);
    }
    socket->socket.set_option(asio::socket_base::reuse_address(true), error);
    socket->socket.bind(endpoint, error);
    if (error) {
      BTNSD_LOG(Level::kError, "socket-bind-failed", {"address", where},
                {"error", error.message()});
      return false;
    }
    socket->port = socket->socket.local_endpoint().port();
    {
      // IKE itself must never be caught by our (or anyone's) policies.
      std::lock_guard lock(*deps_.kernel.mutex);
      auto status = deps_.kernel.xfrm->SetSocketBypass(fd);
      if (!status.ok()) {
        BTNSD_LOG(Level::kError, "socket-bypass-failed", {"address", where},
                  {"error", status.error().ToString()});
        return false;
      }
      if (socket->nat_port) {
        status = deps_.kernel.xfrm->EnableUdpEncap(fd);
        if (!status.ok()) {
          BTNSD_LOG(Level::kError, "socket-udp-encap-failed", {"address", where},
                    {"error", status.error().ToString()});
          return false;
        }
      }
    }
    socket->socket.non_blocking(true, error);
    BTNSD_LOG(Level::kInfo, "listening", {"address", where},
              {"nat_t", socket->nat_port ? "yes" : "no"});
    sockets_.push_back(std::move(socket));
  }
  if (sockets_.empty()) {
    BTNSD_LOG(Level::kError, "no-sockets", {"why", "no listen address could be opened"});
    return false;
  }
  for (auto& socket : sockets_) ArmReceive(*socket);
  return true;
}

std::vector<ike::sa::Endpoint> Daemon::bound_endpoints() const {
  std::vector<ike::sa::Endpoint> out;
  for (const auto& socket : sockets_) out.push_back({socket->address, socket->port});
  return out;
}

std::vector<int> Daemon::socket_fds() const {
  std::vector<int> out;
  for (const auto& socket : sockets_) out.push_back(socket->socket.native_handle());
  return out;
}

void Daemon::ArmReceive(IkeSocket& socket) {
  socket.socket.async_wait(asio::socket_base::wait_read,
                           [this, &socket](const boost::system::error_code& error) {
                             if (error || stopping_) return;
                             ReceiveReady(socket);
                             ArmReceive(socket);
                           });
}

void Daemon::ReceiveReady(IkeSocket& socket) {
  const int fd = socket.socket.native_handle();
  for (int burst = 0; burst < kReceiveBurst; ++burst) {
    sockaddr_storage peer{};
    iovec iov{receive_buffer_.data(), receive_buffer_.size()};
    alignas(cmsghdr) uint8_t control[256];
    msghdr message{};
    message.msg_name = &peer;
    message.msg_namelen = sizeof peer;
    message.msg_iov = &iov;
    message.msg_iovlen = 1;
    message.msg_control = control;
    message.msg_controllen = sizeof control;
    const ssize_t length = recvmsg(fd, &message, MSG_DONTWAIT);
    if (length < 0) return;  // EAGAIN: drained; errors: retry on next wake-up
    ++counters_->datagrams_received;
    auto remote = FromSockaddr(peer);
    if (!remote || (message.msg_flags & MSG_TRUNC) != 0) {
      ++counters_->datagrams_dropped;
      continue;
    }
    ike::sa::Endpoint local{socket.address, socket.port};
    for (cmsghdr* c = CMSG_FIRSTHDR(&message); c != nullptr;
         c = CMSG_NXTHDR(&message, c)) {
      if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) {
        in_pktinfo info;
        std::memcpy(&info, CMSG_DATA(c), sizeof info);
        if (auto a = IpAddress::FromBytes(
                reinterpret_cast<const uint8_t*>(&info.ipi_addr), 4))
          local.address = *a;
      } else if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO) {
        in6_pktinfo info;
        std::memcpy(&info, CMSG_DATA(c), sizeof info);
        if (auto a = IpAddress::FromBytes(info.ipi6_addr.s6_addr, 16))
          local.address = *a;
      }
    }
    const uint8_t* data = receive_buffer_.data();
    size_t size = static_cast<size_t>(length);
    if (socket.nat_port) {
      // RFC 3948: IKE on the NAT port starts with four zero octets; the
      // kernel consumes ESP and keepalives, anything else is not for us.
      if (size < 4 || data[0] != 0 || data[1] != 0 || data[2] != 0 || data[3] != 0) {
        ++counters_->datagrams_dropped;
        continue;
      }
      data += 4;
      size -= 4;
    }
    BTNSD_LOG(Level::kTrace, "datagram-received", {"local", EndpointText(local)},
              {"remote", EndpointText(*remote)}, {"bytes", size});
    const ShardRouter::DatagramRoute route =
        router_->OfDatagram(data, size, remote->address);
    Shard& shard = *shards_[route.shard];
    const bool init = route.by_peer && IsInitRequest(data, size);
    if (init && !AdmitInit(*remote, shard)) continue;
    RouteDatagram(ike::sa::DatagramReceived{local, *remote,
                                            std::vector<uint8_t>(data, data + size)},
                  shard, init);
  }
}

bool Daemon::AdmitInit(const ike::sa::Endpoint& remote, Shard& shard) {
  // The engine answers a retransmitted request from its cache, but a flood
  // of fresh ones would each cost a key exchange; these limits come first.
  if (shard.half_open + shard.inits_queued >= half_open_per_shard_) {
    ++counters_->init_half_open_full;
    return false;
  }
  if (!init_limiter_->Admit(remote.address, Now())) {
    ++counters_->init_rate_limited;
    return false;
  }
  ++shard.inits_queued;  // until RouteDatagram's dispatch or drop
  return true;
}

void Daemon::RouteDatagram(ike::sa::DatagramReceived event, Shard& shard,
                           bool admitted_init) {
  if (!shard_threads_running_) {
    DispatchOn(shard, event);
    if (admitted_init) --shard.inits_queued;
    return;
  }
  if (shard.queued_datagrams >= kMaxQueuedDatagrams) {
    ++counters_->shard_queue_full;
    if (admitted_init) --shard.inits_queued;
    return;
  }
  ++shard.queued_datagrams;
  asio::post(shard.io, [this, &shard, admitted_init, event = std::move(event)] {
    --shard.queued_datagrams;
    if (!stopping_) DispatchOn(shard, event);  // updates shard.half_open
    if (admitted_init) --shard.inits_queued;
  });
}

void Daemon::Dispatch(const ike::sa::Event& event) {
  size_t index = 0;
  if (shards_.size() > 1) {
    // Kernel events name an ESP SA; only the kernel thread knows which
    // shard installed it.
    std::optional<std::pair<IpAddress, uint32_t>> kernel_sa;
    if (auto* expire = std::get_if<ike::sa::KernelExpire>(&event))
      kernel_sa.emplace(expire->destination, expire->spi);
    if (auto* mapping = std::get_if<ike::sa::KernelMapping>(&event))
      kernel_sa.emplace(mapping->destination, mapping->spi);
    if (kernel_sa) {
      if (!kernel_thread_running_ || !shard_threads_running_) {
        // Not running: every engine looks (the others ignore the SPI).
        for (auto& shard : shards_) DispatchOn(*shard, event);
        return;
      }
      asio::post(kernel_io_, [this, sa = *kernel_sa, event] {
        auto owner = sa_shards_.Find(sa.first, sa.second);
        for (auto& shard : shards_) {
          if (owner && *owner != shard->index) continue;
          PostToShard(shard->index, [this, s = shard.get(), event] { DispatchOn(*s, event); });
        }
      });
      return;
    }
    index = router_->OfEvent(event, *snapshot()).value_or(0);
  }
  Shard& shard = *shards_[index];
  if (!shard_threads_running_ || current_shard == &shard) {
    DispatchOn(shard, event);
    return;
  }
  asio::post(shard.io, [this, &shard, event] { DispatchOn(shard, event); });
}

void Daemon::PostToShard(size_t index, std::function<void()> task) {
  asio::post(shards_.at(index)->io, std::move(task));
}

void Daemon::VisitShards(
    const std::function<void(size_t, ike::sa::SaManager&)>& visit) {
  for (auto& shard_ptr : shards_) {
    Shard& shard = *shard_ptr;
    if (!shard_threads_running_ || current_shard == &shard) {
      visit(shard.index, *shard.manager);
      continue;
    }
    std::promise<void> done;
    asio::post(shard.io, [&] {
      visit(shard.index, *shard.manager);
      done.set_value();
    });
    done.get_future().wait();
  }
}

std::vector<ike::sa::IkeSaView> Daemon::ListIkeSas() {
  std::vector<ike::sa::IkeSaView> out;
  VisitShards([&out](size_t, ike::sa::SaManager& manager) {
    for (auto& view : manager.List()) out.push_back(std::move(view));
  });
  return out;
}

size_t Daemon::ChildSaCount() {
  size_t count = 0;
  VisitShards([&count](size_t, ike::sa::SaManager& manager) {
    count += manager.child_sa_count();
  });
  return count;
}

void Daemon::DispatchOn(Shard& shard, const ike::sa::Event& event) {
  ike::sa::Actions actions;
  try {
    shard.manager->Handle(event, Now(), actions);
  } catch (const std::exception& error) {
    // The engine promises not to throw; if it does, one event is lost, not
    // the daemon.
    BTNSD_LOG(Level::kError, "engine-exception", {"error", error.what()});
  }
  shard.half_open = shard.manager->half_open_count();
  shard.ike_sas = shard.manager->ike_sa_count();
  Execute(shard, actions);
}

void Daemon::Execute(Shard& shard, ike::sa::Actions& actions) {
  // Reqids need no translation between shards: each engine numbers its
  // CHILD_SAs in its own slice of the owned band (ShardReqids).
  for (auto& action : actions) {
    if (deps_.action_observer) deps_.action_observer(action);
    if (auto* send = std::get_if<ike::sa::SendDatagram>(&action)) {
      if (shard.in_flight == 0 || !kernel_thread_running_) {
        SendNow(shard, *send);
      } else {
        // Behind kernel work of an earlier action: keep the order.
        ++shard.in_flight;
        KernelJob(shard, [this, &shard, datagram = std::move(*send)]() mutable {
          asio::post(shard.io, [this, &shard, datagram = std::move(datagram)] {
            --shard.in_flight;
            SendNow(shard, datagram);
          });
        });
      }
    } else if (auto* arm = std::get_if<ike::sa::ArmTimer>(&action)) {
      ArmTimer(shard, *arm);
    } else if (auto* cancel = std::get_if<ike::sa::CancelTimer>(&action)) {
      CancelTimer(shard, cancel->timer);
    } else if (auto* install = std::get_if<ike::sa::InstallChildSa>(&action)) {
      ++shard.counters.kernel_jobs;
      KernelJob(shard, [this, index = shard.index, sa = std::move(*install)] {
        sa_shards_.Installed(sa.destination, sa.spi, index);
        kernel_state_->InstallSa(sa);
      });
    } else if (auto* remove = std::get_if<ike::sa::DeleteChildSa>(&action)) {
      ++shard.counters.kernel_jobs;
      KernelJob(shard, [this, sa = *remove] {
        sa_shards_.Deleted(sa.destination, sa.spi);
        kernel_state_->DeleteSa(sa);
      });
    } else if (auto* policy = std::get_if<ike::sa::InstallPolicy>(&action)) {
      ++shard.counters.kernel_jobs;
      KernelJob(shard, [this, p = *policy] { kernel_state_->InstallPolicy(p); });
    } else if (auto* encap = std::get_if<ike::sa::UpdateChildSaEncapsulation>(&action)) {
      ++shard.counters.kernel_jobs;
      KernelJob(shard, [this, u = *encap] { kernel_state_->UpdateEncapsulation(u); });
    } else if (auto* move = std::get_if<ike::sa::MoveChildSa>(&action)) {
      ++shard.counters.kernel_jobs;
      KernelJob(shard, [this, index = shard.index, m = std::move(*move)] {
        sa_shards_.Installed(m.destination, m.spi, index);
        kernel_state_->MoveSa(m);
      });
    } else if (auto* unpolicy = std::get_if<ike::sa::RemovePolicy>(&action)) {
      ++shard.counters.kernel_jobs;
      KernelJob(shard, [this, p = *unpolicy] { kernel_state_->RemovePolicy(p); });
    } else {
      LogAction(action);
    }
  }
}

void Daemon::KernelJob(Shard& shard, std::function<void()> job) {
  if (!kernel_thread_running_) {
    job();
    return;
  }
  ++shard.in_flight;
  asio::post(kernel_io_, [this, &shard, job = std::move(job)] {
    job();
    asio::post(shard.io, [&shard] { --shard.in_flight; });
  });
}

void Daemon::SendNow(Shard& shard, const ike::sa::SendDatagram& datagram) {
  // The socket bound to the local port and family, preferring an exact
  // address; a wildcard socket sends with the source address set.
  IkeSocket* chosen = nullptr;
  for (auto& socket : sockets_) {
    if (socket->port != datagram.local.port ||
        socket->address.family != datagram.remote.address.family)
      continue;
    if (socket->address == datagram.local.address) {
      chosen = socket.get();
      break;
    }
    if (socket->address.value == 0 && chosen == nullptr) chosen = socket.get();
  }
  if (chosen == nullptr) {
    ++shard.counters.send_errors;
    BTNSD_LOG(Level::kError, "send-failed", {"local", EndpointText(datagram.local)},
              {"remote", EndpointText(datagram.remote)},
              {"error", "no socket bound to this local address and port"});
    return;
  }
  std::vector<uint8_t> marked;
  const std::vector<uint8_t>* bytes = &datagram.bytes;
  // The marker belongs to the NAT-T port (RFC 3948), so the socket decides.
  // The engine's own flag assumes the standard ports 500/4500 and would be
  // wrong with configured ike_port/nat_port.
  if (chosen->nat_port) {
    marked.assign(4, 0);
    marked.insert(marked.end(), datagram.bytes.begin(), datagram.bytes.end());
    bytes = &marked;
  }
  sockaddr_storage peer{};
  socklen_t peer_length = 0;
  const std::vector<uint8_t> remote_bytes = datagram.remote.address.ToBytes();
  alignas(cmsghdr) uint8_t control[64] = {};
  msghdr message{};
  iovec iov{const_cast<uint8_t*>(bytes->data()), bytes->size()};
  message.msg_iov = &iov;
  message.msg_iovlen = 1;
  const bool set_source =
      chosen->address.value == 0 && datagram.local.address.value != 0 &&
      datagram.local.address.family == datagram.remote.address.family;
  const std::vector<uint8_t> local_bytes = datagram.local.address.ToBytes();
  if (datagram.remote.address.family == IpFamily::kV4) {
    auto* in = reinterpret_cast<sockaddr_in*>(&peer);
    in->sin_family = AF_INET;
    in->sin_port = htons(datagram.remote.port);
    std::memcpy(&in->sin_addr, remote_bytes.data(), 4);
    peer_length = sizeof *in;
    if (set_source) {
      message.msg_control = control;
      message.msg_controllen = CMSG_SPACE(sizeof(in_pktinfo));
      cmsghdr* c = CMSG_FIRSTHDR(&message);
      c->cmsg_level = IPPROTO_IP;
      c->cmsg_type = IP_PKTINFO;
      c->cmsg_len = CMSG_LEN(sizeof(in_pktinfo));
      in_pktinfo info{};
      std::memcpy(&info.ipi_spec_dst, local_bytes.data(), 4);
      std::memcpy(CMSG_DATA(c), &info, sizeof info);
    }
  } else {
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&peer);
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(datagram.remote.port);
    std::memcpy(in6->sin6_addr.s6_addr, remote_bytes.data(), 16);
    peer_length = sizeof *in6;
    if (set_source) {
      message.msg_control = control;
      message.msg_controllen = CMSG_SPACE(sizeof(in6_pktinfo));
      cmsghdr* c = CMSG_FIRSTHDR(&message);
      c->cmsg_level = IPPROTO_IPV6;
      c->cmsg_type = IPV6_PKTINFO;
      c->cmsg_len = CMSG_LEN(sizeof(in6_pktinfo));
      in6_pktinfo info{};
      std::memcpy(info.ipi6_addr.s6_addr, local_bytes.data(), 16);
      std::memcpy(CMSG_DATA(c), &info, sizeof info);
    }
  }
  message.msg_name = &peer;
  message.msg_namelen = peer_length;
  if (sendmsg(chosen->socket.native_handle(), &message, MSG_DONTWAIT) < 0) {
    ++shard.counters.send_errors;
    BTNSD_LOG(Level::kWarning, "send-failed", {"local", EndpointText(datagram.local)},
              {"remote", EndpointText(datagram.remote)},
              {"error", std::strerror(errno)});
    return;
  }
  ++shard.counters.datagrams_sent;
  BTNSD_LOG(Level::kTrace, "datagram-sent", {"local", EndpointText(datagram.local)},
            {"remote", EndpointText(datagram.remote)}, {"bytes", bytes->size()});
}

void Daemon::ArmTimer(Shard& shard, const ike::sa::ArmTimer& arm) {
  auto& timer = shard.timers[arm.timer];
  if (!timer) timer = std::make_unique<asio::steady_timer>(shard.io);
  timer->expires_after(arm.delay);
  const ike::sa::TimerId id = arm.timer;
  timer->async_wait([this, &shard, id](const boost::system::error_code& error) {
    if (error || stopping_) return;  // cancelled or re-armed
    shard.timers.erase(id);
    DispatchOn(shard, ike::sa::TimerFired{id});
  });
}

void Daemon::CancelTimer(Shard& shard, ike::sa::TimerId id) {
  auto it = shard.timers.find(id);
  if (it == shard.timers.end()) return;
  it->second->cancel();
  shard.timers.erase(it);
}

void Daemon::LogAction(const ike::sa::Action& action) {
  using namespace ike::sa;
  if (auto* log = std::get_if<Log>(&action)) {
    if (log->reason != FailureReason::kNone) {
      BTNSD_LOG(ToLevel(log->level), "engine", {"ike_sa", log->ike_sa},
                {"reason", std::string(FailureReasonName(log->reason))},
                {"msg", log->text});
    } else {
      BTNSD_LOG(ToLevel(log->level), "engine", {"ike_sa", log->ike_sa},
                {"msg", log->text});
    }
  } else if (auto* up = std::get_if<IkeSaUp>(&action)) {
    BTNSD_LOG(Level::kInfo, "ike-sa-up", {"ike_sa", up->ike_sa},
              {"local", EndpointText(up->local)}, {"remote", EndpointText(up->remote)},
              {"initiator", up->initiator ? "yes" : "no"},
              {"peer_id", up->peer.asserted_id.ToString()},
              {"pad", up->peer.pad_entry},
              {"authenticated", up->peer.authenticated ? "yes" : "no"},
              // The key the peer signed with (raw key or certificate), so an
              // operator can match it against a pinned fingerprint.
              {"peer_key", up->peer.spki_sha256
                               ? ike::policy::FingerprintToString(*up->peer.spki_sha256)
                               : std::string("none")});
  } else if (auto* child = std::get_if<ChildSaUp>(&action)) {
    char spis[40];
    std::snprintf(spis, sizeof spis, "%08x/%08x", child->inbound_spi,
                  child->outbound_spi);
    BTNSD_LOG(Level::kInfo, "child-sa-up", {"ike_sa", child->ike_sa},
              {"child_sa", child->child_sa}, {"replaces", child->replaces},
              {"spd", child->spd_entry}, {"spi_in_out", spis},
              {"mode", std::string(ike::policy::IpsecModeName(child->mode))},
              // The KE group behind the keys (PFS), "none" without one.
              {"pfs", ike::policy::AlgorithmToString(
                          ike::wire::TransformType::kKe,
                          static_cast<uint16_t>(child->pfs_group))});
  } else if (auto* down = std::get_if<IkeSaDown>(&action)) {
    BTNSD_LOG(Level::kInfo, "ike-sa-down", {"ike_sa", down->ike_sa},
              {"reason", std::string(FailureReasonName(down->reason))});
  } else if (auto* child_down = std::get_if<ChildSaDown>(&action)) {
    BTNSD_LOG(Level::kInfo, "child-sa-down", {"ike_sa", child_down->ike_sa},
              {"child_sa", child_down->child_sa},
              {"reason", std::string(FailureReasonName(child_down->reason))});
  }
}

void Daemon::WatchKernelEvents() {
  const int fd = deps_.kernel.xfrm->event_fd();
  if (fd < 0) return;
  // A copy, so the descriptor object may close it without closing the
  // kernel_glue socket.
  const int copy = dup(fd);
  if (copy < 0) return;
  kernel_events_ = std::make_unique<asio::posix::stream_descriptor>(kernel_io_, copy);
  ArmKernelEvents();
}

void Daemon::ArmKernelEvents() {
  kernel_events_->async_wait(asio::posix::stream_descriptor::wait_read,
                             [this](const boost::system::error_code& error) {
                               if (error || stopping_) return;
                               KernelEventsReady();
                               ArmKernelEvents();
                             });
}

void Daemon::KernelEventsReady() {
  kernel_glue::Result<std::vector<kernel_glue::KernelEvent>> events =
      std::vector<kernel_glue::KernelEvent>{};
  {
    std::lock_guard lock(*deps_.kernel.mutex);
    events = deps_.kernel.xfrm->ProcessEvents();
  }
  if (!events.ok()) {
    BTNSD_LOG(Level::kWarning, "kernel-events-failed",
              {"error", events.error().ToString()});
    return;
  }
  const auto snapshot = this->snapshot();
  const uint16_t ike_port = snapshot->daemon.ike_port;
  for (const auto& event : events.value()) {
    if (auto* acquire = std::get_if<kernel_glue::AcquireEvent>(&event)) {
      if (deps_.acquire_observer && deps_.acquire_observer(*acquire)) {
        BTNSD_LOG(Level::kInfo, "kernel-acquire-api",
                  {"selector", acquire->selector.ToString()},
                  {"reqid", static_cast<uint64_t>(acquire->templ.reqid)});
        continue;
      }
      auto converted = FromKernelAcquire(*acquire, ike_port);
      if (!converted) continue;
      // A socket's ACQUIRE the API left to the engine still initiates for
      // a start: none entry; a holding policy's does not.
      converted->from_socket = IsSocketWaitingReqid(acquire->templ.reqid, tags_);
      BTNSD_LOG(Level::kInfo, "kernel-acquire", {"selector", acquire->selector.ToString()});
      const size_t owner = router_->OfEvent(*converted, *snapshot).value_or(0);
      PostToShard(owner, [this, owner, e = *converted] { DispatchOn(*shards_[owner], e); });
    } else if (auto* expire = std::get_if<kernel_glue::ExpireEvent>(&event)) {
      auto converted = FromKernelExpire(*expire);
      if (!converted) continue;
      BTNSD_LOG(Level::kInfo, "kernel-expire", {"sa", expire->id.ToString()},
                {"hard", expire->hard ? "yes" : "no"});
      auto owner = sa_shards_.Find(converted->destination, converted->spi);
      for (auto& shard : shards_) {
        if (owner && *owner != shard->index) continue;
        PostToShard(shard->index,
                    [this, s = shard.get(), e = *converted] { DispatchOn(*s, e); });
      }
    } else if (auto* mapping = std::get_if<kernel_glue::MappingEvent>(&event)) {
      auto destination = FromKernel(mapping->id.dst);
      auto source = FromKernel(mapping->new_src);
      if (!destination || !source) continue;
      BTNSD_LOG(Level::kInfo, "kernel-mapping", {"sa", mapping->id.ToString()},
                {"new_src", mapping->new_src.ToString()},
                {"new_sport", mapping->new_src_port});
      ike::sa::KernelMapping e{*destination, mapping->id.spi,
                               ike::sa::Endpoint{*source, mapping->new_src_port}};
      // The inbound SA names the shard that installed it.
      auto owner = sa_shards_.Find(e.destination, e.spi);
      for (auto& shard : shards_) {
        if (owner && *owner != shard->index) continue;
        PostToShard(shard->index, [this, s = shard.get(), e] { DispatchOn(*s, e); });
      }
    } else if (auto* resync = std::get_if<kernel_glue::ResyncNeeded>(&event)) {
      BTNSD_LOG(Level::kWarning, "kernel-events-lost", {"error", resync->cause.ToString()});
    }
  }
}

void Daemon::Post(std::function<void()> task) { asio::post(io_, std::move(task)); }

void Daemon::Stop() {
  asio::post(io_, [this] {
    if (stopping_.exchange(true)) return;
    io_.stop();
  });
}

void Daemon::HandleSignals() {
  signals_ = std::make_unique<asio::signal_set>(io_, SIGTERM, SIGINT, SIGHUP);
  signals_->async_wait([this](const boost::system::error_code& error, int signal) {
    if (error) return;
    if (signal == SIGHUP) {
      BTNSD_LOG(Level::kInfo, "reload-requested", {"signal", "SIGHUP"});
      // systemd keeps the unit "reloading" until READY=1, so
      // `systemctl reload` returns once the new policy is in force (or
      // was rejected).
      timespec now{};
      clock_gettime(CLOCK_MONOTONIC, &now);
      NotifySystemd("RELOADING=1\nMONOTONIC_USEC=" +
                    std::to_string(uint64_t(now.tv_sec) * 1000000 +
                                   uint64_t(now.tv_nsec) / 1000));
      Reload();
      NotifySystemd("READY=1");
      HandleSignals();
      return;
    }
    BTNSD_LOG(Level::kInfo, "stop-requested",
              {"signal", signal == SIGTERM ? "SIGTERM" : "SIGINT"});
    NotifySystemd("STOPPING=1");
    Stop();
  });
}

bool Daemon::Reload() {
  std::vector<std::string> errors;
  auto next = deps_.load_config(config_path_, errors);
  if (!next) {
    ++counters_->reloads_rejected;
    for (const auto& error : errors)
      BTNSD_LOG(Level::kError, "config-error", {"error", error});
    BTNSD_LOG(Level::kError, "reload-rejected", {"config", config_path_},
              {"errors", errors.size()}, {"why", "running configuration kept"});
    return false;
  }
  CredentialLoad credentials = LoadCredentials(*next);
  if (!credentials.ok()) {
    ++counters_->reloads_rejected;
    for (const auto& error : credentials.errors)
      BTNSD_LOG(Level::kError, "credential-error", {"error", error});
    BTNSD_LOG(Level::kError, "reload-rejected", {"config", config_path_},
              {"why", "running configuration kept"});
    return false;
  }
  const auto previous = snapshot();
  const ike::policy::SnapshotDiff diff = ike::policy::Diff(*previous, *next);
  if (next->daemon != previous->daemon)
    BTNSD_LOG(Level::kWarning, "reload-daemon-settings",
              {"why", "listen addresses, ports, threads, limits and ownership "
                      "apply after a restart"});
  {
    std::lock_guard lock(snapshot_mutex_);
    snapshot_ = next;
  }
  if (kernel_thread_running_) {
    asio::post(kernel_io_, [this, next] { kernel_state_->SyncTraps(*next); });
  } else {
    kernel_state_->SyncTraps(*next);
  }
  auto shared_credentials =
      std::make_shared<const ike::sa::CredentialStore>(std::move(credentials.store));
  for (auto& shard_ptr : shards_) {
    Shard& shard = *shard_ptr;
    if (!shard_threads_running_ || current_shard == &shard) {
      ApplyReload(shard, next, *shared_credentials, diff);
    } else {
      asio::post(shard.io, [this, &shard, next, shared_credentials, diff] {
        ApplyReload(shard, next, *shared_credentials, diff);
      });
    }
  }
  ++counters_->reloads;
  if (deps_.credentials_observer) deps_.credentials_observer(shared_credentials);
  if (deps_.reload_observer) deps_.reload_observer(next);
  BTNSD_LOG(Level::kInfo, "reloaded", {"config", config_path_},
            {"spd_added", diff.spd.added.size()},
            {"spd_removed", diff.spd.removed.size()},
            {"spd_changed", diff.spd.changed.size()},
            {"pad_changed", diff.pad.added.size() + diff.pad.removed.size() +
                                diff.pad.changed.size()});
  return true;
}

void Daemon::ApplyReload(Shard& shard, const ike::policy::PolicySnapshotPtr& next,
                         const ike::sa::CredentialStore& credentials,
                         const ike::policy::SnapshotDiff& diff) {
  ike::sa::SaManager& manager = *shard.manager;
  manager.UpdatePolicy(next);
  manager.UpdateCredentials(credentials);
  // CHILD_SAs of removed SPD entries go; changed ones are rekeyed under the
  // new policy (the old SA keeps carrying traffic until the new one is up).
  auto contains = [](const std::vector<std::string>& names, const std::string& n) {
    return std::find(names.begin(), names.end(), n) != names.end();
  };
  for (const auto& ike_sa : manager.List()) {
    for (const auto& child : ike_sa.children) {
      if (contains(diff.spd.removed, child.spd_entry)) {
        DispatchOn(shard, ike::sa::DeleteRequest{ike_sa.handle, child.handle});
      } else if (contains(diff.spd.changed, child.spd_entry)) {
        DispatchOn(shard, ike::sa::RekeyRequest{0, child.handle});
      }
    }
  }
  // New or changed start entries, each by the shard that owns its peer
  // (which alone can tell whether it is running already).
  for (const auto& entry : next->spd.entries()) {
    const bool starts = entry.action == ike::policy::SpdAction::kProtect &&
                        entry.protect.start == ike::policy::StartAction::kStart;
    if (!starts || !(contains(diff.spd.added, entry.name) ||
                     contains(diff.spd.changed, entry.name)))
      continue;
    const ike::sa::InitiateRequest request{entry.name, std::nullopt, std::nullopt,
                                           std::nullopt};
    if (router_->OfEvent(request, *next).value_or(0) != shard.index) continue;
    bool running = false;
    for (const auto& ike_sa : manager.List())
      for (const auto& child : ike_sa.children)
        running = running || child.spd_entry == entry.name;
    if (!running) DispatchOn(shard, request);
  }
}

void Daemon::Run() {
  io_.run();
  Shutdown();
}

void Daemon::StopShardThreads() {
  if (!shard_threads_running_) return;
  for (auto& shard : shards_) {
    shard->work.reset();
    shard->io.stop();
  }
  for (auto& shard : shards_)
    if (shard->thread.joinable()) shard->thread.join();
  shard_threads_running_ = false;
}

void Daemon::Shutdown() {
  stopping_ = true;
  StopShardThreads();
  // Let queued kernel work finish, then run what it handed back.
  if (kernel_thread_running_) {
    if (kernel_events_) {
      asio::post(kernel_io_, [this] { kernel_events_.reset(); });
    }
    kernel_work_.reset();
    kernel_thread_.join();
    kernel_thread_running_ = false;
  }
  for (auto& shard : shards_) {
    shard->io.restart();
    shard->io.poll();
    shard->in_flight = 0;
  }
  // Tell the peers (best effort: no answers are awaited).
  for (auto& shard : shards_) {
    for (const auto& ike_sa : shard->manager->List())
      DispatchOn(*shard, ike::sa::DeleteRequest{ike_sa.handle, 0});
    for (auto& [id, timer] : shard->timers) timer->cancel();
    shard->timers.clear();
  }
  kernel_state_->FlushOwned();
  for (auto& socket : sockets_) {
    boost::system::error_code ignored;
    socket->socket.close(ignored);
  }
  const DaemonCounters totals = counters();
  BTNSD_LOG(Level::kInfo, "stopped", {"datagrams_in", totals.datagrams_received},
            {"datagrams_out", totals.datagrams_sent});
}

bool NotifySystemd(const std::string& state) {
  // A signal announces the stop at once, and the exit path again for stops
  // that came another way: the service manager hears it once.
  const char* path = std::getenv("NOTIFY_SOCKET");
  if (path == nullptr || path[0] == '\0') return false;
  static std::atomic<bool> stopping_sent{false};
  if (state == "STOPPING=1" && stopping_sent.exchange(true)) return true;
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  const size_t length = std::strlen(path);
  if (length >= sizeof address.sun_path) return false;
  std::memcpy(address.sun_path, path, length);
  if (path[0] == '@') address.sun_path[0] = '\0';  // abstract namespace
  const int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  const socklen_t address_length =
      static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + length);
  const ssize_t sent = sendto(fd, state.data(), state.size(), MSG_NOSIGNAL,
                              reinterpret_cast<sockaddr*>(&address), address_length);
  close(fd);
  return sent == static_cast<ssize_t>(state.size());
}

}  // namespace btnsd::daemon
