#include "ike/crypto/transforms.h"

#include <algorithm>

namespace ike::crypto {
namespace {

std::optional<EncrInfo> AesCbc(uint16_t bits) {
  if (bits != 128 && bits != 192 && bits != 256) return std::nullopt;
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

std::optional<EncrInfo> AesGcm(EncrId id, size_t icv, uint16_t bits) {
  if (bits != 128 && bits != 192 && bits != 256) return std::nullopt;
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

}  // namespace

std::optional<EncrInfo> LookupEncr(EncrId id, uint16_t key_bits) {
  switch (id) {
    case EncrId::kAesCbc:
      return AesCbc(key_bits);
    case EncrId::kAesGcm8:
      return AesGcm(id, 8, key_bits);
    case EncrId::kAesGcm12:
      return AesGcm(id, 12, key_bits);
    case EncrId::kAesGcm16:
      return AesGcm(id, 16, key_bits);
    case EncrId::kChaCha20Poly1305: {
      // RFC 7634 section 2: fixed 256-bit key, no Key Length attribute.
      if (key_bits != 0) return std::nullopt;
      EncrInfo info;
      info.id = id;
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
    default:
      return std::nullopt;
  }
}

std::optional<PrfInfo> LookupPrf(PrfId id) {
  auto make = [id](const char* botan, size_t out, const char* name) {
    return PrfInfo{id, botan, out, out, name};
  };
  switch (id) {
    case PrfId::kHmacSha1:
      return make("HMAC(SHA-1)", 20, "PRF_HMAC_SHA1");
    case PrfId::kHmacSha2_256:
      return make("HMAC(SHA-256)", 32, "PRF_HMAC_SHA2_256");
    case PrfId::kHmacSha2_384:
      return make("HMAC(SHA-384)", 48, "PRF_HMAC_SHA2_384");
    case PrfId::kHmacSha2_512:
      return make("HMAC(SHA-512)", 64, "PRF_HMAC_SHA2_512");
    default:
      return std::nullopt;
  }
}

std::optional<IntegInfo> LookupInteg(IntegId id) {
  switch (id) {
    case IntegId::kNone:
      return IntegInfo{id, "", 0, 0, "", "NONE"};
    case IntegId::kHmacSha1_96:  // RFC 2404
      return IntegInfo{id, "HMAC(SHA-1)", 20, 12, "hmac(sha1)",
                       "AUTH_HMAC_SHA1_96"};
    case IntegId::kHmacSha2_256_128:  // RFC 4868
      return IntegInfo{id, "HMAC(SHA-256)", 32, 16, "hmac(sha256)",
                       "AUTH_HMAC_SHA2_256_128"};
    case IntegId::kHmacSha2_384_192:
      return IntegInfo{id, "HMAC(SHA-384)", 48, 24, "hmac(sha384)",
                       "AUTH_HMAC_SHA2_384_192"};
    case IntegId::kHmacSha2_512_256:
      return IntegInfo{id, "HMAC(SHA-512)", 64, 32, "hmac(sha512)",
                       "AUTH_HMAC_SHA2_512_256"};
    default:
      return std::nullopt;
  }
}

std::optional<KeGroupInfo> LookupKeGroup(KeGroup id) {
  switch (id) {
    case KeGroup::kModp2048:
      return KeGroupInfo{id, KeKind::kModp, 256, 256, "modp/ietf/2048",
                         "MODP_2048"};
    case KeGroup::kModp3072:
      return KeGroupInfo{id, KeKind::kModp, 384, 384, "modp/ietf/3072",
                         "MODP_3072"};
    case KeGroup::kModp4096:
      return KeGroupInfo{id, KeKind::kModp, 512, 512, "modp/ietf/4096",
                         "MODP_4096"};
    case KeGroup::kEcp256:  // RFC 5903: x || y, shared secret is x
      return KeGroupInfo{id, KeKind::kEcp, 64, 32, "secp256r1", "ECP_256"};
    case KeGroup::kEcp384:
      return KeGroupInfo{id, KeKind::kEcp, 96, 48, "secp384r1", "ECP_384"};
    case KeGroup::kEcp521:
      return KeGroupInfo{id, KeKind::kEcp, 132, 66, "secp521r1", "ECP_521"};
    case KeGroup::kCurve25519:  // RFC 8031
      return KeGroupInfo{id, KeKind::kCurve25519, 32, 32, "curve25519",
                         "CURVE_25519"};
    default:
      return std::nullopt;
  }
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

// Offered transforms of one type (without unusable ones).
std::vector<const Transform*> OfType(const Proposal& p, TransformType type) {
  std::vector<const Transform*> out;
  for (const Transform& t : p.transforms) {
    if (t.type == type && !t.has_unknown_attribute) out.push_back(&t);
  }
  return out;
}

bool HasType(const Proposal& p, TransformType type) {
  return std::any_of(p.transforms.begin(), p.transforms.end(),
                     [type](const Transform& t) { return t.type == type; });
}

bool Offers(const Proposal& p, TransformType type, uint16_t id,
            std::optional<uint16_t> key_bits) {
  for (const Transform* t : OfType(p, type)) {
    if (t->id == id && t->key_length_bits == key_bits) return true;
  }
  return false;
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
