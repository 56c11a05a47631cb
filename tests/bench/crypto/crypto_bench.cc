// Micro-benchmark of ike/crypto next to Botan's raw primitives doing the
// same work in the same run, so the ratio shows how much the IKE layer
// (validation, encoding, copies) costs on top of the crypto itself.
//
//   bazel run -c opt //tests/bench/crypto:crypto_bench [-- seconds_per_case]
#include <botan/aead.h>
#include <botan/auto_rng.h>
#include <botan/cipher_mode.h>
#include <botan/curve25519.h>
#include <botan/dh.h>
#include <botan/dl_group.h>
#include <botan/ec_group.h>
#include <botan/ecdh.h>
#include <botan/ecdsa.h>
#include <botan/ed25519.h>
#include <botan/mac.h>
#include <botan/pkcs8.h>
#include <botan/pubkey.h>
#include <botan/rsa.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <utility>

#include "ike/crypto/auth.h"
#include "ike/crypto/key_derivation.h"
#include "ike/crypto/key_exchange.h"
#include "ike/crypto/sk_payload.h"

namespace ike::crypto {
namespace {

double g_seconds = 0.5;

// Runs `op` repeatedly for about `seconds`; returns operations/second.
double Rate(const std::function<void()>& op, double seconds) {
  using Clock = std::chrono::steady_clock;
  size_t n = 0;
  const auto start = Clock::now();
  const auto deadline = start + std::chrono::duration<double>(seconds);
  auto now = start;
  do {
    for (int i = 0; i < 4; ++i) op();
    n += 4;
    now = Clock::now();
  } while (now < deadline);
  return n / std::chrono::duration<double>(now - start).count();
}

// Measures two operations in alternating slices, so that load from other
// processes hits both alike; returns {ours, raw} operations/second.
std::pair<double, double> RatePair(const std::function<void()>& ours,
                                   const std::function<void()>& raw) {
  ours();
  raw();
  constexpr int kSlices = 8;
  double a = 0, b = 0;
  for (int i = 0; i < kSlices; ++i) {
    a += Rate(ours, g_seconds / kSlices);
    b += Rate(raw, g_seconds / kSlices);
  }
  return {a / kSlices, b / kSlices};
}

void Row(const std::string& what, double ours, double raw) {
  std::printf("%-44s %12.0f %12.0f %7.2f\n", what.c_str(), ours, raw,
              raw > 0 ? ours / raw : 0.0);
}

void Check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "benchmark setup failed: %s\n", what);
    std::exit(1);
  }
}

void BenchKeyExchange(RandomSource& random, Botan::RandomNumberGenerator& rng) {
  for (KeGroup g : {KeGroup::kCurve25519, KeGroup::kEcp256, KeGroup::kEcp384,
                    KeGroup::kEcp521, KeGroup::kModp2048, KeGroup::kModp3072,
                    KeGroup::kModp4096}) {
    const KeGroupInfo info = *LookupKeGroup(g);
    auto peer = KeyExchange::Generate(g, random);
    Check(peer.ok(), "peer key");
    const Bytes peer_value = (*peer)->public_value();
    auto ours_op = [&] {
      auto kx = KeyExchange::Generate(g, random);
      auto s = (*kx)->ComputeSharedSecret(View(peer_value));
      Check(s.ok(), "agreement");
    };
    std::function<void()> raw_op;
    std::optional<Botan::EC_Group> ec_group;
    std::optional<Botan::DL_Group> dl_group;
    Bytes sec1 = {0x04};
    if (info.kind == KeKind::kCurve25519) {
      raw_op = [&] {
        Botan::Curve25519_PrivateKey k(rng);
        auto s = k.agree(peer_value.data(), peer_value.size());
      };
    } else if (info.kind == KeKind::kEcp) {
      ec_group.emplace(info.botan_group_name);
      sec1.insert(sec1.end(), peer_value.begin(), peer_value.end());
      raw_op = [&] {
        Botan::ECDH_PrivateKey k(rng, *ec_group);
        Botan::PK_Key_Agreement ka(k, rng, "Raw");
        auto s = ka.derive_key(0, sec1.data(), sec1.size());
      };
    } else {
      dl_group.emplace(info.botan_group_name);
      raw_op = [&] {
        Botan::DH_PrivateKey k(rng, *dl_group);
        Botan::PK_Key_Agreement ka(k, rng, "Raw");
        auto s = ka.derive_key(0, peer_value.data(), peer_value.size());
      };
    }
    auto [ours, raw] = RatePair(ours_op, raw_op);
    Row("KE " + info.display_name + " keygen+agree", ours, raw);
  }
}

void BenchAuth(RandomSource& random, Botan::RandomNumberGenerator& rng) {
  const Bytes octets(400, 0x5c);  // typical size of signed octets
  struct Case {
    const char* name;
    std::unique_ptr<Botan::Private_Key> key;
    HashAlgorithm hash;
    bool pss;
    std::string padding;
    Botan::Signature_Format format;
  };
  Case cases[] = {
      {"Ed25519", std::make_unique<Botan::Ed25519_PrivateKey>(rng),
       HashAlgorithm::kIdentity, false, "Pure", Botan::IEEE_1363},
      {"ECDSA P-256 SHA-256",
       std::make_unique<Botan::ECDSA_PrivateKey>(rng,
                                                 Botan::EC_Group("secp256r1")),
       HashAlgorithm::kSha2_256, false, "EMSA1(SHA-256)",
       Botan::DER_SEQUENCE},
      {"ECDSA P-384 SHA-384",
       std::make_unique<Botan::ECDSA_PrivateKey>(rng,
                                                 Botan::EC_Group("secp384r1")),
       HashAlgorithm::kSha2_384, false, "EMSA1(SHA-384)",
       Botan::DER_SEQUENCE},
      {"RSA-2048 PSS SHA-256", std::make_unique<Botan::RSA_PrivateKey>(rng, 2048),
       HashAlgorithm::kSha2_256, true, "EMSA4(SHA-256,MGF1,32)",
       Botan::IEEE_1363},
      {"RSA-2048 PKCS1 SHA-256",
       std::make_unique<Botan::RSA_PrivateKey>(rng, 2048),
       HashAlgorithm::kSha2_256, false, "EMSA3(SHA-256)", Botan::IEEE_1363},
  };
  const auto hashes = SupportedSignatureHashes();
  for (Case& c : cases) {
    Secret pkcs8 = Botan::PKCS8::BER_encode(*c.key);
    auto key = PrivateKey::FromBytes(View(pkcs8), c.name);
    Check(key.ok(), "load key");
    SignatureOptions opts{c.hash, c.pss};
    auto auth_signer = AuthSigner::Create(*key, AuthMethod::kDigitalSignature,
                                          opts, random);
    Check(auth_signer.ok(), "signer");
    auto ours_sign_op = [&] {
      auto a = auth_signer->Sign(View(octets));
      Check(a.ok(), "sign");
    };
    Botan::PK_Signer signer(*c.key, rng, c.padding, c.format);
    auto raw_sign_op = [&] {
      auto s = signer.sign_message(octets.data(), octets.size(), rng);
    };
    auto [ours_sign, raw_sign] = RatePair(ours_sign_op, raw_sign_op);
    Row(std::string("AUTH sign ") + c.name, ours_sign, raw_sign);

    auto auth = SignAuth(*key, AuthMethod::kDigitalSignature, opts,
                         View(octets), random);
    auto ours_verify_op = [&] {
      Check(VerifyAuth(key->public_key(), AuthMethod::kDigitalSignature,
                       View(*auth), View(octets), hashes)
                .ok(),
            "verify");
    };
    const size_t sig_offset = 1 + (*auth)[0];
    Botan::PK_Verifier verifier(*c.key, c.padding, c.format);
    auto raw_verify_op = [&] {
      Check(verifier.verify_message(octets.data(), octets.size(),
                                    auth->data() + sig_offset,
                                    auth->size() - sig_offset),
            "raw verify");
    };
    auto [ours_verify, raw_verify] = RatePair(ours_verify_op, raw_verify_op);
    Row(std::string("AUTH verify ") + c.name, ours_verify, raw_verify);
  }
  const Bytes psk(32, 0x11);
  auto ours_psk_op = [&] {
    auto a = ComputeSharedKeyAuth(PrfId::kHmacSha2_256, View(psk),
                                  View(octets));
  };
  auto hmac = Botan::MessageAuthenticationCode::create_or_throw("HMAC(SHA-256)");
  const std::string pad = "Key Pad for IKEv2";
  auto raw_psk_op = [&] {
    hmac->set_key(psk.data(), psk.size());
    auto inner = hmac->process(pad);
    hmac->set_key(inner);
    auto out = hmac->process(octets.data(), octets.size());
  };
  auto [ours_psk, raw_psk] = RatePair(ours_psk_op, raw_psk_op);
  Row("AUTH PSK HMAC-SHA2-256", ours_psk, raw_psk);
}

void BenchSk(RandomSource& random) {
  const size_t kPayload = 300;  // a typical IKE_AUTH inner payload chain
  struct Case {
    const char* name;
    TransformSet set;
  };
  const Case cases[] = {
      {"AES-GCM-16-128", {EncrId::kAesGcm16, 128, PrfId::kHmacSha2_256,
                          IntegId::kNone, KeGroup::kCurve25519}},
      {"AES-GCM-16-256", {EncrId::kAesGcm16, 256, PrfId::kHmacSha2_256,
                          IntegId::kNone, KeGroup::kCurve25519}},
      {"CHACHA20-POLY1305", {EncrId::kChaCha20Poly1305, 0,
                             PrfId::kHmacSha2_256, IntegId::kNone,
                             KeGroup::kCurve25519}},
      {"AES-CBC-128 + HMAC-SHA2-256-128",
       {EncrId::kAesCbc, 128, PrfId::kHmacSha2_256,
        IntegId::kHmacSha2_256_128, KeGroup::kEcp256}},
      {"AES-CBC-256 + HMAC-SHA2-512-256",
       {EncrId::kAesCbc, 256, PrfId::kHmacSha2_256,
        IntegId::kHmacSha2_512_256, KeGroup::kEcp256}},
  };
  for (const Case& c : cases) {
    const EncrInfo encr = *LookupEncr(c.set.encr, c.set.encr_key_bits);
    const IntegInfo integ = *LookupInteg(c.set.integ);
    const Bytes ek = random.Generate(encr.keymat_bytes());
    const Bytes ak = random.Generate(integ.key_bytes);
    auto cipher = SkCipher::Create(c.set, View(ek), View(ak));
    Check(cipher.ok(), "cipher");
    const Bytes plaintext = random.Generate(kPayload);
    const Bytes prefix(32, 0x21);
    auto ours_protect_op = [&] {
      auto body = cipher->Protect(View(prefix), View(plaintext), random);
    };
    auto body = cipher->Protect(View(prefix), View(plaintext), random);
    auto ours_unprotect_op = [&] {
      Check(cipher->Unprotect(View(prefix), View(*body)).ok(), "unprotect");
    };

    // Botan alone: the same cipher over the same byte counts.
    // Plaintext + padding + pad length, as the cipher sees it.
    const size_t padded = body->size() - encr.iv_bytes - cipher->icv_size();
    double ours_protect = 0, ours_unprotect = 0;
    double raw_protect = 0, raw_unprotect = 0;
    const Bytes iv(encr.iv_bytes, 0x33);
    if (encr.aead) {
      auto enc = Botan::AEAD_Mode::create_or_throw(encr.botan_name,
                                                   Botan::ENCRYPTION);
      auto dec = Botan::AEAD_Mode::create_or_throw(encr.botan_name,
                                                   Botan::DECRYPTION);
      enc->set_key(ek.data(), encr.key_bytes);
      dec->set_key(ek.data(), encr.key_bytes);
      Bytes nonce(ek.begin() + encr.key_bytes, ek.end());
      nonce.insert(nonce.end(), iv.begin(), iv.end());
      Botan::secure_vector<uint8_t> pt(padded, 0x44), ct;
      auto raw_protect_op = [&] {
        ct = pt;
        enc->set_associated_data(prefix.data(), prefix.size());
        enc->start(nonce);
        enc->finish(ct);
      };
      auto raw_unprotect_op = [&] {
        Botan::secure_vector<uint8_t> buf = ct;
        dec->set_associated_data(prefix.data(), prefix.size());
        dec->start(nonce);
        dec->finish(buf);
      };
      std::tie(ours_protect, raw_protect) =
          RatePair(ours_protect_op, raw_protect_op);
      std::tie(ours_unprotect, raw_unprotect) =
          RatePair(ours_unprotect_op, raw_unprotect_op);
    } else {
      auto enc = Botan::Cipher_Mode::create_or_throw(encr.botan_name,
                                                     Botan::ENCRYPTION);
      auto dec = Botan::Cipher_Mode::create_or_throw(encr.botan_name,
                                                     Botan::DECRYPTION);
      auto mac = Botan::MessageAuthenticationCode::create_or_throw(
          integ.botan_name);
      enc->set_key(ek.data(), encr.key_bytes);
      dec->set_key(ek.data(), encr.key_bytes);
      mac->set_key(ak.data(), ak.size());
      Botan::secure_vector<uint8_t> pt(padded, 0x44), ct;
      auto raw_protect_op = [&] {
        ct = pt;
        enc->start(iv);
        enc->finish(ct);
        mac->update(prefix.data(), prefix.size());
        mac->update(iv.data(), iv.size());
        mac->update(ct);
        auto tag = mac->final();
      };
      auto raw_unprotect_op = [&] {
        mac->update(prefix.data(), prefix.size());
        mac->update(iv.data(), iv.size());
        mac->update(ct);
        auto tag = mac->final();
        Botan::secure_vector<uint8_t> buf = ct;
        dec->start(iv);
        dec->finish(buf);
      };
      std::tie(ours_protect, raw_protect) =
          RatePair(ours_protect_op, raw_protect_op);
      std::tie(ours_unprotect, raw_unprotect) =
          RatePair(ours_unprotect_op, raw_unprotect_op);
    }
    Row(std::string("SK protect 300B ") + c.name, ours_protect, raw_protect);
    Row(std::string("SK unprotect 300B ") + c.name, ours_unprotect,
        raw_unprotect);
  }
}

void BenchDerivation(RandomSource& random) {
  const TransformSet set{EncrId::kAesGcm16, 256, PrfId::kHmacSha2_256,
                         IntegId::kNone, KeGroup::kCurve25519};
  const Bytes ni = random.Generate(32), nr = random.Generate(32);
  const Bytes gir = random.Generate(32), spi_i(8, 1), spi_r(8, 2);
  auto ours_op = [&] {
    auto s = ComputeSkeyseed(set.prf, View(ni), View(nr), View(gir));
    auto k = DeriveIkeSaKeys(set, View(*s), View(ni), View(nr), View(spi_i),
                             View(spi_r));
  };
  // Raw: the same 1 + 6 HMAC-SHA-256 computations (SKEYSEED, 6 prf+ blocks
  // for 3*32 + 2*36 = 168 bytes).
  auto hmac = Botan::MessageAuthenticationCode::create_or_throw("HMAC(SHA-256)");
  auto raw_op = [&] {
    Bytes key = ni;
    key.insert(key.end(), nr.begin(), nr.end());
    hmac->set_key(key);
    auto skeyseed = hmac->process(gir);
    hmac->set_key(skeyseed);
    Botan::secure_vector<uint8_t> t;
    for (uint8_t i = 1; i <= 6; ++i) {
      hmac->update(t);
      hmac->update(ni);
      hmac->update(nr);
      hmac->update(spi_i);
      hmac->update(spi_r);
      hmac->update(i);
      t = hmac->final();
    }
  };
  auto [ours, raw] = RatePair(ours_op, raw_op);
  Row("SKEYSEED + SK_* (GCM-256, PRF-SHA256)", ours, raw);
}

}  // namespace
}  // namespace ike::crypto

int main(int argc, char** argv) {
  if (argc > 1) ike::crypto::g_seconds = std::atof(argv[1]);
  // The userspace DRBG the daemon uses (one getrandom per IV would
  // dominate SK protection).
  ike::crypto::DrbgRandomSource random;
  // Raw Botan draws from the same generator, so RNG speed does not skew
  // the ratio (AutoSeeded_RNG costs ~34 us per request here).
  Botan::RandomNumberGenerator& rng = random.AsBotan();
  std::printf("%-44s %12s %12s %7s\n", "operation", "ike ops/s", "botan ops/s",
              "ratio");
  ike::crypto::BenchKeyExchange(random, rng);
  ike::crypto::BenchAuth(random, rng);
  ike::crypto::BenchSk(random);
  ike::crypto::BenchDerivation(random);
  return 0;
}
