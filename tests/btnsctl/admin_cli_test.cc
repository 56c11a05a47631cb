// btnsctl's administrative commands against a real API endpoint (Unix
// socket, epoll runner, btns_api::Server) whose admin backend is a fake:
// output, --json, exit codes, and the server's admin gate (SO_PEERCRED).
#include <grp.h>
#include <sys/wait.h>

#include <gtest/gtest.h>

#include <atomic>
#include <sstream>

#include "btns/ipsec_api.h"
#include "btns_api/admin.h"
#include "tests/btns_api/api_fixture.h"
#include "tools/btnsctl/cli.h"

namespace btns_api::testing {
namespace {

namespace pb = btns::api::v1;

class FakeAdmin : public AdminBackend {
 public:
  std::optional<gid_t> AdminGroup() override { return admin_gid; }
  std::string AdminGroupName() override { return admin_gid ? "btns-admin" : ""; }
  Status Handle(const pb::Request& request, pb::Reply* reply) override {
    ++calls;
    last_case = request.body_case();
    switch (request.body_case()) {
      case pb::Request::kAdminListSas: {
        pb::IkeSaStatus* ike = reply->mutable_sa_list()->add_ike_sas();
        ike->set_id(7);
        ike->set_state("established");
        ike->set_initiator(true);
        ike->set_local("192.0.2.1:500");
        ike->set_remote("192.0.2.2:500");
        ike->set_peer_id("null");
        ike->set_auth_method("null");
        ike->set_pad_entry("anyone");
        ike->set_initiator_spi(0x1122334455667788ULL);
        ike->set_algorithms("AES_GCM_16-256/PRF_HMAC_SHA2_256/CURVE_25519");
        pb::ChildSaStatus* c = ike->add_children();
        c->set_id(9);
        c->set_spd_entry("hosts");
        c->set_mode("transport");
        c->set_inbound_spi(0xc0ffee01);
        c->set_outbound_spi(0xc0ffee02);
        c->set_algorithms("rfc4106(gcm(aes))-256");
        c->add_local_ts("192.0.2.1/32");
        c->add_remote_ts("192.0.2.2/32");
        c->set_bytes_in(840);
        c->set_packets_in(10);
        c->set_state("active");
        // The CHILD SA #9 replaced, waiting for its Delete.
        pb::ChildSaStatus* old = ike->add_children();
        old->set_id(8);
        old->set_spd_entry("hosts");
        old->set_inbound_spi(0xc0ffee03);
        old->set_outbound_spi(0xc0ffee04);
        old->set_state("rekeyed");
        // The old SPIs of a rekeyed IKE SA.
        pb::IkeSaStatus* retired = reply->mutable_sa_list()->add_ike_sas();
        retired->set_id(12);
        retired->set_state("rekeyed");
        retired->set_local("192.0.2.1:500");
        retired->set_remote("192.0.2.2:500");
        retired->set_initiator_spi(0xaabbccdd00112233ULL);
        retired->set_responder_spi(0x4455667788990011ULL);
        return Status::Ok();
      }
      case pb::Request::kAdminListPolicy: {
        pb::PolicyList* p = reply->mutable_policy_list();
        p->set_source_file("/etc/btnsd/btnsd.yaml");
        pb::PadEntryStatus* pad = p->add_pad();
        pad->set_name("anyone");
        pad->set_peer("any");
        pad->set_auth("btns");
        pad->set_btns(true);
        pb::SpdEntryStatus* spd = p->add_spd();
        spd->set_name("hosts");
        spd->set_action("protect");
        spd->set_start("trap");
        spd->set_peer("anyone");
        spd->set_mode("transport");
        spd->set_child_sas(1);
        pb::SpdEntryStatus* bypass = p->add_spd();
        bypass->set_name("dns");
        bypass->set_action("bypass");
        return Status::Ok();
      }
      case pb::Request::kAdminTerminate:
        if (request.admin_terminate().ike_sa_id() != 7)
          return Status::Fail(ESRCH, Why::kBadArgument, "no IKE SA #" +
                              std::to_string(request.admin_terminate().ike_sa_id()));
        reply->mutable_admin_result()->set_message("terminating IKE SA #7");
        return Status::Ok();
      case pb::Request::kAdminRekey:
        child_rekeyed = request.admin_rekey().child_sa_id();
        reply->mutable_admin_result()->set_message("rekeying");
        return Status::Ok();
      case pb::Request::kAdminReload:
        reply->mutable_admin_result()->add_errors(
            "/etc/btnsd/btnsd.yaml:12:7: spd[0].peer: no PAD entry 'nobody'");
        reply->mutable_admin_result()->set_message("1 error; running configuration kept");
        return Status::Fail(EINVAL, Why::kBadArgument,
                            "/etc/btnsd/btnsd.yaml: 1 error; running configuration kept");
      case pb::Request::kAdminStats: {
        pb::Counter* c = reply->mutable_stats()->add_counters();
        c->set_name("ike_sa_up");
        c->set_value(3);
        return Status::Ok();
      }
      case pb::Request::kAdminVersion:
        reply->mutable_version_info()->set_daemon("btnsd test");
        return Status::Ok();
      default:
        return Status::Fail(EOPNOTSUPP, Why::kNotSupported, "not in the fake");
    }
  }

  std::optional<gid_t> admin_gid;
  std::atomic<int> calls{0};
  std::atomic<int> last_case{0};
  std::atomic<uint64_t> child_rekeyed{0};
};

class AdminCliTest : public ApiFixture {
 protected:
  void SetUp() override {
    StartEndpoint(65534, 0660);  // nobody's group may connect
    OnLoop([this] {
      server_->SetAdmin(&admin_);
      return 0;
    });
  }

  int Ctl(std::vector<std::string> args, bool with_socket = true) {
    out_.str("");
    err_.str("");
    if (with_socket) {
      args.push_back("--socket");
      args.push_back(path_);
    }
    return btnsctl::Run(args, out_, err_);
  }

  // Runs btnsctl in a child process as uid 65534 with primary group `gid`
  // and the supplementary groups `groups`.
  int CtlAsNobody(std::vector<std::string> args, gid_t gid, std::string* err_text,
                  const std::vector<gid_t>& groups = {}) {
    if (geteuid() != 0) return -1;
    int pipe_fds[2];
    if (pipe(pipe_fds) != 0) return -1;
    pid_t pid = fork();
    if (pid == 0) {
      close(pipe_fds[0]);
      if (setgroups(groups.size(), groups.data()) != 0 || setgid(gid) != 0 ||
          setuid(65534) != 0)
        _exit(99);
      args.push_back("--socket");
      args.push_back(path_);
      std::ostringstream out, err;
      int rc = btnsctl::Run(args, out, err);
      std::string text = err.str();
      (void)!write(pipe_fds[1], text.data(), text.size());
      _exit(rc);
    }
    close(pipe_fds[1]);
    char buffer[4096];
    ssize_t n;
    err_text->clear();
    while ((n = read(pipe_fds[0], buffer, sizeof buffer)) > 0) err_text->append(buffer, n);
    close(pipe_fds[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }

  FakeAdmin admin_;
  std::ostringstream out_, err_;
};

TEST_F(AdminCliTest, ListSasPrintsATableAndJson) {
  ASSERT_EQ(Ctl({"list-sas"}), 0) << err_.str();
  const std::string text = out_.str();
  EXPECT_NE(text.find("IKE SA #7  established  initiator  192.0.2.1:500 <-> 192.0.2.2:500"),
            std::string::npos) << text;
  EXPECT_NE(text.find("peer:  null  (auth null, unauthenticated, PAD entry anyone)"),
            std::string::npos) << text;
  EXPECT_NE(text.find("1122334455667788_i"), std::string::npos) << text;
  EXPECT_NE(text.find("CHILD SA #9  spd hosts  transport  rfc4106(gcm(aes))-256"),
            std::string::npos) << text;
  EXPECT_NE(text.find("spi:     in c0ffee01  out c0ffee02"), std::string::npos) << text;
  EXPECT_NE(text.find("traffic: in 840 bytes / 10 packets"), std::string::npos) << text;
  // Replaced SAs are marked, not shown as live ones.
  EXPECT_NE(text.find("CHILD SA #8  spd hosts  -  -  [replaced, kept until its Delete completes]"),
            std::string::npos) << text;
  EXPECT_EQ(text.find("CHILD SA #9  spd hosts  transport  rfc4106(gcm(aes))-256  ["),
            std::string::npos) << text;
  EXPECT_NE(text.find("IKE SA #12  rekeyed  192.0.2.1:500 <-> 192.0.2.2:500  old spi "
                      "aabbccdd00112233_i 4455667788990011_r, replaced; kept until its "
                      "Delete exchange completes\n"),
            std::string::npos) << text;
  EXPECT_EQ(text.find("IKE SA #12  rekeyed  responder"), std::string::npos) << text;

  ASSERT_EQ(Ctl({"list-sas", "--json"}), 0);
  const std::string json = out_.str();
  EXPECT_EQ(json.rfind("{\"ike_sas\":[{\"id\":\"7\"", 0), 0u) << json;
  EXPECT_NE(json.find("\"inbound_spi\":3237998081"), std::string::npos) << json;
  EXPECT_NE(json.find("\"bytes_in\":\"840\""), std::string::npos) << json;
}

TEST_F(AdminCliTest, PolicyViews) {
  ASSERT_EQ(Ctl({"list-pad"}), 0);
  EXPECT_NE(out_.str().find("anyone  any   btns  yes"), std::string::npos) << out_.str();
  ASSERT_EQ(Ctl({"list-spd"}), 0);
  EXPECT_NE(out_.str().find("dns"), std::string::npos);
  ASSERT_EQ(Ctl({"list-conns"}), 0);
  EXPECT_EQ(out_.str().find("dns"), std::string::npos) << "bypass is no connection";
  EXPECT_NE(out_.str().find("up (1 CHILD SA)"), std::string::npos) << out_.str();
  ASSERT_EQ(Ctl({"list-conns", "--json"}), 0);
  EXPECT_EQ(out_.str().find("\"pad\":[{"), std::string::npos) << out_.str();
  EXPECT_EQ(out_.str().find("dns"), std::string::npos) << out_.str();
}

TEST_F(AdminCliTest, OperationsAndTheirFailures) {
  ASSERT_EQ(Ctl({"terminate", "7"}), 0) << err_.str();
  EXPECT_EQ(out_.str(), "terminating IKE SA #7\n");
  EXPECT_EQ(Ctl({"terminate", "8"}), 1);
  EXPECT_NE(err_.str().find("no IKE SA #8"), std::string::npos) << err_.str();
  ASSERT_EQ(Ctl({"rekey", "--child", "9"}), 0);
  EXPECT_EQ(admin_.child_rekeyed.load(), 9u);
  ASSERT_EQ(Ctl({"rekey", "child:11"}), 0);
  EXPECT_EQ(admin_.child_rekeyed.load(), 11u);
  EXPECT_EQ(Ctl({"reload"}), 1);
  EXPECT_NE(err_.str().find("  /etc/btnsd/btnsd.yaml:12:7: spd[0].peer"), std::string::npos)
      << err_.str();
  EXPECT_EQ(Ctl({"reload", "--json"}), 1);
  EXPECT_NE(out_.str().find("\"errors\":[\"/etc/btnsd/btnsd.yaml:12:7:"), std::string::npos)
      << out_.str();
}

TEST_F(AdminCliTest, UsageErrorsExit2WithoutCallingTheDaemon) {
  EXPECT_EQ(Ctl({"terminate"}), 2);
  EXPECT_NE(err_.str().find("usage: btnsctl terminate"), std::string::npos);
  EXPECT_EQ(Ctl({"terminate", "x7"}), 2);
  EXPECT_NE(err_.str().find("is not an SA id"), std::string::npos);
  EXPECT_EQ(Ctl({"list-sas", "--bogus"}), 2);
  EXPECT_EQ(Ctl({"list-sas", "extra"}), 2);
  EXPECT_EQ(Ctl({"events", "--count", "0"}), 2);
  EXPECT_EQ(Ctl({"frobnicate"}, false), 2);
  EXPECT_EQ(Ctl({}, false), 2);
  EXPECT_EQ(admin_.calls.load(), 0);
}

TEST_F(AdminCliTest, NoDaemonExits3AndSaysWhatToDo) {
  out_.str("");
  err_.str("");
  EXPECT_EQ(btnsctl::Run({"list-sas", "--socket", dir_ + "/nothing.sock"}, out_, err_), 3);
  EXPECT_NE(err_.str().find("is btnsd running? socket " + dir_ + "/nothing.sock"),
            std::string::npos) << err_.str();
}

TEST_F(AdminCliTest, StatsAndVersionAddTheServersOwnFacts) {
  ASSERT_EQ(Ctl({"stats"}), 0);
  EXPECT_NE(out_.str().find("ike_sa_up"), std::string::npos);
  EXPECT_NE(out_.str().find("api_clients"), std::string::npos) << out_.str();
  ASSERT_EQ(Ctl({"version", "--json"}), 0);
  EXPECT_EQ(out_.str(), "{\"daemon\":\"btnsd test\",\"api_version\":1}\n");
}

TEST_F(AdminCliTest, EventsFollowsUntilCount) {
  int rc = -1;
  std::ostringstream out, err;
  std::thread follower([&] {
    rc = btnsctl::Run({"events", "--count", "2", "--socket", path_, "--timeout", "10"},
                      out, err);
  });
  for (int i = 0; i < 500 && OnLoop([this] { return server_->follower_count(); }) == 0; ++i)
    usleep(10000);
  OnLoop([this] {
    pb::AdminEvent e;
    e.set_kind("child-sa-up");
    e.set_child_sa_id(4);
    e.set_spd_entry("hosts");
    server_->PublishAdminEvent(e);
    e.set_kind("ike-sa-down");
    e.set_reason("deleted-by-peer");
    server_->PublishAdminEvent(e);
    return 0;
  });
  follower.join();
  EXPECT_EQ(rc, 0) << err.str();
  EXPECT_NE(out.str().find("child-sa-up child_sa=4 spd=hosts"), std::string::npos) << out.str();
  EXPECT_NE(out.str().find("ike-sa-down child_sa=4 spd=hosts reason=deleted-by-peer"),
            std::string::npos) << out.str();
}

TEST_F(AdminCliTest, LatchesOfApplicationsAreListed) {
  SaInfo sa = MakeSa(21, 5, "127.0.0.2", "127.0.0.3", NullPeer(), NullPeer());
  AddSa(sa);
  TcpPair p;
  Connect(&p, "127.0.0.2", "127.0.0.3");
  uint64_t latch = 0;
  ASSERT_EQ(ipsec_subscribe_latch(p.client, &latch), 0);
  ASSERT_EQ(Ctl({"list-latches"}), 0);
  EXPECT_NE(out_.str().find("ESTABLISHED"), std::string::npos) << out_.str();
  EXPECT_NE(out_.str().find("#21"), std::string::npos) << out_.str();
  EXPECT_NE(out_.str().find(std::to_string(getpid())), std::string::npos) << out_.str();
}

// The gate: uid 0 always; another uid only through the admin group.
TEST_F(AdminCliTest, NonAdminGetsExit4AndTheWayOut) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to change uid (runs as root in CI)";
  admin_.admin_gid = 4242;
  std::string err;
  EXPECT_EQ(CtlAsNobody({"list-sas"}, 65534, &err), 4);
  EXPECT_NE(err.find("uid 65534 may not administer btnsd: run as root or join group "
                     "'btns-admin'"),
            std::string::npos) << err;
  EXPECT_EQ(CtlAsNobody({"events", "--count", "1"}, 65534, &err), 4);
  EXPECT_EQ(admin_.calls.load(), 0);
  // Member of the admin group (primary gid here): allowed.
  admin_.admin_gid = 65534;
  EXPECT_EQ(CtlAsNobody({"stats"}, 65534, &err), 0) << err;
  EXPECT_EQ(admin_.calls.load(), 1);
}

// A supplementary group is membership too (SO_PEERGROUPS of the connection).
TEST_F(AdminCliTest, AdminGroupAsASupplementaryGroup) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to change uid (runs as root in CI)";
  admin_.admin_gid = 4242;
  std::string err;
  EXPECT_EQ(CtlAsNobody({"stats"}, 65534, &err, {100, 4242}), 0) << err;
  EXPECT_EQ(admin_.calls.load(), 1);
  EXPECT_EQ(CtlAsNobody({"stats"}, 65534, &err, {100, 4243}), 4);
  EXPECT_EQ(admin_.calls.load(), 1);
}

TEST(AdminGate, SupplementaryGroupsCount) {
  Caller caller{1, 1000, 1000, {27, 4242}};
  EXPECT_FALSE(IsAdmin(caller, std::nullopt));
  EXPECT_FALSE(IsAdmin(caller, 4242424));
  EXPECT_TRUE(IsAdmin(caller, 1000));
  EXPECT_TRUE(IsAdmin(caller, 4242));
  EXPECT_TRUE(IsAdmin(caller, 27));
  // The groups are the connection's: nothing is read from /proc here.
  EXPECT_FALSE(IsAdmin(Caller{getpid(), 1000, 1000, {}}, 4242));
  EXPECT_TRUE(IsAdmin(Caller{1, 0, 0, {}}, std::nullopt));
}

}  // namespace
}  // namespace btns_api::testing
