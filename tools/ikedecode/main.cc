// ikedecode: prints the payload chain and key fields of IKEv2 messages found
// in a classic pcap file or given as hex.
#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "ike/wire/message.h"
#include "tools/ikedecode/decrypt.h"
#include "tools/ikedecode/pcap.h"
#include "tools/ikedecode/render.h"

namespace {

constexpr char kUsage[] =
    "usage: ikedecode [--json] [--verbose] CAPTURE.pcap\n"
    "       ikedecode [--json] --hex HEX\n"
    "       ikedecode [--json] --hex-file FILE   (one message per line, '#' comments)\n"
    "Decodes IKEv2 messages (UDP 500, and UDP 4500 after the non-ESP marker).\n"
    "--json prints one JSON object per message and line.\n"
    "--verbose reports on stderr why other frames were skipped.\n"
    "--extract DIR also writes each IKE message found in a capture to\n"
    "  DIR/frame-N.ike (raw bytes, without the non-ESP marker) and, with --keys,\n"
    "  the decrypted SK content to DIR/frame-N.chain (first payload type octet,\n"
    "  then the payload chain).\n"
    "--keys FILE decrypts SK payloads of the IKE SAs listed in FILE, one per line:\n"
    "  ISPI RSPI ENCR SK_EI SK_ER [INTEG SK_AI SK_AR]   (hex; ENCR aes-gcm-16,\n"
    "  chacha20-poly1305 (keys with salt) or aes-cbc with INTEG hmac-sha2-256-128,\n"
    "  hmac-sha2-384-192, hmac-sha2-512-256 or hmac-sha1-96)\n";

struct Options {
  bool json = false;
  bool verbose = false;
  std::string pcap_path;
  std::string hex;
  std::string hex_path;
  std::string extract_dir;
  std::vector<ikedecode::SaKeys> keys;
};

struct Counts {
  size_t messages = 0;
  size_t undecodable = 0;
};

void Emit(ikedecode::Observation& ob, std::span<const uint8_t> bytes, const Options& options,
          Counts& counts) {
  ++counts.messages;
  if (ob.decoded.ok()) {
    auto encoded = ike::wire::EncodeMessage(ob.decoded.value());
    ob.reencodes_identically =
        encoded.ok() && std::equal(encoded->begin(), encoded->end(), bytes.begin(), bytes.end());
  }
  if (ob.decoded.ok() && !options.keys.empty() &&
      ike::wire::FindFirst<ike::wire::SkPayload>(ob.decoded->payloads)) {
    if (const ikedecode::SaKeys* keys = ikedecode::FindKeys(options.keys, ob.decoded->header)) {
      ob.decrypted = ikedecode::DecryptSk(bytes, ob.decoded->header, *keys);
    }
  }
  if (!ob.decoded.ok()) ++counts.undecodable;
  std::cout << (options.json ? ikedecode::RenderJson(ob) + "\n" : ikedecode::RenderText(ob));
}

// Parses hex, ignoring whitespace and ':' separators. Returns false with a
// message on an invalid character or an odd digit count.
bool ParseHex(const std::string& text, ikedecode::Bytes& out, std::string& error) {
  out.clear();
  int high = -1;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (std::isspace(static_cast<unsigned char>(c)) || c == ':') continue;
    if (!std::isxdigit(static_cast<unsigned char>(c))) {
      error = "invalid hex character '" + std::string(1, c) + "' at position " + std::to_string(i);
      return false;
    }
    const int value = std::isdigit(static_cast<unsigned char>(c)) ? c - '0' : (std::tolower(c) - 'a' + 10);
    if (high < 0) {
      high = value;
    } else {
      out.push_back(static_cast<uint8_t>(high << 4 | value));
      high = -1;
    }
  }
  if (high >= 0) {
    error = "odd number of hex digits";
    return false;
  }
  return true;
}

int DecodeHexMessage(const std::string& text, size_t index, const std::string& where,
                     const Options& options, Counts& counts) {
  ikedecode::Bytes bytes;
  std::string error;
  if (!ParseHex(text, bytes, error)) {
    std::cerr << "ikedecode: " << where << ": " << error << "\n";
    return 1;
  }
  // Accept a message still carrying the non-ESP marker.
  if (bytes.size() >= 4 + ike::wire::kHeaderSize && bytes[0] == 0 && bytes[1] == 0 &&
      bytes[2] == 0 && bytes[3] == 0) {
    bytes.erase(bytes.begin(), bytes.begin() + 4);
  }
  ikedecode::Observation ob;
  ob.index = index;
  ob.decoded = ike::wire::DecodeMessage(bytes);
  Emit(ob, bytes, options, counts);
  return 0;
}

int RunPcap(const Options& options, Counts& counts) {
  ikedecode::PcapReader reader;
  if (std::string error = reader.Open(options.pcap_path); !error.empty()) {
    std::cerr << "ikedecode: " << error << "\n";
    return 1;
  }
  size_t frame = 0;
  while (auto record = reader.Next()) {
    ++frame;
    std::string why_not;
    auto datagram = ikedecode::ExtractIke(reader.link_type(), record->data, &why_not);
    if (!datagram) {
      if (options.verbose) std::cerr << "frame " << frame << ": skipped, " << why_not << "\n";
      continue;
    }
    if (!options.extract_dir.empty()) {
      const std::string path = options.extract_dir + "/frame-" + std::to_string(frame) + ".ike";
      std::ofstream out(path, std::ios::binary);
      out.write(reinterpret_cast<const char*>(datagram->ike.data()), datagram->ike.size());
      if (!out) {
        std::cerr << "ikedecode: " << path << ": cannot write\n";
        return 1;
      }
    }
    ikedecode::Observation ob;
    ob.index = frame;
    ob.decoded = ike::wire::DecodeMessage(datagram->ike);
    ob.datagram = std::move(datagram);
    Emit(ob, ob.datagram->ike, options, counts);
    if (!options.extract_dir.empty() && ob.decrypted && ob.decrypted->error.empty()) {
      // The fuzzer's payload-chain input format: first payload type, then the chain.
      const std::string path = options.extract_dir + "/frame-" + std::to_string(frame) + ".chain";
      std::ofstream out(path, std::ios::binary);
      out.put(static_cast<char>(ob.decrypted->first_inner));
      out.write(reinterpret_cast<const char*>(ob.decrypted->plaintext.data()),
                ob.decrypted->plaintext.size());
      if (!out) {
        std::cerr << "ikedecode: " << path << ": cannot write\n";
        return 1;
      }
    }
  }
  if (!reader.error().empty()) {
    std::cerr << "ikedecode: " << reader.error() << "\n";
    return 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--json") {
      options.json = true;
    } else if (arg == "--verbose") {
      options.verbose = true;
    } else if (arg == "--keys" && i + 1 < argc) {
      if (std::string error = ikedecode::LoadKeys(argv[++i], options.keys); !error.empty()) {
        std::cerr << "ikedecode: " << error << "\n";
        return 1;
      }
    } else if (arg == "--extract" && i + 1 < argc) {
      options.extract_dir = argv[++i];
    } else if ((arg == "--hex" || arg == "--hex-file") && i + 1 < argc) {
      (arg == "--hex" ? options.hex : options.hex_path) = argv[++i];
    } else if (arg == "--help" || arg == "-h") {
      std::cout << kUsage;
      return 0;
    } else if (!arg.empty() && arg[0] != '-' && options.pcap_path.empty()) {
      options.pcap_path = arg;
    } else {
      std::cerr << "ikedecode: unexpected argument '" << arg << "'\n" << kUsage;
      return 1;
    }
  }
  const int sources = !options.pcap_path.empty() + !options.hex.empty() + !options.hex_path.empty();
  if (sources != 1) {
    std::cerr << "ikedecode: give exactly one of CAPTURE.pcap, --hex, --hex-file\n" << kUsage;
    return 1;
  }
  Counts counts;
  int status = 0;
  if (!options.pcap_path.empty()) {
    status = RunPcap(options, counts);
  } else if (!options.hex.empty()) {
    status = DecodeHexMessage(options.hex, 1, "--hex", options, counts);
  } else {
    std::ifstream file(options.hex_path);
    if (!file) {
      std::cerr << "ikedecode: " << options.hex_path << ": cannot open for reading\n";
      return 1;
    }
    std::string line;
    size_t line_number = 0, index = 0;
    while (status == 0 && std::getline(file, line)) {
      ++line_number;
      const size_t start = line.find_first_not_of(" \t\r");
      if (start == std::string::npos || line[start] == '#') continue;
      status = DecodeHexMessage(line, ++index, options.hex_path + ":" + std::to_string(line_number),
                                options, counts);
    }
  }
  std::cerr << "ikedecode: " << counts.messages << " IKE messages, " << counts.undecodable
            << " undecodable\n";
  return status;
}
