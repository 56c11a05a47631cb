// `btnsctl check-config`: validate a policy file and print the PAD and SPD
// as the daemon understands them.
#pragma once

#include <ostream>
#include <string>
#include <vector>

namespace btnsctl {

// Exit codes shared by every subcommand.
inline constexpr int kExitOk = 0;
inline constexpr int kExitInvalid = 1;  // the input (config) is invalid
inline constexpr int kExitUsage = 2;    // bad command line

int RunCheckConfig(const std::vector<std::string>& args, std::ostream& out,
                   std::ostream& err);

}  // namespace btnsctl
