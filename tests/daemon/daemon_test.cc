// The daemon over real UDP sockets on loopback addresses, with the in-memory
// XFRM standing in for the kernel: start-up reconciliation, sockets, NAT-T
// framing, reload, shutdown, and two daemons negotiating a CHILD_SA.
#include "daemon/daemon.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <set>
#include <future>
#include <thread>
#include <vector>

#include "config/loader.h"
#include "daemon/kernel_translate.h"
#include "daemon/log.h"
#include "daemon/credentials.h"
#include "gtest/gtest.h"
#include "ike/wire/message.h"
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

// Two protocol threads unless told otherwise, so every test crosses shards.
std::string NullAuthConfig(const std::string& me, const std::string& peer,
                           uint16_t ike_port, uint16_t nat_port,
                           const std::string& extra_spd = "",
                           const std::string& extra_daemon = "  threads: 2\n") {
  return "daemon:\n"
         "  listen: [" + me + "]\n" + extra_daemon +
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
    deps.reload_observer = [this](const ike::policy::PolicySnapshotPtr& next) {
      reloaded_.push_back(next);
    };
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
  std::vector<ike::policy::PolicySnapshotPtr> reloaded_;  // front thread only
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
  EXPECT_EQ(host.KernelPolicies(), 2u)
      << "the start: none entry holds its outbound traffic back and refuses "
         "clear inbound traffic from the start";

  WriteFile("reload.yaml", good + "  - name: broken\n    action: sideways\n");
  EXPECT_FALSE(host.OnLoop([&] { return host.daemon_->Reload(); }));
  EXPECT_EQ(host.OnLoop([&] { return host.daemon_->snapshot(); }), before)
      << "a rejected reload replaced the policy";
  EXPECT_EQ(host.OnLoop([&] { return host.reloaded_.size(); }), 0u)
      << "a rejected reload was announced";

  WriteFile("reload.yaml",
            good + "  - name: trapped\n    remote: 127.0.0.3\n    action: protect\n"
                   "    peer: anyone\n    unauthenticated_ok: true\n    start: trap\n");
  EXPECT_TRUE(host.OnLoop([&] { return host.daemon_->Reload(); }));
  const auto after = host.OnLoop([&] { return host.daemon_->snapshot(); });
  EXPECT_NE(after, before);
  ASSERT_NE(after->spd.Find("trapped"), nullptr);
  const auto announced = host.OnLoop([&] { return host.reloaded_; });
  ASSERT_EQ(announced.size(), 1u) << "the new policy was not announced";
  EXPECT_EQ(announced[0], after);
  EXPECT_TRUE(WaitFor([&] { return host.KernelPolicies() == 4; }))
      << "the new entry's out and in holding policies were not installed";
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
  EXPECT_EQ(left.daemon_->shard_count(), 2u);
  EXPECT_EQ(left.daemon_->ChildSaCount(), 1u);
  EXPECT_EQ(right.daemon_->ChildSaCount(), 1u);
  EXPECT_TRUE(WaitFor([&] { return left.KernelPolicies() == 2; }))
      << "the CHILD_SA's in and out policies took the holding policies' slots: "
      << left.KernelPolicies();
  {
    // The SAs carry the first reqids of their shard's slice, below the
    // reserved top.
    KernelTags tags = Host::Tags(left.config_path_);
    tags.reqid_offset = left.daemon_->reqid_offset();
    std::lock_guard lock(left.mutex_);
    auto owned = left.xfrm_.ListOwned();
    ASSERT_TRUE(owned.ok());
    ASSERT_FALSE(owned.value().sas.empty());
    const size_t shards = left.daemon_->shard_count();
    for (const auto& sa : owned.value().sas) {
      bool in_a_slice = false;  // the engines' slices, each entered at the offset
      for (size_t shard = 0; shard < shards; ++shard) {
        const auto range = ShardReqids(tags, shard, shards);
        in_a_slice = in_a_slice || (sa.reqid >= range.first && sa.reqid <= range.last &&
                                    sa.reqid - range.start < 8);
      }
      EXPECT_TRUE(in_a_slice) << sa.reqid;
      EXPECT_LT(sa.reqid, tags.ownership.reqid_max - kTrapReqids - kWaitingReqids);
    }
  }
  // A clean stop deletes everything the daemon installed.
  left.StopAndJoin();
  EXPECT_EQ(left.KernelSas(), 0u);
  EXPECT_EQ(left.KernelPolicies(), 0u);
}

// One responder with two protocol shards and four initiators, two of them
// on each shard: every handshake completes (so each IKE_AUTH reached the
// shard that chose the SPI), the SPIs, handles and peer agree on the shard,
// and kernel events and requests reach the shard that owns the SA.
TEST(DaemonTest, ShardedResponderRoutesHandshakesEventsAndRequests) {
  const uint16_t port = BasePort() + 2;
  Host responder(WriteFile("sharded.yaml",
                           NullAuthConfig("127.0.0.1", "127.0.0.0/24", port, port + 1)));
  ASSERT_TRUE(responder.Start());
  ASSERT_EQ(responder.daemon_->shard_count(), 2u);
  // Two peer addresses per shard.
  std::vector<std::string> peers;
  size_t per_shard[2] = {0, 0};
  for (int i = 2; i < 100 && peers.size() < 4; ++i) {
    const std::string address = "127.0.0." + std::to_string(i);
    const size_t shard =
        responder.daemon_->ShardOfPeer(*ike::policy::IpAddress::Parse(address));
    if (per_shard[shard] == 2) continue;
    ++per_shard[shard];
    peers.push_back(address);
  }
  ASSERT_EQ(peers.size(), 4u);
  std::vector<std::unique_ptr<Host>> initiators;
  for (const auto& peer : peers) {
    initiators.push_back(std::make_unique<Host>(WriteFile(
        "initiator-" + peer + ".yaml",
        NullAuthConfig(peer, "127.0.0.1", port, port + 1, "", "  threads: 1\n"))));
    ASSERT_TRUE(initiators.back()->Start());
    initiators.back()->daemon_->Dispatch(ike::sa::InitiateRequest{
        "to-peer", ike::sa::Endpoint{*ike::policy::IpAddress::Parse("127.0.0.1"), port},
        ike::sa::Endpoint{*ike::policy::IpAddress::Parse(peer), port}, std::nullopt});
  }
  EXPECT_TRUE(WaitFor([&] { return responder.daemon_->ChildSaCount() == 4; }))
      << "responder CHILD_SAs: " << responder.daemon_->ChildSaCount();
  const auto sas = responder.daemon_->ListIkeSas();
  ASSERT_EQ(sas.size(), 4u);
  std::set<size_t> shards_used;
  for (const auto& sa : sas) {
    const size_t shard = sa.handle >> 48;
    EXPECT_EQ(sa.responder_spi >> 63, shard) << "SPI outside its shard's band";
    EXPECT_EQ(responder.daemon_->ShardOfPeer(sa.remote.address), shard);
    shards_used.insert(shard);
  }
  EXPECT_EQ(shards_used.size(), 2u);
  // Each shard's engine numbers its CHILD_SAs in its own slice of the owned
  // band: four CHILD_SAs, two per shard, are four kernel reqids, each with
  // its inbound and outbound SA (policies and socket bindings go by reqid).
  EXPECT_TRUE(WaitFor([&] { return responder.KernelSas() == 8; }))
      << "kernel SAs: " << responder.KernelSas();
  std::map<uint32_t, int> sas_per_reqid;
  {
    std::lock_guard lock(responder.mutex_);
    auto owned = responder.xfrm_.ListOwned();
    ASSERT_TRUE(owned.ok());
    for (const auto& sa : owned.value().sas) ++sas_per_reqid[sa.reqid];
  }
  EXPECT_EQ(sas_per_reqid.size(), 4u) << "two shards' CHILD_SAs share a reqid";
  for (const auto& [reqid, count] : sas_per_reqid) EXPECT_EQ(count, 2) << reqid;
  EXPECT_EQ(responder.daemon_->engine_totals().ike_sas, 4u);
  EXPECT_EQ(responder.daemon_->engine_totals().half_open, 0u);

  // A hard expiry of one inbound ESP SA of a shard-1 CHILD_SA: only the
  // owning shard's engine knows it, so only a routed event removes it.
  const ike::sa::IkeSaView* on_one = nullptr;
  const ike::sa::IkeSaView* on_zero = nullptr;
  for (const auto& sa : sas) ((sa.handle >> 48) == 1 ? on_one : on_zero) = &sa;
  ASSERT_TRUE(on_one && on_zero && on_one->children.size() == 1);
  responder.daemon_->Dispatch(ike::sa::KernelExpire{
      on_one->local.address, on_one->children[0].inbound_spi, /*hard=*/true});
  EXPECT_TRUE(WaitFor([&] { return responder.daemon_->ChildSaCount() == 3; }))
      << "the expire did not reach the shard owning the SA";
  // A request by handle reaches the shard-0 SA.
  responder.daemon_->Dispatch(ike::sa::DeleteRequest{on_zero->handle, 0});
  EXPECT_TRUE(WaitFor([&] { return responder.daemon_->ListIkeSas().size() == 3; }));
  EXPECT_EQ(responder.daemon_->ChildSaCount(), 2u);
  initiators.clear();
}

// Two shards and a narrow reqid band (five SA reqids): shard 0 keeps one
// CHILD_SA while shard 1 sets one up and tears it down three times. No
// kernel reqid is ever held by two CHILD_SAs. (Engines numbering from 1,
// interleaved by shard and wrapped into the band, gave shard 1's third
// CHILD_SA the reqid of shard 0's live one.)
TEST(DaemonTest, ShardsNeverShareAKernelReqidThroughChurn) {
  const uint16_t port = BasePort() + 2;
  Host responder(WriteFile(
      "churn.yaml",
      NullAuthConfig("127.0.0.1", "127.0.0.0/24", port, port + 1, "",
                     "  threads: 2\n"
                     "  ownership: {reqid_min: 0x10000, reqid_max: 0x10005}\n")));
  ASSERT_TRUE(responder.Start());
  ASSERT_EQ(responder.daemon_->shard_count(), 2u);
  std::string peer_on[2];
  for (int i = 2; i < 100 && (peer_on[0].empty() || peer_on[1].empty()); ++i) {
    const std::string address = "127.0.0." + std::to_string(i);
    std::string& slot =
        peer_on[responder.daemon_->ShardOfPeer(*ike::policy::IpAddress::Parse(address))];
    if (slot.empty()) slot = address;
  }
  ASSERT_FALSE(peer_on[0].empty() || peer_on[1].empty());
  auto start_initiator = [&](const std::string& peer) {
    auto host = std::make_unique<Host>(WriteFile(
        "churn-" + peer + ".yaml",
        NullAuthConfig(peer, "127.0.0.1", port, port + 1, "", "  threads: 1\n")));
    EXPECT_TRUE(host->Start());
    host->daemon_->Dispatch(ike::sa::InitiateRequest{
        "to-peer", ike::sa::Endpoint{*ike::policy::IpAddress::Parse("127.0.0.1"), port},
        ike::sa::Endpoint{*ike::policy::IpAddress::Parse(peer), port}, std::nullopt});
    return host;
  };
  // SAs per reqid on the responder (larval SAs carry reqid_min).
  auto sas_per_reqid = [&] {
    std::map<uint32_t, int> count;
    std::lock_guard lock(responder.mutex_);
    auto owned = responder.xfrm_.ListOwned();
    EXPECT_TRUE(owned.ok());
    if (owned.ok())
      for (const auto& sa : owned.value().sas)
        if (sa.reqid != 0x10000) ++count[sa.reqid];
    return count;
  };

  auto stays = start_initiator(peer_on[0]);
  ASSERT_TRUE(WaitFor([&] { return responder.KernelSas() == 2; }));
  const auto first = sas_per_reqid();
  ASSERT_EQ(first.size(), 1u);
  const uint32_t kept_reqid = first.begin()->first;
  for (int round = 0; round < 3; ++round) {
    auto churns = start_initiator(peer_on[1]);
    ASSERT_TRUE(WaitFor([&] {
      return responder.daemon_->ChildSaCount() == 2 && responder.KernelSas() == 4 &&
             churns->daemon_->ChildSaCount() == 1;
    })) << "round " << round;
    const auto now = sas_per_reqid();
    EXPECT_EQ(now.size(), 2u) << "round " << round << ": two CHILD_SAs share a reqid";
    for (const auto& [reqid, sas] : now) EXPECT_EQ(sas, 2) << "reqid " << reqid;
    EXPECT_EQ(now.count(kept_reqid), 1u);
    const auto ike_sas = churns->daemon_->ListIkeSas();
    ASSERT_EQ(ike_sas.size(), 1u);
    churns->daemon_->Dispatch(ike::sa::DeleteRequest{ike_sas[0].handle, 0});
    ASSERT_TRUE(WaitFor([&] {
      return responder.daemon_->ChildSaCount() == 1 && responder.KernelSas() == 2;
    })) << "round " << round;
  }
}

// New IKE_SA_INIT requests beyond init_rate_per_address per second from one
// address are dropped before any engine sees them.
TEST(DaemonTest, EachRunNumbersItsSaReqidsFromElsewhereInTheBand) {
  // Sockets of applications keep the reqids of a previous run's per-socket
  // policies through a restart: a new run must not hand those out again
  // from the same start.
  const uint16_t port = BasePort();
  const std::string path =
      WriteFile("runs.yaml", NullAuthConfig("127.0.0.1", "127.0.0.2", port, port + 1));
  const KernelTags base = Host::Tags(path);
  std::set<uint32_t> first_reqids, shard_starts;
  for (int run = 0; run < 4; ++run) {
    Host host(path);
    ASSERT_TRUE(host.daemon_);
    KernelTags tags = base;
    tags.reqid_offset = host.daemon_->reqid_offset();
    for (uint32_t engine_reqid : {1u, 2u, 60000u, 0xffffffffu}) {
      const uint32_t reqid = KernelReqid(engine_reqid, tags);
      EXPECT_GT(reqid, base.ownership.reqid_min) << "reqid_min is the larval SAs'";
      EXPECT_LE(reqid, base.ownership.reqid_max - kTrapReqids - kWaitingReqids)
          << "the top of the band is for traps and waiting sockets";
    }
    first_reqids.insert(KernelReqid(1, tags));
    // Each shard enters its own slice at the run's offset.
    const auto shard0 = ShardReqids(tags, 0, 2), shard1 = ShardReqids(tags, 1, 2);
    EXPECT_EQ(shard0.start - shard0.first, shard1.start - shard1.first);
    shard_starts.insert(shard0.start);
  }
  // Random offsets over ~60k (~30k) values: four runs with fewer than three
  // distinct starts would be a broken source, not bad luck.
  EXPECT_GE(first_reqids.size(), 3u);
  EXPECT_GE(shard_starts.size(), 3u);
}

TEST(NotifySystemdTest, StoppingIsAnnouncedOnce) {
  char folder[] = "/tmp/btnsd-notify-XXXXXX";
  ASSERT_NE(mkdtemp(folder), nullptr);
  const std::string path = std::string(folder) + "/notify";
  const int listener = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::snprintf(address.sun_path, sizeof address.sun_path, "%s", path.c_str());
  ASSERT_EQ(bind(listener, reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
  setenv("NOTIFY_SOCKET", path.c_str(), 1);
  EXPECT_TRUE(NotifySystemd("READY=1"));
  EXPECT_TRUE(NotifySystemd("STOPPING=1"));  // the signal handler
  EXPECT_TRUE(NotifySystemd("STOPPING=1"));  // the exit path
  unsetenv("NOTIFY_SOCKET");
  std::vector<std::string> received;
  char buffer[256];
  ssize_t n;
  while ((n = recv(listener, buffer, sizeof buffer, MSG_DONTWAIT)) > 0)
    received.emplace_back(buffer, static_cast<size_t>(n));
  EXPECT_EQ(received, (std::vector<std::string>{"READY=1", "STOPPING=1"}));
  close(listener);
  unlink(path.c_str());
  rmdir(folder);
}

TEST(DaemonTest, InitRequestsArePerAddressRateLimited) {
  const uint16_t port = BasePort() + 2;
  Host host(WriteFile("limited.yaml",
                      NullAuthConfig("127.0.0.1", "127.0.0.2", port, port + 1, "",
                                     "  threads: 2\n  init_rate_per_address: 10\n")));
  ASSERT_TRUE(host.Start());
  std::vector<uint8_t> init(28, 0);
  init[0] = 0x42;   // initiator SPI
  init[17] = 0x20;  // version 2.0
  init[18] = 34;    // IKE_SA_INIT
  init[19] = 0x08;  // from the original initiator
  init[27] = 28;
  for (int i = 0; i < 60; ++i) SendUdp("127.0.0.1", port, init);
  EXPECT_TRUE(WaitFor([&] { return host.daemon_->counters().datagrams_received == 60; }));
  const DaemonCounters counters = host.daemon_->counters();
  // At most two one-second windows' worth got through.
  EXPECT_GE(counters.init_rate_limited, 40u);
  EXPECT_LE(counters.init_rate_limited, 50u);
}

// ------------------------------------------------------------ half-open floods

class CountingSpis : public ike::sa::SpiAllocator {
 public:
  uint32_t Allocate(const ike::policy::IpAddress&, const ike::policy::IpAddress&) override {
    return ++next_;
  }
  void Release(const ike::policy::IpAddress&, uint32_t) override {}
  uint32_t next_ = 0x1000;
};

long RssKb() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  return -1;
}

// Sends real IKE_SA_INIT requests (made by the engine, a fresh initiator
// SPI each) to 127.0.0.1:port from `sockets` sockets on addresses
// 127.3.x.y, and never returns a cookie: a spoofing flooder's traffic.
class InitFlood {
 public:
  InitFlood(uint16_t port, size_t sockets) : port_(port) {
    auto loaded = config::LoadConfigFile(WriteFile(
        "flooder.yaml", NullAuthConfig("127.3.0.1", "127.0.0.1", port, port + 1)));
    EXPECT_TRUE(loaded.ok());
    ike::crypto::SystemRandomSource random;
    CountingSpis spis;
    ike::sa::SaManager manager({}, loaded.snapshot, {}, random, spis);
    const auto now = ike::sa::Instant(std::chrono::duration_cast<ike::sa::Duration>(
        std::chrono::steady_clock::now().time_since_epoch()));
    for (const auto& action : manager.Handle(
             ike::sa::InitiateRequest{
                 "to-peer", ike::sa::Endpoint{*ike::policy::IpAddress::Parse("127.0.0.1"), port},
                 ike::sa::Endpoint{*ike::policy::IpAddress::Parse("127.3.0.1"), port},
                 std::nullopt},
             now))
      if (auto* send = std::get_if<ike::sa::SendDatagram>(&action)) request_ = send->bytes;
    EXPECT_GE(request_.size(), 200u) << "no IKE_SA_INIT from the engine";
    for (size_t i = 0; i < sockets; ++i) {
      const int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
      sockaddr_in from{};
      from.sin_family = AF_INET;
      from.sin_addr.s_addr = htonl(0x7f030000u + 0x100 + uint32_t(i / 2));  // 2 ports per address
      EXPECT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&from), sizeof from), 0);
      fds_.push_back(fd);
    }
  }
  ~InitFlood() {
    for (int fd : fds_) close(fd);
  }
  void Send(size_t count) {
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(port_);
    inet_pton(AF_INET, "127.0.0.1", &to.sin_addr);
    for (size_t i = 0; i < count; ++i) {
      ++spi_;
      for (int b = 0; b < 8; ++b) request_[b] = uint8_t(spi_ >> (56 - 8 * b));
      sendto(fds_[sent_++ % fds_.size()], request_.data(), request_.size(), 0,
             reinterpret_cast<sockaddr*>(&to), sizeof to);
      if (i % 64 == 63) std::this_thread::sleep_for(1ms);  // not to overrun the socket buffer
    }
  }
  uint64_t sent_ = 0;

 private:
  uint16_t port_;
  std::vector<uint8_t> request_;
  std::vector<int> fds_;
  uint64_t spi_ = 0x4242000000000000;
};

uint64_t CookiesDemanded(Host& host) {
  uint64_t cookies = 0;
  host.daemon_->VisitShards(
      [&](size_t, ike::sa::SaManager& manager) { cookies += manager.cookies_demanded(); });
  return cookies;
}

// With cookies off, the half-open cap alone holds a flood: at most
// half_open_limit half-open SAs whatever arrives, the rest dropped before
// any engine (and its key exchange) sees them, memory flat.
TEST(DaemonTest, HalfOpenLimitBoundsAFloodWithoutCookies) {
  const uint16_t port = BasePort() + 2;
  Host host(WriteFile("capped.yaml",
                      NullAuthConfig("127.0.0.1", "127.0.0.0/8", port, port + 1, "",
                                     "  threads: 2\n  half_open_limit: 64\n"
                                     "  cookie_threshold: 1000000\n"
                                     "  init_rate_per_address: 0\n")));
  ASSERT_TRUE(host.Start());
  InitFlood flood(port, 512);
  size_t peak = 0;
  long rss_after_first = 0;
  for (int round = 0; round < 10; ++round) {
    flood.Send(2000);
    WaitFor([&] { return host.daemon_->counters().datagrams_received >= flood.sent_; }, 1s);
    peak = std::max(peak, host.daemon_->engine_totals().half_open);
    if (round == 0) rss_after_first = RssKb();
  }
  const DaemonCounters counters = host.daemon_->counters();
  const long rss_growth = RssKb() - rss_after_first;
  std::printf("sent %lu, received %lu, half-open peak %zu, dropped at the cap %lu, "
              "queue full %lu, cookies %lu, RSS growth after the first 2000: %ld kB\n",
              (unsigned long)flood.sent_, (unsigned long)counters.datagrams_received, peak,
              (unsigned long)counters.init_half_open_full,
              (unsigned long)counters.shard_queue_full,
              (unsigned long)CookiesDemanded(host), rss_growth);
  EXPECT_GT(peak, 0u) << "the flood never reached an engine";
  EXPECT_LE(peak, 64u);
  EXPECT_LE(host.daemon_->engine_totals().half_open, 64u);
  EXPECT_EQ(CookiesDemanded(host), 0u);
  // Nearly all of the 20,000 requests went over the cap (some may be lost
  // in the socket buffer or the shard queue).
  EXPECT_GE(counters.init_half_open_full + counters.shard_queue_full,
            counters.datagrams_received * 99 / 100);
  EXPECT_GE(counters.datagrams_received, 15000u);
  // 18,000 more requests after the cap was full: no per-request state. A
  // half-open SA costs kilobytes, so 18,000 kept would be tens of MB.
  EXPECT_LT(rss_growth, 4096) << "kB";
}

// Above cookie_threshold the engines answer with a cookie (RFC 7296 2.6),
// which the flooder never returns: half-open SAs stay at the threshold and
// a legitimate initiator, which does return the cookie, gets its CHILD_SA
// in the middle of the flood.
TEST(DaemonTest, CookiesLetALegitimatePeerInDuringAHalfOpenFlood) {
  const uint16_t port = BasePort() + 2;
  Host responder(WriteFile("cookies.yaml",
                           NullAuthConfig("127.0.0.1", "127.0.0.0/8", port, port + 1, "",
                                          "  threads: 2\n  cookie_threshold: 32\n"
                                          "  init_rate_per_address: 0\n")));
  ASSERT_TRUE(responder.Start());
  InitFlood flood(port, 512);
  flood.Send(2000);
  ASSERT_TRUE(WaitFor([&] { return CookiesDemanded(responder) > 0; }))
      << "no cookies demanded; half-open " << responder.daemon_->engine_totals().half_open;
  const long rss_before = RssKb();
  std::atomic<bool> flooding{true};
  std::thread flooder([&] {
    while (flooding) flood.Send(500);
  });
  Host legitimate(WriteFile("legitimate.yaml",
                            NullAuthConfig("127.0.0.2", "127.0.0.1", port, port + 1, "",
                                           "  threads: 1\n")));
  ASSERT_TRUE(legitimate.Start());
  legitimate.daemon_->Dispatch(ike::sa::InitiateRequest{
      "to-peer", ike::sa::Endpoint{*ike::policy::IpAddress::Parse("127.0.0.1"), port},
      ike::sa::Endpoint{*ike::policy::IpAddress::Parse("127.0.0.2"), port}, std::nullopt});
  size_t peak = 0;
  const bool up = WaitFor([&] {
    peak = std::max(peak, responder.daemon_->engine_totals().half_open);
    return legitimate.KernelSas() >= 2 && responder.daemon_->ChildSaCount() == 1;
  }, 20s);
  flooding = false;
  flooder.join();
  const long rss_growth = RssKb() - rss_before;
  std::printf("flood of %lu IKE_SA_INIT: cookies %lu, half-open peak %zu, legitimate CHILD_SA "
              "%s, RSS growth during the flood %ld kB\n",
              (unsigned long)flood.sent_, (unsigned long)CookiesDemanded(responder), peak,
              up ? "up" : "NOT up", rss_growth);
  EXPECT_TRUE(up) << "the legitimate initiator got no CHILD_SA during the flood";
  // Each of the two shards holds its share (16) before demanding cookies;
  // the legitimate peer's SA may be one more.
  EXPECT_LE(peak, 33u);
  EXPECT_GT(CookiesDemanded(responder), 1000u);
  EXPECT_GE(flood.sent_, 2500u) << "the flood did not go on during the handshake";
  EXPECT_LT(rss_growth, 4096) << "kB";
}

}  // namespace
}  // namespace btnsd::daemon
