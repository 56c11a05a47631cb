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
// its primary group or one of its supplementary groups (read from
// /proc/PID/status, as SO_PEERCRED carries only the primary group).
bool IsAdmin(const Caller& caller, std::optional<gid_t> admin_gid);
// The supplementary groups of a process; empty if it cannot be read.
std::vector<gid_t> SupplementaryGroups(pid_t pid);

// Stable text for the reason codes (e.g. "peer-mismatch").
const char* WhyName(Why why);

}  // namespace btns_api

#endif  // BTNS_API_ADMIN_H_
