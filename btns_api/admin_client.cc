#include "btns_api/admin_client.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

namespace btns_api {

namespace pb = btns::api::v1;

AdminClient::~AdminClient() {
  if (fd_ >= 0) close(fd_);
}

int AdminClient::Connect(const std::string& path, std::string* why) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (path.size() >= sizeof address.sun_path) {
    *why = "socket path too long: " + path;
    return ENAMETOOLONG;
  }
  std::memcpy(address.sun_path, path.data(), path.size());
  fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd_ < 0) {
    *why = std::string("socket: ") + std::strerror(errno);
    return errno;
  }
  if (connect(fd_, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
    const int error = errno;
    *why = "cannot connect to " + path + ": " + std::strerror(error);
    close(fd_);
    fd_ = -1;
    return error;
  }
  return 0;
}

int AdminClient::Call(pb::Request& request, pb::Reply* reply, int timeout_ms,
                      std::string* why) {
  if (fd_ < 0) {
    *why = "not connected";
    return ENOTCONN;
  }
  request.set_version(1);
  request.set_id(next_id_++);
  std::string frame;
  AppendFrame(request.SerializeAsString(), &frame);
  size_t sent = 0;
  while (sent < frame.size()) {
    const ssize_t n = send(fd_, frame.data() + sent, frame.size() - sent, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      *why = std::string("send to btnsd failed: ") + std::strerror(errno);
      return errno;
    }
    sent += static_cast<size_t>(n);
  }
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                          deadline - std::chrono::steady_clock::now())
                          .count();
    if (left <= 0) {
      *why = "btnsd did not answer within " + std::to_string(timeout_ms) + " ms";
      return ETIMEDOUT;
    }
    pb::Reply r;
    const int rc = Next(&r, static_cast<int>(left), why);
    if (rc != 0) return rc;
    // Connection-level errors carry id 0; pushed events carry older ids.
    if (r.id() == request.id() || (r.id() == 0 && r.has_error())) {
      *reply = std::move(r);
      return 0;
    }
  }
}

int AdminClient::Next(pb::Reply* reply, int timeout_ms, std::string* why) {
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  for (;;) {
    std::string payload;
    switch (decoder_.Next(&payload)) {
      case FrameResult::kFrame:
        if (!reply->ParseFromString(payload)) {
          *why = "btnsd sent a frame that is not a btns.api.v1.Reply";
          return EBADMSG;
        }
        return 0;
      case FrameResult::kTooLarge:
      case FrameResult::kEmpty:
        *why = "btnsd sent an invalid frame";
        return EBADMSG;
      case FrameResult::kNeedMore:
        break;
    }
    int wait = -1;
    if (timeout_ms >= 0) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                            deadline - std::chrono::steady_clock::now())
                            .count();
      if (left <= 0) {
        *why = "nothing from btnsd within " + std::to_string(timeout_ms) + " ms";
        return ETIMEDOUT;
      }
      wait = static_cast<int>(left);
    }
    pollfd p{fd_, POLLIN, 0};
    const int ready = poll(&p, 1, wait);
    if (ready < 0) {
      if (errno == EINTR) continue;
      *why = std::string("poll: ") + std::strerror(errno);
      return errno;
    }
    if (ready == 0) continue;  // the deadline check above reports it
    uint8_t buffer[16384];
    const ssize_t n = recv(fd_, buffer, sizeof buffer, 0);
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      *why = std::string("reading from btnsd failed: ") + std::strerror(errno);
      return errno;
    }
    if (n == 0) {
      *why = "btnsd closed the connection";
      return ECONNRESET;
    }
    decoder_.Append(buffer, static_cast<size_t>(n));
  }
}

}  // namespace btns_api
