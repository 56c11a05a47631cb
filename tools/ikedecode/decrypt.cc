#include "tools/ikedecode/decrypt.h"

#include <botan/aead.h>
#include <botan/cipher_mode.h>
#include <botan/mac.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <fstream>
#include <sstream>

namespace ikedecode {
namespace {

constexpr size_t kAeadSaltSize = 4;
constexpr size_t kAeadIvSize = 8;
constexpr size_t kAeadTagSize = 16;
constexpr size_t kCbcIvSize = 16;

bool ParseHex(const std::string& text, std::vector<uint8_t>& out) {
  if (text.size() % 2) return false;
  out.clear();
  for (size_t i = 0; i < text.size(); i += 2) {
    unsigned value = 0;
    if (std::sscanf(text.substr(i, 2).c_str(), "%2x", &value) != 1 ||
        !std::isxdigit(static_cast<unsigned char>(text[i])) ||
        !std::isxdigit(static_cast<unsigned char>(text[i + 1]))) {
      return false;
    }
    out.push_back(static_cast<uint8_t>(value));
  }
  return true;
}

bool ParseSpi(const std::string& text, uint64_t& spi) {
  std::vector<uint8_t> bytes;
  if (!ParseHex(text, bytes) || bytes.size() != 8) return false;
  spi = 0;
  for (uint8_t b : bytes) spi = (spi << 8) | b;
  return true;
}

struct IntegAlgorithm {
  const char* name;
  const char* botan;
  size_t icv_size;
};
constexpr IntegAlgorithm kIntegAlgorithms[] = {
    {"hmac-sha1-96", "HMAC(SHA-1)", 12},
    {"hmac-sha2-256-128", "HMAC(SHA-256)", 16},
    {"hmac-sha2-384-192", "HMAC(SHA-384)", 24},
    {"hmac-sha2-512-256", "HMAC(SHA-512)", 32},
};

const IntegAlgorithm* FindInteg(const std::string& name) {
  for (const IntegAlgorithm& algorithm : kIntegAlgorithms) {
    if (name == algorithm.name) return &algorithm;
  }
  return nullptr;
}

}  // namespace

std::string LoadKeys(const std::string& path, std::vector<SaKeys>& keys) {
  std::ifstream file(path);
  if (!file) return path + ": cannot open for reading";
  std::string line;
  for (size_t number = 1; std::getline(file, line); ++number) {
    const std::string where = path + ":" + std::to_string(number) + ": ";
    std::istringstream fields(line);
    std::vector<std::string> f;
    for (std::string field; fields >> field;) f.push_back(field);
    if (f.empty() || f[0][0] == '#') continue;
    if (f.size() != 5 && f.size() != 8) {
      return where + "expected ISPI RSPI ENCR SK_EI SK_ER [INTEG SK_AI SK_AR], got " +
             std::to_string(f.size()) + " fields";
    }
    SaKeys k;
    if (!ParseSpi(f[0], k.initiator_spi) || !ParseSpi(f[1], k.responder_spi)) {
      return where + "SPIs must be 16 hex digits";
    }
    k.encryption = f[2];
    if (!ParseHex(f[3], k.sk_ei) || !ParseHex(f[4], k.sk_er)) return where + "SK_e keys must be hex";
    if (k.encryption == "aes-gcm-16" || k.encryption == "chacha20-poly1305") {
      if (f.size() != 5) return where + k.encryption + " is an AEAD: no integrity keys";
      const size_t size = k.sk_ei.size() - kAeadSaltSize;
      if (k.sk_ei.size() != k.sk_er.size() ||
          (k.encryption == "aes-gcm-16" ? (size != 16 && size != 24 && size != 32) : size != 32)) {
        return where + "AEAD keys must be the cipher key plus a 4-byte salt";
      }
    } else if (k.encryption == "aes-cbc") {
      if (f.size() != 8 || !FindInteg(f[5])) {
        return where + "aes-cbc needs INTEG (hmac-sha1-96, hmac-sha2-256-128, "
                       "hmac-sha2-384-192, hmac-sha2-512-256) and its two keys";
      }
      k.integrity = f[5];
      if (!ParseHex(f[6], k.sk_ai) || !ParseHex(f[7], k.sk_ar)) return where + "SK_a keys must be hex";
    } else {
      return where + "ENCR must be aes-gcm-16, aes-cbc or chacha20-poly1305, got '" + f[2] + "'";
    }
    keys.push_back(std::move(k));
  }
  return {};
}

const SaKeys* FindKeys(const std::vector<SaKeys>& keys, const ike::wire::Header& header) {
  for (const SaKeys& k : keys) {
    if (k.initiator_spi == header.initiator_spi && k.responder_spi == header.responder_spi) return &k;
  }
  return nullptr;
}

Decrypted DecryptSk(std::span<const uint8_t> datagram, const ike::wire::Header& header,
                    const SaKeys& keys) {
  Decrypted result;
  auto location = ike::wire::LocateSk(datagram);
  if (!location.ok()) {
    result.error = location.error().message;
    return result;
  }
  if (location->type != ike::wire::PayloadType::kSk) {
    result.error = "SKF fragments are not reassembled";
    return result;
  }
  result.first_inner = location->first_inner;
  const bool from_initiator = header.IsInitiator();
  const std::vector<uint8_t>& sk_e = from_initiator ? keys.sk_ei : keys.sk_er;
  const std::span<const uint8_t> aad = datagram.first(location->body_offset);
  const std::span<const uint8_t> body = datagram.subspan(location->body_offset, location->body_length);
  Botan::secure_vector<uint8_t> plain;
  try {
    if (keys.encryption == "aes-cbc") {
      const IntegAlgorithm* integ = FindInteg(keys.integrity);
      if (body.size() < kCbcIvSize + integ->icv_size ||
          (body.size() - kCbcIvSize - integ->icv_size) % 16 != 0) {
        result.error = "SK body size does not fit AES-CBC with this ICV";
        return result;
      }
      // The ICV covers the whole message up to the ICV itself (RFC 7296 3.14).
      auto mac = Botan::MessageAuthenticationCode::create_or_throw(integ->botan);
      const std::vector<uint8_t>& sk_a = from_initiator ? keys.sk_ai : keys.sk_ar;
      mac->set_key(sk_a.data(), sk_a.size());
      mac->update(datagram.data(), datagram.size() - integ->icv_size);
      const Botan::secure_vector<uint8_t> tag = mac->final();
      if (!std::equal(tag.begin(), tag.begin() + integ->icv_size,
                      datagram.end() - integ->icv_size)) {
        result.error = "integrity check failed (wrong SK_a or corrupted message)";
        return result;
      }
      auto cipher = Botan::Cipher_Mode::create_or_throw(
          "AES-" + std::to_string(sk_e.size() * 8) + "/CBC/NoPadding", Botan::DECRYPTION);
      cipher->set_key(sk_e.data(), sk_e.size());
      cipher->start(body.data(), kCbcIvSize);
      plain.assign(body.begin() + kCbcIvSize, body.end() - integ->icv_size);
      cipher->finish(plain);
    } else {
      if (body.size() < kAeadIvSize + kAeadTagSize) {
        result.error = "SK body shorter than IV and ICV";
        return result;
      }
      const size_t key_size = sk_e.size() - kAeadSaltSize;
      const std::string name = keys.encryption == "aes-gcm-16"
                                   ? "AES-" + std::to_string(key_size * 8) + "/GCM(16)"
                                   : "ChaCha20Poly1305";
      auto aead = Botan::AEAD_Mode::create_or_throw(name, Botan::DECRYPTION);
      aead->set_key(sk_e.data(), key_size);
      aead->set_associated_data(aad.data(), aad.size());
      std::vector<uint8_t> nonce(sk_e.begin() + key_size, sk_e.end());
      nonce.insert(nonce.end(), body.begin(), body.begin() + kAeadIvSize);
      aead->start(nonce);
      plain.assign(body.begin() + kAeadIvSize, body.end());
      aead->finish(plain);
    }
  } catch (const std::exception& e) {
    result.error = std::string("decryption failed: ") + e.what();
    return result;
  }
  if (plain.empty() || plain.back() + 1u > plain.size()) {
    result.error = "pad length exceeds the decrypted data";
    return result;
  }
  result.plaintext.assign(plain.begin(), plain.end() - plain.back() - 1);
  // Error offsets are then relative to the start of the decrypted chain.
  result.payloads = ike::wire::DecodePayloadChain(result.first_inner, result.plaintext);
  if (result.payloads.ok()) {
    auto encoded = ike::wire::EncodePayloadChain(result.payloads.value());
    result.reencodes_identically = encoded.ok() && encoded->bytes == result.plaintext &&
                                   encoded->first_type == result.first_inner;
  }
  return result;
}

}  // namespace ikedecode
