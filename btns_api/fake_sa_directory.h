// An in-memory SaDirectory for tests: SAs are added and removed by hand,
// protection requests are recorded and checked against a small policy.
#ifndef BTNS_API_FAKE_SA_DIRECTORY_H_
#define BTNS_API_FAKE_SA_DIRECTORY_H_

#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "btns_api/sa_directory.h"

namespace btns_api {

class FakeSaDirectory : public SaDirectory {
 public:
  struct RecordedRequest {
    ProtectionRequest request;  // descriptors already closed: -1
    bool had_socket = false;
    // What the daemon read from the credential descriptor.
    std::string credential_contents;
  };

  // These emit SA events to the subscribed sink, so call them on the
  // server's thread.
  void AddSa(const SaInfo& sa);
  void RemoveSa(uint64_t child_sa_id);
  void ChangePeer(uint64_t child_sa_id, const PeerIdentity& peer,
                  uint64_t new_ike_sa_id);

  // A uid other than 0 may present only the local identities allowed here.
  void AllowLocalIdentity(uid_t uid, const std::string& identity);
  // Runs on RequestProtection after the policy check (e.g. to emulate IKE
  // bringing an SA up); its status is returned.
  void SetOnRequest(std::function<Status(const ProtectionRequest&)> f) {
    on_request_ = std::move(f);
  }
  std::vector<RecordedRequest> requests() const;

  std::vector<SaInfo> FindSas(const FiveTuple& conversation) override;
  Status RequestProtection(const ProtectionRequest& request) override;
  void Subscribe(SaEventSink* sink) override { sink_ = sink; }
  // What SocketFailure answers for every socket (the daemon keeps one per
  // refused socket); nullopt: none.
  void SetSocketFailure(std::optional<Status> failure) {
    std::lock_guard lock(mu_);
    socket_failure_ = std::move(failure);
  }
  std::optional<Status> SocketFailure(int) override {
    std::lock_guard lock(mu_);
    return socket_failure_;
  }

 private:
  void Emit(SaEventKind kind, const SaInfo& sa);

  SaEventSink* sink_ = nullptr;
  std::map<uint64_t, SaInfo> sas_;  // by child SA id
  std::map<uid_t, std::set<std::string>> allowed_local_;
  std::function<Status(const ProtectionRequest&)> on_request_;
  std::optional<Status> socket_failure_;
  mutable std::mutex mu_;
  std::vector<RecordedRequest> requests_;
};

}  // namespace btns_api

#endif  // BTNS_API_FAKE_SA_DIRECTORY_H_
