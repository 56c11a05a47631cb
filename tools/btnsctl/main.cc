// btnsctl: the operator's command line tool. Each subcommand is one entry
// in kCommands; add new ones there.
#include <iostream>
#include <string>
#include <string_view>
#include <vector>

#include "tools/btnsctl/check_config.h"

namespace {

struct Command {
  std::string_view name;
  std::string_view summary;
  int (*run)(const std::vector<std::string>& args, std::ostream& out,
             std::ostream& err);
};

constexpr Command kCommands[] = {
    {"check-config", "validate a policy file and print its PAD and SPD",
     &btnsctl::RunCheckConfig},
};

void Usage(std::ostream& os) {
  os << "usage: btnsctl COMMAND [ARGS...]\n\ncommands:\n";
  for (const auto& c : kCommands)
    os << "  " << c.name << std::string(16 - std::min<size_t>(15, c.name.size()), ' ')
       << c.summary << "\n";
  os << "\nRun 'btnsctl COMMAND --help' for a command's options.\n";
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    Usage(std::cerr);
    return btnsctl::kExitUsage;
  }
  std::string_view name = argv[1];
  if (name == "-h" || name == "--help" || name == "help") {
    Usage(std::cout);
    return btnsctl::kExitOk;
  }
  std::vector<std::string> args(argv + 2, argv + argc);
  for (const auto& c : kCommands)
    if (c.name == name) return c.run(args, std::cout, std::cerr);
  std::cerr << "btnsctl: unknown command '" << name << "'\n";
  Usage(std::cerr);
  return btnsctl::kExitUsage;
}
