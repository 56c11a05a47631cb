// Deterministic simulation of many SaManagers exchanging datagrams in
// memory: a fake clock, seeded randomness, and injectable loss,
// duplication, reordering, delay and clock jumps. Each node executes its
// actions against an in-memory SAD/SPD so tests can check what the kernel
// would hold.
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "ike/crypto/random.h"
#include "ike/policy/snapshot.h"
#include "ike/sa/engine.h"

namespace ike::sa::testing {

// Hands out increasing SPIs and tracks which are outstanding.
class CountingSpiAllocator : public SpiAllocator {
 public:
  explicit CountingSpiAllocator(uint32_t base) : next_(base) {}
  uint32_t Allocate(const policy::IpAddress&, const policy::IpAddress&) override {
    uint32_t spi = next_++;
    outstanding_.insert(spi);
    return spi;
  }
  void Release(const policy::IpAddress&, uint32_t spi) override {
    outstanding_.erase(spi);
  }
  // An installed inbound SA consumes the SPI; its deletion frees it.
  void Consumed(uint32_t spi) { outstanding_.erase(spi); }
  size_t outstanding() const { return outstanding_.size(); }

 private:
  uint32_t next_;
  std::set<uint32_t> outstanding_;
};

struct SadKey {
  policy::Uint128 destination;
  uint32_t spi;
  auto operator<=>(const SadKey&) const = default;
};

struct Node {
  std::string name;
  policy::IpAddress address;
  std::unique_ptr<crypto::DeterministicRandomSource> random;
  std::unique_ptr<CountingSpiAllocator> spis;
  std::unique_ptr<SaManager> manager;
  std::map<TimerId, Instant> timers;
  // What the kernel would hold.
  std::map<SadKey, InstallChildSa> sad;
  std::vector<InstallPolicy> spd;
  // Everything reported, in order.
  std::vector<IkeSaUp> ike_up;
  std::vector<IkeSaDown> ike_down;
  std::vector<ChildSaUp> child_up;
  std::vector<ChildSaDown> child_down;
  std::vector<Log> logs;
  std::vector<SignRequest> sign_requests;  // answered by the test
  std::vector<SendDatagram> sent;
  std::vector<ArmTimer> armed;
  size_t errors = 0;  // actions that made no sense (deleting unknown SAs)
  std::vector<std::string> error_texts;
  // The SAD changes in order ("+in 3221225472 reqid 1", "-out ..."), and
  // the order in which the SAs now present were installed (the kernel
  // sends on the newest outbound SA of a reqid).
  std::vector<std::string> sad_trace;
  std::map<SadKey, uint64_t> install_order;
  // Inbound SPIs removed because a rekey replaced them (ChildSaDown
  // kRekeyed): the peer must no longer be sending on them.
  std::set<uint32_t> retired_inbound;
  // Moments where traffic of a live CHILD_SA had no SA to use (see
  // Simulation::CheckContinuity).
  std::vector<std::string> continuity_gaps;

  bool Logged(FailureReason r) const {
    for (const auto& l : logs)
      if (l.reason == r) return true;
    return false;
  }
  size_t InboundCount() const {
    size_t n = 0;
    for (const auto& [k, v] : sad)
      n += v.direction == SaDirection::kInbound;
    return n;
  }
  size_t OutboundCount() const { return sad.size() - InboundCount(); }
};

struct Faults {
  double loss = 0;         // probability a datagram is dropped
  double duplicate = 0;    // probability it is delivered twice
  Duration min_delay{10};  // one-way delay range (uniform): reordering
  Duration max_delay{10};
};

struct Datagram {
  Instant deliver_at;
  uint64_t sequence;
  std::string from, to;
  DatagramReceived event;
};

// A NAT in front of node `inside`: what it sends to other nodes leaves
// from `public_address`, source port 500 as `port_500` and 4500 as
// `port_4500`; what is sent to `public_address` on those ports reaches it
// on its own address and ports (other ports: dropped, no mapping). Change
// the fields to model a NAT that remaps or renumbers; datagrams already in
// flight keep the addresses they had.
struct Nat {
  std::string inside;
  policy::IpAddress public_address;
  uint16_t port_500 = 31000;
  uint16_t port_4500 = 31001;
};

class Simulation {
 public:
  explicit Simulation(uint64_t seed) : rng_(seed) {}

  Node& AddNode(const std::string& name, const std::string& address,
                policy::PolicySnapshotPtr policy, CredentialStore creds = {},
                EngineSettings settings = {});

  Node& node(const std::string& name) { return *nodes_.at(name); }
  Instant now() const { return now_; }

  // Feeds one event to a node and executes its actions.
  void Feed(Node& n, const Event& e);

  // Runs deliveries and timers until nothing is left before `until`.
  void RunFor(Duration d);
  // Jumps the clock (as after a suspend) without delivering anything first.
  void JumpClock(Duration d) { now_ += d; }

  Faults faults;
  // Return true to drop this datagram (targeted loss), after `faults`.
  std::function<bool(const Datagram&)> drop_if;
  std::optional<Nat> nat;
  // Inspect/alter datagrams in flight (e.g. corrupt), before delivery.
  std::function<void(Datagram&)> tamper;
  size_t delivered = 0, dropped = 0;

  // After every event: each reqid with policies has an inbound and an
  // outbound SA on its node, no node still sends on an SA that its peer
  // removed as replaced by a rekey, and no node sends on a rekey's new SA
  // (its newest outbound one while an older one exists) that its peer has
  // not installed yet. Violations go to Node::continuity_gaps.
  void CheckContinuity();

 private:
  void Execute(Node& n, Actions& actions);
  bool NextEvent(Instant limit);

  std::mt19937_64 rng_;
  Instant now_{std::chrono::hours(1)};
  uint64_t sequence_ = 0;
  uint64_t install_sequence_ = 0;
  uint64_t events_ = 0;
  std::map<std::string, std::unique_ptr<Node>> nodes_;
  std::vector<Datagram> in_flight_;
};

// Checks that two nodes agree on every CHILD_SA between them: each outbound
// SA of one is an inbound SA of the other with the same keys. Returns a
// description of the first mismatch, empty when consistent.
std::string CheckPairConsistent(const Node& a, const Node& b);

}  // namespace ike::sa::testing
