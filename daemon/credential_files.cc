#include "daemon/credential_files.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>

namespace btnsd::daemon {

using ike::crypto::ErrorCode;
using ike::crypto::MakeError;
using ike::crypto::View;
using ike::crypto::Bytes;
using ike::crypto::Certificate;
using ike::crypto::PrivateKey;
using ike::crypto::PublicKey;
using ike::crypto::Result;
namespace {
// Key files are small; refuse anything that is clearly not one.
constexpr size_t kMaxCredentialFileBytes = 1 << 20;
}  // namespace

Result<Bytes> ReadCredentialFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return MakeError(ErrorCode::kKeyLoadFailed,
                     path + ": cannot open: " + std::strerror(errno));
  }
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg();
  if (size < 0 || size_t(size) > kMaxCredentialFileBytes) {
    return MakeError(ErrorCode::kKeyLoadFailed,
                     path + ": larger than 1 MiB, not a key or certificate");
  }
  in.seekg(0, std::ios::beg);
  Bytes data(static_cast<size_t>(size));
  if (size > 0 && !in.read(reinterpret_cast<char*>(data.data()), size)) {
    return MakeError(ErrorCode::kKeyLoadFailed, path + ": read failed");
  }
  if (data.empty()) {
    return MakeError(ErrorCode::kKeyLoadFailed, path + ": file is empty");
  }
  return data;
}

Result<PrivateKey> LoadPrivateKeyFile(const std::string& path) {
  auto data = ReadCredentialFile(path);
  if (!data) return data.error();
  return PrivateKey::FromBytes(View(*data), path);
}

Result<PublicKey> LoadPublicKeyFile(const std::string& path) {
  auto data = ReadCredentialFile(path);
  if (!data) return data.error();
  return PublicKey::FromSpki(View(*data), path);
}

Result<std::vector<Certificate>> LoadCertificateChainFile(
    const std::string& path) {
  auto data = ReadCredentialFile(path);
  if (!data) return data.error();
  return Certificate::ChainFromBytes(View(*data), path);
}

}  // namespace btnsd::daemon
