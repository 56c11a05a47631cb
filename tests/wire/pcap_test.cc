// Tests for the capture reader and the frame classifier used by ikedecode.
#include <cstdio>
#include <fstream>
#include <string>

#include <gtest/gtest.h>

#include "tools/ikedecode/pcap.h"

namespace ikedecode {
namespace {

const Bytes kV4a = {192, 0, 2, 1}, kV4b = {192, 0, 2, 2};
const Bytes kV6a = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
const Bytes kV6b = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2};
const Bytes kIke = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};

Bytes WithoutEthernet(const Bytes& frame) { return Bytes(frame.begin() + 14, frame.end()); }

Bytes Prepend(const Bytes& head, const Bytes& tail) {
  Bytes out = head;
  out.insert(out.end(), tail.begin(), tail.end());
  return out;
}

std::string TempPath(const std::string& name) {
  const char* dir = std::getenv("TEST_TMPDIR");
  return std::string(dir ? dir : "/tmp") + "/" + name;
}

TEST(ExtractIke, EthernetIpv4Port500) {
  const Bytes frame = BuildUdpFrame(kV4a, kV4b, 500, 500, kIke);
  auto datagram = ExtractIke(linktype::kEthernet, frame);
  ASSERT_TRUE(datagram.has_value());
  EXPECT_EQ(datagram->source, "192.0.2.1");
  EXPECT_EQ(datagram->destination, "192.0.2.2");
  EXPECT_EQ(datagram->ike, kIke);
  EXPECT_FALSE(datagram->had_non_esp_marker);
}

TEST(ExtractIke, Ipv6AndNatTraversalMarker) {
  const Bytes marked = Prepend({0, 0, 0, 0}, kIke);
  const Bytes frame = BuildUdpFrame(kV6a, kV6b, 4500, 4500, marked);
  auto datagram = ExtractIke(linktype::kEthernet, frame);
  ASSERT_TRUE(datagram.has_value());
  EXPECT_EQ(datagram->source, "2001:db8::1");
  EXPECT_TRUE(datagram->had_non_esp_marker);
  EXPECT_EQ(datagram->ike, kIke);
}

TEST(ExtractIke, OtherLinkTypes) {
  const Bytes ethernet = BuildUdpFrame(kV4a, kV4b, 500, 500, kIke);
  const Bytes ip = WithoutEthernet(ethernet);
  Bytes sll(16, 0);
  sll[14] = 0x08;  // protocol IPv4
  Bytes sll2(20, 0);
  sll2[0] = 0x08;
  Bytes vlan(ethernet.begin(), ethernet.begin() + 12);
  vlan.insert(vlan.end(), {0x81, 0x00, 0x00, 0x07});
  vlan.insert(vlan.end(), ethernet.begin() + 12, ethernet.end());
  const Bytes loopback = Prepend({2, 0, 0, 0}, ip);
  struct Case {
    uint32_t link_type;
    Bytes frame;
  } cases[] = {{linktype::kRaw, ip},
               {linktype::kIpv4, ip},
               {linktype::kLinuxSll, Prepend(sll, ip)},
               {linktype::kLinuxSll2, Prepend(sll2, ip)},
               {linktype::kEthernet, vlan},
               {linktype::kNull, loopback}};
  for (const Case& c : cases) {
    auto datagram = ExtractIke(c.link_type, c.frame);
    ASSERT_TRUE(datagram.has_value()) << "link type " << c.link_type;
    EXPECT_EQ(datagram->ike, kIke);
  }
  const Bytes ip6 = WithoutEthernet(BuildUdpFrame(kV6a, kV6b, 500, 500, kIke));
  auto datagram = ExtractIke(linktype::kIpv6, ip6);
  ASSERT_TRUE(datagram.has_value());
  EXPECT_EQ(datagram->ike, kIke);
}

TEST(ExtractIke, SkipsNonIkeTrafficWithAReason) {
  std::string why;
  EXPECT_FALSE(ExtractIke(linktype::kEthernet, BuildUdpFrame(kV4a, kV4b, 4500, 4500, Bytes{0xff}), &why));
  EXPECT_EQ(why, "NAT keepalive");
  EXPECT_FALSE(ExtractIke(linktype::kEthernet, BuildUdpFrame(kV4a, kV4b, 4500, 4500, Bytes{0, 0, 1, 0, 0, 0, 0, 1}), &why));
  EXPECT_EQ(why, "ESP in UDP (no non-ESP marker)");
  EXPECT_FALSE(ExtractIke(linktype::kEthernet, BuildUdpFrame(kV4a, kV4b, 53, 53, kIke), &why));
  EXPECT_EQ(why, "UDP but not port 500 or 4500");
  Bytes fragment = BuildUdpFrame(kV4a, kV4b, 500, 500, kIke);
  fragment[14 + 6] = 0x20;  // More Fragments
  EXPECT_FALSE(ExtractIke(linktype::kEthernet, fragment, &why));
  EXPECT_EQ(why, "IPv4 fragment (not reassembled)");
  EXPECT_FALSE(ExtractIke(999, fragment, &why));
  EXPECT_EQ(why, "link type 999 not supported");
}

TEST(ExtractIke, EveryTruncatedFrameIsRejectedWithoutCrashing) {
  for (const Bytes& frame : {BuildUdpFrame(kV4a, kV4b, 500, 500, kIke),
                             BuildUdpFrame(kV6a, kV6b, 4500, 4500, Prepend({0, 0, 0, 0}, kIke))}) {
    for (size_t cut = 0; cut < frame.size(); ++cut) {
      std::span<const uint8_t> prefix(frame.data(), cut);
      EXPECT_FALSE(ExtractIke(linktype::kEthernet, prefix).has_value()) << "cut at " << cut;
    }
  }
}

TEST(BuildUdpFrame, ChecksumsVerify) {
  const Bytes frame = BuildUdpFrame(kV4a, kV4b, 500, 500, kIke);
  uint32_t sum = 0;
  for (size_t i = 14; i < 34; i += 2) sum += (frame[i] << 8) | frame[i + 1];
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  EXPECT_EQ(sum, 0xffffu);  // a correct IPv4 header sums to all ones
}

TEST(PcapReader, WritesAndReadsBack) {
  const std::string path = TempPath("roundtrip.pcap");
  {
    PcapWriter writer;
    ASSERT_TRUE(writer.Open(path, linktype::kEthernet));
    ASSERT_TRUE(writer.Write(BuildUdpFrame(kV4a, kV4b, 500, 500, kIke), 10, 20));
    ASSERT_TRUE(writer.Write(BuildUdpFrame(kV6a, kV6b, 500, 500, kIke), 11, 21));
  }
  PcapReader reader;
  ASSERT_EQ(reader.Open(path), "");
  EXPECT_EQ(reader.link_type(), linktype::kEthernet);
  auto first = reader.Next();
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(first->timestamp_seconds, 10u);
  EXPECT_EQ(first->timestamp_fraction, 20u);
  ASSERT_TRUE(reader.Next().has_value());
  EXPECT_FALSE(reader.Next().has_value());
  EXPECT_EQ(reader.error(), "");
}

TEST(PcapReader, BigEndianNanosecondFile) {
  const std::string path = TempPath("big_endian.pcap");
  const Bytes frame = WithoutEthernet(BuildUdpFrame(kV4a, kV4b, 500, 500, kIke));
  Bytes file = {0xa1, 0xb2, 0x3c, 0x4d, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0,
                0,    0,    0xff, 0xff, 0, 0, 0, 101};
  const uint8_t size = static_cast<uint8_t>(frame.size());
  const Bytes record = {0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, size, 0, 0, 0, size};
  file.insert(file.end(), record.begin(), record.end());
  file.insert(file.end(), frame.begin(), frame.end());
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(file.data()), file.size());
  PcapReader reader;
  ASSERT_EQ(reader.Open(path), "");
  EXPECT_EQ(reader.link_type(), linktype::kRaw);
  auto record_read = reader.Next();
  ASSERT_TRUE(record_read.has_value());
  EXPECT_EQ(record_read->timestamp_fraction, 2u);
  auto datagram = ExtractIke(reader.link_type(), record_read->data);
  ASSERT_TRUE(datagram.has_value());
  EXPECT_EQ(datagram->ike, kIke);
}

TEST(PcapReader, ErrorsNameTheFileAndRecord) {
  const std::string path = TempPath("bad.pcap");
  std::ofstream(path, std::ios::binary) << "not a capture file at all";
  PcapReader reader;
  EXPECT_EQ(reader.Open(path), path + ": not a pcap file (magic number unknown)");
  EXPECT_EQ(PcapReader().Open(TempPath("absent.pcap")), TempPath("absent.pcap") + ": cannot open for reading");

  // A record claiming 16 MiB is refused before anything is allocated.
  Bytes file = {0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                0xff, 0xff, 0, 0, 1, 0, 0, 0,
                0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1};
  std::ofstream(path, std::ios::binary | std::ios::trunc)
      .write(reinterpret_cast<const char*>(file.data()), file.size());
  PcapReader big;
  ASSERT_EQ(big.Open(path), "");
  EXPECT_FALSE(big.Next().has_value());
  EXPECT_EQ(big.error(), path + ": record 1: captured length 16777216 exceeds the limit of 262144");
}

}  // namespace
}  // namespace ikedecode
