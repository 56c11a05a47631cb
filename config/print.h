// Renders a policy snapshot the way the daemon understands it: a table for
// people and JSON for tools. Secret values are never printed.
#pragma once

#include <string>

#include "ike/policy/snapshot.h"

namespace btnsd::config {

std::string FormatPolicyTable(const ike::policy::PolicySnapshot& snapshot);
std::string FormatPolicyJson(const ike::policy::PolicySnapshot& snapshot);

}  // namespace btnsd::config
