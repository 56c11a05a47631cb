#include "tools/btnsctl/admin_commands.h"

#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <functional>
#include <map>
#include <optional>

#include "btns_api/admin_client.h"
#include "config/loader.h"
#include "config/print.h"
#include "tools/btnsctl/check_config.h"

namespace btnsctl {
namespace {

namespace pb = btns::api::v1;

constexpr int kDefaultTimeoutMs = 10000;
constexpr int kPrivilegeRequired = 8;  // IPSEC_API_WHY_PRIVILEGE_REQUIRED

struct Options {
  bool json = false;
  std::string socket;
  int timeout_ms = kDefaultTimeoutMs;
  std::optional<long> count;  // events: stop after N
  bool child = false;         // terminate/rekey: the id is a CHILD SA
  std::vector<std::string> positional;
};

struct CommandSpec {
  std::string_view name;
  std::string_view args;      // for usage lines
  size_t positional;          // how many positional arguments
};

constexpr CommandSpec kSpecs[] = {
    {"list-sas", "", 0},        {"list-pad", "", 0},
    {"list-spd", "", 0},        {"list-conns", "", 0},
    {"list-policy", "", 0},     {"initiate", "SPD-ENTRY", 1},
    {"terminate", "[--child] ID", 1},
    {"rekey", "[--child] ID", 1},
    {"reload", "", 0},          {"stats", "", 0},
    {"events", "[--count N]", 0},
    {"list-latches", "", 0},    {"version", "", 0},
};

std::string UsageLine(const CommandSpec& spec) {
  std::string line = "usage: btnsctl " + std::string(spec.name) +
                     " [--json] [--socket PATH] [--timeout SECONDS]";
  if (!spec.args.empty()) line += " " + std::string(spec.args);
  return line;
}

std::string Hex(uint64_t value, int digits) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%0*llx", digits,
                static_cast<unsigned long long>(value));
  return buffer;
}

std::string Join(const google::protobuf::RepeatedPtrField<std::string>& items) {
  std::string s;
  for (const auto& item : items) s += (s.empty() ? "" : ",") + item;
  return s.empty() ? "-" : s;
}

std::string Duration(int64_t seconds) {
  if (seconds < 0) return "overdue";
  if (seconds < 120) return std::to_string(seconds) + "s";
  if (seconds < 7200) return std::to_string(seconds / 60) + "m";
  if (seconds < 172800) return std::to_string(seconds / 3600) + "h" +
                               std::to_string(seconds % 3600 / 60) + "m";
  return std::to_string(seconds / 86400) + "d";
}

std::string Times(int64_t established, int64_t rekey, int64_t expire) {
  if (established == 0) return "-";
  const int64_t now = std::time(nullptr);
  std::string s = "up " + Duration(now - established);
  s += rekey ? ", rekey in " + Duration(rekey - now) : ", no rekey";
  s += expire ? ", expires in " + Duration(expire - now) : "";
  return s;
}

std::string FormatSas(const pb::SaList& list) {
  if (list.ike_sas().empty()) return "no IKE SAs\n";
  std::string out;
  for (const auto& ike : list.ike_sas()) {
    if (ike.state() == "rekeyed") {
      // Old SPIs whose SA lives on under a new number: one line, so they
      // are not read as a second live SA with the peer.
      out += "IKE SA #" + std::to_string(ike.id()) + "  rekeyed  " +
             ike.local() + " <-> " + ike.remote() + "  old spi " +
             Hex(ike.initiator_spi(), 16) + "_i " +
             Hex(ike.responder_spi(), 16) +
             "_r, replaced; kept until its Delete exchange completes\n";
      continue;
    }
    out += "IKE SA #" + std::to_string(ike.id()) + "  " + ike.state() + "  " +
           (ike.initiator() ? "initiator" : "responder") + "  " + ike.local() +
           " <-> " + ike.remote() + "\n";
    if (!ike.peer_id().empty())
      out += "  peer:  " + ike.peer_id() + "  (auth " + ike.auth_method() +
             (ike.authenticated() ? ", authenticated" : ", unauthenticated") +
             ", PAD entry " + ike.pad_entry() + ")\n";
    out += "  spi:   " + Hex(ike.initiator_spi(), 16) + "_i " +
           Hex(ike.responder_spi(), 16) + "_r\n";
    if (!ike.algorithms().empty()) out += "  ike:   " + ike.algorithms() + "\n";
    out += "  time:  " + Times(ike.established_unix(), ike.rekey_unix(),
                               ike.expire_unix()) + "\n";
    for (const auto& c : ike.children()) {
      out += "  CHILD SA #" + std::to_string(c.id()) + "  spd " + c.spd_entry() +
             "  " + (c.mode().empty() ? "-" : c.mode()) + "  " +
             (c.algorithms().empty() ? "-" : c.algorithms()) +
             (c.replaces() ? "  (rekeyed #" + std::to_string(c.replaces()) + ")"
                           : std::string()) +
             (c.state() == "rekeyed"    ? "  [replaced, kept until its Delete completes]"
              : c.state() == "deleting" ? "  [deleting]"
                                        : "") +
             "\n";
      out += "    spi:     in " + Hex(c.inbound_spi(), 8) + "  out " +
             Hex(c.outbound_spi(), 8) + "\n";
      out += "    ts:      " + Join(c.local_ts()) + " === " + Join(c.remote_ts()) + "\n";
      out += "    traffic: in " + std::to_string(c.bytes_in()) + " bytes / " +
             std::to_string(c.packets_in()) + " packets, out " +
             std::to_string(c.bytes_out()) + " bytes / " +
             std::to_string(c.packets_out()) + " packets" +
             (c.counters_error().empty() ? "" : "  (kernel: " + c.counters_error() + ")") +
             "\n";
      out += "    time:    " + Times(c.established_unix(), c.rekey_unix(),
                                     c.expire_unix()) + "\n";
    }
  }
  return out;
}

std::string FormatPad(const pb::PolicyList& p) {
  std::vector<std::vector<std::string>> rows = {
      {"NAME", "PEER", "AUTH", "BTNS", "LOCAL-ID", "REMOTE-TS"}};
  for (const auto& e : p.pad())
    rows.push_back({e.name(), e.peer(), e.auth(), e.btns() ? "yes" : "no",
                    e.local_identity().empty() ? "-" : e.local_identity(),
                    Join(e.remote_ts())});
  return "PAD of " + p.source_file() + " (searched in this order)\n" + btnsd::config::FormatTextTable(rows);
}

std::string FormatSpd(const pb::PolicyList& p) {
  std::vector<std::vector<std::string>> rows = {
      {"NAME", "SELECTOR", "ACTION", "PEER", "MODE", "START", "CHILD-SAS"}};
  for (const auto& e : p.spd())
    rows.push_back({e.name(), e.selector(), e.action(),
                    e.peer().empty() ? "-" : e.peer(),
                    e.mode().empty() ? "-" : e.mode(),
                    e.start().empty() ? "-" : e.start(),
                    std::to_string(e.child_sas())});
  return "SPD of " + p.source_file() + " (first match wins)\n" + btnsd::config::FormatTextTable(rows);
}

std::string FormatConns(const pb::PolicyList& p) {
  std::vector<std::vector<std::string>> rows = {
      {"NAME", "PEER", "START", "MODE", "ESP", "IKE", "STATE"}};
  for (const auto& e : p.spd()) {
    if (e.action() != "protect") continue;
    rows.push_back({e.name(), e.peer(), e.start(), e.mode(),
                    e.esp_proposals().empty() ? "-" : e.esp_proposals(),
                    e.ike_proposals().empty() ? "-" : e.ike_proposals(),
                    e.child_sas() ? "up (" + std::to_string(e.child_sas()) +
                                        " CHILD SA" + (e.child_sas() == 1 ? ")" : "s)")
                                  : "down"});
  }
  return "Connections (PROTECT entries of the SPD)\n" + btnsd::config::FormatTextTable(rows);
}

std::string FormatStats(const pb::StatsReply& s) {
  std::vector<std::vector<std::string>> rows;
  for (const auto& c : s.counters())
    rows.push_back({c.name(), std::to_string(c.value())});
  return btnsd::config::FormatTextTable(rows);
}

std::string FormatLatches(const pb::LatchList& l) {
  if (l.latches().empty()) return "no latches\n";
  std::vector<std::vector<std::string>> rows = {
      {"LATCH", "STATE", "PID", "UID", "CONVERSATION", "PEER", "CHILD-SA", "POLICY"}};
  for (const auto& e : l.latches())
    rows.push_back({std::to_string(e.id()), e.state(), std::to_string(e.owner_pid()),
                    std::to_string(e.owner_uid()), e.conversation(),
                    e.peer_id().empty() ? "-" : e.peer_id(),
                    e.child_sa_id() ? "#" + std::to_string(e.child_sa_id()) : "-",
                    e.policy_name().empty() ? "-" : e.policy_name()});
  return btnsd::config::FormatTextTable(rows);
}

std::string FormatEvent(const pb::AdminEvent& e) {
  const std::time_t t = static_cast<std::time_t>(e.time_unix_ms() / 1000);
  char when[32];
  std::tm tm{};
  gmtime_r(&t, &tm);
  std::strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
  std::string line = std::string(when) + "Z " + e.kind();
  if (e.ike_sa_id()) line += " ike_sa=" + std::to_string(e.ike_sa_id());
  if (e.child_sa_id()) line += " child_sa=" + std::to_string(e.child_sa_id());
  if (!e.spd_entry().empty()) line += " spd=" + e.spd_entry();
  if (!e.peer_id().empty()) line += " peer=" + e.peer_id();
  if (!e.reason().empty()) line += " reason=" + e.reason();
  if (!e.text().empty()) line += " msg=\"" + e.text() + "\"";
  return line + "\n";
}

std::string Json(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = false;
  options.always_print_primitive_fields = true;
  options.preserve_proto_field_names = true;
  std::string text;
  (void)google::protobuf::util::MessageToJsonString(message, &text, options);
  return text + "\n";
}

// Parses "ID", "ike:ID" or "child:ID".
bool ParseSaId(const std::string& text, bool* child, uint64_t* id) {
  std::string digits = text;
  if (digits.rfind("child:", 0) == 0) {
    *child = true;
    digits = digits.substr(6);
  } else if (digits.rfind("ike:", 0) == 0) {
    *child = false;
    digits = digits.substr(4);
  } else if (!digits.empty() && digits[0] == '#') {
    digits = digits.substr(1);
  }
  if (digits.empty() || digits.size() > 19 ||
      digits.find_first_not_of("0123456789") != std::string::npos)
    return false;
  *id = std::strtoull(digits.c_str(), nullptr, 10);
  return *id != 0;
}

}  // namespace

std::string DefaultSocketPath() {
  if (const char* env = std::getenv("BTNS_API_SOCKET"); env && *env) return env;
  auto loaded = btnsd::config::LoadConfigFile(btnsd::config::kDefaultConfigPath);
  if (loaded.ok()) return loaded.snapshot->daemon.api_socket;
  return ike::policy::DaemonSettings{}.api_socket;
}

int RunAdminCommand(std::string_view name, const std::vector<std::string>& args,
                    std::ostream& out, std::ostream& err) {
  const CommandSpec* spec = nullptr;
  for (const auto& s : kSpecs)
    if (s.name == name) spec = &s;
  if (spec == nullptr) {
    err << "btnsctl: unknown command '" << name << "'\n";
    return kExitUsage;
  }
  const std::string prefix = "btnsctl " + std::string(name) + ": ";
  auto usage_error = [&](const std::string& why) {
    err << prefix << why << "\n" << UsageLine(*spec) << "\n";
    return kExitUsage;
  };
  Options o;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    auto value = [&](const char* option) -> std::optional<std::string> {
      if (i + 1 >= args.size()) return std::nullopt;
      (void)option;
      return args[++i];
    };
    if (a == "-h" || a == "--help") {
      out << UsageLine(*spec) << "\n"
          << "Exit status: 0 ok, 1 failed, 2 usage, 3 btnsd not reachable, "
             "4 permission denied.\n";
      return kExitOk;
    } else if (a == "--json") {
      o.json = true;
    } else if (a == "--child" && (name == "terminate" || name == "rekey")) {
      o.child = true;
    } else if (a == "--socket") {
      auto v = value("--socket");
      if (!v || v->empty()) return usage_error("--socket needs a PATH");
      o.socket = *v;
    } else if (a == "--timeout") {
      auto v = value("--timeout");
      if (!v || v->empty() || v->size() > 6 ||
          v->find_first_not_of("0123456789") != std::string::npos || std::stoi(*v) == 0)
        return usage_error("--timeout needs a whole number of seconds (1-999999)");
      o.timeout_ms = std::stoi(*v) * 1000;
    } else if (a == "--count" && name == "events") {
      auto v = value("--count");
      if (!v || v->empty() || v->size() > 9 ||
          v->find_first_not_of("0123456789") != std::string::npos || std::stol(*v) == 0)
        return usage_error("--count needs a positive whole number");
      o.count = std::stol(*v);
    } else if (!a.empty() && a[0] == '-' && a.size() > 1) {
      return usage_error("unknown option '" + a + "'");
    } else {
      o.positional.push_back(a);
    }
  }
  if (o.positional.size() != spec->positional)
    return usage_error(spec->positional == 0
                           ? "takes no arguments, got '" + o.positional.front() + "'"
                           : "needs " + std::string(spec->args));

  pb::Request request;
  if (name == "list-sas") {
    request.mutable_admin_list_sas();
  } else if (name == "list-pad" || name == "list-spd" || name == "list-conns" ||
             name == "list-policy") {
    request.mutable_admin_list_policy();
  } else if (name == "initiate") {
    request.mutable_admin_initiate()->set_spd_entry(o.positional[0]);
  } else if (name == "terminate" || name == "rekey") {
    bool child = o.child;
    uint64_t id = 0;
    if (!ParseSaId(o.positional[0], &child, &id))
      return usage_error("'" + o.positional[0] +
                         "' is not an SA id: give the number btnsctl list-sas shows "
                         "(IKE SA), or --child N / child:N for a CHILD SA");
    if (name == "terminate") {
      child ? request.mutable_admin_terminate()->set_child_sa_id(id)
            : request.mutable_admin_terminate()->set_ike_sa_id(id);
    } else {
      child ? request.mutable_admin_rekey()->set_child_sa_id(id)
            : request.mutable_admin_rekey()->set_ike_sa_id(id);
    }
  } else if (name == "reload") {
    request.mutable_admin_reload();
  } else if (name == "stats") {
    request.mutable_admin_stats();
  } else if (name == "events") {
    request.mutable_admin_follow_events();
  } else if (name == "list-latches") {
    request.mutable_admin_list_latches();
  } else if (name == "version") {
    request.mutable_admin_version();
  }

  const std::string socket = o.socket.empty() ? DefaultSocketPath() : o.socket;
  btns_api::AdminClient client;
  std::string why;
  int rc = client.Connect(socket, &why);
  if (rc == EACCES || rc == EPERM) {
    err << prefix << why << "\n  the socket's mode keeps you out: run as root, "
        << "or as a member of the group that owns " << socket
        << " (daemon.api_group)\n";
    return kExitDenied;
  }
  if (rc != 0) {
    err << prefix << why << "\n  is btnsd running? socket " << socket
        << " (choose another with --socket PATH or $BTNS_API_SOCKET)\n";
    return kExitUnreachable;
  }
  pb::Reply reply;
  rc = client.Call(request, &reply, o.timeout_ms, &why);
  if (rc != 0) {
    err << prefix << why << "\n  is btnsd running? socket " << socket << "\n";
    return kExitUnreachable;
  }
  if (reply.has_error()) {
    const auto& e = reply.error();
    if (e.errno_value() == EPERM || e.reason() == kPrivilegeRequired) {
      err << prefix << "permission denied: " << e.why() << "\n";
      return kExitDenied;
    }
    if (o.json) {
      out << Json(reply);
    } else {
      err << prefix << e.why() << "\n";
      if (reply.has_admin_result())
        for (const auto& line : reply.admin_result().errors()) err << "  " << line << "\n";
    }
    return kExitFailed;
  }

  if (name == "list-sas") {
    out << (o.json ? Json(reply.sa_list()) : FormatSas(reply.sa_list()));
  } else if (name == "list-policy") {
    out << (o.json ? Json(reply.policy_list())
                   : FormatPad(reply.policy_list()) + "\n" + FormatSpd(reply.policy_list()));
  } else if (name == "list-pad") {
    if (o.json) {
      pb::PolicyList only = reply.policy_list();
      only.clear_spd();
      out << Json(only);
    } else {
      out << FormatPad(reply.policy_list());
    }
  } else if (name == "list-spd" || name == "list-conns") {
    if (o.json) {
      pb::PolicyList only = reply.policy_list();
      only.clear_pad();
      if (name == "list-conns") {
        auto* spd = only.mutable_spd();
        for (int i = spd->size() - 1; i >= 0; --i)
          if (spd->Get(i).action() != "protect") spd->DeleteSubrange(i, 1);
      }
      out << Json(only);
    } else {
      out << (name == "list-spd" ? FormatSpd(reply.policy_list())
                                 : FormatConns(reply.policy_list()));
    }
  } else if (name == "stats") {
    out << (o.json ? Json(reply.stats()) : FormatStats(reply.stats()));
  } else if (name == "list-latches") {
    out << (o.json ? Json(reply.latch_list()) : FormatLatches(reply.latch_list()));
  } else if (name == "version") {
    if (o.json) {
      out << Json(reply.version_info());
    } else {
      out << "btnsctl: BTNS API version 1\n"
          << "btnsd:   " << reply.version_info().daemon() << ", BTNS API version "
          << reply.version_info().api_version() << "\n";
    }
  } else if (name == "events") {
    if (!o.json) out << "following btnsd events on " << socket << " (Ctrl-C to stop)\n";
    out.flush();
    long seen = 0;
    while (!o.count || seen < *o.count) {
      pb::Reply event;
      rc = client.Next(&event, o.count ? o.timeout_ms : -1, &why);
      if (rc == ETIMEDOUT) {
        err << prefix << "only " << seen << " of " << *o.count
            << " events within the timeout\n";
        return kExitFailed;
      }
      if (rc != 0) {
        err << prefix << why << "\n";
        return kExitUnreachable;
      }
      if (!event.has_admin_event()) continue;
      out << (o.json ? Json(event.admin_event()) : FormatEvent(event.admin_event()));
      out.flush();
      ++seen;
    }
  } else {
    // initiate, terminate, rekey, reload
    out << (o.json ? Json(reply.admin_result()) : reply.admin_result().message() + "\n");
  }
  return kExitOk;
}

}  // namespace btnsctl
