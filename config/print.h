// Renders a policy snapshot the way the daemon understands it: a table for
// people and JSON for tools. Secret values are never printed.
#pragma once

#include <string>
#include <vector>

#include "ike/policy/snapshot.h"

namespace btnsd::config {

std::string FormatPolicyTable(const ike::policy::PolicySnapshot& snapshot);
std::string FormatPolicyJson(const ike::policy::PolicySnapshot& snapshot);
// Left-aligned columns sized to their widest cell, two spaces apart (the
// human output of btnsctl).
std::string FormatTextTable(const std::vector<std::vector<std::string>>& rows);

}  // namespace btnsd::config
