// Reads the key and certificate files a policy snapshot names into the
// engine's CredentialStore (ike/ reads no files itself).
#pragma once

#include <string>
#include <vector>

#include "ike/policy/snapshot.h"
#include "ike/sa/engine.h"

namespace btnsd::daemon {

struct CredentialLoad {
  ike::sa::CredentialStore store;
  std::vector<std::string> errors;  // each names the file and the identity
  bool ok() const { return errors.empty(); }
};

CredentialLoad LoadCredentials(const ike::policy::PolicySnapshot& snapshot);

}  // namespace btnsd::daemon
