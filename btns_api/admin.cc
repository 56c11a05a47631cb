#include "btns_api/admin.h"

#include <algorithm>
#include <fstream>
#include <sstream>

namespace btns_api {

std::vector<gid_t> SupplementaryGroups(pid_t pid) {
  std::vector<gid_t> groups;
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("Groups:", 0) != 0) continue;
    std::istringstream in(line.substr(7));
    unsigned long gid;
    while (in >> gid) groups.push_back(static_cast<gid_t>(gid));
    break;
  }
  return groups;
}

bool IsAdmin(const Caller& caller, std::optional<gid_t> admin_gid) {
  if (caller.uid == 0) return true;
  if (!admin_gid) return false;
  if (caller.gid == *admin_gid) return true;
  // The pid could in theory be reused between connect() and now; the
  // groups read are then another process's, which is why only the
  // configured admin group (not uid 0 rights) can be gained this way.
  const std::vector<gid_t> groups = SupplementaryGroups(caller.pid);
  return std::find(groups.begin(), groups.end(), *admin_gid) != groups.end();
}

const char* WhyName(Why why) {
  switch (why) {
    case Why::kNone: return "none";
    case Why::kMalformed: return "malformed";
    case Why::kUnsupportedVersion: return "unsupported-version";
    case Why::kNoDescriptor: return "no-descriptor";
    case Why::kNotASocket: return "not-a-socket";
    case Why::kNotConnected: return "not-connected";
    case Why::kNotProtected: return "not-protected";
    case Why::kPolicyForbids: return "policy-forbids";
    case Why::kPrivilegeRequired: return "privilege-required";
    case Why::kPeerMismatch: return "peer-mismatch";
    case Why::kSaSetupFailed: return "sa-setup-failed";
    case Why::kLatchBroken: return "latch-broken";
    case Why::kLatchConflict: return "latch-conflict";
    case Why::kNotSupported: return "not-supported";
    case Why::kTooLarge: return "too-large";
    case Why::kUnknownLatch: return "unknown-latch";
    case Why::kInternal: return "internal";
    case Why::kDaemonUnavailable: return "daemon-unavailable";
    case Why::kAuthenticationFailed: return "authentication-failed";
    case Why::kLocalSpdBlock: return "local-spd-block";
    case Why::kPeerSpdBlock: return "peer-spd-block";
    case Why::kAdministrativelyClosed: return "administratively-closed";
    case Why::kCongruentSa: return "congruent-sa";
    case Why::kConflictCleared: return "conflict-cleared";
    case Why::kListenerSpawned: return "listener-spawned";
    case Why::kBadArgument: return "bad-argument";
    case Why::kCredentialFile: return "credential-file";
  }
  return "unknown";
}

}  // namespace btns_api
