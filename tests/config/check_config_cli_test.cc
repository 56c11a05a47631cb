// check-config through its entry point (output text) and through the real
// btnsctl binary (exit codes 0, 1, 2).
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <sstream>

#include "tests/config/test_util.h"
#include "tools/btnsctl/check_config.h"

namespace btnsctl {
namespace {

namespace fs = std::filesystem;
using btnsd::config::testing::ScratchDir;

std::string Runfile(const std::string& rel) {
  return (fs::path(std::getenv("TEST_SRCDIR")) / std::getenv("TEST_WORKSPACE") /
          rel)
      .string();
}

const char kValid[] = R"(identities: {h: {id: fqdn:h.example.com}}
pad:
  - name: known
    peer: fqdn:k.example.com
    auth: pubkey
    pubkey: sha256:00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff
    remote_ts: [198.51.100.7]
  - name: anyone
    auth: btns
spd:
  - name: to-known
    remote: 198.51.100.7
    action: protect
    peer: known
  - name: opportunistic
    action: protect
    peer: anyone
    unauthenticated_ok: true
)";

TEST(CheckConfigTest, PrintsPadAndSpdTable) {
  ScratchDir dir("cli_table");
  std::string f = dir.Write("t.yaml", kValid);
  std::ostringstream out, err;
  EXPECT_EQ(RunCheckConfig({f}, out, err), kExitOk);
  EXPECT_EQ(err.str(), "");
  std::string s = out.str();
  EXPECT_NE(s.find("  1  known   fqdn:k.example.com  pubkey(1 key)"),
            std::string::npos) << s;
  EXPECT_NE(s.find("  2  anyone  (key/null)          btns(null,any-key)"),
            std::string::npos) << s;
  EXPECT_NE(s.find("opportunistic  any <-> any"), std::string::npos) << s;
  EXPECT_NE(s.find("anyone [unauth-ok]"), std::string::npos) << s;
}

TEST(CheckConfigTest, PrintsJson) {
  ScratchDir dir("cli_json");
  std::string f = dir.Write("t.yaml", kValid);
  std::ostringstream out, err;
  EXPECT_EQ(RunCheckConfig({"--json", f}, out, err), kExitOk);
  std::string s = out.str();
  EXPECT_EQ(s.front(), '{');
  EXPECT_NE(s.find("{\"name\": \"known\", \"peer\": \"fqdn:k.example.com\", "
                   "\"auth\": \"pubkey\", \"btns\": false, \"keys\": "
                   "[\"sha256:00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\"]"),
            std::string::npos) << s;
  // The BTNS wildcard received every address except 198.51.100.7.
  EXPECT_NE(s.find("\"remote_ts\": [\"0.0.0.0-198.51.100.6\", "
                   "\"198.51.100.8-255.255.255.255\", \"::/0\"]"),
            std::string::npos) << s;
}

TEST(CheckConfigTest, InvalidConfigGoesToStderrWithExitOne) {
  ScratchDir dir("cli_bad");
  std::string f = dir.Write("t.yaml", "spd:\n  - name: s\n    actoin: bypass\n");
  std::ostringstream out, err;
  EXPECT_EQ(RunCheckConfig({f}, out, err), kExitInvalid);
  EXPECT_EQ(out.str(), "");
  EXPECT_EQ(err.str(),
            f + ":2:5: spd[0].action: required field is missing\n" + f +
                ":3:5: spd[0].actoin: unknown key 'actoin'; did you mean "
                "'action'?\n" + f + ": 2 errors; nothing applied\n");
}

TEST(CheckConfigTest, UsageErrors) {
  std::ostringstream out, err;
  EXPECT_EQ(RunCheckConfig({"--bogus"}, out, err), kExitUsage);
  EXPECT_NE(err.str().find("unknown option '--bogus'"), std::string::npos);
  EXPECT_EQ(RunCheckConfig({"a.yaml", "b.yaml"}, out, err), kExitUsage);
}

int RunBinary(const std::string& args) {
  std::string cmd = Runfile("tools/btnsctl/btnsctl") + " " + args +
                    " >/dev/null 2>&1";
  int status = std::system(cmd.c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

TEST(BtnsctlBinaryTest, ExitCodes) {
  ScratchDir dir("cli_bin");
  std::string good = dir.Write("good.yaml", kValid);
  std::string bad = dir.Write("bad.yaml", "pad: 3\n");
  EXPECT_EQ(RunBinary("check-config " + good), 0);
  EXPECT_EQ(RunBinary("check-config --json " + good), 0);
  EXPECT_EQ(RunBinary("check-config " + bad), 1);
  EXPECT_EQ(RunBinary("check-config " + dir.path() + "/absent.yaml"), 1);
  EXPECT_EQ(RunBinary(""), 2);
  EXPECT_EQ(RunBinary("no-such-command"), 2);
  EXPECT_EQ(RunBinary("check-config --nope"), 2);
  EXPECT_EQ(RunBinary("--help"), 0);
}

TEST(BtnsctlBinaryTest, EveryExampleChecksClean) {
  ScratchDir dir("cli_examples");
  fs::path ex = fs::path(dir.path()) / "examples";
  fs::copy(Runfile("config/examples"), ex, fs::copy_options::recursive);
  for (auto& f : fs::recursive_directory_iterator(ex))
    fs::permissions(f.path(), fs::perms::owner_write, fs::perm_options::add);
  // As the file's own comment tells operators: chmod 600.
  fs::permissions(ex / "psk.secrets",
                  fs::perms::owner_read | fs::perms::owner_write);
  int checked = 0;
  for (auto& f : fs::directory_iterator(ex)) {
    if (f.path().extension() != ".yaml") continue;
    EXPECT_EQ(RunBinary("check-config " + f.path().string()), 0) << f.path();
    EXPECT_EQ(RunBinary("check-config --json " + f.path().string()), 0);
    ++checked;
  }
  EXPECT_EQ(checked, 6);
  // The same secrets file left world-readable makes the PSK examples fail.
  fs::permissions(ex / "psk.secrets", fs::perms::group_read,
                  fs::perm_options::add);
  EXPECT_EQ(RunBinary("check-config " + (ex / "host-to-host-psk.yaml").string()),
            1);
}

}  // namespace
}  // namespace btnsctl
