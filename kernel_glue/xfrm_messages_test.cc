// The netlink requests kernel_glue sends, checked field by field against the
// linux/xfrm.h layout, and the decoding of replies, events and acks.
#include "kernel_glue/xfrm_messages.h"

#include <arpa/inet.h>
#include <linux/udp.h>
#include <linux/xfrm.h>
#include <netlink/attr.h>
#include <netlink/msg.h>
#include <sys/socket.h>

#include <cstring>
#include <string>

#include "gtest/gtest.h"
#include "kernel_glue/xfrm_rules.h"

namespace kernel_glue {
namespace {

IpAddress Ip(const char* text) { return *IpAddress::Parse(text); }

std::vector<uint8_t> Bytes(size_t size, uint8_t start) {
  std::vector<uint8_t> bytes(size);
  for (size_t i = 0; i < size; ++i) bytes[i] = static_cast<uint8_t>(start + i);
  return bytes;
}

SaParams GcmSa() {
  SaParams sa;
  sa.id = SaId{Ip("192.0.2.2"), 0xc0ffee01, kIpProtoEsp, std::nullopt};
  sa.src = Ip("192.0.2.1");
  sa.reqid = 0x00b70001;
  sa.cipher = Cipher::kAesGcm16;
  sa.encryption_key = Bytes(20, 1);
  return sa;
}

// Parses a built message as the kernel would: fixed struct then attributes.
template <typename Header>
struct Parsed {
  Header header;
  nlattr* attributes[XFRMA_MAX + 1] = {};
};

template <typename Header>
Parsed<Header> Parse(nl_msg* msg) {
  Parsed<Header> parsed;
  nlmsghdr* header = nlmsg_hdr(msg);
  EXPECT_TRUE(nlmsg_valid_hdr(header, sizeof(Header)));
  std::memcpy(&parsed.header, nlmsg_data(header), sizeof(Header));
  EXPECT_EQ(nlmsg_parse(header, sizeof(Header), parsed.attributes, XFRMA_MAX, nullptr), 0);
  return parsed;
}

TEST(BuildSaTest, AesGcmTransportIpv4) {
  NlMsgPtr msg = BuildSa(GcmSa(), /*update=*/false);
  ASSERT_NE(msg, nullptr);
  EXPECT_EQ(nlmsg_hdr(msg.get())->nlmsg_type, XFRM_MSG_NEWSA);
  EXPECT_EQ(nlmsg_hdr(msg.get())->nlmsg_flags, NLM_F_REQUEST | NLM_F_ACK);
  auto parsed = Parse<xfrm_usersa_info>(msg.get());
  const xfrm_usersa_info& info = parsed.header;
  EXPECT_EQ(info.id.spi, htonl(0xc0ffee01));
  EXPECT_EQ(info.id.proto, IPPROTO_ESP);
  EXPECT_EQ(info.family, AF_INET);
  EXPECT_EQ(info.mode, XFRM_MODE_TRANSPORT);
  EXPECT_EQ(info.reqid, 0x00b70001u);
  EXPECT_EQ(info.replay_window, 32);
  EXPECT_EQ(info.flags, 0);
  EXPECT_EQ(std::memcmp(&info.id.daddr, Ip("192.0.2.2").bytes.data(), 4), 0);
  EXPECT_EQ(std::memcmp(&info.saddr, Ip("192.0.2.1").bytes.data(), 4), 0);
  // A transport SA without a selector is bound to its two hosts.
  EXPECT_EQ(info.sel.family, AF_INET);
  EXPECT_EQ(info.sel.prefixlen_s, 32);
  EXPECT_EQ(info.sel.prefixlen_d, 32);
  EXPECT_EQ(info.lft.soft_byte_limit, XFRM_INF);
  EXPECT_EQ(info.lft.hard_packet_limit, XFRM_INF);

  ASSERT_NE(parsed.attributes[XFRMA_ALG_AEAD], nullptr);
  EXPECT_EQ(parsed.attributes[XFRMA_ALG_CRYPT], nullptr);
  EXPECT_EQ(parsed.attributes[XFRMA_ALG_AUTH_TRUNC], nullptr);
  EXPECT_EQ(parsed.attributes[XFRMA_ENCAP], nullptr);
  EXPECT_EQ(parsed.attributes[XFRMA_MARK], nullptr);
  EXPECT_EQ(parsed.attributes[XFRMA_REPLAY_ESN_VAL], nullptr);
  const auto* aead = static_cast<const xfrm_algo_aead*>(nla_data(parsed.attributes[XFRMA_ALG_AEAD]));
  EXPECT_STREQ(aead->alg_name, "rfc4106(gcm(aes))");
  EXPECT_EQ(aead->alg_key_len, 160u);  // 128-bit key + 32-bit salt
  EXPECT_EQ(aead->alg_icv_len, 128u);
  EXPECT_EQ(nla_len(parsed.attributes[XFRMA_ALG_AEAD]), static_cast<int>(sizeof(xfrm_algo_aead) + 20));
  EXPECT_EQ(std::memcmp(aead->alg_key, Bytes(20, 1).data(), 20), 0);
}

TEST(BuildSaTest, ChaChaPoly) {
  SaParams sa = GcmSa();
  sa.cipher = Cipher::kChaCha20Poly1305;
  sa.encryption_key = Bytes(36, 9);
  NlMsgPtr msg = BuildSa(sa, /*update=*/true);
  ASSERT_NE(msg, nullptr);
  EXPECT_EQ(nlmsg_hdr(msg.get())->nlmsg_type, XFRM_MSG_UPDSA);
  auto parsed = Parse<xfrm_usersa_info>(msg.get());
  const auto* aead = static_cast<const xfrm_algo_aead*>(nla_data(parsed.attributes[XFRMA_ALG_AEAD]));
  EXPECT_STREQ(aead->alg_name, "rfc7539esp(chacha20,poly1305)");
  EXPECT_EQ(aead->alg_key_len, 288u);
  EXPECT_EQ(aead->alg_icv_len, 128u);
}

struct CbcCase {
  Integrity integrity;
  size_t key_bytes;
  const char* name;
  unsigned truncation_bits;
};

class BuildCbcSaTest : public ::testing::TestWithParam<CbcCase> {};

TEST_P(BuildCbcSaTest, EncryptionPlusTruncatedHmac) {
  const CbcCase& c = GetParam();
  SaParams sa = GcmSa();
  sa.cipher = Cipher::kAesCbc;
  sa.encryption_key = Bytes(32, 3);
  sa.integrity = c.integrity;
  sa.integrity_key = Bytes(c.key_bytes, 7);
  ASSERT_TRUE(ValidateSa(sa, Ownership{}).ok());
  NlMsgPtr msg = BuildSa(sa, false);
  ASSERT_NE(msg, nullptr);
  auto parsed = Parse<xfrm_usersa_info>(msg.get());
  EXPECT_EQ(parsed.attributes[XFRMA_ALG_AEAD], nullptr);
  ASSERT_NE(parsed.attributes[XFRMA_ALG_CRYPT], nullptr);
  ASSERT_NE(parsed.attributes[XFRMA_ALG_AUTH_TRUNC], nullptr);
  const auto* crypt = static_cast<const xfrm_algo*>(nla_data(parsed.attributes[XFRMA_ALG_CRYPT]));
  EXPECT_STREQ(crypt->alg_name, "cbc(aes)");
  EXPECT_EQ(crypt->alg_key_len, 256u);
  const auto* auth = static_cast<const xfrm_algo_auth*>(nla_data(parsed.attributes[XFRMA_ALG_AUTH_TRUNC]));
  EXPECT_STREQ(auth->alg_name, c.name);
  EXPECT_EQ(auth->alg_key_len, c.key_bytes * 8);
  EXPECT_EQ(auth->alg_trunc_len, c.truncation_bits);
  EXPECT_EQ(std::memcmp(auth->alg_key, Bytes(c.key_bytes, 7).data(), c.key_bytes), 0);
}

INSTANTIATE_TEST_SUITE_P(
    Rfc4868, BuildCbcSaTest,
    ::testing::Values(CbcCase{Integrity::kHmacSha256_128, 32, "hmac(sha256)", 128},
                      CbcCase{Integrity::kHmacSha384_192, 48, "hmac(sha384)", 192},
                      CbcCase{Integrity::kHmacSha512_256, 64, "hmac(sha512)", 256}));

TEST(BuildSaTest, EsnReplayEncapMarkLifetimeTunnelIpv6) {
  SaParams sa = GcmSa();
  sa.id.dst = Ip("2001:db8::2");
  sa.src = Ip("2001:db8::1");
  sa.mode = Mode::kTunnel;
  sa.extended_sequence_numbers = true;
  sa.replay_window = 128;
  sa.encap = UdpEncap{4500, 31337};
  sa.id.mark = Mark{0x17, 0xff};
  sa.lifetime.soft_bytes = 1000;
  sa.lifetime.hard_bytes = 2000;
  sa.lifetime.soft_add_seconds = 3000;
  sa.lifetime.hard_add_seconds = 3600;
  NlMsgPtr msg = BuildSa(sa, false);
  ASSERT_NE(msg, nullptr);
  auto parsed = Parse<xfrm_usersa_info>(msg.get());
  const xfrm_usersa_info& info = parsed.header;
  EXPECT_EQ(info.family, AF_INET6);
  EXPECT_EQ(info.mode, XFRM_MODE_TUNNEL);
  EXPECT_EQ(info.flags & XFRM_STATE_ESN, XFRM_STATE_ESN);
  EXPECT_EQ(info.replay_window, 0) << "the kernel refuses ESN with the legacy window set";
  EXPECT_EQ(info.sel.family, AF_INET6);
  EXPECT_EQ(info.sel.prefixlen_s, 0);
  EXPECT_EQ(info.lft.soft_byte_limit, 1000u);
  EXPECT_EQ(info.lft.hard_byte_limit, 2000u);
  EXPECT_EQ(info.lft.soft_add_expires_seconds, 3000u);
  EXPECT_EQ(info.lft.hard_add_expires_seconds, 3600u);
  EXPECT_EQ(info.lft.soft_packet_limit, XFRM_INF);
  EXPECT_EQ(std::memcmp(&info.id.daddr, Ip("2001:db8::2").bytes.data(), 16), 0);

  ASSERT_NE(parsed.attributes[XFRMA_REPLAY_ESN_VAL], nullptr);
  const auto* esn = static_cast<const xfrm_replay_state_esn*>(nla_data(parsed.attributes[XFRMA_REPLAY_ESN_VAL]));
  EXPECT_EQ(esn->replay_window, 128u);
  EXPECT_EQ(esn->bmp_len, 4u);
  EXPECT_EQ(nla_len(parsed.attributes[XFRMA_REPLAY_ESN_VAL]),
            static_cast<int>(sizeof(xfrm_replay_state_esn) + 4 * sizeof(uint32_t)));
  ASSERT_NE(parsed.attributes[XFRMA_ENCAP], nullptr);
  const auto* encap = static_cast<const xfrm_encap_tmpl*>(nla_data(parsed.attributes[XFRMA_ENCAP]));
  EXPECT_EQ(encap->encap_type, UDP_ENCAP_ESPINUDP);
  EXPECT_EQ(encap->encap_sport, htons(4500));
  EXPECT_EQ(encap->encap_dport, htons(31337));
  ASSERT_NE(parsed.attributes[XFRMA_MARK], nullptr);
  const auto* mark = static_cast<const xfrm_mark*>(nla_data(parsed.attributes[XFRMA_MARK]));
  EXPECT_EQ(mark->v, 0x17u);
  EXPECT_EQ(mark->m, 0xffu);
}

TEST(BuildSaTest, LargeWindowWithoutEsnUsesEsnAttribute) {
  SaParams sa = GcmSa();
  sa.replay_window = 64;
  NlMsgPtr msg = BuildSa(sa, false);
  auto parsed = Parse<xfrm_usersa_info>(msg.get());
  EXPECT_EQ(parsed.header.flags & XFRM_STATE_ESN, 0);
  EXPECT_EQ(parsed.header.replay_window, 0);
  ASSERT_NE(parsed.attributes[XFRMA_REPLAY_ESN_VAL], nullptr);
}

TEST(BuildSaTest, DecodesBackToTheSameSa) {
  SaParams sa = GcmSa();
  sa.encap = UdpEncap{4500, 4500};
  sa.id.mark = Mark{1, 1};
  sa.lifetime.soft_packets = 99;
  NlMsgPtr msg = BuildSa(sa, false);
  auto info = DecodeSa(nlmsg_hdr(msg.get()));
  ASSERT_TRUE(info.ok()) << info.error().ToString();
  EXPECT_EQ(info.value().id, sa.id);
  EXPECT_EQ(info.value().src, sa.src);
  EXPECT_EQ(info.value().reqid, sa.reqid);
  EXPECT_EQ(info.value().algorithm, "rfc4106(gcm(aes))");
  EXPECT_EQ(info.value().encap, sa.encap);
  EXPECT_EQ(info.value().lifetime, sa.lifetime);
  EXPECT_EQ(info.value().replay_window, 32u);
}

// An SA added to carry on where another left off (moved to new addresses):
// its replay state and counters go into the request and come back decoded.
TEST(BuildSaTest, CarriesReplayStateAndCounters) {
  SaParams sa = GcmSa();
  sa.replay = ReplayState{1000, 0, 990, 0, {0xfffffff0u}};
  sa.counters = SaCounters{123456, 1000, 1700000000, 1700000100};
  NlMsgPtr msg = BuildSa(sa, false);
  ASSERT_NE(msg, nullptr);
  auto parsed = Parse<xfrm_usersa_info>(msg.get());
  EXPECT_EQ(parsed.header.replay_window, 32);
  EXPECT_EQ(parsed.attributes[XFRMA_REPLAY_ESN_VAL], nullptr);
  ASSERT_NE(parsed.attributes[XFRMA_REPLAY_VAL], nullptr);
  const auto* replay = static_cast<const xfrm_replay_state*>(nla_data(parsed.attributes[XFRMA_REPLAY_VAL]));
  EXPECT_EQ(replay->oseq, 1000u);
  EXPECT_EQ(replay->seq, 990u);
  EXPECT_EQ(replay->bitmap, 0xfffffff0u);
  ASSERT_NE(parsed.attributes[XFRMA_LTIME_VAL], nullptr);
  const auto* current = static_cast<const xfrm_lifetime_cur*>(nla_data(parsed.attributes[XFRMA_LTIME_VAL]));
  EXPECT_EQ(current->bytes, 123456u);
  EXPECT_EQ(current->packets, 1000u);
  EXPECT_EQ(current->add_time, 1700000000u);
  EXPECT_EQ(current->use_time, 1700000100u);
  auto info = DecodeSa(nlmsg_hdr(msg.get()));
  ASSERT_TRUE(info.ok()) << info.error().ToString();
  EXPECT_EQ(info.value().replay, *sa.replay);

  // Without them, neither attribute is sent (a fresh SA starts at zero).
  NlMsgPtr fresh = BuildSa(GcmSa(), false);
  auto fresh_parsed = Parse<xfrm_usersa_info>(fresh.get());
  EXPECT_EQ(fresh_parsed.attributes[XFRMA_REPLAY_VAL], nullptr);
  EXPECT_EQ(fresh_parsed.attributes[XFRMA_LTIME_VAL], nullptr);
}

TEST(BuildSaTest, CarriesEsnReplayStateWithItsBitmap) {
  SaParams sa = GcmSa();
  sa.extended_sequence_numbers = true;
  sa.replay_window = 128;
  sa.replay = ReplayState{7, 1, 5, 1, {0x1f, 0, 0, 0x80000000u}};
  NlMsgPtr msg = BuildSa(sa, false);
  ASSERT_NE(msg, nullptr);
  auto parsed = Parse<xfrm_usersa_info>(msg.get());
  EXPECT_EQ(parsed.attributes[XFRMA_REPLAY_VAL], nullptr);
  ASSERT_NE(parsed.attributes[XFRMA_REPLAY_ESN_VAL], nullptr);
  const auto* esn = static_cast<const xfrm_replay_state_esn*>(nla_data(parsed.attributes[XFRMA_REPLAY_ESN_VAL]));
  EXPECT_EQ(esn->oseq, 7u);
  EXPECT_EQ(esn->oseq_hi, 1u);
  EXPECT_EQ(esn->seq, 5u);
  EXPECT_EQ(esn->seq_hi, 1u);
  EXPECT_EQ(esn->bmp_len, 4u);
  EXPECT_EQ(esn->bmp[0], 0x1fu);
  EXPECT_EQ(esn->bmp[3], 0x80000000u);
  auto info = DecodeSa(nlmsg_hdr(msg.get()));
  ASSERT_TRUE(info.ok()) << info.error().ToString();
  EXPECT_EQ(info.value().replay, *sa.replay);
  EXPECT_EQ(info.value().replay_window, 128u);
}

TEST(BuildRequestTest, AllocSpi) {
  NlMsgPtr msg = BuildAllocSpi(Ip("192.0.2.2"), Ip("192.0.2.1"), 0xb70009, 0x1000, 0x1fff);
  ASSERT_NE(msg, nullptr);
  EXPECT_EQ(nlmsg_hdr(msg.get())->nlmsg_type, XFRM_MSG_ALLOCSPI);
  auto parsed = Parse<xfrm_userspi_info>(msg.get());
  EXPECT_EQ(parsed.header.min, 0x1000u);
  EXPECT_EQ(parsed.header.max, 0x1fffu);
  EXPECT_EQ(parsed.header.info.reqid, 0xb70009u);
  EXPECT_EQ(parsed.header.info.id.proto, IPPROTO_ESP);
  EXPECT_EQ(parsed.header.info.family, AF_INET);
  EXPECT_EQ(std::memcmp(&parsed.header.info.id.daddr, Ip("192.0.2.1").bytes.data(), 4), 0);
  EXPECT_EQ(std::memcmp(&parsed.header.info.saddr, Ip("192.0.2.2").bytes.data(), 4), 0);
}

TEST(BuildRequestTest, DeleteAndGetSa) {
  SaId id{Ip("2001:db8::7"), 0x01020304, kIpProtoEsp, Mark{5, 0xf}};
  NlMsgPtr del = BuildDeleteSa(id);
  NlMsgPtr get = BuildGetSa(id);
  EXPECT_EQ(nlmsg_hdr(del.get())->nlmsg_type, XFRM_MSG_DELSA);
  EXPECT_EQ(nlmsg_hdr(del.get())->nlmsg_flags, NLM_F_REQUEST | NLM_F_ACK);
  EXPECT_EQ(nlmsg_hdr(get.get())->nlmsg_type, XFRM_MSG_GETSA);
  EXPECT_EQ(nlmsg_hdr(get.get())->nlmsg_flags, NLM_F_REQUEST);
  auto parsed = Parse<xfrm_usersa_id>(del.get());
  EXPECT_EQ(parsed.header.spi, htonl(0x01020304));
  EXPECT_EQ(parsed.header.family, AF_INET6);
  EXPECT_EQ(parsed.header.proto, IPPROTO_ESP);
  ASSERT_NE(parsed.attributes[XFRMA_MARK], nullptr);
  EXPECT_EQ(static_cast<const xfrm_mark*>(nla_data(parsed.attributes[XFRMA_MARK]))->v, 5u);
  EXPECT_EQ(nlmsg_hdr(BuildDumpSas().get())->nlmsg_flags, NLM_F_REQUEST | NLM_F_DUMP);
  EXPECT_EQ(nlmsg_hdr(BuildDumpPolicies().get())->nlmsg_type, XFRM_MSG_GETPOLICY);
}

PolicyParams TunnelPolicy() {
  PolicyParams policy;
  policy.id.selector.src = Ip("198.51.100.0");
  policy.id.selector.src_prefix = 24;
  policy.id.selector.dst = Ip("203.0.113.0");
  policy.id.selector.dst_prefix = 24;
  policy.id.selector.protocol = IPPROTO_TCP;
  policy.id.selector.dst_port = 443;
  policy.id.direction = Direction::kFwd;
  policy.priority = 0x7b010;
  PolicyTemplate templ;
  templ.mode = Mode::kTunnel;
  templ.reqid = 0xb70002;
  templ.tunnel_src = Ip("2001:db8::1");
  templ.tunnel_dst = Ip("2001:db8::2");
  policy.templates.push_back(templ);
  templ.mode = Mode::kTransport;
  templ.optional = true;
  policy.templates.push_back(templ);
  return policy;
}

TEST(BuildPolicyTest, TemplatesSelectorAndDirection) {
  PolicyParams policy = TunnelPolicy();
  NlMsgPtr msg = BuildPolicy(policy, false);
  ASSERT_NE(msg, nullptr);
  EXPECT_EQ(nlmsg_hdr(msg.get())->nlmsg_type, XFRM_MSG_NEWPOLICY);
  auto parsed = Parse<xfrm_userpolicy_info>(msg.get());
  const xfrm_userpolicy_info& info = parsed.header;
  EXPECT_EQ(info.dir, XFRM_POLICY_FWD);
  EXPECT_EQ(info.priority, 0x7b010u);
  EXPECT_EQ(info.action, XFRM_POLICY_ALLOW);
  EXPECT_EQ(info.sel.family, AF_INET);
  EXPECT_EQ(info.sel.prefixlen_s, 24);
  EXPECT_EQ(info.sel.proto, IPPROTO_TCP);
  EXPECT_EQ(info.sel.dport, htons(443));
  EXPECT_EQ(info.sel.dport_mask, 0xffff);
  EXPECT_EQ(info.sel.sport_mask, 0);
  ASSERT_NE(parsed.attributes[XFRMA_TMPL], nullptr);
  ASSERT_EQ(nla_len(parsed.attributes[XFRMA_TMPL]), static_cast<int>(2 * sizeof(xfrm_user_tmpl)));
  const auto* templates = static_cast<const xfrm_user_tmpl*>(nla_data(parsed.attributes[XFRMA_TMPL]));
  EXPECT_EQ(templates[0].mode, XFRM_MODE_TUNNEL);
  EXPECT_EQ(templates[0].family, AF_INET6);  // IPv4 traffic in an IPv6 tunnel
  EXPECT_EQ(templates[0].reqid, 0xb70002u);
  EXPECT_EQ(templates[0].id.proto, IPPROTO_ESP);
  EXPECT_EQ(std::memcmp(&templates[0].id.daddr, Ip("2001:db8::2").bytes.data(), 16), 0);
  EXPECT_EQ(std::memcmp(&templates[0].saddr, Ip("2001:db8::1").bytes.data(), 16), 0);
  EXPECT_EQ(templates[0].ealgos, ~0u);
  EXPECT_EQ(templates[0].optional, 0);
  EXPECT_EQ(templates[1].mode, XFRM_MODE_TRANSPORT);
  EXPECT_EQ(templates[1].family, AF_INET);
  EXPECT_EQ(templates[1].optional, 1);

  auto decoded = DecodePolicy(nlmsg_hdr(msg.get()));
  ASSERT_TRUE(decoded.ok()) << decoded.error().ToString();
  PolicyParams expected = policy;
  expected.templates[1].tunnel_src = IpAddress{};  // transport: no endpoints
  expected.templates[1].tunnel_dst = IpAddress{};
  EXPECT_EQ(decoded.value().params, expected);

  EXPECT_EQ(nlmsg_hdr(BuildPolicy(policy, true).get())->nlmsg_type, XFRM_MSG_UPDPOLICY);
}

TEST(BuildPolicyTest, DiscardHasNoTemplates) {
  PolicyParams policy = TunnelPolicy();
  policy.action = PolicyAction::kDiscard;
  policy.templates.clear();
  policy.id.mark = Mark{3, 3};
  NlMsgPtr msg = BuildPolicy(policy, false);
  auto parsed = Parse<xfrm_userpolicy_info>(msg.get());
  EXPECT_EQ(parsed.header.action, XFRM_POLICY_BLOCK);
  EXPECT_EQ(parsed.attributes[XFRMA_TMPL], nullptr);
  EXPECT_NE(parsed.attributes[XFRMA_MARK], nullptr);
  auto decoded = DecodePolicy(nlmsg_hdr(msg.get()));
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(decoded.value().params.action, PolicyAction::kDiscard);
  EXPECT_EQ(decoded.value().params.id.mark, policy.id.mark);
}

TEST(BuildPolicyTest, DeletePolicy) {
  PolicyParams policy = TunnelPolicy();
  NlMsgPtr msg = BuildDeletePolicy(policy.id);
  EXPECT_EQ(nlmsg_hdr(msg.get())->nlmsg_type, XFRM_MSG_DELPOLICY);
  auto parsed = Parse<xfrm_userpolicy_id>(msg.get());
  EXPECT_EQ(parsed.header.dir, XFRM_POLICY_FWD);
  EXPECT_EQ(parsed.header.sel.prefixlen_d, 24);
  EXPECT_EQ(parsed.header.index, 0u);
}

TEST(BuildSocketPolicyTest, InfoFollowedByTemplates) {
  SocketPolicy policy;
  policy.direction = Direction::kIn;
  policy.action = PolicyAction::kProtect;
  policy.templates.push_back(PolicyTemplate{Mode::kTransport, 0xb70003, {}, {}, false});
  std::vector<uint8_t> buffer = BuildSocketPolicy(policy, AddressFamily::kIpv6);
  ASSERT_EQ(buffer.size(), sizeof(xfrm_userpolicy_info) + sizeof(xfrm_user_tmpl));
  xfrm_userpolicy_info info;
  std::memcpy(&info, buffer.data(), sizeof(info));
  EXPECT_EQ(info.dir, XFRM_POLICY_IN);
  EXPECT_EQ(info.sel.family, AF_INET6);
  EXPECT_EQ(info.sel.prefixlen_d, 0);
  xfrm_user_tmpl templ;
  std::memcpy(&templ, buffer.data() + sizeof(info), sizeof(templ));
  EXPECT_EQ(templ.reqid, 0xb70003u);
  EXPECT_EQ(templ.family, AF_INET6);

  SocketPolicy bypass;
  bypass.direction = Direction::kOut;
  EXPECT_EQ(BuildSocketPolicy(bypass, AddressFamily::kIpv4).size(), sizeof(xfrm_userpolicy_info));
}

// --- events and acks, built the way the kernel builds them

NlMsgPtr Acquire(bool with_template) {
  NlMsgPtr msg(nlmsg_alloc_simple(XFRM_MSG_ACQUIRE, 0));
  xfrm_user_acquire acquire;
  std::memset(&acquire, 0, sizeof(acquire));
  std::memcpy(&acquire.id.daddr, Ip("192.0.2.2").bytes.data(), 4);
  acquire.id.proto = IPPROTO_ESP;
  std::memcpy(&acquire.saddr, Ip("192.0.2.1").bytes.data(), 4);
  acquire.sel.family = AF_INET;
  std::memcpy(&acquire.sel.daddr, Ip("192.0.2.2").bytes.data(), 4);
  std::memcpy(&acquire.sel.saddr, Ip("192.0.2.1").bytes.data(), 4);
  acquire.sel.prefixlen_d = acquire.sel.prefixlen_s = 32;
  acquire.sel.proto = IPPROTO_UDP;
  acquire.sel.dport = htons(53);
  acquire.sel.dport_mask = 0xffff;
  acquire.policy.index = 0x139;
  acquire.policy.dir = XFRM_POLICY_OUT;
  nlmsg_append(msg.get(), &acquire, sizeof(acquire), NLMSG_ALIGNTO);
  if (with_template) {
    xfrm_user_tmpl templ;
    std::memset(&templ, 0, sizeof(templ));
    templ.family = AF_INET;
    templ.reqid = 0xb70005;
    templ.mode = XFRM_MODE_TRANSPORT;
    templ.id.proto = IPPROTO_ESP;
    nla_put(msg.get(), XFRMA_TMPL, sizeof(templ), &templ);
  }
  return msg;
}

TEST(DecodeEventTest, Acquire) {
  NlMsgPtr msg = Acquire(true);
  auto event = DecodeEvent(nlmsg_hdr(msg.get()));
  ASSERT_TRUE(event.ok()) << event.error().ToString();
  ASSERT_TRUE(event.value().has_value());
  const auto* acquire = std::get_if<AcquireEvent>(&*event.value());
  ASSERT_NE(acquire, nullptr);
  EXPECT_EQ(acquire->policy_index, 0x139u);
  EXPECT_EQ(acquire->policy_direction, Direction::kOut);
  EXPECT_EQ(acquire->templ.reqid, 0xb70005u);
  EXPECT_EQ(acquire->selector.dst_port, 53);
  EXPECT_EQ(acquire->selector.protocol, IPPROTO_UDP);
  EXPECT_EQ(acquire->src, Ip("192.0.2.1"));
  EXPECT_EQ(acquire->dst, Ip("192.0.2.2"));
}

TEST(DecodeEventTest, AcquireWithoutTemplateIsAnError) {
  NlMsgPtr msg = Acquire(false);
  auto event = DecodeEvent(nlmsg_hdr(msg.get()));
  ASSERT_FALSE(event.ok());
  EXPECT_EQ(event.error().error_number, EBADMSG);
  EXPECT_NE(event.error().kernel_message.find("XFRMA_TMPL"), std::string::npos);
}

TEST(DecodeEventTest, ExpireSoftAndHard) {
  for (uint8_t hard : {0, 1}) {
    NlMsgPtr msg(nlmsg_alloc_simple(XFRM_MSG_EXPIRE, 0));
    xfrm_user_expire expire;
    std::memset(&expire, 0, sizeof(expire));
    expire.state.family = AF_INET6;
    std::memcpy(&expire.state.id.daddr, Ip("2001:db8::9").bytes.data(), 16);
    expire.state.id.spi = htonl(0xabcdef01);
    expire.state.id.proto = IPPROTO_ESP;
    expire.state.reqid = 0xb70006;
    expire.hard = hard;
    nlmsg_append(msg.get(), &expire, sizeof(expire), NLMSG_ALIGNTO);
    auto event = DecodeEvent(nlmsg_hdr(msg.get()));
    ASSERT_TRUE(event.ok());
    const auto* decoded = std::get_if<ExpireEvent>(&*event.value());
    ASSERT_NE(decoded, nullptr);
    EXPECT_EQ(decoded->hard, hard == 1);
    EXPECT_EQ(decoded->id.spi, 0xabcdef01u);
    EXPECT_EQ(decoded->id.dst, Ip("2001:db8::9"));
    EXPECT_EQ(decoded->reqid, 0xb70006u);
  }
}

TEST(DecodeEventTest, Mapping) {
  NlMsgPtr msg(nlmsg_alloc_simple(XFRM_MSG_MAPPING, 0));
  xfrm_user_mapping mapping;
  std::memset(&mapping, 0, sizeof(mapping));
  mapping.id.family = AF_INET;
  mapping.id.spi = htonl(0x1234);
  mapping.id.proto = IPPROTO_ESP;
  std::memcpy(&mapping.id.daddr, Ip("192.0.2.1").bytes.data(), 4);
  mapping.reqid = 0xb70007;
  std::memcpy(&mapping.old_saddr, Ip("198.51.100.7").bytes.data(), 4);
  std::memcpy(&mapping.new_saddr, Ip("198.51.100.8").bytes.data(), 4);
  mapping.old_sport = htons(4500);
  mapping.new_sport = htons(61000);
  nlmsg_append(msg.get(), &mapping, sizeof(mapping), NLMSG_ALIGNTO);
  auto event = DecodeEvent(nlmsg_hdr(msg.get()));
  ASSERT_TRUE(event.ok());
  const auto* decoded = std::get_if<MappingEvent>(&*event.value());
  ASSERT_NE(decoded, nullptr);
  EXPECT_EQ(decoded->old_src, Ip("198.51.100.7"));
  EXPECT_EQ(decoded->new_src, Ip("198.51.100.8"));
  EXPECT_EQ(decoded->old_src_port, 4500);
  EXPECT_EQ(decoded->new_src_port, 61000);
  EXPECT_EQ(decoded->id.spi, 0x1234u);
  EXPECT_EQ(decoded->reqid, 0xb70007u);
}

TEST(DecodeEventTest, TruncatedAndUnknownMessages) {
  NlMsgPtr short_expire(nlmsg_alloc_simple(XFRM_MSG_EXPIRE, 0));
  uint8_t half[sizeof(xfrm_user_expire) / 2] = {};
  nlmsg_append(short_expire.get(), half, sizeof(half), NLMSG_ALIGNTO);
  auto event = DecodeEvent(nlmsg_hdr(short_expire.get()));
  ASSERT_FALSE(event.ok());
  EXPECT_EQ(event.error().error_number, EBADMSG);
  EXPECT_NE(event.error().kernel_message.find("xfrm_user_expire"), std::string::npos);

  NlMsgPtr policy_change(nlmsg_alloc_simple(XFRM_MSG_NEWPOLICY, 0));
  auto ignored = DecodeEvent(nlmsg_hdr(policy_change.get()));
  ASSERT_TRUE(ignored.ok());
  EXPECT_FALSE(ignored.value().has_value());

  // A template attribute whose length is not a whole number of templates.
  NlMsgPtr bad_template(nlmsg_alloc_simple(XFRM_MSG_ACQUIRE, 0));
  xfrm_user_acquire acquire;
  std::memset(&acquire, 0, sizeof(acquire));
  nlmsg_append(bad_template.get(), &acquire, sizeof(acquire), NLMSG_ALIGNTO);
  uint8_t odd[sizeof(xfrm_user_tmpl) + 4] = {};
  nla_put(bad_template.get(), XFRMA_TMPL, sizeof(odd), odd);
  auto bad = DecodeEvent(nlmsg_hdr(bad_template.get()));
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().error_number, EBADMSG);
}

TEST(DecodeSaTest, ShortAttributeIsRejected) {
  NlMsgPtr msg(nlmsg_alloc_simple(XFRM_MSG_NEWSA, 0));
  xfrm_usersa_info info;
  std::memset(&info, 0, sizeof(info));
  nlmsg_append(msg.get(), &info, sizeof(info), NLMSG_ALIGNTO);
  uint8_t short_encap[2] = {};
  nla_put(msg.get(), XFRMA_ENCAP, sizeof(short_encap), short_encap);
  auto sa = DecodeSa(nlmsg_hdr(msg.get()));
  ASSERT_FALSE(sa.ok());
  EXPECT_EQ(sa.error().error_number, EBADMSG);
}

// An NLMSG_ERROR as the kernel sends it with NETLINK_EXT_ACK.
std::vector<uint8_t> ErrorMessage(int error, const char* text, bool capped) {
  NlMsgPtr request(nlmsg_alloc_simple(XFRM_MSG_NEWPOLICY, NLM_F_REQUEST | NLM_F_ACK));
  uint8_t body[40] = {};
  nlmsg_append(request.get(), body, sizeof(body), NLMSG_ALIGNTO);
  NlMsgPtr msg(nlmsg_alloc_simple(NLMSG_ERROR, NLM_F_ACK_TLVS | (capped ? NLM_F_CAPPED : 0)));
  nlmsgerr header;
  header.error = error;
  header.msg = *nlmsg_hdr(request.get());
  nlmsg_append(msg.get(), &header, sizeof(header), NLMSG_ALIGNTO);
  if (!capped) nlmsg_append(msg.get(), body, sizeof(body), NLMSG_ALIGNTO);
  nla_put_string(msg.get(), NLMSGERR_ATTR_MSG, text);
  const nlmsghdr* h = nlmsg_hdr(msg.get());
  const auto* bytes = reinterpret_cast<const uint8_t*>(h);
  return std::vector<uint8_t>(bytes, bytes + h->nlmsg_len);
}

TEST(DecodeAckTest, ExtendedAckMessageCappedAndUncapped) {
  for (bool capped : {true, false}) {
    std::vector<uint8_t> bytes = ErrorMessage(-EEXIST, "Policy already exists", capped);
    auto messages = SplitMessages(bytes.data(), bytes.size());
    ASSERT_TRUE(messages.ok());
    ASSERT_EQ(messages.value().size(), 1u);
    Status status = DecodeAck(messages.value()[0], "XFRM_MSG_NEWPOLICY test");
    ASSERT_FALSE(status.ok());
    EXPECT_EQ(status.error().error_number, EEXIST);
    EXPECT_EQ(status.error().kernel_message, "Policy already exists");
    EXPECT_NE(status.error().ToString().find("XFRM_MSG_NEWPOLICY test"), std::string::npos);
  }
}

TEST(DecodeAckTest, ZeroIsSuccessAndShortIsMalformed) {
  NlMsgPtr ok(nlmsg_alloc_simple(NLMSG_ERROR, 0));
  nlmsgerr header{};
  nlmsg_append(ok.get(), &header, sizeof(header), NLMSG_ALIGNTO);
  EXPECT_TRUE(DecodeAck(nlmsg_hdr(ok.get()), "op").ok());
  NlMsgPtr short_ack(nlmsg_alloc_simple(NLMSG_ERROR, 0));
  int only_error = -1;
  nlmsg_append(short_ack.get(), &only_error, sizeof(only_error), NLMSG_ALIGNTO);
  Status status = DecodeAck(nlmsg_hdr(short_ack.get()), "op");
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(status.error().error_number, EBADMSG);
}

TEST(SplitMessagesTest, CountsMessagesAndRejectsTrailingBytes) {
  std::vector<uint8_t> first = ErrorMessage(-ENOENT, "a", true);
  std::vector<uint8_t> both = first;
  std::vector<uint8_t> second = ErrorMessage(-EINVAL, "b", true);
  both.insert(both.end(), second.begin(), second.end());
  auto messages = SplitMessages(both.data(), both.size());
  ASSERT_TRUE(messages.ok());
  EXPECT_EQ(messages.value().size(), 2u);
  both.resize(both.size() - 3);
  auto truncated = SplitMessages(both.data(), both.size());
  ASSERT_FALSE(truncated.ok());
  EXPECT_EQ(truncated.error().error_number, EBADMSG);
}

}  // namespace
}  // namespace kernel_glue
