// Two simulated peers, "a" at kA and "b" at kB: TwoPeers before any
// exchange; EstablishedPair once they have brought up their IKE SA and the
// CHILD_SA of SPD entry "a-b" (a initiated) within the first simulated
// second, the starting point of the post-handshake tests.
#pragma once

#include <cstdint>
#include <utility>

#include "tests/sa/fixtures.h"
#include "tests/sa/sim.h"

namespace ike::sa::testing {

// What one simulated peer starts with.
struct PeerConfig {
  policy::PolicySnapshotPtr policy;
  CredentialStore credentials = {};
  EngineSettings settings = {};
};

// Two simulated peers, "a" at kA and "b" at kB, before any exchange. Tests
// name the parts with `auto& [sim, a, b] = peers;`.
struct TwoPeers {
  TwoPeers(uint64_t seed, PeerConfig a_config, PeerConfig b_config)
      : sim(seed),
        a(sim.AddNode("a", kA, a_config.policy, a_config.credentials,
                      a_config.settings)),
        b(sim.AddNode("b", kB, b_config.policy, b_config.credentials,
                      b_config.settings)) {}
  Simulation sim;
  Node& a;
  Node& b;
};

struct EstablishedPair {
  Simulation sim;
  Node* a;
  Node* b;
  explicit EstablishedPair(uint64_t seed, PskPair p = MakePskPair(),
                           EngineSettings settings = {})
      : sim(seed) {
    a = &sim.AddNode("a", kA, p.a, {}, settings);
    b = &sim.AddNode("b", kB, p.b, {}, settings);
    sim.Feed(*a, Initiate("a-b"));
    sim.RunFor(Duration(1000));
  }
};

}  // namespace ike::sa::testing
