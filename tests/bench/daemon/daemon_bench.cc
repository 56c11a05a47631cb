// btnsd under load, over real UDP sockets on loopback: the daemon
// (bench_btnsd: btnsd with the in-memory kernel) runs as a child process;
// this driver is the load generator, using the protocol engine itself as
// initiators. Prints:
//   1. full handshakes/s (IKE_SA_INIT + IKE_AUTH with NULL auth + a
//      CHILD_SA installed) with 1 and with 2 protocol threads, and the ratio;
//   2. IKE_SA_INIT responses/s (the responder's key exchange alone, the
//      generator costing almost nothing) with 1 and 2 threads;
//   3. a half-open flood (IKE_SA_INIT from many loopback addresses and
//      ports, never answering cookies): btnsd's RSS, half-open SAs, cookie
//      replies and drops over time, with the default limits;
//   4. btnsd's RSS per established IKE SA (with its CHILD_SA) at 1k and 10k.
//
//   daemon_bench [--bench_btnsd PATH] [--seconds N] [--sas N]
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "config/loader.h"
#include "ike/crypto/random.h"
#include "ike/sa/engine.h"
#include "ike/wire/constants.h"
#include "ike/wire/message.h"

namespace {

using Clock = std::chrono::steady_clock;
using ike::policy::IpAddress;
using ike::sa::Endpoint;

std::string g_dir;
std::string g_bench_btnsd;
uint16_t g_port = 0;

ike::sa::Instant Now() {
  return ike::sa::Instant(std::chrono::duration_cast<ike::sa::Duration>(
      Clock::now().time_since_epoch()));
}

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

std::string WriteFile(const std::string& name, const std::string& text) {
  const std::string path = g_dir + "/" + name;
  std::ofstream(path) << text;
  return path;
}

const char* kPeers =
    "identities:\n  anonymous:\n    id: null\n"
    "pad:\n  - name: anyone\n    auth: btns\n"
    "    btns: {accept_null: true, accept_raw_key: false}\n";

std::string DaemonConfig(int threads, const std::string& limits) {
  return "daemon:\n  listen: [127.0.0.1]\n  ike_port: " + std::to_string(g_port) +
         "\n  nat_port: " + std::to_string(g_port + 1) +
         "\n  log_level: error\n  api_socket: " + g_dir + "/api.sock\n" +
         "  threads: " + std::to_string(threads) + "\n" + limits + kPeers +
         "spd:\n  - name: clients\n    local: 127.0.0.1\n    remote: 127.0.0.0/8\n"
         "    action: protect\n    peer: anyone\n    unauthenticated_ok: true\n"
         "    start: none\n";
}

// ------------------------------------------------------------ the daemon

struct Status {
  long rss_kb = 0;
  long ike_sas = 0, half_open = 0, datagrams_in = 0;
  long rate_limited = 0, half_open_full = 0, queue_full = 0, shards = 0;
};

class DaemonProcess {
 public:
  DaemonProcess(int threads, const std::string& limits) {
    const std::string config =
        WriteFile("btnsd-" + std::to_string(threads) + ".yaml", DaemonConfig(threads, limits));
    int fds[2];
    if (pipe(fds) != 0) std::abort();
    pid_ = fork();
    if (pid_ == 0) {
      dup2(fds[1], 1);
      const int log = open((g_dir + "/btnsd.log").c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      if (log >= 0) dup2(log, 2);
      close(fds[0]);
      execl(g_bench_btnsd.c_str(), g_bench_btnsd.c_str(), config.c_str(), nullptr);
      _exit(127);
    }
    close(fds[1]);
    fd_ = fds[0];
    fcntl(fd_, F_SETFL, O_NONBLOCK);
    if (!WaitFor([](const Status& s) { return s.shards > 0; }, 10.0)) {
      std::fprintf(stderr, "bench_btnsd did not start (see %s/btnsd.log)\n", g_dir.c_str());
      std::exit(1);
    }
  }
  ~DaemonProcess() {
    kill(pid_, SIGTERM);
    for (int i = 0; i < 600; ++i) {
      if (waitpid(pid_, nullptr, WNOHANG) == pid_) {
        close(fd_);
        return;
      }
      Drain();
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    close(fd_);
  }
  // Reads the newest status line.
  const Status& Poll() {
    Drain();
    return latest_;
  }
  template <typename P>
  bool WaitFor(P predicate, double seconds) {
    const auto end = Clock::now() + std::chrono::duration<double>(seconds);
    while (Clock::now() < end) {
      if (predicate(Poll())) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return predicate(Poll());
  }
  // User + system CPU seconds of the daemon so far.
  double CpuSeconds() const {
    std::ifstream stat("/proc/" + std::to_string(pid_) + "/stat");
    std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
    std::istringstream rest(text.substr(text.rfind(')') + 2));
    std::string field;
    unsigned long utime = 0, stime = 0;
    for (int i = 3; i <= 15 && rest >> field; ++i) {
      if (i == 14) utime = std::stoul(field);
      if (i == 15) stime = std::stoul(field);
    }
    return double(utime + stime) / double(sysconf(_SC_CLK_TCK));
  }

 private:
  void Drain() {
    char buffer[4096];
    for (;;) {
      const ssize_t n = read(fd_, buffer, sizeof buffer);
      if (n <= 0) break;
      pending_.append(buffer, size_t(n));
    }
    size_t end;
    while ((end = pending_.find('\n')) != std::string::npos) {
      Parse(pending_.substr(0, end));
      pending_.erase(0, end + 1);
    }
  }
  void Parse(const std::string& line) {
    if (line.rfind("status ", 0) != 0) return;
    std::istringstream in(line.substr(7));
    std::string kv;
    Status s;
    const std::map<std::string, long*> fields = {
        {"rss_kb", &s.rss_kb}, {"ike_sas", &s.ike_sas}, {"half_open", &s.half_open},
        {"datagrams_in", &s.datagrams_in}, {"rate_limited", &s.rate_limited},
        {"half_open_full", &s.half_open_full}, {"queue_full", &s.queue_full},
        {"shards", &s.shards}};
    while (in >> kv) {
      const size_t eq = kv.find('=');
      auto it = fields.find(kv.substr(0, eq));
      if (eq != std::string::npos && it != fields.end())
        *it->second = std::stol(kv.substr(eq + 1));
    }
    latest_ = s;
  }
  pid_t pid_ = -1;
  int fd_ = -1;
  std::string pending_;
  Status latest_;
};

// ------------------------------------------------------------ sockets

int BoundSocket(const IpAddress& address, uint16_t* port) {
  const int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
  sockaddr_in in{};
  in.sin_family = AF_INET;
  in.sin_addr.s_addr = htonl(uint32_t(address.value));
  if (bind(fd, reinterpret_cast<sockaddr*>(&in), sizeof in) != 0) {
    std::perror("bind");
    std::exit(1);
  }
  socklen_t length = sizeof in;
  getsockname(fd, reinterpret_cast<sockaddr*>(&in), &length);
  *port = ntohs(in.sin_port);
  const int size = 1 << 20;
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
  return fd;
}

void SendTo(int fd, const std::vector<uint8_t>& bytes) {
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(g_port);
  to.sin_addr.s_addr = htonl(0x7f000001);
  sendto(fd, bytes.data(), bytes.size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof to);
}

IpAddress Loopback(uint32_t host) { return IpAddress{ike::policy::IpFamily::kV4, 0x7f000000u | host}; }

// ------------------------------------------------------------ initiators

class CountingSpis : public ike::sa::SpiAllocator {
 public:
  uint32_t Allocate(const IpAddress&, const IpAddress&) override { return ++next_; }
  void Release(const IpAddress&, uint32_t) override {}
  uint32_t next_ = 0x1000;
};

// Initiators, one engine per handshake (a fresh engine never reuses an IKE
// SA), each lane on its own loopback address and socket.
class Initiators {
 public:
  Initiators(size_t lanes, ike::policy::PolicySnapshotPtr policy) : policy_(std::move(policy)) {
    epoll_ = epoll_create1(0);
    for (size_t i = 0; i < lanes; ++i) {
      Lane lane;
      lane.local.address = Loopback(0x010000 + uint32_t(i) + 1);  // 127.1.0.x
      lane.fd = BoundSocket(lane.local.address, &lane.local.port);
      epoll_event event{EPOLLIN, {}};
      event.data.u32 = uint32_t(i);
      epoll_ctl(epoll_, EPOLL_CTL_ADD, lane.fd, &event);
      lanes_.push_back(std::move(lane));
    }
  }
  ~Initiators() {
    for (auto& lane : lanes_) close(lane.fd);
    close(epoll_);
  }
  // Runs handshakes until `done()`; returns completed handshakes.
  template <typename Done>
  uint64_t Run(Done done) {
    uint64_t completed_before = completed_;
    while (!done(completed_ - completed_before)) {
      for (auto& lane : lanes_) {
        if (lane.manager && Clock::now() - lane.started < std::chrono::seconds(3)) continue;
        if (lane.manager) ++stalled_;
        Start(lane);
      }
      epoll_event events[64];
      const int n = epoll_wait(epoll_, events, 64, 5);
      for (int i = 0; i < n; ++i) Receive(lanes_[events[i].data.u32]);
    }
    return completed_ - completed_before;
  }
  uint64_t stalled() const { return stalled_; }

 private:
  struct Lane {
    int fd = -1;
    Endpoint local;
    std::unique_ptr<ike::sa::SaManager> manager;
    Clock::time_point started;
    bool finished = false;
  };
  void Start(Lane& lane) {
    lane.manager = std::make_unique<ike::sa::SaManager>(ike::sa::EngineSettings{}, policy_,
                                                        ike::sa::CredentialStore{}, random_,
                                                        spis_);
    lane.started = Clock::now();
    lane.finished = false;
    Execute(lane, lane.manager->Handle(
                      ike::sa::InitiateRequest{"daemon",
                                               Endpoint{Loopback(1), g_port},
                                               lane.local, std::nullopt},
                      Now()));
  }
  void Receive(Lane& lane) {
    uint8_t buffer[65536];
    for (;;) {
      sockaddr_in from{};
      socklen_t length = sizeof from;
      const ssize_t n = recvfrom(lane.fd, buffer, sizeof buffer, 0,
                                 reinterpret_cast<sockaddr*>(&from), &length);
      if (n < 0) return;
      if (!lane.manager) continue;
      ike::sa::DatagramReceived d{lane.local,
                                  Endpoint{Loopback(ntohl(from.sin_addr.s_addr) & 0xffffff),
                                           ntohs(from.sin_port)},
                                  std::vector<uint8_t>(buffer, buffer + n)};
      Execute(lane, lane.manager->Handle(d, Now()));
      if (lane.finished) Start(lane);
    }
  }
  void Execute(Lane& lane, const ike::sa::Actions& actions) {
    for (const auto& action : actions) {
      if (auto* send = std::get_if<ike::sa::SendDatagram>(&action)) {
        SendTo(lane.fd, send->bytes);
      } else if (std::get_if<ike::sa::ChildSaUp>(&action)) {
        ++completed_;
        lane.finished = true;
      }
    }
  }
  ike::policy::PolicySnapshotPtr policy_;
  ike::crypto::DrbgRandomSource random_;
  CountingSpis spis_;
  std::vector<Lane> lanes_;
  int epoll_ = -1;
  uint64_t completed_ = 0;
  uint64_t stalled_ = 0;
};

ike::policy::PolicySnapshotPtr InitiatorPolicy() {
  auto loaded = btnsd::config::LoadConfigFile(WriteFile(
      "initiators.yaml",
      std::string("daemon:\n  listen: [127.0.0.1]\n") + kPeers +
          "spd:\n  - name: daemon\n    local: 127.0.0.0/8\n    remote: 127.0.0.1\n"
          "    action: protect\n    peer: anyone\n    unauthenticated_ok: true\n"
          "    start: none\n"));
  for (const auto& e : loaded.errors) std::fprintf(stderr, "%s\n", e.ToString().c_str());
  if (!loaded.ok()) std::exit(1);
  return loaded.snapshot;
}

// ------------------------------------------------------------ IKE_SA_INIT senders

// Sends IKE_SA_INIT requests (a real one from the engine, with a fresh
// initiator SPI each) from many loopback addresses and ports; never
// answers. Classifies what comes back.
class InitSender {
 public:
  InitSender(size_t addresses, size_t ports_per_address, ike::policy::PolicySnapshotPtr policy)
      : request_(TemplateRequest(std::move(policy))) {
    for (size_t a = 0; a < addresses; ++a)
      for (size_t p = 0; p < ports_per_address; ++p) {
        uint16_t port = 0;
        fds_.push_back(BoundSocket(Loopback(0x020000 + uint32_t(a) + 1), &port));  // 127.2.x.y
      }
  }
  ~InitSender() {
    for (int fd : fds_) close(fd);
  }
  void SendOne() {
    ++spi_;
    for (int i = 0; i < 8; ++i) request_[i] = uint8_t(spi_ >> (56 - 8 * i));
    SendTo(fds_[next_++ % fds_.size()], request_);
    ++sent_;
  }
  // Reads every reply waiting; returns how many.
  size_t ReceiveAll() {
    uint8_t buffer[65536];
    size_t got = 0;
    for (int fd : fds_) {
      for (;;) {
        const ssize_t n = recv(fd, buffer, sizeof buffer, 0);
        if (n < 28) break;
        ++got;
        bool responder_spi = false;
        for (int i = 8; i < 16; ++i) responder_spi = responder_spi || buffer[i] != 0;
        if (responder_spi) {
          ++responses_;
          continue;
        }
        auto message = ike::wire::DecodeMessage(std::span<const uint8_t>(buffer, size_t(n)));
        bool cookie = false;
        if (message.ok())
          for (const auto& payload : message->payloads)
            if (auto* notify = std::get_if<ike::wire::NotifyPayload>(&payload.body))
              cookie = cookie || notify->type == ike::wire::NotifyType::kCookie;
        ++(cookie ? cookies_ : others_);
      }
    }
    return got;
  }
  uint64_t sent_ = 0, responses_ = 0, cookies_ = 0, others_ = 0;

 private:
  static std::vector<uint8_t> TemplateRequest(ike::policy::PolicySnapshotPtr policy) {
    ike::crypto::DrbgRandomSource random;
    CountingSpis spis;
    ike::sa::SaManager manager({}, policy, {}, random, spis);
    for (const auto& action : manager.Handle(
             ike::sa::InitiateRequest{"daemon", Endpoint{Loopback(1), g_port},
                                      Endpoint{Loopback(0x020001), 500}, std::nullopt},
             Now()))
      if (auto* send = std::get_if<ike::sa::SendDatagram>(&action)) return send->bytes;
    std::fprintf(stderr, "the engine produced no IKE_SA_INIT\n");
    std::exit(1);
  }
  std::vector<uint8_t> request_;
  std::vector<int> fds_;
  uint64_t spi_ = 0x5100000000000000ull;
  size_t next_ = 0;
};

// ------------------------------------------------------------ phases

const char* kNoLimits =
    "  cookie_threshold: 1000000\n  half_open_limit: 1000000\n  init_rate_per_address: 0\n";

struct Rate {
  double per_second = 0;
  double daemon_cores = 0;
  uint64_t count = 0;
};

Rate Handshakes(int threads, double seconds, const ike::policy::PolicySnapshotPtr& policy) {
  DaemonProcess daemon(threads, kNoLimits);
  Initiators initiators(64, policy);
  // Warm-up, then measure.
  initiators.Run([](uint64_t n) { return n >= 200; });
  const double cpu_before = daemon.CpuSeconds();
  const auto start = Clock::now();
  const auto end = start + std::chrono::duration<double>(seconds);
  Rate rate;
  rate.count = initiators.Run([&](uint64_t) { return Clock::now() >= end; });
  const double wall = Seconds(Clock::now() - start);
  rate.per_second = double(rate.count) / wall;
  rate.daemon_cores = (daemon.CpuSeconds() - cpu_before) / wall;
  std::printf("  threads=%d  %7.0f handshakes/s  (%lu in %.1f s, %lu stalled)  btnsd used %.2f cores"
              "  %.3f ms CPU/handshake\n",
              threads, rate.per_second, (unsigned long)rate.count, wall,
              (unsigned long)initiators.stalled(), rate.daemon_cores,
              1000.0 * rate.daemon_cores / rate.per_second);
  return rate;
}

Rate InitResponses(int threads, double seconds, const ike::policy::PolicySnapshotPtr& policy) {
  DaemonProcess daemon(threads, kNoLimits);
  InitSender sender(64, 1, policy);
  const size_t window = 128;
  auto run = [&](double s) {
    const auto end = Clock::now() + std::chrono::duration<double>(s);
    const uint64_t before = sender.responses_;
    uint64_t outstanding = 0;
    auto last_progress = Clock::now();
    while (Clock::now() < end) {
      while (outstanding < window) {
        sender.SendOne();
        ++outstanding;
      }
      const size_t got = sender.ReceiveAll();
      outstanding -= std::min<uint64_t>(outstanding, got);
      if (got != 0) last_progress = Clock::now();
      else if (Clock::now() - last_progress > std::chrono::milliseconds(100)) outstanding = 0;
      else std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    return sender.responses_ - before;
  };
  run(0.5);
  const double cpu_before = daemon.CpuSeconds();
  const auto start = Clock::now();
  Rate rate;
  rate.count = run(seconds);
  const double wall = Seconds(Clock::now() - start);
  rate.per_second = double(rate.count) / wall;
  rate.daemon_cores = (daemon.CpuSeconds() - cpu_before) / wall;
  std::printf("  threads=%d  %7.0f IKE_SA_INIT responses/s  btnsd used %.2f cores\n", threads,
              rate.per_second, rate.daemon_cores);
  return rate;
}

void Flood(double seconds, const ike::policy::PolicySnapshotPtr& policy) {
  DaemonProcess daemon(2, "");  // default limits
  InitSender sender(512, 2, policy);
  std::printf("  %5s %8s %9s %10s %10s %9s %12s %14s %10s\n", "t(s)", "rss_kb", "half_open",
              "sent", "responses", "cookies", "rate_limited", "half_open_full", "queue_full");
  const auto start = Clock::now();
  auto next_sample = start;
  long peak_half_open = 0, first_rss = 0, last_rss = 0, peak_rss = 0;
  while (Clock::now() - start < std::chrono::duration<double>(seconds)) {
    for (int i = 0; i < 256; ++i) sender.SendOne();
    sender.ReceiveAll();
    const Status& s = daemon.Poll();
    peak_half_open = std::max(peak_half_open, s.half_open);
    peak_rss = std::max(peak_rss, s.rss_kb);
    if (Clock::now() >= next_sample) {
      std::printf("  %5.1f %8ld %9ld %10lu %10lu %9lu %12ld %14ld %10ld\n",
                  Seconds(Clock::now() - start), s.rss_kb, s.half_open,
                  (unsigned long)sender.sent_, (unsigned long)sender.responses_,
                  (unsigned long)sender.cookies_, s.rate_limited, s.half_open_full,
                  s.queue_full);
      if (first_rss == 0) first_rss = s.rss_kb;
      last_rss = s.rss_kb;
      next_sample += std::chrono::seconds(1);
    }
  }
  std::printf("  peak half-open %ld (cookie threshold 1000, cap 5000); RSS %ld -> %ld kB, "
              "peak %ld kB; %lu INIT sent, %lu cookie replies, %lu half-open responses\n",
              peak_half_open, first_rss, last_rss, peak_rss, (unsigned long)sender.sent_,
              (unsigned long)sender.cookies_, (unsigned long)sender.responses_);
}

void MemoryPerSa(size_t target, const ike::policy::PolicySnapshotPtr& policy) {
  DaemonProcess daemon(2, kNoLimits);
  Initiators initiators(64, policy);
  daemon.WaitFor([](const Status&) { return false; }, 0.3);
  const long rss0 = daemon.Poll().rss_kb;
  std::printf("  %8s %9s %12s\n", "IKE SAs", "rss_kb", "bytes/SA");
  std::printf("  %8d %9ld %12s\n", 0, rss0, "-");
  long previous_rss = rss0;
  long previous_sas = 0;
  for (size_t step : {size_t(1000), target}) {
    if (step <= size_t(previous_sas)) continue;
    initiators.Run([&](uint64_t) { return daemon.Poll().ike_sas >= long(step); });
    daemon.WaitFor([&](const Status& s) { return s.half_open == 0; }, 5.0);
    daemon.WaitFor([](const Status&) { return false; }, 0.3);
    const Status s = daemon.Poll();
    std::printf("  %8ld %9ld %12.0f   (since previous row)\n", s.ike_sas, s.rss_kb,
                1024.0 * double(s.rss_kb - previous_rss) / double(s.ike_sas - previous_sas));
    previous_rss = s.rss_kb;
    previous_sas = s.ike_sas;
  }
}

}  // namespace

int main(int argc, char** argv) {
  double seconds = 5;
  size_t sas = 10000;
  std::string self = argv[0];
  g_bench_btnsd = self.substr(0, self.rfind('/') + 1) + "bench_btnsd";
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--bench_btnsd") g_bench_btnsd = argv[i + 1];
    else if (flag == "--seconds") seconds = std::atof(argv[i + 1]);
    else if (flag == "--sas") sas = std::strtoul(argv[i + 1], nullptr, 10);
    else {
      std::fprintf(stderr, "usage: daemon_bench [--bench_btnsd PATH] [--seconds N] [--sas N]\n");
      return 2;
    }
  }
  char dir_template[] = "/tmp/daemon-bench-XXXXXX";
  g_dir = mkdtemp(dir_template);
  g_port = uint16_t(30000 + getpid() % 10000);
  signal(SIGPIPE, SIG_IGN);
  const auto policy = InitiatorPolicy();
  std::printf("btnsd daemon benchmark (loopback UDP, in-memory kernel, %u CPUs; the load "
              "generator shares them)\n", std::thread::hardware_concurrency());

  std::printf("\n1. Full handshakes (IKE_SA_INIT + IKE_AUTH NULL + CHILD_SA), 64 concurrent "
              "initiators on 64 addresses, %.0f s:\n", seconds);
  const Rate h1 = Handshakes(1, seconds, policy);
  const Rate h2 = Handshakes(2, seconds, policy);
  std::printf("  ratio 2 threads / 1 thread: %.2f handshakes/s, %.2f btnsd cores\n",
              h2.per_second / h1.per_second, h2.daemon_cores / h1.daemon_cores);

  std::printf("\n2. IKE_SA_INIT responses (responder key exchange; 128 outstanding from 64 "
              "addresses), %.0f s:\n", seconds);
  const Rate i1 = InitResponses(1, seconds, policy);
  const Rate i2 = InitResponses(2, seconds, policy);
  std::printf("  ratio 2 threads / 1 thread: %.2f\n", i2.per_second / i1.per_second);

  std::printf("\n3. Half-open flood: IKE_SA_INIT from 1024 sockets on 512 addresses, cookies "
              "never returned, default limits, 2 threads, %.0f s:\n", 2 * seconds);
  Flood(2 * seconds, policy);

  std::printf("\n4. btnsd RSS per established IKE SA (with one CHILD_SA each), 2 threads:\n");
  MemoryPerSa(sas, policy);
  return 0;
}
