#include "tools/ikedecode/pcap.h"

#include <arpa/inet.h>

#include <cstring>

namespace ikedecode {
namespace {

constexpr uint32_t kMagicMicros = 0xa1b2c3d4;
constexpr uint32_t kMagicNanos = 0xa1b23c4d;
constexpr size_t kGlobalHeaderSize = 24;
constexpr size_t kRecordHeaderSize = 16;
// Upper bound for one record, whatever the file's snaplen says: no frame we
// care about is larger, and it bounds the allocation per record.
constexpr uint32_t kMaxRecordSize = 262144;
constexpr uint16_t kEtherTypeIpv4 = 0x0800;
constexpr uint16_t kEtherTypeIpv6 = 0x86dd;
constexpr uint16_t kEtherTypeVlan = 0x8100;
constexpr uint16_t kEtherTypeQinQ = 0x88a8;
constexpr uint8_t kProtocolUdp = 17;
constexpr uint16_t kIkePort = 500;
constexpr uint16_t kNatTPort = 4500;

uint32_t Swap32(uint32_t v) { return __builtin_bswap32(v); }
uint16_t Be16(std::span<const uint8_t> b, size_t at) {
  return static_cast<uint16_t>((b[at] << 8) | b[at + 1]);
}

std::optional<IkeDatagram> Reject(std::string* why_not, const std::string& reason) {
  if (why_not) *why_not = reason;
  return std::nullopt;
}

std::string AddressText(std::span<const uint8_t> address) {
  char text[INET6_ADDRSTRLEN] = {};
  inet_ntop(address.size() == 4 ? AF_INET : AF_INET6, address.data(), text, sizeof text);
  return text;
}

std::optional<IkeDatagram> FromUdp(std::span<const uint8_t> udp, std::string source,
                                   std::string destination, std::string* why_not) {
  if (udp.size() < 8) return Reject(why_not, "UDP header truncated");
  const uint16_t length = Be16(udp, 4);
  if (length < 8 || length > udp.size()) return Reject(why_not, "UDP length field out of bounds");
  IkeDatagram datagram;
  datagram.source = std::move(source);
  datagram.destination = std::move(destination);
  datagram.source_port = Be16(udp, 0);
  datagram.destination_port = Be16(udp, 2);
  std::span<const uint8_t> payload = udp.subspan(8, length - 8);
  const auto uses = [&](uint16_t port) {
    return datagram.source_port == port || datagram.destination_port == port;
  };
  if (uses(kNatTPort)) {
    if (payload.size() == 1 && payload[0] == 0xff) return Reject(why_not, "NAT keepalive");
    if (payload.size() < 4 || payload[0] || payload[1] || payload[2] || payload[3]) {
      return Reject(why_not, "ESP in UDP (no non-ESP marker)");
    }
    datagram.had_non_esp_marker = true;
    payload = payload.subspan(4);
  } else if (!uses(kIkePort)) {
    return Reject(why_not, "UDP but not port 500 or 4500");
  }
  datagram.ike.assign(payload.begin(), payload.end());
  return datagram;
}

std::optional<IkeDatagram> FromIpv4(std::span<const uint8_t> ip, std::string* why_not) {
  if (ip.size() < 20 || (ip[0] >> 4) != 4) return Reject(why_not, "IPv4 header truncated");
  const size_t header_length = (ip[0] & 0x0f) * 4u;
  const size_t total_length = Be16(ip, 2);
  if (header_length < 20 || total_length < header_length || total_length > ip.size()) {
    return Reject(why_not, "IPv4 lengths out of bounds");
  }
  if ((Be16(ip, 6) & 0x3fff) != 0) return Reject(why_not, "IPv4 fragment (not reassembled)");
  if (ip[9] != kProtocolUdp) return Reject(why_not, "not UDP");
  return FromUdp(ip.subspan(header_length, total_length - header_length),
                 AddressText(ip.subspan(12, 4)), AddressText(ip.subspan(16, 4)), why_not);
}

std::optional<IkeDatagram> FromIpv6(std::span<const uint8_t> ip, std::string* why_not) {
  if (ip.size() < 40 || (ip[0] >> 4) != 6) return Reject(why_not, "IPv6 header truncated");
  const size_t payload_length = Be16(ip, 4);
  if (payload_length > ip.size() - 40) return Reject(why_not, "IPv6 payload length out of bounds");
  uint8_t next = ip[6];
  size_t pos = 40;
  const size_t end = 40 + payload_length;
  // Skip hop-by-hop, routing and destination options headers.
  while (next == 0 || next == 43 || next == 60) {
    if (end - pos < 8) return Reject(why_not, "IPv6 extension header truncated");
    const size_t length = (ip[pos + 1] + 1u) * 8;
    if (length > end - pos) return Reject(why_not, "IPv6 extension header truncated");
    next = ip[pos];
    pos += length;
  }
  if (next == 44) return Reject(why_not, "IPv6 fragment (not reassembled)");
  if (next != kProtocolUdp) return Reject(why_not, "not UDP");
  return FromUdp(ip.subspan(pos, end - pos), AddressText(ip.subspan(8, 16)),
                 AddressText(ip.subspan(24, 16)), why_not);
}

std::optional<IkeDatagram> FromEtherType(uint16_t ether_type, std::span<const uint8_t> ip,
                                         std::string* why_not) {
  if (ether_type == kEtherTypeIpv4) return FromIpv4(ip, why_not);
  if (ether_type == kEtherTypeIpv6) return FromIpv6(ip, why_not);
  return Reject(why_not, "not IP");
}

std::optional<IkeDatagram> FromRawIp(std::span<const uint8_t> ip, std::string* why_not) {
  if (ip.empty()) return Reject(why_not, "empty frame");
  if ((ip[0] >> 4) == 4) return FromIpv4(ip, why_not);
  if ((ip[0] >> 4) == 6) return FromIpv6(ip, why_not);
  return Reject(why_not, "not IP");
}

uint32_t ChecksumAdd(uint32_t sum, std::span<const uint8_t> bytes) {
  for (size_t i = 0; i < bytes.size(); i += 2) {
    sum += (bytes[i] << 8) | (i + 1 < bytes.size() ? bytes[i + 1] : 0);
  }
  return sum;
}
uint16_t ChecksumFinish(uint32_t sum) {
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(~sum);
}
void Put16(Bytes& out, size_t at, uint16_t v) {
  out[at] = static_cast<uint8_t>(v >> 8);
  out[at + 1] = static_cast<uint8_t>(v);
}

}  // namespace

std::string PcapReader::Open(const std::string& path) {
  path_ = path;
  file_.open(path, std::ios::binary);
  if (!file_) return path + ": cannot open for reading";
  uint8_t header[kGlobalHeaderSize];
  if (!file_.read(reinterpret_cast<char*>(header), sizeof header)) {
    return path + ": shorter than the 24-byte pcap header";
  }
  uint32_t magic, snap, link;
  std::memcpy(&magic, header, 4);
  std::memcpy(&snap, header + 16, 4);
  std::memcpy(&link, header + 20, 4);
  if (magic == kMagicMicros || magic == kMagicNanos) {
    swapped_ = false;
  } else if (Swap32(magic) == kMagicMicros || Swap32(magic) == kMagicNanos) {
    swapped_ = true;
  } else if (magic == 0x0a0d0d0a) {
    return path + ": is pcapng; convert it with 'editcap -F pcap' first";
  } else {
    return path + ": not a pcap file (magic number unknown)";
  }
  snap_length_ = swapped_ ? Swap32(snap) : snap;
  link_type_ = (swapped_ ? Swap32(link) : link) & 0x0fffffff;
  return {};
}

std::optional<PcapRecord> PcapReader::Next() {
  uint8_t header[kRecordHeaderSize];
  file_.read(reinterpret_cast<char*>(header), sizeof header);
  if (file_.gcount() == 0) return std::nullopt;
  ++record_index_;
  const std::string where = path_ + ": record " + std::to_string(record_index_);
  if (file_.gcount() != sizeof header) {
    error_ = where + ": record header truncated";
    return std::nullopt;
  }
  uint32_t fields[4];
  std::memcpy(fields, header, sizeof fields);
  if (swapped_) {
    for (uint32_t& field : fields) field = Swap32(field);
  }
  if (fields[2] > kMaxRecordSize) {
    error_ = where + ": captured length " + std::to_string(fields[2]) +
             " exceeds the limit of " + std::to_string(kMaxRecordSize);
    return std::nullopt;
  }
  PcapRecord record{fields[0], fields[1], Bytes(fields[2])};
  if (!file_.read(reinterpret_cast<char*>(record.data.data()), fields[2])) {
    error_ = where + ": data truncated (captured length " + std::to_string(fields[2]) + ")";
    return std::nullopt;
  }
  return record;
}

bool PcapWriter::Open(const std::string& path, uint32_t link_type) {
  file_.open(path, std::ios::binary | std::ios::trunc);
  const uint32_t magic = kMagicMicros, zone = 0, sigfigs = 0, snap = 65535;
  const uint16_t major = 2, minor = 4;
  file_.write(reinterpret_cast<const char*>(&magic), 4);
  file_.write(reinterpret_cast<const char*>(&major), 2);
  file_.write(reinterpret_cast<const char*>(&minor), 2);
  file_.write(reinterpret_cast<const char*>(&zone), 4);
  file_.write(reinterpret_cast<const char*>(&sigfigs), 4);
  file_.write(reinterpret_cast<const char*>(&snap), 4);
  file_.write(reinterpret_cast<const char*>(&link_type), 4);
  return static_cast<bool>(file_);
}

bool PcapWriter::Write(std::span<const uint8_t> frame, uint32_t seconds, uint32_t micros) {
  const uint32_t fields[4] = {seconds, micros, static_cast<uint32_t>(frame.size()),
                              static_cast<uint32_t>(frame.size())};
  file_.write(reinterpret_cast<const char*>(fields), sizeof fields);
  file_.write(reinterpret_cast<const char*>(frame.data()), frame.size());
  file_.flush();
  return static_cast<bool>(file_);
}

std::optional<IkeDatagram> ExtractIke(uint32_t link_type, std::span<const uint8_t> frame,
                                      std::string* why_not) {
  switch (link_type) {
    case linktype::kEthernet: {
      size_t pos = 12;
      if (frame.size() < 14) return Reject(why_not, "Ethernet header truncated");
      uint16_t ether_type = Be16(frame, pos);
      while (ether_type == kEtherTypeVlan || ether_type == kEtherTypeQinQ) {
        pos += 4;
        if (frame.size() < pos + 2) return Reject(why_not, "VLAN tag truncated");
        ether_type = Be16(frame, pos);
      }
      return FromEtherType(ether_type, frame.subspan(pos + 2), why_not);
    }
    case linktype::kLinuxSll:
      if (frame.size() < 16) return Reject(why_not, "Linux cooked header truncated");
      return FromEtherType(Be16(frame, 14), frame.subspan(16), why_not);
    case linktype::kLinuxSll2:
      if (frame.size() < 20) return Reject(why_not, "Linux cooked v2 header truncated");
      return FromEtherType(Be16(frame, 0), frame.subspan(20), why_not);
    case linktype::kRaw:
    case 12:  // LINKTYPE_RAW's DLT value on some systems
    case 14:
      return FromRawIp(frame, why_not);
    case linktype::kIpv4:
      return FromIpv4(frame, why_not);
    case linktype::kIpv6:
      return FromIpv6(frame, why_not);
    case linktype::kNull:
      if (frame.size() < 4) return Reject(why_not, "loopback header truncated");
      return FromRawIp(frame.subspan(4), why_not);
    default:
      return Reject(why_not, "link type " + std::to_string(link_type) + " not supported");
  }
}

Bytes BuildUdpFrame(std::span<const uint8_t> source_address,
                    std::span<const uint8_t> destination_address, uint16_t source_port,
                    uint16_t destination_port, std::span<const uint8_t> payload) {
  const bool v6 = source_address.size() == 16;
  const size_t ip_header = v6 ? 40 : 20;
  const size_t udp_length = 8 + payload.size();
  Bytes frame(14 + ip_header + udp_length, 0);
  // Locally administered MAC addresses.
  const uint8_t macs[12] = {0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1};
  std::memcpy(frame.data(), macs, sizeof macs);
  Put16(frame, 12, v6 ? kEtherTypeIpv6 : kEtherTypeIpv4);
  const size_t ip = 14;
  if (v6) {
    frame[ip] = 0x60;
    Put16(frame, ip + 4, static_cast<uint16_t>(udp_length));
    frame[ip + 6] = kProtocolUdp;
    frame[ip + 7] = 64;
    std::memcpy(&frame[ip + 8], source_address.data(), 16);
    std::memcpy(&frame[ip + 24], destination_address.data(), 16);
  } else {
    frame[ip] = 0x45;
    Put16(frame, ip + 2, static_cast<uint16_t>(20 + udp_length));
    frame[ip + 8] = 64;
    frame[ip + 9] = kProtocolUdp;
    std::memcpy(&frame[ip + 12], source_address.data(), 4);
    std::memcpy(&frame[ip + 16], destination_address.data(), 4);
    Put16(frame, ip + 10, ChecksumFinish(ChecksumAdd(0, {&frame[ip], 20})));
  }
  const size_t udp = ip + ip_header;
  Put16(frame, udp, source_port);
  Put16(frame, udp + 2, destination_port);
  Put16(frame, udp + 4, static_cast<uint16_t>(udp_length));
  std::memcpy(&frame[udp + 8], payload.data(), payload.size());
  // Pseudo-header checksum (mandatory for IPv6, used for IPv4 too).
  uint32_t sum = ChecksumAdd(0, source_address);
  sum = ChecksumAdd(sum, destination_address);
  sum += kProtocolUdp + static_cast<uint32_t>(udp_length);
  sum = ChecksumAdd(sum, {&frame[udp], udp_length});
  uint16_t checksum = ChecksumFinish(sum);
  Put16(frame, udp + 6, checksum == 0 ? 0xffff : checksum);
  return frame;
}

}  // namespace ikedecode
