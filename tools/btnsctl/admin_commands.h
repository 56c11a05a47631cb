// btnsctl's commands that talk to a running btnsd over the API endpoint
// (administrative calls): list-sas, list-pad, list-spd, list-conns,
// initiate, terminate, rekey, reload, stats, events, list-latches, version.
#pragma once

#include <ostream>
#include <string>
#include <string_view>
#include <vector>

namespace btnsctl {

// Exit codes of the commands that talk to btnsd (check_config.h has 0-2).
inline constexpr int kExitFailed = 1;       // btnsd refused or the operation failed
inline constexpr int kExitUnreachable = 3;  // no btnsd at the socket
inline constexpr int kExitDenied = 4;       // not root and not in the admin group

// The endpoint btnsctl talks to when --socket is not given: $BTNS_API_SOCKET,
// else daemon.api_socket of /etc/btnsd/btnsd.yaml, else the compiled default.
std::string DefaultSocketPath();

// Runs one administrative command (`name` as typed, e.g. "list-sas").
int RunAdminCommand(std::string_view name, const std::vector<std::string>& args,
                    std::ostream& out, std::ostream& err);

}  // namespace btnsctl
