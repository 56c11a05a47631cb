#include "ike/policy/snapshot.h"

#include <gtest/gtest.h>

namespace ike::policy {
namespace {

PolicySnapshot Base() {
  PolicySnapshot s;
  s.identities = {{"host", Identity::Fqdn("host.example.com"), "k", {}, {}, {}, {}}};
  PadEntry a, b;
  a.name = "a";
  b.name = "b";
  b.auth = PeerAuthMethod::kBtns;
  s.pad = Pad({a, b});
  SpdEntry x, y;
  x.name = "x";
  y.name = "y";
  s.spd = Spd({x, y});
  s.proposals = {DefaultIkeProposals(), DefaultEspProposals()};
  return s;
}

TEST(SnapshotDiffTest, IdenticalSnapshotsHaveNoDiff) {
  EXPECT_TRUE(Diff(Base(), Base()).empty());
}

TEST(SnapshotDiffTest, ReportsAddedRemovedChangedPerSection) {
  PolicySnapshot before = Base();
  PolicySnapshot after = Base();
  PadEntry c;
  c.name = "c";
  auto pad = after.pad.entries();
  pad[0].local_identity = "host";  // a changed
  pad.erase(pad.begin() + 1);      // b removed
  pad.push_back(c);                // c added
  after.pad = Pad(pad);
  auto spd = after.spd.entries();
  std::swap(spd[0], spd[1]);
  after.spd = Spd(spd);
  after.daemon.log_level = LogLevel::kDebug;
  after.proposals[0].proposals[0].ke = {KeGroup::kCurve25519};
  after.identities.push_back({"second", Identity::Null(), {}, {}, {}, {}, {}});

  SnapshotDiff d = Diff(before, after);
  EXPECT_FALSE(d.empty());
  EXPECT_TRUE(d.daemon_changed);
  EXPECT_EQ(d.pad.added, std::vector<std::string>{"c"});
  EXPECT_EQ(d.pad.removed, std::vector<std::string>{"b"});
  EXPECT_EQ(d.pad.changed, std::vector<std::string>{"a"});
  EXPECT_TRUE(d.spd.empty());
  EXPECT_TRUE(d.spd_order_changed);
  EXPECT_FALSE(d.pad_order_changed);
  EXPECT_EQ(d.proposals.changed, std::vector<std::string>{"default-ike"});
  EXPECT_EQ(d.identities.added, std::vector<std::string>{"second"});
}

TEST(ApiPermissionsTest, GrantsByUidOrGid) {
  ApiPermissions api;
  api.grants = {{"web", {1000}, {}, {"host"}}, {"ops", {}, {50}, {"*"}}};
  EXPECT_TRUE(api.MayUseIdentity(1000, {}, "host"));
  EXPECT_FALSE(api.MayUseIdentity(1000, {}, "other"));
  EXPECT_TRUE(api.MayUseIdentity(7, {3, 50}, "other"));
  EXPECT_FALSE(api.MayUseIdentity(7, {3}, "host"));
}

TEST(ProposalTest, DefaultsAreModernAndNamed) {
  for (const auto& set : {DefaultIkeProposals(), DefaultEspProposals()})
    for (const auto& p : set.proposals)
      for (const auto& e : p.encryption) EXPECT_TRUE(IsAead(e.id));
  EXPECT_EQ(ProposalToString(DefaultEspProposals().proposals[0]),
            "aes256gcm16-chacha20poly1305-aes128gcm16-none-esn-noesn");
  auto three = FindAlgorithm(TransformType::kEncr, "3des");
  ASSERT_TRUE(three);
  EXPECT_TRUE(three->deprecated);
  EXPECT_FALSE(FindAlgorithm(TransformType::kKe, "x25519")->deprecated);
}

}  // namespace
}  // namespace ike::policy
