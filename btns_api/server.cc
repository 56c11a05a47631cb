#include "btns_api/server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <botan/hash.h>

#include <cerrno>
#include <chrono>
#include <cstring>

#include "btns/ipsec_api.h"
#include "btns_api/btns_api.pb.h"

namespace btns_api {

namespace pb = btns::api::v1;

struct Server::Session {
  uint64_t id = 0;
  Caller caller;
  FrameDecoder decoder;
  std::vector<int> pending_fds;
  std::string output;
  size_t output_consumed = 0;
  uint64_t last_request_id = 0;
  bool closing = false;
  uint64_t follow_id = 0;  // FollowEvents request id; 0: not following
  // Peers the application demanded per socket (socket inode -> identity).
  std::map<uint64_t, std::optional<std::string>> expectations;

  explicit Session(size_t max_frame) : decoder(max_frame) {}
  ~Session() {
    for (int fd : pending_fds) close(fd);
  }
};

namespace {

class OwnedFds {
 public:
  explicit OwnedFds(std::vector<int> fds) : fds_(std::move(fds)) {}
  ~OwnedFds() {
    for (int fd : fds_) close(fd);
  }
  size_t size() const { return fds_.size(); }
  int operator[](size_t i) const { return fds_[i]; }

 private:
  std::vector<int> fds_;
};

uint32_t AuthMethodValue(AuthKind k) {
  switch (k) {
    case AuthKind::kNull: return IPSEC_API_ATTR_authMeth_NONE;
    case AuthKind::kRawKey: return IPSEC_API_ATTR_authMeth_BTNS;
    case AuthKind::kPinnedKey: return IPSEC_API_ATTR_authMeth_LEAPOFFAITH;
    case AuthKind::kCertificate: return IPSEC_API_ATTR_authMeth_PKIX_INLINE;
    case AuthKind::kPsk: return IPSEC_API_ATTR_authMeth_PRESHAREDKEY;
  }
  return IPSEC_API_ATTR_authMeth_NONE;
}

const char* AuthKindText(AuthKind k) {
  switch (k) {
    case AuthKind::kNull: return "NULL authentication (RFC 7619), unauthenticated";
    case AuthKind::kRawKey: return "an unverified raw public key (BTNS)";
    case AuthKind::kPinnedKey: return "a pinned public key";
    case AuthKind::kCertificate: return "a certificate";
    case AuthKind::kPsk: return "a pre-shared key";
  }
  return "?";
}

uint32_t Flag(bool on) {
  return on ? IPSEC_API_ATTR_ENABLE : IPSEC_API_ATTR_DISABLE;
}

void ToProto(const Endpoint& e, pb::Address* a) {
  auto bytes = e.address.ToBytes();
  a->set_ip(std::string(bytes.begin(), bytes.end()));
  a->set_port(e.port);
}

void ToProto(const FiveTuple& t, pb::FiveTuple* p) {
  ToProto(t.local, p->mutable_local());
  ToProto(t.remote, p->mutable_remote());
  p->set_protocol(t.protocol);
}

std::optional<Endpoint> FromProto(const pb::Address& a) {
  if (a.port() > 65535) return std::nullopt;
  auto ip = IpAddress::FromBytes(
      reinterpret_cast<const uint8_t*>(a.ip().data()), a.ip().size());
  if (!ip) return std::nullopt;
  return Endpoint{*ip, static_cast<uint16_t>(a.port())};
}

std::optional<std::vector<uint8_t>> ChannelBindingValue(
    const SaInfo& sa, const std::string& hash_name) {
  if (sa.peer.public_key.empty() || sa.local.public_key.empty()) {
    return std::nullopt;
  }
  auto hash = Botan::HashFunction::create(hash_name);
  if (!hash) return std::nullopt;
  auto a = hash->process(sa.peer.public_key);
  auto b = hash->process(sa.local.public_key);
  for (size_t i = 0; i < a.size(); ++i) a[i] ^= b[i];
  auto v = hash->process(a);
  return std::vector<uint8_t>(v.begin(), v.end());
}

void ToProto(const PeerIdentity& id, const std::string* binding, pb::IToken* t) {
  t->set_auth_method(AuthMethodValue(id.auth));
  t->set_identity(id.id);
  t->set_certificate_dn(id.certificate_dn);
  t->set_certificate_authority_dn(id.certificate_authority_dn);
  if (id.spki_sha256) {
    t->set_pub_key_id(std::string(id.spki_sha256->begin(), id.spki_sha256->end()));
  }
  std::string audit = id.id + " authenticated by " + AuthKindText(id.auth);
  if (!id.certificate_authority_dn.empty()) {
    audit += " issued by " + id.certificate_authority_dn;
  }
  t->set_audit_string(audit);
  if (binding && !binding->empty()) t->set_channel_binding(*binding);
}

void FillPToken(const SaInfo& sa, const std::string& binding, pb::PToken* p) {
  p->set_privacy(Flag(sa.privacy));
  p->set_integrity(Flag(sa.integrity));
  p->set_compression(Flag(sa.compression));
  p->set_tunnel(Flag(sa.tunnel));
  p->set_ipoptions(Flag(sa.tunnel));  // only tunnel mode covers IP options
  p->set_policy_name(sa.policy_name);
  p->set_algorithms(sa.algorithms);
  ToProto(sa.peer, &binding, p->mutable_peer());
  ToProto(sa.local, &binding, p->mutable_local());
  p->set_audit_string("peer " + sa.peer.id + " (" + AuthKindText(sa.peer.auth) +
                      "), local " + sa.local.id + ", IKE SA #" +
                      std::to_string(sa.ike_sa_id) + ", child SA #" +
                      std::to_string(sa.child_sa_id) + ", " + sa.algorithms +
                      (sa.policy_name.empty() ? "" : ", policy " + sa.policy_name));
  p->set_information_string(
      std::string(sa.privacy ? "encrypted" : "integrity-protected only") +
      " with IPsec ESP in " + (sa.tunnel ? "tunnel" : "transport") +
      " mode; the peer is " + sa.peer.id + ", known by " +
      AuthKindText(sa.peer.auth));
}

void FillUnprotected(pb::PToken* p) {
  p->set_privacy(IPSEC_API_ATTR_DISABLE);
  p->set_integrity(IPSEC_API_ATTR_DISABLE);
  p->set_compression(IPSEC_API_ATTR_DISABLE);
  p->set_tunnel(IPSEC_API_ATTR_DISABLE);
  p->set_ipoptions(IPSEC_API_ATTR_DISABLE);
  p->set_information_string("not protected by IPsec");
  p->set_audit_string("no IPsec SA covers this conversation");
  p->set_latch_state(IPSEC_LATCH_NONE);
}

std::optional<Endpoint> FromSockaddr(const sockaddr_storage& ss) {
  if (ss.ss_family == AF_INET) {
    const auto& sin = reinterpret_cast<const sockaddr_in&>(ss);
    return Endpoint{IpAddress::V4(ntohl(sin.sin_addr.s_addr)), ntohs(sin.sin_port)};
  }
  if (ss.ss_family == AF_INET6) {
    const auto& sin6 = reinterpret_cast<const sockaddr_in6&>(ss);
    const uint8_t* b = sin6.sin6_addr.s6_addr;
    static const uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    auto ip = std::memcmp(b, kMapped, 12) == 0 ? IpAddress::FromBytes(b + 12, 4)
                                              : IpAddress::FromBytes(b, 16);
    if (!ip) return std::nullopt;
    return Endpoint{*ip, ntohs(sin6.sin6_port)};
  }
  return std::nullopt;
}

// The source address the kernel would choose for `remote`, for a socket
// bound to the wildcard address: a UDP connect() only looks up the route.
std::optional<IpAddress> SourceAddressFor(const Endpoint& remote) {
  sockaddr_storage ss{};
  socklen_t length;
  const std::vector<uint8_t> bytes = remote.address.ToBytes();
  if (remote.address.family == ike::policy::IpFamily::kV4) {
    auto& sin = reinterpret_cast<sockaddr_in&>(ss);
    sin.sin_family = AF_INET;
    sin.sin_port = htons(remote.port != 0 ? remote.port : 9);
    std::memcpy(&sin.sin_addr, bytes.data(), 4);
    length = sizeof(sockaddr_in);
  } else {
    auto& sin6 = reinterpret_cast<sockaddr_in6&>(ss);
    sin6.sin6_family = AF_INET6;
    sin6.sin6_port = htons(remote.port != 0 ? remote.port : 9);
    std::memcpy(&sin6.sin6_addr, bytes.data(), 16);
    length = sizeof(sockaddr_in6);
  }
  const int probe = socket(ss.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (probe < 0) return std::nullopt;
  std::optional<IpAddress> out;
  sockaddr_storage local{};
  socklen_t local_length = sizeof(local);
  if (connect(probe, reinterpret_cast<sockaddr*>(&ss), length) == 0 &&
      getsockname(probe, reinterpret_cast<sockaddr*>(&local), &local_length) == 0) {
    if (auto endpoint = FromSockaddr(local)) out = endpoint->address;
  }
  close(probe);
  return out;
}

// What the server learns from a descriptor the client passed: the
// descriptor itself is the authorization, so every fact comes from it.
// The protocol and listening state cost a syscall each and are read only
// when a request needs them.
struct SocketFacts {
  int fd = -1;
  Endpoint local;
  std::optional<Endpoint> remote;

  uint8_t Protocol() {
    if (!protocol_) {
      int proto = 0;
      socklen_t len = sizeof proto;
      getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &proto, &len);
      protocol_ = static_cast<uint8_t>(proto);
    }
    return *protocol_;
  }
  bool Listening() {
    if (remote) return false;
    int accepting = 0;
    socklen_t len = sizeof accepting;
    getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &accepting, &len);
    return accepting != 0;
  }
  FiveTuple Conversation() {
    return {local, remote.value_or(Endpoint{}), Protocol()};
  }
  // The sockfs inode: the same socket across dup() and SCM_RIGHTS.
  uint64_t Key() {
    if (!key_) {
      struct stat st{};
      fstat(fd, &st);
      key_ = st.st_ino;
    }
    return *key_;
  }

 private:
  std::optional<uint8_t> protocol_;
  std::optional<uint64_t> key_;
};

Status ReadSocket(int fd, SocketFacts* out) {
  out->fd = fd;
  sockaddr_storage ss{};
  socklen_t sl = sizeof ss;
  // getsockname() also proves the descriptor is a socket (ENOTSOCK).
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &sl) != 0) {
    if (errno == ENOTSOCK) {
      return Status::Fail(ENOTSOCK, Why::kNotASocket,
                          "descriptor 0 of the request is not a socket");
    }
    return Status::Fail(errno, Why::kInternal,
                        std::string("getsockname failed: ") + std::strerror(errno));
  }
  auto local = FromSockaddr(ss);
  if (!local) {
    return Status::Fail(EAFNOSUPPORT, Why::kNotSupported,
                        "the socket is not an IPv4 or IPv6 socket");
  }
  out->local = *local;
  sl = sizeof ss;
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &sl) == 0) {
    out->remote = FromSockaddr(ss);
  }
  return Status::Ok();
}

std::string ErrorReply(uint64_t id, const Status& s) {
  pb::Reply r;
  r.set_version(kProtocolVersion);
  r.set_id(id);
  r.mutable_error()->set_errno_value(s.error);
  r.mutable_error()->set_reason(static_cast<uint32_t>(s.why));
  r.mutable_error()->set_why(s.message);
  return r.SerializeAsString();
}

// Appends field `number` (wire type 2) holding `bytes` to an encoded
// message: protobuf parsers accept fields in any order.
void AppendLengthDelimited(uint32_t number, const std::string& bytes, std::string* out) {
  auto varint = [out](uint64_t v) {
    while (v >= 0x80) {
      out->push_back(static_cast<char>((v & 0x7f) | 0x80));
      v >>= 7;
    }
    out->push_back(static_cast<char>(v));
  };
  varint((uint64_t{number} << 3) | 2);
  varint(bytes.size());
  out->append(bytes);
}

bool SingleReqid(const std::vector<SaInfo>& sas) {
  if (sas.empty() || sas.front().kernel_reqid == 0) return false;
  for (const SaInfo& sa : sas)
    if (sa.kernel_reqid != sas.front().kernel_reqid) return false;
  return true;
}

std::optional<std::string> WantedPeer(const pb::PToken& t) {
  if (!t.has_peer() || t.peer().identity().empty()) return std::nullopt;
  return t.peer().identity();
}

}  // namespace

Server::Server(SaDirectory& directory, ServerOptions options)
    : directory_(directory), options_(options) {
  directory_.Subscribe(this);
}

Server::~Server() { directory_.Subscribe(nullptr); }

uint64_t Server::OpenSession(const Caller& caller) {
  auto s = std::make_unique<Session>(options_.max_frame);
  s->id = next_session_++;
  s->caller = caller;
  uint64_t id = s->id;
  sessions_.emplace(id, std::move(s));
  return id;
}

void Server::QueueReply(Session& s, const std::string& serialized) {
  const bool was_empty = s.output.size() == s.output_consumed;
  AppendFrame(serialized, &s.output);
  if (s.output.size() - s.output_consumed > options_.max_output) {
    s.closing = true;  // a client that stopped reading
  }
  if (was_empty && output_ready_) output_ready_(s.id);
}

bool Server::OnInput(uint64_t session, const uint8_t* data, size_t len,
                     std::vector<int> fds) {
  auto it = sessions_.find(session);
  if (it == sessions_.end()) {
    for (int fd : fds) close(fd);
    return false;
  }
  Session& s = *it->second;
  s.pending_fds.insert(s.pending_fds.end(), fds.begin(), fds.end());
  if (s.closing) return false;
  if (s.pending_fds.size() > options_.max_pending_fds) {
    QueueReply(s, ErrorReply(0, Status::Fail(EMFILE, Why::kTooLarge,
                                             "too many descriptors sent")));
    s.closing = true;
    return false;
  }
  s.decoder.Append(data, len);
  std::string payload;
  while (!s.closing) {
    FrameResult r = s.decoder.Next(&payload);
    if (r == FrameResult::kNeedMore) break;
    if (r == FrameResult::kTooLarge || r == FrameResult::kEmpty) {
      QueueReply(s, ErrorReply(0, Status::Fail(
                                      EMSGSIZE, Why::kTooLarge,
                                      r == FrameResult::kEmpty
                                          ? "empty frame"
                                          : "frame longer than " +
                                                std::to_string(options_.max_frame) +
                                                " octets")));
      s.closing = true;
      break;
    }
    HandleFrame(s, payload);
  }
  return !s.closing;
}

void Server::OnDescriptorsTruncated(uint64_t session) {
  auto it = sessions_.find(session);
  if (it == sessions_.end()) return;
  QueueReply(*it->second,
             ErrorReply(0, Status::Fail(EMFILE, Why::kTooLarge,
                                        "descriptors were truncated")));
  it->second->closing = true;
}

std::string_view Server::PendingOutput(uint64_t session) const {
  auto it = sessions_.find(session);
  if (it == sessions_.end()) return {};
  const Session& s = *it->second;
  return std::string_view(s.output).substr(s.output_consumed);
}

void Server::ConsumeOutput(uint64_t session, size_t n) {
  auto it = sessions_.find(session);
  if (it == sessions_.end()) return;
  Session& s = *it->second;
  s.output_consumed = std::min(s.output.size(), s.output_consumed + n);
  if (s.output_consumed == s.output.size()) {
    s.output.clear();
    s.output_consumed = 0;
  }
}

bool Server::WantsClose(uint64_t session) const {
  auto it = sessions_.find(session);
  return it == sessions_.end() || it->second->closing;
}

void Server::CloseSession(uint64_t session) {
  for (const auto& [latch_id, latch] : latches_.all())
    if (latch.owner == session) ptoken_cache_.erase(latch_id);
  latches_.ReleaseOwner(session);
  sessions_.erase(session);
  std::vector<SignDone> refused;
  for (auto it = signers_.begin(); it != signers_.end();) {
    if (it->second.session != session) {
      ++it;
      continue;
    }
    for (auto c = challenges_.begin(); c != challenges_.end();) {
      if (c->second.signer_id == it->first) {
        refused.push_back(std::move(c->second.done));
        c = challenges_.erase(c);
      } else {
        ++c;
      }
    }
    it = signers_.erase(it);
  }
  for (auto& done : refused)
    done(std::nullopt, "the application holding the key closed its connection");
}

void Server::RequestSignature(uint64_t signer_id, const std::string& scheme,
                              const std::string& octets, SignDone done) {
  auto it = signers_.find(signer_id);
  if (it == signers_.end()) {
    done(std::nullopt, "signer " + std::to_string(signer_id) + " is not registered");
    return;
  }
  auto session = sessions_.find(it->second.session);
  if (session == sessions_.end() || session->second->closing) {
    done(std::nullopt, "the application holding the key is disconnecting");
    return;
  }
  uint64_t challenge = next_challenge_++;
  challenges_[challenge] = Challenge{signer_id, std::move(done)};
  pb::Reply reply;
  reply.set_version(kProtocolVersion);
  reply.set_id(it->second.request_id);
  auto* c = reply.mutable_sign_challenge();
  c->set_challenge_id(challenge);
  c->set_scheme(scheme);
  c->set_octets(octets);
  Session& s = *session->second;
  bool was_empty = s.output.size() == s.output_consumed;
  QueueReply(s, reply.SerializeAsString());
  if (was_empty && output_ready_) output_ready_(s.id);
}

std::string Server::SignerKey(uint64_t signer_id) const {
  auto it = signers_.find(signer_id);
  return it == signers_.end() ? std::string() : it->second.spki;
}

void Server::HandleFrame(Session& s, const std::string& payload) {
  pb::Request req;
  if (!req.ParseFromString(payload)) {
    QueueReply(s, ErrorReply(0, Status::Fail(EBADMSG, Why::kMalformed,
                                             "request frame is not a valid "
                                             "btns.api.v1.Request")));
    return;
  }
  const uint64_t id = req.id();
  // Descriptors are claimed first so that a rejected request never leaves
  // its descriptors to be mistaken for the next request's.
  if (req.fd_count() > options_.max_fds_per_request ||
      req.fd_count() > s.pending_fds.size()) {
    QueueReply(s, ErrorReply(id, Status::Fail(EBADF, Why::kNoDescriptor,
                                              "request " + std::to_string(id) +
                                                  " announces " +
                                                  std::to_string(req.fd_count()) +
                                                  " descriptors; " +
                                                  std::to_string(s.pending_fds.size()) +
                                                  " arrived")));
    s.closing = true;  // descriptor pairing is lost
    return;
  }
  OwnedFds fds(std::vector<int>(s.pending_fds.begin(),
                                s.pending_fds.begin() + req.fd_count()));
  s.pending_fds.erase(s.pending_fds.begin(),
                      s.pending_fds.begin() + req.fd_count());
  if (req.version() != kProtocolVersion) {
    QueueReply(s, ErrorReply(id, Status::Fail(EPROTONOSUPPORT,
                                              Why::kUnsupportedVersion,
                                              "request version " +
                                                  std::to_string(req.version()) +
                                                  "; this server speaks 1")));
    return;
  }
  if (id == 0 || id <= s.last_request_id) {
    QueueReply(s, ErrorReply(id, Status::Fail(EPROTO, Why::kMalformed,
                                              "request id " + std::to_string(id) +
                                                  " is not above the previous "
                                                  "id " + std::to_string(s.last_request_id))));
    return;
  }
  s.last_request_id = id;

  auto fail = [&](const Status& st) { QueueReply(s, ErrorReply(id, st)); };
  auto need_socket = [&](SocketFacts* facts) -> bool {
    if (fds.size() < 1) {
      fail(Status::Fail(EBADF, Why::kNoDescriptor,
                        "this request needs the socket as descriptor 0"));
      return false;
    }
    Status st = ReadSocket(fds[0], facts);
    if (!st.ok()) fail(st);
    return st.ok();
  };
  pb::Reply reply;
  reply.set_version(kProtocolVersion);
  reply.set_id(id);

  switch (req.body_case()) {
    case pb::Request::kGetSocketPtoken:
    case pb::Request::kSubscribeLatch: {
      if (fds.size() >= 1) {
        if (std::optional<Status> failure = directory_.SocketFailure(fds[0])) {
          fail(*failure);
          return;
        }
      }
      SocketFacts f;
      if (!need_socket(&f)) return;
      const bool subscribe = req.body_case() == pb::Request::kSubscribeLatch;
      Latch* latch = f.remote ? latches_.FindByConversation(s.id, f.local, *f.remote)
                              : latches_.FindListener(s.id, f.local);
      if (!latch && latches_.CountOwned(s.id) >= options_.max_latches_per_session) {
        fail(Status::Fail(ENOSPC, Why::kTooLarge,
                          "this connection holds " +
                              std::to_string(options_.max_latches_per_session) +
                              " latches; release some first"));
        return;
      }
      if (!latch && f.Listening()) {
        if (!subscribe) {
          fail(Status::Fail(ENOTCONN, Why::kNotConnected,
                            "a listening socket has no pToken; ask the "
                            "accepted socket"));
          return;
        }
        latch = &latches_.CreateListenerLatch(s.id, f.Key(), f.local, f.Protocol());
      }
      if (!latch) {
        if (!f.remote) {
          fail(Status::Fail(ENOTCONN, Why::kNotConnected,
                            "the socket is not connected"));
          return;
        }
        FiveTuple conv = f.Conversation();
        auto sas = directory_.FindSas(conv);
        auto exp = s.expectations.find(f.Key());
        std::optional<std::string> expected =
            exp == s.expectations.end() ? std::nullopt : exp->second;
        if (sas.empty() && !subscribe && exp == s.expectations.end()) {
          FillUnprotected(reply.mutable_ptoken());
          ToProto(conv, reply.mutable_ptoken()->mutable_conversation());
          QueueReply(s, reply.SerializeAsString());
          return;
        }
        latch = &latches_.CreateConnectionLatch(s.id, f.Key(), conv, sas, expected);
        // Enforce the latch in the kernel when one SA carries the
        // conversation; with several, pinning could pick one the peer's
        // inbound policy does not expect.
        if (latch->latched && latch->state == LatchState::kEstablished &&
            SingleReqid(sas)) {
          Status pinned = directory_.PinSocket(fds[0], *latch->latched);
          if (!pinned.ok()) {
            fail(pinned);
            return;
          }
        }
        if (Latch* listener = latches_.FindListenerFor(s.id, conv)) {
          LatchAlert a;
          a.latch_id = listener->id;
          a.owner = s.id;
          a.subscription_id = listener->subscription_id;
          a.old_state = LatchState::kListener;
          a.new_state = LatchState::kListener;
          a.why = Why::kListenerSpawned;
          a.message = "listener spawned latch " + std::to_string(latch->id) +
                      " for " + conv.ToString();
          a.conversation = conv;
          if (latch->latched) a.peer = latch->latched->peer;
          Deliver({a});
        }
      }
      if (subscribe) latch->subscription_id = id;
      // The pToken of a latch changes only with the latch, so repeated
      // inquiries (the common case) reuse its encoding.
      std::string out = reply.SerializeAsString();
      AppendLengthDelimited(pb::Reply::kPtokenFieldNumber, LatchPTokenBytes(*latch), &out);
      QueueReply(s, out);
      return;
    }
    case pb::Request::kSetSocketPtoken: {
      SocketFacts f;
      if (!need_socket(&f)) return;
      const pb::PToken& t = req.set_socket_ptoken().template_();
      ProtectionRequest pr;
      pr.caller = s.caller;
      pr.socket_fd = fds[0];
      pr.listener = f.Listening();
      if (f.remote) pr.conversation = f.Conversation();
      if (t.has_local() && !t.local().identity().empty()) {
        pr.local_identity = t.local().identity();
      }
      pr.remote_identity = WantedPeer(t);
      pr.credential_uri = t.local().credential_uri();
      if (uint64_t signer_id = t.local().signer_id(); signer_id != 0) {
        auto signer = signers_.find(signer_id);
        // Only the process that registered the key may have it used.
        if (signer == signers_.end() || signer->second.caller.pid != s.caller.pid ||
            signer->second.caller.uid != s.caller.uid) {
          fail(Status::Fail(EPERM, Why::kPolicyForbids,
                            "signer " + std::to_string(signer_id) +
                                " is not a key registered by this process"));
          return;
        }
        pr.signer_id = signer_id;
        pr.signer_spki.assign(signer->second.spki.begin(), signer->second.spki.end());
      }
      if (t.local().credential_file_attached()) {
        if (fds.size() < 2) {
          fail(Status::Fail(EBADF, Why::kNoDescriptor,
                            "the template announces a credential file but "
                            "descriptor 1 is missing"));
          return;
        }
        struct stat st;
        if (fstat(fds[1], &st) != 0 || !S_ISREG(st.st_mode)) {
          fail(Status::Fail(EINVAL, Why::kCredentialFile,
                            "descriptor 1 (credential file) is not a regular file"));
          return;
        }
        pr.credential_fd = fds[1];
      }
      pr.require_privacy = t.privacy() == IPSEC_API_ATTR_ENABLE;
      pr.require_integrity = t.integrity() == IPSEC_API_ATTR_ENABLE;
      pr.require_tunnel = t.tunnel() == IPSEC_API_ATTR_ENABLE;
      pr.policy_name = t.policy_name();
      Status st = directory_.RequestProtection(pr);
      if (!st.ok()) {
        fail(st);
        return;
      }
      if (s.expectations.size() >= options_.max_latches_per_session) {
        s.expectations.clear();  // stale sockets' wishes; bounded memory
      }
      s.expectations[f.Key()] = pr.remote_identity;
      pb::PToken* p = reply.mutable_ptoken();
      *p = t;
      if (pr.listener && !latches_.FindListener(s.id, f.local)) {
        Latch& l = latches_.CreateListenerLatch(s.id, f.Key(), f.local, f.Protocol());
        p->set_latch_id(l.id);
        p->set_latch_state(IPSEC_LATCH_LISTENER);
      }
      QueueReply(s, reply.SerializeAsString());
      return;
    }
    case pb::Request::kLookupDatagram:
    case pb::Request::kCheckSend: {
      SocketFacts f;
      if (!need_socket(&f)) return;
      const bool send = req.body_case() == pb::Request::kCheckSend;
      const pb::Address& remote_pb = send ? req.check_send().remote()
                                          : req.lookup_datagram().remote();
      auto remote = FromProto(remote_pb);
      if (!remote) {
        fail(Status::Fail(EINVAL, Why::kMalformed,
                          "remote address must be 4 or 16 octets and port "
                          "at most 65535"));
        return;
      }
      FiveTuple conv{f.local, *remote, f.Protocol()};
      // A wildcard-bound socket: a datagram leaves from the address the
      // route to the peer gives, and (without IP_PKTINFO from the caller)
      // that is also taken as the address a received one came to.
      if (f.local.address.value == 0 &&
          (send || !req.lookup_datagram().has_local())) {
        if (auto source = SourceAddressFor(*remote)) conv.local.address = *source;
      }
      // A socket bound to the wildcard address may name the datagram's
      // destination address, never another port than its own.
      if (!send && req.lookup_datagram().has_local() && f.local.address.value == 0) {
        auto local = FromProto(req.lookup_datagram().local());
        if (!local || local->port != f.local.port) {
          fail(Status::Fail(EACCES, Why::kPolicyForbids,
                            "the local address must be on the socket's own port"));
          return;
        }
        conv.local = *local;
      }
      auto sas = directory_.FindSas(conv);
      std::optional<std::string> wanted;
      if (send) wanted = WantedPeer(req.check_send().template_());
      if (send && sas.empty()) {
        ProtectionRequest pr;
        pr.caller = s.caller;
        pr.socket_fd = fds[0];
        pr.conversation = conv;
        pr.remote_identity = wanted;
        Status st = directory_.RequestProtection(pr);
        if (!st.ok()) {
          fail(st);
          return;
        }
        sas = directory_.FindSas(conv);
        if (sas.empty()) {
          fail(Status::Fail(EAGAIN, Why::kSaSetupFailed,
                            "no SA protects " + conv.ToString() +
                                " yet; IKE was started, retry"));
          return;
        }
      }
      pb::PToken* p = reply.mutable_ptoken();
      ToProto(conv, p->mutable_conversation());
      if (sas.empty()) {
        FillUnprotected(p);
        ToProto(conv, p->mutable_conversation());
        QueueReply(s, reply.SerializeAsString());
        return;
      }
      // Every SA that could carry the datagram must have the wanted peer.
      for (const SaInfo& sa : sas) {
        if (wanted && sa.peer.id != *wanted) {
          fail(Status::Fail(ECONNREFUSED, Why::kPeerMismatch,
                            "the SA for " + conv.ToString() + " has peer '" +
                                sa.peer.id + "', not '" + *wanted + "'"));
          return;
        }
      }
      FillPToken(sas.back(), BindingFor(sas.back()), p);
      QueueReply(s, reply.SerializeAsString());
      return;
    }
    case pb::Request::kGetChannelBinding: {
      SocketFacts f;
      if (!need_socket(&f)) return;
      if (!f.remote) {
        fail(Status::Fail(ENOTCONN, Why::kNotConnected, "the socket is not connected"));
        return;
      }
      const std::string& hash = req.get_channel_binding().hash();
      if (hash != "SHA-256" && hash != "SHA-384" && hash != "SHA-512") {
        fail(Status::Fail(EINVAL, Why::kNotSupported,
                          "channel binding hash '" + hash +
                              "' is not one of SHA-256, SHA-384, SHA-512"));
        return;
      }
      Latch* latch = latches_.FindByConversation(s.id, f.local, *f.remote);
      std::optional<SaInfo> sa;
      if (latch && latch->latched) {
        if (latch->state == LatchState::kBroken) {
          fail(Status::Fail(ECONNRESET, Why::kLatchBroken,
                            "the connection's latch is BROKEN"));
          return;
        }
        sa = latch->latched;
      } else {
        auto sas = directory_.FindSas(f.Conversation());
        if (!sas.empty()) sa = sas.back();
      }
      if (!sa) {
        fail(Status::Fail(ENOTCONN, Why::kNotProtected,
                          "no IPsec SA covers " + f.Conversation().ToString()));
        return;
      }
      auto value = ChannelBindingValue(*sa, hash);
      if (!value) {
        fail(Status::Fail(ENOTSUP, Why::kNotSupported,
                          std::string("no end-point channel binding: the peer "
                                      "is known by ") +
                              AuthKindText(sa->peer.auth) +
                              ", not by a public key"));
        return;
      }
      reply.mutable_channel_binding()->set_hash(hash);
      reply.mutable_channel_binding()->set_value(
          std::string(value->begin(), value->end()));
      QueueReply(s, reply.SerializeAsString());
      return;
    }
    case pb::Request::kReleaseLatch: {
      ptoken_cache_.erase(req.release_latch().latch_id());
      if (!latches_.Release(s.id, req.release_latch().latch_id())) {
        fail(Status::Fail(ESRCH, Why::kUnknownLatch,
                          "latch " + std::to_string(req.release_latch().latch_id()) +
                              " is not held by this connection"));
        return;
      }
      QueueReply(s, reply.SerializeAsString());
      return;
    }
    case pb::Request::kRegisterSigner: {
      const std::string& spki = req.register_signer().spki();
      if (spki.empty() || spki.size() > 4096) {
        fail(Status::Fail(EINVAL, Why::kBadArgument,
                          "RegisterSigner needs the key's SubjectPublicKeyInfo (at most 4096 octets)"));
        return;
      }
      size_t held = 0;
      for (const auto& [id, signer] : signers_) held += signer.session == s.id;
      if (held >= 64) {
        fail(Status::Fail(ENOSPC, Why::kTooLarge, "at most 64 signers per connection"));
        return;
      }
      uint64_t signer_id = next_signer_++;
      signers_[signer_id] = Signer{s.id, id, s.caller, spki};
      reply.mutable_signer()->set_signer_id(signer_id);
      QueueReply(s, reply.SerializeAsString());
      return;
    }
    case pb::Request::kSignResponse: {
      const pb::SignResponse& r = req.sign_response();
      auto c = challenges_.find(r.challenge_id());
      if (c == challenges_.end() || signers_.count(c->second.signer_id) == 0 ||
          signers_[c->second.signer_id].session != s.id) {
        fail(Status::Fail(ESRCH, Why::kBadArgument,
                          "challenge " + std::to_string(r.challenge_id()) +
                              " was not sent to this connection or is answered"));
        return;
      }
      SignDone done = std::move(c->second.done);
      challenges_.erase(c);
      QueueReply(s, reply.SerializeAsString());
      if (r.signature().empty()) {
        done(std::nullopt, r.refusal().empty() ? "refused" : r.refusal());
      } else {
        done(r.signature(), "");
      }
      return;
    }
    case pb::Request::kAdminListSas:
    case pb::Request::kAdminListPolicy:
    case pb::Request::kAdminInitiate:
    case pb::Request::kAdminTerminate:
    case pb::Request::kAdminRekey:
    case pb::Request::kAdminReload:
    case pb::Request::kAdminStats:
    case pb::Request::kAdminFollowEvents:
    case pb::Request::kAdminListLatches:
    case pb::Request::kAdminVersion:
      HandleAdmin(s, req);
      return;
    case pb::Request::BODY_NOT_SET:
      break;
  }
  fail(Status::Fail(EOPNOTSUPP, Why::kMalformed,
                    "request " + std::to_string(id) + " has no known body"));
}

void Server::Deliver(const std::vector<LatchAlert>& alerts) {
  for (const LatchAlert& a : alerts) {
    if (a.subscription_id == 0) continue;  // state stays readable via get
    auto it = sessions_.find(a.owner);
    if (it == sessions_.end()) continue;
    pb::Reply r;
    r.set_version(kProtocolVersion);
    r.set_id(a.subscription_id);
    pb::LatchEvent* e = r.mutable_event();
    e->set_latch_id(a.latch_id);
    e->set_old_state(static_cast<uint32_t>(a.old_state));
    e->set_new_state(static_cast<uint32_t>(a.new_state));
    e->set_reason(static_cast<uint32_t>(a.why));
    e->set_why(a.message);
    ToProto(a.conversation, e->mutable_conversation());
    if (a.peer) ToProto(*a.peer, nullptr, e->mutable_peer());
    QueueReply(*it->second, r.SerializeAsString());
  }
  for (const LatchAlert& a : alerts) {
    if (a.old_state == a.new_state && a.why != Why::kListenerSpawned) continue;
    pb::AdminEvent e;
    e.set_kind("latch");
    e.set_reason(WhyName(a.why));
    if (a.peer) e.set_peer_id(a.peer->id);
    e.set_text("latch " + std::to_string(a.latch_id) + " " +
               LatchStateName(a.old_state) + " -> " +
               LatchStateName(a.new_state) + " (" + a.conversation.ToString() +
               "): " + a.message);
    PublishAdminEvent(e);
  }
}

void Server::OnSaEvent(const SaEvent& event) {
  bindings_.erase(event.sa.child_sa_id);
  ptoken_cache_.clear();  // any latch may have moved
  Deliver(latches_.OnSaEvent(event));
}

const std::string& Server::BindingFor(const SaInfo& sa) {
  // Hashing on every inquiry would dominate the request cost.
  auto it = bindings_.find(sa.child_sa_id);
  if (it != bindings_.end()) return it->second;
  if (bindings_.size() > 4096) bindings_.clear();
  auto value = ChannelBindingValue(sa, "SHA-256");
  return bindings_[sa.child_sa_id] =
             value ? std::string(value->begin(), value->end()) : std::string();
}

const std::string& Server::LatchPTokenBytes(const Latch& latch) {
  auto it = ptoken_cache_.find(latch.id);
  if (it != ptoken_cache_.end()) return it->second;
  if (ptoken_cache_.size() > latches_.size() + 1024) ptoken_cache_.clear();
  pb::PToken p;
  if (latch.latched) {
    FillPToken(*latch.latched, BindingFor(*latch.latched), &p);
  } else {
    FillUnprotected(&p);
  }
  p.set_latch_id(latch.id);
  p.set_latch_state(static_cast<uint32_t>(latch.state));
  ToProto(latch.conversation, p.mutable_conversation());
  return ptoken_cache_[latch.id] = p.SerializeAsString();
}

void Server::CloseAllLatches(const std::string& message) {
  ptoken_cache_.clear();
  Deliver(latches_.CloseAll(message));
}

// ------------------------------------------------------------ administration

void Server::PublishAdminEvent(const pb::AdminEvent& event) {
  pb::Reply r;
  r.set_version(kProtocolVersion);
  pb::AdminEvent* e = r.mutable_admin_event();
  *e = event;
  if (e->time_unix_ms() == 0) {
    e->set_time_unix_ms(std::chrono::duration_cast<std::chrono::milliseconds>(
                            std::chrono::system_clock::now().time_since_epoch())
                            .count());
  }
  for (auto& [id, session] : sessions_) {
    if (session->follow_id == 0 || session->closing) continue;
    r.set_id(session->follow_id);
    QueueReply(*session, r.SerializeAsString());
  }
}

size_t Server::follower_count() const {
  size_t n = 0;
  for (const auto& [id, session] : sessions_) n += session->follow_id != 0;
  return n;
}

void Server::HandleAdmin(Session& s, const pb::Request& req) {
  const uint64_t id = req.id();
  if (admin_ == nullptr) {
    QueueReply(s, ErrorReply(id, Status::Fail(EOPNOTSUPP, Why::kNotSupported,
                                              "this endpoint has no "
                                              "administrative interface")));
    return;
  }
  const std::optional<gid_t> admin_gid = admin_->AdminGroup();
  if (!IsAdmin(s.caller, admin_gid)) {
    const std::string group = admin_->AdminGroupName();
    QueueReply(s, ErrorReply(id, Status::Fail(
                                     EPERM, Why::kPrivilegeRequired,
                                     "uid " + std::to_string(s.caller.uid) +
                                         " may not administer btnsd: run as root" +
                                         (group.empty()
                                              ? std::string(" (no api.admin_group "
                                                            "is configured)")
                                              : " or join group '" + group + "'"))));
    return;
  }
  pb::Reply reply;
  reply.set_version(kProtocolVersion);
  reply.set_id(id);
  switch (req.body_case()) {
    case pb::Request::kAdminFollowEvents:
      s.follow_id = id;
      reply.mutable_admin_result()->set_message("following events");
      QueueReply(s, reply.SerializeAsString());
      return;
    case pb::Request::kAdminListLatches: {
      pb::LatchList* list = reply.mutable_latch_list();
      for (const auto& [latch_id, latch] : latches_.all()) {
        pb::LatchStatus* l = list->add_latches();
        l->set_id(latch_id);
        l->set_state(LatchStateName(latch.state));
        auto owner = sessions_.find(latch.owner);
        if (owner != sessions_.end()) {
          l->set_owner_pid(static_cast<uint32_t>(owner->second->caller.pid));
          l->set_owner_uid(owner->second->caller.uid);
        }
        l->set_conversation(latch.conversation.ToString());
        if (latch.latched) {
          l->set_peer_id(latch.latched->peer.id);
          l->set_peer_auth(AuthKindText(latch.latched->peer.auth));
          l->set_child_sa_id(latch.latched->child_sa_id);
          l->set_ike_sa_id(latch.latched->ike_sa_id);
          l->set_policy_name(latch.latched->policy_name);
        } else if (latch.expected_peer) {
          l->set_peer_id(*latch.expected_peer);
        }
      }
      QueueReply(s, reply.SerializeAsString());
      return;
    }
    default:
      break;
  }
  Status st = admin_->Handle(req, &reply);
  if (req.body_case() == pb::Request::kAdminStats) {
    auto add = [&](const char* name, uint64_t value) {
      pb::Counter* c = reply.mutable_stats()->add_counters();
      c->set_name(name);
      c->set_value(value);
    };
    add("api_clients", sessions_.size());
    add("api_event_followers", follower_count());
    add("api_latches", latches_.size());
  }
  if (req.body_case() == pb::Request::kAdminVersion) {
    reply.mutable_version_info()->set_api_version(kProtocolVersion);
  }
  if (!st.ok()) {
    reply.mutable_error()->set_errno_value(st.error);
    reply.mutable_error()->set_reason(static_cast<uint32_t>(st.why));
    reply.mutable_error()->set_why(st.message);
  }
  QueueReply(s, reply.SerializeAsString());
}

}  // namespace btns_api
