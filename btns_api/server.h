// The BTNS API server core: bytes and descriptors in, reply frames out.
// No I/O loop of its own (see epoll_runner.h for one); everything runs on
// the caller's thread, including SaEventSink::OnSaEvent.
#ifndef BTNS_API_SERVER_H_
#define BTNS_API_SERVER_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "btns_api/admin.h"
#include "btns_api/frame.h"
#include "btns_api/latch.h"
#include "btns_api/sa_directory.h"

namespace btns_api {

inline constexpr uint32_t kProtocolVersion = 1;

struct ServerOptions {
  size_t max_frame = kDefaultMaxFrame;
  size_t max_fds_per_request = 2;
  // Descriptors received but not yet claimed by a request.
  size_t max_pending_fds = 8;
  // A client that does not read its replies/events is disconnected.
  size_t max_output = 1 << 20;
  // Latches (and remembered template peers) one API connection may hold.
  size_t max_latches_per_session = 4096;
};

class Server : public SaEventSink {
 public:
  explicit Server(SaDirectory& directory, ServerOptions options = {});
  ~Server() override;
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // A new API connection from `caller` (SO_PEERCRED). Returns its id.
  uint64_t OpenSession(const Caller& caller);
  // Input read from the connection, with the descriptors that arrived with
  // it (the server owns and closes them). Returns false when the
  // connection must be closed once PendingOutput() is flushed.
  bool OnInput(uint64_t session, const uint8_t* data, size_t len,
               std::vector<int> fds);
  // The connection lost descriptors (MSG_CTRUNC): it cannot be trusted to
  // pair descriptors with requests any more.
  void OnDescriptorsTruncated(uint64_t session);
  std::string_view PendingOutput(uint64_t session) const;
  void ConsumeOutput(uint64_t session, size_t n);
  bool WantsClose(uint64_t session) const;
  // Releases the session's latches and descriptors.
  void CloseSession(uint64_t session);

  // Called when a session's output goes from empty to non-empty outside
  // OnInput (latch events), so a runner can arm its write interest.
  void SetOutputReadyCallback(std::function<void(uint64_t)> callback) {
    output_ready_ = std::move(callback);
  }

  // Asks the library that registered `signer_id` (RegisterSigner) to sign
  // `octets` with `scheme` using its PKCS#11 key. `done` runs once, on this
  // thread: with the raw signature, or with nothing and the refusal (signer
  // unknown or gone, refused by the application, connection closed).
  using SignDone =
      std::function<void(std::optional<std::string> signature, std::string refusal)>;
  void RequestSignature(uint64_t signer_id, const std::string& scheme,
                        const std::string& octets, SignDone done);
  // The registered key's SubjectPublicKeyInfo; empty when unknown.
  std::string SignerKey(uint64_t signer_id) const;

  void OnSaEvent(const SaEvent& event) override;
  // The directory's next deadline, and its decisions once that has passed
  // (for a runner's timer).
  std::optional<std::chrono::steady_clock::time_point> NextDeadline() {
    return directory_.NextDeadline();
  }
  void OnDeadline() { directory_.ExpireDue(); }
  // Administrative CLOSED of every latch, e.g. before the daemon exits.
  void CloseAllLatches(const std::string& message);

  const LatchDatabase& latches() const { return latches_; }
  size_t session_count() const { return sessions_.size(); }

  // Administration (btnsctl). Without a backend, administrative calls fail
  // with EOPNOTSUPP. Call before serving, on the server's thread.
  void SetAdmin(AdminBackend* admin) { admin_ = admin; }
  // Sends `event` to every connection following events (FollowEvents).
  void PublishAdminEvent(const btns::api::v1::AdminEvent& event);
  size_t follower_count() const;

 private:
  struct Session;
  struct Handled;

  void HandleFrame(Session& s, const std::string& payload);
  void Deliver(const std::vector<LatchAlert>& alerts);
  void QueueReply(Session& s, const std::string& serialized);
  // Administrative requests: permission check, then the server's own
  // answers (events, latches, API counters) or the backend's.
  void HandleAdmin(Session& s, const btns::api::v1::Request& request);
  // End-point channel binding (SHA-256) of an SA, cached by child SA.
  const std::string& BindingFor(const SaInfo& sa);
  // The encoded pToken a latch answers with, cached until the latch can
  // have changed (SA events, release, CLOSED).
  const std::string& LatchPTokenBytes(const Latch& latch);

  SaDirectory& directory_;
  ServerOptions options_;
  uint64_t next_session_ = 1;
  std::map<uint64_t, std::unique_ptr<Session>> sessions_;
  LatchDatabase latches_;
  std::function<void(uint64_t)> output_ready_;
  std::map<uint64_t, std::string> bindings_;
  std::unordered_map<uint64_t, std::string> ptoken_cache_;  // by latch id
  AdminBackend* admin_ = nullptr;
  // PKCS#11 keys registered by client libraries, and signatures asked of
  // them and not yet answered.
  struct Signer {
    uint64_t session = 0;
    uint64_t request_id = 0;  // SignChallenge replies go under it
    Caller caller;
    std::string spki;
  };
  struct Challenge {
    uint64_t signer_id = 0;
    SignDone done;
  };
  std::map<uint64_t, Signer> signers_;
  std::map<uint64_t, Challenge> challenges_;
  uint64_t next_signer_ = 1;
  uint64_t next_challenge_ = 1;
};

}  // namespace btns_api

#endif  // BTNS_API_SERVER_H_
