// Typed, value-semantic IKEv2 payloads (RFC 7296 section 3 and extensions).
// Reserved fields are not represented: they are sent as zero and ignored on
// receipt. Enum fields may hold values not named in constants.h (a peer may
// send any code point); names.h prints those as numbers.
#pragma once

#include <cstdint>
#include <optional>
#include <variant>
#include <vector>

#include "ike/wire/constants.h"

namespace ike::wire {

using Bytes = std::vector<uint8_t>;

// --- SA (3.3) ---------------------------------------------------------------

struct TransformAttribute {
  uint16_t type = 0;  // without the AF bit
  // TV format (AF=1) carries a 16-bit value; TLV format (AF=0) carries bytes.
  bool is_tv = true;
  uint16_t tv_value = 0;
  Bytes tlv_value;
  bool operator==(const TransformAttribute&) const = default;
};

struct Transform {
  TransformType type = TransformType::kEncr;
  uint16_t id = 0;
  std::vector<TransformAttribute> attributes;

  // The Key Length attribute (type 14, TV) if present.
  std::optional<uint16_t> KeyLength() const;
  bool operator==(const Transform&) const = default;
};

struct Proposal {
  uint8_t number = 1;
  ProtocolId protocol = ProtocolId::kIke;
  Bytes spi;  // empty for an IKE SA proposal in IKE_SA_INIT, else 4 or 8 bytes
  std::vector<Transform> transforms;
  bool operator==(const Proposal&) const = default;
};

struct SaPayload {
  std::vector<Proposal> proposals;
  bool operator==(const SaPayload&) const = default;
};

// --- KE, ID, CERT, CERTREQ, AUTH, Nonce --------------------------------------

struct KePayload {
  KeGroup group = KeGroup::kNone;
  Bytes data;
  bool operator==(const KePayload&) const = default;
};

struct IdPayload {
  IdType type = IdType::kNull;
  Bytes data;  // empty for ID_NULL (RFC 7619)
  bool operator==(const IdPayload&) const = default;
};
struct IdiPayload : IdPayload {
  bool operator==(const IdiPayload&) const = default;
};
struct IdrPayload : IdPayload {
  bool operator==(const IdrPayload&) const = default;
};

struct CertPayload {
  CertEncoding encoding = CertEncoding::kX509Signature;
  Bytes data;  // for kRawPublicKey: a DER SubjectPublicKeyInfo (RFC 7670)
  bool operator==(const CertPayload&) const = default;
};

struct CertReqPayload {
  CertEncoding encoding = CertEncoding::kX509Signature;
  Bytes authority;  // concatenated SHA-1 hashes of CA keys; may be empty
  bool operator==(const CertReqPayload&) const = default;
};

struct AuthPayload {
  AuthMethod method = AuthMethod::kSharedKeyMic;
  // For kDigitalSignature (RFC 7427) this holds the ASN.1 length octet, the
  // AlgorithmIdentifier and the signature, as on the wire.
  Bytes data;
  bool operator==(const AuthPayload&) const = default;
};

struct NoncePayload {
  Bytes data;  // 16..256 octets (RFC 7296 section 3.9)
  bool operator==(const NoncePayload&) const = default;
};

// --- Notify, Delete, Vendor ID -----------------------------------------------

struct NotifyPayload {
  // 0 when the notification does not concern a specific SA.
  uint8_t protocol = 0;
  NotifyType type = NotifyType::kInvalidSyntax;
  Bytes spi;
  Bytes data;
  bool operator==(const NotifyPayload&) const = default;
};

struct DeletePayload {
  ProtocolId protocol = ProtocolId::kIke;
  // 0 for IKE (the SA is named by the header), 4 for ESP/AH. Kept explicitly
  // because it is on the wire even when the SPI list is empty.
  uint8_t spi_size = 0;
  std::vector<Bytes> spis;  // each spi_size bytes long
  bool operator==(const DeletePayload&) const = default;
};

struct VendorIdPayload {
  Bytes data;
  bool operator==(const VendorIdPayload&) const = default;
};

// --- Traffic selectors (3.13) ------------------------------------------------

struct TrafficSelector {
  TsType type = TsType::kIpv4AddrRange;
  uint8_t ip_protocol = 0;  // 0 = any
  uint16_t start_port = 0;
  uint16_t end_port = 65535;
  // 4 bytes each for kIpv4AddrRange, 16 for kIpv6AddrRange. For TS types this
  // codec does not know, start_address holds the opaque rest of the selector
  // (after type, protocol and length), end_address is empty and ports are 0.
  Bytes start_address;
  Bytes end_address;
  bool operator==(const TrafficSelector&) const = default;
};

struct TsPayload {
  std::vector<TrafficSelector> selectors;
  bool operator==(const TsPayload&) const = default;
};
struct TsiPayload : TsPayload {
  bool operator==(const TsiPayload&) const = default;
};
struct TsrPayload : TsPayload {
  bool operator==(const TsrPayload&) const = default;
};

// --- Encrypted containers ----------------------------------------------------

// SK (3.14): kept opaque. The crypto layer decrypts `body` (IV, ciphertext,
// padding, pad length, ICV) and decodes the plaintext with DecodePayloadChain
// starting at `first_inner`.
struct SkPayload {
  PayloadType first_inner = PayloadType::kNone;
  Bytes body;
  bool operator==(const SkPayload&) const = default;
};

// SKF (RFC 7383 section 2.5). first_inner is 0 in all but the first fragment.
struct SkfPayload {
  PayloadType first_inner = PayloadType::kNone;
  uint16_t fragment_number = 1;  // 1-based
  uint16_t total_fragments = 1;
  Bytes body;
  bool operator==(const SkfPayload&) const = default;
};

// --- Configuration (3.15), EAP (3.16) ----------------------------------------

struct ConfigAttribute {
  uint16_t type = 0;  // 15 bits
  Bytes value;
  bool operator==(const ConfigAttribute&) const = default;
};

struct CpPayload {
  CfgType type = CfgType::kRequest;
  std::vector<ConfigAttribute> attributes;
  bool operator==(const CpPayload&) const = default;
};

struct EapPayload {
  Bytes message;  // a whole EAP message (RFC 3748), opaque here
  bool operator==(const EapPayload&) const = default;
};

// A payload type this codec does not know, received without the critical bit
// (RFC 7296 section 2.5: skip it). Kept so the chain can be printed.
struct UnknownPayload {
  uint8_t type = 0;
  Bytes body;
  bool operator==(const UnknownPayload&) const = default;
};

using PayloadBody =
    std::variant<SaPayload, KePayload, IdiPayload, IdrPayload, CertPayload,
                 CertReqPayload, AuthPayload, NoncePayload, NotifyPayload,
                 DeletePayload, VendorIdPayload, TsiPayload, TsrPayload,
                 SkPayload, SkfPayload, CpPayload, EapPayload, UnknownPayload>;

struct Payload {
  PayloadBody body;
  // The critical bit as received / to send. RFC 7296 sets it only for
  // payloads the receiver must understand; known types ignore it on receipt.
  bool critical = false;

  // The Next Payload code that names this payload (from the body alternative).
  uint8_t TypeCode() const;
  bool operator==(const Payload&) const = default;
};

// Helpers so call sites read naturally: Payload p = MakePayload(NoncePayload{...}).
template <class Body>
Payload MakePayload(Body body, bool critical = false) {
  return Payload{PayloadBody(std::move(body)), critical};
}

template <class Body>
const Body* FindFirst(const std::vector<Payload>& payloads) {
  for (const Payload& payload : payloads) {
    if (const Body* body = std::get_if<Body>(&payload.body)) return body;
  }
  return nullptr;
}

}  // namespace ike::wire
