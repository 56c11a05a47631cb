// libFuzzer entry point for ParseApplicationCredential, the parser of the
// credential file an application hands the daemon (untrusted bytes). Besides
// "no crash, no sanitizer report, no escaping exception", it checks:
//  - an error has a message that starts with "credential file", is bounded
//    and has no control characters (it goes into the log as one line);
//  - an accepted credential is consistent: a certificate chain, if any,
//    starts with the certificate of the private key;
//  - parsing is deterministic (the same input gives the same answer).
#include <cstdio>
#include <cstdlib>
#include <string>

#include "daemon/credential_files.h"

namespace {

using btnsd::daemon::ApplicationCredential;
using btnsd::daemon::ParseApplicationCredential;
using ike::crypto::Result;

[[noreturn]] void Fail(const char* what) {
  std::fprintf(stderr, "property violated: %s\n", what);
  std::abort();
}

// Longest error the parser may produce for any input.
constexpr size_t kMaxErrorLength = 512;

void CheckError(const std::string& message) {
  if (message.rfind("credential file", 0) != 0)
    Fail("error message does not start with 'credential file'");
  if (message.size() > kMaxErrorLength) Fail("error message is unbounded");
  for (unsigned char c : message)
    if (c < 0x20 || c == 0x7f) Fail("error message has a control character");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > btnsd::daemon::kMaxApplicationCredentialBytes) return 0;
  const ike::crypto::ByteView input(data, size);
  Result<ApplicationCredential> parsed = ParseApplicationCredential(input);
  Result<ApplicationCredential> again = ParseApplicationCredential(input);
  if (parsed.ok() != again.ok()) Fail("parsing is not deterministic");
  if (!parsed.ok()) {
    CheckError(parsed.error().message);
    if (parsed.error().message != again.error().message)
      Fail("error message is not deterministic");
    return 0;
  }
  const ApplicationCredential& credential = parsed.value();
  if (!(credential.key.public_key().spki_der() ==
        again->key.public_key().spki_der()))
    Fail("the key differs between two parses");
  if (credential.certificate_chain.size() != again->certificate_chain.size())
    Fail("the chain length differs between two parses");
  if (!credential.certificate_chain.empty() &&
      !(credential.certificate_chain[0].public_key().spki_der() ==
        credential.key.public_key().spki_der()))
    Fail("accepted a chain whose first certificate is not the key's");
  return 0;
}
