// The administrative side of the BTNS API endpoint (btnsctl): what the
// server needs from the daemon to answer operators. The server checks who
// is calling; the backend answers from the daemon's real state.
#ifndef BTNS_API_ADMIN_H_
#define BTNS_API_ADMIN_H_

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "btns_api/btns_api.pb.h"
#include "btns_api/sa_directory.h"

namespace btns_api {

class AdminBackend {
 public:
  virtual ~AdminBackend() = default;
  // The group whose members may use administrative calls besides uid 0
  // (the configuration's api.admin_group), and its name for messages.
  virtual std::optional<gid_t> AdminGroup() = 0;
  virtual std::string AdminGroupName() = 0;
  // Answers one administrative request: list SAs or policy, initiate,
  // terminate, rekey, reload, stats, version. Fills `reply`'s body; a
  // failure is returned (the reply body may still carry details, such as a
  // rejected reload's errors). Called on the server's thread; may block
  // for a bounded time.
  virtual Status Handle(const btns::api::v1::Request& request,
                        btns::api::v1::Reply* reply) = 0;
};

// True when `caller` may use administrative calls: uid 0, or `admin_gid` is
// its primary group or one of its supplementary groups (Caller::groups).
bool IsAdmin(const Caller& caller, std::optional<gid_t> admin_gid);

// The caller behind a connected Unix socket: SO_PEERCRED, and its
// supplementary groups from SO_PEERGROUPS (Linux 4.13), which the kernel
// recorded at connect() like the rest, so no process can swap in. A kernel
// without SO_PEERGROUPS: /proc/PID/status of the SO_PEERCRED pid, used only
// if that process's effective uid and gid are still those of SO_PEERCRED
// (fail closed: no supplementary groups otherwise). nullopt when
// SO_PEERCRED cannot be read.
std::optional<Caller> ReadPeerCaller(int fd);
// The supplementary groups /proc/PID/status lists, provided the process's
// effective uid and gid there are `euid` and `egid`; nullopt if they are
// not (another process may have the pid by now) or it cannot be read.
std::optional<std::vector<gid_t>> ProcessGroups(pid_t pid, uid_t euid, gid_t egid);

// Stable text for the reason codes (e.g. "peer-mismatch").
const char* WhyName(Why why);

}  // namespace btns_api

#endif  // BTNS_API_ADMIN_H_
