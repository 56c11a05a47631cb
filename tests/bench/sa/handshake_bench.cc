// Handshake benchmark (a binary, not a test): full IKE_SA_INIT + IKE_AUTH +
// first CHILD_SA between two in-process SaManagers, next to the pure Botan
// cost of the same public-key work measured in the same run, and the heap
// bytes held per established IKE SA with one CHILD_SA.
//
//   bazel run -c opt //tests/bench/sa:handshake_bench -- [handshakes] [sas]
#include <malloc.h>
#include <sys/resource.h>
#include <time.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <optional>
#include <string>

#include <botan/aead.h>
#include <botan/curve25519.h>
#include <botan/ed25519.h>
#include <botan/hash.h>
#include <botan/mac.h>
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

// What one handshake sent: the four datagram sizes of IKE_SA_INIT and
// IKE_AUTH (request, response each), and the ID payload bodies' length.
struct HandshakeShape {
  size_t init_request = 0, init_response = 0;
  size_t auth_request = 0, auth_response = 0;
  size_t id_body = 0;
};

const char* ProfileName(Method m) {
  switch (m) {
    case Method::kPsk: return "psk";
    case Method::kNull: return "null";
    case Method::kEd25519: return "ed25519";
  }
  return "?";
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
  Method method;
  std::vector<size_t> sizes;  // of the last handshake's datagrams, in order
  // Reused across handshakes, as a daemon's event loop would.
  Actions acts;
  std::deque<std::pair<bool, DatagramReceived>> queue;  // true: to b

  explicit Pair(Method m) : method(m) {
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
    bool up = false;
    sizes.clear();
    auto absorb = [&](bool from_a, Actions& acts) {
      for (auto& act : acts) {
        if (auto* s = std::get_if<SendDatagram>(&act)) {
          sizes.push_back(s->bytes.size());
          queue.push_back({from_a, DatagramReceived{s->remote, s->local,
                                                    std::move(s->bytes)}});
        } else if (std::holds_alternative<ChildSaUp>(act) && from_a) {
          up = true;
        }
      }
      acts.clear();
    };
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

  // The sizes the full-crypto bound works on, from the last handshake.
  HandshakeShape Shape() const {
    if (sizes.size() != 4) {
      std::fprintf(stderr, "expected 4 datagrams per handshake, saw %zu\n",
                   sizes.size());
      std::exit(1);
    }
    HandshakeShape shape{sizes[0], sizes[1], sizes[2], sizes[3], 0};
    // ID payload bodies (type, reserved, data) as Pair configures them.
    shape.id_body = 4 + (method == Method::kPsk    ? std::strlen("a.example")
                         : method == Method::kNull ? 0
                                                   : std::strlen("host.example"));
    return shape;
  }
};

constexpr size_t kIkeHeader = 28, kSkHeader = 4, kGcmIv = 8, kGcmIcv = 16;

// The symmetric work of one handshake (both peers), done with raw Botan
// objects created once and re-keyed per use, as a minimal program would:
//   - random bytes: two IKE SPIs, two 32-byte nonces, two IV starts (the
//     X25519 private keys come from the same generator, in the key work);
//   - NAT detection: each peer hashes two notifies it sends and two it
//     checks, SHA-1 over SPIi | SPIr | IPv4 | port (8 hashes);
//   - each peer: SKEYSEED = prf(Ni | Nr, g^ir) and prf+ over
//     Ni | Nr | SPIi | SPIr for SK_d, SK_ei, SK_er (with salt), SK_pi, SK_pr;
//   - IKE_AUTH request and response: AES-256-GCM encryption by the sender
//     and decryption (tag check) by the receiver, each with its own key
//     schedule, over the measured message sizes (header + SK header as AAD);
//   - AUTH: each peer computes its own and checks the peer's, each with
//     MACedID = prf(SK_p, ID') over signed octets of the measured
//     IKE_SA_INIT size + nonce + MACedID; for PSK and NULL the shared-key
//     formula prf(prf(key, "Key Pad for IKEv2"), octets) (the Ed25519 sign
//     and verify of those octets are in the public-key work);
//   - each peer: CHILD_SA KEYMAT = prf+(SK_d, Ni | Nr) for two AES-256-GCM
//     ESP keys with salt.
class SymmetricWork {
 public:
  SymmetricWork(Method m, const HandshakeShape& shape)
      : method_(m), shape_(shape) {}

  // `shared` is the X25519 result; `octets_i` / `octets_r` receive the
  // signed octets for the public-key part to sign.
  void Run(Botan::RandomNumberGenerator& rng, const uint8_t* shared,
           std::vector<uint8_t>& octets_i, std::vector<uint8_t>& octets_r) {
    uint8_t spi_i[8], spi_r[8], ni[32], nr[32];
    rng.randomize(spi_i, 8);
    rng.randomize(spi_r, 8);
    rng.randomize(ni, 32);
    rng.randomize(nr, 32);
    uint8_t iv_start[8];
    rng.randomize(iv_start, 8);  // initiator's SK IV counter
    rng.randomize(iv_start, 8);  // responder's
    for (int i = 0; i < 8; ++i) {
      sha1_->update(spi_i, 8);
      sha1_->update(spi_r, 8);
      sha1_->update(addr_, 6);
      sha1_->final(digest_);
    }
    std::vector<uint8_t> nonces(ni, ni + 32);
    nonces.insert(nonces.end(), nr, nr + 32);
    std::vector<uint8_t> seed = nonces;
    seed.insert(seed.end(), spi_i, spi_i + 8);
    seed.insert(seed.end(), spi_r, spi_r + 8);
    Botan::secure_vector<uint8_t> keys;
    for (int side = 0; side < 2; ++side) {
      auto skeyseed = Prf(nonces.data(), nonces.size(), shared, 32);
      keys = PrfPlus(skeyseed, seed, 3 * 32 + 2 * 36);
    }
    const uint8_t* sk_d = keys.data();
    const uint8_t* sk_ei = keys.data() + 32;
    const uint8_t* sk_er = keys.data() + 68;
    const uint8_t* sk_pi = keys.data() + 104;
    const uint8_t* sk_pr = keys.data() + 136;

    Aead(sk_ei, shape_.auth_request);
    Aead(sk_er, shape_.auth_response);

    Octets(shape_.init_request, nr, sk_pi, octets_i);
    Octets(shape_.init_response, ni, sk_pr, octets_r);
    if (method_ != Method::kEd25519) {
      static const char kPad[] = "Key Pad for IKEv2";
      for (int check = 0; check < 2; ++check) {
        for (auto [key, octets] : {std::pair{sk_pi, &octets_i},
                                   std::pair{sk_pr, &octets_r}}) {
          const uint8_t* k = method_ == Method::kPsk ? psk_ : key;
          size_t k_len = method_ == Method::kPsk ? 1 : 32;
          auto inner = Prf(k, k_len, reinterpret_cast<const uint8_t*>(kPad),
                           sizeof(kPad) - 1);
          auto auth = Prf(inner.data(), inner.size(), octets->data(),
                          octets->size());
          if (auth.size() != 32) std::abort();
        }
      }
    }
    // The signer built the octets above; the checker builds them again
    // (one MACedID each).
    Octets(shape_.init_request, nr, sk_pi, octets_i);
    Octets(shape_.init_response, ni, sk_pr, octets_r);
    for (int side = 0; side < 2; ++side) {
      auto keymat = PrfPlus(Botan::secure_vector<uint8_t>(sk_d, sk_d + 32),
                            nonces, 2 * 36);
      if (keymat.size() != 72) std::abort();
    }
  }

 private:
  Botan::secure_vector<uint8_t> Prf(const uint8_t* key, size_t key_len,
                                    const uint8_t* data, size_t len) {
    hmac_->set_key(key, key_len);
    hmac_->update(data, len);
    return hmac_->final();
  }
  Botan::secure_vector<uint8_t> PrfPlus(
      const Botan::secure_vector<uint8_t>& key,
      const std::vector<uint8_t>& seed, size_t length) {
    Botan::secure_vector<uint8_t> out, block;
    hmac_->set_key(key);
    for (uint8_t n = 1; out.size() < length; ++n) {
      hmac_->update(block);
      hmac_->update(seed);
      hmac_->update(n);
      block = hmac_->final();
      out.insert(out.end(), block.begin(), block.end());
    }
    out.resize(length);
    return out;
  }
  // Sender encrypts, receiver decrypts, each with its own key schedule.
  void Aead(const uint8_t* key_and_salt, size_t datagram) {
    const size_t prefix = kIkeHeader + kSkHeader;
    const size_t plain = datagram - prefix - kGcmIv - kGcmIcv;  // + pad len
    std::vector<uint8_t> aad(prefix, 0x21);
    Botan::secure_vector<uint8_t> buf(plain, 0x42);
    uint8_t nonce[12] = {};
    std::copy(key_and_salt + 32, key_and_salt + 36, nonce);
    enc_->set_key(key_and_salt, 32);
    enc_->set_associated_data(aad.data(), aad.size());
    enc_->start(nonce, 12);
    enc_->finish(buf);
    dec_->set_key(key_and_salt, 32);
    dec_->set_associated_data(aad.data(), aad.size());
    dec_->start(nonce, 12);
    dec_->finish(buf);  // throws if the tag does not verify
  }
  // RealMessage | peer nonce | prf(SK_p, ID').
  void Octets(size_t message, const uint8_t* nonce, const uint8_t* sk_p,
              std::vector<uint8_t>& out) {
    std::vector<uint8_t> id(shape_.id_body, 0x02);
    auto maced = Prf(sk_p, 32, id.data(), id.size());
    out.assign(message, 0x33);
    out.insert(out.end(), nonce, nonce + 32);
    out.insert(out.end(), maced.begin(), maced.end());
  }

  Method method_;
  HandshakeShape shape_;
  std::unique_ptr<Botan::MessageAuthenticationCode> hmac_ =
      Botan::MessageAuthenticationCode::create_or_throw("HMAC(SHA-256)");
  std::unique_ptr<Botan::AEAD_Mode> enc_ =
      Botan::AEAD_Mode::create_or_throw("AES-256/GCM(16)", Botan::ENCRYPTION);
  std::unique_ptr<Botan::AEAD_Mode> dec_ =
      Botan::AEAD_Mode::create_or_throw("AES-256/GCM(16)", Botan::DECRYPTION);
  std::unique_ptr<Botan::HashFunction> sha1_ =
      Botan::HashFunction::create_or_throw("SHA-1");
  const uint8_t addr_[6] = {10, 0, 0, 2, 1, 244};
  const uint8_t psk_[1] = {'x'};
  uint8_t digest_[20] = {};
};

// The public-key work of one handshake done directly with Botan: two X25519
// key pairs and agreements, and for signatures two signs and two verifies.
// With a shape, also the symmetric work above: the full-crypto bound.
class CryptoBound {
 public:
  CryptoBound(Method m, const HandshakeShape* shape) : method_(m) {
    if (shape) symmetric_.emplace(m, *shape);
  }

  // CPU seconds for `rounds` handshakes' worth of crypto.
  double Seconds(int rounds) {
    auto start = Clock::now();
    for (int i = 0; i < rounds; ++i) {
      Botan::Curve25519_PrivateKey ka(rng_), kb(rng_);
      Botan::PK_Key_Agreement agree_a(ka, rng_, "Raw"),
          agree_b(kb, rng_, "Raw");
      auto s1 = agree_a.derive_key(32, kb.public_value());
      auto s2 = agree_b.derive_key(32, ka.public_value());
      if (s1.length() != s2.length()) std::abort();
      if (symmetric_) symmetric_->Run(rng_, s1.begin(), octets_i_, octets_r_);
      if (method_ == Method::kEd25519) {
        for (auto* octets : {&octets_i_, &octets_r_}) {
          Botan::PK_Signer sign(signer_, rng_, "Pure");
          auto sig = sign.sign_message(*octets, rng_);
          Botan::PK_Verifier verify(signer_, "Pure");
          if (!verify.verify_message(*octets, sig)) std::abort();
        }
      }
    }
    return std::chrono::duration<double>(Clock::now() - start).count();
  }

 private:
  Method method_;
  crypto::DeterministicRandomSource random_{
      crypto::ByteView(reinterpret_cast<const uint8_t*>("bound"), 5)};
  Botan::RandomNumberGenerator& rng_ = random_.AsBotan();
  Botan::Ed25519_PrivateKey signer_{rng_};
  std::optional<SymmetricWork> symmetric_;
  // Without the symmetric work: about a signed-octets' length.
  std::vector<uint8_t> octets_i_ = std::vector<uint8_t>(600, 0x5a);
  std::vector<uint8_t> octets_r_ = std::vector<uint8_t>(600, 0x5a);
};

long MinorFaults() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_minflt;
}

void RunThroughput(Method m, int handshakes) {
  // Every method starts on the same heap: one that already held as many
  // SAs and released them, as a daemon's does once SAs replace SAs. On a
  // fresh heap the first method measured would alone pay the page faults
  // of growing it (about 10 % of its CPU time here, two faults per
  // handshake), which made the order of the methods show in the ratios.
  {
    Pair warm(m);
    for (int i = 0; i < handshakes + 50; ++i) warm.Handshake();
  }
  Pair pair(m);
  for (int i = 0; i < 50; ++i) pair.Handshake();  // warm-up
  HandshakeShape shape = pair.Shape();
  CryptoBound pk_only(m, nullptr), full(m, &shape);
  pk_only.Seconds(50);
  full.Seconds(50);
  // Interleaved slices, so that the handshakes and both bounds see the
  // same load on a shared machine.
  constexpr int kSlices = 20;
  double hs_seconds = 0, pk_seconds = 0, full_seconds = 0;
  int ok = 0, done = 0;
  long faults = 0;
  for (int slice = 0; slice < kSlices; ++slice) {
    const int n = (handshakes - done) / (kSlices - slice);
    const long faults_before = MinorFaults();
    auto start = Clock::now();
    for (int i = 0; i < n; ++i) ok += pair.Handshake();
    hs_seconds += std::chrono::duration<double>(Clock::now() - start).count();
    faults += MinorFaults() - faults_before;
    pk_seconds += pk_only.Seconds(n);
    full_seconds += full.Seconds(n);
    done += n;
  }
  double rate = ok / hs_seconds;
  double pk_bound = done / pk_seconds, full_bound = done / full_seconds;
  std::printf(
      "%-17s %5d handshakes %6.0f /s   public-key bound %6.0f /s = %5.1f %%"
      "   full-crypto bound %6.0f /s = %5.1f %%   %.2f page faults per "
      "handshake%s\n",
      MethodName(m), ok, rate, pk_bound, 100.0 * rate / pk_bound, full_bound,
      100.0 * rate / full_bound, double(faults) / done,
      ok == done ? "" : "  (SOME FAILED)");
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
  // For a profiler: only the handshakes of one method, or with "bound-"
  // before the method only its full-crypto bound, nothing else (under
  // callgrind the two give comparable instruction counts).
  if (const char* only = std::getenv("HANDSHAKE_BENCH_ONLY")) {
    for (Method m : {Method::kPsk, Method::kNull, Method::kEd25519}) {
      const std::string name = ProfileName(m);
      if (only == "bound-" + name) {
        Pair pair(m);
        pair.Handshake();
        HandshakeShape shape = pair.Shape();
        CryptoBound(m, &shape).Seconds(handshakes);
        std::printf("%s: full-crypto bound of %d handshakes\n",
                    MethodName(m), handshakes);
        return 0;
      }
      if (only != name) continue;
      Pair pair(m);
      int ok = 0;
      for (int i = 0; i < handshakes; ++i) ok += pair.Handshake();
      std::printf("%s: %d of %d handshakes\n", MethodName(m), ok, handshakes);
      return ok == handshakes ? 0 : 1;
    }
    std::fprintf(stderr,
                 "HANDSHAKE_BENCH_ONLY: psk, null or ed25519, or bound-psk, "
                 "bound-null or bound-ed25519\n");
    return 2;
  }
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
