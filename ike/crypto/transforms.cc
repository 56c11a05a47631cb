#include "ike/crypto/transforms.h"

#include <algorithm>

namespace ike::crypto {
namespace {

EncrInfo AesCbc(uint16_t bits) {
  EncrInfo info;
  info.id = EncrId::kAesCbc;
  info.key_bits = bits;
  info.key_bytes = bits / 8;
  info.iv_bytes = 16;
  info.block_bytes = 16;
  info.needs_key_length_attribute = true;
  info.botan_name = "AES-" + std::to_string(bits) + "/CBC/NoPadding";
  info.kernel_name = "cbc(aes)";
  info.display_name = "AES_CBC_" + std::to_string(bits);
  return info;
}

EncrInfo AesGcm(EncrId id, size_t icv, uint16_t bits) {
  EncrInfo info;
  info.id = id;
  info.key_bits = bits;
  info.aead = true;
  info.key_bytes = bits / 8;
  info.salt_bytes = 4;  // RFC 4106 section 8.1 / RFC 5282 section 7
  info.iv_bytes = 8;
  info.icv_bytes = icv;
  info.needs_key_length_attribute = true;
  info.botan_name =
      "AES-" + std::to_string(bits) + "/GCM(" + std::to_string(icv) + ")";
  info.kernel_name = "rfc4106(gcm(aes))";
  info.display_name = "AES_GCM_" + std::to_string(icv) + "_" +
                      std::to_string(bits);
  return info;
}

EncrInfo ChaCha20Poly1305() {
  // RFC 7634 section 2: fixed 256-bit key, no Key Length attribute.
  EncrInfo info;
  info.id = EncrId::kChaCha20Poly1305;
  info.aead = true;
  info.key_bytes = 32;
  info.salt_bytes = 4;
  info.iv_bytes = 8;
  info.icv_bytes = 16;
  info.botan_name = "ChaCha20Poly1305";
  info.kernel_name = "rfc7539esp(chacha20,poly1305)";
  info.display_name = "CHACHA20_POLY1305";
  return info;
}

// Built once: every SK payload and PRF computation looks its transform up,
// and building the names each time would allocate on every message.
const std::vector<EncrInfo>& EncrTable() {
  static const std::vector<EncrInfo> table = [] {
    std::vector<EncrInfo> t;
    for (uint16_t bits : {128, 192, 256}) {
      t.push_back(AesCbc(bits));
      t.push_back(AesGcm(EncrId::kAesGcm8, 8, bits));
      t.push_back(AesGcm(EncrId::kAesGcm12, 12, bits));
      t.push_back(AesGcm(EncrId::kAesGcm16, 16, bits));
    }
    t.push_back(ChaCha20Poly1305());
    return t;
  }();
  return table;
}

const std::vector<PrfInfo>& PrfTable() {
  static const std::vector<PrfInfo> table = {
      {PrfId::kHmacSha1, "HMAC(SHA-1)", 20, 20, "PRF_HMAC_SHA1"},
      {PrfId::kHmacSha2_256, "HMAC(SHA-256)", 32, 32, "PRF_HMAC_SHA2_256"},
      {PrfId::kHmacSha2_384, "HMAC(SHA-384)", 48, 48, "PRF_HMAC_SHA2_384"},
      {PrfId::kHmacSha2_512, "HMAC(SHA-512)", 64, 64, "PRF_HMAC_SHA2_512"},
  };
  return table;
}

const std::vector<IntegInfo>& IntegTable() {
  static const std::vector<IntegInfo> table = {
      {IntegId::kNone, "", 0, 0, "", "NONE"},
      {IntegId::kHmacSha1_96, "HMAC(SHA-1)", 20, 12, "hmac(sha1)",  // RFC 2404
       "AUTH_HMAC_SHA1_96"},
      {IntegId::kHmacSha2_256_128, "HMAC(SHA-256)", 32, 16,  // RFC 4868
       "hmac(sha256)", "AUTH_HMAC_SHA2_256_128"},
      {IntegId::kHmacSha2_384_192, "HMAC(SHA-384)", 48, 24, "hmac(sha384)",
       "AUTH_HMAC_SHA2_384_192"},
      {IntegId::kHmacSha2_512_256, "HMAC(SHA-512)", 64, 32, "hmac(sha512)",
       "AUTH_HMAC_SHA2_512_256"},
  };
  return table;
}

const std::vector<KeGroupInfo>& KeGroupTable() {
  static const std::vector<KeGroupInfo> table = {
      {KeGroup::kModp2048, KeKind::kModp, 256, 256, "modp/ietf/2048",
       "MODP_2048"},
      {KeGroup::kModp3072, KeKind::kModp, 384, 384, "modp/ietf/3072",
       "MODP_3072"},
      {KeGroup::kModp4096, KeKind::kModp, 512, 512, "modp/ietf/4096",
       "MODP_4096"},
      // RFC 5903: x || y, shared secret is x
      {KeGroup::kEcp256, KeKind::kEcp, 64, 32, "secp256r1", "ECP_256"},
      {KeGroup::kEcp384, KeKind::kEcp, 96, 48, "secp384r1", "ECP_384"},
      {KeGroup::kEcp521, KeKind::kEcp, 132, 66, "secp521r1", "ECP_521"},
      // RFC 8031
      {KeGroup::kCurve25519, KeKind::kCurve25519, 32, 32, "curve25519",
       "CURVE_25519"},
  };
  return table;
}

template <class Info, class Pred>
const Info* Find(const std::vector<Info>& table, Pred pred) {
  for (const Info& info : table)
    if (pred(info)) return &info;
  return nullptr;
}

}  // namespace

const EncrInfo* LookupEncr(EncrId id, uint16_t key_bits) {
  return Find(EncrTable(), [&](const EncrInfo& i) {
    return i.id == id && i.key_bits == key_bits;
  });
}

const PrfInfo* LookupPrf(PrfId id) {
  return Find(PrfTable(), [&](const PrfInfo& i) { return i.id == id; });
}

const IntegInfo* LookupInteg(IntegId id) {
  return Find(IntegTable(), [&](const IntegInfo& i) { return i.id == id; });
}

const KeGroupInfo* LookupKeGroup(KeGroup id) {
  return Find(KeGroupTable(), [&](const KeGroupInfo& i) { return i.id == id; });
}

Status ValidateTransformSet(ProtocolId protocol, const TransformSet& set) {
  auto encr = LookupEncr(set.encr, set.encr_key_bits);
  if (!encr) {
    return MakeError(ErrorCode::kUnsupported,
                     "ENCR transform " + std::to_string(uint16_t(set.encr)) +
                         " with key length " +
                         std::to_string(set.encr_key_bits) +
                         " is not implemented");
  }
  if (!LookupInteg(set.integ)) {
    return MakeError(ErrorCode::kUnsupported,
                     "INTEG transform " + std::to_string(uint16_t(set.integ)) +
                         " is not implemented");
  }
  if (encr->aead != (set.integ == IntegId::kNone)) {
    return MakeError(ErrorCode::kInvalidArgument,
                     encr->aead ? "INTEG must be NONE with an AEAD cipher "
                                  "(RFC 5282 section 8)"
                                : "INTEG is required with a non-AEAD cipher");
  }
  if (protocol == ProtocolId::kIke) {
    if (!LookupPrf(set.prf)) {
      return MakeError(ErrorCode::kUnsupported,
                       "PRF transform " + std::to_string(uint16_t(set.prf)) +
                           " is not implemented");
    }
    if (!LookupKeGroup(set.ke)) {
      return MakeError(ErrorCode::kUnsupported,
                       "KE transform " + std::to_string(uint16_t(set.ke)) +
                           " is not implemented (an IKE SA needs a group)");
    }
  } else if (set.ke != KeGroup::kNone && !LookupKeGroup(set.ke)) {
    return MakeError(ErrorCode::kUnsupported,
                     "KE transform " + std::to_string(uint16_t(set.ke)) +
                         " is not implemented");
  }
  return Ok{};
}

namespace {

bool KnownTransformType(TransformType type) {
  switch (type) {
    case TransformType::kEncr:
    case TransformType::kPrf:
    case TransformType::kInteg:
    case TransformType::kKe:
    case TransformType::kEsn:
      return true;
  }
  return false;
}

bool HasType(const Proposal& p, TransformType type) {
  return std::any_of(p.transforms.begin(), p.transforms.end(),
                     [type](const Transform& t) { return t.type == type; });
}

// Unusable transforms (with an unknown attribute) never match.
bool Offers(const Proposal& p, TransformType type, uint16_t id,
            std::optional<uint16_t> key_bits) {
  return std::any_of(p.transforms.begin(), p.transforms.end(),
                     [&](const Transform& t) {
                       return t.type == type && !t.has_unknown_attribute &&
                              t.id == id && t.key_length_bits == key_bits;
                     });
}

// A transform type whose value we require to be "none" matches when the
// peer did not include that type at all or offered NONE (ID 0) among others.
bool OffersNoneOrAbsent(const Proposal& p, TransformType type) {
  return !HasType(p, type) || Offers(p, type, 0, std::nullopt);
}

bool Matches(ProtocolId protocol, const TransformSet& set, const Proposal& p) {
  auto encr = LookupEncr(set.encr, set.encr_key_bits);
  if (!encr) return false;
  std::optional<uint16_t> key_attr;
  if (encr->needs_key_length_attribute) key_attr = set.encr_key_bits;
  if (!Offers(p, TransformType::kEncr, uint16_t(set.encr), key_attr)) {
    return false;
  }
  if (set.integ == IntegId::kNone) {
    if (!OffersNoneOrAbsent(p, TransformType::kInteg)) return false;
  } else if (!Offers(p, TransformType::kInteg, uint16_t(set.integ),
                     std::nullopt)) {
    return false;
  }
  if (protocol == ProtocolId::kIke) {
    if (!Offers(p, TransformType::kPrf, uint16_t(set.prf), std::nullopt)) {
      return false;
    }
    if (!Offers(p, TransformType::kKe, uint16_t(set.ke), std::nullopt)) {
      return false;
    }
    return true;
  }
  // ESP/AH: no PRF; KE optional (PFS); ESN as negotiated.
  if (HasType(p, TransformType::kPrf)) return false;
  if (set.ke == KeGroup::kNone) {
    if (!OffersNoneOrAbsent(p, TransformType::kKe)) return false;
  } else if (!Offers(p, TransformType::kKe, uint16_t(set.ke), std::nullopt)) {
    return false;
  }
  if (HasType(p, TransformType::kEsn)) {
    return Offers(p, TransformType::kEsn, uint16_t(set.esn), std::nullopt);
  }
  return set.esn == EsnId::kNoEsn;
}

}  // namespace

Result<SelectedProposal> SelectProposal(ProtocolId protocol,
                                        std::span<const TransformSet> ours,
                                        std::span<const Proposal> theirs) {
  for (const Proposal& proposal : theirs) {
    if (proposal.protocol != protocol) continue;
    bool unknown_type = std::any_of(
        proposal.transforms.begin(), proposal.transforms.end(),
        [](const Transform& t) { return !KnownTransformType(t.type); });
    if (unknown_type) continue;
    for (const TransformSet& set : ours) {
      if (!ValidateTransformSet(protocol, set).ok()) continue;
      if (Matches(protocol, set, proposal)) {
        return SelectedProposal{proposal.number, proposal.spi, set};
      }
    }
  }
  return MakeError(ErrorCode::kNoProposalChosen,
                   "none of the " + std::to_string(theirs.size()) +
                       " proposals in the SA payload contains an acceptable "
                       "transform set");
}

}  // namespace ike::crypto
