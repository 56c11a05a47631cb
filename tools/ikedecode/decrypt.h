// Decryption of SK payloads for ikedecode, given the IKE SA keys (e.g. from a
// peer's debug log). Uses Botan; the protocol library ike/wire stays free of
// cryptography.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "ike/wire/message.h"

namespace ikedecode {

// One line of a keys file:
//   ISPI RSPI ENCR SK_EI SK_ER [INTEG SK_AI SK_AR]
// SPIs and keys in hex. ENCR: aes-gcm-16 | aes-cbc | chacha20-poly1305
// (AEAD keys include their 4-byte salt, RFC 5282 / RFC 7634). INTEG (for
// aes-cbc): hmac-sha1-96 | hmac-sha2-256-128 | hmac-sha2-384-192 |
// hmac-sha2-512-256. '#' starts a comment line.
struct SaKeys {
  uint64_t initiator_spi = 0;
  uint64_t responder_spi = 0;
  std::string encryption;
  std::vector<uint8_t> sk_ei, sk_er;
  std::string integrity;
  std::vector<uint8_t> sk_ai, sk_ar;
};

// Returns an empty string on success, else an error naming file and line.
std::string LoadKeys(const std::string& path, std::vector<SaKeys>& keys);

const SaKeys* FindKeys(const std::vector<SaKeys>& keys, const ike::wire::Header& header);

struct Decrypted {
  std::string error;  // empty on success
  uint8_t first_inner = 0;
  std::vector<uint8_t> plaintext;  // the inner payload chain, padding removed
  ike::wire::Result<std::vector<ike::wire::Payload>> payloads =
      ike::wire::WireError{};
  // Whether EncodePayloadChain(payloads) reproduces `plaintext` exactly.
  bool reencodes_identically = false;
};

// Verifies and decrypts the SK payload of `datagram` (not SKF), using the
// initiator's or responder's keys according to the header's I flag, and
// decodes the inner chain with ike::wire::DecodePayloadChain.
Decrypted DecryptSk(std::span<const uint8_t> datagram, const ike::wire::Header& header,
                    const SaKeys& keys);

}  // namespace ikedecode
