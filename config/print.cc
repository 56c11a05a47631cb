#include "config/print.h"

#include <algorithm>
#include <sstream>

namespace btnsd::config {
namespace {

using namespace ike::policy;  // NOLINT

std::string JoinTs(const std::vector<TrafficSelector>& ts) {
  std::string s;
  for (const auto& t : ts) s += (s.empty() ? "" : ", ") + t.ToString();
  return s.empty() ? "-" : s;
}

std::string PadAuth(const PadEntry& e) {
  switch (e.auth) {
    case PeerAuthMethod::kPsk: return "psk(" + e.psk_name + ")";
    case PeerAuthMethod::kCa:
      return "ca(" + std::to_string(e.ca_files.size()) + " anchor" +
             (e.ca_files.size() == 1 ? "" : "s") + ")";
    case PeerAuthMethod::kPinnedKey:
      return "pubkey(" + std::to_string(e.pinned_keys.size()) + " key" +
             (e.pinned_keys.size() == 1 ? "" : "s") + ")";
    case PeerAuthMethod::kBtns: {
      std::string s = "btns(";
      if (e.btns.accept_null) s += "null";
      if (e.btns.accept_raw_key)
        s += std::string(e.btns.accept_null ? "," : "") +
             (e.btns.keys.empty() ? "any-key"
                                  : std::to_string(e.btns.keys.size()) +
                                        "-keys");
      return s + ")";
    }
  }
  return "?";
}

std::string Json(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += c;
        }
    }
  }
  return out + "\"";
}

std::string JsonList(const std::vector<std::string>& items) {
  std::string s = "[";
  for (size_t i = 0; i < items.size(); ++i)
    s += (i ? ", " : "") + Json(items[i]);
  return s + "]";
}

std::string JsonTs(const std::vector<TrafficSelector>& ts) {
  std::vector<std::string> v;
  for (const auto& t : ts) v.push_back(t.ToString());
  return JsonList(v);
}

std::string JsonLifetime(const Lifetime& l) {
  return "{\"soft_seconds\": " + std::to_string(l.soft_seconds) +
         ", \"hard_seconds\": " + std::to_string(l.hard_seconds) +
         ", \"soft_bytes\": " + std::to_string(l.soft_bytes) +
         ", \"hard_bytes\": " + std::to_string(l.hard_bytes) +
         ", \"jitter_percent\": " + std::to_string(l.jitter_percent) + "}";
}

}  // namespace

// Left-aligned columns sized to their widest cell.
std::string FormatTextTable(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width;
  for (const auto& r : rows)
    for (size_t i = 0; i < r.size(); ++i) {
      if (width.size() <= i) width.push_back(0);
      width[i] = std::max(width[i], r[i].size());
    }
  std::string out;
  for (const auto& r : rows) {
    std::string line;
    for (size_t i = 0; i < r.size(); ++i) {
      line += r[i];
      if (i + 1 < r.size()) line += std::string(width[i] - r[i].size() + 2, ' ');
    }
    out += line + "\n";
  }
  return out;
}

std::string FormatPolicyTable(const PolicySnapshot& s) {
  std::string out = "Policy from " + s.source_file + "\n\nLocal identities\n";
  std::vector<std::vector<std::string>> rows = {
      {"  NAME", "ID", "CREDENTIAL"}};
  for (const auto& i : s.identities) {
    std::string cred = i.credential == CredentialKind::kCertificate
                           ? "certificate"
                           : i.credential == CredentialKind::kRawKey ? "raw-key"
                                                                      : "-";
    if (!i.psk_name.empty()) cred = cred == "-" ? "psk" : cred + "+psk";
    rows.push_back({"  " + i.name, i.id.ToString(), cred});
  }
  out += FormatTextTable(rows);

  out += "\nPAD (searched in this order; BTNS entries only for peers that "
         "match no authenticated entry)\n";
  rows = {{"  #", "NAME", "PEER-ID", "AUTH", "LOCAL-ID", "REMOTE-TS"}};
  int n = 1;
  for (const auto& e : s.pad.entries())
    rows.push_back({"  " + std::to_string(n++), e.name,
                    e.IsBtns() ? "(key/null)" : e.peer_id.ToString(),
                    PadAuth(e), e.local_identity, JoinTs(e.remote_ts)});
  out += FormatTextTable(rows);

  out += "\nSPD (first match wins; no match = discard)\n";
  rows = {{"  #", "NAME", "SELECTOR", "ACTION", "PEER", "MODE", "ESP", "IKE",
           "START"}};
  n = 1;
  for (const auto& e : s.spd.entries()) {
    bool p = e.action == SpdAction::kProtect;
    std::string mode = p ? std::string(IpsecModeName(e.protect.mode)) : "-";
    if (p && e.protect.mode == IpsecMode::kTunnel && e.protect.tunnel_local &&
        e.protect.tunnel_remote)
      mode += "(" + e.protect.tunnel_local->ToString() + "->" +
              e.protect.tunnel_remote->ToString() + ")";
    std::string peer = p ? e.protect.peer : "-";
    if (p && e.protect.unauthenticated_ok) peer += " [unauth-ok]";
    rows.push_back({"  " + std::to_string(n++), e.name, e.selector.ToString(),
                    std::string(SpdActionName(e.action)), peer, mode,
                    p ? e.protect.esp_proposals : "-",
                    p ? e.protect.ike_proposals : "-",
                    p ? std::string(StartActionName(e.protect.start)) : "-"});
  }
  out += FormatTextTable(rows);

  out += "\nProposal sets\n";
  for (const auto& ps : s.proposals) {
    out += "  " + ps.name + (ps.allow_deprecated ? " (deprecated allowed)" : "") +
           ":";
    for (const auto& p : ps.proposals) out += " " + ProposalToString(p);
    out += "\n";
  }
  return out;
}

std::string FormatPolicyJson(const PolicySnapshot& s) {
  std::ostringstream o;
  o << "{\n  \"source\": " << Json(s.source_file) << ",\n";
  o << "  \"daemon\": {\"ike_port\": " << s.daemon.ike_port
    << ", \"nat_port\": " << s.daemon.nat_port
    << ", \"api_socket\": " << Json(s.daemon.api_socket)
    << ", \"log_level\": " << Json(LogLevelName(s.daemon.log_level)) << "},\n";
  o << "  \"identities\": [";
  for (size_t i = 0; i < s.identities.size(); ++i) {
    const auto& id = s.identities[i];
    o << (i ? ",\n    " : "\n    ") << "{\"name\": " << Json(id.name)
      << ", \"id\": " << Json(id.id.ToString()) << "}";
  }
  o << "\n  ],\n  \"pad\": [";
  const auto& pad = s.pad.entries();
  for (size_t i = 0; i < pad.size(); ++i) {
    const auto& e = pad[i];
    std::vector<std::string> keys;
    for (const auto& k : e.IsBtns() ? e.btns.keys : e.pinned_keys)
      keys.push_back(FingerprintToString(k));
    o << (i ? ",\n    " : "\n    ") << "{\"name\": " << Json(e.name)
      << ", \"peer\": " << Json(e.IsBtns() ? "any" : e.peer_id.ToString())
      << ", \"auth\": " << Json(PeerAuthMethodName(e.auth))
      << ", \"btns\": " << (e.IsBtns() ? "true" : "false");
    if (e.IsBtns())
      o << ", \"accept_null\": " << (e.btns.accept_null ? "true" : "false")
        << ", \"accept_raw_key\": " << (e.btns.accept_raw_key ? "true" : "false");
    if (!e.psk_name.empty()) o << ", \"psk\": " << Json(e.psk_name);
    if (!keys.empty()) o << ", \"keys\": " << JsonList(keys);
    o << ", \"local_identity\": " << Json(e.local_identity)
      << ", \"remote_ts\": " << JsonTs(e.remote_ts) << "}";
  }
  o << "\n  ],\n  \"spd\": [";
  const auto& spd = s.spd.entries();
  for (size_t i = 0; i < spd.size(); ++i) {
    const auto& e = spd[i];
    const auto& sel = e.selector;
    o << (i ? ",\n    " : "\n    ") << "{\"name\": " << Json(e.name)
      << ", \"local\": " << Json(sel.local ? sel.local->ToString() : "any")
      << ", \"remote\": " << Json(sel.remote ? sel.remote->ToString() : "any")
      << ", \"protocol\": " << Json(IpProtocolName(sel.protocol))
      << ", \"local_ports\": " << Json(sel.local_ports.ToString())
      << ", \"remote_ports\": " << Json(sel.remote_ports.ToString())
      << ", \"action\": " << Json(SpdActionName(e.action));
    if (e.action == SpdAction::kProtect) {
      const auto& p = e.protect;
      o << ", \"peer\": " << Json(p.peer)
        << ", \"mode\": " << Json(IpsecModeName(p.mode));
      if (p.tunnel_local && p.tunnel_remote)
        o << ", \"tunnel\": {\"local\": " << Json(p.tunnel_local->ToString())
          << ", \"remote\": " << Json(p.tunnel_remote->ToString()) << "}";
      o << ", \"esp_proposals\": " << Json(p.esp_proposals)
        << ", \"ike_proposals\": " << Json(p.ike_proposals)
        << ", \"start\": " << Json(StartActionName(p.start))
        << ", \"unauthenticated_ok\": "
        << (p.unauthenticated_ok ? "true" : "false")
        << ", \"lifetime\": " << JsonLifetime(p.child_lifetime)
        << ", \"ike_lifetime\": " << JsonLifetime(p.ike_lifetime);
    }
    o << "}";
  }
  o << "\n  ],\n  \"proposals\": {";
  for (size_t i = 0; i < s.proposals.size(); ++i) {
    std::vector<std::string> props;
    for (const auto& p : s.proposals[i].proposals)
      props.push_back(ProposalToString(p));
    o << (i ? ",\n    " : "\n    ") << Json(s.proposals[i].name) << ": "
      << JsonList(props);
  }
  o << "\n  }\n}\n";
  return o.str();
}

}  // namespace btnsd::config
