#include "ike/policy/proposal.h"

namespace ike::policy {
namespace {
constexpr auto kE = TransformType::kEncr;
constexpr auto kP = TransformType::kPrf;
constexpr auto kI = TransformType::kInteg;
constexpr auto kK = TransformType::kKe;
constexpr auto kN = TransformType::kEsn;
template <class T>
constexpr uint16_t U(T v) { return static_cast<uint16_t>(v); }
}  // namespace

const std::vector<AlgorithmName>& AllAlgorithmNames() {
  static const std::vector<AlgorithmName> kNames = {
      {"aes128gcm16", kE, U(EncrId::kAesGcm16), 128, true, false},
      {"aes192gcm16", kE, U(EncrId::kAesGcm16), 192, true, false},
      {"aes256gcm16", kE, U(EncrId::kAesGcm16), 256, true, false},
      {"aes128gcm12", kE, U(EncrId::kAesGcm12), 128, true, false},
      {"aes256gcm12", kE, U(EncrId::kAesGcm12), 256, true, false},
      {"aes128gcm8", kE, U(EncrId::kAesGcm8), 128, true, true},
      {"aes256gcm8", kE, U(EncrId::kAesGcm8), 256, true, true},
      {"aes128ccm16", kE, U(EncrId::kAesCcm16), 128, true, false},
      {"aes256ccm16", kE, U(EncrId::kAesCcm16), 256, true, false},
      {"chacha20poly1305", kE, U(EncrId::kChaCha20Poly1305), 0, true, false},
      {"aes128cbc", kE, U(EncrId::kAesCbc), 128, false, false},
      {"aes192cbc", kE, U(EncrId::kAesCbc), 192, false, false},
      {"aes256cbc", kE, U(EncrId::kAesCbc), 256, false, false},
      {"aes128ctr", kE, U(EncrId::kAesCtr), 128, false, false},
      {"aes256ctr", kE, U(EncrId::kAesCtr), 256, false, false},
      {"3des", kE, U(EncrId::k3Des), 0, false, true},
      {"des", kE, U(EncrId::kDes), 0, false, true},
      {"null", kE, U(EncrId::kNull), 0, false, true},
      {"sha256", kP, U(PrfId::kHmacSha2_256), 0, false, false},
      {"sha384", kP, U(PrfId::kHmacSha2_384), 0, false, false},
      {"sha512", kP, U(PrfId::kHmacSha2_512), 0, false, false},
      {"aesxcbc", kP, U(PrfId::kAes128Xcbc), 0, false, false},
      {"aescmac", kP, U(PrfId::kAes128Cmac), 0, false, false},
      {"sha1", kP, U(PrfId::kHmacSha1), 0, false, true},
      {"md5", kP, U(PrfId::kHmacMd5), 0, false, true},
      {"sha256", kI, U(IntegId::kHmacSha2_256_128), 0, false, false},
      {"sha384", kI, U(IntegId::kHmacSha2_384_192), 0, false, false},
      {"sha512", kI, U(IntegId::kHmacSha2_512_256), 0, false, false},
      {"aesxcbc", kI, U(IntegId::kAesXcbc96), 0, false, false},
      {"sha1", kI, U(IntegId::kHmacSha1_96), 0, false, true},
      {"md5", kI, U(IntegId::kHmacMd5_96), 0, false, true},
      {"x25519", kK, U(KeGroup::kCurve25519), 0, false, false},
      {"x448", kK, U(KeGroup::kCurve448), 0, false, false},
      {"ecp256", kK, U(KeGroup::kEcp256), 0, false, false},
      {"ecp384", kK, U(KeGroup::kEcp384), 0, false, false},
      {"ecp521", kK, U(KeGroup::kEcp521), 0, false, false},
      {"modp2048", kK, U(KeGroup::kModp2048), 0, false, false},
      {"modp3072", kK, U(KeGroup::kModp3072), 0, false, false},
      {"modp4096", kK, U(KeGroup::kModp4096), 0, false, false},
      {"modp6144", kK, U(KeGroup::kModp6144), 0, false, false},
      {"modp8192", kK, U(KeGroup::kModp8192), 0, false, false},
      {"modp1536", kK, U(KeGroup::kModp1536), 0, false, true},
      {"modp1024", kK, U(KeGroup::kModp1024), 0, false, true},
      {"modp768", kK, U(KeGroup::kModp768), 0, false, true},
      {"none", kK, U(KeGroup::kNone), 0, false, false},
      {"esn", kN, U(EsnId::kEsn), 0, false, false},
      {"noesn", kN, U(EsnId::kNoEsn), 0, false, false},
  };
  return kNames;
}

std::optional<AlgorithmName> FindAlgorithm(TransformType type,
                                           std::string_view name) {
  for (const auto& a : AllAlgorithmNames())
    if (a.type == type && a.name == name) return a;
  return std::nullopt;
}

std::string AlgorithmToString(TransformType type, uint16_t id,
                              uint16_t key_bits) {
  for (const auto& a : AllAlgorithmNames())
    if (a.type == type && a.id == id && a.key_bits == key_bits)
      return std::string(a.name);
  return std::to_string(static_cast<int>(type)) + "/" + std::to_string(id);
}

bool IsAead(EncrId id) {
  switch (id) {
    case EncrId::kAesGcm8: case EncrId::kAesGcm12: case EncrId::kAesGcm16:
    case EncrId::kAesCcm8: case EncrId::kAesCcm12: case EncrId::kAesCcm16:
    case EncrId::kChaCha20Poly1305:
      return true;
    default:
      return false;
  }
}

std::string ProposalToString(const Proposal& p) {
  std::string s;
  auto add = [&s](const std::string& part) {
    if (!s.empty()) s += '-';
    s += part;
  };
  for (const auto& e : p.encryption)
    add(AlgorithmToString(TransformType::kEncr, U(e.id), e.key_bits));
  for (auto v : p.integrity) add(AlgorithmToString(TransformType::kInteg, U(v)));
  for (auto v : p.prf) add("prf" + AlgorithmToString(TransformType::kPrf, U(v)));
  for (auto v : p.ke) add(AlgorithmToString(TransformType::kKe, U(v)));
  for (auto v : p.esn) add(AlgorithmToString(TransformType::kEsn, U(v)));
  return s;
}

ProposalSet DefaultIkeProposals() {
  Proposal p;
  p.encryption = {{EncrId::kAesGcm16, 256},
                  {EncrId::kChaCha20Poly1305, 0},
                  {EncrId::kAesGcm16, 128}};
  p.prf = {PrfId::kHmacSha2_256, PrfId::kHmacSha2_384, PrfId::kHmacSha2_512};
  p.ke = {KeGroup::kCurve25519, KeGroup::kEcp256, KeGroup::kEcp384,
          KeGroup::kModp3072, KeGroup::kModp2048};
  return {"default-ike", {p}, false};
}

ProposalSet DefaultEspProposals() {
  Proposal p;
  p.encryption = {{EncrId::kAesGcm16, 256},
                  {EncrId::kChaCha20Poly1305, 0},
                  {EncrId::kAesGcm16, 128}};
  p.ke = {KeGroup::kNone};
  p.esn = {EsnId::kEsn, EsnId::kNoEsn};
  return {"default-esp", {p}, false};
}

}  // namespace ike::policy
