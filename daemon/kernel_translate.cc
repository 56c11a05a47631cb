#include "daemon/kernel_translate.h"

#include <algorithm>

namespace btnsd::daemon {

using ike::policy::IpFamily;
using ike::policy::Uint128;

kernel_glue::IpAddress ToKernel(const ike::policy::IpAddress& address) {
  kernel_glue::IpAddress out;
  out.family = address.family == IpFamily::kV4
                   ? kernel_glue::AddressFamily::kIpv4
                   : kernel_glue::AddressFamily::kIpv6;
  const std::vector<uint8_t> bytes = address.ToBytes();
  std::copy(bytes.begin(), bytes.end(), out.bytes.begin());
  return out;
}

std::optional<ike::policy::IpAddress> FromKernel(
    const kernel_glue::IpAddress& address) {
  return ike::policy::IpAddress::FromBytes(address.bytes.data(),
                                           address.size());
}

KernelTags ToKernelTags(const ike::policy::KernelOwnership& ownership) {
  KernelTags tags;
  tags.ownership.reqid_min = ownership.reqid_min;
  tags.ownership.reqid_max = ownership.reqid_max;
  tags.ownership.priority_min = ownership.priority_min;
  tags.ownership.priority_max = ownership.priority_max;
  if (ownership.mark != 0) {
    tags.mark = kernel_glue::Mark{
        ownership.mark,
        ownership.mark_mask != 0 ? ownership.mark_mask : 0xffffffffu};
  }
  return tags;
}

namespace {
// How many reqids SAs may carry: reqid_min + 1 to reqid_min + span
// (reqid_min itself marks larval SAs from SPI allocation).
uint32_t SaReqidSpan(const KernelTags& tags) {
  uint32_t span = tags.ownership.reqid_max - tags.ownership.reqid_min;
  if (span >= 2 * (kTrapReqids + kWaitingReqids)) span -= kTrapReqids + kWaitingReqids;
  return span;
}
}  // namespace

bool IsSocketWaitingReqid(uint32_t reqid, const KernelTags& tags) {
  const uint32_t span = tags.ownership.reqid_max - tags.ownership.reqid_min;
  if (span < 2 * (kTrapReqids + kWaitingReqids)) return false;
  const uint32_t top = tags.ownership.reqid_max - kTrapReqids;
  return reqid <= top && reqid > top - kWaitingReqids;
}

uint32_t KernelReqid(uint32_t engine_reqid, const KernelTags& tags) {
  if (tags.ownership.OwnsReqid(engine_reqid)) return engine_reqid;
  const uint32_t span = SaReqidSpan(tags);
  const uint64_t rotated = uint64_t{engine_reqid} + tags.reqid_offset;
  return tags.ownership.reqid_min + 1 + static_cast<uint32_t>(rotated % (span == 0 ? 1 : span));
}

ike::sa::EngineSettings::ReqidRange ShardReqids(const KernelTags& tags,
                                                size_t shard, size_t shards) {
  const uint32_t band_min = tags.ownership.reqid_min;
  const uint32_t span = SaReqidSpan(tags);
  if (span == 0) return {band_min, band_min, band_min};
  shards = std::max<size_t>(shards, 1);
  const uint32_t slice = std::max<uint32_t>(static_cast<uint32_t>(span / shards), 1);
  // Slices overlap only when the band has fewer SA reqids than shards.
  const uint32_t first = band_min + 1 +
      static_cast<uint32_t>((uint64_t{shard} * slice) % span);
  const uint32_t last = static_cast<uint32_t>(
      std::min<uint64_t>(uint64_t{first} + slice - 1, uint64_t{band_min} + span));
  const uint32_t start = first + tags.reqid_offset % (last - first + 1);
  return {first, last, start};
}

std::vector<std::pair<ike::policy::IpAddress, int>> RangeToPrefixes(
    const ike::policy::IpRange& range) {
  std::vector<std::pair<ike::policy::IpAddress, int>> prefixes;
  const IpFamily family = range.family();
  const int bits = ike::policy::FamilyBits(family);
  Uint128 start = range.start.value;
  const Uint128 end = range.end.value;
  if (start > end) return prefixes;
  while (true) {
    // Largest aligned block starting at `start` that does not pass `end`.
    int host_bits = 0;
    while (host_bits < bits) {
      const Uint128 size = Uint128{1} << (host_bits + 1);
      if ((start & (size - 1)) != 0) break;
      const Uint128 last = start + (size - 1);
      if (last > end || last < start) break;
      ++host_bits;
    }
    prefixes.push_back({ike::policy::IpAddress{family, start}, bits - host_bits});
    const Uint128 block_last =
        host_bits == 128 ? ~Uint128{0} : start + ((Uint128{1} << host_bits) - 1);
    if (block_last >= end) break;
    start = block_last + 1;
  }
  return prefixes;
}

namespace {

Translated<uint16_t> KernelPort(const ike::policy::PortRange& ports,
                                const char* side) {
  if (ports.IsAny()) return uint16_t{0};
  if (ports.low == ports.high) return ports.low;
  return std::string(side) + " port range " + ports.ToString() +
         " is neither one port nor any port; XFRM selectors cannot express it";
}

}  // namespace

Translated<std::vector<kernel_glue::Selector>> ToKernelSelectors(
    const ike::policy::TrafficSelector& source,
    const ike::policy::TrafficSelector& destination) {
  if (source.addresses.family() != destination.addresses.family())
    return std::string("traffic selectors of different address families");
  const uint8_t protocol =
      source.protocol != 0 ? source.protocol : destination.protocol;
  if (source.protocol != 0 && destination.protocol != 0 &&
      source.protocol != destination.protocol)
    return std::string("traffic selectors name different IP protocols");
  auto source_port = KernelPort(source.ports, "source");
  if (auto* error = std::get_if<std::string>(&source_port)) return *error;
  auto destination_port = KernelPort(destination.ports, "destination");
  if (auto* error = std::get_if<std::string>(&destination_port)) return *error;
  // Opaque port ranges (RFC 4301: start 65535, end 0) carry no ports here.
  std::vector<kernel_glue::Selector> selectors;
  for (const auto& [src, src_len] : RangeToPrefixes(source.addresses)) {
    for (const auto& [dst, dst_len] : RangeToPrefixes(destination.addresses)) {
      kernel_glue::Selector selector;
      selector.src = ToKernel(src);
      selector.dst = ToKernel(dst);
      selector.src_prefix = static_cast<uint8_t>(src_len);
      selector.dst_prefix = static_cast<uint8_t>(dst_len);
      selector.protocol = protocol;
      selector.src_port = std::get<uint16_t>(source_port);
      selector.dst_port = std::get<uint16_t>(destination_port);
      selectors.push_back(selector);
    }
  }
  if (selectors.empty()) return std::string("empty address range");
  return selectors;
}

namespace {

Translated<kernel_glue::Cipher> KernelCipher(const ike::sa::EspTransform& t) {
  using ike::wire::EncrId;
  switch (t.encryption) {
    case EncrId::kAesGcm16: return kernel_glue::Cipher::kAesGcm16;
    case EncrId::kChaCha20Poly1305: return kernel_glue::Cipher::kChaCha20Poly1305;
    case EncrId::kAesCbc: return kernel_glue::Cipher::kAesCbc;
    default:
      return "ESP encryption transform " +
             std::to_string(static_cast<int>(t.encryption)) +
             " has no kernel_glue cipher";
  }
}

Translated<kernel_glue::Integrity> KernelIntegrity(
    const ike::sa::EspTransform& t) {
  using ike::wire::IntegId;
  switch (t.integrity) {
    case IntegId::kNone: return kernel_glue::Integrity::kNone;
    case IntegId::kHmacSha2_256_128: return kernel_glue::Integrity::kHmacSha256_128;
    case IntegId::kHmacSha2_384_192: return kernel_glue::Integrity::kHmacSha384_192;
    case IntegId::kHmacSha2_512_256: return kernel_glue::Integrity::kHmacSha512_256;
    default:
      return "ESP integrity transform " +
             std::to_string(static_cast<int>(t.integrity)) +
             " has no kernel_glue integrity algorithm";
  }
}

kernel_glue::Mode KernelMode(ike::policy::IpsecMode mode) {
  return mode == ike::policy::IpsecMode::kTunnel ? kernel_glue::Mode::kTunnel
                                                 : kernel_glue::Mode::kTransport;
}

}  // namespace

Translated<kernel_glue::SaParams> ToKernelSa(const ike::sa::InstallChildSa& sa,
                                             const KernelTags& tags) {
  kernel_glue::SaParams out;
  out.id.dst = ToKernel(sa.destination);
  out.id.spi = sa.spi;
  out.id.mark = tags.mark;
  out.src = ToKernel(sa.source);
  out.mode = KernelMode(sa.mode);
  out.reqid = KernelReqid(sa.reqid, tags);
  auto cipher = KernelCipher(sa.transform);
  if (auto* error = std::get_if<std::string>(&cipher)) return *error;
  out.cipher = std::get<kernel_glue::Cipher>(cipher);
  auto integrity = KernelIntegrity(sa.transform);
  if (auto* error = std::get_if<std::string>(&integrity)) return *error;
  out.integrity = std::get<kernel_glue::Integrity>(integrity);
  out.encryption_key.assign(sa.encryption_key.begin(), sa.encryption_key.end());
  out.integrity_key.assign(sa.integrity_key.begin(), sa.integrity_key.end());
  out.extended_sequence_numbers = sa.transform.extended_sequence_numbers;
  // ESN needs a replay window of its own (bitmap); the kernel refuses 0.
  out.replay_window = sa.transform.extended_sequence_numbers ? 128 : 32;
  out.lifetime.soft_add_seconds = sa.lifetime.soft_seconds;
  out.lifetime.hard_add_seconds = sa.lifetime.hard_seconds;
  out.lifetime.soft_bytes = sa.lifetime.soft_bytes;
  out.lifetime.hard_bytes = sa.lifetime.hard_bytes;
  if (sa.encapsulation) {
    out.encap = kernel_glue::UdpEncap{sa.encapsulation->source_port,
                                      sa.encapsulation->destination_port};
  }
  // Transport SAs carrying exactly one selector pair are bound to it, so a
  // stray SA can never carry other traffic; everything else is left to the
  // policies (the kernel checks the SA's selector against each packet).
  if (sa.mode == ike::policy::IpsecMode::kTransport &&
      sa.source_ts.size() == 1 && sa.destination_ts.size() == 1) {
    auto selectors = ToKernelSelectors(sa.source_ts[0], sa.destination_ts[0]);
    if (auto* list = std::get_if<std::vector<kernel_glue::Selector>>(&selectors);
        list != nullptr && list->size() == 1) {
      out.selector = list->front();
    }
  }
  return out;
}

kernel_glue::SaParams MovedKernelSa(const kernel_glue::SaParams& installed,
                                    const ike::sa::MoveChildSa& move,
                                    const KernelTags& tags) {
  kernel_glue::SaParams out = installed;
  out.id.dst = ToKernel(move.destination);
  out.id.mark = tags.mark;
  out.src = ToKernel(move.source);
  out.encap.reset();
  if (move.encapsulation)
    out.encap = kernel_glue::UdpEncap{move.encapsulation->source_port,
                                      move.encapsulation->destination_port};
  // A transport SA bound to its selector pair stays bound to the new one.
  if (out.selector) {
    out.selector.reset();
    if (move.source_ts.size() == 1 && move.destination_ts.size() == 1) {
      auto selectors = ToKernelSelectors(move.source_ts[0], move.destination_ts[0]);
      if (auto* list = std::get_if<std::vector<kernel_glue::Selector>>(&selectors);
          list != nullptr && list->size() == 1)
        out.selector = list->front();
    }
  }
  out.replay.reset();
  out.counters.reset();
  return out;
}

kernel_glue::SaId ToKernelSaId(const ike::sa::DeleteChildSa& sa,
                               const KernelTags& tags) {
  kernel_glue::SaId id;
  id.dst = ToKernel(sa.destination);
  id.spi = sa.spi;
  id.mark = tags.mark;
  return id;
}

kernel_glue::Direction ToKernelDirection(ike::sa::PolicyDirection direction) {
  switch (direction) {
    case ike::sa::PolicyDirection::kIn: return kernel_glue::Direction::kIn;
    case ike::sa::PolicyDirection::kOut: return kernel_glue::Direction::kOut;
    case ike::sa::PolicyDirection::kForward: return kernel_glue::Direction::kFwd;
  }
  return kernel_glue::Direction::kOut;
}

uint32_t PolicyPriority(const kernel_glue::Selector& selector,
                        const KernelTags& tags) {
  // 0..256 bits of prefix, plus one for a protocol and one per port: the
  // more a selector pins down, the lower (more preferred) its priority.
  int specificity = selector.src_prefix + selector.dst_prefix;
  if (selector.family() == kernel_glue::AddressFamily::kIpv4) specificity *= 4;
  if (selector.protocol != 0) specificity += 1;
  if (selector.src_port != 0) specificity += 1;
  if (selector.dst_port != 0) specificity += 1;
  const uint32_t span = tags.ownership.priority_max - tags.ownership.priority_min;
  const uint32_t offset = std::min<uint32_t>(span, 0x200 - specificity);
  return tags.ownership.priority_min + offset;
}

namespace {

kernel_glue::PolicyTemplate TemplateFor(ike::policy::IpsecMode mode,
                                        const ike::policy::IpAddress& outer_src,
                                        const ike::policy::IpAddress& outer_dst,
                                        uint32_t reqid) {
  kernel_glue::PolicyTemplate templ;
  templ.mode = KernelMode(mode);
  templ.reqid = reqid;
  templ.tunnel_src = ToKernel(outer_src);
  templ.tunnel_dst = ToKernel(outer_dst);
  if (mode == ike::policy::IpsecMode::kTransport) {
    // The kernel takes transport endpoints from the packet.
    templ.tunnel_src = kernel_glue::IpAddress::Any(templ.tunnel_src.family);
    templ.tunnel_dst = kernel_glue::IpAddress::Any(templ.tunnel_dst.family);
  }
  return templ;
}

}  // namespace

Translated<std::vector<kernel_glue::PolicyParams>> ToKernelPolicies(
    const ike::sa::InstallPolicy& policy, const KernelTags& tags) {
  auto selectors = ToKernelSelectors(policy.source, policy.destination);
  if (auto* error = std::get_if<std::string>(&selectors)) return *error;
  std::vector<kernel_glue::PolicyParams> out;
  for (const kernel_glue::Selector& selector :
       std::get<std::vector<kernel_glue::Selector>>(selectors)) {
    kernel_glue::PolicyParams params;
    params.id.selector = selector;
    params.id.direction = ToKernelDirection(policy.direction);
    params.id.mark = tags.mark;
    params.priority = PolicyPriority(selector, tags);
    params.action = kernel_glue::PolicyAction::kProtect;
    params.templates.push_back(TemplateFor(policy.mode, policy.tunnel_source,
                                           policy.tunnel_destination,
                                           KernelReqid(policy.reqid, tags)));
    out.push_back(params);
  }
  return out;
}

Translated<std::vector<kernel_glue::PolicyId>> ToKernelPolicyIds(
    const ike::sa::RemovePolicy& policy, const KernelTags& tags) {
  auto selectors = ToKernelSelectors(policy.source, policy.destination);
  if (auto* error = std::get_if<std::string>(&selectors)) return *error;
  std::vector<kernel_glue::PolicyId> out;
  for (const kernel_glue::Selector& selector :
       std::get<std::vector<kernel_glue::Selector>>(selectors)) {
    out.push_back(kernel_glue::PolicyId{
        selector, ToKernelDirection(policy.direction), tags.mark});
  }
  return out;
}

Translated<std::vector<kernel_glue::PolicyParams>> TrapPolicies(
    const ike::policy::SpdEntry& entry, uint32_t reqid, const KernelTags& tags) {
  const auto& selector = entry.selector;
  if (!selector.remote)
    return "spd entry " + entry.name +
           ": a trap needs a remote address range (remote: any would capture "
           "all traffic)";
  const IpFamily family = selector.remote->family();
  const ike::policy::IpRange local =
      selector.local ? *selector.local : ike::policy::IpRange::All(family);
  ike::policy::TrafficSelector local_ts{local, selector.protocol,
                                        selector.local_ports};
  ike::policy::TrafficSelector remote_ts{*selector.remote, selector.protocol,
                                         selector.remote_ports};
  auto selectors = ToKernelSelectors(local_ts, remote_ts);
  if (auto* error = std::get_if<std::string>(&selectors))
    return "spd entry " + entry.name + ": " + *error;
  const auto& protect = entry.protect;
  if (protect.mode == ike::policy::IpsecMode::kTunnel &&
      (!protect.tunnel_local || !protect.tunnel_remote))
    return "spd entry " + entry.name +
           ": a tunnel-mode trap needs tunnel.local and tunnel.remote";
  auto inbound_selectors = ToKernelSelectors(remote_ts, local_ts);
  if (auto* error = std::get_if<std::string>(&inbound_selectors))
    return "spd entry " + entry.name + ": " + *error;
  const ike::policy::IpAddress any{family, 0};
  const ike::policy::IpAddress tunnel_local = protect.tunnel_local.value_or(any);
  const ike::policy::IpAddress tunnel_remote = protect.tunnel_remote.value_or(any);
  std::vector<kernel_glue::PolicyParams> out;
  auto add = [&](const kernel_glue::Selector& kernel_selector,
                 kernel_glue::Direction direction,
                 const ike::policy::IpAddress& outer_src,
                 const ike::policy::IpAddress& outer_dst) {
    kernel_glue::PolicyParams params;
    params.id.selector = kernel_selector;
    params.id.direction = direction;
    params.id.mark = tags.mark;
    params.priority = PolicyPriority(kernel_selector, tags);
    params.action = kernel_glue::PolicyAction::kProtect;
    params.templates.push_back(
        TemplateFor(protect.mode, outer_src, outer_dst, reqid));
    out.push_back(params);
  };
  for (const kernel_glue::Selector& kernel_selector :
       std::get<std::vector<kernel_glue::Selector>>(selectors))
    add(kernel_selector, kernel_glue::Direction::kOut, tunnel_local, tunnel_remote);
  // The same directions a CHILD_SA's policy set has (ike::sa EmitPolicySet),
  // so each of its policies takes one of these slots. Inbound (and, for a
  // tunnel, forwarded) packets must have come through an SA of the trap's
  // reqid, which none has: clear ones fail the kernel's template check and
  // are dropped (RFC 4301 section 5.2). ESP itself is not checked against
  // them, only what it carried.
  for (const kernel_glue::Selector& kernel_selector :
       std::get<std::vector<kernel_glue::Selector>>(inbound_selectors)) {
    add(kernel_selector, kernel_glue::Direction::kIn, tunnel_remote, tunnel_local);
    if (protect.mode == ike::policy::IpsecMode::kTunnel)
      add(kernel_selector, kernel_glue::Direction::kFwd, tunnel_remote, tunnel_local);
  }
  return out;
}

std::vector<kernel_glue::PolicyParams> NeighborDiscoveryBypasses(
    const kernel_glue::PolicyParams& trap, const KernelTags& tags) {
  constexpr uint8_t kIcmpV6 = 58;
  // Router Solicitation (133) to Redirect (137), RFC 4861 section 4.
  constexpr uint16_t kFirstType = 133, kLastType = 137;
  const kernel_glue::Selector& selector = trap.id.selector;
  std::vector<kernel_glue::PolicyParams> out;
  // Neighbor discovery never leaves its link, so it is never forwarded.
  if (trap.id.direction == kernel_glue::Direction::kFwd ||
      selector.family() != kernel_glue::AddressFamily::kIpv6 ||
      (selector.protocol != 0 && selector.protocol != kIcmpV6) ||
      selector.src_port != 0 || selector.dst_port != 0)
    return out;
  for (uint16_t type = kFirstType; type <= kLastType; ++type) {
    kernel_glue::PolicyParams params;
    params.id = trap.id;
    params.id.selector.protocol = kIcmpV6;
    params.id.selector.src_port = type;  // XFRM matches the ICMP type here
    params.priority = PolicyPriority(params.id.selector, tags);
    params.action = kernel_glue::PolicyAction::kBypass;
    out.push_back(params);
  }
  return out;
}

std::optional<ike::sa::KernelAcquire> FromKernelAcquire(
    const kernel_glue::AcquireEvent& acquire, uint16_t ike_port) {
  auto local = FromKernel(acquire.selector.src);
  auto remote = FromKernel(acquire.selector.dst);
  if (!local || !remote) return std::nullopt;
  ike::sa::KernelAcquire out;
  out.packet.local = *local;
  out.packet.remote = *remote;
  out.packet.protocol = acquire.selector.protocol;
  out.packet.local_port = acquire.selector.src_port;
  out.packet.remote_port = acquire.selector.dst_port;
  if (auto outer = FromKernel(acquire.src); outer && outer->value != 0)
    out.local = ike::sa::Endpoint{*outer, ike_port};
  return out;
}

std::optional<ike::sa::KernelExpire> FromKernelExpire(
    const kernel_glue::ExpireEvent& expire) {
  auto destination = FromKernel(expire.id.dst);
  if (!destination) return std::nullopt;
  return ike::sa::KernelExpire{*destination, expire.id.spi, expire.hard};
}

}  // namespace btnsd::daemon
