// XfrmNetlink against the machine's own kernel, inside a private network
// namespace (entered before any test runs), so the host's real XFRM state is
// never touched. This kernel has XFRM policies and acquires but may lack
// ESP; SAs carrying traffic are proven in UML (uml_xfrm_test.sh).
#include <arpa/inet.h>
#include <linux/xfrm.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "gtest/gtest.h"
#include "kernel_glue/xfrm_netlink.h"

namespace kernel_glue {
namespace {

constexpr uint32_t kReqid = 0x00b70010;
constexpr uint32_t kPriority = 0x7b200;

IpAddress Ip(const char* text) { return *IpAddress::Parse(text); }

std::string Shell(const std::string& command) {
  std::string output;
  FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return "popen failed";
  char buffer[512];
  while (fgets(buffer, sizeof(buffer), pipe) != nullptr) output += buffer;
  pclose(pipe);
  return output;
}

class HostXfrmTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(std::system("ip xfrm policy flush && ip xfrm state flush"), 0);
    auto glue = XfrmNetlink::Open(XfrmNetlink::Options{});
    ASSERT_TRUE(glue.ok()) << glue.error().ToString();
    glue_ = std::move(glue).value();
  }

  PolicyParams Policy(const char* src, const char* dst, Direction direction,
                      Mode mode = Mode::kTransport) {
    PolicyParams policy;
    policy.id.selector = Selector::HostToHost(Ip(src), Ip(dst));
    policy.id.direction = direction;
    policy.priority = kPriority;
    PolicyTemplate templ;
    templ.mode = mode;
    templ.reqid = kReqid;
    if (mode == Mode::kTunnel) {
      templ.tunnel_src = Ip(src);
      templ.tunnel_dst = Ip(dst);
    }
    policy.templates.push_back(templ);
    return policy;
  }

  std::vector<PolicyInfo> Owned() {
    auto owned = glue_->ListOwned();
    EXPECT_TRUE(owned.ok()) << owned.error().ToString();
    return owned.ok() ? owned.value().policies : std::vector<PolicyInfo>{};
  }

  // Collects events for up to timeout_ms.
  std::vector<KernelEvent> Events(XfrmNetlink& glue, int timeout_ms) {
    std::vector<KernelEvent> all;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (std::chrono::steady_clock::now() < deadline) {
      pollfd descriptor{glue.event_fd(), POLLIN, 0};
      poll(&descriptor, 1, 50);
      auto events = glue.ProcessEvents();
      EXPECT_TRUE(events.ok());
      if (events.ok()) all.insert(all.end(), events.value().begin(), events.value().end());
    }
    return all;
  }

  std::unique_ptr<XfrmNetlink> glue_;
};

void SendUdp(int fd, const char* to, uint16_t port) {
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  inet_pton(AF_INET, to, &address.sin_addr);
  const char payload[] = "probe";
  (void)sendto(fd, payload, sizeof(payload), 0, reinterpret_cast<sockaddr*>(&address), sizeof(address));
}

TEST_F(HostXfrmTest, PolicyAddListUpdateDelete) {
  PolicyParams out = Policy("192.0.2.1", "192.0.2.2", Direction::kOut);
  PolicyParams in = Policy("192.0.2.2", "192.0.2.1", Direction::kIn);
  PolicyParams fwd = Policy("2001:db8::2", "2001:db8::1", Direction::kFwd, Mode::kTunnel);
  fwd.id.mark = Mark{0x42, 0xff};
  for (const PolicyParams* policy : {&out, &in, &fwd}) {
    Status status = glue_->AddPolicy(*policy);
    ASSERT_TRUE(status.ok()) << status.error().ToString();
  }
  std::vector<PolicyInfo> owned = Owned();
  ASSERT_EQ(owned.size(), 3u);
  bool saw_fwd = false;
  for (const PolicyInfo& info : owned) {
    EXPECT_NE(info.index, 0u);
    EXPECT_EQ(info.params.action, PolicyAction::kProtect);
    ASSERT_EQ(info.params.templates.size(), 1u);
    EXPECT_EQ(info.params.templates[0].reqid, kReqid);
    if (info.params.id.direction == Direction::kFwd) {
      saw_fwd = true;
      EXPECT_EQ(info.params, fwd);  // selector, mark, tunnel endpoints round-trip
    }
  }
  EXPECT_TRUE(saw_fwd);
  // iproute2 sees the same policy with its template.
  EXPECT_NE(Shell("ip xfrm policy list dir out").find("tmpl src 0.0.0.0 dst 0.0.0.0"), std::string::npos);

  PolicyParams changed = out;
  changed.priority = kPriority + 5;
  changed.templates[0].reqid = kReqid + 1;
  Status status = glue_->UpdatePolicy(changed);
  ASSERT_TRUE(status.ok()) << status.error().ToString();
  owned = Owned();
  ASSERT_EQ(owned.size(), 3u);
  int updated = 0;
  for (const PolicyInfo& info : owned)
    if (info.params.id == out.id) {
      EXPECT_EQ(info.params.priority, kPriority + 5);
      EXPECT_EQ(info.params.templates[0].reqid, kReqid + 1);
      ++updated;
    }
  EXPECT_EQ(updated, 1);

  for (const PolicyParams* policy : {&out, &in, &fwd}) {
    Status deleted = glue_->DeletePolicy(policy->id);
    ASSERT_TRUE(deleted.ok()) << deleted.error().ToString();
  }
  EXPECT_TRUE(Owned().empty());
  EXPECT_EQ(Shell("ip xfrm policy list"), "");
}

TEST_F(HostXfrmTest, SharedPolicyIsReferenceCounted) {
  PolicyParams out = Policy("192.0.2.1", "192.0.2.2", Direction::kOut);
  ASSERT_TRUE(glue_->AddPolicy(out).ok());
  ASSERT_TRUE(glue_->AddPolicy(out).ok());  // a second CHILD_SA uses it
  EXPECT_EQ(glue_->PolicyUsers(out.id), 2);
  ASSERT_TRUE(glue_->DeletePolicy(out.id).ok());
  EXPECT_EQ(Owned().size(), 1u) << "policy removed while still in use";
  ASSERT_TRUE(glue_->DeletePolicy(out.id).ok());
  EXPECT_TRUE(Owned().empty());

  // Another instance (a restarted daemon without reconciling) hits the
  // kernel's own duplicate check.
  ASSERT_TRUE(glue_->AddPolicy(out).ok());
  auto other = XfrmNetlink::Open(XfrmNetlink::Options{});
  ASSERT_TRUE(other.ok());
  Status duplicate = other.value()->AddPolicy(out);
  ASSERT_FALSE(duplicate.ok());
  EXPECT_EQ(duplicate.error().error_number, EEXIST);
  EXPECT_NE(duplicate.error().operation.find("XFRM_MSG_NEWPOLICY"), std::string::npos);
  // A different policy under the same selector is refused by the counter.
  PolicyParams different = out;
  different.templates[0].reqid = kReqid + 3;
  Status refused = glue_->AddPolicy(different);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().error_number, EEXIST);
}

TEST_F(HostXfrmTest, BatchReportsEachOperation) {
  PolicyParams first = Policy("192.0.2.1", "192.0.2.2", Direction::kOut);
  PolicyParams second = Policy("192.0.2.1", "192.0.2.3", Direction::kOut);
  PolicyParams taken = Policy("192.0.2.1", "192.0.2.4", Direction::kOut);
  PolicyParams third = Policy("192.0.2.1", "192.0.2.5", Direction::kOut);
  PolicyParams foreign = Policy("192.0.2.1", "192.0.2.6", Direction::kOut);
  foreign.priority = 7;
  // Someone else holds `taken` already: only the kernel can refuse it.
  auto other = XfrmNetlink::Open(XfrmNetlink::Options{});
  ASSERT_TRUE(other.ok());
  ASSERT_TRUE(other.value()->AddPolicy(taken).ok());

  std::vector<Status> results = glue_->Apply({
      AddPolicyOp{first}, AddPolicyOp{second}, AddPolicyOp{taken},
      DeletePolicyOp{Policy("192.0.2.9", "192.0.2.8", Direction::kIn).id},
      AddPolicyOp{third}, AddPolicyOp{first}, AddPolicyOp{foreign}});
  ASSERT_EQ(results.size(), 7u);
  EXPECT_TRUE(results[0].ok());
  EXPECT_TRUE(results[1].ok());
  ASSERT_FALSE(results[2].ok());
  EXPECT_EQ(results[2].error().error_number, EEXIST);
  EXPECT_NE(results[2].error().operation.find("192.0.2.4"), std::string::npos);
  ASSERT_FALSE(results[3].ok());
  EXPECT_EQ(results[3].error().error_number, ENOENT);
  EXPECT_TRUE(results[4].ok()) << "a failure stopped the requests after it";
  EXPECT_TRUE(results[5].ok());
  EXPECT_EQ(glue_->PolicyUsers(first.id), 2);
  ASSERT_FALSE(results[6].ok());
  EXPECT_EQ(results[6].error().error_number, EPERM);
  EXPECT_EQ(glue_->PolicyUsers(taken.id), 0);
  EXPECT_EQ(Owned().size(), 4u);  // first, second, third, and the other instance's
}

TEST_F(HostXfrmTest, FlushRemovesOnlyOwnedState) {
  // Foreign state: another daemon's policies (default priority, and one in
  // a neighbouring band) and an SA-less larval state of its reqid range.
  ASSERT_EQ(std::system("ip xfrm policy add src 198.51.100.1 dst 198.51.100.2 dir out "
                        "tmpl proto esp mode transport reqid 5"), 0);
  ASSERT_EQ(std::system("ip xfrm policy add src 2001:db8:5::1 dst 2001:db8:5::2 dir in "
                        "priority 503807 tmpl proto esp mode transport reqid 6"), 0);
  const std::string foreign_before = Shell("ip xfrm policy list");

  ASSERT_TRUE(glue_->AddPolicy(Policy("192.0.2.1", "192.0.2.2", Direction::kOut)).ok());
  ASSERT_TRUE(glue_->AddPolicy(Policy("2001:db8::1", "2001:db8::2", Direction::kOut)).ok());
  auto spi = glue_->AllocateSpi(Ip("192.0.2.2"), Ip("192.0.2.1"), kReqid, 0xc0000000, 0xcfffffff);
  ASSERT_TRUE(spi.ok()) << spi.error().ToString();
  EXPECT_GE(spi.value(), 0xc0000000u);
  EXPECT_LE(spi.value(), 0xcfffffffu);

  auto owned = glue_->ListOwned();
  ASSERT_TRUE(owned.ok()) << owned.error().ToString();
  EXPECT_EQ(owned.value().policies.size(), 2u) << "foreign policies were counted as owned";
  ASSERT_EQ(owned.value().sas.size(), 1u);
  EXPECT_EQ(owned.value().sas[0].id.spi, spi.value());
  EXPECT_EQ(owned.value().sas[0].reqid, kReqid);

  Status flushed = glue_->FlushOwned();
  ASSERT_TRUE(flushed.ok()) << flushed.error().ToString();
  owned = glue_->ListOwned();
  ASSERT_TRUE(owned.ok());
  EXPECT_TRUE(owned.value().policies.empty());
  EXPECT_TRUE(owned.value().sas.empty());
  EXPECT_EQ(Shell("ip xfrm policy list"), foreign_before);
  EXPECT_NE(foreign_before.find("198.51.100.1"), std::string::npos);
  EXPECT_NE(foreign_before.find("2001:db8:5::1"), std::string::npos);
}

TEST_F(HostXfrmTest, OwnershipIsEnforcedBeforeSending) {
  PolicyParams foreign_band = Policy("192.0.2.1", "192.0.2.2", Direction::kOut);
  foreign_band.priority = 100;
  Status status = glue_->AddPolicy(foreign_band);
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(status.error().error_number, EPERM);
  EXPECT_NE(status.error().kernel_message.find("priority"), std::string::npos);
  EXPECT_EQ(Shell("ip xfrm policy list"), "");
}

TEST_F(HostXfrmTest, KernelErrorsAreTyped) {
  PolicyParams absent = Policy("192.0.2.7", "192.0.2.8", Direction::kIn);
  Status status = glue_->DeletePolicy(absent.id);
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(status.error().error_number, ENOENT);
  EXPECT_NE(status.error().ToString().find("XFRM_MSG_DELPOLICY dir in 192.0.2.7/32"), std::string::npos);

  SaId missing{Ip("192.0.2.2"), 0x4711, kIpProtoEsp, std::nullopt};
  auto query = glue_->QuerySa(missing);
  ASSERT_FALSE(query.ok());
  EXPECT_EQ(query.error().error_number, ESRCH);
  EXPECT_NE(query.error().operation.find("spi=0x00004711"), std::string::npos);
}

// Socket policies are not visible in dumps; what proves them is the kernel
// acting on them: a protect policy on one socket raises an ACQUIRE for that
// socket's traffic only, and a bypass policy exempts a socket from a global
// trap.
class HostSocketPolicyTest : public HostXfrmTest {
 protected:
  void SetUp() override {
    HostXfrmTest::SetUp();
    (void)!std::system("ip link del kgv0 2>/dev/null");
    ASSERT_EQ(std::system("ip link add kgv0 type veth peer name kgv1 && ip addr add 192.0.2.1/24 "
                          "dev kgv0 && ip link set kgv0 up && ip link set kgv1 up"), 0);
    XfrmNetlink::Options options;
    auto events = XfrmNetlink::Open(options);
    ASSERT_TRUE(events.ok());
    events_ = std::move(events).value();
  }
  void TearDown() override { (void)!std::system("ip link del kgv0 2>/dev/null"); }

  int CountAcquires(const std::vector<KernelEvent>& events, const char* dst) {
    int count = 0;
    for (const KernelEvent& event : events)
      if (const auto* acquire = std::get_if<AcquireEvent>(&event))
        if (acquire->selector.dst == Ip(dst)) ++count;
    return count;
  }

  std::unique_ptr<XfrmNetlink> events_;
};

TEST_F(HostSocketPolicyTest, ProtectPolicyAppliesToThatSocketOnly) {
  const int protected_socket = socket(AF_INET, SOCK_DGRAM, 0);
  const int plain_socket = socket(AF_INET, SOCK_DGRAM, 0);
  SocketPolicy policy;
  policy.direction = Direction::kOut;
  policy.action = PolicyAction::kProtect;
  policy.templates.push_back(PolicyTemplate{Mode::kTransport, kReqid, {}, {}, false});
  Status status = glue_->SetSocketPolicy(protected_socket, policy);
  ASSERT_TRUE(status.ok()) << status.error().ToString();

  SendUdp(plain_socket, "192.0.2.3", 5000);
  EXPECT_EQ(CountAcquires(Events(*events_, 300), "192.0.2.3"), 0);
  SendUdp(protected_socket, "192.0.2.4", 5000);
  std::vector<KernelEvent> events = Events(*events_, 1000);
  ASSERT_EQ(CountAcquires(events, "192.0.2.4"), 1);
  for (const KernelEvent& event : events)
    if (const auto* acquire = std::get_if<AcquireEvent>(&event)) {
      EXPECT_EQ(acquire->templ.reqid, kReqid);
      // Socket policies live past the three global directions.
      EXPECT_EQ(acquire->policy_index % 8, static_cast<uint32_t>(XFRM_POLICY_MAX + XFRM_POLICY_OUT));
    }
  close(protected_socket);
  close(plain_socket);
}

TEST_F(HostSocketPolicyTest, BypassPolicyExemptsSocketFromTrap) {
  PolicyParams trap = Policy("192.0.2.1", "192.0.2.0", Direction::kOut);
  trap.id.selector.dst_prefix = 24;
  ASSERT_TRUE(glue_->AddPolicy(trap).ok());
  const int ike_socket = socket(AF_INET, SOCK_DGRAM, 0);
  const int plain_socket = socket(AF_INET, SOCK_DGRAM, 0);
  Status status = glue_->SetSocketBypass(ike_socket);
  ASSERT_TRUE(status.ok()) << status.error().ToString();
  SendUdp(ike_socket, "192.0.2.5", 500);
  EXPECT_EQ(CountAcquires(Events(*events_, 300), "192.0.2.5"), 0);
  SendUdp(plain_socket, "192.0.2.6", 500);
  EXPECT_EQ(CountAcquires(Events(*events_, 1000), "192.0.2.6"), 1);
  close(ike_socket);
  close(plain_socket);
}

TEST_F(HostSocketPolicyTest, EventOverflowIsReported) {
  XfrmNetlink::Options options;
  options.event_buffer_bytes = 1;  // the kernel raises it to its minimum
  auto tiny = XfrmNetlink::Open(options);
  ASSERT_TRUE(tiny.ok());
  PolicyParams trap = Policy("192.0.2.1", "192.0.2.0", Direction::kOut);
  trap.id.selector.dst_prefix = 24;
  ASSERT_TRUE(glue_->AddPolicy(trap).ok());
  const int fd = socket(AF_INET, SOCK_DGRAM, 0);
  char address[32];
  for (int host = 10; host < 250; ++host) {
    std::snprintf(address, sizeof(address), "192.0.2.%d", host);
    SendUdp(fd, address, 7);
  }
  close(fd);
  auto events = tiny.value()->ProcessEvents();
  ASSERT_TRUE(events.ok());
  int resyncs = 0, acquires = 0;
  for (const KernelEvent& event : events.value()) {
    if (const auto* resync = std::get_if<ResyncNeeded>(&event)) {
      EXPECT_EQ(resync->cause.error_number, ENOBUFS);
      ++resyncs;
    }
    if (std::holds_alternative<AcquireEvent>(event)) ++acquires;
  }
  EXPECT_GE(resyncs, 1) << "overflow went unreported";
  EXPECT_GT(acquires, 0);
  EXPECT_LT(acquires, 240) << "nothing was lost, so the test did not overflow";
}

TEST_F(HostXfrmTest, UdpEncapOnlyOnUdpSockets) {
  const int udp = socket(AF_INET, SOCK_DGRAM, 0);
  Status status = glue_->EnableUdpEncap(udp);
  EXPECT_TRUE(status.ok()) << status.error().ToString();
  const int tcp = socket(AF_INET, SOCK_STREAM, 0);
  status = glue_->EnableUdpEncap(tcp);
  ASSERT_FALSE(status.ok());
  EXPECT_NE(status.error().error_number, 0);
  EXPECT_NE(status.error().operation.find("UDP_ENCAP"), std::string::npos);
  close(udp);
  close(tcp);
}

TEST_F(HostXfrmTest, SaInstallFailureCarriesKernelReason) {
  SaParams sa;
  sa.id = SaId{Ip("192.0.2.2"), 0x5001, kIpProtoEsp, std::nullopt};
  sa.src = Ip("192.0.2.1");
  sa.reqid = kReqid;
  sa.cipher = Cipher::kAesGcm16;
  sa.encryption_key.assign(20, 0x11);
  Status status = glue_->AddSa(sa);
  if (status.ok()) {
    // A kernel with ESP: the SA must read back.
    auto info = glue_->QuerySa(sa.id);
    ASSERT_TRUE(info.ok());
    EXPECT_EQ(info.value().algorithm, "rfc4106(gcm(aes))");
  } else {
    // This machine's kernel has no ESP: the refusal carries errno and the
    // kernel's own explanation.
    EXPECT_NE(status.error().error_number, 0);
    EXPECT_FALSE(status.error().kernel_message.empty()) << status.error().ToString();
  }
}

}  // namespace
}  // namespace kernel_glue

int main(int argc, char** argv) {
  // A private network namespace for the whole process: nothing here can
  // reach the host's real XFRM state.
  if (unshare(CLONE_NEWNET) != 0) {
    std::perror("unshare(CLONE_NEWNET) (needs root)");
    return 1;
  }
  if (std::system("ip link set lo up") != 0) return 1;
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
