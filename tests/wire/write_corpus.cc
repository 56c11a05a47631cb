// Writes the test corpus (tests/wire/corpus.h) as capture files and fuzzing
// seeds:
//   --pcap FILE      every message as UDP/IPv4 192.0.2.1:500 -> 192.0.2.2:500
//   --mixed-pcap F   the same messages over IPv6 and UDP 4500 (non-ESP
//                    marker), plus a NAT keepalive and an ESP-in-UDP frame
//   --names FILE     the corpus entry names, one per line, in frame order
//   --seed-dir DIR   for libFuzzer: NAME.ike (a raw message) and NAME.chain
//                    (first payload type octet, then the payload chain)
#include <fstream>
#include <iostream>
#include <string>

#include "tests/wire/corpus.h"
#include "tools/ikedecode/pcap.h"

int main(int argc, char** argv) {
  std::string pcap_path, mixed_path, names_path, seed_dir;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--pcap") pcap_path = argv[i + 1];
    else if (flag == "--mixed-pcap") mixed_path = argv[i + 1];
    else if (flag == "--names") names_path = argv[i + 1];
    else if (flag == "--seed-dir") seed_dir = argv[i + 1];
    else {
      std::cerr << "write_corpus: unknown flag " << flag << "\n";
      return 1;
    }
  }
  const auto corpus = ike::wire::testing::BuildCorpus();
  std::vector<ike::wire::Bytes> messages;
  for (const auto& entry : corpus) {
    auto bytes = ike::wire::EncodeMessage(entry.message);
    if (!bytes) {
      std::cerr << "write_corpus: " << entry.name << ": " << bytes.error().message << "\n";
      return 1;
    }
    messages.push_back(bytes.value());
  }
  const ike::wire::Bytes v4a = {192, 0, 2, 1}, v4b = {192, 0, 2, 2};
  const ike::wire::Bytes v6a = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  const ike::wire::Bytes v6b = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2};
  if (!pcap_path.empty()) {
    ikedecode::PcapWriter writer;
    if (!writer.Open(pcap_path, ikedecode::linktype::kEthernet)) return 1;
    for (size_t i = 0; i < messages.size(); ++i) {
      if (!writer.Write(ikedecode::BuildUdpFrame(v4a, v4b, 500, 500, messages[i]), 1800000000 + i, 0))
        return 1;
    }
  }
  if (!mixed_path.empty()) {
    ikedecode::PcapWriter writer;
    if (!writer.Open(mixed_path, ikedecode::linktype::kEthernet)) return 1;
    uint32_t t = 1800000000;
    for (const auto& message : messages) {
      ike::wire::Bytes marked = {0, 0, 0, 0};
      marked.insert(marked.end(), message.begin(), message.end());
      writer.Write(ikedecode::BuildUdpFrame(v6a, v6b, 500, 500, message), t++, 0);
      writer.Write(ikedecode::BuildUdpFrame(v4a, v4b, 4500, 4500, marked), t++, 0);
    }
    writer.Write(ikedecode::BuildUdpFrame(v4a, v4b, 4500, 4500, ike::wire::Bytes{0xff}), t++, 0);
    writer.Write(ikedecode::BuildUdpFrame(v4a, v4b, 4500, 4500, ike::wire::Bytes{0, 0, 1, 2, 0, 0, 0, 1}), t++, 0);
  }
  if (!names_path.empty()) {
    std::ofstream names(names_path);
    for (const auto& entry : corpus) names << entry.name << "\n";
  }
  if (!seed_dir.empty()) {
    for (size_t i = 0; i < messages.size(); ++i) {
      std::ofstream seed(seed_dir + "/" + corpus[i].name + ".ike", std::ios::binary);
      seed.write(reinterpret_cast<const char*>(messages[i].data()), messages[i].size());
      // Payload-chain seed: first payload type octet, then the chain.
      std::ofstream chain_seed(seed_dir + "/" + corpus[i].name + ".chain", std::ios::binary);
      chain_seed.write(reinterpret_cast<const char*>(messages[i].data() + 16), 1);
      chain_seed.write(reinterpret_cast<const char*>(messages[i].data() + ike::wire::kHeaderSize),
                       messages[i].size() - ike::wire::kHeaderSize);
      if (!seed || !chain_seed) {
        std::cerr << "write_corpus: cannot write into " << seed_dir << "\n";
        return 1;
      }
    }
  }
  return 0;
}
