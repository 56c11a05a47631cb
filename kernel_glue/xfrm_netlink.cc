#include "kernel_glue/xfrm_netlink.h"

#include <linux/netlink.h>
#include <linux/udp.h>
#include <linux/xfrm.h>
#include <netinet/in.h>
#include <netlink/msg.h>
#include <netlink/netlink.h>
#include <netlink/socket.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <set>

#include "kernel_glue/xfrm_messages.h"
#include "kernel_glue/xfrm_rules.h"

#ifndef SOL_NETLINK
#define SOL_NETLINK 270
#endif

namespace kernel_glue {

namespace {

constexpr size_t kReceiveBufferBytes = 256 * 1024;

KernelError LibnlError(const std::string& operation, int libnl_code, int saved_errno) {
  return MakeError(operation, saved_errno != 0 ? saved_errno : EIO,
                   std::string("libnl: ") + nl_geterror(libnl_code));
}

KernelError OutOfMemory(const std::string& operation) {
  return MakeError(operation, ENOMEM, "could not allocate the netlink message");
}

Result<nl_sock*> Connect(const std::string& what) {
  nl_sock* socket = nl_socket_alloc();
  if (socket == nullptr) return MakeError("allocate " + what, ENOMEM);
  errno = 0;
  int rc = nl_connect(socket, NETLINK_XFRM);
  if (rc < 0) {
    KernelError error = LibnlError("connect " + what + " (NETLINK_XFRM)", rc, errno);
    nl_socket_free(socket);
    return error;
  }
  return socket;
}

Status SetIntOption(int fd, int level, int option, int value, const std::string& name) {
  if (setsockopt(fd, level, option, &value, sizeof(value)) != 0)
    return MakeError("setsockopt " + name, errno);
  return Status::Ok();
}

// Reads one datagram; EMSGSIZE when it did not fit the buffer.
ssize_t ReceiveDatagram(int fd, std::vector<uint8_t>& buffer, int flags, bool* truncated) {
  iovec vector{buffer.data(), buffer.size()};
  msghdr message{};
  message.msg_iov = &vector;
  message.msg_iovlen = 1;
  ssize_t received = recvmsg(fd, &message, flags);
  *truncated = received >= 0 && (message.msg_flags & MSG_TRUNC);
  return received;
}

}  // namespace

XfrmNetlink::XfrmNetlink(const Options& options)
    : options_(options), receive_buffer_(kReceiveBufferBytes) {}

XfrmNetlink::~XfrmNetlink() {
  if (request_socket_ != nullptr) nl_socket_free(request_socket_);
  if (event_socket_ != nullptr) nl_socket_free(event_socket_);
}

Result<std::unique_ptr<XfrmNetlink>> XfrmNetlink::Open(const Options& options) {
  std::unique_ptr<XfrmNetlink> glue(new XfrmNetlink(options));
  auto request = Connect("XFRM request socket");
  if (!request.ok()) return request.error();
  glue->request_socket_ = request.value();
  // Requests carry exactly the flags their builders chose.
  nl_socket_disable_auto_ack(glue->request_socket_);
  const int fd = nl_socket_get_fd(glue->request_socket_);
  // Extended acks carry the kernel's reason text; capped acks keep the
  // request itself out of the answer.
  for (Status status : {SetIntOption(fd, SOL_NETLINK, NETLINK_EXT_ACK, 1, "NETLINK_EXT_ACK"),
                        SetIntOption(fd, SOL_NETLINK, NETLINK_CAP_ACK, 1, "NETLINK_CAP_ACK")}) {
    if (!status.ok()) return status.error();
  }
  timeval timeout{options.request_timeout_ms / 1000, (options.request_timeout_ms % 1000) * 1000};
  if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout)) != 0)
    return MakeError("setsockopt SO_RCVTIMEO on the XFRM request socket", errno);
  if (int rc = nl_socket_set_buffer_size(glue->request_socket_, 1 << 20, 1 << 20); rc < 0)
    return LibnlError("set XFRM request socket buffer sizes", rc, errno);

  if (options.subscribe_events) {
    auto events = Connect("XFRM event socket");
    if (!events.ok()) return events.error();
    glue->event_socket_ = events.value();
    nl_socket_disable_seq_check(glue->event_socket_);
    errno = 0;
    if (int rc = nl_socket_add_memberships(glue->event_socket_, XFRMNLGRP_ACQUIRE,
                                           XFRMNLGRP_EXPIRE, XFRMNLGRP_MAPPING, 0);
        rc < 0)
      return LibnlError("join XFRMNLGRP_ACQUIRE/EXPIRE/MAPPING", rc, errno);
    if (int rc = nl_socket_set_nonblocking(glue->event_socket_); rc < 0)
      return LibnlError("make the XFRM event socket non-blocking", rc, errno);
    if (int rc = nl_socket_set_buffer_size(glue->event_socket_, options.event_buffer_bytes, 0);
        rc < 0)
      return LibnlError("set XFRM event socket buffer size", rc, errno);
  }
  return glue;
}

Status XfrmNetlink::Transact(nl_msg* msg, const std::string& operation,
                             const std::function<Status(const nlmsghdr*)>& on_message) {
  if (msg == nullptr) return OutOfMemory(operation);
  errno = 0;
  int sent = nl_send_auto(request_socket_, msg);
  if (sent < 0) return LibnlError(operation + " (send)", sent, errno);
  const nlmsghdr* request = nlmsg_hdr(msg);
  const uint32_t sequence = request->nlmsg_seq;
  const bool is_dump = (request->nlmsg_flags & NLM_F_DUMP) == NLM_F_DUMP;
  const bool wants_ack = (request->nlmsg_flags & NLM_F_ACK) != 0;
  const int fd = nl_socket_get_fd(request_socket_);
  Status first_failure;
  while (true) {
    bool truncated = false;
    ssize_t received = ReceiveDatagram(fd, receive_buffer_, 0, &truncated);
    if (received < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK)
        return MakeError(operation, ETIMEDOUT,
                         "no answer from the kernel within " +
                             std::to_string(options_.request_timeout_ms) + " ms");
      return MakeError(operation + " (receive)", errno);
    }
    if (truncated) return MakeError(operation, EMSGSIZE, "netlink answer larger than the buffer");
    auto messages = SplitMessages(receive_buffer_.data(), static_cast<size_t>(received));
    if (!messages.ok()) return messages.error();
    for (const nlmsghdr* header : messages.value()) {
      // Answers to an earlier request that timed out are stale: that
      // request already reported its failure.
      if (header->nlmsg_seq != sequence) continue;
      if (header->nlmsg_type == NLMSG_ERROR) {
        Status status = DecodeAck(header, operation);
        if (!status.ok()) return status;
        return first_failure;
      }
      if (header->nlmsg_type == NLMSG_DONE) {
        int dump_error = 0;
        if (nlmsg_datalen(header) >= static_cast<int>(sizeof(int)))
          std::memcpy(&dump_error, nlmsg_data(header), sizeof(int));
        if (dump_error < 0) return MakeError(operation, -dump_error, "dump ended with an error");
        return first_failure;
      }
      if (header->nlmsg_type == NLMSG_NOOP) continue;
      Status status = on_message(header);
      if (!status.ok() && first_failure.ok()) first_failure = status;
      if (!is_dump && !wants_ack) return first_failure;
    }
  }
}

Result<uint32_t> XfrmNetlink::AllocateSpi(const IpAddress& src, const IpAddress& dst,
                                          uint32_t reqid, uint32_t min_spi, uint32_t max_spi) {
  const std::string operation = "XFRM_MSG_ALLOCSPI " + src.ToString() + " -> " + dst.ToString();
  if (!options_.ownership.OwnsReqid(reqid))
    return MakeError(operation, EPERM, "reqid " + std::to_string(reqid) + " is outside the owned range");
  if (src.family != dst.family)
    return MakeError(operation, EINVAL, "src and dst are of different address families");
  if (min_spi > max_spi || max_spi < 0x100)
    return MakeError(operation, EINVAL, "SPI range is empty or entirely reserved (< 256)");
  uint32_t spi = 0;
  NlMsgPtr msg = BuildAllocSpi(src, dst, reqid, std::max<uint32_t>(min_spi, 0x100), max_spi);
  Status status = Transact(msg.get(), operation, [&](const nlmsghdr* header) -> Status {
    if (header->nlmsg_type != XFRM_MSG_NEWSA)
      return MakeError(operation, EBADMSG, "answer is not XFRM_MSG_NEWSA");
    auto sa = DecodeSa(header);
    if (!sa.ok()) return sa.error();
    spi = sa.value().id.spi;
    return Status::Ok();
  });
  if (!status.ok()) return status.error();
  if (spi == 0) return MakeError(operation, EBADMSG, "kernel answered without an SPI");
  return spi;
}

Status XfrmNetlink::AddSa(const SaParams& sa) {
  Status valid = ValidateSa(sa, options_.ownership);
  if (!valid.ok()) return valid;
  NlMsgPtr msg = BuildSa(sa, /*update=*/false);
  return Transact(msg.get(), "XFRM_MSG_NEWSA " + sa.id.ToString(),
                  [](const nlmsghdr*) { return Status::Ok(); });
}

Status XfrmNetlink::UpdateSa(const SaParams& sa) {
  Status valid = ValidateSa(sa, options_.ownership);
  if (!valid.ok()) return valid;
  NlMsgPtr msg = BuildSa(sa, /*update=*/true);
  return Transact(msg.get(), "XFRM_MSG_UPDSA " + sa.id.ToString(),
                  [](const nlmsghdr*) { return Status::Ok(); });
}

Status XfrmNetlink::DeleteSa(const SaId& id) {
  NlMsgPtr msg = BuildDeleteSa(id);
  return Transact(msg.get(), "XFRM_MSG_DELSA " + id.ToString(),
                  [](const nlmsghdr*) { return Status::Ok(); });
}

Result<SaInfo> XfrmNetlink::QuerySa(const SaId& id) {
  const std::string operation = "XFRM_MSG_GETSA " + id.ToString();
  std::optional<SaInfo> found;
  NlMsgPtr msg = BuildGetSa(id);
  Status status = Transact(msg.get(), operation, [&](const nlmsghdr* header) -> Status {
    auto sa = DecodeSa(header);
    if (!sa.ok()) return sa.error();
    found = std::move(sa).value();
    return Status::Ok();
  });
  if (!status.ok()) return status.error();
  if (!found) return MakeError(operation, EBADMSG, "kernel answered without the SA");
  return *found;
}

Status XfrmNetlink::InstallPolicy(const PolicyParams& policy, bool update) {
  NlMsgPtr msg = BuildPolicy(policy, update);
  return Transact(msg.get(),
                  std::string(update ? "XFRM_MSG_UPDPOLICY " : "XFRM_MSG_NEWPOLICY ") +
                      policy.id.ToString(),
                  [](const nlmsghdr*) { return Status::Ok(); });
}

Status XfrmNetlink::AddPolicy(const PolicyParams& policy) {
  Status valid = ValidatePolicy(policy, options_.ownership);
  if (!valid.ok()) return valid;
  const std::string key = PolicyKey(policy.id);
  auto existing = policies_.find(key);
  if (existing != policies_.end()) {
    if (!(existing->second.params == policy))
      return MakeError("XFRM_MSG_NEWPOLICY " + policy.id.ToString(), EEXIST,
                       "installed with different parameters; use UpdatePolicy");
    ++existing->second.users;
    return Status::Ok();
  }
  Status status = InstallPolicy(policy, /*update=*/false);
  if (!status.ok()) return status;
  policies_[key] = PolicyUse{policy, 1};
  return Status::Ok();
}

Status XfrmNetlink::UpdatePolicy(const PolicyParams& policy) {
  Status valid = ValidatePolicy(policy, options_.ownership);
  if (!valid.ok()) return valid;
  Status status = InstallPolicy(policy, /*update=*/true);
  if (!status.ok()) return status;
  PolicyUse& use = policies_[PolicyKey(policy.id)];
  use.params = policy;
  if (use.users == 0) use.users = 1;
  return Status::Ok();
}

Status XfrmNetlink::DeletePolicy(const PolicyId& id) {
  const std::string key = PolicyKey(id);
  auto existing = policies_.find(key);
  if (existing != policies_.end() && existing->second.users > 1) {
    --existing->second.users;
    return Status::Ok();
  }
  NlMsgPtr msg = BuildDeletePolicy(id);
  Status status = Transact(msg.get(), "XFRM_MSG_DELPOLICY " + id.ToString(),
                           [](const nlmsghdr*) { return Status::Ok(); });
  // Once the kernel says it is gone (deleted now or earlier) stop counting.
  if (status.ok() || status.error().error_number == ENOENT) policies_.erase(key);
  return status;
}

std::vector<Status> XfrmNetlink::Apply(const std::vector<XfrmOperation>& operations) {
  constexpr size_t kMaxQueued = 512;
  std::vector<Status> results(operations.size());
  std::vector<Queued> queue;
  std::set<std::string> queued_policy_keys;
  auto flush = [&] {
    SendBatch(queue, results);
    queue.clear();
    queued_policy_keys.clear();
  };
  auto enqueue = [&](size_t index, NlMsgPtr msg, std::string operation,
                     std::function<void(const Status&)> on_done = nullptr) {
    queue.push_back(Queued{index, std::move(msg), std::move(operation), std::move(on_done)});
  };
  for (size_t i = 0; i < operations.size(); ++i) {
    const XfrmOperation& operation = operations[i];
    if (const auto* add = std::get_if<AddSaOp>(&operation)) {
      results[i] = ValidateSa(add->sa, options_.ownership);
      if (results[i].ok()) enqueue(i, BuildSa(add->sa, false), "XFRM_MSG_NEWSA " + add->sa.id.ToString());
    } else if (const auto* update = std::get_if<UpdateSaOp>(&operation)) {
      results[i] = ValidateSa(update->sa, options_.ownership);
      if (results[i].ok())
        enqueue(i, BuildSa(update->sa, true), "XFRM_MSG_UPDSA " + update->sa.id.ToString());
    } else if (const auto* del = std::get_if<DeleteSaOp>(&operation)) {
      enqueue(i, BuildDeleteSa(del->id), "XFRM_MSG_DELSA " + del->id.ToString());
    } else {
      // Policy use counts depend on earlier answers: a second operation on a
      // policy already in this batch waits for the batch to complete.
      const PolicyId& id = std::holds_alternative<AddPolicyOp>(operation)
                               ? std::get<AddPolicyOp>(operation).policy.id
                           : std::holds_alternative<UpdatePolicyOp>(operation)
                               ? std::get<UpdatePolicyOp>(operation).policy.id
                               : std::get<DeletePolicyOp>(operation).id;
      const std::string key = PolicyKey(id);
      if (queued_policy_keys.count(key) != 0) flush();
      if (const auto* add_policy = std::get_if<AddPolicyOp>(&operation)) {
        const PolicyParams& policy = add_policy->policy;
        results[i] = ValidatePolicy(policy, options_.ownership);
        if (!results[i].ok()) continue;
        auto existing = policies_.find(key);
        if (existing != policies_.end()) {
          if (existing->second.params == policy) {
            ++existing->second.users;
          } else {
            results[i] = MakeError("XFRM_MSG_NEWPOLICY " + id.ToString(), EEXIST,
                                   "installed with different parameters; use UpdatePolicy");
          }
          continue;
        }
        enqueue(i, BuildPolicy(policy, false), "XFRM_MSG_NEWPOLICY " + id.ToString(),
                [this, key, policy](const Status& status) {
                  if (status.ok()) policies_[key] = PolicyUse{policy, 1};
                });
      } else if (const auto* update_policy = std::get_if<UpdatePolicyOp>(&operation)) {
        const PolicyParams& policy = update_policy->policy;
        results[i] = ValidatePolicy(policy, options_.ownership);
        if (!results[i].ok()) continue;
        enqueue(i, BuildPolicy(policy, true), "XFRM_MSG_UPDPOLICY " + id.ToString(),
                [this, key, policy](const Status& status) {
                  if (!status.ok()) return;
                  PolicyUse& use = policies_[key];
                  use.params = policy;
                  if (use.users == 0) use.users = 1;
                });
      } else {
        auto existing = policies_.find(key);
        if (existing != policies_.end() && existing->second.users > 1) {
          --existing->second.users;
          continue;
        }
        enqueue(i, BuildDeletePolicy(id), "XFRM_MSG_DELPOLICY " + id.ToString(),
                [this, key](const Status& status) {
                  if (status.ok() || status.error().error_number == ENOENT) policies_.erase(key);
                });
      }
      queued_policy_keys.insert(key);
    }
    if (queue.size() >= kMaxQueued) flush();
  }
  flush();
  return results;
}

void XfrmNetlink::SendBatch(std::vector<Queued>& queue, std::vector<Status>& results) {
  // Bounded so that every failure answer of a chunk fits the receive buffer.
  constexpr size_t kChunkBytes = 64 * 1024;
  size_t start = 0;
  while (start < queue.size()) {
    size_t end = start;
    size_t bytes = 0;
    while (end < queue.size()) {
      const size_t size = queue[end].msg ? NLMSG_ALIGN(nlmsg_hdr(queue[end].msg.get())->nlmsg_len) : 0;
      if (end > start && bytes + size > kChunkBytes) break;
      bytes += size;
      ++end;
    }
    SendChunk(queue.data() + start, queue.data() + end, results);
    start = end;
  }
}

void XfrmNetlink::SendChunk(Queued* begin, Queued* end, std::vector<Status>& results) {
  std::vector<uint8_t> buffer;
  std::map<uint32_t, Queued*> by_sequence;
  std::map<uint32_t, Status> answers;
  Queued* last = nullptr;
  for (Queued* q = begin; q != end; ++q) {
    if (!q->msg) {
      results[q->result_index] = OutOfMemory(q->operation);
      continue;
    }
    nl_complete_msg(request_socket_, q->msg.get());
    last = q;
  }
  for (Queued* q = begin; q != end; ++q) {
    if (!q->msg) continue;
    nlmsghdr* header = nlmsg_hdr(q->msg.get());
    // Only the last request is acknowledged; the others answer on failure.
    header->nlmsg_flags &= ~NLM_F_ACK;
    if (q == last) header->nlmsg_flags |= NLM_F_ACK;
    by_sequence[header->nlmsg_seq] = q;
    const auto* bytes = reinterpret_cast<const uint8_t*>(header);
    buffer.insert(buffer.end(), bytes, bytes + header->nlmsg_len);
    buffer.resize(NLMSG_ALIGN(buffer.size()), 0);
  }
  if (last == nullptr) return;
  const uint32_t last_sequence = nlmsg_hdr(last->msg.get())->nlmsg_seq;
  auto finish = [&](const std::optional<KernelError>& lost) {
    for (auto& [sequence, q] : by_sequence) {
      Status status;
      auto answer = answers.find(sequence);
      if (answer != answers.end()) {
        status = answer->second;
      } else if (lost) {
        status = MakeError(q->operation, lost->error_number,
                           lost->kernel_message + " (outcome unknown: resynchronize)");
      }
      results[q->result_index] = status;
      if (q->on_done) q->on_done(status);
    }
  };

  errno = 0;
  const int sent = nl_sendto(request_socket_, buffer.data(), buffer.size());
  if (sent < 0) {
    // Nothing reached the kernel.
    for (auto& [sequence, q] : by_sequence) answers[sequence] = LibnlError(q->operation + " (send)", sent, errno);
    finish(std::nullopt);
    return;
  }
  const int fd = nl_socket_get_fd(request_socket_);
  while (true) {
    bool truncated = false;
    ssize_t received = ReceiveDatagram(fd, receive_buffer_, 0, &truncated);
    if (received < 0) {
      if (errno == EINTR) continue;
      const int error = (errno == EAGAIN || errno == EWOULDBLOCK) ? ETIMEDOUT : errno;
      finish(MakeError("batch", error, "no complete answer from the kernel"));
      return;
    }
    if (truncated) {
      finish(MakeError("batch", EMSGSIZE, "netlink answer larger than the buffer"));
      return;
    }
    auto messages = SplitMessages(receive_buffer_.data(), static_cast<size_t>(received));
    if (!messages.ok()) {
      finish(messages.error());
      return;
    }
    bool done = false;
    for (const nlmsghdr* header : messages.value()) {
      auto q = by_sequence.find(header->nlmsg_seq);
      if (q == by_sequence.end() || header->nlmsg_type != NLMSG_ERROR) continue;
      answers[header->nlmsg_seq] = DecodeAck(header, q->second->operation);
      if (header->nlmsg_seq == last_sequence) done = true;
    }
    if (done) {
      finish(std::nullopt);
      return;
    }
  }
}

int XfrmNetlink::PolicyUsers(const PolicyId& id) const {
  auto existing = policies_.find(PolicyKey(id));
  return existing == policies_.end() ? 0 : existing->second.users;
}

Result<OwnedState> XfrmNetlink::ListOwned() {
  OwnedState state;
  NlMsgPtr sa_dump = BuildDumpSas();
  Status status = Transact(sa_dump.get(), "XFRM_MSG_GETSA dump", [&](const nlmsghdr* header) -> Status {
    auto sa = DecodeSa(header);
    if (!sa.ok()) return sa.error();
    if (options_.ownership.OwnsReqid(sa.value().reqid)) state.sas.push_back(std::move(sa).value());
    return Status::Ok();
  });
  if (!status.ok()) return status.error();
  NlMsgPtr policy_dump = BuildDumpPolicies();
  status = Transact(policy_dump.get(), "XFRM_MSG_GETPOLICY dump", [&](const nlmsghdr* header) -> Status {
    auto policy = DecodePolicy(header);
    if (!policy.ok()) return policy.error();
    if (options_.ownership.OwnsPriority(policy.value().params.priority))
      state.policies.push_back(std::move(policy).value());
    return Status::Ok();
  });
  if (!status.ok()) return status.error();
  return state;
}

Status XfrmNetlink::FlushOwned() {
  auto owned = ListOwned();
  if (!owned.ok()) return owned.error();
  Status first_failure;
  auto note = [&first_failure](const Status& status) {
    // Something that vanished between the dump and the delete (an SA that
    // expired meanwhile) is already in the wanted state.
    // (ENOENT for policies, ESRCH for SAs).
    if (!status.ok() && status.error().error_number != ENOENT &&
        status.error().error_number != ESRCH && first_failure.ok())
      first_failure = status;
  };
  for (const PolicyInfo& policy : owned.value().policies) {
    NlMsgPtr msg = BuildDeletePolicy(policy.params.id);
    note(Transact(msg.get(), "flush: XFRM_MSG_DELPOLICY " + policy.params.id.ToString(),
                  [](const nlmsghdr*) { return Status::Ok(); }));
  }
  for (const SaInfo& sa : owned.value().sas) {
    NlMsgPtr msg = BuildDeleteSa(sa.id);
    note(Transact(msg.get(), "flush: XFRM_MSG_DELSA " + sa.id.ToString(),
                  [](const nlmsghdr*) { return Status::Ok(); }));
  }
  policies_.clear();
  return first_failure;
}

int XfrmNetlink::event_fd() const {
  return event_socket_ == nullptr ? -1 : nl_socket_get_fd(event_socket_);
}

Result<std::vector<KernelEvent>> XfrmNetlink::ProcessEvents() {
  std::vector<KernelEvent> events;
  if (event_socket_ == nullptr) return events;
  const int fd = nl_socket_get_fd(event_socket_);
  while (true) {
    bool truncated = false;
    ssize_t received = ReceiveDatagram(fd, receive_buffer_, MSG_DONTWAIT, &truncated);
    if (received < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      if (errno == ENOBUFS) {
        // The kernel dropped events; the socket itself stays usable.
        events.push_back(ResyncNeeded{MakeError("read XFRM events", ENOBUFS,
                                                "event socket overflowed, events were lost")});
        continue;
      }
      events.push_back(ResyncNeeded{MakeError("read XFRM events", errno)});
      return events;
    }
    if (truncated) {
      events.push_back(ResyncNeeded{MakeError("read XFRM events", EMSGSIZE,
                                              "event larger than the receive buffer")});
      continue;
    }
    auto messages = SplitMessages(receive_buffer_.data(), static_cast<size_t>(received));
    if (!messages.ok()) {
      events.push_back(ResyncNeeded{messages.error()});
      continue;
    }
    for (const nlmsghdr* header : messages.value()) {
      auto event = DecodeEvent(header);
      if (!event.ok()) {
        events.push_back(ResyncNeeded{event.error()});
      } else if (event.value()) {
        events.push_back(*event.value());
      }
    }
  }
  return events;
}

Status XfrmNetlink::SetSocketPolicy(int fd, const SocketPolicy& policy) {
  Status valid = ValidateSocketPolicy(policy);
  if (!valid.ok()) return valid;
  int domain = 0;
  socklen_t length = sizeof(domain);
  if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &length) != 0)
    return MakeError("getsockopt SO_DOMAIN on fd " + std::to_string(fd), errno);
  if (domain != AF_INET && domain != AF_INET6)
    return MakeError("set socket policy on fd " + std::to_string(fd), EAFNOSUPPORT,
                     "not an IPv4 or IPv6 socket");
  const AddressFamily family = domain == AF_INET ? AddressFamily::kIpv4 : AddressFamily::kIpv6;
  std::vector<uint8_t> buffer = BuildSocketPolicy(policy, family);
  const int level = domain == AF_INET ? IPPROTO_IP : IPPROTO_IPV6;
  const int option = domain == AF_INET ? IP_XFRM_POLICY : IPV6_XFRM_POLICY;
  if (setsockopt(fd, level, option, buffer.data(), static_cast<socklen_t>(buffer.size())) != 0)
    return MakeError(std::string("setsockopt ") +
                         (domain == AF_INET ? "IP_XFRM_POLICY" : "IPV6_XFRM_POLICY") +
                         " dir " + DirectionName(policy.direction) + " on fd " + std::to_string(fd),
                     errno);
  return Status::Ok();
}

Status XfrmNetlink::SetSocketBypass(int fd) {
  for (Direction direction : {Direction::kIn, Direction::kOut}) {
    SocketPolicy bypass;
    bypass.direction = direction;
    bypass.action = PolicyAction::kBypass;
    Status status = SetSocketPolicy(fd, bypass);
    if (!status.ok()) return status;
  }
  return Status::Ok();
}

Status XfrmNetlink::EnableUdpEncap(int fd) {
  int type = UDP_ENCAP_ESPINUDP;
  if (setsockopt(fd, IPPROTO_UDP, UDP_ENCAP, &type, sizeof(type)) != 0)
    return MakeError("setsockopt UDP_ENCAP=ESPINUDP on fd " + std::to_string(fd), errno);
  return Status::Ok();
}

}  // namespace kernel_glue
