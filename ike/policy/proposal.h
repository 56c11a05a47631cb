// Proposal sets: named lists of IKEv2 proposals (RFC 7296 section 3.3), with
// the algorithm names used in the config file and the RFC 8247 status of
// each algorithm.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ike/wire/constants.h"

namespace ike::policy {

using ike::wire::EncrId;
using ike::wire::EsnId;
using ike::wire::IntegId;
using ike::wire::KeGroup;
using ike::wire::PrfId;
using ike::wire::TransformType;

struct EncrAlgorithm {
  EncrId id = EncrId::kAesGcm16;
  uint16_t key_bits = 0;  // 0: the algorithm has a fixed key length
  bool operator==(const EncrAlgorithm&) const = default;
};

struct Proposal {
  std::vector<EncrAlgorithm> encryption;
  std::vector<PrfId> prf;        // IKE only
  std::vector<IntegId> integrity;  // empty for AEAD
  std::vector<KeGroup> ke;       // for ESP: PFS groups; kNone means no PFS
  std::vector<EsnId> esn;        // ESP only
  bool operator==(const Proposal&) const = default;
};

struct ProposalSet {
  std::string name;
  std::vector<Proposal> proposals;
  bool allow_deprecated = false;
  bool operator==(const ProposalSet&) const = default;
};

// One algorithm name from the config language ("aes256gcm16", "sha384",
// "x25519" ...) and its transform.
struct AlgorithmName {
  std::string_view name;
  TransformType type;
  uint16_t id;
  uint16_t key_bits;
  bool aead;
  // RFC 8247 MUST NOT / SHOULD NOT (or not listed): needs allow_deprecated.
  bool deprecated;
};

const std::vector<AlgorithmName>& AllAlgorithmNames();
std::optional<AlgorithmName> FindAlgorithm(TransformType type,
                                           std::string_view name);
std::string AlgorithmToString(TransformType type, uint16_t id,
                              uint16_t key_bits = 0);
std::string ProposalToString(const Proposal& p);
bool IsAead(EncrId id);

// Built-in sets following RFC 8247 (AES-GCM-16 and ChaCha20-Poly1305,
// SHA2 PRFs, X25519 / ECP / MODP >= 2048): "default-ike", "default-esp".
ProposalSet DefaultIkeProposals();
ProposalSet DefaultEspProposals();

}  // namespace ike::policy
