// Registry of the transforms ike/crypto implements, keyed by IANA transform
// IDs (ike/wire/constants.h), and the responder's proposal selection
// (RFC 7296 sections 2.7 and 3.3).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "ike/crypto/result.h"
#include "ike/wire/constants.h"

namespace ike::crypto {

using wire::EncrId;
using wire::EsnId;
using wire::IntegId;
using wire::KeGroup;
using wire::PrfId;
using wire::ProtocolId;
using wire::TransformType;

struct EncrInfo {
  EncrId id = EncrId::kAesCbc;
  uint16_t key_bits = 0;  // value of the Key Length attribute (0: none)
  bool aead = false;
  size_t key_bytes = 0;   // cipher key, without salt
  size_t salt_bytes = 0;  // RFC 5282 / RFC 7634: 4, taken from SK_e / KEYMAT
  size_t iv_bytes = 0;    // explicit IV carried in the SK payload
  size_t block_bytes = 1; // padding granularity of the plaintext
  size_t icv_bytes = 0;   // AEAD tag length (0 for CBC: ICV comes from INTEG)
  bool needs_key_length_attribute = false;
  std::string botan_name;         // Botan cipher mode / AEAD name
  std::string kernel_name;        // XFRM algorithm name for ESP
  std::string display_name;       // e.g. "AES_GCM_16_256"

  // Bytes of SK_e / ESP encryption key: key || salt.
  size_t keymat_bytes() const { return key_bytes + salt_bytes; }
};

struct PrfInfo {
  PrfId id = PrfId::kHmacSha2_256;
  std::string botan_name;
  size_t output_bytes = 0;
  size_t key_bytes = 0;  // preferred key length: size of SK_d, SK_pi, SK_pr
  std::string display_name;
};

struct IntegInfo {
  IntegId id = IntegId::kNone;
  std::string botan_name;  // empty for NONE
  size_t key_bytes = 0;
  size_t icv_bytes = 0;
  std::string kernel_name;
  std::string display_name;
};

enum class KeKind { kModp, kEcp, kCurve25519 };

struct KeGroupInfo {
  KeGroup id = KeGroup::kNone;
  KeKind kind = KeKind::kModp;
  size_t public_value_bytes = 0;  // exact length of KE payload data
  size_t shared_secret_bytes = 0;
  std::string botan_group_name;  // DL_Group / EC_Group name
  std::string display_name;
};

// key_bits: the Key Length attribute, 0 when absent. Null when the
// combination is not implemented (or an attribute is missing/extra). The
// entries are static: valid for the whole program.
const EncrInfo* LookupEncr(EncrId id, uint16_t key_bits);
const PrfInfo* LookupPrf(PrfId id);
const IntegInfo* LookupInteg(IntegId id);
const KeGroupInfo* LookupKeGroup(KeGroup id);

// --- Proposal selection -----------------------------------------------------

// One transform as decoded from an SA payload.
struct Transform {
  TransformType type = TransformType::kEncr;
  uint16_t id = 0;
  std::optional<uint16_t> key_length_bits;  // Key Length attribute
  bool has_unknown_attribute = false;       // transform is then unusable
};

// One proposal as decoded from an SA payload.
struct Proposal {
  uint8_t number = 0;
  ProtocolId protocol = ProtocolId::kIke;
  Bytes spi;
  std::vector<Transform> transforms;
};

// One complete set of transforms we accept (one of our "suites").
// For AEAD ciphers, integ is kNone. For ESP, prf is unused; ke is kNone
// when no key exchange is wanted (CHILD_SA without PFS).
struct TransformSet {
  EncrId encr = EncrId::kAesGcm16;
  uint16_t encr_key_bits = 256;
  PrfId prf = PrfId::kHmacSha2_256;
  IntegId integ = IntegId::kNone;
  KeGroup ke = KeGroup::kCurve25519;
  EsnId esn = EsnId::kNoEsn;
};

struct SelectedProposal {
  uint8_t proposal_number = 0;
  Bytes spi;
  TransformSet transforms;
};

// Responder side: walk the peer's proposals in the peer's order and take
// the first one that contains one of our sets (tried in our order). Every
// transform in the chosen set must be offered with the same ID and Key
// Length attribute. Proposals for another protocol, or with a transform
// type we do not know, are skipped. kNoProposalChosen when nothing fits.
Result<SelectedProposal> SelectProposal(ProtocolId protocol,
                                        std::span<const TransformSet> ours,
                                        std::span<const Proposal> theirs);

// Checks that a set only names transforms this library implements and that
// AEAD/integrity are consistent. The error names the offending field.
Status ValidateTransformSet(ProtocolId protocol, const TransformSet& set);

}  // namespace ike::crypto
