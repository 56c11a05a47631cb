// Which protocol shard owns an event. btnsd runs one ike::sa::SaManager per
// protocol thread ("shard"); every IKE SA lives in exactly one of them.
//
//   * IKE SPIs we choose carry the shard index in their top bits
//     (EngineSettings::shard_bits), so any message that names our SPI goes
//     straight to its shard, whatever address or port it comes from (NAT
//     rebinding, the float to 4500).
//   * Messages without our SPI (a new IKE_SA_INIT request: responder SPI 0)
//     and locally started negotiations (operator, API, kernel ACQUIRE) go to
//     the shard of the peer's address. So every IKE SA with one peer address
//     lives in one shard: the engine still sees all of them together
//     (reuse of an established IKE SA for a new CHILD_SA, crossing
//     IKE_SA_INITs, its cookie state), exactly as with one engine.
//   * Requests about an SA (rekey, delete) go by the handle's shard bits.
//   * Kernel expire (and NAT mapping) events name an ESP SA: the daemon
//     keeps a map from (destination, SPI) to shard, see SaShardMap.
//
// Pure functions of their inputs, no I/O: unit-tested on their own.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <tuple>

#include "ike/policy/address.h"
#include "ike/policy/snapshot.h"
#include "ike/sa/engine.h"

namespace btnsd::daemon {

class ShardRouter {
 public:
  static constexpr size_t kMaxShards = 64;

  // `shards` in [1, kMaxShards]; `seed` keys the address hash so that a
  // sender cannot choose addresses that all land in one shard.
  ShardRouter(size_t shards, uint64_t seed);

  size_t shard_count() const { return shards_; }
  // Bits of our IKE SPIs that name the shard (0 with one shard).
  uint8_t spi_bits() const { return spi_bits_; }
  // The engine settings of shard `index`.
  ike::sa::EngineSettings SettingsFor(size_t index,
                                      ike::sa::EngineSettings base) const;

  // The shard whose engine chose `our_spi`, if the SPI is one of ours.
  std::optional<size_t> OfSpi(uint64_t our_spi) const;
  std::optional<size_t> OfHandle(uint64_t handle) const;
  size_t OfPeer(const ike::policy::IpAddress& peer) const;

  struct DatagramRoute {
    size_t shard = 0;
    // No SPI of ours in the header: a new IKE_SA_INIT request (or junk,
    // which the engine of the peer's shard rejects).
    bool by_peer = false;
  };
  // `bytes` is the IKE message (the NAT-T marker already stripped).
  DatagramRoute OfDatagram(const uint8_t* bytes, size_t size,
                           const ike::policy::IpAddress& remote) const;

  // The peer a locally started negotiation talks to, as the engine picks
  // it: the tunnel endpoint, the explicit remote, the triggering packet's
  // destination, or the entry's single-host remote selector.
  static std::optional<ike::policy::IpAddress> PeerOf(
      const ike::sa::InitiateRequest& request,
      const ike::policy::PolicySnapshot& policy);
  static std::optional<ike::policy::IpAddress> PeerOf(
      const ike::sa::KernelAcquire& acquire,
      const ike::policy::PolicySnapshot& policy);

  // Every event but TimerFired (timers belong to the shard that armed them)
  // and KernelExpire/KernelMapping (see SaShardMap). nullopt: no owner can be told, the
  // event goes to shard 0, whose engine rejects it with a log line.
  std::optional<size_t> OfEvent(const ike::sa::Event& event,
                                const ike::policy::PolicySnapshot& policy) const;

 private:
  size_t shards_;
  uint8_t spi_bits_;
  uint64_t seed_;
};

// ESP SA (destination, SPI) -> shard, kept on the kernel thread from the
// installs and deletes it executes, read there when kernel events arrive.
class SaShardMap {
 public:
  void Installed(const ike::policy::IpAddress& destination, uint32_t spi,
                 size_t shard);
  void Deleted(const ike::policy::IpAddress& destination, uint32_t spi);
  std::optional<size_t> Find(const ike::policy::IpAddress& destination,
                             uint32_t spi) const;
  size_t size() const { return shards_.size(); }

 private:
  using Key = std::tuple<int, ike::policy::Uint128, uint32_t>;
  std::map<Key, size_t> shards_;
};

}  // namespace btnsd::daemon
