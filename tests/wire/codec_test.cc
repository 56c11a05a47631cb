// Round-trip and malformed-input tests for the IKEv2 codec.
#include <set>
#include <string>

#include <gtest/gtest.h>

#include "ike/wire/message.h"
#include "ike/wire/names.h"
#include "tests/wire/corpus.h"

namespace ike::wire {
namespace {

using testing::BuildCorpus;
using testing::CorpusEntry;
using testing::Pattern;

Bytes MustEncode(const Message& message) {
  auto encoded = EncodeMessage(message);
  EXPECT_TRUE(encoded.ok()) << (encoded.ok() ? "" : encoded.error().message);
  return encoded.ok() ? encoded.value() : Bytes{};
}

Message WithPayloads(std::vector<Payload> payloads) {
  Message message;
  message.header.initiator_spi = 0xaabbccddeeff0011ull;
  message.header.exchange = ExchangeType::kIkeAuth;
  message.header.message_id = 7;
  message.payloads = std::move(payloads);
  return message;
}

void SetU16(Bytes& bytes, size_t at, uint16_t value) {
  bytes[at] = static_cast<uint8_t>(value >> 8);
  bytes[at + 1] = static_cast<uint8_t>(value);
}

void SetMessageLength(Bytes& bytes) {
  const uint32_t length = static_cast<uint32_t>(bytes.size());
  SetU16(bytes, 24, static_cast<uint16_t>(length >> 16));
  SetU16(bytes, 26, static_cast<uint16_t>(length));
}

WireError MustFail(const Bytes& bytes) {
  auto decoded = DecodeMessage(bytes);
  EXPECT_FALSE(decoded.ok());
  return decoded.ok() ? WireError{} : decoded.error();
}

// --- round trips ---------------------------------------------------------------

TEST(CodecRoundTrip, EveryCorpusMessageDecodesToWhatWasEncoded) {
  for (const CorpusEntry& entry : BuildCorpus()) {
    SCOPED_TRACE(entry.name);
    const Bytes bytes = MustEncode(entry.message);
    auto decoded = DecodeMessage(bytes);
    ASSERT_TRUE(decoded.ok()) << decoded.error().message;
    EXPECT_EQ(decoded->payloads, entry.message.payloads);
    EXPECT_EQ(decoded->header.initiator_spi, entry.message.header.initiator_spi);
    EXPECT_EQ(decoded->header.responder_spi, entry.message.header.responder_spi);
    EXPECT_EQ(decoded->header.exchange, entry.message.header.exchange);
    EXPECT_EQ(decoded->header.flags, entry.message.header.flags);
    EXPECT_EQ(decoded->header.message_id, entry.message.header.message_id);
    EXPECT_EQ(decoded->header.length, bytes.size());
    EXPECT_EQ(decoded->header.first_payload, entry.message.payloads[0].TypeCode());
    EXPECT_EQ(MustEncode(decoded.value()), bytes);
  }
}

TEST(CodecRoundTrip, CorpusCoversEveryKnownPayloadType) {
  std::set<uint8_t> seen;
  for (const CorpusEntry& entry : BuildCorpus()) {
    for (const Payload& payload : entry.message.payloads) seen.insert(payload.TypeCode());
  }
  for (PayloadType type :
       {PayloadType::kSa, PayloadType::kKe, PayloadType::kIdi, PayloadType::kIdr,
        PayloadType::kCert, PayloadType::kCertReq, PayloadType::kAuth,
        PayloadType::kNonce, PayloadType::kNotify, PayloadType::kDelete,
        PayloadType::kVendorId, PayloadType::kTsi, PayloadType::kTsr,
        PayloadType::kSk, PayloadType::kCp, PayloadType::kEap, PayloadType::kSkf}) {
    EXPECT_TRUE(seen.count(static_cast<uint8_t>(type))) << PayloadName(static_cast<uint8_t>(type));
  }
}

TEST(CodecRoundTrip, HeaderBytesFollowRfc7296Layout) {
  Message message = WithPayloads({MakePayload(NoncePayload{Pattern(16, 0)})});
  message.header.responder_spi = 0x0102030405060708ull;
  message.header.flags = header_flags::kInitiator;
  const Bytes bytes = MustEncode(message);
  ASSERT_EQ(bytes.size(), 28u + 4 + 16);
  const Bytes expected_header = {0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff, 0x00, 0x11,
                                 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,
                                 40,   0x20, 35,   0x08, 0,    0,    0,    7,
                                 0,    0,    0,    48};
  EXPECT_EQ(Bytes(bytes.begin(), bytes.begin() + 28), expected_header);
  // Nonce generic header: next 0, not critical, length 20.
  EXPECT_EQ(Bytes(bytes.begin() + 28, bytes.begin() + 32), (Bytes{0, 0, 0, 20}));
}

TEST(CodecRoundTrip, TransformKeyLengthIsATvAttribute) {
  Proposal proposal{1, ProtocolId::kIke, {}, {}};
  proposal.transforms.push_back(
      {TransformType::kEncr, 12, {{kAttrKeyLength, true, 256, {}}}});
  const Bytes bytes = MustEncode(WithPayloads({MakePayload(SaPayload{{proposal}})}));
  // SA header(4) + proposal header(8) + transform header(8) + attribute(4).
  const Bytes expected = {0,    0, 0, 24,            // generic header
                          0,    0, 0, 20, 1, 1, 0, 1,  // last proposal, len 20, IKE, 1 transform
                          0,    0, 0, 12, 1, 0, 0, 12,  // last transform, len 12, ENCR AES_CBC
                          0x80, 14, 0x01, 0x00};        // AF=1, type 14, 256
  EXPECT_EQ(Bytes(bytes.begin() + 28, bytes.end()), expected);
  auto decoded = DecodeMessage(bytes);
  ASSERT_TRUE(decoded.ok());
  const auto* sa = FindFirst<SaPayload>(decoded->payloads);
  ASSERT_NE(sa, nullptr);
  EXPECT_EQ(sa->proposals[0].transforms[0].KeyLength(), 256);
}

// Body bytes (after the 28-byte header) of a one-payload message.
Bytes BodyOf(Payload payload) {
  const Bytes bytes = MustEncode(WithPayloads({std::move(payload)}));
  return Bytes(bytes.begin() + kHeaderSize, bytes.end());
}

TEST(CodecLayout, PayloadBodiesFollowTheRfcFigures) {
  // RFC 7296 3.10: protocol, SPI size, type, SPI, data.
  EXPECT_EQ(BodyOf(MakePayload(NotifyPayload{3, NotifyType::kRekeySa, {0xa, 0xb, 0xc, 0xd}, {0xee}})),
            (Bytes{0, 0, 0, 13, 3, 4, 0x40, 0x09, 0xa, 0xb, 0xc, 0xd, 0xee}));
  // RFC 7296 3.11: protocol, SPI size, number of SPIs, SPIs.
  EXPECT_EQ(BodyOf(MakePayload(DeletePayload{ProtocolId::kEsp, 4, {{1, 2, 3, 4}}})),
            (Bytes{0, 0, 0, 12, 3, 4, 0, 1, 1, 2, 3, 4}));
  // RFC 7296 3.13.1: type 7, protocol, length 16, ports, addresses.
  EXPECT_EQ(BodyOf(MakePayload(TsrPayload{{{{TsType::kIpv4AddrRange, 6, 22, 80, {10, 0, 0, 1}, {10, 0, 0, 9}}}}})),
            (Bytes{0, 0, 0, 24, 1, 0, 0, 0, 7, 6, 0, 16, 0, 22, 0, 80, 10, 0, 0, 1, 10, 0, 0, 9}));
  // RFC 7383 2.5: fragment number and total before the IV; Next Payload is
  // the first inner payload.
  EXPECT_EQ(BodyOf(MakePayload(SkfPayload{PayloadType::kIdi, 1, 3, {0x99}})),
            (Bytes{35, 0, 0, 9, 0, 1, 0, 3, 0x99}));
  // RFC 7296 3.15: CFG type, reserved, then attributes (R bit, type, length).
  EXPECT_EQ(BodyOf(MakePayload(CpPayload{CfgType::kReply, {{1, {10, 0, 0, 5}}}})),
            (Bytes{0, 0, 0, 16, 2, 0, 0, 0, 0, 1, 0, 4, 10, 0, 0, 5}));
  // RFC 7296 3.4 and 3.5: KE group and reserved; ID type and reserved.
  EXPECT_EQ(BodyOf(MakePayload(KePayload{KeGroup::kCurve25519, {7}})), (Bytes{0, 0, 0, 9, 0, 31, 0, 0, 7}));
  EXPECT_EQ(BodyOf(MakePayload(IdrPayload{{IdType::kFqdn, {'a'}}})), (Bytes{0, 0, 0, 9, 2, 0, 0, 0, 'a'}));
  // RFC 7670: CERT with encoding 15 carries the SubjectPublicKeyInfo as is.
  EXPECT_EQ(BodyOf(MakePayload(CertPayload{CertEncoding::kRawPublicKey, {0x30, 0}})),
            (Bytes{0, 0, 0, 7, 15, 0x30, 0}));
}

TEST(CodecRoundTrip, TlvAttributeAndProposalSpiRoundTrip) {
  Proposal proposal{3, ProtocolId::kEsp, {1, 2, 3, 4}, {}};
  proposal.transforms.push_back({TransformType::kEncr, 20, {{200, false, 0, {9, 8, 7}}}});
  proposal.transforms.push_back({TransformType::kEsn, 0, {}});
  Message message = WithPayloads({MakePayload(SaPayload{{proposal, proposal}})});
  auto decoded = DecodeMessage(MustEncode(message));
  ASSERT_TRUE(decoded.ok()) << decoded.error().message;
  EXPECT_EQ(decoded->payloads, message.payloads);
  EXPECT_FALSE(std::get<SaPayload>(decoded->payloads[0].body)
                   .proposals[0].transforms[0].KeyLength().has_value());
}

TEST(CodecRoundTrip, IdNullAndRawPublicKeyCertificate) {
  Message message = WithPayloads(
      {MakePayload(IdiPayload{{IdType::kNull, {}}}),
       MakePayload(CertPayload{CertEncoding::kRawPublicKey, Pattern(44, 3)}),
       MakePayload(AuthPayload{AuthMethod::kNull, Pattern(32, 1)})});
  const Bytes bytes = MustEncode(message);
  // IDi: type 13 then three reserved bytes and no data.
  EXPECT_EQ(Bytes(bytes.begin() + 28, bytes.begin() + 36),
            (Bytes{37, 0, 0, 8, 13, 0, 0, 0}));
  auto decoded = DecodeMessage(bytes);
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(decoded->payloads, message.payloads);
}

TEST(CodecRoundTrip, UnknownTrafficSelectorTypeIsKeptOpaque) {
  TrafficSelector fc{static_cast<TsType>(9), 4, 0, 0, {1, 2, 3, 4, 5, 6}, {}};
  Message message = WithPayloads({MakePayload(TsiPayload{{{fc}}})});
  auto decoded = DecodeMessage(MustEncode(message));
  ASSERT_TRUE(decoded.ok()) << decoded.error().message;
  EXPECT_EQ(decoded->payloads, message.payloads);
}

TEST(CodecRoundTrip, CriticalBitOfKnownPayloadIsKept) {
  Message message = WithPayloads({MakePayload(VendorIdPayload{{1, 2}}, true)});
  const Bytes bytes = MustEncode(message);
  EXPECT_EQ(bytes[29], 0x80);
  auto decoded = DecodeMessage(bytes);
  ASSERT_TRUE(decoded.ok());
  EXPECT_TRUE(decoded->payloads[0].critical);
}

TEST(CodecRoundTrip, PayloadChainAfterDecryption) {
  std::vector<Payload> inner = {
      MakePayload(IdiPayload{{IdType::kRfc822Addr, {'a', '@', 'b'}}}),
      MakePayload(AuthPayload{AuthMethod::kSharedKeyMic, Pattern(32, 9)}),
      MakePayload(TsiPayload{{{{TsType::kIpv4AddrRange, 0, 0, 65535, {10, 0, 0, 1}, {10, 0, 0, 1}}}}})};
  auto chain = EncodePayloadChain(inner);
  ASSERT_TRUE(chain.ok());
  EXPECT_EQ(chain->first_type, static_cast<uint8_t>(PayloadType::kIdi));
  auto decoded = DecodePayloadChain(PayloadType::kIdi, chain->bytes);
  ASSERT_TRUE(decoded.ok()) << decoded.error().message;
  EXPECT_EQ(decoded.value(), inner);
  // Wrong first type: the bytes are then read as an AUTH payload whose next
  // field says AUTH, which fails further on.
  EXPECT_FALSE(DecodePayloadChain(PayloadType::kNonce, chain->bytes).ok());
  // Empty chain.
  auto empty = DecodePayloadChain(PayloadType::kNone, {});
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->empty());
}

TEST(CodecRoundTrip, EncryptedPayloadIsRejectedInsideAnEncryptedChain) {
  auto chain = EncodePayloadChain({MakePayload(SkPayload{PayloadType::kIdi, Pattern(8, 0)})});
  ASSERT_TRUE(chain.ok());
  auto decoded = DecodePayloadChain(PayloadType::kSk, chain->bytes, 100);
  ASSERT_FALSE(decoded.ok());
  EXPECT_EQ(decoded.error().offset, 100u);
}

TEST(CodecLayout, IdPayloadBodyForAuthComputation) {
  auto body = EncodeIdPayloadBody(IdPayload{IdType::kFqdn, {'g', 'w'}});
  ASSERT_TRUE(body.ok());
  EXPECT_EQ(body.value(), (Bytes{2, 0, 0, 0, 'g', 'w'}));
  // It is exactly the IDi payload minus its generic header.
  const Bytes message = MustEncode(WithPayloads({MakePayload(IdiPayload{{IdType::kFqdn, {'g', 'w'}}})}));
  EXPECT_EQ(Bytes(message.begin() + kHeaderSize + 4, message.end()), body.value());
  EXPECT_FALSE(EncodeIdPayloadBody(IdPayload{IdType::kIpv4Addr, {1, 2, 3}}).ok());
}

// --- SK location -------------------------------------------------------------

TEST(LocateSk, GivesAadAndBodyOfSk) {
  Message message = WithPayloads({MakePayload(NotifyPayload{0, NotifyType::kInitialContact, {}, {}}),
                                  MakePayload(SkPayload{PayloadType::kIdi, Pattern(50, 7)})});
  const Bytes bytes = MustEncode(message);
  auto location = LocateSk(bytes);
  ASSERT_TRUE(location.ok()) << location.error().message;
  EXPECT_EQ(location->type, PayloadType::kSk);
  EXPECT_EQ(location->payload_offset, 28u + 8);
  EXPECT_EQ(location->body_offset, 28u + 8 + 4);
  EXPECT_EQ(location->body_length, 50u);
  EXPECT_EQ(location->first_inner, static_cast<uint8_t>(PayloadType::kIdi));
  EXPECT_EQ(Bytes(bytes.begin() + location->body_offset, bytes.end()), Pattern(50, 7));
}

TEST(LocateSk, SkfAadIncludesFragmentFields) {
  const Bytes bytes = MustEncode(WithPayloads({MakePayload(SkfPayload{PayloadType::kNone, 2, 3, Pattern(20, 1)})}));
  auto location = LocateSk(bytes);
  ASSERT_TRUE(location.ok());
  EXPECT_EQ(location->type, PayloadType::kSkf);
  EXPECT_EQ(location->body_offset, 28u + 8);
  EXPECT_EQ(location->body_length, 20u);
}

TEST(LocateSk, FailsWithoutSk) {
  const Bytes bytes = MustEncode(WithPayloads({MakePayload(NoncePayload{Pattern(16, 0)})}));
  EXPECT_FALSE(LocateSk(bytes).ok());
}

// --- malformed input -------------------------------------------------------------

TEST(CodecMalformed, EveryTruncationFailsEvenWithAMatchingLengthField) {
  for (const CorpusEntry& entry : BuildCorpus()) {
    SCOPED_TRACE(entry.name);
    const Bytes full = MustEncode(entry.message);
    for (size_t cut = 0; cut < full.size(); ++cut) {
      Bytes prefix(full.begin(), full.begin() + cut);
      EXPECT_FALSE(DecodeMessage(prefix).ok()) << "cut at " << cut;
      if (cut >= kHeaderSize) {
        SetMessageLength(prefix);
        auto decoded = DecodeMessage(prefix);
        EXPECT_FALSE(decoded.ok()) << "cut at " << cut;
        if (!decoded.ok()) {
          EXPECT_EQ(decoded.error().notify, NotifyType::kInvalidSyntax);
          EXPECT_LE(decoded.error().offset, cut);
        }
      }
    }
  }
}

TEST(CodecMalformed, EveryTruncatedChainFails) {
  for (const CorpusEntry& entry : BuildCorpus()) {
    SCOPED_TRACE(entry.name);
    auto chain = EncodePayloadChain(entry.message.payloads);
    ASSERT_TRUE(chain.ok());
    for (size_t cut = 0; cut < chain->bytes.size(); ++cut) {
      std::span<const uint8_t> prefix(chain->bytes.data(), cut);
      EXPECT_FALSE(DecodePayloadChain(chain->first_type, prefix).ok()) << "cut at " << cut;
    }
  }
}

TEST(CodecMalformed, LengthFieldMustEqualDatagramSize) {
  Bytes bytes = MustEncode(WithPayloads({MakePayload(NoncePayload{Pattern(16, 0)})}));
  bytes.push_back(0);
  WireError error = MustFail(bytes);
  EXPECT_EQ(error.notify, NotifyType::kInvalidSyntax);
  EXPECT_EQ(error.offset, 24u);
  EXPECT_NE(error.message.find("length field 48"), std::string::npos) << error.message;
}

TEST(CodecMalformed, TrailingBytesAfterLastPayload) {
  Bytes bytes = MustEncode(WithPayloads({MakePayload(NoncePayload{Pattern(16, 0)})}));
  bytes.insert(bytes.end(), {0, 0, 0, 4});
  SetMessageLength(bytes);
  EXPECT_EQ(MustFail(bytes).offset, 48u);
}

TEST(CodecMalformed, WrongMajorVersion) {
  Bytes bytes = MustEncode(WithPayloads({MakePayload(NoncePayload{Pattern(16, 0)})}));
  bytes[17] = 0x30;
  EXPECT_EQ(MustFail(bytes).notify, NotifyType::kInvalidMajorVersion);
  bytes[17] = 0x10;  // IKEv1
  EXPECT_EQ(MustFail(bytes).notify, NotifyType::kInvalidMajorVersion);
  bytes[17] = 0x21;  // a higher minor version is accepted (RFC 7296 2.5)
  EXPECT_TRUE(DecodeMessage(bytes).ok());
}

TEST(CodecMalformed, PayloadLengthBelowFourOrBeyondMessage) {
  const Bytes good = MustEncode(WithPayloads({MakePayload(VendorIdPayload{{1, 2, 3}}),
                                              MakePayload(NoncePayload{Pattern(16, 0)})}));
  for (uint16_t bad : {0, 1, 3, 0xffff}) {
    Bytes bytes = good;
    SetU16(bytes, 30, bad);
    WireError error = MustFail(bytes);
    EXPECT_EQ(error.notify, NotifyType::kInvalidSyntax);
    EXPECT_EQ(error.offset, 28u);
    EXPECT_NE(error.message.find("VendorID payload length"), std::string::npos) << error.message;
  }
}

TEST(CodecMalformed, UnknownCriticalPayloadRejectsMessage) {
  Bytes bytes = MustEncode(WithPayloads({MakePayload(UnknownPayload{60, {1, 2}}),
                                         MakePayload(NoncePayload{Pattern(16, 0)})}));
  auto decoded = DecodeMessage(bytes);
  ASSERT_TRUE(decoded.ok());
  ASSERT_EQ(decoded->payloads.size(), 2u);
  EXPECT_EQ(std::get<UnknownPayload>(decoded->payloads[0].body).body, (Bytes{1, 2}));
  bytes[29] = 0x80;
  WireError error = MustFail(bytes);
  EXPECT_EQ(error.notify, NotifyType::kUnsupportedCriticalPayload);
  EXPECT_EQ(error.unsupported_payload_type, 60);
  EXPECT_EQ(error.offset, 28u);
}

TEST(CodecMalformed, SkMustBeLast) {
  Bytes bytes = MustEncode(WithPayloads({MakePayload(SkPayload{PayloadType::kIdi, Pattern(8, 0)})}));
  bytes.insert(bytes.end(), {0, 0, 0, 4});
  SetMessageLength(bytes);
  EXPECT_NE(MustFail(bytes).message.find("SK payload must be the last"), std::string::npos);
  EXPECT_FALSE(EncodeMessage(WithPayloads({MakePayload(SkPayload{}),
                                           MakePayload(VendorIdPayload{})}))
                   .ok());
}

// Builds a message with one SA payload and returns it with the offset of the
// SA body (first proposal header).
Bytes SaMessage(size_t& proposal_offset) {
  Proposal proposal{1, ProtocolId::kIke, {}, {}};
  proposal.transforms = {{TransformType::kEncr, 20, {{kAttrKeyLength, true, 128, {}}}},
                         {TransformType::kPrf, 5, {}}};
  proposal_offset = 32;
  return MustEncode(WithPayloads({MakePayload(SaPayload{{proposal, proposal}})}));
}

TEST(CodecMalformed, TransformCountTooHighOrTooLow) {
  size_t at = 0;
  Bytes bytes = SaMessage(at);
  bytes[at + 7] = 3;
  EXPECT_NE(MustFail(bytes).message.find("proposal #1 transform #2 Last Substruc is 0, expected 3"), std::string::npos);
  bytes[at + 8 + 12] = 3;  // transform #2 now claims a successor that is not there
  EXPECT_NE(MustFail(bytes).message.find("proposal #1 transform #3 header needs 8 bytes"), std::string::npos);
  bytes[at + 7] = 1;
  EXPECT_NE(MustFail(bytes).message.find("Last Substruc"), std::string::npos);
}

TEST(CodecMalformed, ProposalLengthAndLastFlag) {
  size_t at = 0;
  const Bytes good = SaMessage(at);
  Bytes bytes = good;
  SetU16(bytes, at + 2, 7);
  EXPECT_EQ(MustFail(bytes).offset, at);
  bytes = good;
  bytes[at] = 0;  // first of two proposals claims to be the last
  EXPECT_NE(MustFail(bytes).message.find("proposal #1 Last Substruc is 0"), std::string::npos);
  bytes = good;
  bytes[at + 6] = 200;  // SPI size larger than the proposal
  EXPECT_EQ(MustFail(bytes).notify, NotifyType::kInvalidSyntax);
}

TEST(CodecMalformed, TransformAndAttributeLengths) {
  size_t at = 0;
  const Bytes good = SaMessage(at);
  const size_t transform = at + 8;
  Bytes bytes = good;
  SetU16(bytes, transform + 2, 7);
  EXPECT_EQ(MustFail(bytes).offset, transform);
  bytes = good;
  bytes[transform + 8] = 0x00;  // attribute becomes TLV with length 128
  EXPECT_NE(MustFail(bytes).message.find("attribute 14 length 128"), std::string::npos);
}

TEST(CodecMalformed, TrafficSelectorCountsAndLengths) {
  TsiPayload ts{{{{TsType::kIpv4AddrRange, 0, 0, 65535, {1, 2, 3, 4}, {1, 2, 3, 5}}}}};
  const Bytes good = MustEncode(WithPayloads({MakePayload(ts)}));
  const size_t body = 32;
  Bytes bytes = good;
  bytes[body] = 2;  // announces two selectors, has one
  EXPECT_NE(MustFail(bytes).message.find("traffic selector #2"), std::string::npos);
  bytes = good;
  bytes[body] = 0;  // announces none, has one
  EXPECT_NE(MustFail(bytes).message.find("after the 0 traffic selectors"), std::string::npos);
  bytes = good;
  bytes[body + 4] = 8;  // IPv6 type with IPv4 length
  EXPECT_NE(MustFail(bytes).message.find("must be 40 bytes"), std::string::npos);
}

TEST(CodecMalformed, DeleteSpiCount) {
  const Bytes good = MustEncode(WithPayloads(
      {MakePayload(DeletePayload{ProtocolId::kEsp, 4, {{1, 2, 3, 4}}})}));
  Bytes bytes = good;
  SetU16(bytes, 34, 2);
  EXPECT_EQ(MustFail(bytes).offset, 34u);
  bytes = good;
  bytes[33] = 0;  // SPI size 0 with one SPI
  EXPECT_EQ(MustFail(bytes).notify, NotifyType::kInvalidSyntax);
}

TEST(CodecMalformed, NotifySpiSizeBeyondPayload) {
  Bytes bytes = MustEncode(WithPayloads({MakePayload(NotifyPayload{3, NotifyType::kRekeySa, {1, 2, 3, 4}, {}})}));
  bytes[33] = 5;
  EXPECT_NE(MustFail(bytes).message.find("Notify payload: SPI size 5"), std::string::npos);
}

TEST(CodecMalformed, NonceSizeLimits) {
  EXPECT_FALSE(EncodeMessage(WithPayloads({MakePayload(NoncePayload{Pattern(15, 0)})})).ok());
  EXPECT_FALSE(EncodeMessage(WithPayloads({MakePayload(NoncePayload{Pattern(257, 0)})})).ok());
  Bytes bytes = MustEncode(WithPayloads({MakePayload(VendorIdPayload{Pattern(15, 0)})}));
  bytes[16] = 40;  // relabel the 15-byte Vendor ID as a nonce
  EXPECT_NE(MustFail(bytes).message.find("16 to 256"), std::string::npos);
}

TEST(CodecMalformed, FragmentNumbers) {
  Bytes bytes = MustEncode(WithPayloads({MakePayload(SkfPayload{PayloadType::kIdi, 1, 2, Pattern(8, 0)})}));
  SetU16(bytes, 32, 0);
  EXPECT_FALSE(DecodeMessage(bytes).ok());
  SetU16(bytes, 32, 3);
  EXPECT_NE(MustFail(bytes).message.find("fragment number 3"), std::string::npos);
  EXPECT_FALSE(EncodeMessage(WithPayloads({MakePayload(SkfPayload{PayloadType::kIdi, 0, 2, {}})})).ok());
}

TEST(CodecMalformed, IdAddressSizes) {
  Bytes bytes = MustEncode(WithPayloads({MakePayload(IdiPayload{{IdType::kFqdn, {1, 2, 3}}})}));
  bytes[32] = static_cast<uint8_t>(IdType::kIpv4Addr);
  EXPECT_NE(MustFail(bytes).message.find("ID_IPV4_ADDR"), std::string::npos);
  EXPECT_FALSE(EncodeMessage(WithPayloads({MakePayload(IdrPayload{{IdType::kIpv6Addr, {1}}})})).ok());
}

TEST(CodecMalformed, ConfigurationAttributeOverrun) {
  Bytes bytes = MustEncode(WithPayloads({MakePayload(CpPayload{CfgType::kReply, {{1, {10, 0, 0, 1}}}})}));
  SetU16(bytes, 38, 5);
  EXPECT_NE(MustFail(bytes).message.find("CP payload: attribute 1 length 5"), std::string::npos);
}

TEST(CodecMalformed, EncoderRejectsUnrepresentableValues) {
  EXPECT_FALSE(EncodeMessage(WithPayloads({MakePayload(VendorIdPayload{Bytes(70000)})})).ok());
  EXPECT_FALSE(EncodeMessage(WithPayloads({MakePayload(SaPayload{})})).ok());
  EXPECT_FALSE(EncodeMessage(WithPayloads({MakePayload(UnknownPayload{40, {}})})).ok());
  EXPECT_FALSE(EncodeMessage(WithPayloads({MakePayload(DeletePayload{ProtocolId::kEsp, 4, {{1, 2}}})})).ok());
}

// --- names -----------------------------------------------------------------------

TEST(Names, KnownAndUnknownValues) {
  EXPECT_EQ(ExchangeName(ExchangeType::kIkeIntermediate), "IKE_INTERMEDIATE");
  EXPECT_EQ(ExchangeName(static_cast<ExchangeType>(99)), "UNKNOWN(99)");
  EXPECT_EQ(PayloadName(53), "SKF");
  EXPECT_EQ(NotifyName(NotifyType::kIntermediateExchangeSupported), "INTERMEDIATE_EXCHANGE_SUPPORTED");
  EXPECT_EQ(NotifyName(static_cast<NotifyType>(40000)), "UNKNOWN(40000)");
  EXPECT_EQ(TransformIdName(TransformType::kKe, 31), "CURVE25519");
  EXPECT_EQ(TransformIdName(TransformType::kEncr, 20), "ENCR_AES_GCM_16");
  EXPECT_EQ(IdTypeName(IdType::kNull), "ID_NULL");
  EXPECT_EQ(AuthMethodName(AuthMethod::kDigitalSignature), "DIGITAL_SIGNATURE");
  EXPECT_EQ(CertEncodingName(CertEncoding::kRawPublicKey), "RAW_PUBLIC_KEY");
}

}  // namespace
}  // namespace ike::wire
