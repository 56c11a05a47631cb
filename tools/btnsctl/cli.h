// btnsctl's command line: the subcommand table and dispatch, callable
// in-process (tests) as well as from main().
#pragma once

#include <ostream>
#include <string>
#include <vector>

namespace btnsctl {

// `args` are the words after "btnsctl". Returns the exit status.
int Run(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);

}  // namespace btnsctl
