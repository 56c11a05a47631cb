// Executes the engine's kernel actions against an XfrmInterface and keeps
// the one piece of state XFRM itself cannot: trap policies of the SPD that a
// CHILD_SA's policy replaces while the SA lives (same selector, same
// direction) and that come back when the SA goes. Every PROTECT entry has
// one, so its traffic is held back whenever no CHILD_SA covers it.
//
// Not thread-safe by itself: the daemon calls it from its kernel thread only;
// `mutex` serializes with the SPI allocator when both share one
// XfrmInterface (tests with XfrmInMemory).
#pragma once

#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "daemon/kernel_translate.h"
#include "ike/policy/snapshot.h"
#include "ike/sa/engine.h"
#include "kernel_glue/xfrm_interface.h"

namespace btnsd::daemon {

class KernelState {
 public:
  KernelState(kernel_glue::XfrmInterface& xfrm, std::mutex& mutex,
              KernelTags tags);

  // Each returns false (and logs the kernel's answer) on failure.
  bool InstallSa(const ike::sa::InstallChildSa& sa);
  bool DeleteSa(const ike::sa::DeleteChildSa& sa);
  // Moves an installed SA to new UDP encapsulation ports (the peer's NAT
  // mapping changed); XFRM_MSG_UPDSA keeps its sequence numbers and counters.
  bool UpdateEncapsulation(const ike::sa::UpdateChildSaEncapsulation& update);
  // Installs an SA again between new addresses (the peer's NAT got another
  // address), carrying its sequence numbers and counters over; see
  // ike::sa::MoveChildSa.
  bool MoveSa(const ike::sa::MoveChildSa& move);
  bool InstallPolicy(const ike::sa::InstallPolicy& policy);
  bool RemovePolicy(const ike::sa::RemovePolicy& policy);

  // Makes the installed trap policies those of `snapshot`'s PROTECT entries,
  // whatever their start action: new ones are added, vanished ones removed,
  // changed ones replaced. A trap is one of the entry's holding policies
  // (out, in, and fwd for a tunnel): whenever no CHILD_SA's policy fills its
  // slot, matching outbound traffic is held back (ACQUIRE) instead of
  // leaving in the clear, and matching clear inbound traffic is dropped.
  // Returns the number of entries and policies that could not be trapped.
  size_t SyncTraps(const ike::policy::PolicySnapshot& snapshot);

  // Deletes every SA and policy we own (start-up and shutdown).
  bool FlushOwned();

  // The reqid a trap of the SPD entry at `index` carries.
  uint32_t TrapReqid(size_t index) const;

  // Holding policies (one per direction and kernel selector) and CHILD_SA
  // policies the daemon keeps.
  size_t trap_count() const;
  size_t child_policy_count() const;
  // Neighbor discovery bypasses in force (IPv6 traps only).
  size_t bypass_count() const;

 private:
  struct Slot {
    std::optional<kernel_glue::PolicyParams> trap;
    std::optional<kernel_glue::PolicyParams> child;
    int child_users = 0;
    // The trap's companions (NeighborDiscoveryBypasses), installed exactly
    // while the trap itself is in force.
    std::vector<kernel_glue::PolicyParams> bypasses;
    bool bypasses_installed = false;
  };
  bool SetTrap(const kernel_glue::PolicyParams& params);
  bool ClearTrap(const std::string& key);
  bool InstallBypasses(Slot& slot);
  bool RemoveBypasses(Slot& slot);

  kernel_glue::XfrmInterface& xfrm_;
  std::mutex& mutex_;
  KernelTags tags_;
  std::map<std::string, Slot> slots_;
  // What each installed SA was installed with: XFRM_MSG_UPDSA wants the
  // whole SA again even to change only its encapsulation.
  std::map<std::string, kernel_glue::SaParams> installed_;
};

}  // namespace btnsd::daemon
