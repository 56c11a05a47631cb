#include "btns_api/sa_directory.h"

#include <algorithm>

namespace btns_api {
namespace {

TrafficSelector HostSelector(const Endpoint& e, uint8_t protocol) {
  TrafficSelector ts;
  ts.addresses = ike::policy::IpRange::Host(e.address);
  ts.protocol = protocol;
  ts.ports = {e.port, e.port};
  return ts;
}

bool AnyContains(const std::vector<TrafficSelector>& set,
                 const TrafficSelector& host) {
  for (const auto& ts : set) {
    if (ts.Contains(host)) return true;
  }
  return false;
}

}  // namespace

std::vector<uint32_t> Caller::AllGroups() const {
  std::vector<uint32_t> all;
  all.reserve(groups.size() + 1);
  all.push_back(gid);
  all.insert(all.end(), groups.begin(), groups.end());
  return all;
}

bool Caller::InGroup(gid_t group) const {
  return gid == group || std::find(groups.begin(), groups.end(), group) != groups.end();
}

std::string FiveTuple::ToString() const {
  return std::to_string(protocol) + " " + local.address.ToString() + ":" +
         std::to_string(local.port) + " -> " + remote.address.ToString() +
         ":" + std::to_string(remote.port);
}

bool SaInfo::Covers(const FiveTuple& t) const {
  return AnyContains(local_ts, HostSelector(t.local, t.protocol)) &&
         AnyContains(remote_ts, HostSelector(t.remote, t.protocol));
}

bool SaInfo::CoversLocal(const Endpoint& local, uint8_t protocol) const {
  return AnyContains(local_ts, HostSelector(local, protocol));
}

}  // namespace btns_api
