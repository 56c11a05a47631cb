// The kernel side of the engine's actions, against the in-memory XFRM.
#include "daemon/kernel_state.h"

#include <mutex>

#include "gtest/gtest.h"
#include "kernel_glue/xfrm_in_memory.h"
#include "kernel_glue/xfrm_rules.h"

namespace btnsd::daemon {
namespace {

using ike::policy::IpAddress;
using ike::policy::IpRange;
using ike::policy::TrafficSelector;

IpAddress Ip(const char* text) { return *IpAddress::Parse(text); }
TrafficSelector Host(const char* a) { return TrafficSelector{IpRange::Host(Ip(a)), 0, {}}; }

class KernelStateTest : public ::testing::Test {
 protected:
  KernelStateTest()
      : tags_(ToKernelTags(ike::policy::KernelOwnership{})),
        xfrm_(tags_.ownership),
        state_(xfrm_, mutex_, tags_) {}

  ike::sa::InstallChildSa Sa(ike::sa::SaDirection direction, uint32_t spi) {
    ike::sa::InstallChildSa sa;
    sa.ike_sa = 1;
    sa.child_sa = 1;
    sa.direction = direction;
    sa.spi = spi;
    const bool in = direction == ike::sa::SaDirection::kInbound;
    sa.source = Ip(in ? "192.0.2.2" : "192.0.2.1");
    sa.destination = Ip(in ? "192.0.2.1" : "192.0.2.2");
    sa.reqid = 0x10001;
    sa.transform.encryption = ike::wire::EncrId::kAesGcm16;
    sa.transform.aead = true;
    sa.encryption_key.assign(20, 7);
    return sa;
  }
  ike::sa::InstallPolicy Policy(uint32_t reqid = 0x10001) {
    ike::sa::InstallPolicy p;
    p.child_sa = 1;
    p.direction = ike::sa::PolicyDirection::kOut;
    p.source = Host("192.0.2.1");
    p.destination = Host("192.0.2.2");
    p.tunnel_source = Ip("192.0.2.1");
    p.tunnel_destination = Ip("192.0.2.2");
    p.reqid = reqid;
    return p;
  }
  kernel_glue::PolicyId OutId() {
    return kernel_glue::PolicyId{
        kernel_glue::Selector::HostToHost(ToKernel(Ip("192.0.2.1")),
                                          ToKernel(Ip("192.0.2.2"))),
        kernel_glue::Direction::kOut, std::nullopt};
  }
  // One PROTECT entry per start action (192.0.2.2 trap, .3 start,
  // .4 none) and a BYPASS entry (.5), all from 192.0.2.1.
  ike::policy::PolicySnapshot TrapSnapshot() {
    ike::policy::SpdEntry entry;
    entry.name = "to-b";
    entry.selector.local = IpRange::Host(Ip("192.0.2.1"));
    entry.selector.remote = IpRange::Host(Ip("192.0.2.2"));
    entry.action = ike::policy::SpdAction::kProtect;
    entry.protect.start = ike::policy::StartAction::kTrap;
    ike::policy::SpdEntry started = entry;
    started.name = "started";
    started.selector.remote = IpRange::Host(Ip("192.0.2.3"));
    started.protect.start = ike::policy::StartAction::kStart;
    ike::policy::SpdEntry responder = entry;
    responder.name = "responder";
    responder.selector.remote = IpRange::Host(Ip("192.0.2.4"));
    responder.protect.start = ike::policy::StartAction::kNone;
    ike::policy::SpdEntry bypass = entry;
    bypass.name = "clear";
    bypass.selector.remote = IpRange::Host(Ip("192.0.2.5"));
    bypass.action = ike::policy::SpdAction::kBypass;
    ike::policy::PolicySnapshot snapshot;
    snapshot.spd = ike::policy::Spd({entry, started, responder, bypass});
    return snapshot;
  }
  kernel_glue::PolicyId OutIdTo(const char* remote) {
    return kernel_glue::PolicyId{
        kernel_glue::Selector::HostToHost(ToKernel(Ip("192.0.2.1")),
                                          ToKernel(Ip(remote))),
        kernel_glue::Direction::kOut, std::nullopt};
  }
  kernel_glue::PolicyId InIdFrom(const char* remote) {
    return kernel_glue::PolicyId{
        kernel_glue::Selector::HostToHost(ToKernel(Ip(remote)),
                                          ToKernel(Ip("192.0.2.1"))),
        kernel_glue::Direction::kIn, std::nullopt};
  }
  bool HasOwnedPolicy(const kernel_glue::PolicyId& id) {
    auto listed = xfrm_.ListOwned();
    if (!listed.ok()) return false;
    for (const auto& policy : listed.value().policies)
      if (kernel_glue::PolicyKey(policy.params.id) == kernel_glue::PolicyKey(id))
        return true;
    return false;
  }
  // The reqid of the first template of the owned policy `id`, 0 if none.
  uint32_t OwnedPolicyReqid(const kernel_glue::PolicyId& id) {
    auto listed = xfrm_.ListOwned();
    if (!listed.ok()) return 0;
    for (const auto& policy : listed.value().policies)
      if (kernel_glue::PolicyKey(policy.params.id) == kernel_glue::PolicyKey(id))
        return policy.params.templates.empty() ? 0 : policy.params.templates[0].reqid;
    return 0;
  }

  KernelTags tags_;
  kernel_glue::XfrmInMemory xfrm_;
  std::mutex mutex_;
  KernelState state_;
};

TEST_F(KernelStateTest, InboundFillsTheAllocatedLarvalSaOutboundIsAdded) {
  kernel_glue::XfrmInterface& kernel = xfrm_;
  auto spi = kernel.AllocateSpi(ToKernel(Ip("192.0.2.2")), ToKernel(Ip("192.0.2.1")),
                               tags_.ownership.reqid_min);
  ASSERT_TRUE(spi.ok());
  EXPECT_TRUE(state_.InstallSa(Sa(ike::sa::SaDirection::kInbound, spi.value())));
  EXPECT_TRUE(state_.InstallSa(Sa(ike::sa::SaDirection::kOutbound, 0xabcd0001)));
  EXPECT_EQ(xfrm_.sa_count(), 2u);
  kernel_glue::SaId inbound_id;
  inbound_id.dst = ToKernel(Ip("192.0.2.1"));
  inbound_id.spi = spi.value();
  auto inbound = xfrm_.QuerySa(inbound_id);
  ASSERT_TRUE(inbound.ok());
  EXPECT_EQ(inbound.value().reqid, 0x10001u) << "the larval SA was filled";
  // An inbound SA whose larval state vanished is added afresh.
  EXPECT_TRUE(state_.InstallSa(Sa(ike::sa::SaDirection::kInbound, 0x7777)));
  EXPECT_EQ(xfrm_.sa_count(), 3u);
}

TEST_F(KernelStateTest, DeleteToleratesAnSaTheKernelAlreadyRemoved) {
  EXPECT_TRUE(state_.InstallSa(Sa(ike::sa::SaDirection::kOutbound, 0xabcd0001)));
  ike::sa::DeleteChildSa del{1, 1, ike::sa::SaDirection::kOutbound, Ip("192.0.2.2"),
                             0xabcd0001};
  EXPECT_TRUE(state_.DeleteSa(del));
  EXPECT_EQ(xfrm_.sa_count(), 0u);
  EXPECT_TRUE(state_.DeleteSa(del)) << "ENOENT is the wanted state";
  xfrm_.FailNextOperation(EPERM, "refused");
  EXPECT_FALSE(state_.DeleteSa(del));
}

TEST_F(KernelStateTest, EncapsulationUpdateKeepsTheSaAndMovesItsPorts) {
  ike::sa::InstallChildSa out = Sa(ike::sa::SaDirection::kOutbound, 0xabcd0001);
  out.encapsulation = ike::sa::UdpEncapsulation{4500, 31001};
  ASSERT_TRUE(state_.InstallSa(out));
  ike::sa::UpdateChildSaEncapsulation update{
      1, 1, ike::sa::SaDirection::kOutbound, Ip("192.0.2.2"), 0xabcd0001,
      ike::sa::UdpEncapsulation{4500, 32001}};
  EXPECT_TRUE(state_.UpdateEncapsulation(update));
  kernel_glue::SaId id;
  id.dst = ToKernel(Ip("192.0.2.2"));
  id.spi = 0xabcd0001;
  auto sa = xfrm_.QuerySa(id);
  ASSERT_TRUE(sa.ok());
  ASSERT_TRUE(sa.value().encap.has_value());
  EXPECT_EQ(sa.value().encap->src_port, 4500);
  EXPECT_EQ(sa.value().encap->dst_port, 32001);
  EXPECT_EQ(sa.value().reqid, 0x10001u);
  EXPECT_EQ(xfrm_.sa_count(), 1u);
  // An SA this daemon did not install (or already deleted) is refused.
  ike::sa::DeleteChildSa del{1, 1, ike::sa::SaDirection::kOutbound, Ip("192.0.2.2"),
                             0xabcd0001};
  ASSERT_TRUE(state_.DeleteSa(del));
  EXPECT_FALSE(state_.UpdateEncapsulation(update));
  EXPECT_EQ(xfrm_.sa_count(), 0u);
}

TEST_F(KernelStateTest, FailedInstallsReportFalse) {
  xfrm_.FailNextOperation(ENOMEM);
  EXPECT_FALSE(state_.InstallSa(Sa(ike::sa::SaDirection::kOutbound, 0xabcd0001)));
  auto sa = Sa(ike::sa::SaDirection::kOutbound, 0xabcd0002);
  sa.transform.encryption = ike::wire::EncrId::k3Des;  // no XFRM mapping
  EXPECT_FALSE(state_.InstallSa(sa));
  EXPECT_EQ(xfrm_.sa_count(), 0u);
}

TEST_F(KernelStateTest, ChildPolicyReplacesTheTrapAndGivesItBack) {
  EXPECT_EQ(state_.SyncTraps(TrapSnapshot()), 0u);
  EXPECT_EQ(state_.trap_count(), 6u)
      << "out and in for each PROTECT entry, none for BYPASS";
  ASSERT_EQ(xfrm_.policy_count(), 6u);
  const uint32_t trap_reqid = OwnedPolicyReqid(OutId());
  EXPECT_EQ(trap_reqid, state_.TrapReqid(0));
  EXPECT_EQ(OwnedPolicyReqid(InIdFrom("192.0.2.2")), trap_reqid)
      << "clear inbound traffic is refused before the CHILD_SA (RFC 4301 5.2)";

  EXPECT_TRUE(state_.InstallPolicy(Policy(0x10001)));
  ike::sa::InstallPolicy in = Policy(0x10001);
  in.direction = ike::sa::PolicyDirection::kIn;
  std::swap(in.source, in.destination);
  std::swap(in.tunnel_source, in.tunnel_destination);
  EXPECT_TRUE(state_.InstallPolicy(in));
  EXPECT_EQ(xfrm_.policy_count(), 6u) << "replaced in place, no gap";
  EXPECT_EQ(OwnedPolicyReqid(OutId()), 0x10001u);
  EXPECT_EQ(OwnedPolicyReqid(InIdFrom("192.0.2.2")), 0x10001u);

  // A second CHILD_SA with the same selector (a rekey) shares the policy.
  EXPECT_TRUE(state_.InstallPolicy(Policy(0x10001)));
  ike::sa::RemovePolicy remove{1, ike::sa::PolicyDirection::kOut, Host("192.0.2.1"),
                               Host("192.0.2.2")};
  EXPECT_TRUE(state_.RemovePolicy(remove));
  EXPECT_EQ(OwnedPolicyReqid(OutId()), 0x10001u);
  EXPECT_TRUE(state_.RemovePolicy(remove));
  EXPECT_EQ(xfrm_.policy_count(), 6u);
  EXPECT_EQ(OwnedPolicyReqid(OutId()), trap_reqid)
      << "the trap is back once the CHILD_SA is gone";
  EXPECT_EQ(OwnedPolicyReqid(InIdFrom("192.0.2.2")), 0x10001u)
      << "the CHILD_SA's inbound policy stays until it is removed itself";
  EXPECT_TRUE(state_.RemovePolicy(ike::sa::RemovePolicy{
      1, ike::sa::PolicyDirection::kIn, Host("192.0.2.2"), Host("192.0.2.1")}));
  EXPECT_EQ(OwnedPolicyReqid(InIdFrom("192.0.2.2")), trap_reqid)
      << "clear inbound traffic is refused again once the CHILD_SA is gone";
  EXPECT_EQ(xfrm_.policy_count(), 6u);
  EXPECT_EQ(state_.child_policy_count(), 0u);
}

// RFC 4301: PROTECT traffic never leaves in the clear. Entries that do not
// initiate on ACQUIRE (start, none) are held back by the same trap before
// their CHILD_SA exists, and again after it is gone.
TEST_F(KernelStateTest, StartAndResponderEntriesHoldTrafficWithoutAChildSa) {
  EXPECT_EQ(state_.SyncTraps(TrapSnapshot()), 0u);
  EXPECT_EQ(OwnedPolicyReqid(OutIdTo("192.0.2.3")), state_.TrapReqid(1))
      << "start: start is held before its first CHILD_SA";
  EXPECT_EQ(OwnedPolicyReqid(OutIdTo("192.0.2.4")), state_.TrapReqid(2))
      << "start: none is held before the peer brings a CHILD_SA up";
  EXPECT_EQ(OwnedPolicyReqid(OutIdTo("192.0.2.5")), 0u) << "BYPASS is not held";

  for (const char* remote : {"192.0.2.3", "192.0.2.4"}) {
    SCOPED_TRACE(remote);
    ike::sa::InstallPolicy child = Policy(0x10002);
    child.destination = Host(remote);
    child.tunnel_destination = Ip(remote);
    EXPECT_TRUE(state_.InstallPolicy(child));
    EXPECT_EQ(OwnedPolicyReqid(OutIdTo(remote)), 0x10002u);
    EXPECT_EQ(xfrm_.policy_count(), 6u) << "the CHILD_SA fills the trap's slot";
    EXPECT_TRUE(state_.RemovePolicy(ike::sa::RemovePolicy{
        1, ike::sa::PolicyDirection::kOut, Host("192.0.2.1"), Host(remote)}));
    EXPECT_EQ(OwnedPolicyReqid(OutIdTo(remote)), remote[8] == '3'
                                                     ? state_.TrapReqid(1)
                                                     : state_.TrapReqid(2))
        << "held back again once the CHILD_SA is deleted";
  }
  EXPECT_EQ(xfrm_.policy_count(), 6u);
}

// A reload that changes only an entry's start action keeps its trap: the
// kernel state does not depend on it, the engine's answer to ACQUIRE does.
TEST_F(KernelStateTest, ChangingTheStartActionKeepsTheHoldingPolicy) {
  EXPECT_EQ(state_.SyncTraps(TrapSnapshot()), 0u);
  ike::policy::PolicySnapshot changed = TrapSnapshot();
  std::vector<ike::policy::SpdEntry> entries = changed.spd.entries();
  entries[0].protect.start = ike::policy::StartAction::kNone;
  entries[2].protect.start = ike::policy::StartAction::kTrap;
  changed.spd = ike::policy::Spd(entries);
  EXPECT_EQ(state_.SyncTraps(changed), 0u);
  EXPECT_EQ(xfrm_.policy_count(), 6u);
  EXPECT_EQ(OwnedPolicyReqid(OutId()), state_.TrapReqid(0));
  EXPECT_EQ(OwnedPolicyReqid(OutIdTo("192.0.2.4")), state_.TrapReqid(2));
}

// An IPv6 trap would also hold back neighbor discovery to the peer, which
// the negotiation needs: its bypasses are in force exactly while the trap is.
TEST_F(KernelStateTest, Ipv6TrapLetsNeighborDiscoveryThroughWhileInForce) {
  ike::policy::SpdEntry entry;
  entry.name = "v6";
  entry.selector.local = IpRange::Host(Ip("2001:db8::1"));
  entry.selector.remote = IpRange::Host(Ip("2001:db8::2"));
  entry.action = ike::policy::SpdAction::kProtect;
  entry.protect.start = ike::policy::StartAction::kNone;
  ike::policy::PolicySnapshot snapshot;
  snapshot.spd = ike::policy::Spd({entry});
  EXPECT_EQ(state_.SyncTraps(snapshot), 0u);
  EXPECT_EQ(state_.trap_count(), 2u) << "out and in";
  EXPECT_EQ(state_.bypass_count(), 10u) << "ICMPv6 types 133-137, out and in";
  EXPECT_EQ(xfrm_.policy_count(), 12u);
  kernel_glue::PolicyId solicitation{
      kernel_glue::Selector::HostToHost(ToKernel(Ip("2001:db8::1")),
                                        ToKernel(Ip("2001:db8::2"))),
      kernel_glue::Direction::kOut, std::nullopt};
  solicitation.selector.protocol = 58;
  solicitation.selector.src_port = 135;
  EXPECT_TRUE(HasOwnedPolicy(solicitation));
  kernel_glue::PolicyId advertisement{
      kernel_glue::Selector::HostToHost(ToKernel(Ip("2001:db8::2")),
                                        ToKernel(Ip("2001:db8::1"))),
      kernel_glue::Direction::kIn, std::nullopt};
  advertisement.selector.protocol = 58;
  advertisement.selector.src_port = 136;
  EXPECT_TRUE(HasOwnedPolicy(advertisement)) << "inbound ND passes the inbound trap";

  ike::sa::InstallPolicy child;
  child.child_sa = 1;
  child.direction = ike::sa::PolicyDirection::kOut;
  child.source = Host("2001:db8::1");
  child.destination = Host("2001:db8::2");
  child.tunnel_source = Ip("2001:db8::1");
  child.tunnel_destination = Ip("2001:db8::2");
  child.reqid = 0x10003;
  EXPECT_TRUE(state_.InstallPolicy(child));
  EXPECT_EQ(state_.bypass_count(), 5u) << "only the inbound trap is in force";
  EXPECT_EQ(xfrm_.policy_count(), 7u);
  EXPECT_FALSE(HasOwnedPolicy(solicitation));
  EXPECT_TRUE(HasOwnedPolicy(advertisement));
  ike::sa::InstallPolicy child_in = child;
  child_in.direction = ike::sa::PolicyDirection::kIn;
  std::swap(child_in.source, child_in.destination);
  std::swap(child_in.tunnel_source, child_in.tunnel_destination);
  EXPECT_TRUE(state_.InstallPolicy(child_in));
  EXPECT_EQ(state_.bypass_count(), 0u) << "the CHILD_SA carries ND through ESP";
  EXPECT_EQ(xfrm_.policy_count(), 2u);
  EXPECT_FALSE(HasOwnedPolicy(advertisement));

  EXPECT_TRUE(state_.RemovePolicy(ike::sa::RemovePolicy{
      1, ike::sa::PolicyDirection::kOut, Host("2001:db8::1"), Host("2001:db8::2")}));
  EXPECT_TRUE(state_.RemovePolicy(ike::sa::RemovePolicy{
      1, ike::sa::PolicyDirection::kIn, Host("2001:db8::2"), Host("2001:db8::1")}));
  EXPECT_EQ(state_.bypass_count(), 10u);
  EXPECT_EQ(xfrm_.policy_count(), 12u);
  EXPECT_TRUE(HasOwnedPolicy(solicitation));
  EXPECT_TRUE(HasOwnedPolicy(advertisement));

  snapshot.spd = ike::policy::Spd(std::vector<ike::policy::SpdEntry>{});
  EXPECT_EQ(state_.SyncTraps(snapshot), 0u);
  EXPECT_EQ(xfrm_.policy_count(), 0u) << "the bypasses go with their trap";
}

TEST_F(KernelStateTest, PoliciesWithoutTrapAreDeletedWithTheirLastUser) {
  EXPECT_TRUE(state_.InstallPolicy(Policy()));
  EXPECT_EQ(xfrm_.policy_count(), 1u);
  ike::sa::RemovePolicy remove{1, ike::sa::PolicyDirection::kOut, Host("192.0.2.1"),
                               Host("192.0.2.2")};
  EXPECT_TRUE(state_.RemovePolicy(remove));
  EXPECT_EQ(xfrm_.policy_count(), 0u);
  EXPECT_TRUE(state_.RemovePolicy(remove)) << "removing twice is harmless";
}

TEST_F(KernelStateTest, SyncTrapsRemovesVanishedEntriesAndReportsUntrappable) {
  EXPECT_EQ(state_.SyncTraps(TrapSnapshot()), 0u);
  EXPECT_EQ(xfrm_.policy_count(), 6u);
  ike::policy::PolicySnapshot wide;
  ike::policy::SpdEntry entry;
  entry.name = "everything";
  entry.action = ike::policy::SpdAction::kProtect;  // remote: any -> no trap
  wide.spd = ike::policy::Spd({entry});
  EXPECT_EQ(state_.SyncTraps(wide), 1u);
  EXPECT_EQ(state_.trap_count(), 0u);
  EXPECT_EQ(xfrm_.policy_count(), 0u);
}

TEST_F(KernelStateTest, FlushRemovesOwnedStateOnly) {
  kernel_glue::SaParams foreign;
  foreign.id = {ToKernel(Ip("192.0.2.9")), 0x999, 50, std::nullopt};
  foreign.src = ToKernel(Ip("192.0.2.1"));
  foreign.reqid = 7;
  foreign.encryption_key.assign(20, 1);
  xfrm_.AddForeignSa(foreign);
  EXPECT_TRUE(state_.InstallSa(Sa(ike::sa::SaDirection::kOutbound, 0xabcd0001)));
  EXPECT_EQ(state_.SyncTraps(TrapSnapshot()), 0u);
  EXPECT_TRUE(state_.FlushOwned());
  EXPECT_EQ(xfrm_.sa_count(), 1u);
  EXPECT_TRUE(xfrm_.HasSa(foreign.id));
  EXPECT_EQ(xfrm_.policy_count(), 0u);
  EXPECT_EQ(state_.trap_count(), 0u);
}

}  // namespace
}  // namespace btnsd::daemon
