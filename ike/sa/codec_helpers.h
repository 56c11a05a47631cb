// Conversions between the policy, crypto and wire views of proposals and
// traffic selectors, the NAT detection hash, and the SK payload seal/open
// steps used by every encrypted exchange. Internal to ike/sa.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "ike/crypto/result.h"
#include "ike/crypto/random.h"
#include "ike/crypto/transforms.h"
#include "ike/policy/address.h"
#include "ike/policy/identity.h"
#include "ike/policy/proposal.h"
#include "ike/sa/engine.h"
#include "ike/wire/message.h"

namespace ike::sa::internal {

using Bytes = std::vector<uint8_t>;

// Every complete transform set a policy proposal set allows, in preference
// order. For ESP with `without_ke`, KE transforms are dropped (IKE_AUTH
// carries no key exchange); duplicates are removed.
std::vector<crypto::TransformSet> ExpandProposals(
    const policy::ProposalSet& set, wire::ProtocolId protocol,
    bool without_ke);

// Our SA payload offer. `spi` is empty for IKE_SA_INIT, 4 octets for ESP,
// 8 for an IKE rekey. `without_ke` drops KE transforms (IKE_AUTH children).
wire::SaPayload BuildOffer(const policy::ProposalSet& set,
                           wire::ProtocolId protocol, const Bytes& spi,
                           bool without_ke);

// The single proposal a responder returns for what it selected.
wire::SaPayload BuildChosen(const crypto::TransformSet& set,
                            wire::ProtocolId protocol, uint8_t number,
                            const Bytes& spi, bool with_ke);

// The peer's SA payload for crypto::SelectProposal; `without_ke` strips KE
// transforms (RFC 7296 section 1.2: ignored in IKE_AUTH).
std::vector<crypto::Proposal> ToCryptoProposals(const wire::SaPayload& sa,
                                                bool without_ke);

// An initiator checks the responder's single proposal against its offer.
std::optional<crypto::TransformSet> AcceptChosen(
    const wire::SaPayload& chosen, wire::ProtocolId protocol,
    const std::vector<crypto::TransformSet>& offered, Bytes* spi);

wire::TrafficSelector ToWire(const policy::TrafficSelector& ts);
std::optional<policy::TrafficSelector> FromWire(const wire::TrafficSelector& ts);
std::vector<policy::TrafficSelector> FromWire(
    const std::vector<wire::TrafficSelector>& list);
std::vector<wire::TrafficSelector> ToWire(
    const std::vector<policy::TrafficSelector>& list);

// SHA-1(SPIi | SPIr | IP | port), RFC 7296 section 2.23.
Bytes NatDetectionHash(uint64_t spi_i, uint64_t spi_r, const Endpoint& ep);

// ID Type | RESERVED(3) | data: the ID' of the AUTH computation (2.15).
Bytes IdPayloadBody(wire::IdType type, const Bytes& data);
policy::Identity IdentityFromPayload(const wire::IdPayload& id);

Bytes SpiBytes(uint64_t spi);
Bytes SpiBytes32(uint32_t spi);
uint32_t SpiFromBytes32(const Bytes& b);
uint64_t SpiFromBytes64(const Bytes& b);

struct IkeDirectionKeys {
  crypto::ByteView encryption;
  crypto::ByteView integrity;
};

// Encodes header + inner payloads into one message with an SK payload,
// encrypting and authenticating with the sender's keys.
crypto::Result<Bytes> SealMessage(const crypto::TransformSet& set,
                                  IkeDirectionKeys keys,
                                  const wire::Header& header,
                                  const std::vector<wire::Payload>& inner,
                                  crypto::RandomSource& random);

// Checks and decrypts the SK payload of `datagram` (already decoded into
// `message`) and decodes the inner payloads.
struct OpenError {
  FailureReason reason = FailureReason::kInvalidSyntax;
  std::string text;
};
std::variant<std::vector<wire::Payload>, OpenError> OpenMessage(
    const crypto::TransformSet& set, IkeDirectionKeys keys,
    std::span<const uint8_t> datagram, const wire::Message& message);

std::string ToHex(std::span<const uint8_t> bytes);

}  // namespace ike::sa::internal
