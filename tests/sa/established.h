// Two simulated peers, "a" at kA and "b" at kB, that have brought up their
// IKE SA and the CHILD_SA of SPD entry "a-b" (a initiated) within the first
// simulated second. The starting point of the post-handshake tests.
#pragma once

#include <cstdint>
#include <utility>

#include "tests/sa/fixtures.h"
#include "tests/sa/sim.h"

namespace ike::sa::testing {

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
