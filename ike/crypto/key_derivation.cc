#include "ike/crypto/key_derivation.h"

namespace ike::crypto {
namespace {

Secret Take(ByteView all, size_t& offset, size_t length) {
  Secret out(all.begin() + offset, all.begin() + offset + length);
  offset += length;
  return out;
}

Bytes Concat(std::initializer_list<ByteView> parts) {
  Bytes out;
  for (ByteView p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

}  // namespace

Result<Secret> ComputeSkeyseed(PrfId prf_id, ByteView nonce_i,
                               ByteView nonce_r, ByteView shared_secret) {
  auto prf = Prf::Create(prf_id);
  if (!prf) return prf.error();
  Secret key(nonce_i.begin(), nonce_i.end());
  key.insert(key.end(), nonce_r.begin(), nonce_r.end());
  return prf->Compute(View(key), shared_secret);
}

Result<Secret> ComputeRekeySkeyseed(PrfId old_prf, ByteView old_sk_d,
                                    ByteView new_shared_secret,
                                    ByteView nonce_i, ByteView nonce_r) {
  auto prf = Prf::Create(old_prf);
  if (!prf) return prf.error();
  return prf->Compute(old_sk_d, {new_shared_secret, nonce_i, nonce_r});
}

Result<IkeKeySizes> IkeKeySizesFor(const TransformSet& set) {
  if (auto st = ValidateTransformSet(ProtocolId::kIke, set); !st) {
    return st.error();
  }
  IkeKeySizes sizes;
  sizes.prf_key = LookupPrf(set.prf)->key_bytes;
  sizes.integ_key = LookupInteg(set.integ)->key_bytes;
  sizes.encr_key = LookupEncr(set.encr, set.encr_key_bits)->keymat_bytes();
  return sizes;
}

Result<IkeSaKeys> DeriveIkeSaKeys(const TransformSet& set, ByteView skeyseed,
                                  ByteView nonce_i, ByteView nonce_r,
                                  ByteView spi_i, ByteView spi_r) {
  if (spi_i.size() != 8 || spi_r.size() != 8) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "IKE SPIs must be 8 bytes each");
  }
  auto sizes = IkeKeySizesFor(set);
  if (!sizes) return sizes.error();
  auto prf = Prf::Create(set.prf);
  if (!prf) return prf.error();
  Bytes seed = Concat({nonce_i, nonce_r, spi_i, spi_r});
  auto stream = prf->Expand(skeyseed, View(seed), sizes->total());
  if (!stream) return stream.error();
  ByteView all = View(*stream);
  size_t off = 0;
  IkeSaKeys keys;
  keys.sk_d = Take(all, off, sizes->prf_key);
  keys.sk_ai = Take(all, off, sizes->integ_key);
  keys.sk_ar = Take(all, off, sizes->integ_key);
  keys.sk_ei = Take(all, off, sizes->encr_key);
  keys.sk_er = Take(all, off, sizes->encr_key);
  keys.sk_pi = Take(all, off, sizes->prf_key);
  keys.sk_pr = Take(all, off, sizes->prf_key);
  return keys;
}

Result<Secret> DeriveChildKeymat(PrfId prf_id, ByteView sk_d,
                                 ByteView new_shared_secret, ByteView nonce_i,
                                 ByteView nonce_r, size_t length) {
  auto prf = Prf::Create(prf_id);
  if (!prf) return prf.error();
  Secret seed(new_shared_secret.begin(), new_shared_secret.end());
  seed.insert(seed.end(), nonce_i.begin(), nonce_i.end());
  seed.insert(seed.end(), nonce_r.begin(), nonce_r.end());
  return prf->Expand(sk_d, View(seed), length);
}

Result<EspAlgorithms> EspAlgorithmsFor(const TransformSet& set) {
  if (auto st = ValidateTransformSet(ProtocolId::kEsp, set); !st) {
    return st.error();
  }
  auto encr = LookupEncr(set.encr, set.encr_key_bits);
  auto integ = LookupInteg(set.integ);
  EspAlgorithms alg;
  alg.aead = encr->aead;
  alg.encryption_name = encr->kernel_name;
  alg.encryption_key_bytes = encr->keymat_bytes();
  if (encr->aead) {
    alg.icv_bits = encr->icv_bytes * 8;
  } else {
    alg.integrity_name = integ->kernel_name;
    alg.integrity_key_bytes = integ->key_bytes;
    alg.icv_bits = integ->icv_bytes * 8;
  }
  return alg;
}

Result<EspKeys> SplitEspKeymat(const TransformSet& set, ByteView keymat) {
  auto alg = EspAlgorithmsFor(set);
  if (!alg) return alg.error();
  if (keymat.size() != alg->keymat_bytes()) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "KEYMAT is " + std::to_string(keymat.size()) +
                         " bytes, the ESP transforms need " +
                         std::to_string(alg->keymat_bytes()));
  }
  EspKeys keys;
  keys.algorithms = *alg;
  size_t off = 0;
  keys.initiator_to_responder.encryption_key =
      Take(keymat, off, alg->encryption_key_bytes);
  keys.initiator_to_responder.integrity_key =
      Take(keymat, off, alg->integrity_key_bytes);
  keys.responder_to_initiator.encryption_key =
      Take(keymat, off, alg->encryption_key_bytes);
  keys.responder_to_initiator.integrity_key =
      Take(keymat, off, alg->integrity_key_bytes);
  return keys;
}

}  // namespace ike::crypto
