// Renders decoded IKE messages for operators (text) and for scripts (JSON).
#pragma once

#include <optional>
#include <string>

#include "ike/wire/message.h"
#include "tools/ikedecode/decrypt.h"
#include "tools/ikedecode/pcap.h"

namespace ikedecode {

// One message as seen in a capture or given as hex. `datagram` is absent for
// hex input. `decoded` holds the result of ike::wire::DecodeMessage.
struct Observation {
  size_t index = 0;  // 1-based frame number (pcap) or input number (hex)
  std::optional<IkeDatagram> datagram;
  ike::wire::Result<ike::wire::Message> decoded = ike::wire::WireError{};
  // Present when keys for the message's IKE SA were given (--keys).
  std::optional<Decrypted> decrypted;
  // Whether EncodeMessage(decoded) reproduces the received bytes exactly.
  bool reencodes_identically = false;
};

std::string RenderText(const Observation& observation);
// A JSON object (one line) describing the message; see README.md for fields.
std::string RenderJson(const Observation& observation);

std::string Hex(std::span<const uint8_t> bytes);

}  // namespace ikedecode
