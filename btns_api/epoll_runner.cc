#include "btns_api/epoll_runner.h"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>

#include "btns_api/admin.h"

namespace btns_api {

namespace {
constexpr size_t kMaxFdsPerRead = 8;
constexpr int kMaxReadsPerWake = 16;  // fairness between connections
}  // namespace

int CreateEndpoint(const EndpointOptions& options, std::string* why) {
  if ((options.mode & ~static_cast<mode_t>(0660)) != 0) {
    *why = "endpoint mode must be 0660 or stricter";
    return -1;
  }
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (options.path.empty() || options.path.size() >= sizeof addr.sun_path) {
    *why = "endpoint path '" + options.path + "' is empty or longer than " +
           std::to_string(sizeof addr.sun_path - 1) + " octets";
    return -1;
  }
  std::memcpy(addr.sun_path, options.path.c_str(), options.path.size() + 1);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    *why = std::string("socket: ") + std::strerror(errno);
    return -1;
  }
  struct stat st;
  if (lstat(options.path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      *why = "endpoint path '" + options.path + "' exists and is not a socket";
      close(fd);
      return -1;
    }
    unlink(options.path.c_str());
  }
  mode_t old = umask(0177);
  int rc = bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  umask(old);
  if (rc != 0) {
    *why = "bind " + options.path + ": " + std::strerror(errno);
    close(fd);
    return -1;
  }
  if ((options.group && chown(options.path.c_str(), static_cast<uid_t>(-1),
                              *options.group) != 0) ||
      chmod(options.path.c_str(), options.mode) != 0) {
    *why = "setting group/mode of " + options.path + ": " + std::strerror(errno);
    close(fd);
    unlink(options.path.c_str());
    return -1;
  }
  if (listen(fd, 64) != 0) {
    *why = std::string("listen: ") + std::strerror(errno);
    close(fd);
    return -1;
  }
  return fd;
}

EpollRunner::EpollRunner(Server& server, int listen_fd)
    : server_(server), listen_fd_(listen_fd) {
  epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
  wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = listen_fd_;
  epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, listen_fd_, &ev);
  ev.data.fd = wake_fd_;
  epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, wake_fd_, &ev);
  server_.SetOutputReadyCallback([this](uint64_t session) {
    auto it = fds_.find(session);
    if (it != fds_.end()) Flush(it->second);
  });
}

EpollRunner::~EpollRunner() {
  server_.SetOutputReadyCallback(nullptr);
  for (auto& [fd, session] : sessions_) {
    server_.CloseSession(session);
    close(fd);
  }
  close(listen_fd_);
  close(wake_fd_);
  close(epoll_fd_);
}

void EpollRunner::Post(std::function<void()> task) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    posted_.push_back(std::move(task));
  }
  uint64_t one = 1;
  (void)!write(wake_fd_, &one, sizeof one);
}

void EpollRunner::Stop() {
  Post([this] { stop_ = true; });
}

void EpollRunner::RunPosted() {
  uint64_t count;
  (void)!read(wake_fd_, &count, sizeof count);
  std::vector<std::function<void()>> tasks;
  {
    std::lock_guard<std::mutex> lock(mu_);
    tasks.swap(posted_);
  }
  for (auto& t : tasks) t();
}

void EpollRunner::Run() {
  while (!stop_) PollOnce(-1);
}

void EpollRunner::PollOnce(int timeout_ms) {
  // The directory's deadlines (a socket waiting too long for its SA) are
  // kept on time, not only when the next request happens to arrive.
  const auto deadline = server_.NextDeadline();
  if (deadline) {
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(
                          *deadline - std::chrono::steady_clock::now())
                          .count();
    const int wait = static_cast<int>(std::clamp<long long>(left, 0, 1 << 30));
    if (timeout_ms < 0 || wait < timeout_ms) timeout_ms = wait;
  }
  epoll_event events[32];
  int n = epoll_wait(epoll_fd_, events, 32, timeout_ms);
  if (deadline && std::chrono::steady_clock::now() >= *deadline) server_.OnDeadline();
  for (int i = 0; i < n; ++i) {
    int fd = events[i].data.fd;
    if (fd == listen_fd_) {
      Accept();
    } else if (fd == wake_fd_) {
      RunPosted();
    } else if (sessions_.count(fd)) {
      if (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) OnReadable(fd);
      if (sessions_.count(fd) && (events[i].events & EPOLLOUT)) Flush(fd);
    }
  }
}

void EpollRunner::Accept() {
  for (;;) {
    int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return;
    std::optional<Caller> caller = ReadPeerCaller(fd);
    if (!caller) {
      close(fd);
      continue;
    }
    uint64_t session = server_.OpenSession(std::move(*caller));
    sessions_[fd] = session;
    fds_[session] = fd;
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = fd;
    epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev);
  }
}

void EpollRunner::OnReadable(int fd) {
  const uint64_t session = sessions_[fd];
  // A read stops at every request that carries descriptors, so a client
  // with several requests in flight needs one read per request. Reading on
  // until EAGAIN saves it an epoll_wait per request but costs a sequential
  // client a useless read each time: do it only for a connection whose last
  // wake found more than one request waiting, probing now and then.
  ReadPattern& pattern = read_patterns_[fd];
  const bool read_on = pattern.pipelined || ++pattern.wakes % 16 == 0;
  int frames_read = 0;
  uint8_t buf[16384];
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFdsPerRead)];
  for (int round = 0; round < kMaxReadsPerWake; ++round) {
    iovec iov{buf, sizeof buf};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    ssize_t n = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) break;
    std::vector<int> fds;
    if (n > 0) {
      for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
          size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
          const int* p = reinterpret_cast<const int*>(CMSG_DATA(c));
          fds.insert(fds.end(), p, p + count);
        }
      }
    }
    if (n <= 0) {
      for (int f : fds) close(f);
      CloseConnection(fd);
      return;
    }
    if (msg.msg_flags & MSG_CTRUNC) server_.OnDescriptorsTruncated(session);
    const bool carried_fds = !fds.empty();
    server_.OnInput(session, buf, static_cast<size_t>(n), std::move(fds));
    ++frames_read;
    if (server_.WantsClose(session)) break;
    // A short read without descriptors drained the socket.
    if (static_cast<size_t>(n) < sizeof buf && (!carried_fds || !read_on)) break;
  }
  if (read_on) pattern.pipelined = frames_read > 1;
  // One send for every reply this wake produced.
  Flush(fd);
}

void EpollRunner::Flush(int fd) {
  auto it = sessions_.find(fd);
  if (it == sessions_.end()) return;
  const uint64_t session = it->second;
  for (;;) {
    std::string_view out = server_.PendingOutput(session);
    if (out.empty()) break;
    ssize_t n = send(fd, out.data(), out.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EAGAIN) break;
      CloseConnection(fd);
      return;
    }
    server_.ConsumeOutput(session, static_cast<size_t>(n));
  }
  const bool pending = !server_.PendingOutput(session).empty();
  if (!pending && server_.WantsClose(session)) {
    CloseConnection(fd);
    return;
  }
  if (pending == (write_armed_.count(fd) > 0)) return;
  if (pending) {
    write_armed_.insert(fd);
  } else {
    write_armed_.erase(fd);
  }
  epoll_event ev{};
  ev.events = EPOLLIN | (pending ? static_cast<uint32_t>(EPOLLOUT) : 0u);
  ev.data.fd = fd;
  epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, fd, &ev);
}

void EpollRunner::CloseConnection(int fd) {
  auto it = sessions_.find(fd);
  if (it == sessions_.end()) return;
  server_.CloseSession(it->second);
  read_patterns_.erase(fd);
  fds_.erase(it->second);
  sessions_.erase(it);
  write_armed_.erase(fd);
  epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
  close(fd);
}

}  // namespace btns_api
