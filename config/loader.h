// Loads the daemon's YAML policy file (and the files it includes) into an
// immutable ike::policy::PolicySnapshot. Everything is validated before a
// snapshot exists: a file with any error yields no snapshot, only a list of
// errors, each naming FILE:LINE:COL, the field path and what was expected.
#pragma once

#include <map>
#include <set>
#include <string>
#include <vector>

#include "ike/policy/snapshot.h"

namespace btnsd::config {

inline constexpr char kDefaultConfigPath[] = "/etc/btnsd/btnsd.yaml";

struct ConfigError {
  std::string file;
  int line = 0;    // 1-based; 0 when the error concerns the whole file
  int column = 0;  // 1-based
  std::string field;  // e.g. "pad[2].auth"; empty for file-level errors
  std::string message;
  // "FILE:LINE:COL: field.path: message"
  std::string ToString() const;
};

struct LoadOptions {
  // Check that referenced key/certificate files exist and parse them (to
  // compute pinned key fingerprints). Tests of pure syntax may turn it off.
  bool check_files = true;
  // Refuse a secrets file readable or writable by group or others.
  bool check_secrets_mode = true;
};

struct LoadResult {
  ike::policy::PolicySnapshotPtr snapshot;  // null if errors is not empty
  std::vector<ConfigError> errors;
  bool ok() const { return snapshot != nullptr; }
};

LoadResult LoadConfigFile(const std::string& path,
                          const LoadOptions& options = {});

// For the test that keeps config/btnsd.schema.json in step with the loader:
// while set (on this thread), every mapping the loader checks records its
// field path (e.g. "pad[0].btns") with the keys it accepts there. Null
// turns recording off.
using AcceptedKeys = std::map<std::string, std::set<std::string>>;
void RecordAcceptedKeys(AcceptedKeys* recorder);

// Levenshtein distance, used for "did you mean" hints.
size_t EditDistance(std::string_view a, std::string_view b);

}  // namespace btnsd::config
