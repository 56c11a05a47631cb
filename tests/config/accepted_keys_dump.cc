// Loads policy files and prints, as JSON, every mapping the loader checked
// (by field path) with the keys it accepts there, and the algorithm names
// it knows per transform type. tests/config/schema_test.py compares that
// with config/btnsd.schema.json.
//
//   accepted_keys_dump FILE...
#include <iostream>
#include <map>
#include <set>
#include <string>

#include "config/loader.h"
#include "ike/policy/proposal.h"

namespace {

std::string JsonString(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

std::string JsonList(const std::set<std::string>& items) {
  std::string out = "[";
  for (const auto& item : items)
    out += (out.size() > 1 ? ", " : "") + JsonString(item);
  return out + "]";
}

std::string TypeName(ike::policy::TransformType type) {
  switch (type) {
    case ike::policy::TransformType::kEncr: return "encryption";
    case ike::policy::TransformType::kInteg: return "integrity";
    case ike::policy::TransformType::kPrf: return "prf";
    case ike::policy::TransformType::kKe: return "ke";
    case ike::policy::TransformType::kEsn: return "esn";
  }
  return "unknown";
}

}  // namespace

int main(int argc, char** argv) {
  btnsd::config::AcceptedKeys accepted;
  btnsd::config::RecordAcceptedKeys(&accepted);
  btnsd::config::LoadOptions options;
  options.check_secrets_mode = false;  // runfiles do not keep file modes
  int failed = 0;
  for (int i = 1; i < argc; ++i) {
    auto result = btnsd::config::LoadConfigFile(argv[i], options);
    for (const auto& error : result.errors) {
      std::cerr << error.ToString() << "\n";
      ++failed;
    }
  }
  btnsd::config::RecordAcceptedKeys(nullptr);

  std::map<std::string, std::set<std::string>> algorithms;
  for (const auto& a : ike::policy::AllAlgorithmNames())
    algorithms[TypeName(a.type)].insert(std::string(a.name));

  std::cout << "{\n  \"mappings\": {";
  const char* sep = "\n";
  for (const auto& [path, keys] : accepted) {
    std::cout << sep << "    " << JsonString(path) << ": " << JsonList(keys);
    sep = ",\n";
  }
  std::cout << "\n  },\n  \"algorithms\": {";
  sep = "\n";
  for (const auto& [type, names] : algorithms) {
    std::cout << sep << "    " << JsonString(type) << ": " << JsonList(names);
    sep = ",\n";
  }
  std::cout << "\n  }\n}\n";
  return failed == 0 ? 0 : 1;
}
