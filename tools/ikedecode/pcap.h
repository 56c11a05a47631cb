// Classic pcap (not pcapng) reading and writing, and extraction of IKE
// datagrams from captured frames: UDP 500, and UDP 4500 after the 4-byte
// non-ESP marker (RFC 3948). Link types: Ethernet (with 802.1Q tags), Linux
// cooked capture v1 and v2, raw IP, BSD loopback. IPv4 and IPv6.
#pragma once

#include <cstdint>
#include <fstream>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace ikedecode {

using Bytes = std::vector<uint8_t>;

namespace linktype {
inline constexpr uint32_t kNull = 0;
inline constexpr uint32_t kEthernet = 1;
inline constexpr uint32_t kRaw = 101;
inline constexpr uint32_t kLinuxSll = 113;
inline constexpr uint32_t kIpv4 = 228;
inline constexpr uint32_t kIpv6 = 229;
inline constexpr uint32_t kLinuxSll2 = 276;
}  // namespace linktype

struct PcapRecord {
  uint32_t timestamp_seconds = 0;
  uint32_t timestamp_fraction = 0;  // micro- or nanoseconds, as in the file
  Bytes data;
};

// Reads records one at a time; every length is checked before it is used.
class PcapReader {
 public:
  // Returns an error message naming the file, or an empty string.
  std::string Open(const std::string& path);
  uint32_t link_type() const { return link_type_; }
  // nullopt at a clean end of file; on a damaged record sets error().
  std::optional<PcapRecord> Next();
  const std::string& error() const { return error_; }

 private:
  std::ifstream file_;
  std::string path_;
  bool swapped_ = false;
  uint32_t link_type_ = 0;
  uint32_t snap_length_ = 0;
  size_t record_index_ = 0;
  std::string error_;
};

class PcapWriter {
 public:
  // Writes the global header (microsecond timestamps, host byte order).
  bool Open(const std::string& path, uint32_t link_type);
  bool Write(std::span<const uint8_t> frame, uint32_t seconds, uint32_t micros);

 private:
  std::ofstream file_;
};

struct IkeDatagram {
  std::string source;       // printable address
  std::string destination;
  uint16_t source_port = 0;
  uint16_t destination_port = 0;
  bool had_non_esp_marker = false;
  Bytes ike;                // the IKE message, without the marker
};

// Classifies one frame. Returns nullopt when the frame is not an IKE message
// (other traffic, ESP-in-UDP, NAT keepalive, IP fragment, too short), with
// the reason in *why_not when given.
std::optional<IkeDatagram> ExtractIke(uint32_t link_type,
                                      std::span<const uint8_t> frame,
                                      std::string* why_not = nullptr);

// Builds an Ethernet frame carrying UDP over IPv4 or IPv6 (addresses of 4 or
// 16 bytes), with correct IP and UDP checksums. For test captures.
Bytes BuildUdpFrame(std::span<const uint8_t> source_address,
                    std::span<const uint8_t> destination_address,
                    uint16_t source_port, uint16_t destination_port,
                    std::span<const uint8_t> payload);

}  // namespace ikedecode
