// Handshake benchmark (a binary, not a test): full IKE_SA_INIT + IKE_AUTH +
// first CHILD_SA between two in-process SaManagers, next to the pure Botan
// cost of the same public-key work measured in the same run, and the heap
// bytes held per established IKE SA with one CHILD_SA.
//
//   bazel run -c opt //tests/bench/sa:handshake_bench -- [handshakes] [sas]
#include <malloc.h>
#include <time.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <string>

#include <botan/curve25519.h>
#include <botan/ed25519.h>
#include <botan/pubkey.h>

#include "ike/crypto/random.h"
#include "ike/sa/engine.h"
#include "tests/sa/fixtures.h"

namespace ike::sa::testing {
namespace {

// CPU time of this process, not wall time: the figures then do not depend
// on what else the machine runs (both the handshakes and the crypto bound
// are single-threaded, so the ratio compares like with like).
struct Clock {
  using duration = std::chrono::nanoseconds;
  using time_point = std::chrono::time_point<Clock, duration>;
  static time_point now() {
    timespec ts{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return time_point(duration(int64_t(ts.tv_sec) * 1000000000 + ts.tv_nsec));
  }
};

class CounterSpis : public SpiAllocator {
 public:
  explicit CounterSpis(uint32_t base) : next_(base) {}
  uint32_t Allocate(const policy::IpAddress&, const policy::IpAddress&) override {
    return next_++;
  }
  void Release(const policy::IpAddress&, uint32_t) override {}

 private:
  uint32_t next_;
};

enum class Method { kPsk, kNull, kEd25519 };
const char* MethodName(Method m) {
  switch (m) {
    case Method::kPsk: return "PSK";
    case Method::kNull: return "NULL";
    case Method::kEd25519: return "Ed25519 raw keys";
  }
  return "?";
}

// X25519 for IKE, AES-GCM-256 for IKE and ESP.
policy::ProposalSet X25519Gcm(const std::string& name, bool esp) {
  policy::ProposalSet set;
  set.name = name;
  policy::Proposal p;
  p.encryption = {{wire::EncrId::kAesGcm16, 256}};
  if (!esp) {
    p.prf = {wire::PrfId::kHmacSha2_256};
    p.ke = {wire::KeGroup::kCurve25519};
  }
  set.proposals = {p};
  return set;
}

struct Pair {
  crypto::DeterministicRandomSource random_a{crypto::ByteView(
      reinterpret_cast<const uint8_t*>("bench a"), 7)};
  crypto::DeterministicRandomSource random_b{crypto::ByteView(
      reinterpret_cast<const uint8_t*>("bench b"), 7)};
  CounterSpis spis_a{0x10000000}, spis_b{0x20000000};
  std::unique_ptr<SaManager> a, b;
  Instant now{std::chrono::hours(1)};
  uint32_t next_host = 1;

  explicit Pair(Method m) {
    const std::string b_addr = "10.0.0.2";
    PolicyBuilder pa, pb;
    for (PolicyBuilder* p : {&pa, &pb}) {
      p->Proposals(X25519Gcm("ike", false)).Proposals(X25519Gcm("esp", true));
    }
    CredentialStore ca, cb;
    policy::PadEntry to_b, to_a;
    if (m == Method::kPsk) {
      pa.Identity("me", policy::Identity::Fqdn("a.example")).Secret("k", "x");
      pb.Identity("me", policy::Identity::Fqdn("b.example")).Secret("k", "x");
      to_b = PskEntry("peer", "b.example", "k", b_addr, "me");
      to_a = PskEntry("peer", "a.example", "k", "10.1.0.0/16", "me");
      to_a.remote_ts = {{*policy::IpRange::Parse("10.1.0.0/16"), 0, {}}};
    } else {
      auto kind = m == Method::kNull ? policy::CredentialKind::kNone
                                     : policy::CredentialKind::kRawKey;
      auto id = m == Method::kNull ? policy::Identity::Null()
                                   : policy::Identity::Fqdn("host.example");
      pa.Identity("me", id, kind);
      pb.Identity("me", id, kind);
      to_b = BtnsEntry("peer", "10.0.0.0/8", "me");
      to_a = BtnsEntry("peer", "10.0.0.0/8", "me");
      if (m == Method::kEd25519) {
        ca.local["me"].private_key = MakeEd25519("bench key a");
        cb.local["me"].private_key = MakeEd25519("bench key b");
      }
    }
    auto ea = ProtectEntry("out", "10.1.0.0/16", b_addr, "peer",
                           policy::IpsecMode::kTransport, true);
    auto eb = ProtectEntry("in", b_addr, "10.1.0.0/16", "peer",
                           policy::IpsecMode::kTransport, true);
    for (auto* e : {&ea, &eb}) {
      e->protect.ike_proposals = "ike";
      e->protect.esp_proposals = "esp";
    }
    pa.Pad(to_b).Spd(ea);
    pb.Pad(to_a).Spd(eb);
    EngineSettings settings;
    settings.retransmit_initial = Duration(600000);  // timers never fire here
    settings.cookie_threshold = 1u << 30;
    a = std::make_unique<SaManager>(settings, pa.Build(), ca, random_a, spis_a);
    b = std::make_unique<SaManager>(settings, pb.Build(), cb, random_b, spis_b);
  }

  // One complete handshake from a fresh local address; false on failure.
  bool Handshake() {
    uint32_t host = next_host++;
    InitiateRequest r;
    r.spd_entry = "out";
    r.remote = Endpoint{*policy::IpAddress::Parse("10.0.0.2"), 500};
    r.local = Endpoint{policy::IpAddress::V4(0x0a010000u + host), 500};
    std::deque<std::pair<bool, DatagramReceived>> queue;  // true: to b
    bool up = false;
    auto absorb = [&](bool from_a, Actions& acts) {
      for (auto& act : acts) {
        if (auto* s = std::get_if<SendDatagram>(&act)) {
          queue.push_back({from_a, DatagramReceived{s->remote, s->local,
                                                    std::move(s->bytes)}});
        } else if (std::holds_alternative<ChildSaUp>(act) && from_a) {
          up = true;
        }
      }
      acts.clear();
    };
    Actions acts;
    a->Handle(r, now, acts);
    absorb(true, acts);
    while (!queue.empty()) {
      auto [to_b, d] = std::move(queue.front());
      queue.pop_front();
      (to_b ? b : a)->Handle(d, now, acts);
      absorb(!to_b, acts);
    }
    return up;
  }
};

// The public-key work of one handshake done directly with Botan: two X25519
// key pairs and agreements, and for signatures two signs and two verifies.
double CryptoBoundPerSecond(Method m, int rounds) {
  crypto::DeterministicRandomSource random(
      crypto::ByteView(reinterpret_cast<const uint8_t*>("bound"), 5));
  auto& rng = random.AsBotan();
  Botan::Ed25519_PrivateKey signer(rng);
  std::vector<uint8_t> message(600, 0x5a);  // about a signed-octets' length
  auto start = Clock::now();
  for (int i = 0; i < rounds; ++i) {
    Botan::Curve25519_PrivateKey ka(rng), kb(rng);
    Botan::PK_Key_Agreement agree_a(ka, rng, "Raw"), agree_b(kb, rng, "Raw");
    auto s1 = agree_a.derive_key(32, kb.public_value());
    auto s2 = agree_b.derive_key(32, ka.public_value());
    if (s1.length() != s2.length()) std::abort();
    if (m == Method::kEd25519) {
      for (int side = 0; side < 2; ++side) {
        Botan::PK_Signer sign(signer, rng, "Pure");
        auto sig = sign.sign_message(message, rng);
        Botan::PK_Verifier verify(signer, "Pure");
        if (!verify.verify_message(message, sig)) std::abort();
      }
    }
  }
  double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return rounds / seconds;
}

void RunThroughput(Method m, int handshakes) {
  Pair pair(m);
  for (int i = 0; i < 50; ++i) pair.Handshake();  // warm-up
  auto start = Clock::now();
  int ok = 0;
  for (int i = 0; i < handshakes; ++i) ok += pair.Handshake();
  double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  double rate = ok / seconds;
  double bound = CryptoBoundPerSecond(m, handshakes);
  std::printf(
      "%-17s %6d handshakes  %8.0f /s   crypto bound %8.0f /s   ratio %5.1f %%%s\n",
      MethodName(m), ok, rate, bound, 100.0 * rate / bound,
      ok == handshakes ? "" : "  (SOME FAILED)");
}

void RunMemory(Method m, int sas) {
  Pair pair(m);
  pair.Handshake();  // first-use allocations (tables, Botan objects)
  malloc_trim(0);
  size_t before = mallinfo2().uordblks;
  int ok = 0;
  for (int i = 0; i < sas; ++i) ok += pair.Handshake();
  size_t after = mallinfo2().uordblks;
  double per_pair = double(after - before) / ok;
  std::printf(
      "%-17s %7d SAs: %zu IKE SAs on each side, %.0f bytes per handshake "
      "(both sides) = %.0f bytes per IKE SA with one CHILD_SA\n",
      MethodName(m), ok, pair.b->ike_sa_count(), per_pair, per_pair / 2);
}

}  // namespace
}  // namespace ike::sa::testing

int main(int argc, char** argv) {
  using namespace ike::sa::testing;
  int handshakes = argc > 1 ? std::atoi(argv[1]) : 2000;
  int sas = argc > 2 ? std::atoi(argv[2]) : 10000;
  std::printf("handshakes: IKE_SA_INIT + IKE_AUTH + CHILD_SA, X25519, "
              "AES-GCM-256, one thread, in process, per CPU second\n");
  for (Method m : {Method::kPsk, Method::kNull, Method::kEd25519})
    RunThroughput(m, handshakes);
  std::printf("memory (mallinfo2 uordblks delta):\n");
  for (Method m : {Method::kPsk, Method::kNull, Method::kEd25519})
    RunMemory(m, sas);
  if (argc > 3) RunMemory(Method::kNull, std::atoi(argv[3]));
  return 0;
}
