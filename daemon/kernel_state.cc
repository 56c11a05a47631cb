#include "daemon/kernel_state.h"

#include <cerrno>

#include "daemon/log.h"
#include "kernel_glue/xfrm_rules.h"

namespace btnsd::daemon {

KernelState::KernelState(kernel_glue::XfrmInterface& xfrm, std::mutex& mutex,
                         KernelTags tags)
    : xfrm_(xfrm), mutex_(mutex), tags_(tags) {}

bool KernelState::InstallSa(const ike::sa::InstallChildSa& sa) {
  auto params = ToKernelSa(sa, tags_);
  if (auto* error = std::get_if<std::string>(&params)) {
    BTNSD_LOG(Level::kError, "kernel-sa-install-failed", {"ike_sa", sa.ike_sa},
              {"child_sa", sa.child_sa}, {"spi", sa.spi}, {"error", *error});
    return false;
  }
  const auto& kernel_sa = std::get<kernel_glue::SaParams>(params);
  kernel_glue::Status status;
  {
    std::lock_guard lock(mutex_);
    if (sa.direction == ike::sa::SaDirection::kInbound) {
      // Our SPIs come from XFRM_MSG_ALLOCSPI: fill the larval SA. If it
      // timed out in the kernel meanwhile, add the SA afresh.
      status = xfrm_.UpdateSa(kernel_sa);
      if (!status.ok() && (status.error().error_number == ENOENT ||
                           status.error().error_number == ESRCH))
        status = xfrm_.AddSa(kernel_sa);
    } else {
      status = xfrm_.AddSa(kernel_sa);
      if (!status.ok() && status.error().error_number == EEXIST)
        status = xfrm_.UpdateSa(kernel_sa);
    }
  }
  const char* direction =
      sa.direction == ike::sa::SaDirection::kInbound ? "in" : "out";
  if (!status.ok()) {
    BTNSD_LOG(Level::kError, "kernel-sa-install-failed", {"ike_sa", sa.ike_sa},
              {"child_sa", sa.child_sa}, {"dir", direction},
              {"spi", kernel_sa.id.ToString()},
              {"error", status.error().ToString()});
    return false;
  }
  installed_[kernel_sa.id.ToString()] = kernel_sa;
  BTNSD_LOG(Level::kDebug, "kernel-sa-installed", {"ike_sa", sa.ike_sa},
            {"child_sa", sa.child_sa}, {"dir", direction},
            {"sa", kernel_sa.id.ToString()}, {"reqid", kernel_sa.reqid});
  return true;
}

bool KernelState::DeleteSa(const ike::sa::DeleteChildSa& sa) {
  const kernel_glue::SaId id = ToKernelSaId(sa, tags_);
  installed_.erase(id.ToString());
  kernel_glue::Status status;
  {
    std::lock_guard lock(mutex_);
    status = xfrm_.DeleteSa(id);
  }
  // A hard expiry already removed it: that is the state we want.
  if (!status.ok() && status.error().error_number != ENOENT &&
      status.error().error_number != ESRCH) {
    BTNSD_LOG(Level::kError, "kernel-sa-delete-failed", {"ike_sa", sa.ike_sa},
              {"sa", id.ToString()}, {"error", status.error().ToString()});
    return false;
  }
  BTNSD_LOG(Level::kDebug, "kernel-sa-deleted", {"ike_sa", sa.ike_sa},
            {"sa", id.ToString()});
  return true;
}

bool KernelState::UpdateEncapsulation(
    const ike::sa::UpdateChildSaEncapsulation& update) {
  const kernel_glue::SaId id = ToKernelSaId(
      ike::sa::DeleteChildSa{update.ike_sa, update.child_sa, update.direction,
                             update.destination, update.spi},
      tags_);
  auto it = installed_.find(id.ToString());
  if (it == installed_.end()) {
    BTNSD_LOG(Level::kWarning, "kernel-sa-encap-update-failed",
              {"ike_sa", update.ike_sa}, {"sa", id.ToString()},
              {"error", "SA not installed by this daemon"});
    return false;
  }
  kernel_glue::SaParams params = it->second;
  params.encap = kernel_glue::UdpEncap{update.encapsulation.source_port,
                                       update.encapsulation.destination_port};
  kernel_glue::Status status;
  {
    std::lock_guard lock(mutex_);
    status = xfrm_.UpdateSa(params);
  }
  if (!status.ok()) {
    BTNSD_LOG(Level::kError, "kernel-sa-encap-update-failed",
              {"ike_sa", update.ike_sa}, {"sa", id.ToString()},
              {"error", status.error().ToString()});
    return false;
  }
  it->second = params;
  BTNSD_LOG(Level::kInfo, "kernel-sa-encap-updated", {"ike_sa", update.ike_sa},
            {"sa", id.ToString()}, {"sport", params.encap->src_port},
            {"dport", params.encap->dst_port});
  return true;
}

bool KernelState::MoveSa(const ike::sa::MoveChildSa& move) {
  const kernel_glue::SaId old_id = ToKernelSaId(
      ike::sa::DeleteChildSa{move.ike_sa, move.child_sa, move.direction,
                             move.old_destination, move.spi},
      tags_);
  auto it = installed_.find(old_id.ToString());
  if (it == installed_.end()) {
    BTNSD_LOG(Level::kWarning, "kernel-sa-move-failed", {"ike_sa", move.ike_sa},
              {"sa", old_id.ToString()}, {"error", "SA not installed by this daemon"});
    return false;
  }
  kernel_glue::SaParams moved = MovedKernelSa(it->second, move, tags_);
  const bool in_place = moved.id == old_id;
  kernel_glue::Status status;
  {
    std::lock_guard lock(mutex_);
    // XFRM changes no SA's addresses: read where the SA stands and add it
    // again. The same SPI and destination (inbound) means the old one
    // must go first.
    auto current = xfrm_.QuerySa(old_id);
    if (current.ok()) {
      moved.replay = current.value().replay;
      moved.counters = current.value().counters;
    }
    if (in_place) status = xfrm_.DeleteSa(old_id);
    if (status.ok()) status = xfrm_.AddSa(moved);
    if (!status.ok() && status.error().error_number == EEXIST)
      status = xfrm_.UpdateSa(moved);
  }
  if (!status.ok()) {
    BTNSD_LOG(Level::kError, "kernel-sa-move-failed", {"ike_sa", move.ike_sa},
              {"sa", old_id.ToString()}, {"error", status.error().ToString()});
    if (in_place) installed_.erase(it);
    return false;
  }
  if (in_place) installed_.erase(it);
  installed_[moved.id.ToString()] = moved;
  BTNSD_LOG(Level::kInfo, "kernel-sa-moved", {"ike_sa", move.ike_sa},
            {"child_sa", move.child_sa},
            {"dir", move.direction == ike::sa::SaDirection::kInbound ? "in" : "out"},
            {"from", old_id.ToString()}, {"sa", moved.id.ToString()},
            {"src", moved.src.ToString()},
            {"dport", moved.encap ? moved.encap->dst_port : 0});
  return true;
}

bool KernelState::InstallPolicy(const ike::sa::InstallPolicy& policy) {
  auto translated = ToKernelPolicies(policy, tags_);
  if (auto* error = std::get_if<std::string>(&translated)) {
    BTNSD_LOG(Level::kError, "kernel-policy-install-failed",
              {"child_sa", policy.child_sa}, {"error", *error});
    return false;
  }
  bool ok = true;
  for (const auto& params :
       std::get<std::vector<kernel_glue::PolicyParams>>(translated)) {
    Slot& slot = slots_[kernel_glue::PolicyKey(params.id)];
    if (slot.child && *slot.child == params) {
      ++slot.child_users;
      continue;
    }
    kernel_glue::Status status;
    {
      std::lock_guard lock(mutex_);
      // Over a trap or an older CHILD_SA's policy: replace in place, so
      // traffic never sees a gap (make-before-break).
      status = (slot.trap || slot.child) ? xfrm_.UpdatePolicy(params)
                                         : xfrm_.AddPolicy(params);
      if (!status.ok() && status.error().error_number == EEXIST)
        status = xfrm_.UpdatePolicy(params);
      if (!status.ok() && (status.error().error_number == ENOENT ||
                           status.error().error_number == ESRCH))
        status = xfrm_.AddPolicy(params);
    }
    if (!status.ok()) {
      BTNSD_LOG(Level::kError, "kernel-policy-install-failed",
                {"child_sa", policy.child_sa},
                {"policy", params.id.ToString()},
                {"error", status.error().ToString()});
      ok = false;
      if (!slot.trap && !slot.child) slots_.erase(kernel_glue::PolicyKey(params.id));
      continue;
    }
    slot.child = params;
    ++slot.child_users;
    if (!RemoveBypasses(slot)) ok = false;
    BTNSD_LOG(Level::kDebug, "kernel-policy-installed",
              {"child_sa", policy.child_sa}, {"policy", params.id.ToString()},
              {"priority", params.priority});
  }
  return ok;
}

bool KernelState::RemovePolicy(const ike::sa::RemovePolicy& policy) {
  auto translated = ToKernelPolicyIds(policy, tags_);
  if (auto* error = std::get_if<std::string>(&translated)) {
    BTNSD_LOG(Level::kError, "kernel-policy-remove-failed",
              {"child_sa", policy.child_sa}, {"error", *error});
    return false;
  }
  bool ok = true;
  for (const auto& id : std::get<std::vector<kernel_glue::PolicyId>>(translated)) {
    const std::string key = kernel_glue::PolicyKey(id);
    auto it = slots_.find(key);
    if (it == slots_.end() || !it->second.child) continue;
    Slot& slot = it->second;
    if (--slot.child_users > 0) continue;
    slot.child.reset();
    kernel_glue::Status status;
    {
      std::lock_guard lock(mutex_);
      status = slot.trap ? xfrm_.UpdatePolicy(*slot.trap) : xfrm_.DeletePolicy(id);
    }
    if (!status.ok() && status.error().error_number != ENOENT) {
      BTNSD_LOG(Level::kError, "kernel-policy-remove-failed",
                {"child_sa", policy.child_sa}, {"policy", id.ToString()},
                {"error", status.error().ToString()});
      ok = false;
    }
    if (slot.trap && !InstallBypasses(slot)) ok = false;
    if (!slot.trap) slots_.erase(it);
  }
  return ok;
}

uint32_t KernelState::TrapReqid(size_t index) const {
  // The top of the owned range, counting down: the engine hands out reqids
  // from the bottom, so the two never meet in practice.
  const uint32_t span = tags_.ownership.reqid_max - tags_.ownership.reqid_min;
  return tags_.ownership.reqid_max - static_cast<uint32_t>(index % (span + 1));
}

bool KernelState::InstallBypasses(Slot& slot) {
  if (slot.bypasses_installed || slot.child) return true;
  bool ok = true;
  for (const auto& params : slot.bypasses) {
    kernel_glue::Status status;
    {
      std::lock_guard lock(mutex_);
      status = xfrm_.AddPolicy(params);
      if (!status.ok() && status.error().error_number == EEXIST)
        status = xfrm_.UpdatePolicy(params);
    }
    if (!status.ok()) {
      BTNSD_LOG(Level::kError, "kernel-bypass-install-failed",
                {"policy", params.id.ToString()},
                {"error", status.error().ToString()});
      ok = false;
    }
  }
  slot.bypasses_installed = true;
  return ok;
}

bool KernelState::RemoveBypasses(Slot& slot) {
  if (!slot.bypasses_installed) return true;
  slot.bypasses_installed = false;
  bool ok = true;
  for (const auto& params : slot.bypasses) {
    kernel_glue::Status status;
    {
      std::lock_guard lock(mutex_);
      status = xfrm_.DeletePolicy(params.id);
    }
    if (!status.ok() && status.error().error_number != ENOENT) {
      BTNSD_LOG(Level::kError, "kernel-bypass-remove-failed",
                {"policy", params.id.ToString()},
                {"error", status.error().ToString()});
      ok = false;
    }
  }
  return ok;
}

bool KernelState::SetTrap(const kernel_glue::PolicyParams& params) {
  Slot& slot = slots_[kernel_glue::PolicyKey(params.id)];
  if (slot.trap && *slot.trap == params) return true;
  const bool had_trap = slot.trap.has_value();
  RemoveBypasses(slot);
  slot.trap = params;
  slot.bypasses = NeighborDiscoveryBypasses(params, tags_);
  if (slot.child) return true;  // comes into force when the child goes
  kernel_glue::Status status;
  {
    std::lock_guard lock(mutex_);
    status = had_trap ? xfrm_.UpdatePolicy(params) : xfrm_.AddPolicy(params);
    if (!status.ok() && status.error().error_number == EEXIST)
      status = xfrm_.UpdatePolicy(params);
  }
  if (!status.ok()) {
    BTNSD_LOG(Level::kError, "kernel-trap-install-failed",
              {"policy", params.id.ToString()},
              {"error", status.error().ToString()});
    slot.trap.reset();
    slot.bypasses.clear();
    if (!slot.child) slots_.erase(kernel_glue::PolicyKey(params.id));
    return false;
  }
  return InstallBypasses(slot);
}

bool KernelState::ClearTrap(const std::string& key) {
  auto it = slots_.find(key);
  if (it == slots_.end() || !it->second.trap) return true;
  const kernel_glue::PolicyId id = it->second.trap->id;
  RemoveBypasses(it->second);
  it->second.trap.reset();
  it->second.bypasses.clear();
  if (it->second.child) return true;
  slots_.erase(it);
  kernel_glue::Status status;
  {
    std::lock_guard lock(mutex_);
    status = xfrm_.DeletePolicy(id);
  }
  if (!status.ok() && status.error().error_number != ENOENT) {
    BTNSD_LOG(Level::kError, "kernel-trap-remove-failed",
              {"policy", id.ToString()}, {"error", status.error().ToString()});
    return false;
  }
  return true;
}

size_t KernelState::SyncTraps(const ike::policy::PolicySnapshot& snapshot) {
  size_t failures = 0;
  std::set<std::string> wanted;
  const auto& entries = snapshot.spd.entries();
  for (size_t index = 0; index < entries.size(); ++index) {
    const auto& entry = entries[index];
    // Every PROTECT entry, whatever its start action (RFC 4301 section
    // 5.1: PROTECT traffic never leaves unprotected): without a CHILD_SA
    // the kernel holds matching traffic back and raises ACQUIRE, which the
    // engine answers by the start action (none: no initiation), and drops
    // matching traffic that arrives in the clear (section 5.2).
    if (entry.action != ike::policy::SpdAction::kProtect) continue;
    auto traps = TrapPolicies(entry, TrapReqid(index), tags_);
    if (auto* error = std::get_if<std::string>(&traps)) {
      BTNSD_LOG(Level::kWarning, "trap-not-installed", {"spd", entry.name},
                {"start", std::string(ike::policy::StartActionName(
                              entry.protect.start))},
                {"error", *error},
                {"why", "matching traffic is not held back while no CHILD_SA "
                        "covers it"});
      ++failures;
      continue;
    }
    for (const auto& params : std::get<std::vector<kernel_glue::PolicyParams>>(traps)) {
      const std::string key = kernel_glue::PolicyKey(params.id);
      if (wanted.count(key) != 0) continue;  // an earlier entry wins (first match)
      wanted.insert(key);
      if (!SetTrap(params)) ++failures;
    }
    BTNSD_LOG(Level::kInfo, "trap-installed", {"spd", entry.name});
  }
  std::vector<std::string> stale;
  for (const auto& [key, slot] : slots_)
    if (slot.trap && wanted.count(key) == 0) stale.push_back(key);
  for (const auto& key : stale)
    if (!ClearTrap(key)) ++failures;
  return failures;
}

bool KernelState::FlushOwned() {
  kernel_glue::Status status;
  {
    std::lock_guard lock(mutex_);
    status = xfrm_.FlushOwned();
  }
  slots_.clear();
  installed_.clear();
  if (!status.ok()) {
    BTNSD_LOG(Level::kError, "kernel-flush-failed",
              {"error", status.error().ToString()});
    return false;
  }
  return true;
}

size_t KernelState::trap_count() const {
  size_t count = 0;
  for (const auto& [key, slot] : slots_) count += slot.trap ? 1 : 0;
  return count;
}

size_t KernelState::bypass_count() const {
  size_t count = 0;
  for (const auto& [key, slot] : slots_)
    count += slot.bypasses_installed ? slot.bypasses.size() : 0;
  return count;
}

size_t KernelState::child_policy_count() const {
  size_t count = 0;
  for (const auto& [key, slot] : slots_) count += slot.child ? 1 : 0;
  return count;
}

}  // namespace btnsd::daemon
