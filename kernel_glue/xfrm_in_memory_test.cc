// The in-memory XfrmInterface answers like the kernel: same validity rules,
// same errno values, reference-counted policies, and events a test drives.
#include "kernel_glue/xfrm_in_memory.h"

#include <cerrno>
#include <set>

#include "gtest/gtest.h"
#include "kernel_glue/xfrm_rules.h"

namespace kernel_glue {
namespace {

constexpr uint32_t kReqid = 0x00b70001;
constexpr uint32_t kPriority = 0x7b000;

IpAddress Ip(const char* text) { return *IpAddress::Parse(text); }

SaParams Sa(uint32_t spi, uint32_t reqid = kReqid) {
  SaParams sa;
  sa.id = SaId{Ip("192.0.2.2"), spi, kIpProtoEsp, std::nullopt};
  sa.src = Ip("192.0.2.1");
  sa.reqid = reqid;
  sa.cipher = Cipher::kAesGcm16;
  sa.encryption_key.assign(20, 0x42);
  return sa;
}

PolicyParams Policy(Direction direction, uint32_t priority = kPriority) {
  PolicyParams policy;
  policy.id.selector = Selector::HostToHost(Ip("192.0.2.1"), Ip("192.0.2.2"));
  policy.id.direction = direction;
  policy.priority = priority;
  policy.templates.push_back(PolicyTemplate{Mode::kTransport, kReqid, {}, {}, false});
  return policy;
}

TEST(XfrmInMemoryTest, AllocatedSpisAreDistinctInRangeAndReserved) {
  XfrmInMemory xfrm;
  std::set<uint32_t> seen;
  for (int i = 0; i < 200; ++i) {
    auto spi = xfrm.AllocateSpi(Ip("192.0.2.1"), Ip("192.0.2.2"), kReqid, 0x1000, 0x10ff);
    ASSERT_TRUE(spi.ok()) << spi.error().ToString();
    EXPECT_GE(spi.value(), 0x1000u);
    EXPECT_LE(spi.value(), 0x10ffu);
    EXPECT_TRUE(seen.insert(spi.value()).second) << "SPI handed out twice";
  }
  const uint32_t spi = *seen.begin();
  // The larval SA holds its SPI: adding fails, updating fills it.
  Status add = xfrm.AddSa(Sa(spi));
  ASSERT_FALSE(add.ok());
  EXPECT_EQ(add.error().error_number, EEXIST);
  ASSERT_TRUE(xfrm.UpdateSa(Sa(spi)).ok());
  auto info = xfrm.QuerySa(Sa(spi).id);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info.value().algorithm, "rfc4106(gcm(aes))");
}

TEST(XfrmInMemoryTest, ExhaustedSpiRangeIsAnError) {
  XfrmInMemory xfrm;
  for (int i = 0; i < 4; ++i)
    ASSERT_TRUE(xfrm.AllocateSpi(Ip("192.0.2.1"), Ip("192.0.2.2"), kReqid, 0x100, 0x103).ok());
  auto spi = xfrm.AllocateSpi(Ip("192.0.2.1"), Ip("192.0.2.2"), kReqid, 0x100, 0x103);
  ASSERT_FALSE(spi.ok());
  EXPECT_EQ(spi.error().error_number, ENOENT);
}

TEST(XfrmInMemoryTest, SaErrorsMatchTheKernel) {
  XfrmInMemory xfrm;
  ASSERT_TRUE(xfrm.AddSa(Sa(0x500)).ok());
  Status duplicate = xfrm.AddSa(Sa(0x500));
  ASSERT_FALSE(duplicate.ok());
  EXPECT_EQ(duplicate.error().error_number, EEXIST);
  EXPECT_EQ(xfrm.UpdateSa(Sa(0x501)).error().error_number, ESRCH);
  EXPECT_EQ(xfrm.DeleteSa(Sa(0x501).id).error().error_number, ESRCH);
  EXPECT_EQ(xfrm.QuerySa(Sa(0x501).id).error().error_number, ESRCH);
  // The same SPI toward another destination, or under a mark, is another SA.
  SaParams other = Sa(0x500);
  other.id.dst = Ip("192.0.2.3");
  EXPECT_TRUE(xfrm.AddSa(other).ok());
  SaParams marked = Sa(0x500);
  marked.id.mark = Mark{1, 0xff};
  EXPECT_TRUE(xfrm.AddSa(marked).ok());
  ASSERT_TRUE(xfrm.DeleteSa(Sa(0x500).id).ok());
  EXPECT_FALSE(xfrm.HasSa(Sa(0x500).id));
  EXPECT_TRUE(xfrm.HasSa(marked.id));
}

TEST(XfrmInMemoryTest, InvalidSasAreRejectedWithTheFieldNamed) {
  XfrmInMemory xfrm;
  SaParams short_key = Sa(0x600);
  short_key.encryption_key.resize(16);  // salt missing
  Status status = xfrm.AddSa(short_key);
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(status.error().error_number, EINVAL);
  EXPECT_NE(status.error().kernel_message.find("salt"), std::string::npos);

  SaParams aead_with_integrity = Sa(0x601);
  aead_with_integrity.integrity = Integrity::kHmacSha256_128;
  EXPECT_EQ(xfrm.AddSa(aead_with_integrity).error().error_number, EINVAL);

  SaParams cbc_without_integrity = Sa(0x602);
  cbc_without_integrity.cipher = Cipher::kAesCbc;
  cbc_without_integrity.encryption_key.resize(16);
  EXPECT_EQ(xfrm.AddSa(cbc_without_integrity).error().error_number, EINVAL);

  SaParams cbc_short_hmac_key = cbc_without_integrity;
  cbc_short_hmac_key.integrity = Integrity::kHmacSha384_192;
  cbc_short_hmac_key.integrity_key.assign(32, 1);
  status = xfrm.AddSa(cbc_short_hmac_key);
  EXPECT_NE(status.error().kernel_message.find("48 bytes"), std::string::npos);

  SaParams zero_spi = Sa(0);
  EXPECT_EQ(xfrm.AddSa(zero_spi).error().error_number, EINVAL);

  SaParams mixed = Sa(0x603);
  mixed.src = Ip("2001:db8::1");
  EXPECT_EQ(xfrm.AddSa(mixed).error().error_number, EINVAL);

  EXPECT_EQ(xfrm.sa_count(), 0u);
}

TEST(XfrmInMemoryTest, ForeignReqidsAndPrioritiesAreRefused) {
  XfrmInMemory xfrm;
  EXPECT_EQ(xfrm.AddSa(Sa(0x700, /*reqid=*/5)).error().error_number, EPERM);
  EXPECT_EQ(xfrm.AddPolicy(Policy(Direction::kOut, /*priority=*/10)).error().error_number, EPERM);
  EXPECT_EQ(xfrm.AllocateSpi(Ip("192.0.2.1"), Ip("192.0.2.2"), 5, 0x100, 0xffff).error().error_number,
            EPERM);
}

TEST(XfrmInMemoryTest, PoliciesAreReferenceCounted) {
  XfrmInMemory xfrm;
  PolicyParams out = Policy(Direction::kOut);
  ASSERT_TRUE(xfrm.AddPolicy(out).ok());
  ASSERT_TRUE(xfrm.AddPolicy(out).ok());
  EXPECT_EQ(xfrm.PolicyUsers(out.id), 2);
  PolicyParams conflicting = out;
  conflicting.templates[0].reqid = kReqid + 1;
  EXPECT_EQ(xfrm.AddPolicy(conflicting).error().error_number, EEXIST);
  ASSERT_TRUE(xfrm.DeletePolicy(out.id).ok());
  EXPECT_EQ(xfrm.policy_count(), 1u);
  ASSERT_TRUE(xfrm.DeletePolicy(out.id).ok());
  EXPECT_EQ(xfrm.policy_count(), 0u);
  EXPECT_EQ(xfrm.DeletePolicy(out.id).error().error_number, ENOENT);

  // Update keeps the count and replaces the parameters.
  ASSERT_TRUE(xfrm.AddPolicy(out).ok());
  ASSERT_TRUE(xfrm.AddPolicy(out).ok());
  ASSERT_TRUE(xfrm.UpdatePolicy(conflicting).ok());
  EXPECT_EQ(xfrm.PolicyUsers(out.id), 2);
  auto owned = xfrm.ListOwned();
  ASSERT_TRUE(owned.ok());
  ASSERT_EQ(owned.value().policies.size(), 1u);
  EXPECT_EQ(owned.value().policies[0].params.templates[0].reqid, kReqid + 1);
}

TEST(XfrmInMemoryTest, PolicyValidation) {
  XfrmInMemory xfrm;
  PolicyParams no_templates = Policy(Direction::kIn);
  no_templates.templates.clear();
  EXPECT_EQ(xfrm.AddPolicy(no_templates).error().error_number, EINVAL);
  PolicyParams bypass_with_template = Policy(Direction::kIn);
  bypass_with_template.action = PolicyAction::kBypass;
  EXPECT_EQ(xfrm.AddPolicy(bypass_with_template).error().error_number, EINVAL);
  PolicyParams long_prefix = Policy(Direction::kIn);
  long_prefix.id.selector.dst_prefix = 33;
  EXPECT_EQ(xfrm.AddPolicy(long_prefix).error().error_number, EINVAL);
  PolicyParams tunnel_mixed = Policy(Direction::kOut);
  tunnel_mixed.templates[0].mode = Mode::kTunnel;
  tunnel_mixed.templates[0].tunnel_src = Ip("192.0.2.1");
  tunnel_mixed.templates[0].tunnel_dst = Ip("2001:db8::2");
  EXPECT_EQ(xfrm.AddPolicy(tunnel_mixed).error().error_number, EINVAL);
  PolicyParams foreign_template = Policy(Direction::kOut);
  foreign_template.templates[0].reqid = 3;
  EXPECT_EQ(xfrm.AddPolicy(foreign_template).error().error_number, EPERM);
  EXPECT_EQ(xfrm.policy_count(), 0u);
}

TEST(XfrmInMemoryTest, FlushAndListTouchOnlyOwnedState) {
  XfrmInMemory xfrm;
  xfrm.AddForeignSa(Sa(0x900, /*reqid=*/77));
  xfrm.AddForeignPolicy(Policy(Direction::kFwd, /*priority=*/1000));
  ASSERT_TRUE(xfrm.AddSa(Sa(0x901)).ok());
  ASSERT_TRUE(xfrm.AddPolicy(Policy(Direction::kOut)).ok());
  ASSERT_TRUE(xfrm.AllocateSpi(Ip("192.0.2.2"), Ip("192.0.2.1"), kReqid, 0x100, 0xffff).ok());
  auto owned = xfrm.ListOwned();
  ASSERT_TRUE(owned.ok());
  EXPECT_EQ(owned.value().sas.size(), 2u);
  EXPECT_EQ(owned.value().policies.size(), 1u);
  ASSERT_TRUE(xfrm.FlushOwned().ok());
  EXPECT_EQ(xfrm.sa_count(), 1u);
  EXPECT_EQ(xfrm.policy_count(), 1u);
  EXPECT_TRUE(xfrm.HasSa(Sa(0x900, 77).id));
  EXPECT_TRUE(xfrm.ListOwned().value().sas.empty());
}

TEST(XfrmInMemoryTest, TrafficCrossesSoftThenHardLimit) {
  XfrmInMemory xfrm;
  SaParams sa = Sa(0xa00);
  sa.lifetime.soft_bytes = 1000;
  sa.lifetime.hard_bytes = 2000;
  ASSERT_TRUE(xfrm.AddSa(sa).ok());
  ASSERT_TRUE(xfrm.AddTraffic(sa.id, 600, 1).ok());
  EXPECT_TRUE(xfrm.ProcessEvents().value().empty());
  ASSERT_TRUE(xfrm.AddTraffic(sa.id, 600, 1).ok());
  ASSERT_TRUE(xfrm.AddTraffic(sa.id, 100, 1).ok());  // soft fires once only
  auto events = xfrm.ProcessEvents().value();
  ASSERT_EQ(events.size(), 1u);
  const auto* soft = std::get_if<ExpireEvent>(&events[0]);
  ASSERT_NE(soft, nullptr);
  EXPECT_FALSE(soft->hard);
  EXPECT_EQ(soft->id, sa.id);
  EXPECT_EQ(soft->reqid, kReqid);
  EXPECT_EQ(xfrm.QuerySa(sa.id).value().counters.bytes, 1300u);
  EXPECT_EQ(xfrm.QuerySa(sa.id).value().counters.packets, 3u);
  ASSERT_TRUE(xfrm.AddTraffic(sa.id, 800, 1).ok());
  events = xfrm.ProcessEvents().value();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_TRUE(std::get<ExpireEvent>(events[0]).hard);
  EXPECT_FALSE(xfrm.HasSa(sa.id)) << "a hard expiry removes the SA";
  EXPECT_EQ(xfrm.AddTraffic(sa.id, 1, 1).error().error_number, ESRCH);
}

TEST(XfrmInMemoryTest, InjectedEventsAndFailures) {
  XfrmInMemory xfrm;
  AcquireEvent acquire;
  acquire.selector = Selector::HostToHost(Ip("192.0.2.1"), Ip("192.0.2.2"));
  acquire.policy_index = 9;
  xfrm.InjectEvent(acquire);
  xfrm.InjectEvent(ResyncNeeded{MakeError("read XFRM events", ENOBUFS)});
  auto events = xfrm.ProcessEvents().value();
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(std::get<AcquireEvent>(events[0]).policy_index, 9u);
  EXPECT_EQ(std::get<ResyncNeeded>(events[1]).cause.error_number, ENOBUFS);
  EXPECT_TRUE(xfrm.ProcessEvents().value().empty());
  EXPECT_EQ(xfrm.event_fd(), -1);

  xfrm.FailNextOperation(ENOMEM, "out of memory in the kernel");
  Status failed = xfrm.AddSa(Sa(0xb00));
  ASSERT_FALSE(failed.ok());
  EXPECT_EQ(failed.error().error_number, ENOMEM);
  EXPECT_EQ(failed.error().kernel_message, "out of memory in the kernel");
  EXPECT_NE(failed.error().operation.find("spi=0x00000b00"), std::string::npos);
  EXPECT_FALSE(xfrm.HasSa(Sa(0xb00).id));
  EXPECT_TRUE(xfrm.AddSa(Sa(0xb00)).ok()) << "the failure applies to one operation only";
}

TEST(XfrmInMemoryTest, SocketPoliciesAndEncap) {
  XfrmInMemory xfrm;
  ASSERT_TRUE(xfrm.SetSocketBypass(7).ok());
  std::vector<SocketPolicy> policies = xfrm.SocketPolicies(7);
  ASSERT_EQ(policies.size(), 2u);
  EXPECT_EQ(policies[0].direction, Direction::kIn);
  EXPECT_EQ(policies[1].direction, Direction::kOut);
  EXPECT_EQ(policies[1].action, PolicyAction::kBypass);
  SocketPolicy forward;
  forward.direction = Direction::kFwd;
  EXPECT_EQ(xfrm.SetSocketPolicy(8, forward).error().error_number, EINVAL);
  SocketPolicy protect_without_template;
  protect_without_template.action = PolicyAction::kProtect;
  EXPECT_EQ(xfrm.SetSocketPolicy(8, protect_without_template).error().error_number, EINVAL);
  EXPECT_EQ(xfrm.SetSocketBypass(-1).error().error_number, EBADF);
  EXPECT_FALSE(xfrm.UdpEncapEnabled(9));
  ASSERT_TRUE(xfrm.EnableUdpEncap(9).ok());
  EXPECT_TRUE(xfrm.UdpEncapEnabled(9));
}

TEST(XfrmInMemoryTest, ApplyGivesOneStatusPerOperation) {
  XfrmInMemory xfrm;
  PolicyParams out = Policy(Direction::kOut);
  std::vector<Status> results = xfrm.Apply({AddSaOp{Sa(0xc00)}, AddSaOp{Sa(0xc00)},
                                            AddPolicyOp{out}, AddPolicyOp{out},
                                            DeleteSaOp{Sa(0xc01).id}, DeletePolicyOp{out.id}});
  ASSERT_EQ(results.size(), 6u);
  EXPECT_TRUE(results[0].ok());
  EXPECT_EQ(results[1].error().error_number, EEXIST);
  EXPECT_TRUE(results[2].ok());
  EXPECT_TRUE(results[3].ok());
  EXPECT_EQ(results[4].error().error_number, ESRCH);
  EXPECT_TRUE(results[5].ok());
  EXPECT_EQ(xfrm.PolicyUsers(out.id), 1);
  EXPECT_TRUE(xfrm.HasSa(Sa(0xc00).id));
}

TEST(IpAddressTest, ParseAndPrint) {
  EXPECT_EQ(Ip("192.0.2.1").ToString(), "192.0.2.1");
  EXPECT_EQ(Ip("2001:db8::1").ToString(), "2001:db8::1");
  EXPECT_EQ(Ip("2001:db8::1").family, AddressFamily::kIpv6);
  EXPECT_FALSE(IpAddress::Parse("192.0.2.256").has_value());
  EXPECT_FALSE(IpAddress::Parse("").has_value());
  EXPECT_FALSE(IpAddress::Parse("2001:db8:::1").has_value());
}

}  // namespace
}  // namespace kernel_glue
