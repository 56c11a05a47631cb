// IKEv2 message codec (RFC 7296 section 3): header, payload chains, and the
// location of the SK/SKF payload for the crypto layer.
//
// Decoding is strict: every length field is checked against the bytes that
// are really there before anything is read or allocated, and every error is a
// WireError carrying the notify a responder would answer with. Nothing here
// throws, performs I/O, or does cryptography.
//
// Typical use on receipt:
//   Result<Message> msg = DecodeMessage(datagram);
//   if (!msg) { reply_with(msg.error().notify); ... }
//   if (const SkPayload* sk = FindFirst<SkPayload>(msg->payloads)) {
//     Result<SkLocation> where = LocateSk(datagram);   // AAD and body offsets
//     ... decrypt ..., then DecodePayloadChain(sk->first_inner, plaintext);
//   }
//
// On sending an encrypted message: encode the inner payloads with
// EncodePayloadChain, encrypt them, build a Message whose last payload is an
// SkPayload with a body of the final size (IV + ciphertext + ICV), encode it
// with EncodeMessage, then use LocateSk on the result to compute the ICV over
// the AAD and write it into place (the lengths in the AAD are then final).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "ike/wire/constants.h"
#include "ike/wire/payloads.h"
#include "ike/wire/result.h"

namespace ike::wire {

inline constexpr size_t kHeaderSize = 28;
inline constexpr size_t kGenericPayloadHeaderSize = 4;
// The UDP 4500 non-ESP marker (RFC 3948) that precedes IKE messages.
inline constexpr size_t kNonEspMarkerSize = 4;

struct Header {
  uint64_t initiator_spi = 0;
  uint64_t responder_spi = 0;
  // Next Payload of the header. Filled in by the decoder; EncodeMessage
  // derives it from the payload list and ignores this field.
  uint8_t first_payload = 0;
  uint8_t major_version = 2;
  uint8_t minor_version = 0;
  ExchangeType exchange = ExchangeType::kIkeSaInit;
  uint8_t flags = 0;  // header_flags::k*
  uint32_t message_id = 0;
  // Length field as received; EncodeMessage computes it.
  uint32_t length = 0;

  bool IsInitiator() const { return flags & header_flags::kInitiator; }
  bool IsResponse() const { return flags & header_flags::kResponse; }
  bool operator==(const Header&) const = default;
};

struct Message {
  Header header;
  std::vector<Payload> payloads;
  bool operator==(const Message&) const = default;
};

// Decodes only the fixed header, checking the version and that the length
// field equals datagram.size(). Enough for dispatching by SPI.
Result<Header> DecodeHeader(std::span<const uint8_t> datagram);

// Decodes a whole IKE message (without the non-ESP marker). Payloads after an
// SK or SKF payload are impossible (the SK payload must be last and its Next
// Payload names the first inner payload).
Result<Message> DecodeMessage(std::span<const uint8_t> datagram);

// Decodes a chain of payloads that fills `bytes` exactly, the first one being
// of type `first_type` (e.g. the decrypted content of an SK payload).
// `base_offset` is added to the offsets reported in errors.
Result<std::vector<Payload>> DecodePayloadChain(uint8_t first_type,
                                                std::span<const uint8_t> bytes,
                                                size_t base_offset = 0);
inline Result<std::vector<Payload>> DecodePayloadChain(
    PayloadType first_type, std::span<const uint8_t> bytes,
    size_t base_offset = 0) {
  return DecodePayloadChain(static_cast<uint8_t>(first_type), bytes,
                            base_offset);
}

struct EncodedChain {
  uint8_t first_type = 0;  // 0 for an empty chain
  Bytes bytes;
};

// Encodes payloads with Next Payload linking and all length fields. Fails
// (INVALID_SYNTAX) when a value cannot be represented, e.g. a payload longer
// than 65535 bytes or an address of the wrong size. An SK/SKF payload must be
// the last one.
Result<EncodedChain> EncodePayloadChain(const std::vector<Payload>& payloads);

// Encodes header and payloads; first_payload and length are computed.
Result<Bytes> EncodeMessage(const Message& message);

// The body of an ID payload without its generic header (ID Type, three zero
// reserved octets, identification data): the RestOfInitIDPayload /
// RestOfRespIDPayload that RFC 7296 section 2.15 feeds into the AUTH
// computation as IDi' / IDr'.
Result<Bytes> EncodeIdPayloadBody(const IdPayload& id);

// Where the SK (or SKF) payload lies in an encoded message. For AEAD ciphers
// (RFC 5282) the associated data is message[0, body_offset): the IKE header
// through the end of the SK payload header (for SKF including the fragment
// number and total fields, RFC 7383 section 2.5).
struct SkLocation {
  PayloadType type = PayloadType::kSk;   // kSk or kSkf
  size_t payload_offset = 0;             // start of the generic payload header
  size_t body_offset = 0;                // start of the IV
  size_t body_length = 0;                // IV + ciphertext + padding + ICV
  uint8_t first_inner = 0;
};

// Walks the (already length-checked) chain of `datagram` to its SK/SKF
// payload. Errors if the message is malformed or has no SK/SKF payload.
Result<SkLocation> LocateSk(std::span<const uint8_t> datagram);

}  // namespace ike::wire
