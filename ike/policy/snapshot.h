// An immutable, typed view of the whole policy: daemon settings, local
// identities, PAD, SPD, proposal sets and API permissions. The daemon swaps
// one shared_ptr<const PolicySnapshot> for another on reload; Diff tells it
// what changed.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ike/policy/address.h"
#include "ike/policy/identity.h"
#include "ike/policy/pad.h"
#include "ike/policy/proposal.h"
#include "ike/policy/spd.h"

namespace ike::policy {

enum class LogLevel { kError, kWarning, kInfo, kDebug, kTrace };
std::string_view LogLevelName(LogLevel l);

struct ListenAddress {
  IpAddress address;
  uint16_t port = 500;
  bool operator==(const ListenAddress&) const = default;
};

// Tags on kernel objects so the daemon recognises (and only touches) its own.
struct KernelOwnership {
  uint32_t priority_min = 0x1000;  // XFRM policy priority band
  uint32_t priority_max = 0x1fff;
  uint32_t reqid_min = 0x10000;
  uint32_t reqid_max = 0x1ffff;
  uint32_t mark = 0;  // 0: no mark
  uint32_t mark_mask = 0;
  bool operator==(const KernelOwnership&) const = default;
};

struct DaemonSettings {
  std::vector<ListenAddress> listen;
  uint16_t ike_port = 500;
  uint16_t nat_port = 4500;
  std::string api_socket = "/run/btnsd/api.sock";
  std::string api_group;  // group owning the socket; empty: root only
  LogLevel log_level = LogLevel::kInfo;
  KernelOwnership ownership;
  // Liveness check (RFC 7296 section 2.4) after this many seconds without
  // a message from the peer; 0 disables it.
  uint32_t dpd_interval_seconds = 30;
  // Request retransmission (section 2.1): the first timeout doubles up to
  // the cap; after `tries` resends without an answer the peer is dead.
  uint32_t retransmit_initial_seconds = 1;
  uint32_t retransmit_max_seconds = 30;
  uint32_t retransmit_tries = 5;
  // Protocol threads, each running its own engine; 0: one per CPU.
  uint32_t threads = 0;
  // Against IKE_SA_INIT floods; totals over all protocol threads.
  uint32_t cookie_threshold = 1000;  // half-open SAs before cookies; 0: always
  uint32_t half_open_limit = 5000;   // new IKE_SA_INIT dropped beyond this
  // IKE_SA_INIT requests per second accepted from one address; 0: no limit.
  uint32_t init_rate_per_address = 50;
  bool operator==(const DaemonSettings&) const = default;
};

enum class CredentialKind { kNone, kCertificate, kRawKey };

struct LocalIdentity {
  std::string name;
  Identity id;
  std::string private_key_file;
  CredentialKind credential = CredentialKind::kNone;
  std::string certificate_file;  // chain, end-entity first (kCertificate)
  std::string public_key_file;   // SPKI (kRawKey)
  std::string psk_name;          // optional shared key for PSK peers
  bool operator==(const LocalIdentity&) const = default;
};

struct Secret {
  std::string name;
  std::vector<uint8_t> value;
  bool operator==(const Secret&) const = default;
};

// Who may use the BTNS API, and with which local identities.
struct ApiGrant {
  std::string name;
  std::vector<uint32_t> uids;
  std::vector<uint32_t> gids;
  std::vector<std::string> identities;  // names; "*" means every identity
  bool operator==(const ApiGrant&) const = default;
};

struct ApiPermissions {
  std::optional<uint32_t> admin_gid;
  std::string admin_group;  // as written, for display
  std::vector<ApiGrant> grants;
  bool operator==(const ApiPermissions&) const = default;
  // True if a caller with this uid and any of `gids` may act as `identity`.
  bool MayUseIdentity(uint32_t uid, const std::vector<uint32_t>& gids,
                      std::string_view identity) const;
};

struct PolicySnapshot {
  std::string source_file;
  DaemonSettings daemon;
  std::vector<LocalIdentity> identities;
  std::vector<Secret> secrets;
  Pad pad;
  Spd spd;
  std::vector<ProposalSet> proposals;
  ApiPermissions api;

  const LocalIdentity* FindIdentity(std::string_view name) const;
  const ProposalSet* FindProposals(std::string_view name) const;
  const Secret* FindSecret(std::string_view name) const;
};

using PolicySnapshotPtr = std::shared_ptr<const PolicySnapshot>;

struct SectionDiff {
  std::vector<std::string> added;
  std::vector<std::string> removed;
  std::vector<std::string> changed;
  bool empty() const {
    return added.empty() && removed.empty() && changed.empty();
  }
  bool operator==(const SectionDiff&) const = default;
};

struct SnapshotDiff {
  bool daemon_changed = false;
  SectionDiff identities;
  SectionDiff secrets;  // names only; values are never printed
  SectionDiff pad;
  SectionDiff spd;
  SectionDiff proposals;
  SectionDiff api;
  // The PAD and SPD are ordered: a pure reordering changes lookups.
  bool pad_order_changed = false;
  bool spd_order_changed = false;
  bool empty() const;
};

SnapshotDiff Diff(const PolicySnapshot& before, const PolicySnapshot& after);

}  // namespace ike::policy
