// A signing key inside a PKCS#11 token, used by the client library for an
// iToken's IPSEC_BTNS_CREDENTIAL. The application opened the session with
// the token's module (through p11-kit or its own dlopen) and logged in; the
// library only calls that module's functions: it reads the public key and
// asks C_Sign for the AUTH signatures btnsd requests. The private key never
// leaves the token: keys that are extractable or not sensitive are refused.
#pragma once

#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include <p11-kit/pkcs11.h>

namespace btns::client {

struct Pkcs11Key {
  CK_FUNCTION_LIST_PTR functions = nullptr;
  CK_SESSION_HANDLE session = 0;
  CK_OBJECT_HANDLE private_key = 0;
  CK_KEY_TYPE key_type = 0;  // CKK_EC, CKK_EC_EDWARDS or CKK_RSA
  // DER SubjectPublicKeyInfo of the matching public key object (same
  // CKA_ID): what btnsd sends as the raw public key (RFC 7670).
  std::vector<uint8_t> spki_der;
};

// `private_key` 0 picks the session's only private key that can sign.
// Errors are a sentence for the caller's "why".
std::variant<Pkcs11Key, std::string> OpenPkcs11Key(CK_FUNCTION_LIST_PTR functions,
                                                   CK_SESSION_HANDLE session,
                                                   CK_OBJECT_HANDLE private_key);

// Signs `octets` with a scheme named as btnsd names it ("ecdsa-sha256",
// "ecdsa-sha384", "ecdsa-sha512", "ed25519", "rsa-pkcs1-sha256", ...), in
// the mechanism's own output format (ECDSA: r || s).
std::variant<std::vector<uint8_t>, std::string> Pkcs11Sign(const Pkcs11Key& key,
                                                           const std::string& scheme,
                                                           const std::vector<uint8_t>& octets);

}  // namespace btns::client
