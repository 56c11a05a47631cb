#include "kernel_glue/xfrm_messages.h"

#include <arpa/inet.h>
#include <linux/udp.h>
#include <linux/xfrm.h>
#include <netlink/attr.h>
#include <netlink/msg.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>

#include "kernel_glue/xfrm_rules.h"

namespace kernel_glue {

void NlMsgDeleter::operator()(nl_msg* msg) const { nlmsg_free(msg); }

namespace {

constexpr uint64_t kInfinite = XFRM_INF;

int KernelFamily(AddressFamily family) {
  return family == AddressFamily::kIpv4 ? AF_INET : AF_INET6;
}

void PutAddress(xfrm_address_t& out, const IpAddress& address) {
  std::memset(&out, 0, sizeof(out));
  std::memcpy(&out, address.bytes.data(), address.size());
}

IpAddress GetAddress(const xfrm_address_t& in, int family) {
  IpAddress address;
  address.family = family == AF_INET6 ? AddressFamily::kIpv6 : AddressFamily::kIpv4;
  std::memcpy(address.bytes.data(), &in, address.size());
  return address;
}

uint8_t KernelMode(Mode mode) {
  return mode == Mode::kTunnel ? XFRM_MODE_TUNNEL : XFRM_MODE_TRANSPORT;
}

uint8_t KernelDirection(Direction direction) {
  switch (direction) {
    case Direction::kIn: return XFRM_POLICY_IN;
    case Direction::kOut: return XFRM_POLICY_OUT;
    case Direction::kFwd: return XFRM_POLICY_FWD;
  }
  return XFRM_POLICY_OUT;
}

Direction DirectionFromKernel(uint8_t direction) {
  switch (direction) {
    case XFRM_POLICY_IN: return Direction::kIn;
    case XFRM_POLICY_FWD: return Direction::kFwd;
    default: return Direction::kOut;
  }
}

void PutSelector(xfrm_selector& out, const Selector& selector) {
  std::memset(&out, 0, sizeof(out));
  PutAddress(out.daddr, selector.dst);
  PutAddress(out.saddr, selector.src);
  out.dport = htons(selector.dst_port);
  out.dport_mask = selector.dst_port != 0 ? 0xffff : 0;
  out.sport = htons(selector.src_port);
  out.sport_mask = selector.src_port != 0 ? 0xffff : 0;
  out.family = static_cast<uint16_t>(KernelFamily(selector.family()));
  out.prefixlen_d = selector.dst_prefix;
  out.prefixlen_s = selector.src_prefix;
  out.proto = selector.protocol;
}

Selector GetSelector(const xfrm_selector& in) {
  Selector selector;
  selector.src = GetAddress(in.saddr, in.family);
  selector.dst = GetAddress(in.daddr, in.family);
  selector.src_prefix = in.prefixlen_s;
  selector.dst_prefix = in.prefixlen_d;
  selector.protocol = in.proto;
  selector.src_port = in.sport_mask != 0 ? ntohs(in.sport) : 0;
  selector.dst_port = in.dport_mask != 0 ? ntohs(in.dport) : 0;
  return selector;
}

uint64_t LimitOrInfinite(uint64_t value) { return value == 0 ? kInfinite : value; }
uint64_t LimitFromKernel(uint64_t value) { return value == kInfinite ? 0 : value; }

void PutLifetime(xfrm_lifetime_cfg& out, const Lifetime& lifetime) {
  out.soft_byte_limit = LimitOrInfinite(lifetime.soft_bytes);
  out.hard_byte_limit = LimitOrInfinite(lifetime.hard_bytes);
  out.soft_packet_limit = LimitOrInfinite(lifetime.soft_packets);
  out.hard_packet_limit = LimitOrInfinite(lifetime.hard_packets);
  // Time limits are plain seconds where 0 already means "none".
  out.soft_add_expires_seconds = lifetime.soft_add_seconds;
  out.hard_add_expires_seconds = lifetime.hard_add_seconds;
  out.soft_use_expires_seconds = lifetime.soft_use_seconds;
  out.hard_use_expires_seconds = lifetime.hard_use_seconds;
}

Lifetime GetLifetime(const xfrm_lifetime_cfg& in) {
  Lifetime lifetime;
  lifetime.soft_bytes = LimitFromKernel(in.soft_byte_limit);
  lifetime.hard_bytes = LimitFromKernel(in.hard_byte_limit);
  lifetime.soft_packets = LimitFromKernel(in.soft_packet_limit);
  lifetime.hard_packets = LimitFromKernel(in.hard_packet_limit);
  lifetime.soft_add_seconds = in.soft_add_expires_seconds;
  lifetime.hard_add_seconds = in.hard_add_expires_seconds;
  lifetime.soft_use_seconds = in.soft_use_expires_seconds;
  lifetime.hard_use_seconds = in.hard_use_expires_seconds;
  return lifetime;
}

void PutTemplate(xfrm_user_tmpl& out, const PolicyTemplate& templ,
                 AddressFamily selector_family) {
  std::memset(&out, 0, sizeof(out));
  out.id.proto = kIpProtoEsp;
  if (templ.mode == Mode::kTunnel) {
    PutAddress(out.id.daddr, templ.tunnel_dst);
    PutAddress(out.saddr, templ.tunnel_src);
    out.family = static_cast<uint16_t>(KernelFamily(templ.tunnel_dst.family));
  } else {
    out.family = static_cast<uint16_t>(KernelFamily(selector_family));
  }
  out.reqid = templ.reqid;
  out.mode = KernelMode(templ.mode);
  out.optional = templ.optional ? 1 : 0;
  // Any algorithm: the SA, negotiated by IKE, decides.
  out.aalgos = ~0u;
  out.ealgos = ~0u;
  out.calgos = ~0u;
}

PolicyTemplate GetTemplate(const xfrm_user_tmpl& in) {
  PolicyTemplate templ;
  templ.mode = in.mode == XFRM_MODE_TUNNEL ? Mode::kTunnel : Mode::kTransport;
  templ.reqid = in.reqid;
  templ.optional = in.optional != 0;
  if (templ.mode == Mode::kTunnel) {
    templ.tunnel_src = GetAddress(in.saddr, in.family);
    templ.tunnel_dst = GetAddress(in.id.daddr, in.family);
  }
  return templ;
}

bool PutMark(nl_msg* msg, const std::optional<Mark>& mark) {
  if (!mark) return true;
  xfrm_mark value{mark->value, mark->mask};
  return nla_put(msg, XFRMA_MARK, sizeof(value), &value) == 0;
}

// Sized to the message instead of libnl's one-page default: installing
// thousands of SAs then touches a fraction of the memory.
NlMsgPtr NewMessage(int type, int flags, size_t payload_bytes = 512) {
  NlMsgPtr msg(nlmsg_alloc_size(NLMSG_HDRLEN + payload_bytes));
  if (!msg) return nullptr;
  if (nlmsg_put(msg.get(), NL_AUTO_PORT, NL_AUTO_SEQ, type, 0, flags) == nullptr) return nullptr;
  return msg;
}

template <typename T>
bool AppendStruct(nl_msg* msg, const T& value) {
  return nlmsg_append(msg, const_cast<T*>(&value), sizeof(T), NLMSG_ALIGNTO) == 0;
}

// Puts a kernel algorithm struct (name + sizes) followed by the key bytes.
template <typename AlgoStruct>
bool PutAlgorithm(nl_msg* msg, int attribute, AlgoStruct header,
                  const std::vector<uint8_t>& key) {
  std::vector<uint8_t> buffer(sizeof(AlgoStruct) + key.size());
  std::memcpy(buffer.data(), &header, sizeof(AlgoStruct));
  if (!key.empty()) std::memcpy(buffer.data() + sizeof(AlgoStruct), key.data(), key.size());
  return nla_put(msg, attribute, static_cast<int>(buffer.size()), buffer.data()) == 0;
}

template <typename AlgoStruct>
AlgoStruct NamedAlgorithm(const char* name, size_t key_bytes) {
  AlgoStruct algo;
  std::memset(&algo, 0, sizeof(algo));
  std::strncpy(algo.alg_name, name, sizeof(algo.alg_name) - 1);
  algo.alg_key_len = static_cast<unsigned>(key_bytes * 8);
  return algo;
}

KernelError BadMessage(const std::string& what) {
  return MakeError("decode XFRM netlink message", EBADMSG, what);
}

// Attribute minimum sizes for everything this file reads.
const nla_policy* XfrmAttributePolicy() {
  static nla_policy policy[XFRMA_MAX + 1] = {};
  static bool initialized = [] {
    policy[XFRMA_ALG_AEAD].minlen = sizeof(xfrm_algo_aead);
    policy[XFRMA_ALG_CRYPT].minlen = sizeof(xfrm_algo);
    policy[XFRMA_ALG_AUTH_TRUNC].minlen = sizeof(xfrm_algo_auth);
    policy[XFRMA_ALG_AUTH].minlen = sizeof(xfrm_algo);
    policy[XFRMA_ENCAP].minlen = sizeof(xfrm_encap_tmpl);
    policy[XFRMA_MARK].minlen = sizeof(xfrm_mark);
    policy[XFRMA_REPLAY_ESN_VAL].minlen = sizeof(xfrm_replay_state_esn);
    policy[XFRMA_REPLAY_VAL].minlen = sizeof(xfrm_replay_state);
    policy[XFRMA_LTIME_VAL].minlen = sizeof(xfrm_lifetime_cur);
    return true;
  }();
  (void)initialized;
  return policy;
}

std::string AlgorithmName(const char* name, size_t capacity) {
  return std::string(name, strnlen(name, capacity));
}

std::optional<Mark> GetMark(nlattr* attribute) {
  if (attribute == nullptr) return std::nullopt;
  xfrm_mark mark;
  std::memcpy(&mark, nla_data(attribute), sizeof(mark));
  return Mark{mark.v, mark.m};
}

Result<std::vector<PolicyTemplate>> GetTemplates(nlattr* attribute) {
  std::vector<PolicyTemplate> templates;
  if (attribute == nullptr) return templates;
  const int length = nla_len(attribute);
  if (length % sizeof(xfrm_user_tmpl) != 0)
    return BadMessage("XFRMA_TMPL length " + std::to_string(length) +
                      " is not a multiple of struct xfrm_user_tmpl");
  const auto* data = static_cast<const uint8_t*>(nla_data(attribute));
  for (int offset = 0; offset < length; offset += sizeof(xfrm_user_tmpl)) {
    xfrm_user_tmpl templ;
    std::memcpy(&templ, data + offset, sizeof(templ));
    templates.push_back(GetTemplate(templ));
  }
  return templates;
}

template <typename Header>
Result<const Header*> ParseFixed(const nlmsghdr* header, nlattr** attributes,
                                 const char* struct_name) {
  auto* mutable_header = const_cast<nlmsghdr*>(header);
  if (!nlmsg_valid_hdr(mutable_header, sizeof(Header)))
    return BadMessage(std::string("message of type ") + std::to_string(header->nlmsg_type) +
                      " is shorter than struct " + struct_name);
  int rc = nlmsg_parse(mutable_header, sizeof(Header), attributes, XFRMA_MAX,
                       const_cast<nla_policy*>(XfrmAttributePolicy()));
  if (rc < 0)
    return BadMessage(std::string("attributes after struct ") + struct_name +
                      " are malformed or too short");
  return static_cast<const Header*>(nlmsg_data(mutable_header));
}

}  // namespace

NlMsgPtr BuildAllocSpi(const IpAddress& src, const IpAddress& dst, uint32_t reqid,
                       uint32_t min_spi, uint32_t max_spi) {
  NlMsgPtr msg = NewMessage(XFRM_MSG_ALLOCSPI, NLM_F_REQUEST);
  if (!msg) return nullptr;
  xfrm_userspi_info request;
  std::memset(&request, 0, sizeof(request));
  PutAddress(request.info.id.daddr, dst);
  PutAddress(request.info.saddr, src);
  request.info.id.proto = kIpProtoEsp;
  request.info.family = static_cast<uint16_t>(KernelFamily(dst.family));
  request.info.reqid = reqid;
  request.min = min_spi;
  request.max = max_spi;
  if (!AppendStruct(msg.get(), request)) return nullptr;
  return msg;
}

NlMsgPtr BuildSa(const SaParams& sa, bool update) {
  // Fixed part, algorithm structs with keys, replay bitmap, encap, mark.
  const size_t payload = 1024 + sa.encryption_key.size() + sa.integrity_key.size() +
                         (sa.replay_window + 31) / 32 * 4 + 64;
  NlMsgPtr msg = NewMessage(update ? XFRM_MSG_UPDSA : XFRM_MSG_NEWSA,
                            NLM_F_REQUEST | NLM_F_ACK, payload);
  if (!msg) return nullptr;
  xfrm_usersa_info info;
  std::memset(&info, 0, sizeof(info));
  Selector selector;
  if (sa.selector) {
    selector = *sa.selector;
  } else if (sa.mode == Mode::kTransport) {
    selector = Selector::HostToHost(sa.src, sa.id.dst);
  } else {
    // Any inner traffic of the outer family; policies pick what enters.
    selector.src = IpAddress::Any(sa.src.family);
    selector.dst = IpAddress::Any(sa.src.family);
  }
  PutSelector(info.sel, selector);
  PutAddress(info.id.daddr, sa.id.dst);
  info.id.spi = htonl(sa.id.spi);
  info.id.proto = sa.id.protocol;
  PutAddress(info.saddr, sa.src);
  PutLifetime(info.lft, sa.lifetime);
  info.reqid = sa.reqid;
  info.family = static_cast<uint16_t>(KernelFamily(sa.id.dst.family));
  info.mode = KernelMode(sa.mode);
  // The legacy replay field holds a 32-bit bitmap; larger windows and ESN
  // need XFRMA_REPLAY_ESN_VAL, with which the legacy field must be 0.
  const bool use_esn_replay = sa.extended_sequence_numbers || sa.replay_window > 32;
  if (!use_esn_replay) info.replay_window = static_cast<uint8_t>(sa.replay_window);
  if (sa.extended_sequence_numbers) info.flags |= XFRM_STATE_ESN;
  if (!AppendStruct(msg.get(), info)) return nullptr;

  if (IsAead(sa.cipher)) {
    auto algo = NamedAlgorithm<xfrm_algo_aead>(CipherKernelName(sa.cipher),
                                              sa.encryption_key.size());
    algo.alg_icv_len = IcvBits(sa.cipher, sa.integrity);
    if (!PutAlgorithm(msg.get(), XFRMA_ALG_AEAD, algo, sa.encryption_key)) return nullptr;
  } else {
    auto crypt = NamedAlgorithm<xfrm_algo>(CipherKernelName(sa.cipher),
                                          sa.encryption_key.size());
    if (!PutAlgorithm(msg.get(), XFRMA_ALG_CRYPT, crypt, sa.encryption_key)) return nullptr;
    auto auth = NamedAlgorithm<xfrm_algo_auth>(IntegrityKernelName(sa.integrity),
                                              sa.integrity_key.size());
    auth.alg_trunc_len = IcvBits(sa.cipher, sa.integrity);
    if (!PutAlgorithm(msg.get(), XFRMA_ALG_AUTH_TRUNC, auth, sa.integrity_key)) return nullptr;
  }
  if (use_esn_replay) {
    const uint32_t words = (sa.replay_window + 31) / 32;
    std::vector<uint8_t> buffer(sizeof(xfrm_replay_state_esn) + words * sizeof(uint32_t), 0);
    xfrm_replay_state_esn esn;
    std::memset(&esn, 0, sizeof(esn));
    esn.bmp_len = words;
    esn.replay_window = sa.replay_window;
    if (sa.replay) {
      esn.oseq = sa.replay->sent;
      esn.oseq_hi = sa.replay->sent_high;
      esn.seq = sa.replay->received;
      esn.seq_hi = sa.replay->received_high;
      std::memcpy(buffer.data() + sizeof(esn), sa.replay->bitmap.data(),
                  std::min<size_t>(words, sa.replay->bitmap.size()) * sizeof(uint32_t));
    }
    std::memcpy(buffer.data(), &esn, sizeof(esn));
    if (nla_put(msg.get(), XFRMA_REPLAY_ESN_VAL, static_cast<int>(buffer.size()),
                buffer.data()) != 0)
      return nullptr;
  }
  if (sa.replay && !use_esn_replay) {
    xfrm_replay_state replay;
    std::memset(&replay, 0, sizeof(replay));
    replay.oseq = sa.replay->sent;
    replay.seq = sa.replay->received;
    replay.bitmap = sa.replay->bitmap.empty() ? 0 : sa.replay->bitmap[0];
    if (nla_put(msg.get(), XFRMA_REPLAY_VAL, sizeof(replay), &replay) != 0) return nullptr;
  }
  if (sa.counters) {
    xfrm_lifetime_cur current;
    std::memset(&current, 0, sizeof(current));
    current.bytes = sa.counters->bytes;
    current.packets = sa.counters->packets;
    current.add_time = sa.counters->add_time;
    current.use_time = sa.counters->use_time;
    if (nla_put(msg.get(), XFRMA_LTIME_VAL, sizeof(current), &current) != 0) return nullptr;
  }
  if (sa.encap) {
    xfrm_encap_tmpl encap;
    std::memset(&encap, 0, sizeof(encap));
    encap.encap_type = UDP_ENCAP_ESPINUDP;
    encap.encap_sport = htons(sa.encap->src_port);
    encap.encap_dport = htons(sa.encap->dst_port);
    if (nla_put(msg.get(), XFRMA_ENCAP, sizeof(encap), &encap) != 0) return nullptr;
  }
  if (!PutMark(msg.get(), sa.id.mark)) return nullptr;
  return msg;
}

namespace {

NlMsgPtr BuildSaIdRequest(int type, int flags, const SaId& id) {
  NlMsgPtr msg = NewMessage(type, flags);
  if (!msg) return nullptr;
  xfrm_usersa_id request;
  std::memset(&request, 0, sizeof(request));
  PutAddress(request.daddr, id.dst);
  request.spi = htonl(id.spi);
  request.family = static_cast<uint16_t>(KernelFamily(id.dst.family));
  request.proto = id.protocol;
  if (!AppendStruct(msg.get(), request)) return nullptr;
  if (!PutMark(msg.get(), id.mark)) return nullptr;
  return msg;
}

}  // namespace

NlMsgPtr BuildDeleteSa(const SaId& id) {
  return BuildSaIdRequest(XFRM_MSG_DELSA, NLM_F_REQUEST | NLM_F_ACK, id);
}

NlMsgPtr BuildGetSa(const SaId& id) {
  return BuildSaIdRequest(XFRM_MSG_GETSA, NLM_F_REQUEST, id);
}

NlMsgPtr BuildDumpSas() {
  NlMsgPtr msg = NewMessage(XFRM_MSG_GETSA, NLM_F_REQUEST | NLM_F_DUMP);
  if (!msg) return nullptr;
  xfrm_usersa_info empty;
  std::memset(&empty, 0, sizeof(empty));
  if (!AppendStruct(msg.get(), empty)) return nullptr;
  return msg;
}

NlMsgPtr BuildPolicy(const PolicyParams& policy, bool update) {
  NlMsgPtr msg = NewMessage(update ? XFRM_MSG_UPDPOLICY : XFRM_MSG_NEWPOLICY,
                            NLM_F_REQUEST | NLM_F_ACK,
                            512 + policy.templates.size() * sizeof(xfrm_user_tmpl));
  if (!msg) return nullptr;
  xfrm_userpolicy_info info;
  std::memset(&info, 0, sizeof(info));
  PutSelector(info.sel, policy.id.selector);
  PutLifetime(info.lft, policy.lifetime);
  info.priority = policy.priority;
  info.dir = KernelDirection(policy.id.direction);
  info.action = policy.action == PolicyAction::kDiscard ? XFRM_POLICY_BLOCK : XFRM_POLICY_ALLOW;
  info.share = XFRM_SHARE_ANY;
  if (!AppendStruct(msg.get(), info)) return nullptr;
  if (!policy.templates.empty()) {
    std::vector<xfrm_user_tmpl> templates(policy.templates.size());
    for (size_t i = 0; i < templates.size(); ++i)
      PutTemplate(templates[i], policy.templates[i], policy.id.selector.family());
    if (nla_put(msg.get(), XFRMA_TMPL,
                static_cast<int>(templates.size() * sizeof(xfrm_user_tmpl)),
                templates.data()) != 0)
      return nullptr;
  }
  if (!PutMark(msg.get(), policy.id.mark)) return nullptr;
  return msg;
}

NlMsgPtr BuildDeletePolicy(const PolicyId& id) {
  NlMsgPtr msg = NewMessage(XFRM_MSG_DELPOLICY, NLM_F_REQUEST | NLM_F_ACK);
  if (!msg) return nullptr;
  xfrm_userpolicy_id request;
  std::memset(&request, 0, sizeof(request));
  PutSelector(request.sel, id.selector);
  request.dir = KernelDirection(id.direction);
  if (!AppendStruct(msg.get(), request)) return nullptr;
  if (!PutMark(msg.get(), id.mark)) return nullptr;
  return msg;
}

NlMsgPtr BuildDumpPolicies() {
  NlMsgPtr msg = NewMessage(XFRM_MSG_GETPOLICY, NLM_F_REQUEST | NLM_F_DUMP);
  if (!msg) return nullptr;
  xfrm_userpolicy_id empty;
  std::memset(&empty, 0, sizeof(empty));
  if (!AppendStruct(msg.get(), empty)) return nullptr;
  return msg;
}

std::vector<uint8_t> BuildSocketPolicy(const SocketPolicy& policy, AddressFamily family) {
  xfrm_userpolicy_info info;
  std::memset(&info, 0, sizeof(info));
  // Prefix 0 on both sides: everything this socket sends or receives.
  info.sel.family = static_cast<uint16_t>(KernelFamily(family));
  PutLifetime(info.lft, Lifetime{});
  info.priority = policy.priority;
  info.dir = KernelDirection(policy.direction);
  info.action = policy.action == PolicyAction::kDiscard ? XFRM_POLICY_BLOCK : XFRM_POLICY_ALLOW;
  info.share = XFRM_SHARE_ANY;
  std::vector<uint8_t> buffer(sizeof(info) + policy.templates.size() * sizeof(xfrm_user_tmpl));
  std::memcpy(buffer.data(), &info, sizeof(info));
  for (size_t i = 0; i < policy.templates.size(); ++i) {
    xfrm_user_tmpl templ;
    PutTemplate(templ, policy.templates[i], family);
    std::memcpy(buffer.data() + sizeof(info) + i * sizeof(templ), &templ, sizeof(templ));
  }
  return buffer;
}

Result<SaInfo> DecodeSa(const nlmsghdr* header) {
  nlattr* attributes[XFRMA_MAX + 1] = {};
  auto parsed = ParseFixed<xfrm_usersa_info>(header, attributes, "xfrm_usersa_info");
  if (!parsed.ok()) return parsed.error();
  xfrm_usersa_info info;
  std::memcpy(&info, parsed.value(), sizeof(info));
  SaInfo sa;
  sa.id.dst = GetAddress(info.id.daddr, info.family);
  sa.id.spi = ntohl(info.id.spi);
  sa.id.protocol = info.id.proto;
  sa.id.mark = GetMark(attributes[XFRMA_MARK]);
  sa.src = GetAddress(info.saddr, info.family);
  sa.mode = info.mode == XFRM_MODE_TUNNEL ? Mode::kTunnel : Mode::kTransport;
  sa.reqid = info.reqid;
  sa.extended_sequence_numbers = (info.flags & XFRM_STATE_ESN) != 0;
  sa.replay_window = info.replay_window;
  sa.lifetime = GetLifetime(info.lft);
  sa.counters.bytes = info.curlft.bytes;
  sa.counters.packets = info.curlft.packets;
  sa.counters.add_time = info.curlft.add_time;
  sa.counters.use_time = info.curlft.use_time;
  if (nlattr* aead = attributes[XFRMA_ALG_AEAD]) {
    const auto* algo = static_cast<const xfrm_algo_aead*>(nla_data(aead));
    sa.algorithm = AlgorithmName(algo->alg_name, sizeof(algo->alg_name));
  }
  if (nlattr* crypt = attributes[XFRMA_ALG_CRYPT]) {
    const auto* algo = static_cast<const xfrm_algo*>(nla_data(crypt));
    sa.algorithm = AlgorithmName(algo->alg_name, sizeof(algo->alg_name));
  }
  if (nlattr* auth = attributes[XFRMA_ALG_AUTH_TRUNC]) {
    const auto* algo = static_cast<const xfrm_algo_auth*>(nla_data(auth));
    sa.algorithm += "+" + AlgorithmName(algo->alg_name, sizeof(algo->alg_name)) + "/" +
                    std::to_string(algo->alg_trunc_len);
  }
  if (nlattr* legacy = attributes[XFRMA_REPLAY_VAL]) {
    xfrm_replay_state state;
    std::memcpy(&state, nla_data(legacy), sizeof(state));
    sa.replay.sent = state.oseq;
    sa.replay.received = state.seq;
    sa.replay.bitmap = {state.bitmap};
  }
  if (nlattr* esn = attributes[XFRMA_REPLAY_ESN_VAL]) {
    xfrm_replay_state_esn state;
    std::memcpy(&state, nla_data(esn), sizeof(state));
    sa.replay_window = state.replay_window;
    sa.replay.sent = state.oseq;
    sa.replay.sent_high = state.oseq_hi;
    sa.replay.received = state.seq;
    sa.replay.received_high = state.seq_hi;
    // The bitmap follows the fixed part; take only the words present.
    const size_t present =
        (static_cast<size_t>(nla_len(esn)) - sizeof(state)) / sizeof(uint32_t);
    sa.replay.bitmap.assign(std::min<size_t>(present, state.bmp_len), 0);
    std::memcpy(sa.replay.bitmap.data(),
                static_cast<const uint8_t*>(nla_data(esn)) + sizeof(state),
                sa.replay.bitmap.size() * sizeof(uint32_t));
  }
  if (nlattr* encap_attribute = attributes[XFRMA_ENCAP]) {
    xfrm_encap_tmpl encap;
    std::memcpy(&encap, nla_data(encap_attribute), sizeof(encap));
    sa.encap = UdpEncap{ntohs(encap.encap_sport), ntohs(encap.encap_dport)};
  }
  return sa;
}

Result<PolicyInfo> DecodePolicy(const nlmsghdr* header) {
  nlattr* attributes[XFRMA_MAX + 1] = {};
  auto parsed = ParseFixed<xfrm_userpolicy_info>(header, attributes, "xfrm_userpolicy_info");
  if (!parsed.ok()) return parsed.error();
  xfrm_userpolicy_info info;
  std::memcpy(&info, parsed.value(), sizeof(info));
  PolicyInfo policy;
  policy.index = info.index;
  policy.params.id.selector = GetSelector(info.sel);
  policy.params.id.direction = DirectionFromKernel(info.dir);
  policy.params.id.mark = GetMark(attributes[XFRMA_MARK]);
  policy.params.priority = info.priority;
  policy.params.lifetime = GetLifetime(info.lft);
  auto templates = GetTemplates(attributes[XFRMA_TMPL]);
  if (!templates.ok()) return templates.error();
  policy.params.templates = std::move(templates).value();
  if (info.action == XFRM_POLICY_BLOCK) {
    policy.params.action = PolicyAction::kDiscard;
  } else {
    policy.params.action =
        policy.params.templates.empty() ? PolicyAction::kBypass : PolicyAction::kProtect;
  }
  return policy;
}

Result<std::optional<KernelEvent>> DecodeEvent(const nlmsghdr* header) {
  nlattr* attributes[XFRMA_MAX + 1] = {};
  switch (header->nlmsg_type) {
    case XFRM_MSG_ACQUIRE: {
      auto parsed = ParseFixed<xfrm_user_acquire>(header, attributes, "xfrm_user_acquire");
      if (!parsed.ok()) return parsed.error();
      xfrm_user_acquire acquire;
      std::memcpy(&acquire, parsed.value(), sizeof(acquire));
      AcquireEvent event;
      event.selector = GetSelector(acquire.sel);
      event.policy_index = acquire.policy.index;
      event.policy_direction = DirectionFromKernel(acquire.policy.dir);
      auto templates = GetTemplates(attributes[XFRMA_TMPL]);
      if (!templates.ok()) return templates.error();
      if (templates.value().empty())
        return BadMessage("XFRM_MSG_ACQUIRE without an XFRMA_TMPL template");
      event.templ = templates.value().front();
      // The outer addresses of the wanted SA come from the acquire's id and
      // saddr, in the family of the first template.
      xfrm_user_tmpl first;
      std::memcpy(&first, nla_data(attributes[XFRMA_TMPL]), sizeof(first));
      event.src = GetAddress(acquire.saddr, first.family);
      event.dst = GetAddress(acquire.id.daddr, first.family);
      return std::optional<KernelEvent>(event);
    }
    case XFRM_MSG_EXPIRE: {
      auto parsed = ParseFixed<xfrm_user_expire>(header, attributes, "xfrm_user_expire");
      if (!parsed.ok()) return parsed.error();
      xfrm_user_expire expire;
      std::memcpy(&expire, parsed.value(), sizeof(expire));
      ExpireEvent event;
      event.id.dst = GetAddress(expire.state.id.daddr, expire.state.family);
      event.id.spi = ntohl(expire.state.id.spi);
      event.id.protocol = expire.state.id.proto;
      event.id.mark = GetMark(attributes[XFRMA_MARK]);
      event.reqid = expire.state.reqid;
      event.hard = expire.hard != 0;
      return std::optional<KernelEvent>(event);
    }
    case XFRM_MSG_MAPPING: {
      auto parsed = ParseFixed<xfrm_user_mapping>(header, attributes, "xfrm_user_mapping");
      if (!parsed.ok()) return parsed.error();
      xfrm_user_mapping mapping;
      std::memcpy(&mapping, parsed.value(), sizeof(mapping));
      MappingEvent event;
      event.id.dst = GetAddress(mapping.id.daddr, mapping.id.family);
      event.id.spi = ntohl(mapping.id.spi);
      event.id.protocol = mapping.id.proto;
      event.reqid = mapping.reqid;
      event.old_src = GetAddress(mapping.old_saddr, mapping.id.family);
      event.old_src_port = ntohs(mapping.old_sport);
      event.new_src = GetAddress(mapping.new_saddr, mapping.id.family);
      event.new_src_port = ntohs(mapping.new_sport);
      return std::optional<KernelEvent>(event);
    }
    default:
      return std::optional<KernelEvent>();
  }
}

Result<std::vector<const nlmsghdr*>> SplitMessages(const uint8_t* data, size_t size) {
  std::vector<const nlmsghdr*> messages;
  auto* header = reinterpret_cast<nlmsghdr*>(const_cast<uint8_t*>(data));
  int remaining = static_cast<int>(size);
  while (nlmsg_ok(header, remaining)) {
    messages.push_back(header);
    header = nlmsg_next(header, &remaining);
  }
  if (remaining > 0)
    return BadMessage(std::to_string(remaining) + " trailing bytes do not form a netlink message");
  return messages;
}

Status DecodeAck(const nlmsghdr* header, const std::string& operation) {
  auto* mutable_header = const_cast<nlmsghdr*>(header);
  if (!nlmsg_valid_hdr(mutable_header, sizeof(nlmsgerr)))
    return BadMessage("NLMSG_ERROR shorter than struct nlmsgerr");
  nlmsgerr error;
  std::memcpy(&error, nlmsg_data(mutable_header), sizeof(error));
  if (error.error == 0) return Status::Ok();
  std::string message;
  if (header->nlmsg_flags & NLM_F_ACK_TLVS) {
    size_t offset = sizeof(nlmsgerr);
    // Without NLM_F_CAPPED the whole request follows the error code.
    if (!(header->nlmsg_flags & NLM_F_CAPPED))
      offset += NLMSG_ALIGN(error.msg.nlmsg_len) - sizeof(nlmsghdr);
    const size_t payload = static_cast<size_t>(nlmsg_datalen(mutable_header));
    if (offset < payload) {
      nlattr* tlvs[NLMSGERR_ATTR_MAX + 1] = {};
      auto* start = reinterpret_cast<nlattr*>(static_cast<uint8_t*>(nlmsg_data(mutable_header)) + offset);
      if (nla_parse(tlvs, NLMSGERR_ATTR_MAX, start, static_cast<int>(payload - offset), nullptr) == 0 &&
          tlvs[NLMSGERR_ATTR_MSG] != nullptr) {
        const char* text = static_cast<const char*>(nla_data(tlvs[NLMSGERR_ATTR_MSG]));
        message.assign(text, strnlen(text, static_cast<size_t>(nla_len(tlvs[NLMSGERR_ATTR_MSG]))));
      }
    }
  }
  return MakeError(operation, -error.error, message);
}

}  // namespace kernel_glue
