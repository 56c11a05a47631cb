// Round trips of ipsec_get_socket_pToken (the application's socket passed
// with SCM_RIGHTS, the reply parsed into a pToken) against a server in a
// separate process over the real Unix socket. Prints calls/s, p50, p99.
//   ptoken_bench [calls] [client processes]
// With several client processes each has its own API connection and the
// figure is the aggregate rate (the server is one thread).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "btns/ipsec_api.h"
#include "btns_api/epoll_runner.h"
#include "btns_api/fake_sa_directory.h"
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

}  // namespace

int main(int argc, char** argv) {
  const int calls = argc > 1 ? std::atoi(argv[1]) : 200000;
  const int clients = argc > 2 ? std::max(1, std::atoi(argv[2])) : 1;
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
  auto pct = [](const std::vector<double>& v, double q) {
    return v[static_cast<size_t>(q * (v.size() - 1))];
  };
  double p50 = 0, p99 = 0, rate = 0;
  auto start = std::chrono::steady_clock::now();
  if (clients == 1) {
    std::vector<double> micros;
    if (!measure(calls, &micros)) {
      kill(server_pid, SIGTERM);
      return 1;
    }
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    rate = calls / seconds;
    p50 = pct(micros, 0.5);
    p99 = pct(micros, 0.99);
    std::printf("1 client: %d get_socket_pToken round trips in %.3f s = %.0f/s; p50 %.1f us, "
                "p99 %.1f us, max %.1f us\n",
                calls, seconds, rate, p50, p99, micros.back());
  } else {
    int pipefd[2];
    if (pipe(pipefd) != 0) return 1;
    const int each = calls / clients;
    std::vector<pid_t> children;
    for (int c = 0; c < clients; ++c) {
      pid_t child = fork();
      if (child > 0) children.push_back(child);
      if (child == 0) {
        close(pipefd[0]);
        std::vector<double> micros;
        char line[128];
        int len = measure(each, &micros)
                      ? std::snprintf(line, sizeof line, "%f %f\n", pct(micros, 0.5), pct(micros, 0.99))
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
    for (pid_t child : children) waitpid(child, nullptr, 0);
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    rate = each * clients / seconds;
    if (text.find("fail") != std::string::npos) {
      kill(server_pid, SIGTERM);
      return 1;
    }
    // Report the worst client's percentiles.
    size_t pos = 0;
    while (pos < text.size()) {
      double a = 0, b = 0;
      std::sscanf(text.c_str() + pos, "%lf %lf", &a, &b);
      p50 = std::max(p50, a);
      p99 = std::max(p99, b);
      pos = text.find('\n', pos) + 1;
    }
    std::printf("%d clients: %d round trips in %.3f s = %.0f/s aggregate; worst client p50 %.1f us, "
                "p99 %.1f us\n",
                clients, each * clients, seconds, rate, p50, p99);
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
  const bool goal = p50 < 50.0 && rate >= 50000;
  std::printf("goal (p50 < 50 us, >= 50000/s): %s\n", goal ? "met" : "NOT met");
  return 0;
}
