// Reads the known-answer files in tests/fixtures/crypto: records separated
// by blank lines, "name = value" lines, '#' comments.
#pragma once

#include <cstdint>
#include <fstream>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "ike/crypto/result.h"

namespace ike::crypto::testing {

using Record = std::map<std::string, std::string>;

inline std::string Trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t\r");
  if (b == std::string::npos) return "";
  const auto e = s.find_last_not_of(" \t\r");
  return s.substr(b, e - b + 1);
}

inline std::vector<Record> ReadVectors(const std::string& name) {
  const std::string path = "tests/fixtures/crypto/" + name;
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open " + path);
  std::vector<Record> out;
  Record current;
  std::string line;
  while (std::getline(in, line)) {
    line = Trim(line);
    if (!line.empty() && line[0] == '#') continue;
    if (line.empty()) {
      if (!current.empty()) out.push_back(std::move(current));
      current.clear();
      continue;
    }
    const auto eq = line.find('=');
    if (eq == std::string::npos) throw std::runtime_error(path + ": " + line);
    current[Trim(line.substr(0, eq))] = Trim(line.substr(eq + 1));
  }
  if (!current.empty()) out.push_back(std::move(current));
  return out;
}

inline Bytes Hex(const std::string& text) {
  std::string digits;
  for (char c : text) {
    if (!std::isspace(static_cast<unsigned char>(c))) digits += c;
  }
  if (digits.size() % 2 != 0) throw std::runtime_error("odd hex: " + text);
  Bytes out;
  for (size_t i = 0; i < digits.size(); i += 2) {
    out.push_back(static_cast<uint8_t>(std::stoi(digits.substr(i, 2), nullptr, 16)));
  }
  return out;
}

template <class C>
Bytes ToBytes(const C& c) {
  return Bytes(c.begin(), c.end());
}

inline Bytes Str(const std::string& s) { return Bytes(s.begin(), s.end()); }

}  // namespace ike::crypto::testing
