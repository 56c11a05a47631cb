#include <gtest/gtest.h>

#include <filesystem>

#include "config/loader.h"
#include "ike/policy/snapshot.h"
#include "tests/config/test_util.h"

namespace btnsd::config {
namespace {

namespace fs = std::filesystem;
using namespace ike::policy;  // NOLINT
using testing::ErrorStrings;
using testing::ScratchDir;

LoadResult LoadNoFiles(const std::string& path) {
  LoadOptions o;
  o.check_files = false;
  return LoadConfigFile(path, o);
}

// The examples as an operator would install them: copied, with the
// secrets file made private (git does not keep mode 0600).
std::string InstallExamples(const ScratchDir& dir) {
  fs::path src = fs::path(std::getenv("TEST_SRCDIR")) /
                 std::getenv("TEST_WORKSPACE") / "config/examples";
  fs::path dst = fs::path(dir.path()) / "examples";
  fs::copy(src, dst, fs::copy_options::recursive);
  for (auto& f : fs::recursive_directory_iterator(dst))
    fs::permissions(f.path(), fs::perms::owner_write, fs::perm_options::add);
  fs::permissions(dst / "psk.secrets", fs::perms::owner_read |
                                           fs::perms::owner_write);
  return dst.string();
}

TEST(ExamplesTest, EveryExampleLoads) {
  ScratchDir dir("examples");
  std::string examples = InstallExamples(dir);
  int loaded = 0;
  for (auto& f : fs::directory_iterator(examples)) {
    if (f.path().extension() != ".yaml") continue;
    LoadResult r = LoadConfigFile(f.path().string());
    EXPECT_TRUE(r.ok()) << f.path() << ":\n"
                        << ::testing::PrintToString(ErrorStrings(r));
    if (r.ok()) {
      EXPECT_FALSE(r.snapshot->pad.entries().empty()) << f.path();
      EXPECT_FALSE(r.snapshot->spd.entries().empty()) << f.path();
    }
    ++loaded;
  }
  EXPECT_EQ(loaded, 6);
}

TEST(ExamplesTest, MixedExampleOrdersAuthenticatedFirstAndCutsBtnsSpace) {
  ScratchDir dir("mixed");
  LoadResult r = LoadConfigFile(InstallExamples(dir) + "/mixed.yaml");
  ASSERT_TRUE(r.ok()) << ::testing::PrintToString(ErrorStrings(r));
  const auto& pad = r.snapshot->pad;
  ASSERT_EQ(pad.entries().size(), 3u);
  EXPECT_EQ(pad.entries()[0].name, "nfs-server");  // from the include
  EXPECT_EQ(pad.entries()[2].name, "everyone-else");
  // The pinned key of "backup" is the SHA-256 of host-b.pub's SPKI; a peer
  // claiming backup's ID with another key is rejected, not sent to BTNS.
  Identity backup = Identity::Address(*IpAddress::Parse("198.51.100.20"));
  Sha256 other{};
  auto rejected = pad.MatchPeer({backup, PresentedAuth::kRawPublicKey, other});
  EXPECT_FALSE(rejected.ok());
  EXPECT_EQ(rejected.rejection, PadRejection::kPinnedKeyMismatch);
  auto ok = pad.MatchPeer({backup, PresentedAuth::kRawPublicKey,
                           pad.entries()[1].pinned_keys[0]});
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(ok.match->entry->name, "backup");
  // The wildcard's computed constraints exclude the known peers' hosts.
  const PadEntry& all = pad.entries()[2];
  for (const auto& ts : all.remote_ts) {
    EXPECT_FALSE(ts.addresses.Contains(*IpAddress::Parse("198.51.100.10")));
    EXPECT_FALSE(ts.addresses.Contains(*IpAddress::Parse("198.51.100.20")));
  }
  auto anon = pad.MatchPeer({Identity::Null(), PresentedAuth::kNull, {}});
  ASSERT_TRUE(anon.ok());
  auto ts = pad.AuthorizeChildSelectors(
      *anon.match->entry, {{*IpRange::Parse("198.51.100.10"), 0, {}}});
  EXPECT_FALSE(ts.ok());
  // SPD: NFS for BTNS peers only through the flagged entry.
  auto m = r.snapshot->spd.LookupByTrafficSelectors(
      {*IpRange::Parse("192.0.2.1"), 6, {2049, 2049}},
      {*IpRange::Parse("203.0.113.5"), 6, {}}, "everyone-else", false);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->entry->name, "nfs-for-anyone");
}

TEST(ExamplesTest, PskAndTunnelExamplesCarryTheirSettings) {
  ScratchDir dir("s2s");
  std::string ex = InstallExamples(dir);
  LoadResult r = LoadConfigFile(ex + "/site-to-site-tunnel.yaml");
  ASSERT_TRUE(r.ok()) << ::testing::PrintToString(ErrorStrings(r));
  const auto& s = *r.snapshot;
  const Secret* psk = s.FindSecret("gw-b-psk");
  ASSERT_NE(psk, nullptr);
  EXPECT_EQ(psk->value.size(), 32u);  // 0x-prefixed hex, decoded
  EXPECT_EQ(psk->value[0], 0x6b);
  EXPECT_EQ(s.daemon.ownership.priority_min, 0x2000u);
  EXPECT_EQ(s.daemon.ownership.mark, 0x42u);
  EXPECT_EQ(s.daemon.ownership.mark_mask, 0xffffffffu);
  ASSERT_EQ(s.daemon.listen.size(), 2u);
  EXPECT_EQ(s.daemon.listen[1].port, 4500);
  const SpdEntry* e = s.spd.Find("net-a-to-net-b");
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->protect.mode, IpsecMode::kTunnel);
  EXPECT_EQ(e->protect.tunnel_remote->ToString(), "203.0.113.2");
  EXPECT_EQ(e->protect.child_lifetime.soft_seconds, 45u * 60);
  EXPECT_EQ(e->protect.ike_lifetime.hard_seconds, 8u * 3600);
  EXPECT_EQ(e->protect.start, StartAction::kStart);
  const ProposalSet* ike = s.FindProposals("suite-b-ike");
  ASSERT_NE(ike, nullptr);
  EXPECT_EQ(ike->proposals[0].ke, std::vector<KeGroup>{KeGroup::kEcp384});
}

TEST(LoaderTest, AllIdentityTypes) {
  ScratchDir dir("ids");
  std::string f = dir.Write("t.yaml", R"(identities:
  a: {id: ipv4:192.0.2.1}
  b: {id: "ipv6:2001:db8::1"}
  c: {id: fqdn:host.example.com}
  d: {id: email:ops@example.com}
  e: {id: "dn:CN=host.example.com,O=Example"}
  f: {id: keyid:0102ff}
  g: {id: null}
)");
  LoadResult r = LoadNoFiles(f);
  ASSERT_TRUE(r.ok()) << ::testing::PrintToString(ErrorStrings(r));
  const auto& s = *r.snapshot;
  EXPECT_EQ(s.FindIdentity("a")->id.type, IdType::kIpv4Addr);
  EXPECT_EQ(s.FindIdentity("b")->id.data.size(), 16u);
  EXPECT_EQ(s.FindIdentity("c")->id.ToString(), "fqdn:host.example.com");
  EXPECT_EQ(s.FindIdentity("d")->id.type, IdType::kRfc822Addr);
  const Identity& dn = s.FindIdentity("e")->id;
  EXPECT_EQ(dn.type, IdType::kDerAsn1Dn);
  ASSERT_FALSE(dn.data.empty());
  EXPECT_EQ(dn.data[0], 0x30);  // DER SEQUENCE (RDNSequence)
  EXPECT_EQ(dn.printable, "CN=host.example.com,O=Example");
  EXPECT_EQ(s.FindIdentity("f")->id.data, (std::vector<uint8_t>{1, 2, 255}));
  EXPECT_EQ(s.FindIdentity("g")->id.type, IdType::kNull);
}

TEST(LoaderTest, DaemonDefaultsAndSettings) {
  ScratchDir dir("daemon");
  std::string f = dir.Write("t.yaml", R"(daemon:
  listen: [192.0.2.1, "2001:db8::1"]
  ike_port: 1500
  nat_port: 14500
  api_socket: /run/x.sock
  api_group: 0
  log_level: trace
  ownership: {priority_min: 10, priority_max: 20, reqid_min: 5, reqid_max: 9, mark: 0x10, mark_mask: 0xf0}
  dpd_interval: 2m
  retransmit: {initial: 2s, max: 8s, tries: 3}
)");
  LoadResult r = LoadNoFiles(f);
  ASSERT_TRUE(r.ok()) << ::testing::PrintToString(ErrorStrings(r));
  const auto& d = r.snapshot->daemon;
  ASSERT_EQ(d.listen.size(), 4u);
  EXPECT_EQ(d.listen[2].address.ToString(), "2001:db8::1");
  EXPECT_EQ(d.listen[3].port, 14500);
  EXPECT_EQ(d.api_socket, "/run/x.sock");
  EXPECT_EQ(d.log_level, LogLevel::kTrace);
  EXPECT_EQ(d.ownership.reqid_max, 9u);
  EXPECT_EQ(d.ownership.mark_mask, 0xf0u);
  EXPECT_EQ(d.dpd_interval_seconds, 120u);
  EXPECT_EQ(d.retransmit_initial_seconds, 2u);
  EXPECT_EQ(d.retransmit_max_seconds, 8u);
  EXPECT_EQ(d.retransmit_tries, 3u);

  std::string blank = dir.Write("blank.yaml",
                                "identities:\nproposals:\npad:\nspd:\n");
  LoadResult b = LoadNoFiles(blank);
  ASSERT_TRUE(b.ok()) << ::testing::PrintToString(ErrorStrings(b));
  EXPECT_TRUE(b.snapshot->pad.entries().empty());

  std::string empty = dir.Write("empty.yaml", "");
  LoadResult e = LoadNoFiles(empty);
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e.snapshot->daemon.listen.size(), 4u);  // 0.0.0.0 and :: x 2
  EXPECT_EQ(e.snapshot->daemon.dpd_interval_seconds, 30u);
  EXPECT_EQ(e.snapshot->daemon.retransmit_tries, 5u);
  EXPECT_EQ(e.snapshot->proposals.size(), 2u);      // the built-in sets
}

// api.admin_group: who besides uid 0 may use btnsctl's calls.
TEST(LoaderTest, ApiAdminGroupByNameOrGid) {
  ScratchDir dir("admin_group");
  LoadResult by_name = LoadNoFiles(dir.Write("n.yaml", "api:\n  admin_group: root\n"));
  ASSERT_TRUE(by_name.ok()) << ::testing::PrintToString(ErrorStrings(by_name));
  EXPECT_EQ(by_name.snapshot->api.admin_gid, 0u);
  EXPECT_EQ(by_name.snapshot->api.admin_group, "root");
  LoadResult by_gid = LoadNoFiles(dir.Write("g.yaml", "api:\n  admin_group: 4242\n"));
  ASSERT_TRUE(by_gid.ok()) << ::testing::PrintToString(ErrorStrings(by_gid));
  EXPECT_EQ(by_gid.snapshot->api.admin_gid, 4242u);
  LoadResult none = LoadNoFiles(dir.Write("e.yaml", ""));
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none.snapshot->api.admin_gid.has_value());
}

TEST(LoaderTest, SpdSelectorsPortsAndLifetimes) {
  ScratchDir dir("spd");
  std::string f = dir.Write("t.yaml", R"(identities: {h: {id: null}}
pad:
  - name: b
    peer: ipv4:198.51.100.0/24
    auth: ca
    ca: x.crt
    remote_ts: ["198.51.100.0/24 tcp 1024-65535", "2001:db8::/32"]
spd:
  - name: web
    local: 192.0.2.1
    remote: 198.51.100.0/24
    protocol: tcp
    local_ports: 443
    remote_ports: 1024-65535
    action: protect
    peer: b
    lifetime: {soft: 90s, hard: 2m, soft_bytes: 1M, hard_bytes: 2M, jitter: 5}
  - name: drop
    action: discard
)");
  LoadResult r = LoadNoFiles(f);
  ASSERT_TRUE(r.ok()) << ::testing::PrintToString(ErrorStrings(r));
  const SpdEntry* web = r.snapshot->spd.Find("web");
  ASSERT_NE(web, nullptr);
  EXPECT_EQ(web->selector.local_ports, (PortRange{443, 443}));
  EXPECT_EQ(web->selector.remote_ports, (PortRange{1024, 65535}));
  EXPECT_EQ(web->protect.child_lifetime.soft_seconds, 90u);
  EXPECT_EQ(web->protect.child_lifetime.hard_bytes, 2u << 20);
  EXPECT_EQ(web->protect.child_lifetime.jitter_percent, 5);
  const PadEntry* b = r.snapshot->pad.Find("b");
  ASSERT_EQ(b->remote_ts.size(), 2u);
  EXPECT_EQ(b->remote_ts[0].ports, (PortRange{1024, 65535}));
  EXPECT_EQ(b->peer_id.kind, IdMatcher::Kind::kSubnet);
  auto* hit = r.snapshot->spd.Lookup({*IpAddress::Parse("192.0.2.1"),
                                      *IpAddress::Parse("198.51.100.7"), 6,
                                      443, 5555});
  ASSERT_NE(hit, nullptr);
  EXPECT_EQ(hit->name, "web");
  hit = r.snapshot->spd.Lookup({*IpAddress::Parse("192.0.2.1"),
                                *IpAddress::Parse("198.51.100.7"), 6, 80,
                                5555});
  ASSERT_NE(hit, nullptr);
  EXPECT_EQ(hit->name, "drop");
}

TEST(LoaderTest, DeprecatedAlgorithmsWithExplicitOptIn) {
  ScratchDir dir("legacy");
  std::string f = dir.Write("t.yaml", R"(proposals:
  legacy:
    allow_deprecated: true
    proposals:
      - encryption: [3des]
        integrity: [sha1]
        prf: [sha1]
        ke: [modp1024]
)");
  LoadResult r = LoadNoFiles(f);
  ASSERT_TRUE(r.ok()) << ::testing::PrintToString(ErrorStrings(r));
  const ProposalSet* p = r.snapshot->FindProposals("legacy");
  ASSERT_NE(p, nullptr);
  EXPECT_TRUE(p->allow_deprecated);
  EXPECT_EQ(p->proposals[0].encryption[0].id, EncrId::k3Des);
  EXPECT_EQ(p->proposals[0].ke[0], KeGroup::kModp1024);
}

TEST(LoaderTest, IncludesAreRelativeAndOrdered) {
  ScratchDir dir("include");
  dir.Write("sub/peers.yaml", R"(include: [more.yaml]
pad:
  - name: second
    peer: fqdn:b.example
    auth: ca
    ca: x.crt
    remote_ts: [192.0.2.2]
)");
  dir.Write("sub/more.yaml", R"(pad:
  - name: first
    peer: fqdn:a.example
    auth: ca
    ca: x.crt
    remote_ts: [192.0.2.1]
)");
  std::string main = dir.Write("main.yaml", R"(include: [sub/peers.yaml]
identities: {h: {id: null}}
pad:
  - name: last
    auth: btns
)");
  LoadResult r = LoadNoFiles(main);
  ASSERT_TRUE(r.ok()) << ::testing::PrintToString(ErrorStrings(r));
  const auto& e = r.snapshot->pad.entries();
  ASSERT_EQ(e.size(), 3u);
  EXPECT_EQ(e[0].name, "first");
  EXPECT_EQ(e[1].name, "second");
  EXPECT_EQ(e[2].name, "last");
  // Paths inside an included file are relative to that file.
  EXPECT_EQ(e[0].ca_files[0], dir.path() + "/sub/x.crt");
}

TEST(LoaderTest, IncludeCycleIsAnError) {
  ScratchDir dir("cycle");
  std::string a = dir.Write("a.yaml", "include: [b.yaml]\n");
  std::string b = dir.Write("b.yaml", "\ninclude: [a.yaml]\n");
  LoadResult r = LoadNoFiles(a);
  ASSERT_FALSE(r.ok());
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0].file, b);
  EXPECT_EQ(r.errors[0].line, 2);
  EXPECT_EQ(r.errors[0].column, 11);
  EXPECT_EQ(r.errors[0].field, "include[0]");
  EXPECT_EQ(r.errors[0].message,
            "include cycle: " + a + " -> " + b + " -> " + a);
}

TEST(LoaderTest, MissingIncludeAndDuplicateSection) {
  ScratchDir dir("inc2");
  dir.Write("d.yaml", "daemon:\n  log_level: info\n");
  std::string main = dir.Write(
      "main.yaml", "include: [d.yaml, nope.yaml]\ndaemon:\n  log_level: debug\n");
  LoadResult r = LoadNoFiles(main);
  EXPECT_EQ(ErrorStrings(r),
            (std::vector<std::string>{
                main + ":1:19: include[1]: included file " + dir.path() +
                    "/nope.yaml does not exist",
                main + ":2:1: daemon: section 'daemon' is already defined in " +
                    dir.path() + "/d.yaml:1; it may appear only once"}));
}

TEST(LoaderTest, SecretsFileModeIsChecked) {
  ScratchDir dir("secrets");
  dir.Write("open.secrets", "k: \"a long enough shared key\"\n", 0644);
  dir.Write("closed.secrets", "k: \"a long enough shared key\"\n", 0600);
  const char* body = R"(identities: {h: {id: null, psk: k}}
pad:
  - name: p
    peer: fqdn:p.example
    auth: psk
    psk: k
)";
  std::string open = dir.Write("open.yaml", std::string("secrets: open.secrets\n") + body);
  LoadResult r = LoadNoFiles(open);
  EXPECT_EQ(ErrorStrings(r),
            std::vector<std::string>{
                open + ":1:10: secrets: secrets file " + dir.path() +
                "/open.secrets has mode 0644 and is accessible by group or "
                "others; expected 0600 or stricter (chmod 600 " + dir.path() +
                "/open.secrets)"});
  std::string closed =
      dir.Write("closed.yaml", std::string("secrets: closed.secrets\n") + body);
  LoadResult ok = LoadNoFiles(closed);
  ASSERT_TRUE(ok.ok()) << ::testing::PrintToString(ErrorStrings(ok));
  EXPECT_EQ(ok.snapshot->FindSecret("k")->value.size(), 24u);
  EXPECT_EQ(ok.snapshot->pad.Find("p")->psk_name, "k");
}

TEST(LoaderTest, YamlSyntaxErrorHasPosition) {
  ScratchDir dir("syntax");
  std::string f = dir.Write("t.yaml", "daemon:\n  listen: [192.0.2.1\n");
  LoadResult r = LoadNoFiles(f);
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0].file, f);
  EXPECT_GT(r.errors[0].line, 0);
  EXPECT_EQ(r.errors[0].message.rfind("YAML syntax error: ", 0), 0u);
  EXPECT_EQ(r.snapshot, nullptr);
}

TEST(LoaderTest, MissingKeyFilesAreReported) {
  ScratchDir dir("files");
  std::string f = dir.Write("t.yaml", R"(identities:
  h:
    id: fqdn:h.example.com
    private_key: missing.key
)");
  LoadResult r = LoadConfigFile(f);
  EXPECT_EQ(ErrorStrings(r),
            std::vector<std::string>{
                f + ":4:18: identities.h.private_key: file 'missing.key' not "
                    "found (looked for " + dir.path() + "/missing.key)"});
}

TEST(LoaderTest, EditDistance) {
  EXPECT_EQ(EditDistance("listen", "lisen"), 1u);
  EXPECT_EQ(EditDistance("", "abc"), 3u);
  EXPECT_EQ(EditDistance("psk", "pks"), 2u);
  EXPECT_EQ(EditDistance("same", "same"), 0u);
}

TEST(SnapshotDiffFromFilesTest, ReloadDiffNamesWhatChanged) {
  ScratchDir dir("diff");
  std::string v1 = dir.Write("v1.yaml", R"(identities: {h: {id: null}}
pad:
  - name: a
    peer: fqdn:a.example
    auth: ca
    ca: x.crt
    remote_ts: [192.0.2.1]
  - name: b
    peer: fqdn:b.example
    auth: ca
    ca: x.crt
    remote_ts: [192.0.2.2]
spd:
  - name: to-a
    remote: 192.0.2.1
    action: protect
    peer: a
  - name: rest
    action: bypass
)");
  std::string v2 = dir.Write("v2.yaml", R"(identities: {h: {id: null}}
pad:
  - name: a
    peer: fqdn:a.example
    auth: ca
    ca: x.crt
    remote_ts: [192.0.2.1, 192.0.2.11]
  - name: c
    peer: fqdn:c.example
    auth: ca
    ca: x.crt
    remote_ts: [192.0.2.3]
spd:
  - name: to-a
    remote: 192.0.2.1
    action: protect
    peer: a
  - name: rest
    action: bypass
daemon:
  log_level: debug
)");
  LoadResult a = LoadNoFiles(v1), b = LoadNoFiles(v2);
  ASSERT_TRUE(a.ok() && b.ok());
  SnapshotDiff d = Diff(*a.snapshot, *b.snapshot);
  EXPECT_EQ(d.pad.added, std::vector<std::string>{"c"});
  EXPECT_EQ(d.pad.removed, std::vector<std::string>{"b"});
  EXPECT_EQ(d.pad.changed, std::vector<std::string>{"a"});
  EXPECT_TRUE(d.spd.empty());
  EXPECT_TRUE(d.daemon_changed);
  EXPECT_TRUE(d.identities.empty());
  EXPECT_TRUE(Diff(*a.snapshot, *LoadNoFiles(v1).snapshot).empty());
}

}  // namespace
}  // namespace btnsd::config
