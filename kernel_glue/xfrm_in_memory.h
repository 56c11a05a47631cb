// XfrmInterface kept in memory, for unit tests of ike/ and the daemon. It
// enforces the same validity rules as the kernel glue and answers the same
// errno values the kernel would (EEXIST, ENOENT, ESRCH), and lets a test
// drive traffic counters and inject kernel events.
#ifndef KERNEL_GLUE_XFRM_IN_MEMORY_H_
#define KERNEL_GLUE_XFRM_IN_MEMORY_H_

#include <cstdint>
#include <deque>
#include <map>
#include <string>
#include <vector>

#include "kernel_glue/xfrm_interface.h"

namespace kernel_glue {

class XfrmInMemory : public XfrmInterface {
 public:
  explicit XfrmInMemory(Ownership ownership = Ownership{}, uint32_t spi_seed = 1);

  Result<uint32_t> AllocateSpi(const IpAddress& src, const IpAddress& dst,
                               uint32_t reqid, uint32_t min_spi,
                               uint32_t max_spi) override;
  Status AddSa(const SaParams& sa) override;
  Status UpdateSa(const SaParams& sa) override;
  Status DeleteSa(const SaId& id) override;
  Result<SaInfo> QuerySa(const SaId& id) override;
  Status AddPolicy(const PolicyParams& policy) override;
  Status UpdatePolicy(const PolicyParams& policy) override;
  Status DeletePolicy(const PolicyId& id) override;
  Result<OwnedState> ListOwned() override;
  Status FlushOwned() override;
  int event_fd() const override { return -1; }
  Result<std::vector<KernelEvent>> ProcessEvents() override;
  Status SetSocketPolicy(int fd, const SocketPolicy& policy) override;
  Status SetSocketBypass(int fd) override;
  Status EnableUdpEncap(int fd) override;

  // --- test controls

  // Objects that belong to someone else (any reqid/priority), to check that
  // ListOwned/FlushOwned leave them alone.
  void AddForeignSa(const SaParams& sa);
  void AddForeignPolicy(const PolicyParams& policy);
  // Counts traffic on an SA and queues soft/hard EXPIRE events when its byte
  // or packet limits are crossed (a hard expiry removes the SA, as the
  // kernel does). ENOENT when the SA does not exist.
  Status AddTraffic(const SaId& id, uint64_t bytes, uint64_t packets);
  void InjectEvent(const KernelEvent& event);
  // Makes the next operation fail with this errno (a kernel refusal).
  void FailNextOperation(int error_number, std::string kernel_message = "");

  size_t sa_count() const { return sas_.size(); }
  size_t policy_count() const { return policies_.size(); }
  int PolicyUsers(const PolicyId& id) const;
  bool HasSa(const SaId& id) const;
  // The socket policies set on fd, in the order they were set.
  std::vector<SocketPolicy> SocketPolicies(int fd) const;
  bool UdpEncapEnabled(int fd) const;

 private:
  struct StoredSa {
    SaParams params;
    bool larval = false;  // reserved by AllocateSpi, not yet filled
    SaCounters counters;
    bool soft_expired = false;
  };
  struct StoredPolicy {
    PolicyParams params;
    uint32_t index = 0;
    int users = 0;
  };

  Status TakeInjectedFailure(const std::string& operation);
  SaInfo Describe(const StoredSa& sa) const;
  uint32_t NextRandom();

  Ownership ownership_;
  uint32_t random_state_;
  uint32_t next_policy_index_ = 8;
  std::map<std::string, StoredSa> sas_;
  std::map<std::string, StoredPolicy> policies_;
  std::deque<KernelEvent> events_;
  std::map<int, std::vector<SocketPolicy>> socket_policies_;
  std::map<int, bool> udp_encap_;
  std::optional<KernelError> injected_failure_;
};

}  // namespace kernel_glue

#endif  // KERNEL_GLUE_XFRM_IN_MEMORY_H_
