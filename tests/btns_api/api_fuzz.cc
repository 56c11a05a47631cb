// libFuzzer target for the BTNS API server core: arbitrary bytes (split
// into arbitrary reads) and a few real descriptors go in; the server must
// never crash, and everything it writes back must be well-formed reply
// frames.
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "btns_api/admin.h"
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

namespace pb = btns::api::v1;

// An administrative backend with the daemon's reply shapes: the server's
// permission check, the requests' bodies and the replies' encoding are
// fuzzed with it. Members of gid 1000 administer.
class FuzzAdmin : public btns_api::AdminBackend {
 public:
  std::optional<gid_t> AdminGroup() override { return 1000; }
  std::string AdminGroupName() override { return "btnsadm"; }
  btns_api::Status Handle(const pb::Request& request, pb::Reply* reply) override {
    using btns_api::Status;
    using btns_api::Why;
    switch (request.body_case()) {
      case pb::Request::kAdminListSas: {
        pb::IkeSaStatus* ike = reply->mutable_sa_list()->add_ike_sas();
        ike->set_id(1);
        ike->set_peer_id("fqdn:bob");
        ike->add_children()->set_id(2);
        return Status::Ok();
      }
      case pb::Request::kAdminListPolicy:
        reply->mutable_policy_list()->add_spd()->set_name("hosts");
        return Status::Ok();
      case pb::Request::kAdminInitiate:
        if (request.admin_initiate().spd_entry() != "hosts")
          return Status::Fail(ENOENT, Why::kNotSupported,
                              "no PROTECT entry '" + request.admin_initiate().spd_entry() + "'");
        reply->mutable_admin_result()->set_message("initiating");
        return Status::Ok();
      case pb::Request::kAdminTerminate:
      case pb::Request::kAdminRekey: {
        const uint64_t ike = request.has_admin_terminate() ? request.admin_terminate().ike_sa_id()
                                                           : request.admin_rekey().ike_sa_id();
        if (ike != 1) return Status::Fail(ESRCH, Why::kNotSupported, "no such SA");
        reply->mutable_admin_result()->set_ike_sa_id(ike);
        return Status::Ok();
      }
      case pb::Request::kAdminReload:
        reply->mutable_admin_result()->add_errors("btnsd.yaml:1:1: rejected");
        return Status::Fail(EINVAL, Why::kMalformed, "the configuration was rejected");
      case pb::Request::kAdminStats: {
        pb::Counter* c = reply->mutable_stats()->add_counters();
        c->set_name("ike_sa_up");
        c->set_value(1);
        return Status::Ok();
      }
      case pb::Request::kAdminVersion:
        reply->mutable_version_info();
        return Status::Ok();
      default:
        return Status::Fail(EOPNOTSUPP, Why::kNotSupported, "unknown administrative request");
    }
  }
};

bool IsAdministrativeBody(const pb::Reply& r) {
  switch (r.body_case()) {
    case pb::Reply::kSaList:
    case pb::Reply::kPolicyList:
    case pb::Reply::kAdminResult:
    case pb::Reply::kStats:
    case pb::Reply::kAdminEvent:
    case pb::Reply::kLatchList:
    case pb::Reply::kVersionInfo:
      return true;
    default:
      return false;
  }
}

// Every frame parses; a caller who may not administer never gets an
// administrative answer, only refusals.
void CheckReplies(std::string_view out, bool admin) {
  while (!out.empty()) {
    if (out.size() < 4) abort();
    const auto* p = reinterpret_cast<const uint8_t*>(out.data());
    size_t len = (size_t{p[0]} << 24) | (size_t{p[1]} << 16) | (size_t{p[2]} << 8) | p[3];
    if (len == 0 || out.size() < 4 + len) abort();
    btns::api::v1::Reply r;
    if (!r.ParseFromArray(out.data() + 4, static_cast<int>(len))) abort();
    if (!admin && IsAdministrativeBody(r)) abort();
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
  FuzzAdmin admin_backend;
  server.SetAdmin(&admin_backend);
  // Byte 0: which pool descriptors go with the first read (bit mask; bit 6
  // makes the caller someone who may not administer).
  // Byte 1: read size, so frames straddle reads.
  const uint8_t mask = data[0];
  const size_t chunk = 1 + data[1];
  const bool admin = (mask & 0x40) == 0;
  uint64_t session = server.OpenSession(admin ? btns_api::Caller{1, 1000, 1000}
                                              : btns_api::Caller{0, 1001, 1001});
  // A second connection following events sees what the first one causes.
  uint64_t follower = server.OpenSession({1, 0, 0});
  {
    pb::Request follow;
    follow.set_version(1);
    follow.set_id(1);
    follow.mutable_admin_follow_events();
    std::string frame;
    btns_api::AppendFrame(follow.SerializeAsString(), &frame);
    server.OnInput(follower, reinterpret_cast<const uint8_t*>(frame.data()), frame.size(), {});
  }
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
    CheckReplies(server.PendingOutput(session), admin);
    server.ConsumeOutput(session, server.PendingOutput(session).size());
    if (mask & 0x80) {  // SA churn between reads exercises the latches
      fake.RemoveSa(1);
      fake.AddSa(sa);
      CheckReplies(server.PendingOutput(session), admin);
      server.ConsumeOutput(session, server.PendingOutput(session).size());
    }
    CheckReplies(server.PendingOutput(follower), true);
    server.ConsumeOutput(follower, server.PendingOutput(follower).size());
    if (!open) break;
    data += n;
    size -= n;
  }
  server.CloseSession(session);
  server.CloseSession(follower);
  return 0;
}
