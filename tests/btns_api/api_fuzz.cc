// libFuzzer target for the BTNS API server core: arbitrary bytes (split
// into arbitrary reads) and a few real descriptors go in; the server must
// never crash, and everything it writes back must be well-formed reply
// frames.
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "btns_api/btns_api.pb.h"
#include "btns_api/fake_sa_directory.h"
#include "btns_api/frame.h"
#include "btns_api/server.h"

namespace {

struct Pool {
  std::vector<int> fds;  // descriptors the input may pass (dup'ed per use)
  Pool() {
    int l = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(l, reinterpret_cast<sockaddr*>(&a), sizeof a);
    listen(l, 1);
    socklen_t len = sizeof a;
    getsockname(l, reinterpret_cast<sockaddr*>(&a), &len);
    int c = socket(AF_INET, SOCK_STREAM, 0);
    connect(c, reinterpret_cast<sockaddr*>(&a), sizeof a);
    int s = accept(l, nullptr, nullptr);
    int u = socket(AF_INET, SOCK_DGRAM, 0);
    int p[2];
    if (pipe(p) != 0) abort();
    fds = {c, s, l, u, p[0]};
  }
};

void CheckReplies(std::string_view out) {
  while (!out.empty()) {
    if (out.size() < 4) abort();
    const auto* p = reinterpret_cast<const uint8_t*>(out.data());
    size_t len = (size_t{p[0]} << 24) | (size_t{p[1]} << 16) | (size_t{p[2]} << 8) | p[3];
    if (len == 0 || out.size() < 4 + len) abort();
    btns::api::v1::Reply r;
    if (!r.ParseFromArray(out.data() + 4, static_cast<int>(len))) abort();
    out.remove_prefix(4 + len);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Pool pool;
  if (size < 2) return 0;
  btns_api::FakeSaDirectory fake;
  btns_api::SaInfo sa;
  sa.child_sa_id = 1;
  sa.peer.id = "fqdn:bob";
  sa.peer.auth = btns_api::AuthKind::kCertificate;
  sa.peer.public_key.assign(8, 1);
  sa.local.public_key.assign(8, 2);
  ike::policy::TrafficSelector any;
  any.addresses = ike::policy::IpRange::All(ike::policy::IpFamily::kV4);
  sa.local_ts = {any};
  sa.remote_ts = {any};
  fake.AddSa(sa);
  btns_api::ServerOptions options;
  options.max_frame = 4096;
  btns_api::Server server(fake, options);
  uint64_t session = server.OpenSession({1, 1000, 1000});
  // Byte 0: which pool descriptors go with the first read (bit mask).
  // Byte 1: read size, so frames straddle reads.
  const uint8_t mask = data[0];
  const size_t chunk = 1 + data[1];
  data += 2;
  size -= 2;
  bool first = true;
  while (size > 0) {
    size_t n = std::min(chunk, size);
    std::vector<int> fds;
    if (first) {
      for (size_t i = 0; i < pool.fds.size(); ++i) {
        if (mask & (1u << i)) fds.push_back(dup(pool.fds[i]));
      }
      first = false;
    }
    bool open = server.OnInput(session, data, n, std::move(fds));
    CheckReplies(server.PendingOutput(session));
    server.ConsumeOutput(session, server.PendingOutput(session).size());
    if (mask & 0x80) {  // SA churn between reads exercises the latches
      fake.RemoveSa(1);
      fake.AddSa(sa);
      CheckReplies(server.PendingOutput(session));
      server.ConsumeOutput(session, server.PendingOutput(session).size());
    }
    if (!open) break;
    data += n;
    size -= n;
  }
  server.CloseSession(session);
  return 0;
}
