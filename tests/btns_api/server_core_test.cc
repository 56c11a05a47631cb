// The server core without a loop: input split at every octet, per-session
// limits, and a subscriber that stops reading.
#include <fcntl.h>
#include <poll.h>

#include <atomic>

#include "btns_api/btns_api.pb.h"
#include "tests/btns_api/api_fixture.h"

namespace btns_api::testing {
namespace {

namespace pb = btns::api::v1;

std::string Frame(uint64_t id, bool subscribe = false) {
  pb::Request r;
  r.set_version(1);
  r.set_id(id);
  r.set_fd_count(1);
  if (subscribe) {
    r.mutable_subscribe_latch();
  } else {
    r.mutable_get_socket_ptoken();
  }
  std::string out;
  AppendFrame(r.SerializeAsString(), &out);
  return out;
}

std::vector<pb::Reply> Replies(Server& server, uint64_t session) {
  std::vector<pb::Reply> out;
  std::string_view bytes = server.PendingOutput(session);
  FrameDecoder decoder;
  decoder.Append(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  std::string payload;
  while (decoder.Next(&payload) == FrameResult::kFrame) {
    out.emplace_back();
    EXPECT_TRUE(out.back().ParseFromString(payload));
  }
  server.ConsumeOutput(session, bytes.size());
  return out;
}

class ServerCore : public ::testing::Test {
 protected:
  void SetUp() override {
    SaInfo sa = MakeSa(1, 1, "127.0.0.2", "127.0.0.1", CertPeer("bob", 1), RawKeyPeer(2));
    fake_.AddSa(sa);
  }
  FakeSaDirectory fake_;
};

TEST_F(ServerCore, FrameSplitAtEveryOctetIsStillOneRequest) {
  Server server(fake_);
  uint64_t s = server.OpenSession({1, 0, 0});
  int listener = BoundSocket(SOCK_STREAM, "127.0.0.1");
  ASSERT_EQ(listen(listener, 1), 0);
  int client = BoundSocket(SOCK_STREAM, "127.0.0.2");
  sockaddr_in to = Addr("127.0.0.1", PortOf(listener));
  ASSERT_EQ(connect(client, reinterpret_cast<sockaddr*>(&to), sizeof to), 0);
  std::string f = Frame(1);
  for (size_t i = 0; i < f.size(); ++i) {
    std::vector<int> fds;
    if (i == 0) fds.push_back(fcntl(client, F_DUPFD_CLOEXEC, 0));
    ASSERT_TRUE(server.OnInput(s, reinterpret_cast<const uint8_t*>(&f[i]), 1, std::move(fds)));
    if (i + 1 < f.size()) {
      EXPECT_TRUE(server.PendingOutput(s).empty());
    }
  }
  auto replies = Replies(server, s);
  ASSERT_EQ(replies.size(), 1u);
  EXPECT_EQ(replies[0].ptoken().peer().identity(), "fqdn:bob");
  close(client);
  close(listener);
}

TEST_F(ServerCore, LatchesPerConnectionAreBounded) {
  ServerOptions options;
  options.max_latches_per_session = 2;
  Server server(fake_, options);
  uint64_t s = server.OpenSession({1, 0, 0});
  int listener = BoundSocket(SOCK_STREAM, "127.0.0.1");
  ASSERT_EQ(listen(listener, 4), 0);
  std::vector<int> clients;
  uint64_t id = 0;
  for (int i = 0; i < 3; ++i) {
    int c = BoundSocket(SOCK_STREAM, "127.0.0.2");
    sockaddr_in to = Addr("127.0.0.1", PortOf(listener));
    ASSERT_EQ(connect(c, reinterpret_cast<sockaddr*>(&to), sizeof to), 0);
    clients.push_back(c);
    std::string f = Frame(++id, true);
    server.OnInput(s, reinterpret_cast<const uint8_t*>(f.data()), f.size(),
                   {fcntl(c, F_DUPFD_CLOEXEC, 0)});
  }
  auto replies = Replies(server, s);
  ASSERT_EQ(replies.size(), 3u);
  EXPECT_FALSE(replies[0].has_error());
  EXPECT_FALSE(replies[1].has_error());
  EXPECT_EQ(replies[2].error().errno_value(), static_cast<uint32_t>(ENOSPC));
  EXPECT_EQ(server.latches().size(), 2u);
  server.CloseSession(s);
  EXPECT_EQ(server.latches().size(), 0u);
  for (int c : clients) close(c);
  close(listener);
}

TEST_F(ServerCore, SubscriberThatStopsReadingIsDisconnected) {
  ServerOptions options;
  options.max_output = 2048;
  Server server(fake_, options);
  uint64_t s = server.OpenSession({1, 0, 0});
  int listener = BoundSocket(SOCK_STREAM, "127.0.0.1");
  ASSERT_EQ(listen(listener, 1), 0);
  int c = BoundSocket(SOCK_STREAM, "127.0.0.2");
  sockaddr_in to = Addr("127.0.0.1", PortOf(listener));
  ASSERT_EQ(connect(c, reinterpret_cast<sockaddr*>(&to), sizeof to), 0);
  std::string f = Frame(1, true);
  server.OnInput(s, reinterpret_cast<const uint8_t*>(f.data()), f.size(),
                 {fcntl(c, F_DUPFD_CLOEXEC, 0)});
  SaInfo mallory = MakeSa(9, 9, "127.0.0.2", "127.0.0.1", CertPeer("mallory", 9), RawKeyPeer(2));
  for (int i = 0; i < 100 && !server.WantsClose(s); ++i) {
    fake_.AddSa(mallory);     // BROKEN
    fake_.RemoveSa(9);        // ESTABLISHED again
  }
  EXPECT_TRUE(server.WantsClose(s));
  close(c);
  close(listener);
}

}  // namespace
}  // namespace btns_api::testing

namespace btns_api::testing {
namespace {

// The way a daemon with its own loop drives the runner: wait for
// epoll_fd() to be readable, then PollOnce(0).
TEST(ExternalLoop, EpollFdReadinessDrivesTheRunner) {
  FakeSaDirectory fake;
  fake.AddSa(MakeSa(1, 1, "127.0.0.2", "127.0.0.1", CertPeer("bob", 1), RawKeyPeer(2)));
  Server server(fake);
  char tmpl[] = "/tmp/btns-api-loop-XXXXXX";
  std::string dir = mkdtemp(tmpl);
  std::string path = dir + "/api.sock";
  std::string why;
  int fd = CreateEndpoint({path, std::nullopt, 0600}, &why);
  ASSERT_GE(fd, 0) << why;
  EpollRunner runner(server, fd);
  std::atomic<bool> stop{false};
  std::atomic<int> wakeups{0};
  std::thread loop([&] {
    while (!stop) {
      pollfd p{runner.epoll_fd(), POLLIN, 0};
      if (poll(&p, 1, 20) == 1) {
        ++wakeups;
        runner.PollOnce(0);
      }
    }
  });
  ipsec_api_set_endpoint(path.c_str());
  int listener = BoundSocket(SOCK_STREAM, "127.0.0.1");
  ASSERT_EQ(listen(listener, 1), 0);
  int client = BoundSocket(SOCK_STREAM, "127.0.0.2");
  sockaddr_in to = Addr("127.0.0.1", PortOf(listener));
  ASSERT_EQ(connect(client, reinterpret_cast<sockaddr*>(&to), sizeof to), 0);
  ipsec_pToken_t p = ipsec_create_pToken();
  ASSERT_EQ(ipsec_get_socket_pToken(client, p), 0) << ipsec_api_why();
  ipsec_iToken_t peer = ipsec_get_pToken_iToken(p);
  ASSERT_NE(peer, nullptr);
  char name[32];
  uint32_t len = sizeof name;
  ASSERT_EQ(ipsec_get_token_attr(peer, IPSEC_API_ATTR_identity, &len, name), 0);
  EXPECT_STREQ(name, "fqdn:bob");
  EXPECT_GT(wakeups.load(), 0);
  ipsec_api_set_endpoint(nullptr);
  stop = true;
  loop.join();
  ipsec_free_iToken(peer);
  ipsec_free_pToken(p);
  close(client);
  close(listener);
  unlink(path.c_str());
  rmdir(dir.c_str());
}

}  // namespace
}  // namespace btns_api::testing
