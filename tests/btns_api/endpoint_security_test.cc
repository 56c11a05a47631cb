// The endpoint against hostile or broken clients: raw frames (malformed,
// oversized, out of order, bad descriptors) and a second uid that tries to
// learn about or change another process's connections.
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/un.h>
#include <sys/wait.h>

#include "btns_api/btns_api.pb.h"
#include "tests/btns_api/api_fixture.h"

namespace btns_api::testing {
namespace {

namespace pb = btns::api::v1;

// A client that speaks the wire format directly.
class RawClient {
 public:
  explicit RawClient(const std::string& path) {
    fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::snprintf(a.sun_path, sizeof a.sun_path, "%s", path.c_str());
    connected_ = connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  }
  ~RawClient() { close(fd_); }
  bool connected() const { return connected_; }

  void SendRaw(const std::string& bytes, std::vector<int> fds = {}) {
    iovec iov{const_cast<char*>(bytes.data()), bytes.size()};
    msghdr m{};
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 16)];
    if (!fds.empty()) {
      m.msg_control = control;
      m.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
      cmsghdr* c = CMSG_FIRSTHDR(&m);
      c->cmsg_level = SOL_SOCKET;
      c->cmsg_type = SCM_RIGHTS;
      c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
      std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
    }
    ASSERT_EQ(sendmsg(fd_, &m, MSG_NOSIGNAL), static_cast<ssize_t>(bytes.size()));
  }
  static std::string Frame(const std::string& payload) {
    std::string f;
    AppendFrame(payload, &f);
    return f;
  }
  void Send(const pb::Request& r, std::vector<int> fds = {}) {
    SendRaw(Frame(r.SerializeAsString()), std::move(fds));
  }
  // Reads one reply; false on EOF or timeout.
  bool Read(pb::Reply* r, int timeout_ms = 2000) {
    while (true) {
      if (buf_.size() >= 4) {
        const auto* p = reinterpret_cast<const uint8_t*>(buf_.data());
        size_t len = (size_t{p[0]} << 24) | (size_t{p[1]} << 16) | (size_t{p[2]} << 8) | p[3];
        if (buf_.size() >= 4 + len) {
          bool ok = r->ParseFromArray(buf_.data() + 4, static_cast<int>(len));
          buf_.erase(0, 4 + len);
          return ok;
        }
      }
      pollfd pfd{fd_, POLLIN, 0};
      if (poll(&pfd, 1, timeout_ms) != 1) return false;
      char b[4096];
      ssize_t n = recv(fd_, b, sizeof b, 0);
      if (n <= 0) return false;
      buf_.append(b, static_cast<size_t>(n));
    }
  }
  bool ClosedByServer() {
    pollfd pfd{fd_, POLLIN, 0};
    if (poll(&pfd, 1, 2000) != 1) return false;
    char b;
    return recv(fd_, &b, 1, MSG_PEEK) == 0;
  }

 private:
  int fd_;
  bool connected_ = false;
  std::string buf_;
};

pb::Request GetRequest(uint64_t id, uint32_t fd_count = 1) {
  pb::Request r;
  r.set_version(1);
  r.set_id(id);
  r.set_fd_count(fd_count);
  r.mutable_get_socket_ptoken();
  return r;
}

class Endpoint : public ApiFixture {
 protected:
  void SetUp() override {
    ApiFixture::SetUp();
    AddSa(MakeSa(1, 10, "127.0.0.2", "127.0.0.1", CertPeer("bob", 1), RawKeyPeer(2)));
  }
};

TEST_F(Endpoint, SocketIsCreatedWithTheRequestedModeOnly) {
  struct stat st;
  ASSERT_EQ(stat(path_.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0660u);
  std::string why;
  EXPECT_EQ(CreateEndpoint({dir_ + "/wide.sock", std::nullopt, 0666}, &why), -1);
  EXPECT_NE(why.find("0660"), std::string::npos);
}

TEST_F(Endpoint, SeveralRequestsInFlightAreAnsweredById) {
  TcpPair c;
  Connect(&c, "127.0.0.2", "127.0.0.1");
  RawClient raw(path_);
  ASSERT_TRUE(raw.connected());
  std::string both = RawClient::Frame(GetRequest(5).SerializeAsString()) +
                     RawClient::Frame(GetRequest(9).SerializeAsString());
  raw.SendRaw(both, {c.client, c.accepted});
  pb::Reply r1, r2;
  ASSERT_TRUE(raw.Read(&r1));
  ASSERT_TRUE(raw.Read(&r2));
  EXPECT_EQ(r1.id(), 5u);
  EXPECT_EQ(r2.id(), 9u);
  EXPECT_FALSE(r1.has_error());
  EXPECT_EQ(r1.ptoken().peer().identity(), "fqdn:bob");
  // The second descriptor is the accepted side, which no SA covers.
  EXPECT_EQ(r2.ptoken().privacy(), static_cast<uint32_t>(IPSEC_API_ATTR_DISABLE));
}

TEST_F(Endpoint, MalformedFramesGetErrorsAndOtherClientsAreUnaffected) {
  TcpPair c;
  Connect(&c, "127.0.0.2", "127.0.0.1");
  RawClient raw(path_);
  raw.SendRaw(RawClient::Frame(std::string("\xff\xff\xff\x0f garbage", 12)));
  pb::Reply r;
  ASSERT_TRUE(raw.Read(&r));
  EXPECT_EQ(r.error().errno_value(), static_cast<uint32_t>(EBADMSG));
  EXPECT_EQ(r.error().reason(), static_cast<uint32_t>(Why::kMalformed));

  pb::Request wrong_version = GetRequest(1);
  wrong_version.set_version(7);
  raw.Send(wrong_version, {c.client});
  ASSERT_TRUE(raw.Read(&r));
  EXPECT_EQ(r.error().errno_value(), static_cast<uint32_t>(EPROTONOSUPPORT));
  EXPECT_NE(r.error().why().find("version 7"), std::string::npos);

  raw.Send(GetRequest(10), {c.client});
  ASSERT_TRUE(raw.Read(&r));
  EXPECT_FALSE(r.has_error()) << r.error().why();
  raw.Send(GetRequest(10), {c.client});  // id not increasing: out of order
  ASSERT_TRUE(raw.Read(&r));
  EXPECT_EQ(r.error().errno_value(), static_cast<uint32_t>(EPROTO));

  pb::Request no_body;
  no_body.set_version(1);
  no_body.set_id(11);
  raw.Send(no_body);
  ASSERT_TRUE(raw.Read(&r));
  EXPECT_EQ(r.error().errno_value(), static_cast<uint32_t>(EOPNOTSUPP));

  raw.Send(GetRequest(12, 0));  // needs a socket, none announced
  ASSERT_TRUE(raw.Read(&r));
  EXPECT_EQ(r.error().reason(), static_cast<uint32_t>(Why::kNoDescriptor));

  // Meanwhile the library's own connection works.
  ipsec_pToken_t p = ipsec_create_pToken();
  EXPECT_EQ(ipsec_get_socket_pToken(c.client, p), 0) << ipsec_api_why();
  ipsec_free_pToken(p);

  // An oversized length closes only that connection.
  raw.SendRaw(std::string("\x7f\xff\xff\xff", 4));
  ASSERT_TRUE(raw.Read(&r));
  EXPECT_EQ(r.error().errno_value(), static_cast<uint32_t>(EMSGSIZE));
  EXPECT_TRUE(raw.ClosedByServer());
  p = ipsec_create_pToken();
  EXPECT_EQ(ipsec_get_socket_pToken(c.client, p), 0) << ipsec_api_why();
  ipsec_free_pToken(p);
}

size_t OpenDescriptors() {
  size_t n = 0;
  if (DIR* d = opendir("/proc/self/fd")) {
    while (readdir(d) != nullptr) ++n;
    closedir(d);
  }
  return n;
}

// Many requests queued at once (read in batches), then the end of the
// connection among them: every request before it is answered in order,
// and every descriptor the server received is closed.
TEST_F(Endpoint, QueuedRequestsAreAnsweredInOrderAndTheirDescriptorsClosed) {
  TcpPair c;
  Connect(&c, "127.0.0.2", "127.0.0.1");
  const size_t before = OpenDescriptors();
  constexpr uint64_t kQueued = 40;
  {
    RawClient raw(path_);
    ASSERT_TRUE(raw.connected());
    raw.Send(GetRequest(1), {c.client});  // answered at once, nothing queued
    pb::Reply first;
    ASSERT_TRUE(raw.Read(&first));
    for (uint64_t id = 2; id <= kQueued; ++id) raw.Send(GetRequest(id), {c.client});
    for (uint64_t id = 2; id <= kQueued; ++id) {
      pb::Reply r;
      ASSERT_TRUE(raw.Read(&r)) << "reply " << id;
      EXPECT_EQ(r.id(), id);
      EXPECT_EQ(r.ptoken().peer().identity(), "fqdn:bob") << "reply " << id;
    }
    // Queued again, and the connection closed behind them unread.
    for (uint64_t id = kQueued + 1; id <= 2 * kQueued; ++id) raw.Send(GetRequest(id), {c.client});
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (OpenDescriptors() != before && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ(OpenDescriptors(), before);
}

TEST_F(Endpoint, DescriptorCountMismatchClosesTheConnection) {
  RawClient raw(path_);
  raw.Send(GetRequest(1, 2));  // announces two, sends none
  pb::Reply r;
  ASSERT_TRUE(raw.Read(&r));
  EXPECT_EQ(r.error().errno_value(), static_cast<uint32_t>(EBADF));
  EXPECT_TRUE(raw.ClosedByServer());

  RawClient flood(path_);  // more descriptors than any request may claim
  int fds[9];
  for (int& f : fds) f = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  flood.SendRaw(std::string("\0\0", 2), std::vector<int>(fds, fds + 9));
  ASSERT_TRUE(flood.Read(&r));
  EXPECT_EQ(r.error().errno_value(), static_cast<uint32_t>(EMFILE));
  EXPECT_TRUE(flood.ClosedByServer());
  for (int f : fds) close(f);
}

TEST_F(Endpoint, DescriptorMustBeAnInetSocket) {
  int pipefd[2];
  ASSERT_EQ(pipe2(pipefd, O_CLOEXEC), 0);
  ipsec_pToken_t p = ipsec_create_pToken();
  EXPECT_EQ(ipsec_get_socket_pToken(pipefd[0], p), -1);
  EXPECT_EQ(errno, ENOTSOCK);
  EXPECT_EQ(ipsec_api_why_code(), IPSEC_API_WHY_NOT_A_SOCKET);
  int unix_pair[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, unix_pair), 0);
  EXPECT_EQ(ipsec_get_socket_pToken(unix_pair[0], p), -1);
  EXPECT_EQ(errno, EAFNOSUPPORT);
  int unconnected = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  EXPECT_EQ(ipsec_get_socket_pToken(unconnected, p), -1);
  EXPECT_EQ(errno, ENOTCONN);
  for (int f : {pipefd[0], pipefd[1], unix_pair[0], unix_pair[1], unconnected}) close(f);
  ipsec_free_pToken(p);
}

// A second uid, in a forked child, against the parent's connection.
class SecondUser : public ApiFixture {
 protected:
  static constexpr uid_t kNobody = 65534;
  void SetUp() override {
    if (geteuid() != 0) GTEST_FAIL() << "this test must run as root (it calls setuid)";
    StartEndpoint(static_cast<gid_t>(kNobody), 0660);
    AddSa(MakeSa(1, 10, "127.0.0.2", "127.0.0.1", CertPeer("bob", 1), RawKeyPeer(2)));
  }
  void TearDown() override { ApiFixture::TearDown(); }
};

TEST_F(SecondUser, CannotLearnOrChangeAnotherProcesssConnections) {
  TcpPair c;
  Connect(&c, "127.0.0.2", "127.0.0.1");
  uint64_t latch = 0;
  ASSERT_EQ(ipsec_subscribe_latch(c.client, &latch), 0) << ipsec_api_why();
  int listener_port = PortOf(c.listener);
  int report[2];
  ASSERT_EQ(pipe(report), 0);
  const int parent_client = c.client;

  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    close(report[0]);
    std::string out;
    auto note = [&](const std::string& k, long v) { out += k + "=" + std::to_string(v) + "\n"; };
    // Give up the parent's descriptors first: this process holds none.
    close(c.client);
    close(c.accepted);
    close(c.listener);
    if (setgid(kNobody) != 0 || setuid(kNobody) != 0) _exit(3);
    note("uid", static_cast<long>(getuid()));
    ipsec_pToken_t p = ipsec_create_pToken();
    // (1) The parent's descriptor number names nothing here.
    note("stolen_fd_rc", ipsec_get_socket_pToken(parent_client, p));
    note("stolen_fd_errno", errno);
    // (2) The parent's latch id cannot be released or heard from here.
    note("release_rc", ipsec_release_latch(latch));
    note("release_why", ipsec_api_why_code());
    // (3) Its own connection to the same server is its own conversation.
    int fd = BoundSocket(SOCK_STREAM, "127.0.0.5");
    sockaddr_in to = Addr("127.0.0.1", static_cast<uint16_t>(listener_port));
    note("connect_rc", connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof to));
    note("own_rc", ipsec_get_socket_pToken(fd, p));
    uint16_t privacy = 0;
    uint32_t len = sizeof privacy;
    ipsec_get_token_attr(p, IPSEC_API_ATTR_privacyProtected, &len, &privacy);
    note("own_privacy", privacy);
    // (4) Presenting an identity its uid is not allowed to use.
    ipsec_iToken_t alice = get_new_iToken("alice");
    ipsec_pToken_t t = get_new_pToken(alice, DEFAULT_INITIATOR_ITOKEN);
    int fresh = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    note("identity_rc", ipsec_set_socket_pToken(fresh, t));
    note("identity_errno", errno);
    note("identity_why", ipsec_api_why_code());
    (void)!write(report[1], out.data(), out.size());
    _exit(0);
  }
  close(report[1]);
  std::string text;
  char buf[512];
  ssize_t n;
  while ((n = read(report[0], buf, sizeof buf)) > 0) text.append(buf, static_cast<size_t>(n));
  close(report[0]);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "child status " << status;
  auto value = [&](const std::string& key) {
    auto pos = text.find(key + "=");
    EXPECT_NE(pos, std::string::npos) << key << " missing in:\n" << text;
    return pos == std::string::npos ? -999 : std::stol(text.substr(pos + key.size() + 1));
  };
  EXPECT_EQ(value("uid"), 65534);
  EXPECT_EQ(value("stolen_fd_rc"), -1);
  EXPECT_EQ(value("stolen_fd_errno"), EBADF);
  EXPECT_EQ(value("release_rc"), -1);
  EXPECT_EQ(value("release_why"), IPSEC_API_WHY_UNKNOWN_LATCH);
  EXPECT_EQ(value("connect_rc"), 0);
  EXPECT_EQ(value("own_rc"), 0);
  EXPECT_EQ(value("own_privacy"), IPSEC_API_ATTR_DISABLE);
  EXPECT_EQ(value("identity_rc"), -1);
  EXPECT_EQ(value("identity_errno"), EACCES);
  EXPECT_EQ(value("identity_why"), IPSEC_API_WHY_PRIVILEGE_REQUIRED);
  // The server saw the child's real uid (SO_PEERCRED).
  bool saw_nobody = false;
  for (const auto& r : fake_.requests()) saw_nobody |= r.request.caller.uid == kNobody;
  EXPECT_TRUE(saw_nobody);
  // The parent's latch is untouched.
  ipsec_pToken_t p = ipsec_create_pToken();
  ASSERT_EQ(ipsec_get_socket_pToken(c.client, p), 0);
  uint64_t still = 0;
  uint32_t len = sizeof still;
  ASSERT_EQ(ipsec_get_token_attr(p, IPSEC_API_ATTR_latchID, &len, &still), 0);
  EXPECT_EQ(still, latch);
  ipsec_free_pToken(p);
}

}  // namespace
}  // namespace btns_api::testing
