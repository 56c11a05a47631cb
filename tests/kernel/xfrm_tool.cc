// Installs and inspects SAs and policies only through kernel_glue, so tests
// running in a real kernel prove the glue itself (no `ip xfrm` in setup).
//
//   xfrm_tool sa-pair --local A --remote B --spi-out X --spi-in Y
//             [--alg gcm|chacha|cbc-sha256|cbc-sha384|cbc-sha512]
//             [--mode transport|tunnel] [--local-net CIDR --remote-net CIDR]
//             [--reqid R] [--soft-bytes N] [--hard-bytes N] [--esn]
//             [--soft-add-seconds S] [--hard-add-seconds S]
//             [--replay W] [--encap [--encap-peer-port P]] [--no-policies]
//   xfrm_tool mapping --spi X --peer A --old-port P --new-port Q [--timeout-ms T]
//   xfrm_tool encap-socket --seconds S   (UDP 4500 ESP-in-UDP receiver)
//   xfrm_tool counters --dst D --spi X [--min-packets N] [--min-bytes N]
//   xfrm_tool list | flush
//   xfrm_tool acquire --local A --remote B [--timeout-ms T]
//   xfrm_tool expire --remote B --spi X [--hard] [--no-traffic] [--timeout-ms T]
//   xfrm_tool socket-policy --local A --remote B --spi-out X [--reqid R]
//   xfrm_tool tcp-serve --port P --bytes N
//   xfrm_tool tcp-send --to A --port P --bytes N
//   xfrm_tool bench --count N [--batch pair|all|none] [--only sa|policy]
//
// Keys are derived from the SPI so both hosts compute the same SA without
// exchanging anything; they protect test traffic inside UML only.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "kernel_glue/xfrm_interface.h"
#include "kernel_glue/xfrm_netlink.h"
#include "kernel_glue/xfrm_rules.h"

namespace kernel_glue {
namespace {

using Clock = std::chrono::steady_clock;
constexpr uint32_t kReqidBase = 0x00b70000;
constexpr uint32_t kPriority = 0x7b100;

[[noreturn]] void Fail(const std::string& message) {
  std::fprintf(stderr, "xfrm_tool: %s\n", message.c_str());
  std::exit(1);
}

void Check(const Status& status) {
  if (!status.ok()) Fail(status.error().ToString());
}

class Args {
 public:
  Args(int argc, char** argv) {
    for (int i = 2; i < argc; ++i) {
      std::string key = argv[i];
      if (key.rfind("--", 0) != 0) Fail("unexpected argument " + key);
      key = key.substr(2);
      if (i + 1 < argc && std::strncmp(argv[i + 1], "--", 2) != 0) {
        values_[key] = argv[++i];
      } else {
        values_[key] = "";
      }
    }
  }
  bool Has(const std::string& key) const { return values_.count(key) != 0; }
  std::string Get(const std::string& key, const std::string& fallback = "") const {
    auto it = values_.find(key);
    if (it != values_.end()) return it->second;
    if (fallback.empty()) Fail("missing --" + key);
    return fallback;
  }
  uint64_t Number(const std::string& key, const std::string& fallback = "") const {
    const std::string text = Get(key, fallback);
    char* end = nullptr;
    uint64_t value = std::strtoull(text.c_str(), &end, 0);
    if (end == text.c_str() || *end != '\0') Fail("--" + key + " expects a number, got " + text);
    return value;
  }
  IpAddress Address(const std::string& key) const {
    auto address = IpAddress::Parse(Get(key));
    if (!address) Fail("--" + key + " expects an IPv4 or IPv6 address");
    return *address;
  }
  // ADDRESS/PREFIX
  void Network(const std::string& key, IpAddress* address, uint8_t* prefix) const {
    const std::string text = Get(key);
    const size_t slash = text.find('/');
    auto parsed = IpAddress::Parse(text.substr(0, slash));
    if (!parsed) Fail("--" + key + " expects ADDRESS/PREFIX");
    *address = *parsed;
    *prefix = slash == std::string::npos ? static_cast<uint8_t>(parsed->size() * 8)
                                         : static_cast<uint8_t>(std::atoi(text.c_str() + slash + 1));
  }

 private:
  std::map<std::string, std::string> values_;
};

std::unique_ptr<XfrmNetlink> OpenGlue(bool events = false) {
  XfrmNetlink::Options options;
  options.subscribe_events = events;
  auto glue = XfrmNetlink::Open(options);
  if (!glue.ok()) Fail(glue.error().ToString());
  return std::move(glue).value();
}

std::vector<uint8_t> KeyFor(uint32_t spi, size_t size, uint8_t salt) {
  std::vector<uint8_t> key(size);
  for (size_t i = 0; i < size; ++i) key[i] = static_cast<uint8_t>(spi * 7 + i * 13 + salt);
  return key;
}

void SetAlgorithm(const std::string& name, SaParams& sa) {
  const uint32_t spi = sa.id.spi;
  if (name == "gcm") {
    sa.cipher = Cipher::kAesGcm16;
    sa.encryption_key = KeyFor(spi, 20, 1);
  } else if (name == "chacha") {
    sa.cipher = Cipher::kChaCha20Poly1305;
    sa.encryption_key = KeyFor(spi, 36, 2);
  } else if (name.rfind("cbc-", 0) == 0) {
    sa.cipher = Cipher::kAesCbc;
    sa.encryption_key = KeyFor(spi, 16, 3);
    if (name == "cbc-sha256") {
      sa.integrity = Integrity::kHmacSha256_128;
      sa.integrity_key = KeyFor(spi, 32, 4);
    } else if (name == "cbc-sha384") {
      sa.integrity = Integrity::kHmacSha384_192;
      sa.integrity_key = KeyFor(spi, 48, 5);
    } else if (name == "cbc-sha512") {
      sa.integrity = Integrity::kHmacSha512_256;
      sa.integrity_key = KeyFor(spi, 64, 6);
    } else {
      Fail("unknown --alg " + name);
    }
  } else {
    Fail("unknown --alg " + name);
  }
}

PolicyParams MakePolicy(const Selector& selector, Direction direction, Mode mode,
                        uint32_t reqid, const IpAddress& tunnel_src, const IpAddress& tunnel_dst) {
  PolicyParams policy;
  policy.id.selector = selector;
  policy.id.direction = direction;
  policy.priority = kPriority;
  policy.action = PolicyAction::kProtect;
  PolicyTemplate templ;
  templ.mode = mode;
  templ.reqid = reqid;
  templ.tunnel_src = tunnel_src;
  templ.tunnel_dst = tunnel_dst;
  policy.templates.push_back(templ);
  return policy;
}

Selector Reverse(const Selector& selector) {
  Selector reversed = selector;
  std::swap(reversed.src, reversed.dst);
  std::swap(reversed.src_prefix, reversed.dst_prefix);
  std::swap(reversed.src_port, reversed.dst_port);
  return reversed;
}

// Installs one host's half of a CHILD_SA the way the daemon does: both SAs
// and their policies in one batched Apply.
int SaPair(const Args& args) {
  auto glue = OpenGlue();
  const IpAddress local = args.Address("local");
  const IpAddress remote = args.Address("remote");
  const Mode mode = args.Get("mode", "transport") == "tunnel" ? Mode::kTunnel : Mode::kTransport;
  const uint32_t reqid = kReqidBase + static_cast<uint32_t>(args.Number("reqid", "1"));
  std::vector<XfrmOperation> operations;
  for (int direction = 0; direction < 2; ++direction) {
    SaParams sa;
    const bool outbound = direction == 0;
    sa.id.spi = static_cast<uint32_t>(args.Number(outbound ? "spi-out" : "spi-in"));
    sa.id.dst = outbound ? remote : local;
    sa.src = outbound ? local : remote;
    sa.mode = mode;
    sa.reqid = reqid;
    SetAlgorithm(args.Get("alg", "gcm"), sa);
    sa.extended_sequence_numbers = args.Has("esn");
    sa.replay_window = static_cast<uint32_t>(args.Number("replay", "32"));
    sa.lifetime.soft_bytes = args.Number("soft-bytes", "0");
    sa.lifetime.hard_bytes = args.Number("hard-bytes", "0");
    sa.lifetime.soft_add_seconds = args.Number("soft-add-seconds", "0");
    sa.lifetime.hard_add_seconds = args.Number("hard-add-seconds", "0");
    if (args.Has("encap")) {
      // --encap-peer-port: the port this host believes the peer uses; a
      // different real port makes the kernel report a new mapping.
      const uint16_t peer_port = static_cast<uint16_t>(args.Number("encap-peer-port", "4500"));
      sa.encap = outbound ? UdpEncap{4500, peer_port} : UdpEncap{peer_port, 4500};
    }
    operations.push_back(AddSaOp{sa});
  }
  if (!args.Has("no-policies")) {
    Selector selector = Selector::HostToHost(local, remote);
    if (mode == Mode::kTunnel && args.Has("local-net")) {
      args.Network("local-net", &selector.src, &selector.src_prefix);
      args.Network("remote-net", &selector.dst, &selector.dst_prefix);
    }
    operations.push_back(AddPolicyOp{MakePolicy(selector, Direction::kOut, mode, reqid, local, remote)});
    operations.push_back(
        AddPolicyOp{MakePolicy(Reverse(selector), Direction::kIn, mode, reqid, remote, local)});
    if (mode == Mode::kTunnel)
      operations.push_back(
          AddPolicyOp{MakePolicy(Reverse(selector), Direction::kFwd, mode, reqid, remote, local)});
  }
  for (const Status& status : glue->Apply(operations)) Check(status);
  return 0;
}

int Counters(const Args& args) {
  auto glue = OpenGlue();
  SaId id;
  id.dst = args.Address("dst");
  id.spi = static_cast<uint32_t>(args.Number("spi"));
  auto sa = glue->QuerySa(id);
  if (!sa.ok()) Fail(sa.error().ToString());
  const SaCounters& counters = sa.value().counters;
  std::string encap = "none";
  if (sa.value().encap)
    encap = "udp:" + std::to_string(sa.value().encap->src_port) + "->" +
            std::to_string(sa.value().encap->dst_port);
  std::printf("%s alg=%s mode=%s encap=%s replay=%u esn=%d bytes=%llu packets=%llu\n",
              id.ToString().c_str(), sa.value().algorithm.c_str(),
              sa.value().mode == Mode::kTunnel ? "tunnel" : "transport", encap.c_str(),
              sa.value().replay_window, sa.value().extended_sequence_numbers ? 1 : 0,
              static_cast<unsigned long long>(counters.bytes),
              static_cast<unsigned long long>(counters.packets));
  if (counters.packets < args.Number("min-packets", "0") ||
      counters.bytes < args.Number("min-bytes", "0")) {
    std::fprintf(stderr, "xfrm_tool: SA %s counted fewer packets/bytes than required\n",
                 id.ToString().c_str());
    return 1;
  }
  return 0;
}

int List() {
  auto glue = OpenGlue();
  auto owned = glue->ListOwned();
  if (!owned.ok()) Fail(owned.error().ToString());
  for (const SaInfo& sa : owned.value().sas)
    std::printf("sa %s src=%s reqid=0x%x alg=%s packets=%llu\n", sa.id.ToString().c_str(),
                sa.src.ToString().c_str(), sa.reqid, sa.algorithm.c_str(),
                static_cast<unsigned long long>(sa.counters.packets));
  for (const PolicyInfo& policy : owned.value().policies)
    std::printf("policy %s priority=0x%x index=%u templates=%zu\n",
                policy.params.id.ToString().c_str(), policy.params.priority, policy.index,
                policy.params.templates.size());
  return 0;
}

// Sends one UDP datagram; with a trap policy the send itself may fail
// (EAGAIN while the SA is being negotiated), which is expected here.
void SendUdp(const IpAddress& to, uint16_t port, size_t size, int fd = -1) {
  const bool own_socket = fd < 0;
  const int family = to.family == AddressFamily::kIpv4 ? AF_INET : AF_INET6;
  if (own_socket) fd = socket(family, SOCK_DGRAM, 0);
  if (fd < 0) Fail(std::string("socket: ") + std::strerror(errno));
  sockaddr_storage storage{};
  socklen_t length;
  if (family == AF_INET) {
    auto* in = reinterpret_cast<sockaddr_in*>(&storage);
    in->sin_family = AF_INET;
    in->sin_port = htons(port);
    std::memcpy(&in->sin_addr, to.bytes.data(), 4);
    length = sizeof(sockaddr_in);
  } else {
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&storage);
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(port);
    std::memcpy(&in6->sin6_addr, to.bytes.data(), 16);
    length = sizeof(sockaddr_in6);
  }
  std::vector<uint8_t> payload(size, 0x5a);
  (void)sendto(fd, payload.data(), payload.size(), 0, reinterpret_cast<sockaddr*>(&storage), length);
  if (own_socket) close(fd);
}

// Polls the glue's event descriptor until `accept` takes an event.
template <typename Predicate>
bool WaitForEvent(XfrmNetlink& glue, int timeout_ms, Predicate accept) {
  const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  while (Clock::now() < deadline) {
    pollfd descriptor{glue.event_fd(), POLLIN, 0};
    const int left = static_cast<int>(
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count());
    if (poll(&descriptor, 1, std::max(left, 1)) < 0 && errno != EINTR)
      Fail(std::string("poll: ") + std::strerror(errno));
    auto events = glue.ProcessEvents();
    if (!events.ok()) Fail(events.error().ToString());
    for (const KernelEvent& event : events.value())
      if (accept(event)) return true;
  }
  return false;
}

int Acquire(const Args& args) {
  auto glue = OpenGlue(/*events=*/true);
  const IpAddress local = args.Address("local");
  const IpAddress remote = args.Address("remote");
  const uint32_t reqid = kReqidBase + static_cast<uint32_t>(args.Number("reqid", "7"));
  // A trap: a protect policy whose template has no SA.
  PolicyParams trap = MakePolicy(Selector::HostToHost(local, remote), Direction::kOut,
                                 Mode::kTransport, reqid, local, remote);
  trap.id.selector.protocol = IPPROTO_UDP;
  trap.id.selector.dst_port = 4242;
  Check(glue->AddPolicy(trap));
  SendUdp(remote, 4242, 32);
  bool seen = WaitForEvent(*glue, static_cast<int>(args.Number("timeout-ms", "5000")),
                           [&](const KernelEvent& event) {
    const auto* acquire = std::get_if<AcquireEvent>(&event);
    if (acquire == nullptr) return false;
    std::printf("ACQUIRE %s policy_index=%u dir=%s reqid=0x%x outer %s -> %s\n",
                acquire->selector.ToString().c_str(), acquire->policy_index,
                DirectionName(acquire->policy_direction), acquire->templ.reqid,
                acquire->src.ToString().c_str(), acquire->dst.ToString().c_str());
    return acquire->templ.reqid == reqid && acquire->selector.dst == remote &&
           acquire->selector.dst_port == 4242 && acquire->dst == remote &&
           acquire->policy_direction == Direction::kOut;
  });
  Check(glue->DeletePolicy(trap.id));
  if (!seen) Fail("no matching ACQUIRE arrived");
  std::printf("PASS acquire\n");
  return 0;
}

int Expire(const Args& args) {
  auto glue = OpenGlue(/*events=*/true);
  const IpAddress remote = args.Address("remote");
  const uint32_t spi = static_cast<uint32_t>(args.Number("spi"));
  const bool hard = args.Has("hard");
  // Traffic through the SA, unless waiting for a time limit.
  if (!args.Has("no-traffic"))
    for (int i = 0; i < 20; ++i) SendUdp(remote, 4243, 200);
  bool seen = WaitForEvent(*glue, static_cast<int>(args.Number("timeout-ms", "5000")),
                           [&](const KernelEvent& event) {
    const auto* expire = std::get_if<ExpireEvent>(&event);
    if (expire == nullptr) return false;
    std::printf("EXPIRE %s hard=%d reqid=0x%x\n", expire->id.ToString().c_str(), expire->hard,
                expire->reqid);
    return expire->hard == hard && expire->id.spi == spi && expire->id.dst == remote;
  });
  if (!seen) Fail(std::string("no ") + (hard ? "hard" : "soft") + " EXPIRE for the SA arrived");
  if (hard) {
    // A hard expiry removes the SA from the kernel.
    auto sa = glue->QuerySa(SaId{remote, spi, kIpProtoEsp, std::nullopt});
    if (sa.ok() || sa.error().error_number != ESRCH) Fail("SA still present after hard EXPIRE");
  }
  std::printf("PASS %s expire\n", hard ? "hard" : "soft");
  return 0;
}

// Waits for the kernel to report that the peer of inbound SA X now sends
// from another port (RFC 3948 NAT mapping change).
int Mapping(const Args& args) {
  auto glue = OpenGlue(/*events=*/true);
  const uint32_t spi = static_cast<uint32_t>(args.Number("spi"));
  const IpAddress peer = args.Address("peer");
  const uint16_t old_port = static_cast<uint16_t>(args.Number("old-port"));
  const uint16_t new_port = static_cast<uint16_t>(args.Number("new-port"));
  std::printf("mapping watcher ready\n");
  std::fflush(stdout);
  bool seen = WaitForEvent(*glue, static_cast<int>(args.Number("timeout-ms", "10000")),
                           [&](const KernelEvent& event) {
    const auto* mapping = std::get_if<MappingEvent>(&event);
    if (mapping == nullptr) return false;
    std::printf("MAPPING %s reqid=0x%x %s:%u -> %s:%u\n", mapping->id.ToString().c_str(),
                mapping->reqid, mapping->old_src.ToString().c_str(), mapping->old_src_port,
                mapping->new_src.ToString().c_str(), mapping->new_src_port);
    return mapping->id.spi == spi && mapping->old_src_port == old_port &&
           mapping->new_src_port == new_port && mapping->new_src == peer;
  });
  if (!seen) Fail("no matching MAPPING event arrived");
  std::printf("PASS mapping\n");
  return 0;
}

uint64_t OutPackets(XfrmNetlink& glue, const SaId& id) {
  auto sa = glue.QuerySa(id);
  if (!sa.ok()) Fail(sa.error().ToString());
  return sa.value().counters.packets;
}

// The SA pair exists without global policies: only the socket carrying
// the per-socket policy may send through it.
int SocketPolicyCheck(const Args& args) {
  auto glue = OpenGlue();
  const IpAddress local = args.Address("local");
  const IpAddress remote = args.Address("remote");
  const uint32_t reqid = kReqidBase + static_cast<uint32_t>(args.Number("reqid", "1"));
  SaId out{remote, static_cast<uint32_t>(args.Number("spi-out")), kIpProtoEsp, std::nullopt};
  const int family = local.family == AddressFamily::kIpv4 ? AF_INET : AF_INET6;
  const int protected_socket = socket(family, SOCK_DGRAM, 0);
  const int plain_socket = socket(family, SOCK_DGRAM, 0);
  if (protected_socket < 0 || plain_socket < 0) Fail("socket failed");
  SocketPolicy policy;
  policy.direction = Direction::kOut;
  policy.action = PolicyAction::kProtect;
  PolicyTemplate templ;
  templ.mode = Mode::kTransport;
  templ.reqid = reqid;
  policy.templates.push_back(templ);
  Check(glue->SetSocketPolicy(protected_socket, policy));
  const uint64_t before = OutPackets(*glue, out);
  SendUdp(remote, 4244, 64, plain_socket);
  const uint64_t after_plain = OutPackets(*glue, out);
  SendUdp(remote, 4244, 64, protected_socket);
  SendUdp(remote, 4244, 64, protected_socket);
  const uint64_t after_protected = OutPackets(*glue, out);
  std::printf("socket policy: SA packets before=%llu after plain=%llu after protected=%llu\n",
              (unsigned long long)before, (unsigned long long)after_plain,
              (unsigned long long)after_protected);
  if (after_plain != before) Fail("a socket without the policy used the SA");
  if (after_protected != before + 2) Fail("the socket with the policy did not use the SA");
  // The bypass policy the IKE sockets get: that socket never uses ESP.
  Check(glue->SetSocketBypass(protected_socket));
  SendUdp(remote, 4244, 64, protected_socket);
  if (OutPackets(*glue, out) != after_protected) Fail("a bypass socket used the SA");
  close(protected_socket);
  close(plain_socket);
  std::printf("PASS socket policy\n");
  return 0;
}

sockaddr_storage SocketAddress(const IpAddress& address, uint16_t port, socklen_t* length) {
  sockaddr_storage storage{};
  if (address.family == AddressFamily::kIpv4) {
    auto* in = reinterpret_cast<sockaddr_in*>(&storage);
    in->sin_family = AF_INET;
    in->sin_port = htons(port);
    std::memcpy(&in->sin_addr, address.bytes.data(), 4);
    *length = sizeof(sockaddr_in);
  } else {
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&storage);
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(port);
    std::memcpy(&in6->sin6_addr, address.bytes.data(), 16);
    *length = sizeof(sockaddr_in6);
  }
  return storage;
}

uint8_t PatternByte(uint64_t offset) { return static_cast<uint8_t>(offset * 31 + 7); }

// Accepts one connection, checks the byte pattern, answers "OK".
int TcpServe(const Args& args) {
  const uint16_t port = static_cast<uint16_t>(args.Number("port"));
  const uint64_t expected = args.Number("bytes");
  const int listener = socket(AF_INET6, SOCK_STREAM, 0);
  int off = 0, on = 1;
  setsockopt(listener, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof(off));
  setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
  sockaddr_in6 any{};
  any.sin6_family = AF_INET6;
  any.sin6_port = htons(port);
  if (bind(listener, reinterpret_cast<sockaddr*>(&any), sizeof(any)) != 0 || listen(listener, 1) != 0)
    Fail(std::string("bind/listen: ") + std::strerror(errno));
  std::printf("listening\n");
  std::fflush(stdout);
  const int connection = accept(listener, nullptr, nullptr);
  if (connection < 0) Fail(std::string("accept: ") + std::strerror(errno));
  std::vector<uint8_t> buffer(65536);
  uint64_t total = 0;
  while (total < expected) {
    ssize_t got = read(connection, buffer.data(), buffer.size());
    if (got <= 0) Fail("connection ended after " + std::to_string(total) + " bytes");
    for (ssize_t i = 0; i < got; ++i)
      if (buffer[i] != PatternByte(total + i)) Fail("corrupted byte at offset " + std::to_string(total + i));
    total += got;
  }
  if (write(connection, "OK", 2) != 2) Fail("could not answer");
  close(connection);
  close(listener);
  std::printf("received %llu bytes intact\n", (unsigned long long)total);
  return 0;
}

int TcpSend(const Args& args) {
  const IpAddress to = args.Address("to");
  const uint16_t port = static_cast<uint16_t>(args.Number("port"));
  const uint64_t size = args.Number("bytes");
  socklen_t length;
  sockaddr_storage address = SocketAddress(to, port, &length);
  int fd = -1;
  const auto deadline = Clock::now() + std::chrono::seconds(10);
  while (true) {
    fd = socket(address.ss_family, SOCK_STREAM, 0);
    if (connect(fd, reinterpret_cast<sockaddr*>(&address), length) == 0) break;
    close(fd);
    if (Clock::now() > deadline) Fail(std::string("connect: ") + std::strerror(errno));
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  std::vector<uint8_t> chunk(16384);
  for (uint64_t sent = 0; sent < size;) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(chunk.size(), size - sent));
    for (size_t i = 0; i < n; ++i) chunk[i] = PatternByte(sent + i);
    ssize_t written = write(fd, chunk.data(), n);
    if (written <= 0) Fail(std::string("write: ") + std::strerror(errno));
    sent += written;
  }
  char answer[2] = {};
  if (read(fd, answer, 2) != 2 || std::memcmp(answer, "OK", 2) != 0) Fail("no OK from the server");
  close(fd);
  std::printf("sent %llu bytes, server confirmed\n", (unsigned long long)size);
  return 0;
}

// Holds a UDP port 4500 socket in ESP-in-UDP mode (what the daemon's NAT-T
// socket does), bypassing IPsec itself, for S seconds.
int EncapSocket(const Args& args) {
  auto glue = OpenGlue();
  const int fd = socket(AF_INET, SOCK_DGRAM, 0);
  sockaddr_in any{};
  any.sin_family = AF_INET;
  any.sin_port = htons(4500);
  if (bind(fd, reinterpret_cast<sockaddr*>(&any), sizeof(any)) != 0)
    Fail(std::string("bind 4500: ") + std::strerror(errno));
  Check(glue->SetSocketBypass(fd));
  Check(glue->EnableUdpEncap(fd));
  std::printf("encap socket ready\n");
  std::fflush(stdout);
  std::this_thread::sleep_for(std::chrono::seconds(args.Number("seconds")));
  close(fd);
  return 0;
}

// Installs N SA pairs (in + out) with their two policies each, then deletes
// them, timing both phases. --batch pair: one Apply per CHILD_SA (what the
// daemon does per negotiation); --batch all: one Apply for everything (a
// reconcile); --batch none: one call, one round trip per object.
int Bench(const Args& args) {
  auto glue = OpenGlue();
  const uint32_t count = static_cast<uint32_t>(args.Number("count"));
  const std::string batch = args.Get("batch", "pair");
  if (batch != "pair" && batch != "all" && batch != "none") Fail("--batch expects pair, all or none");
  // --only sa|policy: install just one kind, to see which one costs.
  const std::string only = args.Get("only", "both");
  const bool with_sas = only != "policy", with_policies = only != "sa";
  const IpAddress local = *IpAddress::Parse("192.0.2.1");
  auto peer = [](uint32_t i) {
    // Distinct peers in 198.18.0.0/15 (RFC 2544 benchmarking range); no
    // packet is ever sent to them.
    IpAddress address = *IpAddress::Parse("198.18.0.0");
    address.bytes[1] = static_cast<uint8_t>(18 + ((i >> 16) & 1));
    address.bytes[2] = static_cast<uint8_t>(i >> 8);
    address.bytes[3] = static_cast<uint8_t>(i);
    return address;
  };
  std::vector<std::vector<XfrmOperation>> installs(count), removals(count);
  for (uint32_t i = 0; i < count; ++i) {
    const IpAddress remote = peer(i);
    const uint32_t reqid = kReqidBase + 1 + (i % 0xfffe);
    for (int direction = 0; direction < 2; ++direction) {
      SaParams sa;
      sa.id.spi = 0x10000 + i * 2 + direction;
      sa.id.dst = direction == 0 ? remote : local;
      sa.src = direction == 0 ? local : remote;
      sa.reqid = reqid;
      SetAlgorithm("gcm", sa);
      if (!with_sas) continue;
      installs[i].push_back(AddSaOp{sa});
      removals[i].push_back(DeleteSaOp{sa.id});
    }
    Selector selector = Selector::HostToHost(local, remote);
    PolicyParams out = MakePolicy(selector, Direction::kOut, Mode::kTransport, reqid, local, remote);
    PolicyParams in = MakePolicy(Reverse(selector), Direction::kIn, Mode::kTransport, reqid, remote, local);
    if (!with_policies) continue;
    installs[i].push_back(AddPolicyOp{out});
    installs[i].push_back(AddPolicyOp{in});
    removals[i].insert(removals[i].begin(), {DeletePolicyOp{out.id}, DeletePolicyOp{in.id}});
  }
  auto run = [&](std::vector<std::vector<XfrmOperation>>& groups) {
    auto check_all = [](const std::vector<Status>& results) {
      for (const Status& status : results) Check(status);
    };
    if (batch == "all") {
      std::vector<XfrmOperation> all;
      for (auto& group : groups) all.insert(all.end(), group.begin(), group.end());
      const auto start = Clock::now();
      check_all(glue->Apply(all));
      return std::chrono::duration<double>(Clock::now() - start).count();
    }
    const auto start = Clock::now();
    for (auto& group : groups) {
      if (batch == "pair") {
        check_all(glue->Apply(group));
      } else {
        for (const XfrmOperation& op : group) check_all(glue->XfrmInterface::Apply({op}));
      }
    }
    return std::chrono::duration<double>(Clock::now() - start).count();
  };
  const double install_seconds = run(installs);
  auto owned = glue->ListOwned();
  if (!owned.ok()) Fail(owned.error().ToString());
  if (owned.value().sas.size() != (with_sas ? 2 * count : 0) ||
      owned.value().policies.size() != (with_policies ? 2 * count : 0))
    Fail("kernel lists " + std::to_string(owned.value().sas.size()) + " SAs and " +
         std::to_string(owned.value().policies.size()) + " policies, expected " +
         std::to_string(2 * count) + " of each");
  const double delete_seconds = run(removals);
  owned = glue->ListOwned();
  if (!owned.ok() || !owned.value().sas.empty() || !owned.value().policies.empty())
    Fail("objects left after deleting");
  const double objects = count * ((with_sas ? 2.0 : 0.0) + (with_policies ? 2.0 : 0.0));
  std::printf(
      "bench N=%u SA pairs (+2 policies each), objects=%s, batch=%s: install %.3f s (%.0f pairs/s, %.0f "
      "objects/s), delete %.3f s (%.0f pairs/s)\n",
      count, only.c_str(), batch.c_str(), install_seconds, count / install_seconds, objects / install_seconds,
      delete_seconds, count / delete_seconds);
  return 0;
}

}  // namespace
}  // namespace kernel_glue

int main(int argc, char** argv) {
  using namespace kernel_glue;
  if (argc < 2) Fail("usage: xfrm_tool COMMAND [--option value]... (see the source header)");
  const std::string command = argv[1];
  Args args(argc, argv);
  if (command == "sa-pair") return SaPair(args);
  if (command == "counters") return Counters(args);
  if (command == "list") return List();
  if (command == "flush") {
    auto glue = OpenGlue();
    Check(glue->FlushOwned());
    return 0;
  }
  if (command == "acquire") return Acquire(args);
  if (command == "expire") return Expire(args);
  if (command == "socket-policy") return SocketPolicyCheck(args);
  if (command == "tcp-serve") return TcpServe(args);
  if (command == "tcp-send") return TcpSend(args);
  if (command == "bench") return Bench(args);
  if (command == "encap-socket") return EncapSocket(args);
  if (command == "mapping") return Mapping(args);
  if (command == "send-udp") {
    SendUdp(args.Address("to"), static_cast<uint16_t>(args.Number("port")), 100);
    return 0;
  }
  Fail("unknown command " + command);
}
