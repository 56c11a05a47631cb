#include "btns_api/admin.h"

#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <fstream>
#include <sstream>

#ifndef SO_PEERGROUPS
#define SO_PEERGROUPS 59  // Linux 4.13
#endif

namespace btns_api {

namespace {

// The numbers after `key` on its line of /proc/PID/status.
bool StatusNumbers(const std::string& status, const std::string& key,
                   std::vector<unsigned long>* out) {
  std::istringstream lines(status);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.rfind(key, 0) != 0) continue;
    std::istringstream in(line.substr(key.size()));
    unsigned long n;
    while (in >> n) out->push_back(n);
    return true;
  }
  return false;
}

}  // namespace

std::optional<std::vector<gid_t>> ProcessGroups(pid_t pid, uid_t euid, gid_t egid) {
  if (pid <= 0) return std::nullopt;
  std::ifstream file("/proc/" + std::to_string(pid) + "/status");
  if (!file) return std::nullopt;
  std::ostringstream text;
  text << file.rdbuf();
  const std::string status = text.str();
  // Uid:/Gid: list real, effective, saved and filesystem ids; SO_PEERCRED
  // holds the effective ones.
  std::vector<unsigned long> uids, gids, groups;
  if (!StatusNumbers(status, "Uid:", &uids) || !StatusNumbers(status, "Gid:", &gids) ||
      !StatusNumbers(status, "Groups:", &groups) || uids.size() < 2 || gids.size() < 2 ||
      uids[1] != euid || gids[1] != egid)
    return std::nullopt;
  return std::vector<gid_t>(groups.begin(), groups.end());
}

std::optional<Caller> ReadPeerCaller(int fd) {
  ucred cred{};
  socklen_t len = sizeof cred;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return std::nullopt;
  Caller caller{cred.pid, cred.uid, cred.gid, {}};
  std::vector<gid_t> groups(32);
  for (int attempt = 0; attempt < 3; ++attempt) {
    socklen_t size = static_cast<socklen_t>(groups.size() * sizeof(gid_t));
    if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups.data(), &size) == 0) {
      groups.resize(size / sizeof(gid_t));
      caller.groups = std::move(groups);
      return caller;
    }
    if (errno != ERANGE) break;
    // The kernel says how much room the list needs (at most NGROUPS_MAX).
    groups.resize(std::max<size_t>(size / sizeof(gid_t), groups.size() * 2));
  }
  if (errno == ENOPROTOOPT) {
    if (auto read = ProcessGroups(cred.pid, cred.uid, cred.gid)) caller.groups = *read;
  }
  return caller;
}

bool IsAdmin(const Caller& caller, std::optional<gid_t> admin_gid) {
  if (caller.uid == 0) return true;
  return admin_gid && caller.InGroup(*admin_gid);
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
