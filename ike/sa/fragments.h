// IKE message fragmentation (RFC 7383): splitting an encrypted message into
// SKF-protected fragments, and reassembling them with bounded memory.
// Internal to ike/sa.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ike/crypto/random.h"
#include "ike/crypto/result.h"
#include "ike/crypto/transforms.h"
#include "ike/sa/codec_helpers.h"
#include "ike/wire/message.h"

namespace ike::sa::internal {

// One fragment: `plain` is its share of the inner payload chain, whose
// first payload type goes into fragment 1 only (2.5).
crypto::Result<Bytes> SealFragment(const crypto::TransformSet& set,
                                   IkeDirectionKeys keys,
                                   const wire::Header& header,
                                   uint8_t first_inner, uint16_t number,
                                   uint16_t total, crypto::ByteView plain,
                                   crypto::RandomSource& random);

// The inner payloads as fragments of at most `max_datagram` octets each
// (IKE header included; the non-ESP marker is not counted).
crypto::Result<std::vector<Bytes>> SealFragments(
    const crypto::TransformSet& set, IkeDirectionKeys keys,
    const wire::Header& header, const std::vector<wire::Payload>& inner,
    size_t max_datagram, crypto::RandomSource& random);

struct ReassemblyLimits {
  uint16_t max_fragments = 64;
  size_t max_bytes = 64 * 1024;  // decrypted content of all fragments
};

// The fragments of one message (one message ID, one direction). Each
// fragment is authenticated and decrypted on arrival, so forged fragments
// never occupy memory (2.6).
class Reassembly {
 public:
  enum class Outcome : uint8_t { kIncomplete, kComplete, kDropped };
  struct Step {
    Outcome outcome = Outcome::kDropped;
    std::string why;  // for kDropped
    std::vector<wire::Payload> payloads;  // for kComplete
    // The longest fragment datagram of the completed message: a size the
    // path from the sender demonstrably carries.
    size_t largest_fragment = 0;
  };
  uint32_t message_id() const { return message_id_; }
  bool active() const { return total_ != 0; }

  // `datagram` decoded into `skf` (its SKF payload); `message_id` from its
  // header. A fragment of another message ID restarts the reassembly.
  Step Add(const crypto::TransformSet& set, IkeDirectionKeys keys,
           std::span<const uint8_t> datagram, uint32_t message_id,
           const wire::SkfPayload& skf, const ReassemblyLimits& limits);

 private:
  void Reset(uint32_t message_id, uint16_t total);

  uint32_t message_id_ = 0;
  uint16_t total_ = 0;  // 0: nothing collected
  uint16_t received_ = 0;
  uint8_t first_inner_ = 0;
  size_t bytes_ = 0;
  size_t largest_ = 0;
  std::vector<Bytes> parts_;
  std::vector<bool> have_;
};

}  // namespace ike::sa::internal
