#include "ike/policy/spd.h"

namespace ike::policy {

std::string_view SpdActionName(SpdAction a) {
  switch (a) {
    case SpdAction::kProtect: return "protect";
    case SpdAction::kBypass: return "bypass";
    case SpdAction::kDiscard: return "discard";
  }
  return "?";
}

std::string_view IpsecModeName(IpsecMode m) {
  return m == IpsecMode::kTunnel ? "tunnel" : "transport";
}

std::string_view StartActionName(StartAction s) {
  switch (s) {
    case StartAction::kTrap: return "trap";
    case StartAction::kStart: return "start";
    case StartAction::kNone: return "none";
  }
  return "?";
}

std::string SpdSelector::ToString() const {
  std::string s = (local ? local->ToString() : "any");
  if (!local_ports.IsAny()) s += ":" + local_ports.ToString();
  s += " <-> " + (remote ? remote->ToString() : std::string("any"));
  if (!remote_ports.IsAny()) s += ":" + remote_ports.ToString();
  if (protocol != kAnyProtocol) s += " " + IpProtocolName(protocol);
  return s;
}

const SpdEntry* Spd::Find(std::string_view name) const {
  for (const auto& e : entries_)
    if (e.name == name) return &e;
  return nullptr;
}

const SpdEntry* Spd::Lookup(const PacketFiveTuple& p) const {
  for (const auto& e : entries_) {
    const auto& s = e.selector;
    if (s.local && !s.local->Contains(p.local)) continue;
    if (s.remote && !s.remote->Contains(p.remote)) continue;
    if (s.protocol != kAnyProtocol && s.protocol != p.protocol) continue;
    // Ports only constrain protocols that have them; a selector with ports
    // never matches a port-less packet such as ICMP.
    if (!s.local_ports.IsAny() || !s.remote_ports.IsAny()) {
      bool has_ports = p.protocol == 6 || p.protocol == 17 || p.protocol == 132;
      if (!has_ports) continue;
      if (!s.local_ports.Contains(p.local_port) ||
          !s.remote_ports.Contains(p.remote_port))
        continue;
    }
    return &e;
  }
  return nullptr;
}

std::optional<TsPairMatch> Spd::LookupByTrafficSelectors(
    const TrafficSelector& local, const TrafficSelector& remote,
    std::string_view pad_entry, bool peer_authenticated) const {
  for (const auto& e : entries_) {
    if (e.action != SpdAction::kProtect || e.protect.peer != pad_entry)
      continue;
    if (!peer_authenticated && !e.protect.unauthenticated_ok) continue;
    const auto& s = e.selector;
    TrafficSelector sel_local{s.local.value_or(IpRange::All(local.addresses.family())),
                              s.protocol, s.local_ports};
    TrafficSelector sel_remote{
        s.remote.value_or(IpRange::All(remote.addresses.family())), s.protocol,
        s.remote_ports};
    auto l = local.Intersect(sel_local);
    auto r = remote.Intersect(sel_remote);
    if (!l || !r) continue;
    // Both sides of a pair carry one protocol; "any" takes the other's.
    if (l->protocol == kAnyProtocol) l->protocol = r->protocol;
    if (r->protocol == kAnyProtocol) r->protocol = l->protocol;
    if (l->protocol != r->protocol) continue;
    return TsPairMatch{&e, *l, *r};
  }
  return std::nullopt;
}

}  // namespace ike::policy
