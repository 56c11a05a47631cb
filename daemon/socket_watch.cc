#include "daemon/socket_watch.h"

#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <algorithm>
#include <cstring>
#include <vector>

namespace btnsd::daemon {
namespace {

void PutAddress(const btns_api::IpAddress& address, __be32 out[4]) {
  std::memset(out, 0, 4 * sizeof(__be32));
  const std::vector<uint8_t> bytes = address.ToBytes();
  std::memcpy(out, bytes.data(), std::min<size_t>(bytes.size(), 16));
}

// One exact lookup. `swap` puts the remote side in idiag_src: the UDP
// lookup reads the id as a packet arriving from the peer, TCP's as the
// socket sees itself.
SocketHold Lookup(int fd, const WatchedSocket& socket, bool swap) {
  const btns_api::FiveTuple& t = socket.conversation;
  struct {
    nlmsghdr header;
    inet_diag_req_v2 request;
  } message{};
  message.header.nlmsg_len = sizeof(message);
  message.header.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  message.header.nlmsg_flags = NLM_F_REQUEST;
  message.header.nlmsg_seq = 1;
  inet_diag_req_v2& r = message.request;
  r.sdiag_family =
      t.local.address.family == ike::policy::IpFamily::kV4 ? AF_INET : AF_INET6;
  r.sdiag_protocol = t.protocol;
  r.idiag_states = ~0u;
  const btns_api::Endpoint& src = swap ? t.remote : t.local;
  const btns_api::Endpoint& dst = swap ? t.local : t.remote;
  r.id.idiag_sport = htons(src.port);
  r.id.idiag_dport = htons(dst.port);
  PutAddress(src.address, r.id.idiag_src);
  PutAddress(dst.address, r.id.idiag_dst);
  r.id.idiag_cookie[0] = static_cast<uint32_t>(socket.cookie);
  r.id.idiag_cookie[1] = static_cast<uint32_t>(socket.cookie >> 32);
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  if (sendto(fd, &message, sizeof(message), 0,
             reinterpret_cast<sockaddr*>(&kernel), sizeof(kernel)) < 0)
    return SocketHold::kUnknown;
  alignas(nlmsghdr) char reply[8192];
  const ssize_t n = recv(fd, reply, sizeof(reply), 0);
  if (n < static_cast<ssize_t>(sizeof(nlmsghdr))) return SocketHold::kUnknown;
  const auto* header = reinterpret_cast<const nlmsghdr*>(reply);
  if (!NLMSG_OK(header, static_cast<size_t>(n))) return SocketHold::kUnknown;
  if (header->nlmsg_type == NLMSG_ERROR) {
    if (header->nlmsg_len < NLMSG_LENGTH(sizeof(nlmsgerr))) return SocketHold::kUnknown;
    const int error = -static_cast<const nlmsgerr*>(NLMSG_DATA(header))->error;
    // ENOENT: no such socket; ESTALE: another socket (another cookie) there.
    if (error == ENOENT || error == ESTALE) return SocketHold::kReleased;
    return SocketHold::kUnknown;
  }
  if (header->nlmsg_type != SOCK_DIAG_BY_FAMILY ||
      header->nlmsg_len < NLMSG_LENGTH(sizeof(inet_diag_msg)))
    return SocketHold::kUnknown;
  const auto* found = static_cast<const inet_diag_msg*>(NLMSG_DATA(header));
  const uint64_t cookie =
      uint64_t(found->id.idiag_cookie[0]) | (uint64_t(found->id.idiag_cookie[1]) << 32);
  if (cookie != socket.cookie) return SocketHold::kReleased;
  // No inode: no file refers to it any more (an orphan finishing its close).
  return found->idiag_inode != 0 ? SocketHold::kHeld : SocketHold::kReleased;
}

}  // namespace

SocketHold ProbeSocketDiag(const WatchedSocket& socket) {
  const uint8_t protocol = socket.conversation.protocol;
  if (protocol != IPPROTO_TCP && protocol != IPPROTO_UDP) return SocketHold::kUnknown;
  const int fd = ::socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
  if (fd < 0) return SocketHold::kUnknown;
  timeval limit{1, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof(limit));
  SocketHold hold = Lookup(fd, socket, /*swap=*/false);
  // UDP's lookup takes the id the other way round (on the kernels seen so
  // far); a wrong way finds nothing or another socket, so ask both ways.
  if (hold == SocketHold::kReleased && protocol == IPPROTO_UDP) {
    const SocketHold other = Lookup(fd, socket, /*swap=*/true);
    if (other == SocketHold::kHeld) hold = other;
  }
  close(fd);
  return hold;
}

}  // namespace btnsd::daemon
