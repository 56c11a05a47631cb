// The daemon over real UDP sockets on loopback addresses, with the in-memory
// XFRM standing in for the kernel: start-up reconciliation, sockets, NAT-T
// framing, reload, shutdown, and two daemons negotiating a CHILD_SA.
#include "daemon/daemon.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <future>
#include <thread>

#include "config/loader.h"
#include "daemon/log.h"
#include "daemon/credentials.h"
#include "gtest/gtest.h"
#include "kernel_glue/xfrm_in_memory.h"

namespace btnsd::daemon {
namespace {

using namespace std::chrono_literals;

std::string TempDir() {
  const char* dir = std::getenv("TEST_TMPDIR");
  return dir != nullptr ? dir : "/tmp";
}

// Ports unlikely to collide with another test run on the same host.
uint16_t BasePort() { return static_cast<uint16_t>(20000 + (getpid() % 2000) * 4); }

std::string NullAuthConfig(const std::string& me, const std::string& peer,
                           uint16_t ike_port, uint16_t nat_port,
                           const std::string& extra_spd = "") {
  return "daemon:\n"
         "  listen: [" + me + "]\n"
         "  ike_port: " + std::to_string(ike_port) + "\n"
         "  nat_port: " + std::to_string(nat_port) + "\n"
         "  log_level: debug\n"
         "identities:\n"
         "  anonymous:\n"
         "    id: null\n"
         "pad:\n"
         "  - name: anyone\n"
         "    auth: btns\n"
         "    btns: {accept_null: true, accept_raw_key: false}\n"
         "spd:\n"
         "  - name: to-peer\n"
         "    local: " + me + "\n"
         "    remote: " + peer + "\n"
         "    action: protect\n"
         "    peer: anyone\n"
         "    unauthenticated_ok: true\n"
         "    start: none\n" + extra_spd;
}

std::string WriteFile(const std::string& name, const std::string& text) {
  const std::string path = TempDir() + "/" + name;
  std::ofstream(path) << text;
  return path;
}

// One daemon with its in-memory kernel, running on its own thread.
class Host {
 public:
  Host(const std::string& config_path)
      : xfrm_(Tags(config_path).ownership), random_(), config_path_(config_path) {
    auto loaded = config::LoadConfigFile(config_path);
    for (const auto& e : loaded.errors) ADD_FAILURE() << e.ToString();
    if (!loaded.ok()) return;
    DaemonDependencies deps;
    deps.kernel = {&xfrm_, &mutex_};
    deps.spi_kernel = {&xfrm_, &mutex_};
    deps.random = &random_;
    auto credentials = LoadCredentials(*loaded.snapshot);
    daemon_ = std::make_unique<Daemon>(config_path, loaded.snapshot,
                                       std::move(credentials.store), std::move(deps));
  }
  ~Host() { StopAndJoin(); }

  static KernelTags Tags(const std::string& path) {
    auto loaded = config::LoadConfigFile(path);
    return ToKernelTags(loaded.ok() ? loaded.snapshot->daemon.ownership
                                    : ike::policy::KernelOwnership{});
  }
  bool Start() {
    if (!daemon_ || !daemon_->Start()) return false;
    thread_ = std::thread([this] { daemon_->Run(); });
    return true;
  }
  void StopAndJoin() {
    if (thread_.joinable()) {
      daemon_->Stop();
      thread_.join();
    }
  }
  // Runs `f` on the protocol thread and waits for its result.
  template <typename F>
  auto OnLoop(F f) -> decltype(f()) {
    std::promise<decltype(f())> done;
    daemon_->Post([&] { done.set_value(f()); });
    return done.get_future().get();
  }
  size_t KernelSas() {
    std::lock_guard lock(mutex_);
    return xfrm_.sa_count();
  }
  size_t KernelPolicies() {
    std::lock_guard lock(mutex_);
    return xfrm_.policy_count();
  }

  kernel_glue::XfrmInMemory xfrm_;
  std::mutex mutex_;
  ike::crypto::SystemRandomSource random_;
  std::string config_path_;
  std::unique_ptr<Daemon> daemon_;
  std::thread thread_;
};

void SendUdp(const char* address, uint16_t port, const std::vector<uint8_t>& bytes) {
  const int fd = socket(AF_INET, SOCK_DGRAM, 0);
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(port);
  inet_pton(AF_INET, address, &to.sin_addr);
  sendto(fd, bytes.data(), bytes.size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof to);
  close(fd);
}

template <typename Predicate>
bool WaitFor(Predicate predicate, std::chrono::milliseconds limit = 10s) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (predicate()) return true;
    std::this_thread::sleep_for(20ms);
  }
  return predicate();
}

TEST(DaemonTest, StartFlushesStaleOwnedStateKeepsForeignAndPreparesSockets) {
  const uint16_t port = BasePort();
  Host host(WriteFile("start.yaml", NullAuthConfig("127.0.0.1", "127.0.0.2", port, port + 1)));
  ASSERT_NE(host.daemon_, nullptr);
  const KernelTags tags = Host::Tags(host.config_path_);
  kernel_glue::SaParams stale;
  stale.id.dst = *kernel_glue::IpAddress::Parse("127.0.0.2");
  stale.id.spi = 0x5151;
  stale.src = *kernel_glue::IpAddress::Parse("127.0.0.1");
  stale.reqid = tags.ownership.reqid_min + 3;
  stale.encryption_key.assign(20, 9);
  ASSERT_TRUE(host.xfrm_.AddSa(stale).ok());
  kernel_glue::SaParams foreign = stale;
  foreign.id.spi = 0x6161;
  foreign.reqid = 42;
  host.xfrm_.AddForeignSa(foreign);

  ASSERT_TRUE(host.Start());
  EXPECT_FALSE(host.xfrm_.HasSa(stale.id)) << "stale owned SA survived start-up";
  EXPECT_TRUE(host.xfrm_.HasSa(foreign.id)) << "foreign SA was touched";
  const auto fds = host.OnLoop([&] { return host.daemon_->socket_fds(); });
  const auto endpoints = host.OnLoop([&] { return host.daemon_->bound_endpoints(); });
  ASSERT_EQ(fds.size(), 2u);
  int encap = 0;
  for (size_t i = 0; i < fds.size(); ++i) {
    std::lock_guard lock(host.mutex_);
    EXPECT_FALSE(host.xfrm_.SocketPolicies(fds[i]).empty()) << "IKE socket without bypass";
    const bool is_nat = endpoints[i].port == port + 1;
    EXPECT_EQ(host.xfrm_.UdpEncapEnabled(fds[i]), is_nat);
    encap += is_nat ? 1 : 0;
  }
  EXPECT_EQ(encap, 1);
  host.StopAndJoin();
  EXPECT_FALSE(host.xfrm_.HasSa(stale.id));
  EXPECT_TRUE(host.xfrm_.HasSa(foreign.id)) << "shutdown flushed foreign state";
}

TEST(DaemonTest, NatPortDropsDatagramsWithoutTheNonEspMarker) {
  const uint16_t port = BasePort() + 2;
  Host host(WriteFile("nat.yaml", NullAuthConfig("127.0.0.1", "127.0.0.2", port, port + 1)));
  ASSERT_TRUE(host.Start());
  SendUdp("127.0.0.1", port + 1, {0xff});                    // keepalive
  SendUdp("127.0.0.1", port + 1, {0x00, 0x00, 0x12, 0x34, 1});  // ESP-looking
  SendUdp("127.0.0.1", port + 1, {0, 0, 0, 0, 1, 2, 3});     // marker + junk IKE
  SendUdp("127.0.0.1", port, {1, 2, 3});                     // junk IKE on 500
  EXPECT_TRUE(WaitFor([&] {
    return host.OnLoop([&] { return host.daemon_->counters().datagrams_received; }) >= 4;
  }));
  const DaemonCounters counters = host.OnLoop([&] { return host.daemon_->counters(); });
  EXPECT_EQ(counters.datagrams_received, 4u);
  EXPECT_EQ(counters.datagrams_dropped, 2u);
}

TEST(DaemonTest, ReloadRejectsABadConfigAndAppliesAGoodOne) {
  const uint16_t port = BasePort();
  const std::string good = NullAuthConfig("127.0.0.1", "127.0.0.2", port, port + 1);
  const std::string path = WriteFile("reload.yaml", good);
  Host host(path);
  ASSERT_TRUE(host.Start());
  const auto before = host.OnLoop([&] { return host.daemon_->snapshot(); });

  WriteFile("reload.yaml", good + "  - name: broken\n    action: sideways\n");
  EXPECT_FALSE(host.OnLoop([&] { return host.daemon_->Reload(); }));
  EXPECT_EQ(host.OnLoop([&] { return host.daemon_->snapshot(); }), before)
      << "a rejected reload replaced the policy";

  WriteFile("reload.yaml",
            good + "  - name: trapped\n    remote: 127.0.0.3\n    action: protect\n"
                   "    peer: anyone\n    unauthenticated_ok: true\n    start: trap\n");
  EXPECT_TRUE(host.OnLoop([&] { return host.daemon_->Reload(); }));
  const auto after = host.OnLoop([&] { return host.daemon_->snapshot(); });
  EXPECT_NE(after, before);
  ASSERT_NE(after->spd.Find("trapped"), nullptr);
  EXPECT_TRUE(WaitFor([&] { return host.KernelPolicies() == 1; }))
      << "the new trap policy was not installed";
  const DaemonCounters counters = host.OnLoop([&] { return host.daemon_->counters(); });
  EXPECT_EQ(counters.reloads, 1u);
  EXPECT_EQ(counters.reloads_rejected, 1u);
}

TEST(DaemonTest, TwoDaemonsNegotiateANullAuthChildSaOverUdp) {
  Logger::SetLevel(Level::kDebug);  // the exchange in the test log
  const uint16_t port = BasePort();
  Host left(WriteFile("left.yaml", NullAuthConfig("127.0.0.1", "127.0.0.2", port, port + 1)));
  Host right(WriteFile("right.yaml", NullAuthConfig("127.0.0.2", "127.0.0.1", port, port + 1)));
  ASSERT_TRUE(left.Start());
  ASSERT_TRUE(right.Start());
  left.OnLoop([&] {
    left.daemon_->Dispatch(ike::sa::InitiateRequest{
        "to-peer", ike::sa::Endpoint{*ike::policy::IpAddress::Parse("127.0.0.2"), port},
        ike::sa::Endpoint{*ike::policy::IpAddress::Parse("127.0.0.1"), port},
        std::nullopt});
    return 0;
  });
  EXPECT_TRUE(WaitFor([&] { return left.KernelSas() >= 2 && right.KernelSas() >= 2; }))
      << "left SAs " << left.KernelSas() << ", right SAs " << right.KernelSas();
  EXPECT_EQ(left.OnLoop([&] { return left.daemon_->manager().child_sa_count(); }), 1u);
  EXPECT_EQ(right.OnLoop([&] { return right.daemon_->manager().child_sa_count(); }), 1u);
  EXPECT_GE(left.KernelPolicies(), 2u) << "in and out policies";
  // A clean stop deletes everything the daemon installed.
  left.StopAndJoin();
  EXPECT_EQ(left.KernelSas(), 0u);
  EXPECT_EQ(left.KernelPolicies(), 0u);
}

}  // namespace
}  // namespace btnsd::daemon
