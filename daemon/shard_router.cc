#include "daemon/shard_router.h"

#include <algorithm>
#include <variant>

namespace btnsd::daemon {

using ike::policy::IpAddress;

namespace {

// SplitMix64 finalizer: a fast, well-mixing 64-bit permutation.
uint64_t Mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

uint64_t ReadU64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = v << 8 | p[i];
  return v;
}

constexpr size_t kIkeHeaderSize = 28;
constexpr uint8_t kFlagInitiator = 0x08;
constexpr int kHandleShardShift = 48;

}  // namespace

ShardRouter::ShardRouter(size_t shards, uint64_t seed)
    : shards_(std::clamp<size_t>(shards, 1, kMaxShards)), spi_bits_(0), seed_(seed) {
  while ((size_t{1} << spi_bits_) < shards_) ++spi_bits_;
}

ike::sa::EngineSettings ShardRouter::SettingsFor(
    size_t index, ike::sa::EngineSettings base) const {
  base.shard_bits = spi_bits_;
  base.shard_index = static_cast<uint8_t>(index);
  return base;
}

std::optional<size_t> ShardRouter::OfSpi(uint64_t our_spi) const {
  if (our_spi == 0) return std::nullopt;
  if (spi_bits_ == 0) return 0;
  const size_t shard = static_cast<size_t>(our_spi >> (64 - spi_bits_));
  if (shard >= shards_) return std::nullopt;
  return shard;
}

std::optional<size_t> ShardRouter::OfHandle(uint64_t handle) const {
  if (handle == 0) return std::nullopt;
  const size_t shard = static_cast<size_t>((handle >> kHandleShardShift) & 0xff);
  if (shard >= shards_) return std::nullopt;
  return shard;
}

size_t ShardRouter::OfPeer(const IpAddress& peer) const {
  if (shards_ == 1) return 0;
  const uint64_t low = static_cast<uint64_t>(peer.value);
  const uint64_t high = static_cast<uint64_t>(peer.value >> 64);
  const uint64_t h = Mix(Mix(seed_ ^ low) ^ high ^ uint64_t(peer.family));
  return static_cast<size_t>(h % shards_);
}

ShardRouter::DatagramRoute ShardRouter::OfDatagram(const uint8_t* bytes, size_t size,
                                                   const IpAddress& remote) const {
  if (size >= kIkeHeaderSize) {
    const uint64_t initiator_spi = ReadU64(bytes);
    const uint64_t responder_spi = ReadU64(bytes + 8);
    const bool from_original_initiator = (bytes[19] & kFlagInitiator) != 0;
    const uint64_t ours = from_original_initiator ? responder_spi : initiator_spi;
    if (auto shard = OfSpi(ours)) return {*shard, false};
  }
  return {OfPeer(remote), true};
}

std::optional<IpAddress> ShardRouter::PeerOf(const ike::sa::InitiateRequest& request,
                                             const ike::policy::PolicySnapshot& policy) {
  const ike::policy::SpdEntry* entry = policy.spd.Find(request.spd_entry);
  if (entry != nullptr && entry->protect.mode == ike::policy::IpsecMode::kTunnel &&
      entry->protect.tunnel_remote)
    return *entry->protect.tunnel_remote;
  if (request.remote) return request.remote->address;
  if (request.trigger) return request.trigger->remote;
  if (entry != nullptr && entry->selector.remote &&
      entry->selector.remote->start == entry->selector.remote->end)
    return entry->selector.remote->start;
  return std::nullopt;
}

std::optional<IpAddress> ShardRouter::PeerOf(const ike::sa::KernelAcquire& acquire,
                                             const ike::policy::PolicySnapshot& policy) {
  const ike::policy::SpdEntry* entry = policy.spd.Lookup(acquire.packet);
  if (entry != nullptr && entry->protect.mode == ike::policy::IpsecMode::kTunnel &&
      entry->protect.tunnel_remote)
    return *entry->protect.tunnel_remote;
  return acquire.packet.remote;
}

std::optional<size_t> ShardRouter::OfEvent(
    const ike::sa::Event& event, const ike::policy::PolicySnapshot& policy) const {
  if (shards_ == 1) return 0;
  if (auto* d = std::get_if<ike::sa::DatagramReceived>(&event))
    return OfDatagram(d->bytes.data(), d->bytes.size(), d->remote.address).shard;
  if (auto* i = std::get_if<ike::sa::InitiateRequest>(&event)) {
    auto peer = PeerOf(*i, policy);
    if (!peer) return std::nullopt;
    return OfPeer(*peer);
  }
  if (auto* a = std::get_if<ike::sa::KernelAcquire>(&event)) {
    auto peer = PeerOf(*a, policy);
    if (!peer) return std::nullopt;
    return OfPeer(*peer);
  }
  if (auto* r = std::get_if<ike::sa::RekeyRequest>(&event))
    return OfHandle(r->ike_sa != 0 ? r->ike_sa : r->child_sa);
  if (auto* d = std::get_if<ike::sa::DeleteRequest>(&event))
    return OfHandle(d->ike_sa != 0 ? d->ike_sa : d->child_sa);
  if (auto* s = std::get_if<ike::sa::SignatureDelivered>(&event))
    return OfHandle(s->ike_sa);
  return std::nullopt;
}

void SaShardMap::Installed(const IpAddress& destination, uint32_t spi, size_t shard) {
  shards_[{int(destination.family), destination.value, spi}] = shard;
}

void SaShardMap::Deleted(const IpAddress& destination, uint32_t spi) {
  shards_.erase({int(destination.family), destination.value, spi});
}

std::optional<size_t> SaShardMap::Find(const IpAddress& destination,
                                       uint32_t spi) const {
  auto it = shards_.find({int(destination.family), destination.value, spi});
  if (it == shards_.end()) return std::nullopt;
  return it->second;
}

}  // namespace btnsd::daemon
