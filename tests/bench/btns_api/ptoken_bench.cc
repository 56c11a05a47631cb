// Round trips of ipsec_get_socket_pToken (the application's socket passed
// with SCM_RIGHTS, the reply parsed into a pToken) against a server in a
// separate process over the real Unix socket.
//   ptoken_bench [calls] [rounds]
// Each round measures: the latency of one client calling sequentially; the
// aggregate rate of 1, 2 and 4 client processes (each its own API
// connection, one call in flight); the rate of one connection keeping 16
// requests in flight; and the server's CPU time per request; the medians
// over the rounds follow, then the server core's cost without the socket,
// and the load average before, during and after. To compare a change,
// add a Config (a server option) and the medians are given against the
// first. The
// server is one thread, and on a small machine it shares the cores with
// the clients.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "btns/ipsec_api.h"
#include "btns_api/epoll_runner.h"
#include "btns_api/fake_sa_directory.h"
#include "btns_api/frame.h"
#include "btns_api/btns_api.pb.h"
#include "btns_api/server.h"

namespace {

using btns_api::IpAddress;
using Clock = std::chrono::steady_clock;

ike::policy::TrafficSelector Host(const char* ip) {
  ike::policy::TrafficSelector ts;
  ts.addresses = ike::policy::IpRange::Host(*IpAddress::Parse(ip));
  return ts;
}

int Bound(const char* ip) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  inet_pton(AF_INET, ip, &a.sin_addr);
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return -1;
  return fd;
}

// CPU time (user + system) a process has used, from /proc/<pid>/stat.
double CpuSeconds(pid_t pid) {
  std::string path = "/proc/" + std::to_string(pid) + "/stat";
  FILE* f = std::fopen(path.c_str(), "r");
  if (!f) return 0;
  char text[1024];
  size_t n = std::fread(text, 1, sizeof text - 1, f);
  std::fclose(f);
  text[n] = 0;
  const char* p = std::strrchr(text, ')');  // the command name may hold spaces
  unsigned long utime = 0, stime = 0;
  if (!p || std::sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime,
                        &stime) != 2) {
    return 0;
  }
  return static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

std::string LoadAverage() {
  FILE* f = std::fopen("/proc/loadavg", "r");
  if (!f) return "?";
  char text[128] = {0};
  (void)!std::fgets(text, sizeof text, f);
  std::fclose(f);
  std::string s(text);
  if (!s.empty() && s.back() == '\n') s.pop_back();
  return s;
}

double Pct(const std::vector<double>& v, double q) {
  return v.empty() ? 0.0 : v[static_cast<size_t>(q * (v.size() - 1))];
}

// A server process on `path`.
pid_t StartServer(const std::string& path) {
  std::string why;
  unlink(path.c_str());
  int listen_fd = btns_api::CreateEndpoint({path, std::nullopt, 0600}, &why);
  if (listen_fd < 0) {
    std::fprintf(stderr, "endpoint: %s\n", why.c_str());
    return -1;
  }
  pid_t pid = fork();
  if (pid == 0) {
    btns_api::FakeSaDirectory fake;
    btns_api::Server server(fake);
    btns_api::SaInfo sa;
    sa.child_sa_id = 1;
    sa.ike_sa_id = 1;
    sa.peer.auth = btns_api::AuthKind::kCertificate;
    sa.peer.id = "fqdn:bob";
    sa.peer.public_key.assign(65, 0xb0);
    sa.local.auth = btns_api::AuthKind::kRawKey;
    sa.local.id = "sha256:00";
    sa.local.public_key.assign(32, 0xa1);
    sa.algorithms = "ENCR_AES_GCM_16-256";
    sa.local_ts = {Host("127.0.0.2")};
    sa.remote_ts = {Host("127.0.0.1")};
    fake.AddSa(sa);
    btns_api::EpollRunner runner(server, listen_fd);
    runner.Run();
    _exit(0);
  }
  close(listen_fd);
  return pid;
}

struct Config {
  std::string name;
};

struct Figures {
  double sequential_rate = 0, p50 = 0, p99 = 0, sequential_server_us = 0;
  std::map<int, double> concurrent_rate;       // by client count
  std::map<int, double> concurrent_server_us;  // server CPU per request
  std::map<int, double> concurrent_worst_p50;
  double pipelined_rate = 0, pipelined_server_us = 0;
  bool ok = false;
};

// n library calls on this process's API connection (its own: the library
// opens one per process); sorted latencies in micros.
bool Measure(const std::string& path, int client, int n, std::vector<double>* micros) {
  ipsec_api_set_endpoint(path.c_str());
  ipsec_pToken_t p = ipsec_create_pToken();
  for (int i = 0; i < 200; ++i) {  // warm-up; also checks the result
    if (ipsec_get_socket_pToken(client, p) != 0) {
      std::fprintf(stderr, "get_socket_pToken: %s\n", ipsec_api_why());
      return false;
    }
  }
  ipsec_iToken_t peer = ipsec_get_pToken_iToken(p);
  char name[64] = {0};
  uint32_t name_len = sizeof name;
  if (!peer || ipsec_get_token_attr(peer, IPSEC_API_ATTR_identity, &name_len, name) != 0 ||
      std::string(name) != "fqdn:bob") {
    std::fprintf(stderr, "unexpected peer in the pToken\n");
    return false;
  }
  ipsec_free_iToken(peer);
  micros->resize(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    auto t0 = Clock::now();
    if (ipsec_get_socket_pToken(client, p) != 0) {
      std::fprintf(stderr, "call %d: %s\n", i, ipsec_api_why());
      return false;
    }
    (*micros)[static_cast<size_t>(i)] =
        std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
  }
  ipsec_free_pToken(p);
  std::sort(micros->begin(), micros->end());
  return true;
}

// `clients` processes making `each` calls at once; the aggregate rate and
// the worst client's p50 and p99.
bool RunClients(const std::string& path, int client, int clients, int each, double* rate,
                double* worst50, double* worst99) {
  int pipefd[2];
  if (pipe(pipefd) != 0) return false;
  std::vector<pid_t> children;
  auto start = Clock::now();
  for (int c = 0; c < clients; ++c) {
    pid_t child = fork();
    if (child > 0) children.push_back(child);
    if (child == 0) {
      close(pipefd[0]);
      std::vector<double> mine;
      char line[128];
      int len = Measure(path, client, each, &mine)
                    ? std::snprintf(line, sizeof line, "%f %f\n", Pct(mine, 0.5), Pct(mine, 0.99))
                    : std::snprintf(line, sizeof line, "fail\n");
      (void)!write(pipefd[1], line, static_cast<size_t>(len));
      _exit(0);
    }
  }
  close(pipefd[1]);
  std::string text;
  char buf[256];
  ssize_t n;
  while ((n = read(pipefd[0], buf, sizeof buf)) > 0) text.append(buf, static_cast<size_t>(n));
  close(pipefd[0]);
  for (pid_t child : children) waitpid(child, nullptr, 0);
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  if (text.find("fail") != std::string::npos || text.empty()) return false;
  *worst50 = *worst99 = 0;
  for (size_t pos = 0; pos < text.size(); pos = text.find('\n', pos) + 1) {
    double a = 0, b = 0;
    std::sscanf(text.c_str() + pos, "%lf %lf", &a, &b);
    *worst50 = std::max(*worst50, a);
    *worst99 = std::max(*worst99, b);
  }
  *rate = each * clients / seconds;
  return true;
}

// One connection keeping `depth` get_socket_pToken requests in flight (the
// protocol's request ids), each with the socket.
bool RunPipelined(const std::string& path, int client, uint64_t total, double* rate) {
  const uint64_t depth = 16;
  int api = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
  if (connect(api, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) return false;
  auto send_request = [&](uint64_t id) {
    btns::api::v1::Request req;
    req.set_version(1);
    req.set_id(id);
    req.set_fd_count(1);
    req.mutable_get_socket_ptoken();
    std::string frame;
    btns_api::AppendFrame(req.SerializeAsString(), &frame);
    iovec iov{frame.data(), frame.size()};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(c), &client, sizeof(int));
    return sendmsg(api, &msg, MSG_NOSIGNAL) == static_cast<ssize_t>(frame.size());
  };
  btns_api::FrameDecoder decoder(1 << 20);
  uint64_t next_id = 1, answered = 0;
  auto start = Clock::now();
  while (answered < total) {
    while (next_id <= total && next_id - 1 - answered < depth) {
      if (!send_request(next_id++)) return false;
    }
    char buf[65536];
    ssize_t n = recv(api, buf, sizeof buf, 0);
    if (n <= 0) return false;
    decoder.Append(reinterpret_cast<const uint8_t*>(buf), static_cast<size_t>(n));
    std::string payload;
    while (decoder.Next(&payload) == btns_api::FrameResult::kFrame) {
      btns::api::v1::Reply reply;
      if (!reply.ParseFromString(payload) || !reply.has_ptoken() || reply.id() != answered + 1) {
        std::fprintf(stderr, "pipelined reply %llu is not the pToken in order\n",
                     static_cast<unsigned long long>(answered + 1));
        return false;
      }
      ++answered;
    }
  }
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  *rate = static_cast<double>(total) / seconds;
  close(api);
  return true;
}

Figures RunConfig(const std::string& path, int client, const Config& /*config*/, int calls) {
  Figures f;
  const pid_t server = StartServer(path);
  if (server < 0) return f;
  double server_cpu = CpuSeconds(server);
  auto server_us_per_call = [&](int n) {
    const double now = CpuSeconds(server);
    const double us = (now - server_cpu) * 1e6 / n;
    server_cpu = now;
    return us;
  };
  auto finish = [&](bool ok) {
    kill(server, SIGTERM);
    waitpid(server, nullptr, 0);
    f.ok = ok;
    return f;
  };
  // Latency: one client process, one call at a time.
  double worst99 = 0;
  if (!RunClients(path, client, 1, calls, &f.sequential_rate, &f.p50, &f.p99)) return finish(false);
  f.sequential_server_us = server_us_per_call(calls);
  for (int clients : {2, 4}) {
    const int each = calls / clients;
    double rate = 0, worst50 = 0;
    if (!RunClients(path, client, clients, each, &rate, &worst50, &worst99)) return finish(false);
    f.concurrent_rate[clients] = rate;
    f.concurrent_worst_p50[clients] = worst50;
    f.concurrent_server_us[clients] = server_us_per_call(each * clients);
  }
  if (!RunPipelined(path, client, static_cast<uint64_t>(calls), &f.pipelined_rate))
    return finish(false);
  f.pipelined_server_us = server_us_per_call(calls);
  return finish(true);
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  const int calls = argc > 1 ? std::max(100, std::atoi(argv[1])) : 40000;
  const int rounds = argc > 2 ? std::max(1, std::atoi(argv[2])) : 3;
  char tmpl[] = "/tmp/btns-api-bench-XXXXXX";
  std::string dir = mkdtemp(tmpl);
  std::string path = dir + "/api.sock";

  int listener = Bound("127.0.0.1");
  listen(listener, 1);
  sockaddr_in to{};
  socklen_t len = sizeof to;
  getsockname(listener, reinterpret_cast<sockaddr*>(&to), &len);
  int client = Bound("127.0.0.2");
  if (connect(client, reinterpret_cast<sockaddr*>(&to), sizeof to) != 0) {
    std::perror("connect");
    return 1;
  }

  const std::vector<Config> configs = {{"server"}};
  std::printf("%d calls per measurement, %d rounds; load average at start: %s\n", calls, rounds,
              LoadAverage().c_str());
  std::map<std::string, std::vector<Figures>> all;
  for (int round = 1; round <= rounds; ++round) {
    for (const Config& config : configs) {
      Figures f = RunConfig(path, client, config, calls);
      if (!f.ok) {
        std::fprintf(stderr, "%s: measurement failed\n", config.name.c_str());
        return 1;
      }
      all[config.name].push_back(f);
      std::printf("round %d %-11s sequential %6.0f/s p50 %5.1f us p99 %6.1f us srv %4.1f us | "
                  "2 clients %6.0f/s srv %4.1f us | 4 clients %6.0f/s srv %4.1f us (worst p50 "
                  "%5.1f us) | 16 in flight %6.0f/s srv %4.1f us | load %s\n",
                  round, config.name.c_str(), f.sequential_rate, f.p50, f.p99,
                  f.sequential_server_us, f.concurrent_rate[2], f.concurrent_server_us[2],
                  f.concurrent_rate[4], f.concurrent_server_us[4], f.concurrent_worst_p50[4],
                  f.pipelined_rate, f.pipelined_server_us, LoadAverage().c_str());
      std::fflush(stdout);
    }
  }
  // Medians over the rounds, and each configuration against "before".
  auto median_of = [&](const std::string& name, auto field) {
    std::vector<double> v;
    for (const Figures& f : all[name]) v.push_back(field(f));
    return Median(v);
  };
  double best_rate = 0, best_p50 = 1e9;
  std::string best_name;
  for (const Config& config : configs) {
    auto seq = [](const Figures& f) { return f.sequential_rate; };
    auto p50 = [](const Figures& f) { return f.p50; };
    auto two = [](const Figures& f) { return f.concurrent_rate.at(2); };
    auto four = [](const Figures& f) { return f.concurrent_rate.at(4); };
    auto piped = [](const Figures& f) { return f.pipelined_rate; };
    const std::string& base = configs[0].name;
    std::printf("median %-11s sequential %6.0f/s (x%.2f) p50 %5.1f us (x%.2f) | 2 clients "
                "%6.0f/s (x%.2f) | 4 clients %6.0f/s (x%.2f) | 16 in flight %6.0f/s (x%.2f)\n",
                config.name.c_str(), median_of(config.name, seq),
                median_of(config.name, seq) / median_of(base, seq), median_of(config.name, p50),
                median_of(config.name, p50) / median_of(base, p50), median_of(config.name, two),
                median_of(config.name, two) / median_of(base, two), median_of(config.name, four),
                median_of(config.name, four) / median_of(base, four),
                median_of(config.name, piped),
                median_of(config.name, piped) / median_of(base, piped));
    const double rate = std::max({median_of(config.name, seq), median_of(config.name, two),
                                  median_of(config.name, four)});
    if (rate > best_rate) {
      best_rate = rate;
      best_name = config.name;
    }
    best_p50 = std::min(best_p50, median_of(config.name, p50));
  }

  // The server core alone (no scheduler, no socket): frame in, reply out.
  {
    btns_api::FakeSaDirectory fake;
    btns_api::Server server(fake);
    btns_api::SaInfo sa;
    sa.child_sa_id = 1;
    sa.peer.auth = btns_api::AuthKind::kCertificate;
    sa.peer.id = "fqdn:bob";
    sa.local_ts = {Host("127.0.0.2")};
    sa.remote_ts = {Host("127.0.0.1")};
    fake.AddSa(sa);
    uint64_t session = server.OpenSession({getpid(), getuid(), getgid(), {}});
    const int n = std::min(calls, 100000);
    auto t0 = Clock::now();
    for (int i = 1; i <= n; ++i) {
      btns::api::v1::Request req;
      req.set_version(1);
      req.set_id(static_cast<uint64_t>(i));
      req.set_fd_count(1);
      req.mutable_get_socket_ptoken();
      std::string frame;
      btns_api::AppendFrame(req.SerializeAsString(), &frame);
      server.OnInput(session, reinterpret_cast<const uint8_t*>(frame.data()), frame.size(),
                     {fcntl(client, F_DUPFD_CLOEXEC, 0)});
      server.ConsumeOutput(session, server.PendingOutput(session).size());
    }
    double us = std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
    std::printf("server core (in process, includes dup/close of the fd): %.2f us per request = "
                "%.0f/s\n",
                us / n, n / (us / 1e6));
  }
  unlink(path.c_str());
  rmdir(dir.c_str());
  std::printf("load average at the end: %s\n", LoadAverage().c_str());
  std::printf("goal p50 < 50 us (sequential): %s (best median %.1f us); goal >= 50000/s with "
              "library clients: %s (best median %.0f/s, %s)\n",
              best_p50 < 50.0 ? "met" : "NOT met", best_p50, best_rate >= 50000 ? "met" : "NOT met",
              best_rate, best_name.c_str());
  return 0;
}
