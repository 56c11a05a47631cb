// A corpus of IKEv2 messages covering every payload type this codec knows,
// used by the round-trip tests, the tshark cross-check, the decoder tool test
// and as fuzzing seeds. Contents are synthetic (fixed byte patterns), built
// through the typed API so the encoder is exercised too.
#pragma once

#include <string>
#include <vector>

#include "ike/wire/message.h"

namespace ike::wire::testing {

struct CorpusEntry {
  std::string name;
  Message message;
};

std::vector<CorpusEntry> BuildCorpus();

// Deterministic filler bytes: n bytes starting at `seed`, incrementing.
Bytes Pattern(size_t n, uint8_t seed);

}  // namespace ike::wire::testing
