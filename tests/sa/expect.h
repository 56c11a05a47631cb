// Assertions shared by the ike/sa tests.
#pragma once

#include <gtest/gtest.h>

#include "tests/sa/fixtures.h"
#include "tests/sa/sim.h"

namespace ike::sa::testing {

// Nothing left behind on a node: no SA, no SPI, no kernel state.
inline void ExpectClean(const Node& n) {
  EXPECT_EQ(n.manager->ike_sa_count(), 0u) << n.name;
  EXPECT_EQ(n.manager->half_open_count(), 0u) << n.name;
  EXPECT_TRUE(n.sad.empty()) << n.name;
  EXPECT_TRUE(n.spd.empty()) << n.name;
  EXPECT_EQ(n.spis->outstanding(), 0u) << n.name;
  EXPECT_EQ(n.errors, 0u) << n.name;
}

// No moment where a live CHILD_SA had no SA to carry its traffic
// (Simulation::CheckContinuity).
inline void ExpectContinuous(const Node& n) {
  std::string all;
  for (const auto& g : n.continuity_gaps) all += g + "\n";
  EXPECT_TRUE(n.continuity_gaps.empty()) << all;
}

inline void ExpectEstablished(const Node& a, const Node& b) {
  EXPECT_EQ(a.manager->ike_sa_count(), 1u);
  EXPECT_EQ(b.manager->ike_sa_count(), 1u);
  ASSERT_EQ(a.ike_up.size(), 1u);
  ASSERT_EQ(b.ike_up.size(), 1u);
  EXPECT_TRUE(a.ike_up[0].initiator);
  EXPECT_FALSE(b.ike_up[0].initiator);
  ASSERT_EQ(a.child_up.size(), 1u);
  ASSERT_EQ(b.child_up.size(), 1u);
  EXPECT_EQ(a.child_up[0].outbound_spi, b.child_up[0].inbound_spi);
  EXPECT_EQ(a.child_up[0].inbound_spi, b.child_up[0].outbound_spi);
  EXPECT_EQ(a.sad.size(), 2u);
  EXPECT_EQ(b.sad.size(), 2u);
  EXPECT_EQ(CheckPairConsistent(a, b), "");
  EXPECT_EQ(a.errors + b.errors, 0u);
  EXPECT_EQ(a.spis->outstanding(), 0u);
  EXPECT_EQ(b.spis->outstanding(), 0u);
}

}  // namespace ike::sa::testing
