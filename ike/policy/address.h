// IP addresses, prefixes, ranges, port ranges and IKEv2-style traffic
// selectors (RFC 7296 section 3.13.1), with the set operations the PAD and
// SPD need: containment, intersection (narrowing) and subtraction.
#pragma once

#include <compare>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace ike::policy {

enum class IpFamily : uint8_t { kV4 = 4, kV6 = 6 };

using Uint128 = unsigned __int128;

struct IpAddress {
  IpFamily family = IpFamily::kV4;
  // Host-order value; IPv4 uses the low 32 bits.
  Uint128 value = 0;

  static IpAddress V4(uint32_t v) { return {IpFamily::kV4, v}; }
  // Parses dotted-quad IPv4 or RFC 4291 text IPv6; nullopt if malformed.
  static std::optional<IpAddress> Parse(std::string_view text);
  // From network-order bytes (4 or 16); nullopt for any other length.
  static std::optional<IpAddress> FromBytes(const uint8_t* data, size_t len);
  std::vector<uint8_t> ToBytes() const;
  std::string ToString() const;
  auto operator<=>(const IpAddress&) const = default;
};

inline int FamilyBits(IpFamily f) { return f == IpFamily::kV4 ? 32 : 128; }
Uint128 FamilyMax(IpFamily f);

// Inclusive range [start, end] within one family.
struct IpRange {
  IpAddress start;
  IpAddress end;

  static IpRange All(IpFamily f) { return {{f, 0}, {f, FamilyMax(f)}}; }
  static IpRange Host(const IpAddress& a) { return {a, a}; }
  // "ADDR/LEN", "ADDR", or "ADDR-ADDR"; nullopt with a reason on failure.
  static std::optional<IpRange> Parse(std::string_view text,
                                      std::string* why = nullptr);
  // Prefix of `len` bits; nullopt if host bits are set or len is too long.
  static std::optional<IpRange> FromPrefix(const IpAddress& a, int len);

  IpFamily family() const { return start.family; }
  bool Contains(const IpAddress& a) const {
    return a.family == family() && a.value >= start.value &&
           a.value <= end.value;
  }
  bool Contains(const IpRange& r) const {
    return r.family() == family() && r.start.value >= start.value &&
           r.end.value <= end.value;
  }
  bool Overlaps(const IpRange& r) const {
    return r.family() == family() && r.start.value <= end.value &&
           start.value <= r.end.value;
  }
  std::optional<IpRange> Intersect(const IpRange& r) const;
  // This range minus `r`: zero, one or two pieces.
  std::vector<IpRange> Subtract(const IpRange& r) const;
  // "a.b.c.d/n" when the range is a prefix, "a-b" otherwise.
  std::string ToString() const;
  bool operator==(const IpRange&) const = default;
};

struct PortRange {
  uint16_t low = 0;
  uint16_t high = 65535;
  bool IsAny() const { return low == 0 && high == 65535; }
  bool Contains(uint16_t p) const { return p >= low && p <= high; }
  bool Contains(const PortRange& r) const {
    return r.low >= low && r.high <= high;
  }
  std::optional<PortRange> Intersect(const PortRange& r) const;
  std::string ToString() const;
  bool operator==(const PortRange&) const = default;
};

// Protocol 0 means any, as in an IKEv2 TS.
inline constexpr uint8_t kAnyProtocol = 0;
std::optional<uint8_t> ParseIpProtocol(std::string_view text);
std::string IpProtocolName(uint8_t proto);

// One IKEv2 traffic selector: an address range, IP protocol and port range.
struct TrafficSelector {
  IpRange addresses;
  uint8_t protocol = kAnyProtocol;
  PortRange ports;

  bool Contains(const TrafficSelector& other) const;
  bool Overlaps(const TrafficSelector& other) const;
  std::optional<TrafficSelector> Intersect(const TrafficSelector& o) const;
  std::string ToString() const;
  bool operator==(const TrafficSelector&) const = default;
};

// Narrows each proposed selector against each allowed selector (RFC 7296
// section 2.9): the result holds every non-empty intersection.
std::vector<TrafficSelector> NarrowSelectors(
    const std::vector<TrafficSelector>& proposed,
    const std::vector<TrafficSelector>& allowed);

// Removes from `selectors` the address space covered by `taken`, splitting
// ranges where needed (used to keep BTNS peers off addresses that belong
// to authenticated PAD entries).
std::vector<TrafficSelector> SubtractAddresses(
    const std::vector<TrafficSelector>& selectors,
    const std::vector<IpRange>& taken);

}  // namespace ike::policy
