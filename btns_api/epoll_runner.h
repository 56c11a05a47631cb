// A small epoll loop around Server: accepts API connections on a Unix
// socket, reads frames and SCM_RIGHTS descriptors, writes replies. The
// daemon can drive it from its own loop: epoll_fd() is readable whenever
// PollOnce(0) has work.
#ifndef BTNS_API_EPOLL_RUNNER_H_
#define BTNS_API_EPOLL_RUNNER_H_

#include <sys/types.h>

#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "btns_api/server.h"

namespace btns_api {

struct EndpointOptions {
  std::string path;              // e.g. /run/btnsd/api.sock
  std::optional<gid_t> group;    // group that may connect
  mode_t mode = 0660;            // at most 0660
};

// Creates the listening socket (replacing a stale one at `path`) with the
// requested group and mode; the path is never wider than 0600 before the
// final chmod. Returns -1 with `why` on failure.
int CreateEndpoint(const EndpointOptions& options, std::string* why);

class EpollRunner {
 public:
  // Takes ownership of `listen_fd`.
  EpollRunner(Server& server, int listen_fd);
  ~EpollRunner();
  EpollRunner(const EpollRunner&) = delete;
  EpollRunner& operator=(const EpollRunner&) = delete;

  int epoll_fd() const { return epoll_fd_; }
  // Handles whatever is ready, waiting at most timeout_ms (-1: forever).
  void PollOnce(int timeout_ms);
  // Loops until Stop().
  void Run();
  // Thread-safe.
  void Stop();
  // Thread-safe: runs `task` on the loop thread (e.g. SA events).
  void Post(std::function<void()> task);

 private:
  void Accept();
  void OnReadable(int fd);
  void Flush(int fd);
  void CloseConnection(int fd);
  void RunPosted();

  Server& server_;
  int listen_fd_;
  int epoll_fd_;
  int wake_fd_;
  bool stop_ = false;
  std::map<int, uint64_t> sessions_;   // connection fd -> session
  std::map<uint64_t, int> fds_;        // session -> connection fd
  std::set<int> write_armed_;          // connections with EPOLLOUT armed
  struct ReadPattern {
    bool pipelined = true;  // requests were found queued up behind another
    uint32_t wakes = 0;
  };
  std::map<int, ReadPattern> read_patterns_;
  std::mutex mu_;
  std::vector<std::function<void()>> posted_;
};

}  // namespace btns_api

#endif  // BTNS_API_EPOLL_RUNNER_H_
