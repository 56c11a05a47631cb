// libFuzzer entry point for the IKEv2 codec. Besides "no crash, no sanitizer
// report", it checks properties that must hold for any input:
//  - whatever DecodeMessage accepts, EncodeMessage encodes, and decoding that
//    again gives the same structs (header included);
//  - LocateSk agrees with the decoded SK/SKF payload;
//  - the same for DecodePayloadChain, with data[0] as the first payload type.
#include <cstdio>
#include <cstdlib>
#include <span>

#include "ike/wire/message.h"
#include "ike/wire/names.h"

namespace {

using namespace ike::wire;

[[noreturn]] void Fail(const char* what) {
  std::fprintf(stderr, "property violated: %s\n", what);
  std::abort();
}

void CheckMessage(std::span<const uint8_t> input) {
  Result<Message> decoded = DecodeMessage(input);
  if (!decoded.ok()) {
    if (decoded.error().message.empty()) Fail("error without a message");
    return;
  }
  Result<Bytes> encoded = EncodeMessage(decoded.value());
  if (!encoded.ok()) Fail("a decoded message cannot be encoded");
  if (encoded->size() != input.size()) Fail("re-encoded size differs");
  Result<Message> again = DecodeMessage(encoded.value());
  if (!again.ok()) Fail("re-encoded message does not decode");
  if (!(again.value() == decoded.value())) Fail("decode(encode(m)) != m");

  const Payload& last = decoded->payloads.empty() ? Payload{} : decoded->payloads.back();
  const bool has_sk = !decoded->payloads.empty() &&
                      (std::holds_alternative<SkPayload>(last.body) ||
                       std::holds_alternative<SkfPayload>(last.body));
  Result<SkLocation> location = LocateSk(input);
  if (location.ok() != has_sk) Fail("LocateSk disagrees with the decoder");
  if (has_sk) {
    const Bytes& body = std::holds_alternative<SkPayload>(last.body)
                            ? std::get<SkPayload>(last.body).body
                            : std::get<SkfPayload>(last.body).body;
    if (location->body_length != body.size() ||
        location->body_offset + location->body_length != input.size()) {
      Fail("LocateSk body does not match the SK payload");
    }
  }
  for (const Payload& payload : decoded->payloads) PayloadName(payload.TypeCode());
  ExchangeName(decoded->header.exchange);
}

void CheckChain(std::span<const uint8_t> input) {
  if (input.empty()) return;
  const uint8_t first = input[0];
  Result<std::vector<Payload>> decoded = DecodePayloadChain(first, input.subspan(1), 1);
  if (!decoded.ok()) return;
  Result<EncodedChain> encoded = EncodePayloadChain(decoded.value());
  if (!encoded.ok()) Fail("a decoded chain cannot be encoded");
  if (!decoded->empty() && encoded->first_type != first) Fail("first payload type changed");
  if (encoded->bytes.size() != input.size() - 1) Fail("re-encoded chain size differs");
  Result<std::vector<Payload>> again = DecodePayloadChain(encoded->first_type, encoded->bytes);
  if (!again.ok() || !(again.value() == decoded.value())) Fail("chain round trip differs");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::span<const uint8_t> input(data, size);
  CheckMessage(input);
  CheckChain(input);
  return 0;
}
