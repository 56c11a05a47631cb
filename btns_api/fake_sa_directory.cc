#include "btns_api/fake_sa_directory.h"

#include <unistd.h>

#include <cerrno>

namespace btns_api {

void FakeSaDirectory::Emit(SaEventKind kind, const SaInfo& sa) {
  if (sink_) sink_->OnSaEvent(SaEvent{kind, sa});
}

void FakeSaDirectory::AddSa(const SaInfo& sa) {
  sas_[sa.child_sa_id] = sa;
  Emit(SaEventKind::kUp, sa);
}

void FakeSaDirectory::RemoveSa(uint64_t child_sa_id) {
  auto it = sas_.find(child_sa_id);
  if (it == sas_.end()) return;
  SaInfo sa = it->second;
  sas_.erase(it);
  Emit(SaEventKind::kDown, sa);
}

void FakeSaDirectory::ChangePeer(uint64_t child_sa_id, const PeerIdentity& peer,
                                 uint64_t new_ike_sa_id) {
  auto it = sas_.find(child_sa_id);
  if (it == sas_.end()) return;
  it->second.peer = peer;
  it->second.predecessor_ike_sa_id = 0;
  it->second.ike_sa_id = new_ike_sa_id;
  Emit(SaEventKind::kPeerChanged, it->second);
}

void FakeSaDirectory::AllowLocalIdentity(uid_t uid, const std::string& identity) {
  allowed_local_[uid].insert(identity);
}

std::vector<FakeSaDirectory::RecordedRequest> FakeSaDirectory::requests() const {
  std::lock_guard<std::mutex> lock(mu_);
  return requests_;
}

std::vector<SaInfo> FakeSaDirectory::FindSas(const FiveTuple& conversation) {
  std::vector<SaInfo> out;
  for (const auto& [id, sa] : sas_) {
    if (sa.Covers(conversation)) out.push_back(sa);
  }
  return out;
}

Status FakeSaDirectory::RequestProtection(const ProtectionRequest& request) {
  RecordedRequest rec;
  rec.request = request;
  rec.had_socket = request.socket_fd >= 0;
  rec.request.socket_fd = -1;
  rec.request.credential_fd = -1;
  if (request.credential_fd >= 0) {
    // Read through the descriptor as the daemon would: never by path.
    char buf[4096];
    ssize_t n;
    off_t offset = 0;
    while ((n = pread(request.credential_fd, buf, sizeof buf, offset)) > 0 &&
           rec.credential_contents.size() < 65536) {
      rec.credential_contents.append(buf, static_cast<size_t>(n));
      offset += n;
    }
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    requests_.push_back(rec);
  }
  if (request.local_identity && request.caller.uid != 0) {
    auto it = allowed_local_.find(request.caller.uid);
    if (it == allowed_local_.end() || !it->second.count(*request.local_identity)) {
      return Status::Fail(EACCES, Why::kPrivilegeRequired,
                          "uid " + std::to_string(request.caller.uid) +
                              " may not present local identity '" +
                              *request.local_identity + "'");
    }
  }
  if (on_request_) return on_request_(request);
  return Status::Ok();
}

}  // namespace btns_api
