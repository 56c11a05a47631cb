#include "tools/btnsctl/check_config.h"

#include "config/loader.h"
#include "config/print.h"

namespace btnsctl {

int RunCheckConfig(const std::vector<std::string>& args, std::ostream& out,
                   std::ostream& err) {
  bool json = false;
  std::string file;
  for (const auto& a : args) {
    if (a == "--json") {
      json = true;
    } else if (a == "-h" || a == "--help") {
      out << "usage: btnsctl check-config [--json] [FILE]\n"
             "Validates FILE (default "
          << btnsd::config::kDefaultConfigPath
          << ") and prints its PAD and SPD.\n"
             "Exit status: 0 valid, 1 invalid, 2 usage error.\n";
      return kExitOk;
    } else if (!a.empty() && a[0] == '-') {
      err << "btnsctl check-config: unknown option '" << a
          << "'\nusage: btnsctl check-config [--json] [FILE]\n";
      return kExitUsage;
    } else if (!file.empty()) {
      err << "btnsctl check-config: only one FILE may be given\n"
             "usage: btnsctl check-config [--json] [FILE]\n";
      return kExitUsage;
    } else {
      file = a;
    }
  }
  if (file.empty()) file = btnsd::config::kDefaultConfigPath;
  auto result = btnsd::config::LoadConfigFile(file);
  if (!result.ok()) {
    for (const auto& e : result.errors) err << e.ToString() << "\n";
    err << file << ": " << result.errors.size() << " error"
        << (result.errors.size() == 1 ? "" : "s") << "; nothing applied\n";
    return kExitInvalid;
  }
  out << (json ? btnsd::config::FormatPolicyJson(*result.snapshot)
               : btnsd::config::FormatPolicyTable(*result.snapshot));
  return kExitOk;
}

}  // namespace btnsctl
