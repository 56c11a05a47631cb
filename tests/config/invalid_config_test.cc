// Each invalid policy must be refused with exactly the expected
// FILE:LINE:COL: field: message lines (F stands for the file, D for its
// directory), and must yield no snapshot.
#include <gtest/gtest.h>

#include "tests/config/test_util.h"

namespace btnsd::config {
namespace {

using testing::ErrorStrings;
using testing::ScratchDir;

struct Case {
  const char* name;
  std::string yaml;
  std::vector<std::string> expected;
};

const char kFp[] =
    "sha256:00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

std::vector<Case> Cases() {
  return {
      {"misspelled_top_level_key", "identites: {}\n",
       {"F:1:1: identites: unknown key 'identites'; did you mean "
        "'identities'?"}},
      {"misspelled_daemon_key", "daemon:\n  lisen: [192.0.2.1]\n",
       {"F:2:3: daemon.lisen: unknown key 'lisen'; did you mean 'listen'?"}},
      {"unknown_key_lists_choices", "daemon:\n  colour: blue\n",
       {"F:2:3: daemon.colour: unknown key 'colour'; expected one of: "
        "listen, ike_port, nat_port, api_socket, api_group, log_level, "
        "ownership, dpd_interval, retransmit, threads, cookie_threshold, "
        "half_open_limit, init_rate_per_address"}},
      {"dpd_interval_not_a_duration", "daemon:\n  dpd_interval: soon\n",
       {"F:2:17: daemon.dpd_interval: expected a duration such as 3600, 90s, "
        "30m, 8h or 1d"}},
      {"retransmit_max_below_initial",
       "daemon:\n  retransmit: {initial: 10s, max: 5s}\n",
       {"F:2:35: daemon.retransmit.max: retransmit.max must not be below "
        "retransmit.initial"}},
      {"retransmit_tries_too_many", "daemon:\n  retransmit: {tries: 99}\n",
       {"F:2:23: daemon.retransmit.tries: expected an integer from 0 to 20, "
        "got '99'"}},
      {"duplicate_key", "daemon:\n  log_level: info\n  log_level: debug\n",
       {"F:3:3: daemon.log_level: duplicate key (first at line 2)"}},
      {"bad_listen_address", "daemon:\n  listen: [192.0.2.300]\n",
       {"F:2:12: daemon.listen[0]: '192.0.2.300' is not an IPv4 or IPv6 "
        "address"}},
      {"port_out_of_range", "daemon:\n  ike_port: 70000\n",
       {"F:2:13: daemon.ike_port: expected an integer from 1 to 65535, got "
        "'70000'"}},
      {"misspelled_log_level", "daemon:\n  log_level: debg\n",
       {"F:2:14: daemon.log_level: unknown log level 'debg'; did you mean "
        "'debug'?"}},
      {"relative_api_socket", "daemon:\n  api_socket: run/api.sock\n",
       {"F:2:15: daemon.api_socket: expected an absolute path such as "
        "/run/btnsd/api.sock"}},
      {"reqid_range_inverted",
       "daemon:\n  ownership:\n    reqid_min: 100\n    reqid_max: 50\n",
       {"F:4:16: daemon.ownership.reqid_max: reqid_max must not be below "
        "reqid_min"}},
      {"pad_not_a_list", "pad: {name: x}\n",
       {"F:1:6: pad: expected a list of entries (each starting with '- "
        "name:')"}},
      {"identity_without_id", "identities:\n  h:\n    private_key: k\n",
       {"F:3:5: identities.h.id: required field is missing"}},
      {"identity_type_typo", "identities:\n  h:\n    id: fdqn:h.example.com\n",
       {"F:3:9: identities.h.id: unknown identity type 'fdqn'; expected ipv4, "
        "ipv6, fqdn, email, dn, keyid or null"}},
      {"ipv4_id_with_ipv6_address", "identities:\n  h:\n    id: ipv4:2001:db8::1\n",
       {"F:3:9: identities.h.id: '2001:db8::1' is not an IPv4 address"}},
      {"keyid_odd_hex", "identities:\n  h:\n    id: keyid:abc\n",
       {"F:3:9: identities.h.id: keyid value must be an even number of hex "
        "digits"}},
      {"certificate_and_raw_key",
       "identities:\n  h:\n    id: null\n    private_key: k\n"
       "    certificate: c\n    raw_key: r\n",
       {"F:6:14: identities.h.raw_key: use either 'certificate' or 'raw_key', "
        "not both"}},
      {"certificate_without_private_key",
       "identities:\n  h:\n    id: fqdn:h.example.com\n    certificate: c\n",
       {"F:3:5: identities.h.private_key: required field is missing"}},
      {"psk_without_secrets_file", "identities:\n  h:\n    id: null\n    psk: nope\n",
       {"F:4:10: identities.h.psk: no secret named 'nope' (no 'secrets:' file "
        "is configured)"}},
      {"auth_method_typo",
       "identities:\n  h: {id: null}\npad:\n  - name: p\n    peer: any\n"
       "    auth: pks\n",
       {"F:6:11: pad[0].auth: unknown auth method 'pks'; did you mean "
        "'psk'?"}},
      {"pad_key_typo",
       "identities:\n  h: {id: null}\npad:\n  - name: p\n    peer: any\n"
       "    auth: ca\n    ca: x.crt\n    remote_tss: [192.0.2.1]\n",
       {"F:8:5: pad[0].remote_tss: unknown key 'remote_tss'; did you mean "
        "'remote_ts'?"}},
      {"pad_unknown_local_identity",
       "identities:\n  host: {id: null}\n  other: {id: null}\npad:\n"
       "  - name: p\n    peer: any\n    auth: ca\n    ca: x.crt\n"
       "    local_identity: hots\n",
       {"F:9:21: pad[0].local_identity: no identity named 'hots'; did you "
        "mean 'host'?"}},
      {"pad_local_identity_ambiguous",
       "identities:\n  host: {id: null}\n  other: {id: null}\npad:\n"
       "  - name: p\n    peer: any\n    auth: ca\n    ca: x.crt\n",
       {"F:5:5: pad[0].local_identity: required when more than one identity "
        "is defined"}},
      {"psk_key_on_ca_entry",
       "identities:\n  h: {id: null}\npad:\n  - name: p\n    peer: any\n"
       "    auth: ca\n    ca: x.crt\n    psk: foo\n",
       {"F:8:10: pad[0].psk: 'psk' is only valid with auth: psk"}},
      {"pad_missing_peer",
       "identities:\n  h: {id: null}\npad:\n  - name: p\n    auth: ca\n"
       "    ca: x.crt\n",
       {"F:4:5: pad[0].peer: required field is missing"}},
      {"btns_entry_with_peer_id",
       "identities:\n  h: {id: null}\npad:\n  - name: b\n"
       "    peer: fqdn:x.example.com\n    auth: btns\n",
       {"F:5:11: pad[0].peer: a BTNS entry matches unauthenticated peers by "
        "key, not by ID; use peer: any (or omit it)"}},
      {"duplicate_pad_name",
       "identities:\n  h: {id: null}\npad:\n  - name: p\n    peer: any\n"
       "    auth: ca\n    ca: x.crt\n  - name: p\n    peer: any\n"
       "    auth: ca\n    ca: y.crt\n",
       {"F:8:11: pad[1].name: PAD entry 'p' is already defined at F:4"}},
      {"authenticated_after_btns",
       std::string("identities:\n  h: {id: null}\npad:\n  - name: anon\n"
                   "    auth: btns\n    btns: {keys: [\"") + kFp + "\"]}\n"
       "  - name: p\n    peer: any\n    auth: ca\n    ca: x.crt\n"
       "    remote_ts: [192.0.2.0/24]\n",
       {"F:7:5: pad[1]: authenticated PAD entry 'p' comes after BTNS entry "
        "'anon'; RFC 5386 section 2 orders every BTNS entry after all "
        "non-BTNS entries - move it up"}},
      {"entry_after_btns_wildcard",
       std::string("identities:\n  h: {id: null}\npad:\n  - name: all\n"
                   "    auth: btns\n  - name: known\n    auth: btns\n"
                   "    btns: {keys: [\"") + kFp + "\"]}\n"
       "    remote_ts: [192.0.2.5]\n",
       {"F:6:5: pad[1]: PAD entry 'known' follows the wildcard BTNS entry "
        "'all' and could never match; RFC 5386 section 2 keeps the wildcard "
        "BTNS entry last"}},
      {"btns_wildcard_overlaps_authenticated_entry",
       "identities:\n  h: {id: null}\npad:\n  - name: q\n"
       "    peer: fqdn:q.example.com\n    auth: ca\n    ca: x.crt\n"
       "    remote_ts: [192.0.2.10]\n  - name: all\n    auth: btns\n"
       "    remote_ts: [192.0.2.0/24]\n",
       {"F:11:17: pad[1].remote_ts[0]: wildcard BTNS selector 192.0.2.0/24 "
        "overlaps 192.0.2.10 of PAD entry 'q'; RFC 5386 section 2 forbids "
        "overlap with any other PAD entry's child SA constraints"}},
      {"btns_wildcard_left_with_nothing",
       "identities:\n  h: {id: null}\npad:\n  - name: q\n    peer: any\n"
       "    auth: ca\n    ca: x.crt\n  - name: all\n    auth: btns\n",
       {"F:8:5: pad[1].remote_ts: every address is already authorised for "
        "other PAD entries, so the wildcard BTNS entry could match no child "
        "SA; give the other entries explicit remote_ts"}},
      {"ts_host_bits_set",
       "identities:\n  h: {id: null}\npad:\n  - name: p\n    peer: any\n"
       "    auth: ca\n    ca: x.crt\n    remote_ts: [192.0.2.1/24]\n",
       {"F:8:17: pad[0].remote_ts[0]: '192.0.2.1/24' has host bits set beyond "
        "the prefix length"}},
      {"ts_ports_without_protocol",
       "identities:\n  h: {id: null}\npad:\n  - name: p\n    peer: any\n"
       "    auth: ca\n    ca: x.crt\n    remote_ts: [\"192.0.2.1 any 80\"]\n",
       {"F:8:17: pad[0].remote_ts[0]: ports need a protocol (tcp, udp, sctp "
        "...)"}},
      {"btns_accepts_nothing",
       "identities:\n  h: {id: null}\npad:\n  - name: b\n    auth: btns\n"
       "    btns: {accept_null: false, accept_raw_key: false}\n",
       {"F:6:11: pad[0].btns: accept_null and accept_raw_key are both false; "
        "the entry would match no peer"}},
      {"pubkey_bad_fingerprint",
       "identities:\n  h: {id: null}\npad:\n  - name: p\n    peer: any\n"
       "    auth: pubkey\n    pubkey: sha256:abcd\n",
       {"F:7:13: pad[0].pubkey: expected sha256: followed by 64 hex digits"}},
      {"spd_unknown_peer",
       "identities:\n  h: {id: null}\npad:\n  - name: host-b\n    peer: any\n"
       "    auth: ca\n    ca: x.crt\nspd:\n  - name: s\n    action: protect\n"
       "    peer: host-c\n",
       {"F:11:11: spd[0].peer: no PAD entry named 'host-c'; did you mean "
        "'host-b'?"}},
      {"spd_unknown_proposal_set",
       "identities:\n  h: {id: null}\npad:\n  - name: b\n    peer: any\n"
       "    auth: ca\n    ca: x.crt\nspd:\n  - name: s\n    action: protect\n"
       "    peer: b\n    esp_proposals: strong\n",
       {"F:12:20: spd[0].esp_proposals: no proposal set named 'strong'; "
        "expected one of: default-ike, default-esp"}},
      {"spd_action_typo", "spd:\n  - name: s\n    action: protet\n",
       {"F:3:13: spd[0].action: unknown action 'protet'; did you mean "
        "'protect'?"}},
      {"spd_missing_action", "spd:\n  - name: s\n    remote: 192.0.2.0/24\n",
       {"F:2:5: spd[0].action: required field is missing"}},
      {"spd_tunnel_without_endpoints",
       "identities:\n  h: {id: null}\npad:\n  - name: b\n    peer: any\n"
       "    auth: ca\n    ca: x.crt\nspd:\n  - name: s\n    action: protect\n"
       "    peer: b\n    mode: tunnel\n",
       {"F:9:5: spd[0].tunnel: required field is missing"}},
      {"spd_bypass_with_peer", "spd:\n  - name: s\n    action: bypass\n    peer: x\n",
       {"F:4:11: spd[0].peer: 'peer' is only valid with action: protect"}},
      {"spd_mixed_families",
       "spd:\n  - name: s\n    local: 192.0.2.1\n    remote: 2001:db8::1\n"
       "    action: discard\n",
       {"F:4:13: spd[0].remote: local and remote addresses must be of the "
        "same family (both IPv4 or both IPv6)"}},
      {"spd_ports_without_protocol",
       "spd:\n  - name: s\n    local_ports: 80\n    action: bypass\n",
       {"F:3:18: spd[0].local_ports: ports need protocol: tcp, udp or sctp"}},
      {"spd_btns_peer_without_flag",
       "identities:\n  h: {id: null}\npad:\n  - name: all\n    auth: btns\n"
       "spd:\n  - name: s\n    action: protect\n    peer: all\n",
       {"F:9:11: spd[0].peer: PAD entry 'all' is a BTNS entry; set "
        "unauthenticated_ok: true to let unauthenticated peers use this SPD "
        "entry"}},
      {"spd_flag_on_authenticated_peer",
       "identities:\n  h: {id: null}\npad:\n  - name: b\n    peer: any\n"
       "    auth: ca\n    ca: x.crt\nspd:\n  - name: s\n    action: protect\n"
       "    peer: b\n    unauthenticated_ok: true\n",
       {"F:12:25: spd[0].unauthenticated_ok: PAD entry 'b' authenticates its "
        "peers; unauthenticated_ok is only for BTNS entries"}},
      {"lifetime_soft_after_hard",
       "spd:\n  - name: s\n    action: protect\n    peer: x\n"
       "    lifetime: {soft: 2h, hard: 1h}\n",
       {"F:4:11: spd[0].peer: no PAD entry named 'x' (the 'pad' section is "
        "empty)",
        "F:5:15: spd[0].lifetime: soft lifetime (7200s) must be shorter than "
        "hard lifetime (3600s)"}},
      {"lifetime_bad_unit",
       "spd:\n  - name: s\n    action: protect\n    peer: x\n"
       "    lifetime: {hard: 1w}\n",
       {"F:4:11: spd[0].peer: no PAD entry named 'x' (the 'pad' section is "
        "empty)",
        "F:5:22: spd[0].lifetime.hard: expected a duration such as 3600, 90s, "
        "30m, 8h or 1d"}},
      {"deprecated_algorithms_need_opt_in",
       "proposals:\n  old:\n    proposals:\n      - encryption: [3des]\n"
       "        integrity: [sha1]\n        prf: [sha1]\n"
       "        ke: [modp1024]\n",
       {"F:4:22: proposals.old.proposals[0].encryption[0]: '3des' is "
        "deprecated (RFC 8247); set allow_deprecated: true on proposal set "
        "'old' to use it anyway",
        "F:5:21: proposals.old.proposals[0].integrity[0]: 'sha1' is "
        "deprecated (RFC 8247); set allow_deprecated: true on proposal set "
        "'old' to use it anyway",
        "F:6:15: proposals.old.proposals[0].prf[0]: 'sha1' is deprecated (RFC "
        "8247); set allow_deprecated: true on proposal set 'old' to use it "
        "anyway",
        "F:7:14: proposals.old.proposals[0].ke[0]: 'modp1024' is deprecated "
        "(RFC 8247); set allow_deprecated: true on proposal set 'old' to use "
        "it anyway"}},
      {"algorithm_typo",
       "proposals:\n  p:\n    proposals:\n      - encryption: [aes265gcm16]\n",
       {"F:4:22: proposals.p.proposals[0].encryption[0]: unknown algorithm "
        "'aes265gcm16'; did you mean 'aes256gcm16'?"}},
      {"aead_with_integrity",
       "proposals:\n  p:\n    proposals:\n      - encryption: [aes128gcm16]\n"
       "        integrity: [sha256]\n",
       {"F:5:20: proposals.p.proposals[0].integrity: AEAD ciphers carry their "
        "own integrity; remove 'integrity'"}},
      {"cbc_without_integrity",
       "proposals:\n  p:\n    proposals:\n      - encryption: [aes128cbc]\n",
       {"F:4:21: proposals.p.proposals[0].encryption: a non-AEAD cipher needs "
        "an 'integrity' algorithm"}},
      {"esp_set_used_for_ike",
       "identities:\n  h: {id: null}\npad:\n  - name: b\n    peer: any\n"
       "    auth: ca\n    ca: x.crt\nspd:\n  - name: s\n    action: protect\n"
       "    peer: b\n    ike_proposals: default-esp\n",
       {"F:12:20: spd[0].ike_proposals: proposal set 'default-esp' has a "
        "proposal without 'prf', which IKE needs"}},
      {"api_unknown_identity",
       "identities:\n  host: {id: null}\napi:\n  grants:\n    - name: g\n"
       "      users: [0]\n      identities: [hots]\n",
       {"F:7:20: api.grants[0].identities[0]: no identity named 'hots'; did "
        "you mean 'host'?"}},
      {"api_unknown_group",
       "api:\n  admin_group: no-such-group-here\n",
       {"F:2:16: api.admin_group: unknown group 'no-such-group-here'; expected "
        "a name known to this system or a numeric gid"}},
      {"api_grant_without_principals",
       "api:\n  grants:\n    - name: g\n      identities: ['*']\n",
       {"F:3:7: api.grants[0]: a grant needs 'users' or 'groups'"}},
      {"dn_without_attributes", "identities:\n  h: {id: \"dn:not a dn\"}\n",
       {"F:2:11: identities.h.id: expected a distinguished name such as "
        "'dn:CN=host.example.com,O=Example'"}},
      {"spd_remote_outside_peer_selectors",
       "identities:\n  h: {id: null}\npad:\n  - name: b\n    peer: any\n"
       "    auth: ca\n    ca: x.crt\n    remote_ts: [198.51.100.0/24]\n"
       "spd:\n  - name: s\n    remote: 203.0.113.0/24\n    action: protect\n"
       "    peer: b\n",
       {"F:11:13: spd[0].remote: 203.0.113.0/24 is outside every remote_ts of "
        "PAD entry 'b'; no child SA could be negotiated"}},
      {"several_errors_in_one_run",
       "daemon:\n  log_level: loud\n  ike_port: 0\nspd:\n  - name: s\n"
       "    action: drop\n",
       {"F:2:14: daemon.log_level: unknown log level 'loud'; expected one of: "
        "error, warning, info, debug, trace",
        "F:3:13: daemon.ike_port: expected an integer from 1 to 65535, got "
        "'0'",
        "F:6:13: spd[0].action: unknown action 'drop'; expected one of: "
        "protect, bypass, discard"}},
  };
}

class InvalidConfigTest : public ::testing::TestWithParam<Case> {};

TEST_P(InvalidConfigTest, ReportsExactPositionAndMessage) {
  const Case& c = GetParam();
  ScratchDir dir(std::string("invalid_") + c.name);
  std::string file = dir.Write("t.yaml", c.yaml);
  LoadOptions options;
  options.check_files = false;
  LoadResult r = LoadConfigFile(file, options);
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.snapshot, nullptr);
  std::vector<std::string> expected;
  for (std::string e : c.expected) {
    for (size_t p; (p = e.find("F:")) != std::string::npos;)
      e.replace(p, 1, file);
    expected.push_back(e);
  }
  EXPECT_EQ(ErrorStrings(r), expected);
}

INSTANTIATE_TEST_SUITE_P(AllCases, InvalidConfigTest,
                         ::testing::ValuesIn(Cases()),
                         [](const auto& info) { return info.param.name; });

}  // namespace
}  // namespace btnsd::config
