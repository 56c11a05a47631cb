// A small blocking client of the API endpoint for administrative calls
// (btnsctl): one connection, requests answered in order, pushed events
// read with Next(). Uses the same framing as the server (frame.h).
#ifndef BTNS_API_ADMIN_CLIENT_H_
#define BTNS_API_ADMIN_CLIENT_H_

#include <cstdint>
#include <string>

#include "btns_api/btns_api.pb.h"
#include "btns_api/frame.h"

namespace btns_api {

class AdminClient {
 public:
  AdminClient() = default;
  ~AdminClient();
  AdminClient(const AdminClient&) = delete;
  AdminClient& operator=(const AdminClient&) = delete;

  // Connects to the endpoint at `path`. 0, or an errno with `why` set
  // (ENOENT/ECONNREFUSED: no daemon there; EACCES: the socket's mode).
  int Connect(const std::string& path, std::string* why);
  // Sends `request` (id and version are filled in) and waits up to
  // timeout_ms for its reply. 0 when a reply arrived (it may carry an
  // error); otherwise an errno with `why` set.
  int Call(btns::api::v1::Request& request, btns::api::v1::Reply* reply,
           int timeout_ms, std::string* why);
  // The next frame the daemon pushes (e.g. an AdminEvent); timeout_ms < 0
  // waits forever. 0, ETIMEDOUT, or another errno with `why` set.
  int Next(btns::api::v1::Reply* reply, int timeout_ms, std::string* why);

 private:
  int fd_ = -1;
  uint64_t next_id_ = 1;
  FrameDecoder decoder_{1 << 20};
};

}  // namespace btns_api

#endif  // BTNS_API_ADMIN_CLIENT_H_
