// The daemon's side of the BTNS API: a table of established CHILD_SAs, fed
// by the engine's notifications, that the btns_api::Server queries
// (btns_api::SaDirectory), plus the API endpoint and its thread.
//
// Threads. The engine's notifications arrive on the protocol thread; the
// Server runs on the API thread (an EpollRunner of its own), so FindSas and
// RequestProtection come from there. The table is guarded by a mutex; SA
// events are handed to the API thread through the poster, never delivered
// on the protocol thread.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "btns_api/sa_directory.h"
#include "daemon/kernel_translate.h"
#include "daemon/socket_watch.h"
#include "ike/policy/snapshot.h"
#include "ike/sa/engine.h"
#include "kernel_glue/xfrm_interface.h"

namespace btns_api {
class AdminBackend;
class Server;
class EpollRunner;
}  // namespace btns_api
namespace btns::api::v1 {
class AdminEvent;
}  // namespace btns::api::v1

namespace btnsd::daemon {

class ApiBridge : public btns_api::SaDirectory {
 public:
  // Asks the engine (on the protocol thread) to bring up the SPD entry for
  // the connection that triggered it.
  using Initiator = std::function<void(const std::string& spd_entry,
                                       const ike::policy::PacketFiveTuple&)>;
  // The same for a socket that presents its own credential: a dedicated IKE
  // SA whose outcome comes back tagged with `tag` (IkeSaUp/IkeSaDown).
  using CredentialInitiator = std::function<void(
      const std::string& spd_entry, const ike::policy::PacketFiveTuple&,
      std::shared_ptr<const ike::sa::LocalCredentialOverride> credential,
      uint64_t tag)>;
  // Deletes one IKE SA with its CHILD_SAs, telling the peer (the protocol
  // thread does it; the call only hands it over).
  using Terminator = std::function<void(ike::sa::IkeSaHandle)>;
  // Runs a task on the thread that owns the subscribed sink.
  using Poster = std::function<void(std::function<void()>)>;
  // An application's PKCS#11 key signs through its library: the API thread
  // asks it (btns_api::Server::RequestSignature) and `done` runs once, with
  // the raw signature or with nothing and the refusal.
  using SignatureDone =
      std::function<void(std::optional<std::string> signature, std::string refusal)>;
  using SignatureRequester =
      std::function<void(uint64_t signer_id, const std::string& scheme,
                         const std::string& octets, SignatureDone done)>;
  // Hands the answer to the engine of the shard that owns the IKE SA; must
  // not run the engine inline (the SignRequest's shard is mid-Execute).
  using SignatureDeliverer = std::function<void(ike::sa::SignatureDelivered)>;

  explicit ApiBridge(ike::policy::PolicySnapshotPtr snapshot);
  ~ApiBridge() override;

  // Without a poster, events reach the sink on the notifying thread (tests).
  void SetPoster(Poster poster);
  void SetInitiator(Initiator initiator);
  void SetCredentialInitiator(CredentialInitiator initiator);
  // Set by the API service while its thread runs (posts to it); without one
  // every signature is refused at once, so IKE_AUTH fails instead of waiting.
  void SetSignatureRequester(SignatureRequester requester);
  void SetSignatureDeliverer(SignatureDeliverer deliverer);
  // How long the engine waits for one signature of an application's key
  // (10 s unless set; tests shorten it).
  void SetSignerTimeout(std::chrono::milliseconds timeout);
  // Where per-socket policies are set (only setsockopt on descriptors the
  // API passed; no netlink traffic, so no kernel lock). Without it the API
  // cannot bind sockets to SAs and refuses requests that need it.
  void SetSocketPolicies(kernel_glue::XfrmInterface* xfrm);
  // Every ACQUIRE the kernel raised (kernel thread): those of a socket
  // waiting for its SA tell which conversation it is. True when the
  // ACQUIRE belongs to a socket that gets an IKE SA of its own: only that
  // request answers it, so the engine must not see it as an ordinary one.
  bool OnKernelAcquire(const kernel_glue::AcquireEvent& acquire);
  void UpdatePolicy(ike::policy::PolicySnapshotPtr snapshot);
  // The keys and certificates the daemon loaded for its configured
  // identities (at start and at every reload that put a policy in force):
  // a socket asking for a configured identity that its PAD entry would not
  // present gets an IKE SA of its own presenting it. No file is read here.
  void UpdateCredentials(std::shared_ptr<const ike::sa::CredentialStore> credentials);
  // Ends IKE SAs of one socket once the socket is closed (SetDedicatedGrace).
  void SetTerminator(Terminator terminator);
  // Whether an application still holds a socket (default: sock_diag).
  void SetSocketProbe(SocketProbe probe);
  // A socket's own IKE SA is deleted once its socket has been closed for
  // `grace` (2 s unless set; TCP's FIN exchange still needs the SA), checked
  // every `interval` (1 s unless set) while such SAs exist.
  void SetDedicatedGrace(std::chrono::milliseconds grace,
                         std::chrono::milliseconds interval);

  // Engine notifications, in the order the engine emits them.
  void OnIkeSaUp(const ike::sa::IkeSaUp& up);
  void OnIkeSaDown(const ike::sa::IkeSaDown& down);
  // Only the outbound install is read: it names the negotiated transform.
  void OnInstallChildSa(const ike::sa::InstallChildSa& install);
  void OnChildSaUp(const ike::sa::ChildSaUp& up);
  void OnChildSaDown(const ike::sa::ChildSaDown& down);
  // The engine needs a signature of an application's key (protocol thread):
  // asked on the API thread, answered to the owning shard.
  void OnSignRequest(const ike::sa::SignRequest& request);
  // Feeds one action, ignoring the kinds the table does not need.
  void OnAction(const ike::sa::Action& action);

  size_t child_sa_count() const;

  // btns_api::SaDirectory
  std::vector<btns_api::SaInfo> FindSas(
      const btns_api::FiveTuple& conversation) override;
  btns_api::Status RequestProtection(
      const btns_api::ProtectionRequest& request) override;
  void Subscribe(btns_api::SaEventSink* sink) override;
  btns_api::Status PinSocket(int socket_fd,
                             const btns_api::SaInfo& sa) override;
  std::optional<btns_api::Status> SocketFailure(int socket_fd) override;
  // The earliest waiting socket's deadline; ExpireDue refuses those past it.
  std::optional<std::chrono::steady_clock::time_point> NextDeadline() override;
  void ExpireDue() override;
  // How long a socket given a pToken before connect() may wait for its SA
  // (30 s unless set; tests shorten it).
  void SetWaitForSa(std::chrono::milliseconds wait);
  // The run's reqid offset (KernelTags::reqid_offset), as the daemon's.
  void SetReqidOffset(uint32_t offset);

  size_t waiting_socket_count() const;
  // IKE SAs serving one socket each (asked with a credential or a
  // configured identity the PAD entry would not present).
  size_t dedicated_ike_sa_count() const;

 private:
  // A socket given a pToken before connect(): it carries a per-socket
  // policy whose reqid no SA has, so its first packet raises ACQUIRE and
  // nothing leaves; once an SA covering its conversation is up, the peer is
  // checked and the socket is bound to that SA's reqid or blocked.
  struct WaitingSocket {
    uint32_t reqid = 0;
    int fd = -1;  // our duplicate, closed when decided
    btns_api::Caller caller;
    std::optional<std::string> remote_identity;
    std::optional<std::string> local_identity;  // the identity's ID text
    bool require_privacy = false;
    std::optional<btns_api::FiveTuple> conversation;  // from the ACQUIRE
    // An application credential: until the ACQUIRE hands it to the engine,
    // then only the dedicated IKE SA tagged with `reqid` may carry it.
    std::shared_ptr<const ike::sa::LocalCredentialOverride> credential;
    bool dedicated = false;
    // A configured identity asked for by name (LocalIdentity::name); the
    // ACQUIRE decides whether the PAD entry presents it or the socket needs
    // an IKE SA of its own.
    std::string configured_identity;
    // What a dedicated IKE SA presents, for the SA table and messages.
    std::optional<btns_api::PeerIdentity> presented;
    std::string presenting = "the application's credential";
    std::chrono::steady_clock::time_point deadline;
  };
  // An IKE SA started for one socket.
  struct DedicatedIkeSa {
    uint32_t reqid = 0;  // of the waiting socket that asked
    std::optional<btns_api::PeerIdentity> local;  // what it presents
    std::vector<WatchedSocket> sockets;  // served, once bound
    std::optional<std::chrono::steady_clock::time_point> released_since;
    bool orphaned = false;  // up after its socket stopped waiting
    bool deleting = false;
  };
  struct IkeSaRecord {
    btns_api::PeerIdentity peer;
    std::string pad_entry;
    std::optional<btns_api::PeerIdentity> local;  // presented on request
  };

  // The credential of a socket whose key stays in the application's PKCS#11
  // token (ProtectionRequest::signer_id): signed through SignRequest.
  btns_api::Status SignerCredential(
      const btns_api::ProtectionRequest& request,
      std::shared_ptr<ike::sa::LocalCredentialOverride>* credential) const;
  // Must hold mu_. The application's reason when its key ended the IKE SA
  // (signer-timeout, signer-refused); nullopt for every other end.
  std::optional<btns_api::Status> SignerFailure(const ike::sa::IkeSaDown& down);
  // Gives an unbound socket its local port now, so that the ACQUIRE of its
  // connect() names the whole flow its dedicated SA will carry.
  static btns_api::Status BindEphemeralPort(int socket_fd);
  // Completes a signature asked by OnSignRequest (any thread).
  void SignatureAnswered(const ike::sa::SignRequest& request,
                         std::optional<std::string> signature, std::string refusal);
  btns_api::SaInfo BuildInfo(const ike::sa::ChildSaUp& up,
                             const IkeSaRecord* ike) const;
  btns_api::PeerIdentity LocalIdentityFor(const std::string& pad_entry) const;
  // Must hold mu_.
  void AddChild(const ike::sa::ChildSaUp& up, const IkeSaRecord* ike);
  // Must hold mu_; the event is delivered later, outside the lock.
  void Emit(btns_api::SaEventKind kind, const btns_api::SaInfo& sa);
  void Deliver(const btns_api::SaEvent& event);
  // Must hold mu_. True when the socket was bound or refused.
  bool Decide(WaitingSocket& socket);
  // Must hold mu_.
  void Refuse(WaitingSocket& socket, const btns_api::Status& why);
  // Must hold mu_; the socket's conversation is known. Makes a socket that
  // asked for a configured identity dedicated when the PAD entry for its
  // conversation presents another one (its credential set from the loaded
  // ones). False when it was refused instead.
  bool ChooseConfiguredIdentity(WaitingSocket& socket);
  // Must hold mu_. The configured identity as an engine credential, or a
  // refusal.
  std::shared_ptr<ike::sa::LocalCredentialOverride> ConfiguredCredential(
      const ike::policy::LocalIdentity& identity, btns_api::Status* why) const;
  // Must hold mu_. The loaded credential of a configured identity, when it
  // has a private key (or an external signer).
  const ike::sa::LocalCredential* LoadedKey(const std::string& identity) const;
  btns_api::PeerIdentity PresentedIdentity(
      const ike::policy::LocalIdentity& identity) const;
  // Must hold mu_. A dedicated socket was bound: watch it.
  void WatchDedicated(const WaitingSocket& socket, const btns_api::SaInfo& sa);
  // Must hold mu_. The dedicated IKE SAs whose sockets are gone for the
  // grace period (marked as deleting).
  std::vector<ike::sa::IkeSaHandle> DueDedicatedDeletes();
  std::optional<std::chrono::steady_clock::time_point> NextWatch() const;
  // Must hold mu_. An IKE SA started for one socket is up (again, after a
  // rekey): remember it and what it presents.
  void NoteDedicatedUp(const ike::sa::IkeSaUp& up, IkeSaRecord& record);
  void ExpireWaiting();
  btns_api::Status SetSocketReqid(int fd, uint32_t reqid);
  uint32_t NextWaitingReqid();
  // Must hold mu_; snapshot_ set.
  KernelTags Tags() const;

  mutable std::mutex mu_;
  ike::policy::PolicySnapshotPtr snapshot_;
  std::map<ike::sa::IkeSaHandle, IkeSaRecord> ike_sas_;
  std::map<ike::sa::ChildSaHandle, btns_api::SaInfo> children_;
  // CHILD_SAs announced before their IKE SA's peer (a responder's first
  // CHILD_SA): held back until IkeSaUp names the peer.
  std::map<ike::sa::IkeSaHandle, std::vector<ike::sa::ChildSaUp>> waiting_;
  // Algorithms of CHILD_SAs installed but not yet announced.
  std::map<ike::sa::ChildSaHandle, std::string> pending_algorithms_;
  std::map<ike::sa::ChildSaHandle, uint32_t> pending_reqids_;
  std::map<uint32_t, WaitingSocket> waiting_sockets_;  // by reqid
  std::map<ike::sa::IkeSaHandle, DedicatedIkeSa> dedicated_ike_sas_;
  std::shared_ptr<const ike::sa::CredentialStore> credentials_;
  Terminator terminator_;
  SocketProbe socket_probe_ = ProbeSocketDiag;
  std::chrono::milliseconds dedicated_grace_{std::chrono::seconds(2)};
  std::chrono::milliseconds watch_interval_{std::chrono::seconds(1)};
  std::chrono::steady_clock::time_point next_watch_{};
  // Why an application's key did not sign for a dedicated IKE SA, until the
  // SA's end reports it to the socket.
  std::map<ike::sa::IkeSaHandle, std::string> signer_refusals_;
  // Refusals by SO_COOKIE, oldest first out beyond kMaxFailures.
  std::map<uint64_t, btns_api::Status> socket_failures_;
  std::vector<uint64_t> failure_order_;
  uint32_t next_waiting_ = 0;
  uint32_t reqid_offset_ = 0;
  std::chrono::milliseconds wait_for_sa_{std::chrono::seconds(30)};
  kernel_glue::XfrmInterface* xfrm_ = nullptr;
  std::vector<btns_api::SaEvent> outbox_;
  btns_api::SaEventSink* sink_ = nullptr;
  Poster poster_;
  Initiator initiator_;
  CredentialInitiator credential_initiator_;
  SignatureRequester signature_requester_;
  SignatureDeliverer signature_deliverer_;
  std::chrono::milliseconds signer_timeout_{std::chrono::seconds(10)};
};

// Text form of an ESP transform for IPSEC_API_ATTR_algorithms,
// e.g. "rfc4106(gcm(aes))-256" or "cbc(aes)-128+hmac(sha256)".
std::string AlgorithmsText(const ike::sa::EspTransform& transform);
btns_api::AuthKind ToApiAuth(const ike::sa::PeerIdentity& peer);

// The API endpoint with its own thread: Server + EpollRunner.
class ApiService {
 public:
  explicit ApiService(ApiBridge& bridge);
  ~ApiService();
  ApiService(const ApiService&) = delete;
  ApiService& operator=(const ApiService&) = delete;

  // Creates the socket at `path` (group name may be empty) and starts the
  // thread. False with `why` set when the endpoint cannot be created.
  bool Start(const std::string& path, const std::string& group,
             std::string* why);
  // Administrative calls (btnsctl) go to `admin`; set before Start.
  void SetAdmin(btns_api::AdminBackend* admin) { admin_ = admin; }
  // Thread-safe: sends `event` to the connections following events.
  void PublishAdminEvent(const btns::api::v1::AdminEvent& event);
  // Tells every latch holder CLOSED, then stops and joins the thread.
  void Stop(const std::string& message);
  bool running() const { return thread_.joinable(); }

 private:
  ApiBridge& bridge_;
  std::unique_ptr<btns_api::Server> server_;
  std::unique_ptr<btns_api::EpollRunner> runner_;
  std::thread thread_;
  btns_api::AdminBackend* admin_ = nullptr;
  // Guards runner_ for PublishAdminEvent against Start/Stop.
  std::mutex runner_mu_;
};

}  // namespace btnsd::daemon
