// Round trips of ipsec_get_socket_pToken (the application's socket passed
// with SCM_RIGHTS, the reply parsed into a pToken) against a server in a
// separate process over the real Unix socket. Prints calls/s, p50, p99.
//   ptoken_bench [calls]
// In one run: latency of one client calling sequentially; aggregate rate of
// 1, 2 and 4 client processes (each its own API connection, one call in
// flight); the rate of one connection keeping 16 requests in flight; and
// the server core's cost without the socket. The server is one thread, and
// on a small machine it shares the cores with the clients.
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

}  // namespace

int main(int argc, char** argv) {
  const int calls = argc > 1 ? std::max(100, std::atoi(argv[1])) : 100000;
  char tmpl[] = "/tmp/btns-api-bench-XXXXXX";
  std::string dir = mkdtemp(tmpl);
  std::string path = dir + "/api.sock";
  std::string why;
  int listen_fd = btns_api::CreateEndpoint({path, std::nullopt, 0600}, &why);
  if (listen_fd < 0) {
    std::fprintf(stderr, "endpoint: %s\n", why.c_str());
    return 1;
  }
  pid_t server_pid = fork();
  if (server_pid == 0) {
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
  ipsec_api_set_endpoint(path.c_str());
  ipsec_pToken_t p = ipsec_create_pToken();
  for (int i = 0; i < 1000; ++i) {  // warm-up; also checks the result
    if (ipsec_get_socket_pToken(client, p) != 0) {
      std::fprintf(stderr, "get_socket_pToken: %s\n", ipsec_api_why());
      kill(server_pid, SIGTERM);
      return 1;
    }
  }
  ipsec_iToken_t peer = ipsec_get_pToken_iToken(p);
  char name[64];
  uint32_t name_len = sizeof name;
  if (!peer || ipsec_get_token_attr(peer, IPSEC_API_ATTR_identity, &name_len, name) != 0 ||
      std::string(name) != "fqdn:bob") {
    std::fprintf(stderr, "unexpected peer in the pToken\n");
    kill(server_pid, SIGTERM);
    return 1;
  }
  ipsec_free_iToken(peer);

  auto pct = [](const std::vector<double>& v, double q) {
    return v.empty() ? 0.0 : v[static_cast<size_t>(q * (v.size() - 1))];
  };
  // n library calls on this process's API connection, sorted latencies.
  auto measure = [&](int n, std::vector<double>* micros) {
    micros->resize(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) {
      auto t0 = std::chrono::steady_clock::now();
      if (ipsec_get_socket_pToken(client, p) != 0) {
        std::fprintf(stderr, "call %d: %s\n", i, ipsec_api_why());
        return false;
      }
      (*micros)[static_cast<size_t>(i)] =
          std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count();
    }
    std::sort(micros->begin(), micros->end());
    return true;
  };
  auto fail = [&]() {
    kill(server_pid, SIGTERM);
    waitpid(server_pid, nullptr, 0);
    return 1;
  };

  // 1. Latency: one client, one call at a time.
  std::vector<double> micros;
  double server_cpu = CpuSeconds(server_pid);
  auto server_us_per_call = [&](int n) {
    const double now = CpuSeconds(server_pid);
    const double us = (now - server_cpu) * 1e6 / n;
    server_cpu = now;
    return us;
  };
  auto start = std::chrono::steady_clock::now();
  if (!measure(calls, &micros)) return fail();
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const double p50 = pct(micros, 0.5);
  std::printf("sequential, 1 client: %d round trips in %.3f s = %.0f/s; p50 %.1f us, p99 %.1f us, "
              "max %.1f us; server CPU %.1f us per request\n",
              calls, seconds, calls / seconds, p50, pct(micros, 0.99), micros.back(),
              server_us_per_call(calls));

  // 2. Throughput: N client processes, each with its own API connection and
  // one call in flight (the C library serialises a process's calls).
  double best_rate = 0;
  for (int clients : {1, 2, 4}) {
    int pipefd[2];
    if (pipe(pipefd) != 0) return fail();
    const int each = calls / clients;
    std::vector<pid_t> children;
    start = std::chrono::steady_clock::now();
    for (int c = 0; c < clients; ++c) {
      pid_t child = fork();
      if (child > 0) children.push_back(child);
      if (child == 0) {
        close(pipefd[0]);
        std::vector<double> mine;
        char line[128];
        int len = measure(each, &mine)
                      ? std::snprintf(line, sizeof line, "%f %f\n", pct(mine, 0.5), pct(mine, 0.99))
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
    seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (text.find("fail") != std::string::npos || text.empty()) return fail();
    double worst50 = 0, worst99 = 0;
    for (size_t pos = 0; pos < text.size(); pos = text.find('\n', pos) + 1) {
      double a = 0, b = 0;
      std::sscanf(text.c_str() + pos, "%lf %lf", &a, &b);
      worst50 = std::max(worst50, a);
      worst99 = std::max(worst99, b);
    }
    const double rate = each * clients / seconds;
    best_rate = std::max(best_rate, rate);
    std::printf("concurrent, %d client%s: %d round trips in %.3f s = %.0f/s aggregate; worst "
                "client p50 %.1f us, p99 %.1f us; server CPU %.1f us per request\n",
                clients, clients == 1 ? " " : "s", each * clients, seconds, rate, worst50, worst99,
                server_us_per_call(each * clients));
  }

  // 3. Requests in flight on one connection (the protocol's request ids):
  // a window of `depth` get_socket_pToken requests, each with the socket.
  double pipelined_rate = 0;
  {
    const int depth = 16;
    int api = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
    if (connect(api, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) return fail();
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
    const uint64_t total = static_cast<uint64_t>(calls);
    start = std::chrono::steady_clock::now();
    while (answered < total) {
      while (next_id <= total && next_id - 1 - answered < depth) {
        if (!send_request(next_id++)) return fail();
      }
      char buf[65536];
      ssize_t n = recv(api, buf, sizeof buf, 0);
      if (n <= 0) return fail();
      decoder.Append(reinterpret_cast<const uint8_t*>(buf), static_cast<size_t>(n));
      std::string payload;
      while (decoder.Next(&payload) == btns_api::FrameResult::kFrame) {
        btns::api::v1::Reply reply;
        if (!reply.ParseFromString(payload) || !reply.has_ptoken() ||
            reply.id() != answered + 1) {
          std::fprintf(stderr, "pipelined reply %llu is not the pToken in order\n",
                       static_cast<unsigned long long>(answered + 1));
          return fail();
        }
        ++answered;
      }
    }
    seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    pipelined_rate = static_cast<double>(total) / seconds;
    std::printf("in flight, 1 connection, %d requests outstanding: %llu round trips in %.3f s = "
                "%.0f/s; server CPU %.1f us per request\n",
                depth, static_cast<unsigned long long>(total), seconds, pipelined_rate,
                server_us_per_call(calls));
    close(api);
  }
  ipsec_free_pToken(p);
  kill(server_pid, SIGTERM);
  waitpid(server_pid, nullptr, 0);

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
    uint64_t session = server.OpenSession({getpid(), getuid(), getgid()});
    const int n = std::min(calls, 100000);
    auto t0 = std::chrono::steady_clock::now();
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
    double us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count();
    std::printf("server core (in process, includes dup/close of the fd): %.2f us per request = %.0f/s\n",
                us / n, n / (us / 1e6));
  }
  unlink(path.c_str());
  rmdir(dir.c_str());
  std::printf("goal p50 < 50 us (sequential): %s; goal >= 50000/s with library clients: %s "
              "(best %.0f/s); with requests in flight: %s (%.0f/s)\n",
              p50 < 50.0 ? "met" : "NOT met", best_rate >= 50000 ? "met" : "NOT met", best_rate,
              pipelined_rate >= 50000 ? "met" : "NOT met", pipelined_rate);
  return 0;
}
