// XFRM netlink request building and reply/event decoding (libnl-3 messages
// carrying the kernel's linux/xfrm.h structures). Pure functions: no socket,
// so the message contents are unit tested byte for byte.
#ifndef KERNEL_GLUE_XFRM_MESSAGES_H_
#define KERNEL_GLUE_XFRM_MESSAGES_H_

#include <linux/netlink.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "kernel_glue/xfrm_interface.h"

struct nl_msg;

namespace kernel_glue {

struct NlMsgDeleter {
  void operator()(nl_msg* msg) const;
};
using NlMsgPtr = std::unique_ptr<nl_msg, NlMsgDeleter>;

// Requests. Each returns a complete message (header type and flags set,
// sequence number and port left for the sender), or nullptr when out of
// memory. Inputs must have passed the xfrm_rules.h validation.
NlMsgPtr BuildAllocSpi(const IpAddress& src, const IpAddress& dst,
                       uint32_t reqid, uint32_t min_spi, uint32_t max_spi);
// update=false: XFRM_MSG_NEWSA; update=true: XFRM_MSG_UPDSA.
NlMsgPtr BuildSa(const SaParams& sa, bool update);
NlMsgPtr BuildDeleteSa(const SaId& id);
NlMsgPtr BuildGetSa(const SaId& id);
NlMsgPtr BuildDumpSas();
NlMsgPtr BuildPolicy(const PolicyParams& policy, bool update);
NlMsgPtr BuildDeletePolicy(const PolicyId& id);
NlMsgPtr BuildDumpPolicies();

// The setsockopt(IP_XFRM_POLICY / IPV6_XFRM_POLICY) argument: a struct
// xfrm_userpolicy_info followed by one struct xfrm_user_tmpl per template.
std::vector<uint8_t> BuildSocketPolicy(const SocketPolicy& policy,
                                       AddressFamily family);

// Replies. Each checks the message length and attribute sizes and returns
// an EBADMSG error naming what was wrong.
Result<SaInfo> DecodeSa(const nlmsghdr* header);
Result<PolicyInfo> DecodePolicy(const nlmsghdr* header);

// Event messages from the XFRMNLGRP_{ACQUIRE,EXPIRE,MAPPING} groups. Other
// message types yield nullopt (they are not events of interest).
Result<std::optional<KernelEvent>> DecodeEvent(const nlmsghdr* header);

// Walks a buffer of netlink messages as received from the socket.
// Malformed framing yields an EBADMSG error for the rest of the buffer.
Result<std::vector<const nlmsghdr*>> SplitMessages(const uint8_t* data,
                                                   size_t size);

// An NLMSG_ERROR message as a Status (error 0 is success), with the
// extended-ack message text when the kernel included one.
Status DecodeAck(const nlmsghdr* header, const std::string& operation);

}  // namespace kernel_glue

#endif  // KERNEL_GLUE_XFRM_MESSAGES_H_
