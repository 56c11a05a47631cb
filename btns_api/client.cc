// The C client library of the BTNS API: tokens live in the process, the
// daemon is asked over its Unix-domain endpoint with the application's
// socket passed as SCM_RIGHTS.
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "btns/ipsec_api.h"
#include "btns_api/btns_api.pb.h"
#include "btns_api/pkcs11_key.h"

namespace pb = btns::api::v1;

namespace {

constexpr uint32_t kITokenMagic = 0x69546f6b;  // "iTok"
constexpr uint32_t kPTokenMagic = 0x70546f6b;  // "pTok"
constexpr size_t kMaxReplyFrame = 1 << 20;
constexpr char kExportMagic[6] = {'B', 'T', 'N', 'S', 'I', 'T'};
constexpr uint8_t kExportVersion = 1;

thread_local std::string g_why;
thread_local int g_why_code = IPSEC_API_WHY_NONE;

int Fail(int err, int code, std::string why) {
  g_why = std::move(why);
  g_why_code = code;
  errno = err;
  return -1;
}

void Succeed() {
  g_why.clear();
  g_why_code = IPSEC_API_WHY_NONE;
}

std::string Frame(const std::string& payload) {
  std::string frame(4, '\0');
  const uint32_t n = static_cast<uint32_t>(payload.size());
  frame[0] = static_cast<char>(n >> 24);
  frame[1] = static_cast<char>(n >> 16);
  frame[2] = static_cast<char>(n >> 8);
  frame[3] = static_cast<char>(n);
  return frame + payload;
}

bool SendAll(int fd, const std::string& data) {
  size_t sent = 0;
  while (sent < data.size()) {
    ssize_t n = send(fd, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    sent += static_cast<size_t>(n);
  }
  return true;
}

bool ReadAll(int fd, char* out, size_t len) {
  size_t got = 0;
  while (got < len) {
    ssize_t n = recv(fd, out + got, len - got, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    got += static_cast<size_t>(n);
  }
  return true;
}

bool ReadReplyFrame(int fd, pb::Reply* reply) {
  unsigned char header[4];
  if (!ReadAll(fd, reinterpret_cast<char*>(header), 4)) return false;
  size_t len = (size_t{header[0]} << 24) | (size_t{header[1]} << 16) |
               (size_t{header[2]} << 8) | size_t{header[3]};
  if (len == 0 || len > kMaxReplyFrame) return false;
  std::string body(len, '\0');
  return ReadAll(fd, body.data(), len) && reply->ParseFromString(body);
}

// IPSEC_BTNS_CREDENTIAL: the key's own connection to btnsd, registered
// with RegisterSigner, and a thread that answers the daemon's
// SignChallenges with C_Sign for as long as a token holds the key.
class KeySigner {
 public:
  static std::shared_ptr<KeySigner> Start(btns::client::Pkcs11Key key,
                                          const std::string& endpoint) {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (endpoint.size() >= sizeof addr.sun_path) {
      Fail(ENAMETOOLONG, IPSEC_API_WHY_DAEMON_UNAVAILABLE, "endpoint path is too long");
      return nullptr;
    }
    std::memcpy(addr.sun_path, endpoint.c_str(), endpoint.size() + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      Fail(errno, IPSEC_API_WHY_INTERNAL, "socket(AF_UNIX) failed");
      return nullptr;
    }
    if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      int err = errno;
      close(fd);
      Fail(err, IPSEC_API_WHY_DAEMON_UNAVAILABLE,
           "cannot reach btnsd at " + endpoint + ": " + std::strerror(err));
      return nullptr;
    }
    pb::Request req;
    req.set_version(IPSEC_API_VERSION);
    req.set_id(1);
    req.mutable_register_signer()->set_spki(
        std::string(key.spki_der.begin(), key.spki_der.end()));
    pb::Reply reply;
    timeval limit{30, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
    if (!SendAll(fd, Frame(req.SerializeAsString())) || !ReadReplyFrame(fd, &reply) ||
        reply.id() != 1) {
      close(fd);
      Fail(EIO, IPSEC_API_WHY_DAEMON_UNAVAILABLE, "btnsd did not answer RegisterSigner");
      return nullptr;
    }
    if (reply.has_error()) {
      close(fd);
      Fail(reply.error().errno_value() ? int(reply.error().errno_value()) : EIO,
           int(reply.error().reason()), reply.error().why());
      return nullptr;
    }
    timeval forever{0, 0};  // challenges come whenever IKE needs them
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &forever, sizeof forever);
    auto signer = std::shared_ptr<KeySigner>(new KeySigner(std::move(key), fd,
                                                           reply.signer().signer_id()));
    signer->thread_ = std::thread([s = signer.get()] { s->Serve(); });
    return signer;
  }

  ~KeySigner() {
    if (getpid() != owner_) {
      // A fork()ed child has a copy of the token but not the thread, and
      // shares the parent's connection: shutting it down would withdraw
      // the parent's signer. Close our descriptor only; the thread handle
      // names no thread here, so it is left alone.
      close(fd_);
      (void)new std::thread(std::move(thread_));
      return;
    }
    shutdown(fd_, SHUT_RDWR);  // wakes the thread's recv()
    if (thread_.joinable()) thread_.join();
    close(fd_);
  }

  uint64_t id() const { return id_; }
  const btns::client::Pkcs11Key& key() const { return key_; }

 private:
  KeySigner(btns::client::Pkcs11Key key, int fd, uint64_t id)
      : key_(std::move(key)), fd_(fd), id_(id), owner_(getpid()) {}

  void Serve() {
    uint64_t next_id = 2;
    pb::Reply reply;
    while (ReadReplyFrame(fd_, &reply)) {
      if (!reply.has_sign_challenge()) continue;  // acknowledgements
      const pb::SignChallenge& c = reply.sign_challenge();
      std::vector<uint8_t> octets(c.octets().begin(), c.octets().end());
      auto signed_ = btns::client::Pkcs11Sign(key_, c.scheme(), octets);
      pb::Request req;
      req.set_version(IPSEC_API_VERSION);
      req.set_id(next_id++);
      auto* r = req.mutable_sign_response();
      r->set_challenge_id(c.challenge_id());
      if (auto* sig = std::get_if<std::vector<uint8_t>>(&signed_)) {
        r->set_signature(std::string(sig->begin(), sig->end()));
      } else {
        r->set_refusal(std::get<std::string>(signed_));
      }
      if (!SendAll(fd_, Frame(req.SerializeAsString()))) break;
    }
  }

  btns::client::Pkcs11Key key_;
  int fd_ = -1;
  uint64_t id_ = 0;
  pid_t owner_ = 0;
  std::thread thread_;
};

}  // namespace

struct ipsec_iToken {
  uint32_t magic = kITokenMagic;
  pb::IToken value;
  int credential_fd = -1;  // owned; the library opened it for the caller
  std::shared_ptr<KeySigner> signer;  // IPSEC_BTNS_CREDENTIAL

  ~ipsec_iToken() {
    if (credential_fd >= 0) close(credential_fd);
    magic = 0;
  }
};

struct ipsec_pToken {
  uint32_t magic = kPTokenMagic;
  pb::PToken value;
  int local_credential_fd = -1;  // owned dup of the local iToken's file
  std::shared_ptr<KeySigner> local_signer;  // the local iToken's PKCS#11 key

  ~ipsec_pToken() {
    if (local_credential_fd >= 0) close(local_credential_fd);
    magic = 0;
  }
};

namespace {

// One endpoint connection per process; calls are serialised.
class Connection {
 public:
  static Connection& Get() {
    static Connection* c = [] {
      auto* conn = new Connection();
      // A child after fork() must not share the parent's connection.
      pthread_atfork(nullptr, nullptr, [] { Get().forked_ = true; });
      return conn;
    }();
    return *c;
  }

  std::string EndpointPath() {
    std::lock_guard<std::mutex> lock(mu_);
    std::string path = endpoint_;
    if (path.empty()) {
      const char* env = std::getenv("BTNS_API_SOCKET");
      path = env && *env ? env : IPSEC_API_DEFAULT_ENDPOINT;
    }
    return path;
  }

  void SetEndpoint(const char* path) {
    std::lock_guard<std::mutex> lock(mu_);
    endpoint_ = path ? path : "";
    Disconnect();
  }

  // Sends `req` with `fds` and waits for its reply; events that arrive
  // meanwhile are queued. Returns 0, or -1 with errno and why set (also
  // when the reply carries an error).
  int Call(pb::Request* req, const int* fds, size_t nfds, pb::Reply* reply) {
    std::lock_guard<std::mutex> lock(mu_);
    if (EnsureConnected() != 0) return -1;
    req->set_version(IPSEC_API_VERSION);
    req->set_id(next_id_++);
    req->set_fd_count(static_cast<uint32_t>(nfds));
    std::string payload = req->SerializeAsString();
    std::string frame(4, '\0');
    const uint32_t n = static_cast<uint32_t>(payload.size());
    frame[0] = static_cast<char>(n >> 24);
    frame[1] = static_cast<char>(n >> 16);
    frame[2] = static_cast<char>(n >> 8);
    frame[3] = static_cast<char>(n);
    frame += payload;
    if (SendFrame(frame, fds, nfds) != 0) return -1;
    for (;;) {
      pb::Reply r;
      if (ReadReply(&r, -1) != 0) return -1;
      if (r.has_event()) {
        events_.push_back(std::move(r));
        continue;
      }
      if (r.id() == 0 && r.has_error()) {
        Disconnect();
        return Fail(r.error().errno_value() ? r.error().errno_value() : EPROTO,
                    r.error().reason(), "btnsd closed the API connection: " + r.error().why());
      }
      if (r.id() != req->id()) continue;  // a stale reply
      if (r.has_error()) {
        return Fail(r.error().errno_value() ? r.error().errno_value() : EIO,
                    r.error().reason(), r.error().why());
      }
      *reply = std::move(r);
      Succeed();
      return 0;
    }
  }

  int NextEvent(pb::Reply* out, int timeout_ms) {
    const auto deadline = std::chrono::steady_clock::now() +
                          std::chrono::milliseconds(timeout_ms < 0 ? 0 : timeout_ms);
    for (;;) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (!events_.empty()) {
          *out = std::move(events_.front());
          events_.pop_front();
          Succeed();
          return 0;
        }
        if (EnsureConnected() != 0) return -1;
        pb::Reply r;
        int rc = ReadReply(&r, 0);
        if (rc == 0) {
          if (r.has_event()) events_.push_back(std::move(r));
          continue;
        }
        if (errno != ETIMEDOUT) return -1;
      }
      auto now = std::chrono::steady_clock::now();
      if (timeout_ms >= 0 && now >= deadline) {
        return Fail(ETIMEDOUT, IPSEC_API_WHY_NONE, "no latch event arrived in time");
      }
      // Wait without holding the lock so other calls proceed.
      int slice = 20;
      if (timeout_ms >= 0) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now).count();
        slice = static_cast<int>(std::min<long long>(slice, left + 1));
      }
      int fd;
      {
        std::lock_guard<std::mutex> lock(mu_);
        fd = fd_;
      }
      pollfd p{fd, POLLIN, 0};
      poll(&p, 1, slice);
    }
  }

 private:
  void Disconnect() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
    rbuf_.clear();
    events_.clear();
  }

  int EnsureConnected() {
    if (fd_ >= 0 && !forked_) return 0;
    forked_ = false;
    if (fd_ >= 0) {  // inherited across fork(): the parent keeps its own
      close(fd_);
      fd_ = -1;
      rbuf_.clear();
      events_.clear();
    }
    std::string path = endpoint_;
    if (path.empty()) {
      const char* env = std::getenv("BTNS_API_SOCKET");
      path = env && *env ? env : IPSEC_API_DEFAULT_ENDPOINT;
    }
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path.size() >= sizeof addr.sun_path) {
      return Fail(ENAMETOOLONG, IPSEC_API_WHY_DAEMON_UNAVAILABLE,
                  "endpoint path '" + path + "' is too long");
    }
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return Fail(errno, IPSEC_API_WHY_INTERNAL, "socket(AF_UNIX) failed");
    if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      int err = errno;
      close(fd);
      return Fail(err, IPSEC_API_WHY_DAEMON_UNAVAILABLE,
                  "cannot reach btnsd at " + path + ": " + std::strerror(err));
    }
    // A daemon that stops answering must not hang the application forever.
    timeval limit{30, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &limit, sizeof limit);
    fd_ = fd;
    return 0;
  }

  int SendFrame(const std::string& frame, const int* fds, size_t nfds) {
    size_t sent = 0;
    while (sent < frame.size()) {
      iovec iov{const_cast<char*>(frame.data()) + sent, frame.size() - sent};
      msghdr msg{};
      msg.msg_iov = &iov;
      msg.msg_iovlen = 1;
      alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 4)];
      if (sent == 0 && nfds > 0) {
        msg.msg_control = control;
        msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
        cmsghdr* c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
        std::memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
      }
      ssize_t n = sendmsg(fd_, &msg, MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EINTR) continue;
        int err = errno;
        Disconnect();
        return Fail(err, IPSEC_API_WHY_DAEMON_UNAVAILABLE,
                    std::string("sending to btnsd failed: ") + std::strerror(err));
      }
      sent += static_cast<size_t>(n);
    }
    return 0;
  }

  // Reads one Reply frame; timeout_ms 0 means only what is already there.
  int ReadReply(pb::Reply* r, int timeout_ms) {
    for (;;) {
      if (rbuf_.size() >= 4) {
        const auto* p = reinterpret_cast<const uint8_t*>(rbuf_.data());
        size_t len = (size_t{p[0]} << 24) | (size_t{p[1]} << 16) |
                     (size_t{p[2]} << 8) | size_t{p[3]};
        if (len == 0 || len > kMaxReplyFrame) {
          Disconnect();
          return Fail(EPROTO, IPSEC_API_WHY_MALFORMED, "btnsd sent a frame of bad length");
        }
        if (rbuf_.size() >= 4 + len) {
          bool ok = r->ParseFromArray(rbuf_.data() + 4, static_cast<int>(len));
          rbuf_.erase(0, 4 + len);
          if (!ok) {
            Disconnect();
            return Fail(EPROTO, IPSEC_API_WHY_MALFORMED, "btnsd sent an unparsable reply");
          }
          return 0;
        }
      }
      if (timeout_ms == 0) {
        pollfd pfd{fd_, POLLIN, 0};
        if (poll(&pfd, 1, 0) <= 0) return Fail(ETIMEDOUT, IPSEC_API_WHY_NONE, "");
      }
      char buf[16384];
      ssize_t n = recv(fd_, buf, sizeof buf, 0);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        int err = n == 0 ? ECONNRESET : errno;
        Disconnect();
        if (err == EAGAIN || err == EWOULDBLOCK) {
          return Fail(ETIMEDOUT, IPSEC_API_WHY_DAEMON_UNAVAILABLE,
                      "btnsd did not answer within 30 s");
        }
        return Fail(err, IPSEC_API_WHY_DAEMON_UNAVAILABLE, "btnsd closed the API connection");
      }
      rbuf_.append(buf, static_cast<size_t>(n));
    }
  }

  std::mutex mu_;
  std::string endpoint_;
  int fd_ = -1;
  bool forked_ = false;
  uint64_t next_id_ = 1;
  std::string rbuf_;
  std::deque<pb::Reply> events_;
};

bool IsIToken(const void* t) {
  return t && *static_cast<const uint32_t*>(t) == kITokenMagic;
}
bool IsPToken(const void* t) {
  return t && *static_cast<const uint32_t*>(t) == kPTokenMagic;
}

int PutBytes(const void* data, size_t size, uint32_t* attr_len, void* attr_val) {
  if (!attr_len) return Fail(EINVAL, IPSEC_API_WHY_BAD_ARGUMENT, "attr_len is NULL");
  const uint32_t have = *attr_len;
  *attr_len = static_cast<uint32_t>(size);
  if (!attr_val || have < size) {
    return Fail(ERANGE, IPSEC_API_WHY_BAD_ARGUMENT,
                "the attribute needs " + std::to_string(size) + " octets; the buffer has " +
                    std::to_string(have));
  }
  std::memcpy(attr_val, data, size);
  Succeed();
  return 0;
}

int PutString(const std::string& s, uint32_t* attr_len, void* attr_val) {
  return PutBytes(s.c_str(), s.size() + 1, attr_len, attr_val);
}

int PutU16(uint32_t v, uint32_t* attr_len, void* attr_val) {
  uint16_t x = static_cast<uint16_t>(v);
  return PutBytes(&x, sizeof x, attr_len, attr_val);
}

int PutIToken(const pb::IToken& v, uint32_t* attr_len, void* attr_val) {
  if (!attr_len || *attr_len < sizeof(ipsec_iToken_t) || !attr_val) {
    if (attr_len) *attr_len = sizeof(ipsec_iToken_t);
    return Fail(ERANGE, IPSEC_API_WHY_BAD_ARGUMENT,
                "an iToken attribute needs room for one ipsec_iToken_t");
  }
  auto* slot = static_cast<ipsec_iToken_t*>(attr_val);
  if (*slot && !IsIToken(*slot)) {
    return Fail(EINVAL, IPSEC_API_WHY_BAD_ARGUMENT,
                "attr_val points to something that is not an iToken");
  }
  if (!*slot) *slot = new ipsec_iToken();
  (*slot)->value = v;
  *attr_len = sizeof(ipsec_iToken_t);
  Succeed();
  return 0;
}

bool ReadString(uint32_t len, const void* val, std::string* out) {
  if (!val) return false;
  const char* p = static_cast<const char*>(val);
  size_t n = strnlen(p, len);
  out->assign(p, n);
  return true;
}

int GetU16(uint32_t len, const void* val, uint32_t* out) {
  if (!val || len != sizeof(uint16_t)) {
    return Fail(EINVAL, IPSEC_API_WHY_BAD_ARGUMENT,
                "this attribute takes a 2-octet unsigned value");
  }
  uint16_t v;
  std::memcpy(&v, val, sizeof v);
  if (v > IPSEC_API_ATTR_LEVEL_HIGH) {
    return Fail(EINVAL, IPSEC_API_WHY_BAD_ARGUMENT,
                "value " + std::to_string(v) + " is not ANY, ENABLE, DISABLE or LEVEL_*");
  }
  *out = v;
  return 0;
}

int PutSockaddr(const pb::Address& a, uint32_t* attr_len, void* attr_val) {
  sockaddr_storage ss{};
  if (a.ip().size() == 4) {
    auto* sin = reinterpret_cast<sockaddr_in*>(&ss);
    sin->sin_family = AF_INET;
    std::memcpy(&sin->sin_addr, a.ip().data(), 4);
    sin->sin_port = htons(static_cast<uint16_t>(a.port()));
  } else if (a.ip().size() == 16) {
    auto* sin6 = reinterpret_cast<sockaddr_in6*>(&ss);
    sin6->sin6_family = AF_INET6;
    std::memcpy(&sin6->sin6_addr, a.ip().data(), 16);
    sin6->sin6_port = htons(static_cast<uint16_t>(a.port()));
  } else {
    return Fail(ENOENT, IPSEC_API_WHY_NOT_CONNECTED, "the pToken names no conversation");
  }
  return PutBytes(&ss, sizeof ss, attr_len, attr_val);
}

bool ToAddress(const sockaddr* sa, socklen_t len, pb::Address* out) {
  if (!sa) return false;
  if (sa->sa_family == AF_INET && len >= sizeof(sockaddr_in)) {
    auto* sin = reinterpret_cast<const sockaddr_in*>(sa);
    out->set_ip(std::string(reinterpret_cast<const char*>(&sin->sin_addr), 4));
    out->set_port(ntohs(sin->sin_port));
    return true;
  }
  if (sa->sa_family == AF_INET6 && len >= sizeof(sockaddr_in6)) {
    auto* sin6 = reinterpret_cast<const sockaddr_in6*>(sa);
    const uint8_t* b = sin6->sin6_addr.s6_addr;
    static const uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (std::memcmp(b, kMapped, 12) == 0) {
      out->set_ip(std::string(reinterpret_cast<const char*>(b + 12), 4));
    } else {
      out->set_ip(std::string(reinterpret_cast<const char*>(b), 16));
    }
    out->set_port(ntohs(sin6->sin6_port));
    return true;
  }
  return false;
}

std::string NormalizeIdentity(const char* name) {
  std::string s(name);
  static const char* kPrefixes[] = {"fqdn:", "email:", "ipv4:", "ipv6:", "keyid:",
                                    "sha256:", "dn:"};
  if (s == "null") return s;
  for (const char* p : kPrefixes) {
    if (s.rfind(p, 0) == 0) return s;
  }
  return "fqdn:" + s;
}

// Copies the PToken ancillary data of `msg`, if any.
bool FindMsgPToken(const msghdr* msg, pb::PToken* out) {
  if (!msg || !msg->msg_control || msg->msg_controllen < sizeof(cmsghdr)) return false;
  for (cmsghdr* c = CMSG_FIRSTHDR(const_cast<msghdr*>(msg)); c;
       c = CMSG_NXTHDR(const_cast<msghdr*>(msg), c)) {
    if (c->cmsg_level == IPSEC_PTOKEN_CMSG_LEVEL && c->cmsg_type == IPSEC_PTOKEN_CMSG_TYPE) {
      size_t len = c->cmsg_len - CMSG_LEN(0);
      return out->ParseFromArray(CMSG_DATA(c), static_cast<int>(len));
    }
  }
  return false;
}

}  // namespace

extern "C" {

int ipsec_api_set_endpoint(const char* path) {
  Connection::Get().SetEndpoint(path);
  Succeed();
  return 0;
}

const char* ipsec_api_why(void) { return g_why.c_str(); }
int ipsec_api_why_code(void) { return g_why_code; }

ipsec_iToken_t ipsec_create_iToken(void) {
  Succeed();
  return new ipsec_iToken();
}

int ipsec_free_iToken(ipsec_iToken_t p) {
  if (!IsIToken(p)) return Fail(EINVAL, IPSEC_API_WHY_BAD_ARGUMENT, "not an iToken");
  delete p;
  Succeed();
  return 0;
}

ipsec_pToken_t ipsec_create_pToken(void) {
  Succeed();
  return new ipsec_pToken();
}

int ipsec_free_pToken(ipsec_pToken_t p) {
  if (!IsPToken(p)) return Fail(EINVAL, IPSEC_API_WHY_BAD_ARGUMENT, "not a pToken");
  delete p;
  Succeed();
  return 0;
}

int ipsec_get_token_attr(const void* token, uint32_t attr_type, uint32_t* attr_len,
                         void* attr_val) {
  if (IsPToken(token)) {
    const pb::PToken& v = static_cast<const ipsec_pToken*>(token)->value;
    switch (attr_type) {
      case IPSEC_API_ATTR_privacyProtected: return PutU16(v.privacy(), attr_len, attr_val);
      case IPSEC_API_ATTR_integrityProtected: return PutU16(v.integrity(), attr_len, attr_val);
      case IPSEC_API_ATTR_compressionAvailable: return PutU16(v.compression(), attr_len, attr_val);
      case IPSEC_API_ATTR_tunnelMode: return PutU16(v.tunnel(), attr_len, attr_val);
      case IPSEC_API_ATTR_ipoptionsProtected: return PutU16(v.ipoptions(), attr_len, attr_val);
      case IPSEC_API_ATTR_policyName: return PutString(v.policy_name(), attr_len, attr_val);
      case IPSEC_API_ATTR_auditString: return PutString(v.audit_string(), attr_len, attr_val);
      case IPSEC_API_ATTR_informationString:
        return PutString(v.information_string(), attr_len, attr_val);
      case IPSEC_API_ATTR_algorithms: return PutString(v.algorithms(), attr_len, attr_val);
      case IPSEC_API_ATTR_iToken:
        if (!v.has_peer()) {
          return Fail(ENOENT, IPSEC_API_WHY_NOT_PROTECTED, "the pToken has no peer iToken");
        }
        return PutIToken(v.peer(), attr_len, attr_val);
      case IPSEC_API_ATTR_remote_iToken:
        if (!v.has_local()) {
          return Fail(ENOENT, IPSEC_API_WHY_NOT_PROTECTED, "the pToken has no local iToken");
        }
        return PutIToken(v.local(), attr_len, attr_val);
      case IPSEC_API_ATTR_latchState: {
        uint32_t s = v.latch_state();
        return PutBytes(&s, sizeof s, attr_len, attr_val);
      }
      case IPSEC_API_ATTR_latchID: {
        uint64_t id = v.latch_id();
        return PutBytes(&id, sizeof id, attr_len, attr_val);
      }
      case IPSEC_API_ATTR_localAddress:
        return PutSockaddr(v.conversation().local(), attr_len, attr_val);
      case IPSEC_API_ATTR_remoteAddress:
        return PutSockaddr(v.conversation().remote(), attr_len, attr_val);
      case IPSEC_API_ATTR_protocol: return PutU16(v.conversation().protocol(), attr_len, attr_val);
    }
    return Fail(EINVAL, IPSEC_API_WHY_BAD_ARGUMENT,
                "attribute " + std::to_string(attr_type) + " is not a pToken attribute");
  }
  if (IsIToken(token)) {
    const pb::IToken& v = static_cast<const ipsec_iToken*>(token)->value;
    switch (attr_type) {
      case IPSEC_API_ATTR_auditString: return PutString(v.audit_string(), attr_len, attr_val);
      case IPSEC_API_ATTR_authenticationMethod: return PutU16(v.auth_method(), attr_len, attr_val);
      case IPSEC_API_ATTR_certificateAuthorityDN:
        return PutString(v.certificate_authority_dn(), attr_len, attr_val);
      case IPSEC_API_ATTR_certificateDN: return PutString(v.certificate_dn(), attr_len, attr_val);
      case IPSEC_API_ATTR_identity: return PutString(v.identity(), attr_len, attr_val);
      case IPSEC_API_ATTR_pubKeyID:
        if (v.pub_key_id().empty()) {
          return Fail(ENOENT, IPSEC_API_WHY_NOT_SUPPORTED, "the identity has no public key");
        }
        return PutBytes(v.pub_key_id().data(), v.pub_key_id().size(), attr_len, attr_val);
      case IPSEC_API_ATTR_channelBinding:
        if (v.channel_binding().empty()) {
          return Fail(ENOENT, IPSEC_API_WHY_NOT_SUPPORTED,
                      "no end-point channel binding: one side has no public key");
        }
        return PutBytes(v.channel_binding().data(), v.channel_binding().size(), attr_len,
                        attr_val);
      case IPSEC_BTNS_CREDENTIAL: {  // the public key: all that leaves the token
        const auto* t = static_cast<const ipsec_iToken*>(token);
        if (!t->signer) {
          return Fail(ENOENT, IPSEC_API_WHY_NOT_SUPPORTED, "the iToken has no PKCS#11 credential");
        }
        const auto& spki = t->signer->key().spki_der;
        return PutBytes(spki.data(), spki.size(), attr_len, attr_val);
      }
    }
    return Fail(EINVAL, IPSEC_API_WHY_BAD_ARGUMENT,
                "attribute " + std::to_string(attr_type) + " is not an iToken attribute");
  }
  return Fail(EINVAL, IPSEC_API_WHY_BAD_ARGUMENT, "token is neither a pToken nor an iToken");
}

int ipsec_set_iToken_attr(ipsec_iToken_t t, uint32_t attr_type, const void* attr_val,
                          size_t attr_len);

int ipsec_set_token_attr(const void* token, uint32_t attr_type, uint32_t attr_len,
                         const void* attr_val) {
  if (!attr_val) return Fail(EINVAL, IPSEC_API_WHY_BAD_ARGUMENT, "attr_val is NULL");
  if (IsIToken(token)) {
    return ipsec_set_iToken_attr(const_cast<ipsec_iToken*>(static_cast<const ipsec_iToken*>(token)),
                                 attr_type, attr_val, attr_len);
  }
  if (!IsPToken(token)) {
    return Fail(EINVAL, IPSEC_API_WHY_BAD_ARGUMENT, "token is neither a pToken nor an iToken");
  }
  auto* p = const_cast<ipsec_pToken*>(static_cast<const ipsec_pToken*>(token));
  if (p->value.latch_id() != 0 || p->value.has_conversation()) {
    return Fail(EPERM, IPSEC_API_WHY_BAD_ARGUMENT,
                "the pToken describes an established conversation and is read-only; "
                "create a template with ipsec_create_pToken()");
  }
  uint32_t v = 0;
  switch (attr_type) {
    case IPSEC_API_ATTR_privacyProtected:
      if (GetU16(attr_len, attr_val, &v)) return -1;
      p->value.set_privacy(v);
      break;
    case IPSEC_API_ATTR_integrityProtected:
      if (GetU16(attr_len, attr_val, &v)) return -1;
      p->value.set_integrity(v);
      break;
    case IPSEC_API_ATTR_compressionAvailable:
      if (GetU16(attr_len, attr_val, &v)) return -1;
      p->value.set_compression(v);
      break;
    case IPSEC_API_ATTR_tunnelMode:
      if (GetU16(attr_len, attr_val, &v)) return -1;
      p->value.set_tunnel(v);
      break;
    case IPSEC_API_ATTR_ipoptionsProtected:
      if (GetU16(attr_len, attr_val, &v)) return -1;
      p->value.set_ipoptions(v);
      break;
    case IPSEC_API_ATTR_policyName: {
      std::string s;
      ReadString(attr_len, attr_val, &s);
      p->value.set_policy_name(s);
      break;
    }
    case IPSEC_API_ATTR_iToken:
    case IPSEC_API_ATTR_remote_iToken: {
      if (attr_len != sizeof(ipsec_iToken_t)) {
        return Fail(EINVAL, IPSEC_API_WHY_BAD_ARGUMENT,
                    "an iToken attribute takes a pointer to an ipsec_iToken_t");
      }
      ipsec_iToken_t it;
      std::memcpy(&it, attr_val, sizeof it);
      if (!IsIToken(it)) return Fail(EINVAL, IPSEC_API_WHY_BAD_ARGUMENT, "not an iToken");
      if (attr_type == IPSEC_API_ATTR_iToken) {
        *p->value.mutable_peer() = it->value;
        p->value.mutable_peer()->clear_credential_uri();
        p->value.mutable_peer()->set_credential_file_attached(false);
        p->value.mutable_peer()->clear_signer_id();
      } else {
        *p->value.mutable_local() = it->value;
        if (p->local_credential_fd >= 0) close(p->local_credential_fd);
        p->local_credential_fd =
            it->credential_fd >= 0 ? fcntl(it->credential_fd, F_DUPFD_CLOEXEC, 0) : -1;
        p->local_signer = it->signer;
      }
      break;
    }
    default:
      return Fail(EINVAL, IPSEC_API_WHY_BAD_ARGUMENT,
                  "pToken attribute " + std::to_string(attr_type) +
                      " cannot be set (unknown or read-only)");
  }
  Succeed();
  return 0;
}

int ipsec_set_iToken_attr(ipsec_iToken_t t, uint32_t attr_type, const void* attr_val,
                          size_t attr_len) {
  if (!IsIToken(t)) return Fail(EINVAL, IPSEC_API_WHY_BAD_ARGUMENT, "not an iToken");
  if (!attr_val) return Fail(EINVAL, IPSEC_API_WHY_BAD_ARGUMENT, "attr_val is NULL");
  switch (attr_type) {
    case IPSEC_API_ATTR_identity: {
      std::string s;
      ReadString(static_cast<uint32_t>(attr_len), attr_val, &s);
      if (s.empty()) return Fail(EINVAL, IPSEC_API_WHY_BAD_ARGUMENT, "empty identity");
      t->value.set_identity(NormalizeIdentity(s.c_str()));
      break;
    }
    case IPSEC_API_ATTR_authenticationMethod: {
      uint16_t v;
      if (attr_len != sizeof v) {
        return Fail(EINVAL, IPSEC_API_WHY_BAD_ARGUMENT,
                    "authenticationMethod takes a 2-octet unsigned value");
      }
      std::memcpy(&v, attr_val, sizeof v);
      if (v < IPSEC_API_ATTR_authMeth_NONE || v > IPSEC_API_ATTR_authMeth_PKIX_OFFLINE) {
        return Fail(EINVAL, IPSEC_API_WHY_BAD_ARGUMENT,
                    "authenticationMethod " + std::to_string(v) + " is not an authMeth_* value");
      }
      t->value.set_auth_method(v);
      break;
    }
    case IPSEC_BTNS_CREDENTIAL: {
      if (attr_len != sizeof(ipsec_pkcs11_credential)) {
        return Fail(EINVAL, IPSEC_API_WHY_BAD_ARGUMENT,
                    "IPSEC_BTNS_CREDENTIAL takes a struct ipsec_pkcs11_credential");
      }
      ipsec_pkcs11_credential cred;
      std::memcpy(&cred, attr_val, sizeof cred);
      auto opened = btns::client::OpenPkcs11Key(
          static_cast<CK_FUNCTION_LIST_PTR>(const_cast<void*>(cred.functions)), cred.session,
          cred.private_key);
      if (auto* why = std::get_if<std::string>(&opened)) {
        bool leaky = why->find("could leave its token") != std::string::npos;
        return Fail(leaky ? EPERM : EINVAL,
                    leaky ? IPSEC_API_WHY_POLICY_FORBIDS : IPSEC_API_WHY_BAD_ARGUMENT,
                    "PKCS#11 credential: " + *why);
      }
      auto signer = KeySigner::Start(std::move(std::get<btns::client::Pkcs11Key>(opened)),
                                     Connection::Get().EndpointPath());
      if (!signer) return -1;  // why set by Start
      t->signer = std::move(signer);
      t->value.set_signer_id(t->signer->id());
      break;
    }
    case IPSEC_BTNS_CREDENTIAL_FILE: {
      std::string path;
      ReadString(static_cast<uint32_t>(attr_len), attr_val, &path);
      // The slides write "$HOME/keys/..."; expand that one variable.
      if (path.rfind("$HOME/", 0) == 0) {
        const char* home = std::getenv("HOME");
        if (!home) {
          return Fail(ENOENT, IPSEC_API_WHY_CREDENTIAL_FILE,
                      "credential file '" + path + "' uses $HOME, which is not set");
        }
        path = std::string(home) + path.substr(5);
      }
      // Opened here with the caller's rights; the daemon only sees the
      // descriptor, never the path.
      int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY);
      if (fd < 0) {
        int err = errno;
        return Fail(err, IPSEC_API_WHY_CREDENTIAL_FILE,
                    "cannot open credential file '" + path + "': " + std::strerror(err));
      }
      struct stat st;
      if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return Fail(EINVAL, IPSEC_API_WHY_CREDENTIAL_FILE,
                    "credential file '" + path + "' is not a regular file");
      }
      if (t->credential_fd >= 0) close(t->credential_fd);
      t->credential_fd = fd;
      t->value.set_credential_file_attached(true);
      break;
    }
    default:
      return Fail(EINVAL, IPSEC_API_WHY_BAD_ARGUMENT,
                  "iToken attribute " + std::to_string(attr_type) +
                      " cannot be set (unknown or read-only)");
  }
  Succeed();
  return 0;
}

int ipsec_set_socket_pToken(int fd, const ipsec_pToken_t pToken) {
  if (!IsPToken(pToken)) return Fail(EINVAL, IPSEC_API_WHY_BAD_ARGUMENT, "not a pToken");
  pb::Request req;
  pb::PToken* t = req.mutable_set_socket_ptoken()->mutable_template_();
  *t = pToken->value;
  int fds[2] = {fd, pToken->local_credential_fd};
  size_t nfds = 1;
  if (pToken->local_credential_fd >= 0) {
    t->mutable_local()->set_credential_file_attached(true);
    nfds = 2;
  } else if (t->has_local()) {
    t->mutable_local()->set_credential_file_attached(false);
  }
  pb::Reply reply;
  return Connection::Get().Call(&req, fds, nfds, &reply);
}

int ipsec_get_socket_pToken(int fd, ipsec_pToken_t pToken) {
  if (!IsPToken(pToken)) return Fail(EINVAL, IPSEC_API_WHY_BAD_ARGUMENT, "not a pToken");
  pb::Request req;
  req.mutable_get_socket_ptoken();
  pb::Reply reply;
  if (Connection::Get().Call(&req, &fd, 1, &reply) != 0) return -1;
  pToken->value = reply.ptoken();
  if (pToken->local_credential_fd >= 0) close(pToken->local_credential_fd);
  pToken->local_credential_fd = -1;
  return 0;
}

int ipsec_set_msg_pToken(struct msghdr* msg, const ipsec_pToken_t pToken) {
  if (!msg || !IsPToken(pToken)) {
    return Fail(EINVAL, IPSEC_API_WHY_BAD_ARGUMENT, "msg or pToken is not valid");
  }
  std::string data = pToken->value.SerializeAsString();
  if (data.size() > IPSEC_PTOKEN_CMSG_MAX) {
    return Fail(EMSGSIZE, IPSEC_API_WHY_TOO_LARGE, "the pToken does not fit its ancillary data");
  }
  if (!msg->msg_control) {
    return Fail(EINVAL, IPSEC_API_WHY_BAD_ARGUMENT,
                "msg_control must point to a buffer with IPSEC_PTOKEN_CMSG_SPACE free "
                "octets after msg_controllen");
  }
  // The caller guarantees IPSEC_PTOKEN_CMSG_SPACE octets after the used part.
  auto* c = reinterpret_cast<cmsghdr*>(static_cast<char*>(msg->msg_control) +
                                       CMSG_ALIGN(msg->msg_controllen));
  c->cmsg_level = IPSEC_PTOKEN_CMSG_LEVEL;
  c->cmsg_type = IPSEC_PTOKEN_CMSG_TYPE;
  c->cmsg_len = CMSG_LEN(data.size());
  std::memcpy(CMSG_DATA(c), data.data(), data.size());
  msg->msg_controllen = CMSG_ALIGN(msg->msg_controllen) + CMSG_SPACE(data.size());
  Succeed();
  return 0;
}

int ipsec_get_msg_pToken(const struct msghdr* msg, ipsec_pToken_t pToken) {
  if (!IsPToken(pToken)) return Fail(EINVAL, IPSEC_API_WHY_BAD_ARGUMENT, "not a pToken");
  pb::PToken v;
  if (!FindMsgPToken(msg, &v)) {
    return Fail(ENOENT, IPSEC_API_WHY_NOT_PROTECTED,
                msg && (msg->msg_flags & MSG_CTRUNC)
                    ? "no pToken in the message: its control buffer was too small "
                      "(MSG_CTRUNC); add IPSEC_PTOKEN_CMSG_SPACE"
                    : "no pToken in the message (use ipsec_recvmsg)");
  }
  pToken->value = std::move(v);
  Succeed();
  return 0;
}

int ipsec_cmp_iToken(const ipsec_iToken_t a, const ipsec_iToken_t b) {
  if (!IsIToken(a) || !IsIToken(b)) return Fail(EINVAL, IPSEC_API_WHY_BAD_ARGUMENT, "not an iToken");
  Succeed();
  const pb::IToken& x = a->value;
  const pb::IToken& y = b->value;
  // NULL authentication proves nothing that could make two peers equal.
  if (x.auth_method() == IPSEC_API_ATTR_authMeth_NONE ||
      y.auth_method() == IPSEC_API_ATTR_authMeth_NONE) {
    return 1;
  }
  // Keys decide when both sides have one; a name-only iToken (an expected
  // peer from get_new_iToken or an import) matches by identity.
  if (!x.pub_key_id().empty() && !y.pub_key_id().empty()) {
    return x.pub_key_id() == y.pub_key_id() ? 0 : 1;
  }
  if (x.identity() != y.identity()) return 1;
  if (x.auth_method() == IPSEC_API_ATTR_ANY || y.auth_method() == IPSEC_API_ATTR_ANY) return 0;
  return x.auth_method() == y.auth_method() && x.certificate_dn() == y.certificate_dn() &&
                 x.certificate_authority_dn() == y.certificate_authority_dn()
             ? 0
             : 1;
}

int ipsec_cmp_pToken(ipsec_pToken_t p1, ipsec_pToken_t p2) {
  if (!IsPToken(p1) || !IsPToken(p2)) return Fail(EINVAL, IPSEC_API_WHY_BAD_ARGUMENT, "not a pToken");
  const pb::PToken& a = p1->value;
  const pb::PToken& b = p2->value;
  Succeed();
  if (a.privacy() != b.privacy() || a.integrity() != b.integrity() || a.tunnel() != b.tunnel()) {
    return 1;
  }
  if (!a.has_peer() || !b.has_peer()) return 1;
  // The same latch is the same conversation with the same peer, even a
  // NULL-authenticated one, as long as it is not BROKEN.
  if (a.latch_id() != 0 && a.latch_id() == b.latch_id()) {
    return a.latch_state() == IPSEC_LATCH_ESTABLISHED &&
                   b.latch_state() == IPSEC_LATCH_ESTABLISHED
               ? 0
               : 1;
  }
  ipsec_iToken x, y;
  x.value = a.peer();
  y.value = b.peer();
  return ipsec_cmp_iToken(&x, &y);
}

int ipsec_dup_pToken(const ipsec_pToken_t p, ipsec_pToken_t* p_dup) {
  if (!IsPToken(p) || !p_dup) return Fail(EINVAL, IPSEC_API_WHY_BAD_ARGUMENT, "not a pToken");
  auto* d = new ipsec_pToken();
  d->value = p->value;
  d->local_signer = p->local_signer;
  if (p->local_credential_fd >= 0) {
    d->local_credential_fd = fcntl(p->local_credential_fd, F_DUPFD_CLOEXEC, 0);
  }
  *p_dup = d;
  Succeed();
  return 0;
}

int ipsec_dup_iToken(const ipsec_iToken_t p, ipsec_iToken_t* p_dup) {
  if (!IsIToken(p) || !p_dup) return Fail(EINVAL, IPSEC_API_WHY_BAD_ARGUMENT, "not an iToken");
  auto* d = new ipsec_iToken();
  d->value = p->value;
  d->signer = p->signer;
  if (p->credential_fd >= 0) d->credential_fd = fcntl(p->credential_fd, F_DUPFD_CLOEXEC, 0);
  *p_dup = d;
  Succeed();
  return 0;
}

int ipsec_export_iToken(const ipsec_iToken_t t, void* buf, uint32_t* len) {
  if (!IsIToken(t)) return Fail(EINVAL, IPSEC_API_WHY_BAD_ARGUMENT, "not an iToken");
  pb::IToken v = t->value;
  v.clear_credential_uri();  // credentials stay with their owner
  v.clear_credential_file_attached();
  v.clear_signer_id();
  std::string out(kExportMagic, sizeof kExportMagic);
  out.push_back(static_cast<char>(kExportVersion));
  out += v.SerializeAsString();
  return PutBytes(out.data(), out.size(), len, buf);
}

ipsec_iToken_t ipsec_import_iToken(const void* buf, uint32_t len) {
  const char* p = static_cast<const char*>(buf);
  if (!buf || len < sizeof kExportMagic + 1 ||
      std::memcmp(p, kExportMagic, sizeof kExportMagic) != 0) {
    Fail(EINVAL, IPSEC_API_WHY_MALFORMED, "not an exported iToken (bad magic)");
    return nullptr;
  }
  if (static_cast<uint8_t>(p[sizeof kExportMagic]) != kExportVersion) {
    Fail(EINVAL, IPSEC_API_WHY_UNSUPPORTED_VERSION, "exported iToken has an unknown version");
    return nullptr;
  }
  pb::IToken v;
  const size_t header = sizeof kExportMagic + 1;
  if (!v.ParseFromArray(p + header, static_cast<int>(len - header)) ||
      !v.credential_uri().empty() || v.credential_file_attached() || v.signer_id() != 0) {
    Fail(EINVAL, IPSEC_API_WHY_MALFORMED, "exported iToken body is malformed");
    return nullptr;
  }
  auto* t = new ipsec_iToken();
  t->value = std::move(v);
  Succeed();
  return t;
}

ipsec_iToken_t get_new_iToken(const char* name) {
  if (!name || !*name) {
    Fail(EINVAL, IPSEC_API_WHY_BAD_ARGUMENT, "get_new_iToken needs a non-empty name");
    return nullptr;
  }
  auto* t = new ipsec_iToken();
  t->value.set_identity(NormalizeIdentity(name));
  Succeed();
  return t;
}

ipsec_pToken_t ipsec_new_pToken2(ipsec_iToken_t local_iToken, ipsec_iToken_t remote_iToken) {
  if ((local_iToken && !IsIToken(local_iToken)) || (remote_iToken && !IsIToken(remote_iToken))) {
    Fail(EINVAL, IPSEC_API_WHY_BAD_ARGUMENT, "argument is not an iToken");
    return nullptr;
  }
  auto* p = new ipsec_pToken();
  if (local_iToken &&
      ipsec_set_token_attr(p, IPSEC_API_ATTR_remote_iToken, sizeof local_iToken, &local_iToken)) {
    delete p;
    return nullptr;
  }
  if (remote_iToken &&
      ipsec_set_token_attr(p, IPSEC_API_ATTR_iToken, sizeof remote_iToken, &remote_iToken)) {
    delete p;
    return nullptr;
  }
  Succeed();
  return p;
}

ipsec_pToken_t ipsec_new_pToken1(ipsec_iToken_t local_iToken) {
  return ipsec_new_pToken2(local_iToken, nullptr);
}

ipsec_iToken_t ipsec_get_pToken_iToken(const ipsec_pToken_t p) {
  ipsec_iToken_t t = nullptr;
  uint32_t len = sizeof t;
  if (ipsec_get_token_attr(p, IPSEC_API_ATTR_iToken, &len, &t) != 0) return nullptr;
  return t;
}

ssize_t ipsec_recvmsg(int fd, struct msghdr* msg, int flags, ipsec_pToken_t pToken) {
  if (!msg || (pToken && !IsPToken(pToken))) {
    Fail(EINVAL, IPSEC_API_WHY_BAD_ARGUMENT, "msg or pToken is not valid");
    return -1;
  }
  const size_t control_capacity = msg->msg_control ? msg->msg_controllen : 0;
  ssize_t n = recvmsg(fd, msg, flags);
  if (n < 0) return n;
  pb::Request req;
  pb::LookupDatagram* look = req.mutable_lookup_datagram();
  sockaddr_storage peer{};
  socklen_t plen = sizeof peer;
  bool have_remote = ToAddress(static_cast<sockaddr*>(msg->msg_name), msg->msg_namelen,
                               look->mutable_remote());
  if (!have_remote && getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &plen) == 0) {
    have_remote = ToAddress(reinterpret_cast<sockaddr*>(&peer), plen, look->mutable_remote());
  }
  pb::Reply reply;
  pb::PToken result;
  if (!have_remote) {
    Fail(EDESTADDRREQ, IPSEC_API_WHY_BAD_ARGUMENT,
         "recvmsg gave no sender address: set msg_name");
    result.set_information_string("sender unknown");
  } else if (Connection::Get().Call(&req, &fd, 1, &reply) == 0) {
    result = reply.ptoken();
  } else {
    // The datagram is already consumed: hand it over, marked unprotected
    // (the safe reading), with the reason in ipsec_api_why().
    result.set_privacy(IPSEC_API_ATTR_DISABLE);
    result.set_integrity(IPSEC_API_ATTR_DISABLE);
    result.set_information_string("protection unknown: " + g_why);
  }
  if (pToken) pToken->value = result;
  if (control_capacity > 0) {
    std::string data = result.SerializeAsString();
    size_t used = CMSG_ALIGN(msg->msg_controllen);
    if (data.size() <= IPSEC_PTOKEN_CMSG_MAX && used + CMSG_SPACE(data.size()) <= control_capacity) {
      auto* c = reinterpret_cast<cmsghdr*>(static_cast<char*>(msg->msg_control) + used);
      c->cmsg_level = IPSEC_PTOKEN_CMSG_LEVEL;
      c->cmsg_type = IPSEC_PTOKEN_CMSG_TYPE;
      c->cmsg_len = CMSG_LEN(data.size());
      std::memcpy(CMSG_DATA(c), data.data(), data.size());
      msg->msg_controllen = used + CMSG_SPACE(data.size());
    } else {
      msg->msg_flags |= MSG_CTRUNC;
    }
  }
  return n;
}

ssize_t ipsec_sendmsg(int fd, const struct msghdr* msg, int flags, const ipsec_pToken_t pToken) {
  if (!msg || (pToken && !IsPToken(pToken))) {
    Fail(EINVAL, IPSEC_API_WHY_BAD_ARGUMENT, "msg or pToken is not valid");
    return -1;
  }
  pb::Request req;
  pb::CheckSend* check = req.mutable_check_send();
  if (pToken) {
    *check->mutable_template_() = pToken->value;
  } else if (!FindMsgPToken(msg, check->mutable_template_())) {
    Fail(EINVAL, IPSEC_API_WHY_BAD_ARGUMENT,
         "no pToken given and none in msg (ipsec_set_msg_pToken)");
    return -1;
  }
  sockaddr_storage peer{};
  socklen_t plen = sizeof peer;
  bool have_remote = ToAddress(static_cast<const sockaddr*>(msg->msg_name), msg->msg_namelen,
                               check->mutable_remote());
  if (!have_remote && getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &plen) == 0) {
    have_remote = ToAddress(reinterpret_cast<sockaddr*>(&peer), plen, check->mutable_remote());
  }
  if (!have_remote) {
    Fail(EDESTADDRREQ, IPSEC_API_WHY_BAD_ARGUMENT, "sendmsg needs a destination (msg_name)");
    return -1;
  }
  pb::Reply reply;
  if (Connection::Get().Call(&req, &fd, 1, &reply) != 0) return -1;
  // Strip the library's own ancillary data before the kernel sees it.
  msghdr out = *msg;
  std::string control;
  if (msg->msg_control && msg->msg_controllen >= sizeof(cmsghdr)) {
    for (cmsghdr* c = CMSG_FIRSTHDR(const_cast<msghdr*>(msg)); c;
         c = CMSG_NXTHDR(const_cast<msghdr*>(msg), c)) {
      if (c->cmsg_level == IPSEC_PTOKEN_CMSG_LEVEL) continue;
      control.append(reinterpret_cast<const char*>(c), CMSG_ALIGN(c->cmsg_len));
    }
  }
  out.msg_control = control.empty() ? nullptr : control.data();
  out.msg_controllen = control.size();
  return sendmsg(fd, &out, flags);
}

const char* ipsec_channel_binding_hashes(void) { return "SHA-256,SHA-384,SHA-512"; }

int ipsec_get_channel_binding(int fd, const char* hash, void* value, uint32_t* len) {
  pb::Request req;
  req.mutable_get_channel_binding()->set_hash(hash ? hash : "SHA-256");
  pb::Reply reply;
  if (Connection::Get().Call(&req, &fd, 1, &reply) != 0) return -1;
  const std::string& v = reply.channel_binding().value();
  return PutBytes(v.data(), v.size(), len, value);
}

int ipsec_subscribe_latch(int fd, uint64_t* latch_id) {
  pb::Request req;
  req.mutable_subscribe_latch();
  pb::Reply reply;
  if (Connection::Get().Call(&req, &fd, 1, &reply) != 0) return -1;
  if (latch_id) *latch_id = reply.ptoken().latch_id();
  return 0;
}

int ipsec_release_latch(uint64_t latch_id) {
  pb::Request req;
  req.mutable_release_latch()->set_latch_id(latch_id);
  pb::Reply reply;
  return Connection::Get().Call(&req, nullptr, 0, &reply);
}

int ipsec_next_latch_event(struct ipsec_latch_event* event, int timeout_ms) {
  if (!event) return Fail(EINVAL, IPSEC_API_WHY_BAD_ARGUMENT, "event is NULL");
  pb::Reply r;
  if (Connection::Get().NextEvent(&r, timeout_ms) != 0) return -1;
  const pb::LatchEvent& e = r.event();
  std::memset(event, 0, sizeof *event);
  event->latch_id = e.latch_id();
  event->old_state = e.old_state();
  event->new_state = e.new_state();
  event->why = e.reason();
  std::snprintf(event->message, sizeof event->message, "%s", e.why().c_str());
  std::snprintf(event->peer, sizeof event->peer, "%s", e.peer().identity().c_str());
  return 0;
}

}  // extern "C"
