#include "ike/policy/snapshot.h"

#include <algorithm>

namespace ike::policy {

std::string_view LogLevelName(LogLevel l) {
  switch (l) {
    case LogLevel::kError: return "error";
    case LogLevel::kWarning: return "warning";
    case LogLevel::kInfo: return "info";
    case LogLevel::kDebug: return "debug";
    case LogLevel::kTrace: return "trace";
  }
  return "?";
}

bool ApiPermissions::MayUseIdentity(uint32_t uid,
                                    const std::vector<uint32_t>& gids,
                                    std::string_view identity) const {
  for (const auto& g : grants) {
    bool who = std::find(g.uids.begin(), g.uids.end(), uid) != g.uids.end();
    for (uint32_t gid : gids)
      if (std::find(g.gids.begin(), g.gids.end(), gid) != g.gids.end())
        who = true;
    if (!who) continue;
    for (const auto& name : g.identities)
      if (name == "*" || name == identity) return true;
  }
  return false;
}

namespace {
template <class T>
const T* FindByName(const std::vector<T>& v, std::string_view name) {
  for (const auto& x : v)
    if (x.name == name) return &x;
  return nullptr;
}

template <class T>
SectionDiff DiffByName(const std::vector<T>& before,
                       const std::vector<T>& after) {
  SectionDiff d;
  for (const auto& b : before) {
    const T* a = FindByName(after, b.name);
    if (!a) d.removed.push_back(b.name);
    else if (!(*a == b)) d.changed.push_back(b.name);
  }
  for (const auto& a : after)
    if (!FindByName(before, a.name)) d.added.push_back(a.name);
  return d;
}

// True if the entries both sides keep appear in a different relative order.
template <class T>
bool OrderChanged(const std::vector<T>& before, const std::vector<T>& after) {
  std::vector<std::string> b, a;
  for (const auto& x : before)
    if (FindByName(after, x.name)) b.push_back(x.name);
  for (const auto& x : after)
    if (FindByName(before, x.name)) a.push_back(x.name);
  return a != b;
}
}  // namespace

const LocalIdentity* PolicySnapshot::FindIdentity(std::string_view n) const {
  return FindByName(identities, n);
}
const ProposalSet* PolicySnapshot::FindProposals(std::string_view n) const {
  return FindByName(proposals, n);
}
const Secret* PolicySnapshot::FindSecret(std::string_view n) const {
  return FindByName(secrets, n);
}

bool SnapshotDiff::empty() const {
  return !daemon_changed && identities.empty() && secrets.empty() &&
         pad.empty() && spd.empty() && proposals.empty() && api.empty() &&
         !pad_order_changed && !spd_order_changed;
}

SnapshotDiff Diff(const PolicySnapshot& before, const PolicySnapshot& after) {
  SnapshotDiff d;
  d.daemon_changed = !(before.daemon == after.daemon);
  d.identities = DiffByName(before.identities, after.identities);
  d.secrets = DiffByName(before.secrets, after.secrets);
  d.pad = DiffByName(before.pad.entries(), after.pad.entries());
  d.spd = DiffByName(before.spd.entries(), after.spd.entries());
  d.proposals = DiffByName(before.proposals, after.proposals);
  d.api = DiffByName(before.api.grants, after.api.grants);
  if (before.api.admin_gid != after.api.admin_gid ||
      before.api.admin_group != after.api.admin_group)
    d.api.changed.push_back("admin_group");
  d.pad_order_changed = OrderChanged(before.pad.entries(), after.pad.entries());
  d.spd_order_changed = OrderChanged(before.spd.entries(), after.spd.entries());
  return d;
}

}  // namespace ike::policy
