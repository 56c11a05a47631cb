// Transform registry, proposal selection, and CHILD SA key splitting.
#include "ike/crypto/transforms.h"

#include <gtest/gtest.h>

#include "ike/crypto/key_derivation.h"
#include "tests/crypto/vectors.h"

namespace ike::crypto {
namespace {

using testing::ToBytes;

Transform T(TransformType type, uint16_t id,
            std::optional<uint16_t> key_bits = std::nullopt) {
  return Transform{type, id, key_bits, false};
}

Proposal IkeProposal(uint8_t number, std::vector<Transform> transforms) {
  return Proposal{number, ProtocolId::kIke, {}, std::move(transforms)};
}

TEST(RegistryTest, EncryptionParameters) {
  auto gcm = LookupEncr(EncrId::kAesGcm16, 256);
  ASSERT_TRUE(gcm);
  EXPECT_TRUE(gcm->aead);
  EXPECT_EQ(gcm->keymat_bytes(), 36u);  // 32-byte key + 4-byte salt
  EXPECT_EQ(gcm->iv_bytes, 8u);
  EXPECT_EQ(gcm->icv_bytes, 16u);
  EXPECT_EQ(gcm->kernel_name, "rfc4106(gcm(aes))");

  auto chacha = LookupEncr(EncrId::kChaCha20Poly1305, 0);
  ASSERT_TRUE(chacha);
  EXPECT_EQ(chacha->keymat_bytes(), 36u);
  EXPECT_EQ(chacha->kernel_name, "rfc7539esp(chacha20,poly1305)");
  EXPECT_FALSE(LookupEncr(EncrId::kChaCha20Poly1305, 256));  // no attribute

  auto cbc = LookupEncr(EncrId::kAesCbc, 192);
  ASSERT_TRUE(cbc);
  EXPECT_EQ(cbc->keymat_bytes(), 24u);
  EXPECT_EQ(cbc->iv_bytes, 16u);
  EXPECT_FALSE(LookupEncr(EncrId::kAesCbc, 0));    // attribute required
  EXPECT_FALSE(LookupEncr(EncrId::kAesCbc, 512));  // no such AES
  EXPECT_EQ(LookupEncr(EncrId::kAesGcm8, 128)->icv_bytes, 8u);
  EXPECT_EQ(LookupEncr(EncrId::kAesGcm12, 128)->icv_bytes, 12u);
  EXPECT_FALSE(LookupEncr(EncrId::k3Des, 0));
}

TEST(RegistryTest, IntegrityAndPrfParameters) {
  EXPECT_EQ(LookupInteg(IntegId::kHmacSha2_256_128)->icv_bytes, 16u);
  EXPECT_EQ(LookupInteg(IntegId::kHmacSha2_384_192)->icv_bytes, 24u);
  EXPECT_EQ(LookupInteg(IntegId::kHmacSha2_512_256)->key_bytes, 64u);
  EXPECT_EQ(LookupInteg(IntegId::kHmacSha1_96)->icv_bytes, 12u);
  EXPECT_FALSE(LookupInteg(IntegId::kHmacMd5_96));
  EXPECT_EQ(LookupPrf(PrfId::kHmacSha2_384)->key_bytes, 48u);
  EXPECT_FALSE(LookupPrf(PrfId::kHmacMd5));
}

const TransformSet kGcm256{EncrId::kAesGcm16, 256, PrfId::kHmacSha2_256,
                           IntegId::kNone, KeGroup::kCurve25519};
const TransformSet kCbc128{EncrId::kAesCbc, 128, PrfId::kHmacSha2_256,
                           IntegId::kHmacSha2_256_128, KeGroup::kEcp256};

TEST(ProposalTest, PicksFirstAcceptablePeerProposal) {
  std::vector<Proposal> theirs = {
      // 3DES only: unacceptable.
      IkeProposal(1, {T(TransformType::kEncr, 3), T(TransformType::kPrf, 2),
                      T(TransformType::kInteg, 2), T(TransformType::kKe, 14)}),
      // AES-CBC-128 with SHA-256, ECP-256: acceptable.
      IkeProposal(2, {T(TransformType::kEncr, 12, 128),
                      T(TransformType::kPrf, 5), T(TransformType::kInteg, 12),
                      T(TransformType::kKe, 19)}),
      // GCM: also acceptable and our first choice, but offered later.
      IkeProposal(3, {T(TransformType::kEncr, 20, 256),
                      T(TransformType::kPrf, 5), T(TransformType::kKe, 31)}),
  };
  std::vector<TransformSet> ours = {kGcm256, kCbc128};
  auto chosen = SelectProposal(ProtocolId::kIke, ours, theirs);
  ASSERT_TRUE(chosen.ok()) << chosen.error().message;
  EXPECT_EQ(chosen->proposal_number, 2);
  EXPECT_EQ(chosen->transforms.encr, EncrId::kAesCbc);
  EXPECT_EQ(chosen->transforms.ke, KeGroup::kEcp256);
}

TEST(ProposalTest, PicksFromManyTransformsPerType) {
  std::vector<Proposal> theirs = {IkeProposal(
      1, {T(TransformType::kEncr, 12, 256), T(TransformType::kEncr, 20, 128),
          T(TransformType::kEncr, 20, 256), T(TransformType::kPrf, 7),
          T(TransformType::kPrf, 5), T(TransformType::kKe, 14),
          T(TransformType::kKe, 31)})};
  std::vector<TransformSet> ours = {kGcm256};
  auto chosen = SelectProposal(ProtocolId::kIke, ours, theirs);
  ASSERT_TRUE(chosen.ok()) << chosen.error().message;
  EXPECT_EQ(chosen->transforms.encr_key_bits, 256);
}

TEST(ProposalTest, KeyLengthMustMatch) {
  std::vector<Proposal> theirs = {
      IkeProposal(1, {T(TransformType::kEncr, 20, 128),
                      T(TransformType::kPrf, 5), T(TransformType::kKe, 31)}),
      IkeProposal(2, {T(TransformType::kEncr, 20),  // attribute missing
                      T(TransformType::kPrf, 5), T(TransformType::kKe, 31)})};
  std::vector<TransformSet> ours = {kGcm256};
  auto chosen = SelectProposal(ProtocolId::kIke, ours, theirs);
  ASSERT_FALSE(chosen.ok());
  EXPECT_EQ(chosen.error().code, ErrorCode::kNoProposalChosen);
}

TEST(ProposalTest, AeadRejectsProposalWithRealIntegrity) {
  std::vector<Proposal> theirs = {IkeProposal(
      1, {T(TransformType::kEncr, 20, 256), T(TransformType::kPrf, 5),
          T(TransformType::kInteg, 12), T(TransformType::kKe, 31)})};
  std::vector<TransformSet> ours = {kGcm256};
  EXPECT_FALSE(SelectProposal(ProtocolId::kIke, ours, theirs).ok());
  // INTEG NONE offered alongside is fine.
  theirs[0].transforms.push_back(T(TransformType::kInteg, 0));
  EXPECT_TRUE(SelectProposal(ProtocolId::kIke, ours, theirs).ok());
}

TEST(ProposalTest, SkipsUnknownTransformTypesAndAttributes) {
  Proposal unknown_type = IkeProposal(
      1, {T(TransformType::kEncr, 20, 256), T(TransformType::kPrf, 5),
          T(TransformType::kKe, 31), T(static_cast<TransformType>(9), 1)});
  Proposal unknown_attr = IkeProposal(
      2, {T(TransformType::kEncr, 20, 256), T(TransformType::kPrf, 5),
          T(TransformType::kKe, 31)});
  unknown_attr.transforms[0].has_unknown_attribute = true;
  std::vector<Proposal> theirs = {unknown_type, unknown_attr};
  std::vector<TransformSet> ours = {kGcm256};
  EXPECT_FALSE(SelectProposal(ProtocolId::kIke, ours, theirs).ok());
}

TEST(ProposalTest, EspWithAndWithoutPfsAndEsn) {
  TransformSet esp{EncrId::kAesGcm16, 128, PrfId::kHmacSha2_256,
                   IntegId::kNone, KeGroup::kNone, EsnId::kNoEsn};
  Proposal p{1, ProtocolId::kEsp, {0x11, 0x22, 0x33, 0x44},
             {T(TransformType::kEncr, 20, 128), T(TransformType::kEsn, 0),
              T(TransformType::kEsn, 1)}};
  std::vector<Proposal> theirs = {p};
  std::vector<TransformSet> ours = {esp};
  auto chosen = SelectProposal(ProtocolId::kEsp, ours, theirs);
  ASSERT_TRUE(chosen.ok()) << chosen.error().message;
  EXPECT_EQ(chosen->spi, (Bytes{0x11, 0x22, 0x33, 0x44}));
  // Our set wants PFS with ECP-256 but the peer offers none.
  ours[0].ke = KeGroup::kEcp256;
  EXPECT_FALSE(SelectProposal(ProtocolId::kEsp, ours, theirs).ok());
  theirs[0].transforms.push_back(T(TransformType::kKe, 19));
  EXPECT_TRUE(SelectProposal(ProtocolId::kEsp, ours, theirs).ok());
  // An IKE proposal never matches when selecting for ESP.
  theirs[0].protocol = ProtocolId::kIke;
  EXPECT_FALSE(SelectProposal(ProtocolId::kEsp, ours, theirs).ok());
}

TEST(ValidateTest, NamesTheOffendingTransform) {
  TransformSet bad = kGcm256;
  bad.integ = IntegId::kHmacSha2_256_128;
  auto st = ValidateTransformSet(ProtocolId::kIke, bad);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message.find("INTEG"), std::string::npos);
  bad = kCbc128;
  bad.ke = KeGroup::kModp1024;
  st = ValidateTransformSet(ProtocolId::kIke, bad);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message.find("KE transform 2"), std::string::npos);
}

TEST(KeySizesTest, IkeKeySizesPerTransform) {
  auto gcm = IkeKeySizesFor(kGcm256);
  ASSERT_TRUE(gcm.ok());
  EXPECT_EQ(gcm->prf_key, 32u);
  EXPECT_EQ(gcm->integ_key, 0u);
  EXPECT_EQ(gcm->encr_key, 36u);
  auto cbc = IkeKeySizesFor(kCbc128);
  ASSERT_TRUE(cbc.ok());
  EXPECT_EQ(cbc->integ_key, 32u);
  EXPECT_EQ(cbc->encr_key, 16u);
  EXPECT_EQ(cbc->total(), 3 * 32 + 2 * 32 + 2 * 16u);
}

Bytes Counting(size_t n) {
  Bytes b(n);
  for (size_t i = 0; i < n; ++i) b[i] = static_cast<uint8_t>(i);
  return b;
}

TEST(EspSplitTest, GcmKeyIncludesSalt) {
  TransformSet esp{EncrId::kAesGcm16, 256, PrfId::kHmacSha2_256,
                   IntegId::kNone, KeGroup::kNone};
  Bytes keymat = Counting(72);
  auto keys = SplitEspKeymat(esp, View(keymat));
  ASSERT_TRUE(keys.ok()) << keys.error().message;
  EXPECT_EQ(keys->algorithms.encryption_name, "rfc4106(gcm(aes))");
  EXPECT_EQ(keys->algorithms.icv_bits, 128u);
  EXPECT_TRUE(keys->algorithms.integrity_name.empty());
  EXPECT_EQ(ToBytes(keys->initiator_to_responder.encryption_key),
            Bytes(keymat.begin(), keymat.begin() + 36));
  EXPECT_EQ(ToBytes(keys->responder_to_initiator.encryption_key),
            Bytes(keymat.begin() + 36, keymat.end()));
  EXPECT_TRUE(keys->initiator_to_responder.integrity_key.empty());
}

TEST(EspSplitTest, ChaChaIs32BytesPlusSalt) {
  TransformSet esp{EncrId::kChaCha20Poly1305, 0, PrfId::kHmacSha2_256,
                   IntegId::kNone, KeGroup::kNone};
  auto alg = EspAlgorithmsFor(esp);
  ASSERT_TRUE(alg.ok());
  EXPECT_EQ(alg->encryption_name, "rfc7539esp(chacha20,poly1305)");
  EXPECT_EQ(alg->encryption_key_bytes, 36u);
  EXPECT_EQ(alg->keymat_bytes(), 72u);
}

TEST(EspSplitTest, CbcHmacOrderIsEncryptionThenIntegrityPerDirection) {
  TransformSet esp{EncrId::kAesCbc, 128, PrfId::kHmacSha2_256,
                   IntegId::kHmacSha2_256_128, KeGroup::kNone};
  Bytes keymat = Counting(2 * (16 + 32));
  auto keys = SplitEspKeymat(esp, View(keymat));
  ASSERT_TRUE(keys.ok());
  EXPECT_EQ(keys->algorithms.encryption_name, "cbc(aes)");
  EXPECT_EQ(keys->algorithms.integrity_name, "hmac(sha256)");
  EXPECT_EQ(keys->algorithms.icv_bits, 128u);
  EXPECT_EQ(keys->initiator_to_responder.encryption_key[0], 0);
  EXPECT_EQ(keys->initiator_to_responder.integrity_key[0], 16);
  EXPECT_EQ(keys->responder_to_initiator.encryption_key[0], 48);
  EXPECT_EQ(keys->responder_to_initiator.integrity_key[0], 64);
  EXPECT_EQ(keys->responder_to_initiator.integrity_key.size(), 32u);
  // A KEYMAT of the wrong size is refused with both sizes named.
  auto bad = SplitEspKeymat(esp, View(Counting(95)));
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("96"), std::string::npos);
}

}  // namespace
}  // namespace ike::crypto
