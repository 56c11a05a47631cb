// SaManager: placeholder body so the daemon can link against the API while
// the exchanges are being written.
#include "ike/sa/engine.h"

namespace ike::sa {

class SaManagerImpl {};

SaManager::SaManager(EngineSettings, policy::PolicySnapshotPtr,
                     CredentialStore, crypto::RandomSource&, SpiAllocator&)
    : impl_(std::make_unique<SaManagerImpl>()) {}
SaManager::~SaManager() = default;

Actions SaManager::Handle(const Event& event, Instant now) {
  Actions out;
  Handle(event, now, out);
  return out;
}
void SaManager::Handle(const Event&, Instant, Actions&) {}
void SaManager::UpdatePolicy(policy::PolicySnapshotPtr) {}
void SaManager::UpdateCredentials(CredentialStore) {}
size_t SaManager::ike_sa_count() const { return 0; }
size_t SaManager::half_open_count() const { return 0; }
size_t SaManager::child_sa_count() const { return 0; }
std::vector<IkeSaView> SaManager::List() const { return {}; }
std::optional<IkeSaView> SaManager::Find(IkeSaHandle) const {
  return std::nullopt;
}

}  // namespace ike::sa
