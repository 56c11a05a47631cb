// api.grants and api.admin_group against real callers: forked processes of
// another uid whose supplementary groups (setgroups) do or do not hold the
// granted group reach the daemon's API service over its Unix socket; the
// groups come from the connection itself (SO_PEERGROUPS). Needs root.
#include <grp.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <btns/ipsec_api.h>

#include "btns_api/admin.h"
#include "daemon/api_bridge.h"

namespace btnsd::daemon {
namespace {

constexpr uid_t kNobody = 65534;
constexpr gid_t kNogroup = 65534;
constexpr gid_t kGranted = 4711;

std::shared_ptr<ike::policy::PolicySnapshot> Policy() {
  auto snapshot = std::make_shared<ike::policy::PolicySnapshot>();
  snapshot->source_file = "test.yaml";
  ike::policy::LocalIdentity alice;
  alice.name = "alice";
  alice.id = ike::policy::Identity::Fqdn("alice.example");
  snapshot->identities = {alice};
  ike::policy::ApiGrant grant;
  grant.name = "ipsec-users";
  grant.gids = {kGranted};
  grant.identities = {"alice"};
  snapshot->api.grants = {grant};
  return snapshot;
}

struct Outcome {
  int rc = -1;
  int error = 0;
  int why = 0;
};

class GrantsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root to change uid and groups (root in CI)";
    ASSERT_NE(mkdtemp(folder_), nullptr);
    ASSERT_EQ(chmod(folder_, 0755), 0);
    path_ = std::string(folder_) + "/api.sock";
    service_ = std::make_unique<ApiService>(bridge_);
    std::string why;
    ASSERT_TRUE(service_->Start(path_, "", &why)) << why;
    // Reachable by nogroup's members; the grant is another group.
    ASSERT_EQ(chown(path_.c_str(), static_cast<uid_t>(-1), kNogroup), 0);
    ASSERT_EQ(chmod(path_.c_str(), 0660), 0);
  }
  void TearDown() override {
    if (service_) service_->Stop("test done");
    unlink(path_.c_str());
    rmdir(folder_);
  }

  // In a child of uid/gid nobody with `groups` as its supplementary groups:
  // ipsec_set_socket_pToken with the local identity alice on a listening
  // socket (the grant is all that is checked for a listener).
  Outcome PresentAliceAs(const std::vector<gid_t>& groups) {
    int report[2];
    if (pipe(report) != 0) return {};
    pid_t pid = fork();
    if (pid == 0) {
      close(report[0]);
      if (setgroups(groups.size(), groups.data()) != 0 || setgid(kNogroup) != 0 ||
          setuid(kNobody) != 0)
        _exit(3);
      Outcome out;
      ipsec_api_set_endpoint(path_.c_str());
      int listener = socket(AF_INET, SOCK_STREAM, 0);
      sockaddr_in any{};
      any.sin_family = AF_INET;
      any.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      if (bind(listener, reinterpret_cast<sockaddr*>(&any), sizeof any) != 0 ||
          listen(listener, 1) != 0)
        _exit(4);
      ipsec_iToken_t alice = get_new_iToken("alice");
      ipsec_pToken_t wanted = get_new_pToken(alice, DEFAULT_INITIATOR_ITOKEN);
      out.rc = ipsec_set_socket_pToken(listener, wanted);
      out.error = errno;
      out.why = ipsec_api_why_code();
      (void)!write(report[1], &out, sizeof out);
      _exit(0);
    }
    close(report[1]);
    Outcome out;
    const bool complete = read(report[0], &out, sizeof out) == sizeof out;
    close(report[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "child status " << status;
    EXPECT_TRUE(complete);
    return out;
  }

  char folder_[32] = "/tmp/btns-grants.XXXXXX";
  std::string path_;
  ApiBridge bridge_{Policy()};
  std::unique_ptr<ApiService> service_;
};

TEST_F(GrantsTest, ASupplementaryGroupGrantsAConfiguredIdentity) {
  const Outcome granted = PresentAliceAs({100, kGranted});
  EXPECT_EQ(granted.rc, 0) << "errno " << granted.error << " why " << granted.why;
  const Outcome refused = PresentAliceAs({100, kGranted + 1});
  EXPECT_EQ(refused.rc, -1);
  EXPECT_EQ(refused.error, EACCES);
  EXPECT_EQ(refused.why, IPSEC_API_WHY_PRIVILEGE_REQUIRED);
  const Outcome none = PresentAliceAs({});
  EXPECT_EQ(none.rc, -1);
  EXPECT_EQ(none.why, IPSEC_API_WHY_PRIVILEGE_REQUIRED);
}

// The connection itself names the groups: the kernel's SO_PEERGROUPS, or
// /proc/PID/status only while that pid still has SO_PEERCRED's ids.
TEST(PeerCaller, GroupsComeFromTheConnection) {
  int pair[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, pair), 0);
  std::optional<btns_api::Caller> caller = btns_api::ReadPeerCaller(pair[0]);
  ASSERT_TRUE(caller.has_value());
  EXPECT_EQ(caller->pid, getpid());
  EXPECT_EQ(caller->uid, geteuid());
  EXPECT_EQ(caller->gid, getegid());
  gid_t own[256];
  const int n = getgroups(256, own);
  ASSERT_GE(n, 0);
  EXPECT_EQ(caller->groups, std::vector<gid_t>(own, own + n));
  close(pair[0]);
  close(pair[1]);

  auto read = btns_api::ProcessGroups(getpid(), geteuid(), getegid());
  ASSERT_TRUE(read.has_value());
  EXPECT_EQ(*read, std::vector<gid_t>(own, own + n));
  // Another process behind the pid by now (other ids): nothing, not its groups.
  EXPECT_FALSE(btns_api::ProcessGroups(getpid(), geteuid() + 1, getegid()).has_value());
  EXPECT_FALSE(btns_api::ProcessGroups(getpid(), geteuid(), getegid() + 1).has_value());
  EXPECT_FALSE(btns_api::ProcessGroups(0, 0, 0).has_value());
}

}  // namespace
}  // namespace btnsd::daemon
