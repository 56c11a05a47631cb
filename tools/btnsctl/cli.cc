#include "tools/btnsctl/cli.h"

#include <algorithm>
#include <string_view>

#include "tools/btnsctl/admin_commands.h"
#include "tools/btnsctl/check_config.h"

namespace btnsctl {
namespace {

struct Command {
  std::string_view name;
  std::string_view summary;
  bool admin;  // talks to btnsd over the API endpoint
};

constexpr Command kCommands[] = {
    {"list-sas", "IKE SAs and their CHILD SAs: peer, algorithms, SPIs, traffic, lifetimes", true},
    {"list-pad", "the running PAD (who may talk to us, and how they prove it)", true},
    {"list-spd", "the running SPD (what is protected, bypassed, discarded)", true},
    {"list-conns", "PROTECT entries with their start mode and whether they are up", true},
    {"list-policy", "list-pad and list-spd together", true},
    {"initiate", "bring up an SPD entry now: initiate NAME", true},
    {"terminate", "delete an IKE SA (or --child a CHILD SA): terminate ID", true},
    {"rekey", "rekey an IKE SA (or --child a CHILD SA): rekey ID", true},
    {"reload", "re-read the policy file, as SIGHUP does; errors are printed", true},
    {"stats", "counters: handshakes, failures by reason, half-open, cookies, API", true},
    {"events", "follow SA up/down, rekeys, latch changes and alerts (--count N)", true},
    {"list-latches", "connection latches (pTokens) held by applications", true},
    {"version", "versions of btnsctl, btnsd and the BTNS API", true},
    {"check-config", "validate a policy file and print its PAD and SPD", false},
};

void Usage(std::ostream& os) {
  os << "usage: btnsctl COMMAND [--json] [--socket PATH] [ARGS...]\n\ncommands:\n";
  for (const auto& c : kCommands)
    os << "  " << c.name << std::string(15 - std::min<size_t>(14, c.name.size()), ' ')
       << c.summary << "\n";
  os << "\nEvery command prints a table, or JSON with --json. The daemon's socket\n"
        "is --socket PATH, else $BTNS_API_SOCKET, else daemon.api_socket of\n"
        "/etc/btnsd/btnsd.yaml, else /run/btnsd/api.sock.\n"
        "Exit status: 0 ok, 1 failed, 2 usage, 3 btnsd not reachable,\n"
        "4 permission denied (run as root or join the api.admin_group).\n"
        "Run 'btnsctl COMMAND --help' for a command's options.\n";
}

}  // namespace

int Run(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  if (args.empty()) {
    Usage(err);
    return kExitUsage;
  }
  // Options may also come before the command: btnsctl --socket S list-sas.
  std::vector<std::string> leading;
  size_t at = 0;
  while (at < args.size()) {
    const std::string& a = args[at];
    if (a == "--json") {
      leading.push_back(a);
      ++at;
    } else if ((a == "--socket" || a == "--timeout") && at + 1 < args.size()) {
      leading.push_back(a);
      leading.push_back(args[at + 1]);
      at += 2;
    } else {
      break;
    }
  }
  if (at == args.size()) {
    Usage(err);
    return kExitUsage;
  }
  const std::string& name = args[at];
  if (name == "-h" || name == "--help" || name == "help") {
    Usage(out);
    return kExitOk;
  }
  std::vector<std::string> rest(args.begin() + at + 1, args.end());
  rest.insert(rest.end(), leading.begin(), leading.end());
  for (const auto& c : kCommands) {
    if (c.name != name) continue;
    return c.admin ? RunAdminCommand(name, rest, out, err)
                   : RunCheckConfig(rest, out, err);
  }
  err << "btnsctl: unknown command '" << name << "'\n";
  Usage(err);
  return kExitUsage;
}

}  // namespace btnsctl
