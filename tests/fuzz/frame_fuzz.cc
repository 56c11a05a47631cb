// libFuzzer entry point for ikedecode's frame classifier (tools/ikedecode),
// which reads untrusted captures: the first input byte picks the link type,
// the rest is the frame. Whatever IKE bytes come out must lie inside the
// frame, and go through the codec too.
#include <cstdlib>
#include <span>

#include "ike/wire/message.h"
#include "tools/ikedecode/pcap.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  static constexpr uint32_t kLinkTypes[] = {
      ikedecode::linktype::kNull,     ikedecode::linktype::kEthernet,
      ikedecode::linktype::kRaw,      ikedecode::linktype::kLinuxSll,
      ikedecode::linktype::kIpv4,     ikedecode::linktype::kIpv6,
      ikedecode::linktype::kLinuxSll2};
  const uint32_t link_type = kLinkTypes[data[0] % (sizeof kLinkTypes / sizeof kLinkTypes[0])];
  std::span<const uint8_t> frame(data + 1, size - 1);
  std::string why_not;
  auto datagram = ikedecode::ExtractIke(link_type, frame, &why_not);
  if (!datagram) {
    if (why_not.empty()) std::abort();  // every rejection carries a reason
    return 0;
  }
  if (datagram->ike.size() > frame.size()) std::abort();
  (void)ike::wire::DecodeMessage(datagram->ike);
  return 0;
}
