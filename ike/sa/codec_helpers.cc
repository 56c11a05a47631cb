#include "ike/sa/codec_helpers.h"

#include <algorithm>
#include <span>

#include <botan/hash.h>

#include "ike/crypto/sk_payload.h"

namespace ike::sa::internal {

namespace {

bool SameSet(const crypto::TransformSet& a, const crypto::TransformSet& b) {
  return a.encr == b.encr && a.encr_key_bits == b.encr_key_bits &&
         a.prf == b.prf && a.integ == b.integ && a.ke == b.ke &&
         a.esn == b.esn;
}

wire::Transform MakeTransform(wire::TransformType type, uint16_t id,
                              uint16_t key_bits = 0) {
  wire::Transform t;
  t.type = type;
  t.id = id;
  if (key_bits != 0) {
    wire::TransformAttribute attr;
    attr.type = wire::kAttrKeyLength;
    attr.is_tv = true;
    attr.tv_value = key_bits;
    t.attributes.push_back(attr);
  }
  return t;
}

}  // namespace

std::vector<crypto::TransformSet> ExpandProposals(
    const policy::ProposalSet& set, wire::ProtocolId protocol,
    bool without_ke) {
  std::vector<crypto::TransformSet> out;
  bool ike = protocol == wire::ProtocolId::kIke;
  // The policy's lists, or the one value an absent list stands for (views,
  // not copies: this runs for every exchange that carries an SA payload).
  static constexpr wire::PrfId kDefaultPrf[] = {wire::PrfId::kHmacSha2_256};
  static constexpr wire::IntegId kNoInteg[] = {wire::IntegId::kNone};
  static constexpr wire::KeGroup kNoKe[] = {wire::KeGroup::kNone};
  static constexpr wire::EsnId kNoEsn[] = {wire::EsnId::kNoEsn};
  for (const policy::Proposal& p : set.proposals) {
    std::span<const wire::PrfId> prfs = p.prf;
    if (!ike || prfs.empty()) prfs = kDefaultPrf;
    std::span<const wire::IntegId> integs = p.integrity;
    if (integs.empty()) integs = kNoInteg;
    std::span<const wire::KeGroup> kes = p.ke;
    if (without_ke || kes.empty()) kes = kNoKe;
    std::span<const wire::EsnId> esns = p.esn;
    if (ike || esns.empty()) esns = kNoEsn;
    for (const auto& e : p.encryption)
      for (auto prf : prfs)
        for (auto integ : integs)
          for (auto ke : kes)
            for (auto esn : esns) {
              crypto::TransformSet s;
              s.encr = e.id;
              s.encr_key_bits = e.key_bits;
              s.prf = prf;
              s.integ = policy::IsAead(e.id) ? wire::IntegId::kNone : integ;
              s.ke = ke;
              s.esn = esn;
              if (!crypto::ValidateTransformSet(protocol, s).ok()) continue;
              bool dup = std::any_of(out.begin(), out.end(),
                                     [&](const auto& o) { return SameSet(o, s); });
              if (!dup) out.push_back(s);
            }
  }
  return out;
}

wire::SaPayload BuildOffer(const policy::ProposalSet& set,
                           wire::ProtocolId protocol, const Bytes& spi,
                           bool without_ke) {
  wire::SaPayload sa;
  uint8_t number = 1;
  bool ike = protocol == wire::ProtocolId::kIke;
  for (const policy::Proposal& p : set.proposals) {
    wire::Proposal wp;
    wp.number = number++;
    wp.protocol = protocol;
    wp.spi = spi;
    bool aead = !p.encryption.empty() && policy::IsAead(p.encryption[0].id);
    for (const auto& e : p.encryption)
      wp.transforms.push_back(MakeTransform(wire::TransformType::kEncr,
                                            uint16_t(e.id), e.key_bits));
    if (ike)
      for (auto prf : p.prf)
        wp.transforms.push_back(
            MakeTransform(wire::TransformType::kPrf, uint16_t(prf)));
    if (!aead)
      for (auto integ : p.integrity)
        wp.transforms.push_back(
            MakeTransform(wire::TransformType::kInteg, uint16_t(integ)));
    if (!without_ke)
      for (auto ke : p.ke)
        if (ike || ke != wire::KeGroup::kNone || p.ke.size() > 1)
          wp.transforms.push_back(
              MakeTransform(wire::TransformType::kKe, uint16_t(ke)));
    if (!ike) {
      std::vector<wire::EsnId> esns = p.esn;
      if (esns.empty()) esns = {wire::EsnId::kNoEsn};
      for (auto esn : esns)
        wp.transforms.push_back(
            MakeTransform(wire::TransformType::kEsn, uint16_t(esn)));
    }
    sa.proposals.push_back(std::move(wp));
  }
  return sa;
}

wire::SaPayload BuildChosen(const crypto::TransformSet& set,
                            wire::ProtocolId protocol, uint8_t number,
                            const Bytes& spi, bool with_ke) {
  wire::Proposal wp;
  wp.number = number;
  wp.protocol = protocol;
  wp.spi = spi;
  auto encr = crypto::LookupEncr(set.encr, set.encr_key_bits);
  uint16_t key_attr =
      encr && encr->needs_key_length_attribute ? set.encr_key_bits : 0;
  wp.transforms.push_back(
      MakeTransform(wire::TransformType::kEncr, uint16_t(set.encr), key_attr));
  bool ike = protocol == wire::ProtocolId::kIke;
  if (ike)
    wp.transforms.push_back(
        MakeTransform(wire::TransformType::kPrf, uint16_t(set.prf)));
  if (set.integ != wire::IntegId::kNone)
    wp.transforms.push_back(
        MakeTransform(wire::TransformType::kInteg, uint16_t(set.integ)));
  if (with_ke && (ike || set.ke != wire::KeGroup::kNone))
    wp.transforms.push_back(
        MakeTransform(wire::TransformType::kKe, uint16_t(set.ke)));
  if (!ike)
    wp.transforms.push_back(
        MakeTransform(wire::TransformType::kEsn, uint16_t(set.esn)));
  wire::SaPayload sa;
  sa.proposals.push_back(std::move(wp));
  return sa;
}

std::vector<crypto::Proposal> ToCryptoProposals(const wire::SaPayload& sa,
                                                bool without_ke) {
  std::vector<crypto::Proposal> out;
  for (const wire::Proposal& p : sa.proposals) {
    crypto::Proposal cp;
    cp.number = p.number;
    cp.protocol = p.protocol;
    cp.spi = p.spi;
    for (const wire::Transform& t : p.transforms) {
      if (without_ke && t.type == wire::TransformType::kKe) continue;
      crypto::Transform ct;
      ct.type = t.type;
      ct.id = t.id;
      ct.key_length_bits = t.KeyLength();
      for (const auto& a : t.attributes)
        if (a.type != wire::kAttrKeyLength) ct.has_unknown_attribute = true;
      cp.transforms.push_back(ct);
    }
    out.push_back(std::move(cp));
  }
  return out;
}

std::optional<crypto::TransformSet> AcceptChosen(
    const wire::SaPayload& chosen, wire::ProtocolId protocol,
    const std::vector<crypto::TransformSet>& offered, Bytes* spi) {
  // RFC 7296 section 3.3: the reply holds exactly one proposal, with one
  // transform of each type, taken from our offer.
  if (chosen.proposals.size() != 1) return std::nullopt;
  const wire::Proposal& p = chosen.proposals[0];
  if (p.protocol != protocol) return std::nullopt;
  size_t counts[6] = {0, 0, 0, 0, 0, 0};
  for (const auto& t : p.transforms) {
    auto type = uint8_t(t.type);
    if (type < 1 || type > 5) return std::nullopt;
    if (++counts[type] > 1) return std::nullopt;
  }
  auto proposals = ToCryptoProposals(chosen, false);
  auto selected = crypto::SelectProposal(protocol, offered, proposals);
  if (!selected.ok()) return std::nullopt;
  // The chosen set must not contain transforms our match ignored.
  const crypto::TransformSet& s = selected->transforms;
  if (protocol != wire::ProtocolId::kIke && counts[4] == 0 &&
      s.ke != wire::KeGroup::kNone)
    return std::nullopt;
  if (spi) *spi = p.spi;
  return s;
}

wire::TrafficSelector ToWire(const policy::TrafficSelector& ts) {
  wire::TrafficSelector w;
  w.type = ts.addresses.family() == policy::IpFamily::kV4
               ? wire::TsType::kIpv4AddrRange
               : wire::TsType::kIpv6AddrRange;
  w.ip_protocol = ts.protocol;
  w.start_port = ts.ports.low;
  w.end_port = ts.ports.high;
  w.start_address = ts.addresses.start.ToBytes();
  w.end_address = ts.addresses.end.ToBytes();
  return w;
}

std::optional<policy::TrafficSelector> FromWire(
    const wire::TrafficSelector& w) {
  size_t len = w.type == wire::TsType::kIpv4AddrRange   ? 4
               : w.type == wire::TsType::kIpv6AddrRange ? 16
                                                        : 0;
  if (len == 0 || w.start_address.size() != len ||
      w.end_address.size() != len)
    return std::nullopt;
  auto start = policy::IpAddress::FromBytes(w.start_address.data(), len);
  auto end = policy::IpAddress::FromBytes(w.end_address.data(), len);
  if (!start || !end || start->value > end->value) return std::nullopt;
  if (w.start_port > w.end_port) return std::nullopt;
  policy::TrafficSelector ts;
  ts.addresses = {*start, *end};
  ts.protocol = w.ip_protocol;
  ts.ports = {w.start_port, w.end_port};
  return ts;
}

std::vector<policy::TrafficSelector> FromWire(
    const std::vector<wire::TrafficSelector>& list) {
  std::vector<policy::TrafficSelector> out;
  for (const auto& w : list)
    if (auto ts = FromWire(w)) out.push_back(*ts);
  return out;
}

std::vector<wire::TrafficSelector> ToWire(
    const std::vector<policy::TrafficSelector>& list) {
  std::vector<wire::TrafficSelector> out;
  for (const auto& ts : list) out.push_back(ToWire(ts));
  return out;
}

Bytes SpiBytes(uint64_t spi) {
  Bytes b(8);
  for (int i = 0; i < 8; ++i) b[i] = uint8_t(spi >> (56 - 8 * i));
  return b;
}

Bytes SpiBytes32(uint32_t spi) {
  return {uint8_t(spi >> 24), uint8_t(spi >> 16), uint8_t(spi >> 8),
          uint8_t(spi)};
}

uint32_t SpiFromBytes32(const Bytes& b) {
  if (b.size() != 4) return 0;
  return uint32_t(b[0]) << 24 | uint32_t(b[1]) << 16 | uint32_t(b[2]) << 8 |
         b[3];
}

uint64_t SpiFromBytes64(const Bytes& b) {
  if (b.size() != 8) return 0;
  uint64_t v = 0;
  for (uint8_t x : b) v = v << 8 | x;
  return v;
}

Bytes NatDetectionHash(uint64_t spi_i, uint64_t spi_r, const Endpoint& ep) {
  // One SHA-1 per thread: creating it by name costs more than hashing
  // these few bytes (final() leaves it ready for the next message).
  thread_local const std::unique_ptr<Botan::HashFunction> sha1 =
      Botan::HashFunction::create_or_throw("SHA-1");
  uint8_t spis[16], port[2] = {uint8_t(ep.port >> 8), uint8_t(ep.port)};
  for (int i = 0; i < 8; ++i) {
    spis[i] = uint8_t(spi_i >> (56 - 8 * i));
    spis[8 + i] = uint8_t(spi_r >> (56 - 8 * i));
  }
  Bytes ip = ep.address.ToBytes();
  sha1->update(spis, sizeof(spis));
  sha1->update(ip.data(), ip.size());
  sha1->update(port, 2);
  Bytes out(sha1->output_length());
  sha1->final(out.data());
  return out;
}

Bytes IdPayloadBody(wire::IdType type, const Bytes& data) {
  Bytes out;
  out.reserve(4 + data.size());
  out.push_back(uint8_t(type));
  out.insert(out.end(), 3, 0);
  out.insert(out.end(), data.begin(), data.end());
  return out;
}

policy::Identity IdentityFromPayload(const wire::IdPayload& id) {
  policy::Identity out;
  out.type = id.type;
  out.data = id.data;
  switch (id.type) {
    case wire::IdType::kFqdn:
    case wire::IdType::kRfc822Addr:
      out.printable.assign(id.data.begin(), id.data.end());
      break;
    case wire::IdType::kNull:
      out.printable = "null";
      break;
    default:
      out.printable = out.ToString();
  }
  return out;
}

std::string ToHex(std::span<const uint8_t> bytes) {
  static const char* kDigits = "0123456789abcdef";
  std::string s;
  for (uint8_t b : bytes) {
    s.push_back(kDigits[b >> 4]);
    s.push_back(kDigits[b & 15]);
  }
  return s;
}

crypto::Result<Bytes> SealMessage(const crypto::TransformSet& set,
                                  IkeDirectionKeys keys,
                                  const wire::Header& header,
                                  const std::vector<wire::Payload>& inner,
                                  crypto::RandomSource& random) {
  auto cipher = crypto::SkCipher::Create(set, keys.encryption, keys.integrity);
  if (!cipher.ok()) return cipher.error();
  auto chain = wire::EncodePayloadChain(inner);
  if (!chain.ok())
    return crypto::MakeError(crypto::ErrorCode::kInvalidArgument,
                             "encoding inner payloads: " + chain.error().message);
  size_t body_len = cipher->BodyLength(chain->bytes.size());
  wire::Message m;
  m.header = header;
  wire::SkPayload sk;
  sk.first_inner = wire::PayloadType(chain->first_type);
  sk.body.assign(body_len, 0);
  m.payloads.push_back(wire::MakePayload(std::move(sk)));
  auto encoded = wire::EncodeMessage(m);
  if (!encoded.ok())
    return crypto::MakeError(crypto::ErrorCode::kInvalidArgument,
                             "encoding message: " + encoded.error().message);
  Bytes out = std::move(*encoded);
  size_t prefix_len = out.size() - body_len;
  auto body = cipher->Protect(crypto::ByteView(out.data(), prefix_len),
                              crypto::View(chain->bytes), random);
  if (!body.ok()) return body.error();
  if (body->size() != body_len)
    return crypto::MakeError(crypto::ErrorCode::kInvalidArgument,
                             "SK body length differs from BodyLength()");
  std::copy(body->begin(), body->end(), out.begin() + prefix_len);
  return out;
}

std::variant<std::vector<wire::Payload>, OpenError> OpenMessage(
    const crypto::TransformSet& set, IkeDirectionKeys keys,
    std::span<const uint8_t> datagram, const wire::Message& message) {
  const wire::SkPayload* sk = wire::FindFirst<wire::SkPayload>(message.payloads);
  if (!sk)
    return OpenError{FailureReason::kInvalidSyntax,
                     "message has no SK payload where one is required"};
  auto where = wire::LocateSk(datagram);
  if (!where.ok())
    return OpenError{FailureReason::kInvalidSyntax, where.error().message};
  auto cipher = crypto::SkCipher::Create(set, keys.encryption, keys.integrity);
  if (!cipher.ok())
    return OpenError{FailureReason::kInternalError, cipher.error().message};
  auto plain = cipher->Unprotect(
      datagram.subspan(0, where->body_offset),
      datagram.subspan(where->body_offset, where->body_length));
  if (!plain.ok())
    return OpenError{FailureReason::kIntegrityCheckFailed,
                     plain.error().message};
  if (plain->payloads.empty()) return std::vector<wire::Payload>{};
  auto chain = wire::DecodePayloadChain(where->first_inner,
                                        crypto::View(plain->payloads));
  if (!chain.ok())
    return OpenError{FailureReason::kInvalidSyntax,
                     "SK content: " + chain.error().message};
  return std::move(*chain);
}

}  // namespace ike::sa::internal
