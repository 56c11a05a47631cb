#include "tests/wire/corpus.h"

namespace ike::wire::testing {
namespace {

Transform MakeTransform(TransformType type, uint16_t id,
                        std::optional<uint16_t> key_length = std::nullopt) {
  Transform transform{type, id, {}};
  if (key_length) {
    transform.attributes.push_back({kAttrKeyLength, true, *key_length, {}});
  }
  return transform;
}

uint16_t Id(auto value) { return static_cast<uint16_t>(value); }

SaPayload IkeProposals() {
  Proposal aead{1, ProtocolId::kIke, {}, {}};
  aead.transforms = {
      MakeTransform(TransformType::kEncr, Id(EncrId::kAesGcm16), 256),
      MakeTransform(TransformType::kPrf, Id(PrfId::kHmacSha2_256)),
      MakeTransform(TransformType::kKe, Id(KeGroup::kCurve25519)),
      MakeTransform(TransformType::kKe, Id(KeGroup::kEcp256)),
  };
  Proposal classic{2, ProtocolId::kIke, {}, {}};
  classic.transforms = {
      MakeTransform(TransformType::kEncr, Id(EncrId::kAesCbc), 128),
      MakeTransform(TransformType::kPrf, Id(PrfId::kHmacSha2_384)),
      MakeTransform(TransformType::kInteg, Id(IntegId::kHmacSha2_256_128)),
      MakeTransform(TransformType::kKe, Id(KeGroup::kModp2048)),
  };
  return SaPayload{{aead, classic}};
}

SaPayload EspProposal(uint8_t spi_seed) {
  Proposal esp{1, ProtocolId::kEsp, Pattern(4, spi_seed), {}};
  esp.transforms = {
      MakeTransform(TransformType::kEncr, Id(EncrId::kChaCha20Poly1305)),
      MakeTransform(TransformType::kEsn, Id(EsnId::kNoEsn)),
      MakeTransform(TransformType::kEsn, Id(EsnId::kEsn)),
  };
  return SaPayload{{esp}};
}

TrafficSelector Ipv4Range(Bytes start, Bytes end, uint8_t protocol = 0,
                          uint16_t start_port = 0, uint16_t end_port = 65535) {
  return TrafficSelector{TsType::kIpv4AddrRange, protocol, start_port, end_port,
                         std::move(start), std::move(end)};
}

TrafficSelector Ipv6Range(Bytes start, Bytes end) {
  return TrafficSelector{TsType::kIpv6AddrRange, 0, 0, 65535, std::move(start),
                         std::move(end)};
}

Bytes Ipv6(uint8_t last) {
  Bytes address = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, last};
  return address;
}

NotifyPayload Notify(NotifyType type, Bytes data = {}) {
  return NotifyPayload{0, type, {}, std::move(data)};
}

Bytes Text(const std::string& text) { return Bytes(text.begin(), text.end()); }

Header MakeHeader(ExchangeType exchange, uint8_t flags, uint32_t message_id,
                  uint64_t responder_spi = 0x1122334455667788ull) {
  Header header;
  header.initiator_spi = 0x0102030405060708ull;
  header.responder_spi = responder_spi;
  header.exchange = exchange;
  header.flags = flags;
  header.message_id = message_id;
  return header;
}

// A DER SubjectPublicKeyInfo shape for an Ed25519 key (RFC 8410): the fixed
// prefix followed by 32 key bytes (a pattern, not a real key).
Bytes Ed25519Spki() {
  Bytes spki = {0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00};
  Bytes key = Pattern(32, 0xa0);
  spki.insert(spki.end(), key.begin(), key.end());
  return spki;
}

}  // namespace

Bytes Pattern(size_t n, uint8_t seed) {
  Bytes bytes(n);
  for (size_t i = 0; i < n; ++i) bytes[i] = static_cast<uint8_t>(seed + i);
  return bytes;
}

std::vector<CorpusEntry> BuildCorpus() {
  using namespace header_flags;
  std::vector<CorpusEntry> corpus;

  corpus.push_back(
      {"ike_sa_init_request",
       {MakeHeader(ExchangeType::kIkeSaInit, kInitiator, 0, 0),
        {MakePayload(IkeProposals()),
         MakePayload(KePayload{KeGroup::kCurve25519, Pattern(32, 0x10)}),
         MakePayload(NoncePayload{Pattern(32, 0x40)}),
         MakePayload(Notify(NotifyType::kNatDetectionSourceIp, Pattern(20, 1))),
         MakePayload(Notify(NotifyType::kNatDetectionDestinationIp, Pattern(20, 2))),
         MakePayload(Notify(NotifyType::kIkev2FragmentationSupported)),
         MakePayload(Notify(NotifyType::kSignatureHashAlgorithms,
                            {0, 2, 0, 3, 0, 4, 0, 5})),
         MakePayload(Notify(NotifyType::kRedirectSupported)),
         MakePayload(Notify(NotifyType::kChildlessIkev2Supported)),
         MakePayload(CertReqPayload{CertEncoding::kRawPublicKey, {}}),
         MakePayload(VendorIdPayload{Text("btnsd test vendor")})}}});

  corpus.push_back(
      {"ike_sa_init_response",
       {MakeHeader(ExchangeType::kIkeSaInit, kResponse, 0),
        {MakePayload(SaPayload{{IkeProposals().proposals[0]}}),
         MakePayload(KePayload{KeGroup::kCurve25519, Pattern(32, 0x30)}),
         MakePayload(NoncePayload{Pattern(48, 0x60)}),
         MakePayload(CertReqPayload{CertEncoding::kX509Signature, Pattern(40, 0x77)}),
         MakePayload(Notify(NotifyType::kMultipleAuthSupported))}}});

  corpus.push_back(
      {"ike_sa_init_invalid_ke",
       {MakeHeader(ExchangeType::kIkeSaInit, kResponse, 0, 0),
        {MakePayload(Notify(NotifyType::kInvalidKePayload, {0, 31}))}}});

  corpus.push_back(
      {"ike_sa_init_cookie",
       {MakeHeader(ExchangeType::kIkeSaInit, kResponse, 0, 0),
        {MakePayload(Notify(NotifyType::kCookie, Pattern(16, 0x99)))}}});

  // Plaintext IKE_AUTH contents, as found inside a decrypted SK payload.
  corpus.push_back(
      {"ike_auth_raw_public_key",
       {MakeHeader(ExchangeType::kIkeAuth, kInitiator, 1),
        {MakePayload(IdiPayload{{IdType::kFqdn, Text("client.example.org")}}),
         MakePayload(CertPayload{CertEncoding::kRawPublicKey, Ed25519Spki()}),
         MakePayload(Notify(NotifyType::kInitialContact)),
         MakePayload(IdrPayload{{IdType::kIpv4Addr, {192, 0, 2, 2}}}),
         MakePayload(AuthPayload{AuthMethod::kDigitalSignature, Pattern(80, 0x05)}),
         MakePayload(CpPayload{CfgType::kRequest, {{1, {}}, {8, {}}, {3, {}}}}),
         MakePayload(EspProposal(0xc0)),
         MakePayload(TsiPayload{{{Ipv4Range({192, 0, 2, 1}, {192, 0, 2, 1}, 17, 500, 500),
                                   Ipv6Range(Ipv6(1), Ipv6(1))}}}),
         MakePayload(TsrPayload{{{Ipv4Range({192, 0, 2, 0}, {192, 0, 2, 255}),
                                   Ipv6Range(Ipv6(0), Ipv6(255))}}}),
         MakePayload(Notify(NotifyType::kUseTransportMode)),
         MakePayload(Notify(NotifyType::kEspTfcPaddingNotSupported))}}});

  corpus.push_back(
      {"ike_auth_psk_keyid_cp_reply",
       {MakeHeader(ExchangeType::kIkeAuth, kResponse, 1),
        {MakePayload(IdrPayload{{IdType::kKeyId, Text("gateway-key")}}),
         MakePayload(AuthPayload{AuthMethod::kSharedKeyMic, Pattern(32, 0x55)}),
         MakePayload(CpPayload{CfgType::kReply,
                               {{1, {10, 0, 0, 7}}, {2, {255, 255, 255, 0}}}}),
         MakePayload(EspProposal(0xd0)),
         MakePayload(TsiPayload{{{Ipv6Range(Ipv6(1), Ipv6(1))}}}),
         MakePayload(TsrPayload{{{Ipv6Range(Ipv6(2), Ipv6(2))}}})}}});

  corpus.push_back(
      {"ike_auth_null",
       {MakeHeader(ExchangeType::kIkeAuth, kInitiator, 1),
        {MakePayload(IdiPayload{{IdType::kNull, {}}}),
         MakePayload(AuthPayload{AuthMethod::kNull, Pattern(32, 0x21)}),
         MakePayload(EspProposal(0xe0)),
         MakePayload(TsiPayload{{{Ipv4Range({192, 0, 2, 1}, {192, 0, 2, 1})}}}),
         MakePayload(TsrPayload{{{Ipv4Range({192, 0, 2, 2}, {192, 0, 2, 2})}}})}}});

  // The remaining ID types of RFC 7296 3.5 (data are shape-correct samples:
  // a DER Name "CN=gw" and a DER GeneralName dNSName "gw").
  corpus.push_back(
      {"ike_auth_id_types_1",
       {MakeHeader(ExchangeType::kIkeAuth, kInitiator, 1),
        {MakePayload(IdiPayload{{IdType::kRfc822Addr, Text("user@example.org")}}),
         MakePayload(IdrPayload{{IdType::kIpv6Addr, Ipv6(2)}}),
         MakePayload(AuthPayload{AuthMethod::kRsaSig, Pattern(64, 0x12)})}}});
  corpus.push_back(
      {"ike_auth_id_types_2",
       {MakeHeader(ExchangeType::kIkeAuth, kResponse, 1),
        {MakePayload(IdrPayload{{IdType::kDerAsn1Dn,
                                 {0x30, 0x0d, 0x31, 0x0b, 0x30, 0x09, 0x06, 0x03, 0x55, 0x04,
                                  0x03, 0x0c, 0x02, 'g', 'w'}}}),
         MakePayload(AuthPayload{AuthMethod::kEcdsa256, Pattern(64, 0x13)})}}});
  corpus.push_back(
      {"ike_auth_id_types_3",
       {MakeHeader(ExchangeType::kIkeAuth, kInitiator, 1),
        {MakePayload(IdiPayload{{IdType::kDerAsn1Gn, {0x82, 0x02, 'g', 'w'}}}),
         MakePayload(IdrPayload{{IdType::kFcName, Text("fc-name")}}),
         MakePayload(AuthPayload{AuthMethod::kSharedKeyMic, Pattern(32, 0x14)})}}});

  corpus.push_back(
      {"ike_auth_eap",
       {MakeHeader(ExchangeType::kIkeAuth, kResponse, 2),
        {MakePayload(EapPayload{{1, 7, 0, 9, 1, 'h', 'e', 'l', 'o'}})}}});

  corpus.push_back(
      {"ike_auth_encrypted",
       {MakeHeader(ExchangeType::kIkeAuth, kInitiator, 1),
        {MakePayload(SkPayload{PayloadType::kIdi, Pattern(120, 0x80)})}}});

  corpus.push_back(
      {"ike_auth_fragment_1_of_2",
       {MakeHeader(ExchangeType::kIkeAuth, kInitiator, 1),
        {MakePayload(SkfPayload{PayloadType::kIdi, 1, 2, Pattern(200, 0x11)})}}});

  corpus.push_back(
      {"ike_auth_fragment_2_of_2",
       {MakeHeader(ExchangeType::kIkeAuth, kInitiator, 1),
        {MakePayload(SkfPayload{PayloadType::kNone, 2, 2, Pattern(90, 0x22)})}}});

  corpus.push_back(
      {"create_child_sa_rekey",
       {MakeHeader(ExchangeType::kCreateChildSa, kInitiator, 2),
        {MakePayload(NotifyPayload{static_cast<uint8_t>(ProtocolId::kEsp),
                                   NotifyType::kRekeySa, Pattern(4, 0xc0), {}}),
         MakePayload(EspProposal(0xf0)),
         MakePayload(NoncePayload{Pattern(32, 0x70)}),
         MakePayload(KePayload{KeGroup::kModp2048, Pattern(256, 0x03)}),
         MakePayload(TsiPayload{{{Ipv4Range({192, 0, 2, 1}, {192, 0, 2, 1}, 6, 1, 1023)}}}),
         MakePayload(TsrPayload{{{Ipv4Range({192, 0, 2, 2}, {192, 0, 2, 2}, 6, 22, 22)}}})}}});

  corpus.push_back(
      {"informational_delete",
       {MakeHeader(ExchangeType::kInformational, kInitiator, 3),
        {MakePayload(DeletePayload{ProtocolId::kEsp, 4,
                                   {Pattern(4, 0xc0), Pattern(4, 0xd0)}}),
         MakePayload(DeletePayload{ProtocolId::kIke, 0, {}})}}});

  corpus.push_back(
      {"informational_redirect",
       {MakeHeader(ExchangeType::kInformational, kResponse, 4),
        {// RFC 5685: GW Ident Type 1 (IPv4), length 4, address, then a nonce.
         MakePayload(Notify(NotifyType::kRedirect,
                            {1, 4, 192, 0, 2, 9, 0xaa, 0xbb, 0xcc, 0xdd})),
         MakePayload(Notify(NotifyType::kRedirectedFrom, {1, 4, 192, 0, 2, 2}))}}});

  corpus.push_back(
      {"informational_errors",
       {MakeHeader(ExchangeType::kInformational, kResponse, 5),
        {MakePayload(Notify(NotifyType::kAuthenticationFailed)),
         MakePayload(Notify(NotifyType::kTsUnacceptable)),
         MakePayload(Notify(NotifyType::kNoProposalChosen)),
         MakePayload(Notify(NotifyType::kInvalidSyntax))}}});

  corpus.push_back(
      {"ike_sa_init_ppk_intermediate_notifies",
       {MakeHeader(ExchangeType::kIkeSaInit, kInitiator, 0, 0),
        {MakePayload(SaPayload{{IkeProposals().proposals[1]}}),
         MakePayload(KePayload{KeGroup::kModp2048, Pattern(256, 0x07)}),
         MakePayload(NoncePayload{Pattern(16, 0x09)}),
         MakePayload(Notify(NotifyType::kUsePpk)),
         MakePayload(Notify(NotifyType::kIntermediateExchangeSupported))}}});

  corpus.push_back(
      {"ike_intermediate",
       {MakeHeader(ExchangeType::kIkeIntermediate, kInitiator, 1),
        {MakePayload(SkPayload{PayloadType::kKe, Pattern(64, 0x44)})}}});

  corpus.push_back(
      {"unknown_noncritical_payload",
       {MakeHeader(ExchangeType::kInformational, kInitiator, 6),
        {MakePayload(UnknownPayload{60, Pattern(12, 0x31)}),
         MakePayload(Notify(NotifyType::kInitialContact))}}});

  return corpus;
}

}  // namespace ike::wire::testing
