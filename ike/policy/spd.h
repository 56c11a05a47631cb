// The Security Policy Database (RFC 4301 section 4.4.1): an ordered list of
// selectors with PROTECT / BYPASS / DISCARD, searched first-match.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "ike/policy/address.h"

namespace ike::policy {

struct Lifetime {
  uint64_t soft_seconds = 0;  // 0: no limit of this kind
  uint64_t hard_seconds = 0;
  uint64_t soft_bytes = 0;
  uint64_t hard_bytes = 0;
  // Soft limits are lowered by a random 0..jitter_percent % per SA so that
  // many SAs created together do not all rekey together.
  uint8_t jitter_percent = 0;
  bool operator==(const Lifetime&) const = default;
};

enum class SpdAction { kProtect, kBypass, kDiscard };
enum class IpsecMode { kTransport, kTunnel };
enum class StartAction { kTrap, kStart, kNone };
std::string_view SpdActionName(SpdAction a);
std::string_view IpsecModeName(IpsecMode m);
std::string_view StartActionName(StartAction s);

// Packet selector: local/remote address range (nullopt: any address of
// either family), IP protocol (0: any), local/remote ports.
struct SpdSelector {
  std::optional<IpRange> local;
  std::optional<IpRange> remote;
  uint8_t protocol = kAnyProtocol;
  PortRange local_ports;
  PortRange remote_ports;
  std::string ToString() const;
  bool operator==(const SpdSelector&) const = default;
};

struct ProtectParams {
  std::string peer;  // PAD entry name
  IpsecMode mode = IpsecMode::kTransport;
  std::optional<IpAddress> tunnel_local;
  std::optional<IpAddress> tunnel_remote;
  std::string esp_proposals = "default-esp";
  std::string ike_proposals = "default-ike";
  Lifetime child_lifetime;
  Lifetime ike_lifetime;
  StartAction start = StartAction::kTrap;
  // RFC 5386 BTNS_OK / RFC 7619 "may be used with NULL auth": only entries
  // with this flag may carry traffic of unauthenticated peers.
  bool unauthenticated_ok = false;
  bool operator==(const ProtectParams&) const = default;
};

struct SpdEntry {
  std::string name;
  SpdSelector selector;
  SpdAction action = SpdAction::kProtect;
  ProtectParams protect;  // meaningful for kProtect only
  bool operator==(const SpdEntry&) const = default;
};

struct PacketFiveTuple {
  IpAddress local;
  IpAddress remote;
  uint8_t protocol = 0;
  uint16_t local_port = 0;
  uint16_t remote_port = 0;
};

struct TsPairMatch {
  const SpdEntry* entry = nullptr;
  // The proposed selectors narrowed to the entry (RFC 7296 section 2.9).
  TrafficSelector local;
  TrafficSelector remote;
};

class Spd {
 public:
  Spd() = default;
  explicit Spd(std::vector<SpdEntry> entries) : entries_(std::move(entries)) {}
  const std::vector<SpdEntry>& entries() const { return entries_; }
  const SpdEntry* Find(std::string_view name) const;

  // First entry whose selector covers the packet; nullptr means no entry
  // matched, which RFC 4301 treats as DISCARD.
  const SpdEntry* Lookup(const PacketFiveTuple& packet) const;

  // Responder check: the first PROTECT entry bound to `pad_entry` whose
  // selector overlaps the proposed TS pair; the pair is narrowed to it.
  // Unauthenticated peers only match entries flagged unauthenticated_ok.
  std::optional<TsPairMatch> LookupByTrafficSelectors(
      const TrafficSelector& local, const TrafficSelector& remote,
      std::string_view pad_entry, bool peer_authenticated) const;

 private:
  std::vector<SpdEntry> entries_;
};

}  // namespace ike::policy
