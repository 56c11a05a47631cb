// Reads key and certificate files and hands their bytes to ike/crypto's
// parsers, so ike/ itself never touches the file system. Every error message
// starts with the path.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "ike/crypto/credentials.h"

namespace btnsd::daemon {

ike::crypto::Result<ike::crypto::Bytes> ReadCredentialFile(
    const std::string& path);
ike::crypto::Result<ike::crypto::PrivateKey> LoadPrivateKeyFile(
    const std::string& path);
ike::crypto::Result<ike::crypto::PublicKey> LoadPublicKeyFile(
    const std::string& path);
ike::crypto::Result<std::vector<ike::crypto::Certificate>>
LoadCertificateChainFile(const std::string& path);

// A credential an application handed over as an open descriptor
// (IPSEC_BTNS_CREDENTIAL_FILE; the library opened it, so the daemon reads
// only what the caller could). Accepted content: PEM text with exactly one
// unencrypted private key ("PRIVATE KEY" PKCS#8, or "RSA PRIVATE KEY" /
// "EC PRIVATE KEY"), optionally followed by "CERTIFICATE" blocks (end
// entity first, then its chain). At most kMaxApplicationCredentialBytes.
struct ApplicationCredential {
  ike::crypto::PrivateKey key;
  std::vector<ike::crypto::Certificate> certificate_chain;
};
constexpr size_t kMaxApplicationCredentialBytes = 64 * 1024;
// Reads from offset 0 without moving the descriptor's offset. Errors say
// what was wrong with the content, never echo it.
ike::crypto::Result<ApplicationCredential> LoadApplicationCredential(int fd);
// The same, from bytes already read (for tests and the fuzzer).
ike::crypto::Result<ApplicationCredential> ParseApplicationCredential(
    ike::crypto::ByteView pem);

}  // namespace btnsd::daemon
