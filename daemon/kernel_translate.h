// The one place where the engine's (ike::sa / ike::policy) types become
// kernel_glue's XFRM types and back. Nothing else in the daemon converts.
#pragma once

#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "ike/policy/snapshot.h"
#include "ike/sa/engine.h"
#include "kernel_glue/xfrm_interface.h"

namespace btnsd::daemon {

// A translation result: the value, or a text naming what could not be
// expressed in XFRM terms.
template <typename T>
using Translated = std::variant<T, std::string>;

kernel_glue::IpAddress ToKernel(const ike::policy::IpAddress& address);
std::optional<ike::policy::IpAddress> FromKernel(
    const kernel_glue::IpAddress& address);

// Which kernel objects are ours, and the mark they carry (if any).
struct KernelTags {
  kernel_glue::Ownership ownership;
  std::optional<kernel_glue::Mark> mark;
  // Where this run starts numbering SA reqids inside each shard's slice of
  // the owned band. A socket an application still holds from an earlier run
  // keeps that run's per-socket policy (its reqid) through a restart; the
  // daemon picks a random offset at start so a new SA is unlikely to carry
  // a reqid such a socket names.
  uint32_t reqid_offset = 0;
};
KernelTags ToKernelTags(const ike::policy::KernelOwnership& ownership);

// The top of the owned reqid band is reserved: trap policies count down
// from reqid_max (kTrapReqids), and sockets waiting for their SA take the
// kWaitingReqids below those. SA reqids never enter it (when the band is
// wide enough to reserve it at all).
inline constexpr uint32_t kTrapReqids = 4096;
inline constexpr uint32_t kWaitingReqids = 1024;

// Whether `reqid` is one the BTNS API gives sockets waiting for their SA
// (the kWaitingReqids below the trap reqids, when the band reserves them).
bool IsSocketWaitingReqid(uint32_t reqid, const KernelTags& tags);

// The kernel objects must carry a reqid inside the owned range (that is
// how a restart finds its stale state). The daemon's managers number their
// SAs inside it already (ShardReqids), so their reqids pass unchanged; a
// reqid from outside (a manager numbering from 1) is moved below the
// reserved top, rotated by the run's offset.
uint32_t KernelReqid(uint32_t engine_reqid, const KernelTags& tags);

// The SA reqids of the owned band (below the reserved top), split into one
// disjoint slice per protocol shard, so two shards' CHILD_SAs never share a
// kernel reqid; each slice is entered at the run's offset. Slices overlap
// only when the band holds fewer SA reqids than there are shards.
ike::sa::EngineSettings::ReqidRange ShardReqids(const KernelTags& tags,
                                                size_t shard, size_t shards);

// One range as the smallest list of prefixes covering exactly it.
std::vector<std::pair<ike::policy::IpAddress, int>> RangeToPrefixes(
    const ike::policy::IpRange& range);

// Kernel selectors for a pair of traffic selectors: the cross product of the
// prefixes of both ranges. A port range that is neither one port nor any
// port cannot be expressed (the kernel matches one port or all).
Translated<std::vector<kernel_glue::Selector>> ToKernelSelectors(
    const ike::policy::TrafficSelector& source,
    const ike::policy::TrafficSelector& destination);

Translated<kernel_glue::SaParams> ToKernelSa(const ike::sa::InstallChildSa& sa,
                                             const KernelTags& tags);
// The SA `installed` (same keys and reqid) between the addresses of
// `move`, with its encapsulation and, for a transport SA bound to one
// selector pair, the pair of `move`. Its replay state and counters are left
// for the caller to carry over.
kernel_glue::SaParams MovedKernelSa(const kernel_glue::SaParams& installed,
                                    const ike::sa::MoveChildSa& move,
                                    const KernelTags& tags);
kernel_glue::SaId ToKernelSaId(const ike::sa::DeleteChildSa& sa,
                               const KernelTags& tags);

kernel_glue::Direction ToKernelDirection(ike::sa::PolicyDirection direction);

// More specific selectors get a lower (preferred) priority inside the band.
uint32_t PolicyPriority(const kernel_glue::Selector& selector,
                        const KernelTags& tags);

Translated<std::vector<kernel_glue::PolicyParams>> ToKernelPolicies(
    const ike::sa::InstallPolicy& policy, const KernelTags& tags);
Translated<std::vector<kernel_glue::PolicyId>> ToKernelPolicyIds(
    const ike::sa::RemovePolicy& policy, const KernelTags& tags);

// Holding policies of a PROTECT entry (whatever its start action), in the
// directions of a CHILD_SA's policy set: outbound, traffic that matches
// them without an SA is held back and makes the kernel raise ACQUIRE;
// inbound (and forwarded, for a tunnel), clear traffic is dropped (RFC 4301
// section 5.2). `reqid` marks the ACQUIRE as a trap's (the template matches
// no SA, so the packet waits for a CHILD_SA's policy, and no inbound packet
// can have passed an SA of it).
Translated<std::vector<kernel_glue::PolicyParams>> TrapPolicies(
    const ike::policy::SpdEntry& entry, uint32_t reqid, const KernelTags& tags);

// Bypass policies that accompany an IPv6 outbound or inbound trap whose
// selector covers ICMPv6: neighbor discovery (ICMPv6 types 133-137) between
// the two ends is needed to negotiate the SA that would protect it, and the
// kernel checks it against the outbound and inbound policies too. They are in force only while the trap is (a
// CHILD_SA's policy carries neighbor discovery through ESP, as both peers'
// inbound policies then require). Empty for anything else.
std::vector<kernel_glue::PolicyParams> NeighborDiscoveryBypasses(
    const kernel_glue::PolicyParams& trap, const KernelTags& tags);

// Kernel events as engine events. `ike_port` is where our IKE socket of the
// acquire's source address listens.
std::optional<ike::sa::KernelAcquire> FromKernelAcquire(
    const kernel_glue::AcquireEvent& acquire, uint16_t ike_port);
std::optional<ike::sa::KernelExpire> FromKernelExpire(
    const kernel_glue::ExpireEvent& expire);

}  // namespace btnsd::daemon
