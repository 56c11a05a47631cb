// File loading for credentials: the only part of ike/crypto that reads the
// file system. Every error message starts with the path.
#pragma once

#include <string>
#include <vector>

#include "ike/crypto/credentials.h"

namespace ike::crypto {

Result<Bytes> ReadCredentialFile(const std::string& path);
Result<PrivateKey> LoadPrivateKeyFile(const std::string& path);
Result<PublicKey> LoadPublicKeyFile(const std::string& path);
Result<std::vector<Certificate>> LoadCertificateChainFile(
    const std::string& path);

}  // namespace ike::crypto
