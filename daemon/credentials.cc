#include "daemon/credentials.h"

#include "daemon/credential_files.h"

namespace btnsd::daemon {

CredentialLoad LoadCredentials(const ike::policy::PolicySnapshot& snapshot) {
  CredentialLoad load;
  for (const auto& identity : snapshot.identities) {
    ike::sa::LocalCredential credential;
    if (!identity.private_key_file.empty()) {
      auto key = LoadPrivateKeyFile(identity.private_key_file);
      if (!key.ok()) {
        load.errors.push_back("identity " + identity.name + ": " +
                              key.error().message);
        continue;
      }
      credential.private_key = std::move(key.value());
    }
    if (identity.credential == ike::policy::CredentialKind::kCertificate) {
      auto chain =
          LoadCertificateChainFile(identity.certificate_file);
      if (!chain.ok()) {
        load.errors.push_back("identity " + identity.name + ": " +
                              chain.error().message);
        continue;
      }
      credential.certificate_chain = std::move(chain.value());
    }
    load.store.local.emplace(identity.name, std::move(credential));
  }
  for (const auto& entry : snapshot.pad.entries()) {
    for (const auto& file : entry.ca_files) {
      if (load.store.trust_anchors.count(file) != 0) continue;
      auto chain = LoadCertificateChainFile(file);
      if (!chain.ok()) {
        load.errors.push_back("pad entry " + entry.name + ": " +
                              chain.error().message);
        continue;
      }
      load.store.trust_anchors.emplace(file, std::move(chain.value()));
    }
    for (const auto& file : entry.pinned_key_files) {
      if (load.store.pinned_keys.count(file) != 0) continue;
      auto key = LoadPublicKeyFile(file);
      if (!key.ok()) {
        load.errors.push_back("pad entry " + entry.name + ": " +
                              key.error().message);
        continue;
      }
      load.store.pinned_keys.emplace(file, std::move(key.value()));
    }
  }
  return load;
}

}  // namespace btnsd::daemon
