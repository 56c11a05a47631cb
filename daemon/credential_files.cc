#include "daemon/credential_files.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string_view>

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

// Text taken from an application's file (a PEM label) or from a parser that
// quotes the offending byte, made safe for a one-line log entry: printable
// ASCII only, at most `limit` characters.
std::string Printable(std::string_view text, size_t limit) {
  std::string out;
  for (unsigned char c : text) {
    if (out.size() == limit) {
      out += "...";
      break;
    }
    out += (c >= 0x20 && c < 0x7f) ? static_cast<char>(c) : '?';
  }
  return out;
}

ike::crypto::CryptoError Printable(ike::crypto::CryptoError error) {
  error.message = Printable(error.message, 300);
  return error;
}
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

Result<ApplicationCredential> ParseApplicationCredential(
    ike::crypto::ByteView pem) {
  const std::string text(pem.begin(), pem.end());
  auto bad = [](const std::string& why) {
    return MakeError(ErrorCode::kKeyLoadFailed, "credential file: " + why);
  };
  std::optional<std::string> key_block;
  std::string certificates;
  size_t position = 0;
  while (true) {
    const size_t begin = text.find("-----BEGIN ", position);
    if (begin == std::string::npos) break;
    const size_t label_end = text.find("-----", begin + 11);
    if (label_end == std::string::npos) return bad("unterminated PEM header");
    const std::string label = text.substr(begin + 11, label_end - begin - 11);
    const std::string shown_label = Printable(label, 40);
    const std::string end_marker = "-----END " + label + "-----";
    const size_t end = text.find(end_marker, label_end);
    if (end == std::string::npos)
      return bad("PEM block '" + shown_label + "' has no END line");
    const std::string block =
        text.substr(begin, end + end_marker.size() - begin) + "\n";
    position = end + end_marker.size();
    if (label == "PRIVATE KEY" || label == "RSA PRIVATE KEY" ||
        label == "EC PRIVATE KEY") {
      if (key_block) return bad("more than one private key");
      key_block = block;
    } else if (label == "ENCRYPTED PRIVATE KEY") {
      return bad("the private key is encrypted; btnsd takes unencrypted "
                 "PKCS#8 keys only (protect the file by its permissions)");
    } else if (label == "CERTIFICATE") {
      if (!key_block) return bad("a certificate comes before the private key");
      certificates += block;
    } else {
      return bad("unexpected PEM block '" + shown_label +
                 "' (expected PRIVATE KEY, then CERTIFICATE blocks)");
    }
  }
  if (!key_block) return bad("no PEM private key (-----BEGIN PRIVATE KEY-----)");
  auto key = PrivateKey::FromBytes(
      View(Bytes(key_block->begin(), key_block->end())), "credential file");
  if (!key) return Printable(key.error());
  ApplicationCredential out{std::move(*key), {}};
  if (!certificates.empty()) {
    auto chain = Certificate::ChainFromBytes(
        View(Bytes(certificates.begin(), certificates.end())), "credential file");
    if (!chain) return Printable(chain.error());
    if (chain->empty()) return bad("no certificate in the CERTIFICATE blocks");
    if (!((*chain)[0].public_key().spki_der() == out.key.public_key().spki_der()))
      return bad("the first certificate is not for the private key");
    out.certificate_chain = std::move(*chain);
  }
  return out;
}

Result<ApplicationCredential> LoadApplicationCredential(int fd) {
  struct stat st {};
  if (fstat(fd, &st) != 0)
    return MakeError(ErrorCode::kKeyLoadFailed,
                     std::string("credential file: ") + std::strerror(errno));
  if (!S_ISREG(st.st_mode))
    return MakeError(ErrorCode::kKeyLoadFailed,
                     "credential file: not a regular file");
  if (st.st_size <= 0)
    return MakeError(ErrorCode::kKeyLoadFailed, "credential file: empty");
  if (size_t(st.st_size) > kMaxApplicationCredentialBytes)
    return MakeError(ErrorCode::kKeyLoadFailed,
                     "credential file: larger than 64 KiB, not a key file");
  Bytes data(size_t(st.st_size));
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = pread(fd, data.data() + done, data.size() - done, off_t(done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0)
      return MakeError(ErrorCode::kKeyLoadFailed,
                       std::string("credential file: read failed: ") +
                           std::strerror(errno));
    if (n == 0) break;
    done += size_t(n);
  }
  data.resize(done);
  auto parsed = ParseApplicationCredential(View(data));
  // The key material read here lives on only inside the parsed key.
  std::fill(data.begin(), data.end(), 0);
  return parsed;
}

}  // namespace btnsd::daemon
