// XfrmInterface on the real kernel: XFRM netlink through libnl-3.
#ifndef KERNEL_GLUE_XFRM_NETLINK_H_
#define KERNEL_GLUE_XFRM_NETLINK_H_

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "kernel_glue/xfrm_interface.h"
#include "kernel_glue/xfrm_messages.h"

struct nl_sock;
struct nl_msg;
struct nlmsghdr;

namespace kernel_glue {


class XfrmNetlink : public XfrmInterface {
 public:
  struct Options {
    Ownership ownership;
    bool subscribe_events = true;
    // Receive timeout of the request socket: a kernel that never answers is
    // reported as ETIMEDOUT instead of hanging the daemon.
    int request_timeout_ms = 5000;
    int event_buffer_bytes = 1 << 20;
  };

  // Opens the request socket (and the event socket when subscribing).
  static Result<std::unique_ptr<XfrmNetlink>> Open(const Options& options);
  ~XfrmNetlink() override;
  XfrmNetlink(const XfrmNetlink&) = delete;
  XfrmNetlink& operator=(const XfrmNetlink&) = delete;

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
  // Sends the requests in batches that ask the kernel to acknowledge only
  // the last one: failures still come back, one per failing request, so
  // each operation gets its own Status, in two system calls per batch.
  std::vector<Status> Apply(const std::vector<XfrmOperation>& operations) override;
  Result<OwnedState> ListOwned() override;
  Status FlushOwned() override;
  int event_fd() const override;
  Result<std::vector<KernelEvent>> ProcessEvents() override;
  Status SetSocketPolicy(int fd, const SocketPolicy& policy) override;
  Status SetSocketBypass(int fd) override;
  Status EnableUdpEncap(int fd) override;

  // Users currently counted on an installed policy (0 when not installed
  // by this instance).
  int PolicyUsers(const PolicyId& id) const;

 private:
  explicit XfrmNetlink(const Options& options);

  // Sends one request and reads until its ack (or NLMSG_DONE for dumps),
  // handing every data message to on_message.
  Status Transact(nl_msg* msg, const std::string& operation,
                  const std::function<Status(const nlmsghdr*)>& on_message);
  Status InstallPolicy(const PolicyParams& policy, bool update);

  struct Queued {
    size_t result_index = 0;
    NlMsgPtr msg;
    std::string operation;
    // Bookkeeping (policy use counts) once the kernel's answer is known.
    std::function<void(const Status&)> on_done;
  };
  void SendBatch(std::vector<Queued>& queue, std::vector<Status>& results);
  void SendChunk(Queued* begin, Queued* end, std::vector<Status>& results);

  Options options_;
  nl_sock* request_socket_ = nullptr;
  nl_sock* event_socket_ = nullptr;
  std::vector<uint8_t> receive_buffer_;
  struct PolicyUse {
    PolicyParams params;
    int users = 0;
  };
  std::map<std::string, PolicyUse> policies_;
};

}  // namespace kernel_glue

#endif  // KERNEL_GLUE_XFRM_NETLINK_H_
