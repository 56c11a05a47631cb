// Reads key and certificate files and hands their bytes to ike/crypto's
// parsers, so ike/ itself never touches the file system. Every error message
// starts with the path.
#pragma once

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

}  // namespace btnsd::daemon
