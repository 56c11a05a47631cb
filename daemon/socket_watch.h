// Whether an application still holds a socket, asked of the kernel's
// sock_diag interface (NETLINK_SOCK_DIAG, exact lookup by 5-tuple and
// SO_COOKIE). The BTNS API uses it to end an IKE SA that served only one
// socket once the application has closed that socket, without keeping a
// reference that would stop close() from closing it.
#pragma once

#include <cstdint>
#include <functional>

#include "btns_api/sa_directory.h"

namespace btnsd::daemon {

enum class SocketHold {
  kHeld,      // some process still has a descriptor of it
  kReleased,  // gone, replaced by another socket (cookie), or orphaned
              // (no descriptor left; TCP may still be sending its FIN)
  kUnknown,   // the kernel could not be asked (no sock_diag): keep waiting
};

// A socket as the kernel's tables know it: its conversation (local side
// first) and its SO_COOKIE.
struct WatchedSocket {
  btns_api::FiveTuple conversation;
  uint64_t cookie = 0;
};

using SocketProbe = std::function<SocketHold(const WatchedSocket&)>;

// TCP and UDP over IPv4 and IPv6; other protocols are kUnknown.
SocketHold ProbeSocketDiag(const WatchedSocket& socket);

}  // namespace btnsd::daemon
