// Encoder and decoder for IKEv2 messages. See message.h for the contract.
#include <string>
#include <utility>

#include "ike/wire/message.h"
#include "ike/wire/names.h"

namespace ike::wire {
namespace {

constexpr uint8_t kCriticalBit = 0x80;
constexpr uint16_t kAttributeFormatTv = 0x8000;
constexpr uint8_t kMoreProposals = 2;   // "Last Substruc" of a non-last proposal
constexpr uint8_t kMoreTransforms = 3;  // "Last Substruc" of a non-last transform
constexpr size_t kProposalHeaderSize = 8;
constexpr size_t kTransformHeaderSize = 8;
constexpr size_t kMinNonceSize = 16;
constexpr size_t kMaxNonceSize = 256;
constexpr size_t kSkfHeaderExtra = 4;  // fragment number + total fragments

uint16_t ReadU16(std::span<const uint8_t> b, size_t at) {
  return static_cast<uint16_t>((b[at] << 8) | b[at + 1]);
}
uint32_t ReadU32(std::span<const uint8_t> b, size_t at) {
  return (uint32_t{b[at]} << 24) | (uint32_t{b[at + 1]} << 16) |
         (uint32_t{b[at + 2]} << 8) | uint32_t{b[at + 3]};
}
uint64_t ReadU64(std::span<const uint8_t> b, size_t at) {
  return (uint64_t{ReadU32(b, at)} << 32) | ReadU32(b, at + 4);
}
Bytes Slice(std::span<const uint8_t> b, size_t at, size_t n) {
  return Bytes(b.begin() + at, b.begin() + at + n);
}

void PutU8(Bytes& out, uint8_t v) { out.push_back(v); }
void PutU16(Bytes& out, uint16_t v) {
  out.push_back(static_cast<uint8_t>(v >> 8));
  out.push_back(static_cast<uint8_t>(v));
}
void PutU32(Bytes& out, uint32_t v) {
  PutU16(out, static_cast<uint16_t>(v >> 16));
  PutU16(out, static_cast<uint16_t>(v));
}
void PutU64(Bytes& out, uint64_t v) {
  PutU32(out, static_cast<uint32_t>(v >> 32));
  PutU32(out, static_cast<uint32_t>(v));
}
void PutBytes(Bytes& out, std::span<const uint8_t> b) {
  out.insert(out.end(), b.begin(), b.end());
}
void PatchU16(Bytes& out, size_t at, uint16_t v) {
  out[at] = static_cast<uint8_t>(v >> 8);
  out[at + 1] = static_cast<uint8_t>(v);
}

WireError SyntaxError(size_t offset, std::string message) {
  return WireError{NotifyType::kInvalidSyntax, offset, 0,
                   std::move(message) + " (at offset " +
                       std::to_string(offset) + ")"};
}

bool IsKnownPayloadType(uint8_t type) {
  switch (static_cast<PayloadType>(type)) {
    case PayloadType::kSa:
    case PayloadType::kKe:
    case PayloadType::kIdi:
    case PayloadType::kIdr:
    case PayloadType::kCert:
    case PayloadType::kCertReq:
    case PayloadType::kAuth:
    case PayloadType::kNonce:
    case PayloadType::kNotify:
    case PayloadType::kDelete:
    case PayloadType::kVendorId:
    case PayloadType::kTsi:
    case PayloadType::kTsr:
    case PayloadType::kSk:
    case PayloadType::kCp:
    case PayloadType::kEap:
    case PayloadType::kSkf:
      return true;
    default:
      return false;
  }
}

// Context for decoding one payload body: its bytes, where they start in the
// caller's buffer, and the payload's name for messages.
struct BodyView {
  std::span<const uint8_t> bytes;
  size_t offset;
  uint8_t type;

  size_t size() const { return bytes.size(); }
  WireError Error(size_t at, const std::string& what) const {
    return SyntaxError(offset + at, PayloadName(type) + " payload: " + what);
  }
  // Ensures `need` bytes exist from `at`; used before every fixed-size read.
  bool Has(size_t at, size_t need) const {
    return at <= bytes.size() && need <= bytes.size() - at;
  }
};

// --- SA ----------------------------------------------------------------------

template <class Where>
Result<std::vector<TransformAttribute>> DecodeAttributes(const BodyView& v,
                                                         size_t pos, size_t end,
                                                         const Where& where) {
  std::vector<TransformAttribute> attributes;
  while (pos < end) {
    if (end - pos < 4) {
      return v.Error(pos, where() + " attribute header needs 4 bytes, " +
                              std::to_string(end - pos) + " left");
    }
    const uint16_t type_field = ReadU16(v.bytes, pos);
    TransformAttribute attribute;
    attribute.type = type_field & ~kAttributeFormatTv;
    attribute.is_tv = (type_field & kAttributeFormatTv) != 0;
    if (attribute.is_tv) {
      attribute.tv_value = ReadU16(v.bytes, pos + 2);
      pos += 4;
    } else {
      const size_t length = ReadU16(v.bytes, pos + 2);
      if (length > end - pos - 4) {
        return v.Error(pos, where() + " attribute " +
                                std::to_string(attribute.type) + " length " +
                                std::to_string(length) + " exceeds the " +
                                std::to_string(end - pos - 4) +
                                " bytes left in the transform");
      }
      attribute.tlv_value = Slice(v.bytes, pos + 4, length);
      pos += 4 + length;
    }
    attributes.push_back(std::move(attribute));
  }
  return attributes;
}

Result<PayloadBody> DecodeSa(const BodyView& v) {
  SaPayload sa;
  size_t pos = 0;
  if (v.size() == 0) return v.Error(0, "no proposals");
  while (pos < v.size()) {
    // Built only when an error is reported, to keep the good path cheap.
    const size_t proposal_index = sa.proposals.size() + 1;
    const auto where = [proposal_index] {
      return "proposal #" + std::to_string(proposal_index);
    };
    if (!v.Has(pos, kProposalHeaderSize)) {
      return v.Error(pos, where() + " header needs 8 bytes, " +
                              std::to_string(v.size() - pos) + " left");
    }
    const uint8_t last_substruc = v.bytes[pos];
    const size_t proposal_length = ReadU16(v.bytes, pos + 2);
    Proposal proposal;
    proposal.number = v.bytes[pos + 4];
    proposal.protocol = static_cast<ProtocolId>(v.bytes[pos + 5]);
    const size_t spi_size = v.bytes[pos + 6];
    const size_t transform_count = v.bytes[pos + 7];
    if (proposal_length < kProposalHeaderSize + spi_size ||
        proposal_length > v.size() - pos) {
      return v.Error(pos, where() + " length " + std::to_string(proposal_length) +
                              " must be between " +
                              std::to_string(kProposalHeaderSize + spi_size) +
                              " and the " + std::to_string(v.size() - pos) +
                              " bytes left");
    }
    const size_t end = pos + proposal_length;
    const bool is_last = end == v.size();
    if (last_substruc != (is_last ? 0 : kMoreProposals)) {
      return v.Error(pos, where() + " Last Substruc is " +
                              std::to_string(last_substruc) + ", expected " +
                              std::to_string(is_last ? 0 : kMoreProposals));
    }
    proposal.spi = Slice(v.bytes, pos + kProposalHeaderSize, spi_size);
    size_t tpos = pos + kProposalHeaderSize + spi_size;
    for (size_t i = 0; i < transform_count; ++i) {
      const auto twhere = [&where, i] {
        return where() + " transform #" + std::to_string(i + 1);
      };
      if (end - tpos < kTransformHeaderSize) {
        return v.Error(tpos, twhere() + " header needs 8 bytes, " +
                                 std::to_string(end - tpos) +
                                 " left in the proposal (Num Transforms " +
                                 std::to_string(transform_count) + ")");
      }
      const uint8_t tlast = v.bytes[tpos];
      const size_t transform_length = ReadU16(v.bytes, tpos + 2);
      if (transform_length < kTransformHeaderSize ||
          transform_length > end - tpos) {
        return v.Error(tpos, twhere() + " length " +
                                 std::to_string(transform_length) +
                                 " must be between 8 and the " +
                                 std::to_string(end - tpos) +
                                 " bytes left in the proposal");
      }
      const bool last_transform = i + 1 == transform_count;
      if (tlast != (last_transform ? 0 : kMoreTransforms)) {
        return v.Error(tpos, twhere() + " Last Substruc is " +
                                 std::to_string(tlast) + ", expected " +
                                 std::to_string(last_transform ? 0 : kMoreTransforms));
      }
      Transform transform;
      transform.type = static_cast<TransformType>(v.bytes[tpos + 4]);
      transform.id = ReadU16(v.bytes, tpos + 6);
      auto attributes = DecodeAttributes(v, tpos + kTransformHeaderSize,
                                         tpos + transform_length, twhere);
      if (!attributes) return attributes.error();
      transform.attributes = std::move(attributes).value();
      proposal.transforms.push_back(std::move(transform));
      tpos += transform_length;
    }
    if (tpos != end) {
      return v.Error(tpos, where() + " has " + std::to_string(end - tpos) +
                               " bytes after its " +
                               std::to_string(transform_count) +
                               " transforms (Num Transforms disagrees with "
                               "the proposal length)");
    }
    sa.proposals.push_back(std::move(proposal));
    pos = end;
  }
  return PayloadBody(std::move(sa));
}

// --- simple payloads ----------------------------------------------------------

Result<PayloadBody> DecodeKe(const BodyView& v) {
  if (!v.Has(0, 4)) return v.Error(0, "needs at least 4 bytes (group, reserved)");
  return PayloadBody(KePayload{static_cast<KeGroup>(ReadU16(v.bytes, 0)),
                               Slice(v.bytes, 4, v.size() - 4)});
}

Result<IdPayload> DecodeId(const BodyView& v) {
  if (!v.Has(0, 4)) return v.Error(0, "needs at least 4 bytes (ID type, reserved)");
  IdPayload id{static_cast<IdType>(v.bytes[0]), Slice(v.bytes, 4, v.size() - 4)};
  if (id.type == IdType::kIpv4Addr && id.data.size() != 4) {
    return v.Error(4, "ID_IPV4_ADDR data must be 4 bytes, got " +
                          std::to_string(id.data.size()));
  }
  if (id.type == IdType::kIpv6Addr && id.data.size() != 16) {
    return v.Error(4, "ID_IPV6_ADDR data must be 16 bytes, got " +
                          std::to_string(id.data.size()));
  }
  return id;
}

Result<PayloadBody> DecodeAuth(const BodyView& v) {
  if (!v.Has(0, 4)) return v.Error(0, "needs at least 4 bytes (method, reserved)");
  return PayloadBody(AuthPayload{static_cast<AuthMethod>(v.bytes[0]),
                                 Slice(v.bytes, 4, v.size() - 4)});
}

Result<PayloadBody> DecodeNonce(const BodyView& v) {
  if (v.size() < kMinNonceSize || v.size() > kMaxNonceSize) {
    return v.Error(0, "nonce must be 16 to 256 bytes, got " +
                          std::to_string(v.size()));
  }
  return PayloadBody(NoncePayload{Slice(v.bytes, 0, v.size())});
}

Result<PayloadBody> DecodeNotify(const BodyView& v) {
  if (!v.Has(0, 4)) {
    return v.Error(0, "needs at least 4 bytes (protocol, SPI size, type)");
  }
  NotifyPayload notify;
  notify.protocol = v.bytes[0];
  const size_t spi_size = v.bytes[1];
  notify.type = static_cast<NotifyType>(ReadU16(v.bytes, 2));
  if (!v.Has(4, spi_size)) {
    return v.Error(1, "SPI size " + std::to_string(spi_size) + " exceeds the " +
                          std::to_string(v.size() - 4) + " bytes left");
  }
  notify.spi = Slice(v.bytes, 4, spi_size);
  notify.data = Slice(v.bytes, 4 + spi_size, v.size() - 4 - spi_size);
  return PayloadBody(std::move(notify));
}

Result<PayloadBody> DecodeDelete(const BodyView& v) {
  if (!v.Has(0, 4)) {
    return v.Error(0, "needs at least 4 bytes (protocol, SPI size, count)");
  }
  DeletePayload del;
  del.protocol = static_cast<ProtocolId>(v.bytes[0]);
  del.spi_size = v.bytes[1];
  const size_t count = ReadU16(v.bytes, 2);
  if (del.spi_size == 0 && count != 0) {
    return v.Error(1, "SPI size 0 with " + std::to_string(count) + " SPIs");
  }
  if (count * del.spi_size != v.size() - 4) {
    return v.Error(2, std::to_string(count) + " SPIs of " +
                          std::to_string(del.spi_size) + " bytes need " +
                          std::to_string(count * del.spi_size) + " bytes, the payload has " +
                          std::to_string(v.size() - 4));
  }
  for (size_t i = 0; i < count; ++i) {
    del.spis.push_back(Slice(v.bytes, 4 + i * del.spi_size, del.spi_size));
  }
  return PayloadBody(std::move(del));
}

Result<TsPayload> DecodeTs(const BodyView& v) {
  if (!v.Has(0, 4)) return v.Error(0, "needs at least 4 bytes (count, reserved)");
  const size_t count = v.bytes[0];
  TsPayload ts;
  size_t pos = 4;
  for (size_t i = 0; i < count; ++i) {
    const auto where = [i] { return "traffic selector #" + std::to_string(i + 1); };
    if (!v.Has(pos, 4)) {
      return v.Error(pos, where() + " header needs 4 bytes, " +
                              std::to_string(v.size() - pos) +
                              " left (Number of TSs " + std::to_string(count) + ")");
    }
    TrafficSelector selector;
    selector.type = static_cast<TsType>(v.bytes[pos]);
    selector.ip_protocol = v.bytes[pos + 1];
    const size_t length = ReadU16(v.bytes, pos + 2);
    if (length < 4 || length > v.size() - pos) {
      return v.Error(pos, where() + " length " + std::to_string(length) +
                              " must be between 4 and the " +
                              std::to_string(v.size() - pos) + " bytes left");
    }
    size_t address_size = 0;
    if (selector.type == TsType::kIpv4AddrRange) address_size = 4;
    if (selector.type == TsType::kIpv6AddrRange) address_size = 16;
    if (address_size != 0) {
      if (length != 8 + 2 * address_size) {
        return v.Error(pos, where() + " of type " +
                                std::to_string(v.bytes[pos]) + " must be " +
                                std::to_string(8 + 2 * address_size) +
                                " bytes long, length field says " +
                                std::to_string(length));
      }
      selector.start_port = ReadU16(v.bytes, pos + 4);
      selector.end_port = ReadU16(v.bytes, pos + 6);
      selector.start_address = Slice(v.bytes, pos + 8, address_size);
      selector.end_address = Slice(v.bytes, pos + 8 + address_size, address_size);
    } else {
      selector.start_port = 0;
      selector.end_port = 0;
      selector.start_address = Slice(v.bytes, pos + 4, length - 4);
    }
    ts.selectors.push_back(std::move(selector));
    pos += length;
  }
  if (pos != v.size()) {
    return v.Error(pos, std::to_string(v.size() - pos) + " bytes after the " +
                            std::to_string(count) +
                            " traffic selectors announced by Number of TSs");
  }
  return ts;
}

Result<PayloadBody> DecodeSkf(const BodyView& v, uint8_t first_inner) {
  if (!v.Has(0, kSkfHeaderExtra)) {
    return v.Error(0, "needs at least 4 bytes (fragment number, total)");
  }
  SkfPayload skf;
  skf.first_inner = static_cast<PayloadType>(first_inner);
  skf.fragment_number = ReadU16(v.bytes, 0);
  skf.total_fragments = ReadU16(v.bytes, 2);
  if (skf.fragment_number == 0 || skf.fragment_number > skf.total_fragments) {
    return v.Error(0, "fragment number " + std::to_string(skf.fragment_number) +
                          " must be between 1 and Total Fragments " +
                          std::to_string(skf.total_fragments));
  }
  skf.body = Slice(v.bytes, 4, v.size() - 4);
  return PayloadBody(std::move(skf));
}

Result<PayloadBody> DecodeCp(const BodyView& v) {
  if (!v.Has(0, 4)) return v.Error(0, "needs at least 4 bytes (CFG type, reserved)");
  CpPayload cp;
  cp.type = static_cast<CfgType>(v.bytes[0]);
  size_t pos = 4;
  while (pos < v.size()) {
    if (!v.Has(pos, 4)) {
      return v.Error(pos, "attribute header needs 4 bytes, " +
                              std::to_string(v.size() - pos) + " left");
    }
    ConfigAttribute attribute;
    attribute.type = ReadU16(v.bytes, pos) & 0x7fff;
    const size_t length = ReadU16(v.bytes, pos + 2);
    if (!v.Has(pos + 4, length)) {
      return v.Error(pos, "attribute " + std::to_string(attribute.type) +
                              " length " + std::to_string(length) +
                              " exceeds the " + std::to_string(v.size() - pos - 4) +
                              " bytes left");
    }
    attribute.value = Slice(v.bytes, pos + 4, length);
    cp.attributes.push_back(std::move(attribute));
    pos += 4 + length;
  }
  return PayloadBody(std::move(cp));
}

Result<PayloadBody> DecodeBody(uint8_t type, uint8_t next, const BodyView& v) {
  auto all = [&v] { return Slice(v.bytes, 0, v.size()); };
  switch (static_cast<PayloadType>(type)) {
    case PayloadType::kSa:
      return DecodeSa(v);
    case PayloadType::kKe:
      return DecodeKe(v);
    case PayloadType::kIdi:
    case PayloadType::kIdr: {
      auto id = DecodeId(v);
      if (!id) return id.error();
      if (type == static_cast<uint8_t>(PayloadType::kIdi)) {
        return PayloadBody(IdiPayload{std::move(id).value()});
      }
      return PayloadBody(IdrPayload{std::move(id).value()});
    }
    case PayloadType::kCert:
    case PayloadType::kCertReq: {
      if (!v.Has(0, 1)) return v.Error(0, "needs the 1-byte encoding field");
      const auto encoding = static_cast<CertEncoding>(v.bytes[0]);
      Bytes data = Slice(v.bytes, 1, v.size() - 1);
      if (type == static_cast<uint8_t>(PayloadType::kCert)) {
        return PayloadBody(CertPayload{encoding, std::move(data)});
      }
      return PayloadBody(CertReqPayload{encoding, std::move(data)});
    }
    case PayloadType::kAuth:
      return DecodeAuth(v);
    case PayloadType::kNonce:
      return DecodeNonce(v);
    case PayloadType::kNotify:
      return DecodeNotify(v);
    case PayloadType::kDelete:
      return DecodeDelete(v);
    case PayloadType::kVendorId:
      return PayloadBody(VendorIdPayload{all()});
    case PayloadType::kTsi:
    case PayloadType::kTsr: {
      auto ts = DecodeTs(v);
      if (!ts) return ts.error();
      if (type == static_cast<uint8_t>(PayloadType::kTsi)) {
        return PayloadBody(TsiPayload{std::move(ts).value()});
      }
      return PayloadBody(TsrPayload{std::move(ts).value()});
    }
    case PayloadType::kSk:
      return PayloadBody(SkPayload{static_cast<PayloadType>(next), all()});
    case PayloadType::kSkf:
      return DecodeSkf(v, next);
    case PayloadType::kCp:
      return DecodeCp(v);
    case PayloadType::kEap:
      return PayloadBody(EapPayload{all()});
    default:
      return PayloadBody(UnknownPayload{type, all()});
  }
}

Result<std::vector<Payload>> DecodeChain(uint8_t first_type,
                                         std::span<const uint8_t> bytes,
                                         size_t base_offset, bool allow_sk) {
  std::vector<Payload> payloads;
  size_t pos = 0;
  uint8_t type = first_type;
  while (type != 0) {
    const auto name = [type] { return PayloadName(type); };
    if (bytes.size() - pos < kGenericPayloadHeaderSize) {
      return SyntaxError(base_offset + pos,
                         name() + " payload header needs 4 bytes, " +
                             std::to_string(bytes.size() - pos) + " left");
    }
    const uint8_t next = bytes[pos];
    const bool critical = (bytes[pos + 1] & kCriticalBit) != 0;
    const size_t length = ReadU16(bytes, pos + 2);
    if (length < kGenericPayloadHeaderSize || length > bytes.size() - pos) {
      return SyntaxError(base_offset + pos,
                         name() + " payload length " + std::to_string(length) +
                             " must be between 4 and the " +
                             std::to_string(bytes.size() - pos) + " bytes left");
    }
    const bool is_encrypted = type == static_cast<uint8_t>(PayloadType::kSk) ||
                              type == static_cast<uint8_t>(PayloadType::kSkf);
    if (is_encrypted && !allow_sk) {
      return SyntaxError(base_offset + pos,
                         name() + " payload inside an encrypted payload");
    }
    if (is_encrypted && pos + length != bytes.size()) {
      return SyntaxError(base_offset + pos,
                         name() + " payload must be the last payload, but " +
                             std::to_string(bytes.size() - pos - length) +
                             " bytes follow it");
    }
    if (!IsKnownPayloadType(type) && critical) {
      WireError error{NotifyType::kUnsupportedCriticalPayload, base_offset + pos,
                      type,
                      "payload type " + std::to_string(type) +
                          " is unknown and marked critical (at offset " +
                          std::to_string(base_offset + pos) + ")"};
      return error;
    }
    BodyView view{bytes.subspan(pos + kGenericPayloadHeaderSize,
                                length - kGenericPayloadHeaderSize),
                  base_offset + pos + kGenericPayloadHeaderSize, type};
    auto body = DecodeBody(type, next, view);
    if (!body) return body.error();
    payloads.push_back(Payload{std::move(body).value(), critical});
    pos += length;
    // The Next Payload of SK/SKF names the first inner payload, not a sibling.
    type = is_encrypted ? 0 : next;
  }
  if (pos != bytes.size()) {
    return SyntaxError(base_offset + pos,
                       std::to_string(bytes.size() - pos) +
                           " bytes after the last payload (Next Payload 0)");
  }
  return payloads;
}

// --- encoding ------------------------------------------------------------------

WireError EncodeError(const std::string& message) {
  return WireError{NotifyType::kInvalidSyntax, 0, 0, "cannot encode: " + message};
}

std::optional<WireError> EncodeSa(const SaPayload& sa, Bytes& out) {
  if (sa.proposals.empty()) return EncodeError("SA payload without proposals");
  for (size_t p = 0; p < sa.proposals.size(); ++p) {
    const Proposal& proposal = sa.proposals[p];
    if (proposal.spi.size() > 255 || proposal.transforms.size() > 255) {
      return EncodeError("proposal SPI or transform list too long");
    }
    const size_t start = out.size();
    PutU8(out, p + 1 == sa.proposals.size() ? 0 : kMoreProposals);
    PutU8(out, 0);
    PutU16(out, 0);  // length, patched below
    PutU8(out, proposal.number);
    PutU8(out, static_cast<uint8_t>(proposal.protocol));
    PutU8(out, static_cast<uint8_t>(proposal.spi.size()));
    PutU8(out, static_cast<uint8_t>(proposal.transforms.size()));
    PutBytes(out, proposal.spi);
    for (size_t t = 0; t < proposal.transforms.size(); ++t) {
      const Transform& transform = proposal.transforms[t];
      const size_t tstart = out.size();
      PutU8(out, t + 1 == proposal.transforms.size() ? 0 : kMoreTransforms);
      PutU8(out, 0);
      PutU16(out, 0);
      PutU8(out, static_cast<uint8_t>(transform.type));
      PutU8(out, 0);
      PutU16(out, transform.id);
      for (const TransformAttribute& attribute : transform.attributes) {
        if (attribute.type & kAttributeFormatTv) {
          return EncodeError("attribute type above 32767");
        }
        if (attribute.is_tv) {
          PutU16(out, attribute.type | kAttributeFormatTv);
          PutU16(out, attribute.tv_value);
        } else {
          if (attribute.tlv_value.size() > 0xffff) {
            return EncodeError("attribute value too long");
          }
          PutU16(out, attribute.type);
          PutU16(out, static_cast<uint16_t>(attribute.tlv_value.size()));
          PutBytes(out, attribute.tlv_value);
        }
      }
      if (out.size() - tstart > 0xffff) return EncodeError("transform too long");
      PatchU16(out, tstart + 2, static_cast<uint16_t>(out.size() - tstart));
    }
    if (out.size() - start > 0xffff) return EncodeError("proposal too long");
    PatchU16(out, start + 2, static_cast<uint16_t>(out.size() - start));
  }
  return std::nullopt;
}

std::optional<WireError> EncodeTs(const TsPayload& ts, Bytes& out) {
  if (ts.selectors.size() > 255) return EncodeError("more than 255 selectors");
  PutU8(out, static_cast<uint8_t>(ts.selectors.size()));
  PutU8(out, 0);
  PutU16(out, 0);
  for (const TrafficSelector& selector : ts.selectors) {
    size_t address_size = 0;
    if (selector.type == TsType::kIpv4AddrRange) address_size = 4;
    if (selector.type == TsType::kIpv6AddrRange) address_size = 16;
    PutU8(out, static_cast<uint8_t>(selector.type));
    PutU8(out, selector.ip_protocol);
    if (address_size == 0) {
      if (selector.start_address.size() > 0xffff - 4 || !selector.end_address.empty() ||
          selector.start_port != 0 || selector.end_port != 0) {
        return EncodeError("selector of unknown type must carry only an opaque body");
      }
      PutU16(out, static_cast<uint16_t>(4 + selector.start_address.size()));
      PutBytes(out, selector.start_address);
      continue;
    }
    if (selector.start_address.size() != address_size ||
        selector.end_address.size() != address_size) {
      return EncodeError("traffic selector addresses must be " +
                         std::to_string(address_size) + " bytes");
    }
    PutU16(out, static_cast<uint16_t>(8 + 2 * address_size));
    PutU16(out, selector.start_port);
    PutU16(out, selector.end_port);
    PutBytes(out, selector.start_address);
    PutBytes(out, selector.end_address);
  }
  return std::nullopt;
}

std::optional<WireError> EncodeId(const IdPayload& id, Bytes& out) {
  if ((id.type == IdType::kIpv4Addr && id.data.size() != 4) ||
      (id.type == IdType::kIpv6Addr && id.data.size() != 16)) {
    return EncodeError("ID address of the wrong size");
  }
  PutU8(out, static_cast<uint8_t>(id.type));
  PutU8(out, 0);
  PutU16(out, 0);
  PutBytes(out, id.data);
  return std::nullopt;
}

// Appends the body (without generic header) of `payload` to `out`.
std::optional<WireError> EncodeBody(const PayloadBody& body, Bytes& out) {
  struct Visitor {
    Bytes& out;
    std::optional<WireError> operator()(const SaPayload& p) { return EncodeSa(p, out); }
    std::optional<WireError> operator()(const KePayload& p) {
      PutU16(out, static_cast<uint16_t>(p.group));
      PutU16(out, 0);
      PutBytes(out, p.data);
      return std::nullopt;
    }
    std::optional<WireError> operator()(const IdiPayload& p) { return EncodeId(p, out); }
    std::optional<WireError> operator()(const IdrPayload& p) { return EncodeId(p, out); }
    std::optional<WireError> operator()(const CertPayload& p) {
      PutU8(out, static_cast<uint8_t>(p.encoding));
      PutBytes(out, p.data);
      return std::nullopt;
    }
    std::optional<WireError> operator()(const CertReqPayload& p) {
      PutU8(out, static_cast<uint8_t>(p.encoding));
      PutBytes(out, p.authority);
      return std::nullopt;
    }
    std::optional<WireError> operator()(const AuthPayload& p) {
      PutU8(out, static_cast<uint8_t>(p.method));
      PutU8(out, 0);
      PutU16(out, 0);
      PutBytes(out, p.data);
      return std::nullopt;
    }
    std::optional<WireError> operator()(const NoncePayload& p) {
      if (p.data.size() < kMinNonceSize || p.data.size() > kMaxNonceSize) {
        return EncodeError("nonce must be 16 to 256 bytes");
      }
      PutBytes(out, p.data);
      return std::nullopt;
    }
    std::optional<WireError> operator()(const NotifyPayload& p) {
      if (p.spi.size() > 255) return EncodeError("notify SPI too long");
      PutU8(out, p.protocol);
      PutU8(out, static_cast<uint8_t>(p.spi.size()));
      PutU16(out, static_cast<uint16_t>(p.type));
      PutBytes(out, p.spi);
      PutBytes(out, p.data);
      return std::nullopt;
    }
    std::optional<WireError> operator()(const DeletePayload& p) {
      if (p.spis.size() > 0xffff || (p.spi_size == 0 && !p.spis.empty())) {
        return EncodeError("delete SPI list does not fit its SPI size");
      }
      PutU8(out, static_cast<uint8_t>(p.protocol));
      PutU8(out, p.spi_size);
      PutU16(out, static_cast<uint16_t>(p.spis.size()));
      for (const Bytes& spi : p.spis) {
        if (spi.size() != p.spi_size) {
          return EncodeError("delete SPI of " + std::to_string(spi.size()) +
                             " bytes, SPI size is " + std::to_string(p.spi_size));
        }
        PutBytes(out, spi);
      }
      return std::nullopt;
    }
    std::optional<WireError> operator()(const VendorIdPayload& p) {
      PutBytes(out, p.data);
      return std::nullopt;
    }
    std::optional<WireError> operator()(const TsiPayload& p) { return EncodeTs(p, out); }
    std::optional<WireError> operator()(const TsrPayload& p) { return EncodeTs(p, out); }
    std::optional<WireError> operator()(const SkPayload& p) {
      PutBytes(out, p.body);
      return std::nullopt;
    }
    std::optional<WireError> operator()(const SkfPayload& p) {
      if (p.fragment_number == 0 || p.fragment_number > p.total_fragments) {
        return EncodeError("fragment number must be between 1 and the total");
      }
      PutU16(out, p.fragment_number);
      PutU16(out, p.total_fragments);
      PutBytes(out, p.body);
      return std::nullopt;
    }
    std::optional<WireError> operator()(const CpPayload& p) {
      PutU8(out, static_cast<uint8_t>(p.type));
      PutU8(out, 0);
      PutU16(out, 0);
      for (const ConfigAttribute& attribute : p.attributes) {
        if (attribute.type > 0x7fff || attribute.value.size() > 0xffff) {
          return EncodeError("configuration attribute out of range");
        }
        PutU16(out, attribute.type);
        PutU16(out, static_cast<uint16_t>(attribute.value.size()));
        PutBytes(out, attribute.value);
      }
      return std::nullopt;
    }
    std::optional<WireError> operator()(const EapPayload& p) {
      PutBytes(out, p.message);
      return std::nullopt;
    }
    std::optional<WireError> operator()(const UnknownPayload& p) {
      if (p.type == 0 || IsKnownPayloadType(p.type)) {
        return EncodeError("unknown payload with a known type code " +
                           std::to_string(p.type));
      }
      PutBytes(out, p.body);
      return std::nullopt;
    }
  };
  return std::visit(Visitor{out}, body);
}

uint8_t NextFieldOf(const Payload& payload, uint8_t next_sibling) {
  if (const auto* sk = std::get_if<SkPayload>(&payload.body)) {
    return static_cast<uint8_t>(sk->first_inner);
  }
  if (const auto* skf = std::get_if<SkfPayload>(&payload.body)) {
    return static_cast<uint8_t>(skf->first_inner);
  }
  return next_sibling;
}

}  // namespace

std::optional<uint16_t> Transform::KeyLength() const {
  for (const TransformAttribute& attribute : attributes) {
    if (attribute.type == kAttrKeyLength && attribute.is_tv) {
      return attribute.tv_value;
    }
  }
  return std::nullopt;
}

uint8_t Payload::TypeCode() const {
  struct Visitor {
    uint8_t operator()(const SaPayload&) { return code(PayloadType::kSa); }
    uint8_t operator()(const KePayload&) { return code(PayloadType::kKe); }
    uint8_t operator()(const IdiPayload&) { return code(PayloadType::kIdi); }
    uint8_t operator()(const IdrPayload&) { return code(PayloadType::kIdr); }
    uint8_t operator()(const CertPayload&) { return code(PayloadType::kCert); }
    uint8_t operator()(const CertReqPayload&) { return code(PayloadType::kCertReq); }
    uint8_t operator()(const AuthPayload&) { return code(PayloadType::kAuth); }
    uint8_t operator()(const NoncePayload&) { return code(PayloadType::kNonce); }
    uint8_t operator()(const NotifyPayload&) { return code(PayloadType::kNotify); }
    uint8_t operator()(const DeletePayload&) { return code(PayloadType::kDelete); }
    uint8_t operator()(const VendorIdPayload&) { return code(PayloadType::kVendorId); }
    uint8_t operator()(const TsiPayload&) { return code(PayloadType::kTsi); }
    uint8_t operator()(const TsrPayload&) { return code(PayloadType::kTsr); }
    uint8_t operator()(const SkPayload&) { return code(PayloadType::kSk); }
    uint8_t operator()(const SkfPayload&) { return code(PayloadType::kSkf); }
    uint8_t operator()(const CpPayload&) { return code(PayloadType::kCp); }
    uint8_t operator()(const EapPayload&) { return code(PayloadType::kEap); }
    uint8_t operator()(const UnknownPayload& p) { return p.type; }
    static uint8_t code(PayloadType t) { return static_cast<uint8_t>(t); }
  };
  return std::visit(Visitor{}, body);
}

Result<Header> DecodeHeader(std::span<const uint8_t> datagram) {
  if (datagram.size() < kHeaderSize) {
    return SyntaxError(0, "IKE header needs 28 bytes, message has " +
                              std::to_string(datagram.size()));
  }
  Header header;
  header.initiator_spi = ReadU64(datagram, 0);
  header.responder_spi = ReadU64(datagram, 8);
  header.first_payload = datagram[16];
  header.major_version = datagram[17] >> 4;
  header.minor_version = datagram[17] & 0x0f;
  header.exchange = static_cast<ExchangeType>(datagram[18]);
  header.flags = datagram[19];
  header.message_id = ReadU32(datagram, 20);
  header.length = ReadU32(datagram, 24);
  if (header.major_version != 2) {
    return WireError{NotifyType::kInvalidMajorVersion, 17, 0,
                     "IKE header: major version " +
                         std::to_string(header.major_version) +
                         ", only 2 is supported (at offset 17)"};
  }
  if (header.length != datagram.size()) {
    return SyntaxError(24, "IKE header: length field " +
                               std::to_string(header.length) +
                               " differs from the datagram's " +
                               std::to_string(datagram.size()) + " bytes");
  }
  return header;
}

Result<Message> DecodeMessage(std::span<const uint8_t> datagram) {
  auto header = DecodeHeader(datagram);
  if (!header) return header.error();
  auto payloads = DecodeChain(header->first_payload, datagram.subspan(kHeaderSize),
                              kHeaderSize, /*allow_sk=*/true);
  if (!payloads) return payloads.error();
  return Message{std::move(header).value(), std::move(payloads).value()};
}

Result<std::vector<Payload>> DecodePayloadChain(uint8_t first_type,
                                                std::span<const uint8_t> bytes,
                                                size_t base_offset) {
  return DecodeChain(first_type, bytes, base_offset, /*allow_sk=*/false);
}

Result<EncodedChain> EncodePayloadChain(const std::vector<Payload>& payloads) {
  EncodedChain chain;
  chain.first_type = payloads.empty() ? 0 : payloads.front().TypeCode();
  for (size_t i = 0; i < payloads.size(); ++i) {
    const Payload& payload = payloads[i];
    const bool is_last = i + 1 == payloads.size();
    const bool is_encrypted = std::holds_alternative<SkPayload>(payload.body) ||
                              std::holds_alternative<SkfPayload>(payload.body);
    if (is_encrypted && !is_last) {
      return EncodeError("SK/SKF payload must be the last payload");
    }
    const uint8_t next_sibling = is_last ? 0 : payloads[i + 1].TypeCode();
    const size_t start = chain.bytes.size();
    PutU8(chain.bytes, NextFieldOf(payload, next_sibling));
    PutU8(chain.bytes, payload.critical ? kCriticalBit : 0);
    PutU16(chain.bytes, 0);
    if (auto error = EncodeBody(payload.body, chain.bytes)) return *error;
    const size_t length = chain.bytes.size() - start;
    if (length > 0xffff) {
      return EncodeError(PayloadName(payload.TypeCode()) + " payload of " +
                         std::to_string(length) + " bytes exceeds 65535");
    }
    PatchU16(chain.bytes, start + 2, static_cast<uint16_t>(length));
  }
  return chain;
}

Result<Bytes> EncodeMessage(const Message& message) {
  auto chain = EncodePayloadChain(message.payloads);
  if (!chain) return chain.error();
  const Header& h = message.header;
  if (h.major_version > 0x0f || h.minor_version > 0x0f) {
    return EncodeError("version numbers are 4-bit fields");
  }
  const size_t total = kHeaderSize + chain->bytes.size();
  if (total > 0xffffffffu) return EncodeError("message too long");
  Bytes out;
  out.reserve(total);
  PutU64(out, h.initiator_spi);
  PutU64(out, h.responder_spi);
  PutU8(out, chain->first_type);
  PutU8(out, static_cast<uint8_t>((h.major_version << 4) | h.minor_version));
  PutU8(out, static_cast<uint8_t>(h.exchange));
  PutU8(out, h.flags);
  PutU32(out, h.message_id);
  PutU32(out, static_cast<uint32_t>(total));
  PutBytes(out, chain->bytes);
  return out;
}

Result<Bytes> EncodeIdPayloadBody(const IdPayload& id) {
  Bytes out;
  if (auto error = EncodeId(id, out)) return *error;
  return out;
}

Result<SkLocation> LocateSk(std::span<const uint8_t> datagram) {
  auto header = DecodeHeader(datagram);
  if (!header) return header.error();
  uint8_t type = header->first_payload;
  size_t pos = kHeaderSize;
  while (type != 0) {
    if (datagram.size() - pos < kGenericPayloadHeaderSize) {
      return SyntaxError(pos, PayloadName(type) + " payload header truncated");
    }
    const size_t length = ReadU16(datagram, pos + 2);
    if (length < kGenericPayloadHeaderSize || length > datagram.size() - pos) {
      return SyntaxError(pos, PayloadName(type) + " payload length " +
                                  std::to_string(length) + " out of bounds");
    }
    if (type == static_cast<uint8_t>(PayloadType::kSk) ||
        type == static_cast<uint8_t>(PayloadType::kSkf)) {
      SkLocation location;
      location.type = static_cast<PayloadType>(type);
      location.payload_offset = pos;
      location.first_inner = datagram[pos];
      size_t header_size = kGenericPayloadHeaderSize;
      if (location.type == PayloadType::kSkf) header_size += kSkfHeaderExtra;
      if (length < header_size) {
        return SyntaxError(pos, "SKF payload shorter than its 8-byte header");
      }
      location.body_offset = pos + header_size;
      location.body_length = length - header_size;
      return location;
    }
    type = datagram[pos];
    pos += length;
  }
  return SyntaxError(pos, "message has no SK or SKF payload");
}

}  // namespace ike::wire
