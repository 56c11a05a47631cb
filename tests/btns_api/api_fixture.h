// A real BTNS API endpoint (Unix socket, epoll runner on its own thread)
// backed by FakeSaDirectory, plus loopback TCP/UDP helpers.
#ifndef TESTS_BTNS_API_API_FIXTURE_H_
#define TESTS_BTNS_API_API_FIXTURE_H_

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <botan/hash.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <future>
#include <memory>
#include <string>
#include <thread>

#include "btns/ipsec_api.h"
#include "btns_api/epoll_runner.h"
#include "btns_api/fake_sa_directory.h"
#include "btns_api/server.h"

namespace btns_api::testing {

inline ike::policy::TrafficSelector HostTs(const char* ip) {
  ike::policy::TrafficSelector ts;
  ts.addresses = ike::policy::IpRange::Host(*IpAddress::Parse(ip));
  return ts;  // any protocol, any port
}

inline std::array<uint8_t, 32> Sha256Of(const std::vector<uint8_t>& v) {
  auto h = Botan::HashFunction::create("SHA-256");
  auto d = h->process(v);
  std::array<uint8_t, 32> out{};
  std::copy(d.begin(), d.end(), out.begin());
  return out;
}

inline PeerIdentity CertPeer(const std::string& name, uint8_t key_byte) {
  PeerIdentity p;
  p.auth = AuthKind::kCertificate;
  p.id = "fqdn:" + name;
  p.certificate_dn = "CN=" + name + ",O=Example";
  p.certificate_authority_dn = "CN=Example Test CA";
  p.public_key.assign(65, key_byte);
  p.spki_sha256 = Sha256Of(p.public_key);
  return p;
}

inline PeerIdentity RawKeyPeer(uint8_t key_byte) {
  PeerIdentity p;
  p.auth = AuthKind::kRawKey;
  p.public_key.assign(32, key_byte);
  p.spki_sha256 = Sha256Of(p.public_key);
  static const char* kHex = "0123456789abcdef";
  p.id = "sha256:";
  for (uint8_t b : *p.spki_sha256) {
    p.id += kHex[b >> 4];
    p.id += kHex[b & 15];
  }
  return p;
}

inline PeerIdentity NullPeer() {
  PeerIdentity p;
  p.auth = AuthKind::kNull;
  p.id = "null";
  return p;
}

inline SaInfo MakeSa(uint64_t child, uint64_t ike, const char* local_ip,
                     const char* remote_ip, PeerIdentity peer, PeerIdentity local) {
  SaInfo sa;
  sa.child_sa_id = child;
  sa.ike_sa_id = ike;
  sa.peer = std::move(peer);
  sa.local = std::move(local);
  sa.policy_name = "btns-hosts";
  sa.algorithms = "ENCR_AES_GCM_16-256";
  sa.local_ts = {HostTs(local_ip)};
  sa.remote_ts = {HostTs(remote_ip)};
  return sa;
}

inline sockaddr_in Addr(const char* ip, uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  inet_pton(AF_INET, ip, &a.sin_addr);
  return a;
}

inline uint16_t PortOf(int fd) {
  sockaddr_in a{};
  socklen_t len = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  return ntohs(a.sin_port);
}

inline int BoundSocket(int type, const char* ip, uint16_t port = 0) {
  int fd = socket(AF_INET, type | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a = Addr(ip, port);
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

class ApiFixture : public ::testing::Test {
 protected:
  void StartEndpoint(std::optional<gid_t> group = std::nullopt, mode_t mode = 0660) {
    char tmpl[] = "/tmp/btns-api-test-XXXXXX";
    dir_ = mkdtemp(tmpl);
    chmod(dir_.c_str(), 0711);  // a second uid must reach the socket
    path_ = dir_ + "/api.sock";
    std::string why;
    int fd = CreateEndpoint({path_, group, mode}, &why);
    ASSERT_GE(fd, 0) << why;
    server_ = std::make_unique<Server>(fake_);
    runner_ = std::make_unique<EpollRunner>(*server_, fd);
    thread_ = std::thread([this] { runner_->Run(); });
    ipsec_api_set_endpoint(path_.c_str());
  }

  void SetUp() override { StartEndpoint(); }

  void TearDown() override {
    ipsec_api_set_endpoint(nullptr);
    if (runner_) runner_->Stop();
    if (thread_.joinable()) thread_.join();
    runner_.reset();
    server_.reset();
    unlink(path_.c_str());
    rmdir(dir_.c_str());
  }

  // Runs `f` on the server's thread and waits for it.
  template <typename F>
  auto OnLoop(F f) -> decltype(f()) {
    std::packaged_task<decltype(f())()> task(f);
    auto result = task.get_future();
    runner_->Post([&task] { task(); });
    return result.get();
  }

  void AddSa(const SaInfo& sa) {
    OnLoop([&] { fake_.AddSa(sa); });
  }

  // A TCP connection from client_ip to a listener on server_ip.
  struct TcpPair {
    int listener = -1, client = -1, accepted = -1;
    ~TcpPair() {
      for (int fd : {listener, client, accepted}) {
        if (fd >= 0) close(fd);
      }
    }
  };
  void Connect(TcpPair* p, const char* client_ip, const char* server_ip) {
    p->listener = BoundSocket(SOCK_STREAM, server_ip);
    ASSERT_GE(p->listener, 0);
    ASSERT_EQ(listen(p->listener, 4), 0);
    p->client = BoundSocket(SOCK_STREAM, client_ip);
    ASSERT_GE(p->client, 0);
    sockaddr_in to = Addr(server_ip, PortOf(p->listener));
    ASSERT_EQ(connect(p->client, reinterpret_cast<sockaddr*>(&to), sizeof to), 0);
    p->accepted = accept4(p->listener, nullptr, nullptr, SOCK_CLOEXEC);
    ASSERT_GE(p->accepted, 0);
  }

  FakeSaDirectory fake_;
  std::unique_ptr<Server> server_;
  std::unique_ptr<EpollRunner> runner_;
  std::thread thread_;
  std::string dir_;
  std::string path_;
};

}  // namespace btns_api::testing

#endif  // TESTS_BTNS_API_API_FIXTURE_H_
