#include "ike/policy/address.h"

#include <algorithm>
#include <array>
#include <charconv>

namespace ike::policy {
namespace {

std::optional<uint32_t> ParseV4(std::string_view s) {
  uint32_t value = 0;
  for (int octet = 0; octet < 4; ++octet) {
    if (octet > 0) {
      if (s.empty() || s[0] != '.') return std::nullopt;
      s.remove_prefix(1);
    }
    size_t digits = 0;
    while (digits < s.size() && s[digits] >= '0' && s[digits] <= '9') ++digits;
    // Leading zeros are refused: some tools read them as octal.
    if (digits == 0 || digits > 3 || (digits > 1 && s[0] == '0'))
      return std::nullopt;
    unsigned v = 0;
    std::from_chars(s.data(), s.data() + digits, v);
    if (v > 255) return std::nullopt;
    value = (value << 8) | v;
    s.remove_prefix(digits);
  }
  if (!s.empty()) return std::nullopt;
  return value;
}

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Parses a run of colon-separated groups (possibly ending in a dotted quad).
bool ParseV6Groups(std::string_view s, std::vector<uint16_t>* out,
                   bool allow_v4_tail) {
  if (s.empty()) return true;
  size_t pos = 0;
  while (true) {
    size_t colon = s.find(':', pos);
    std::string_view group = s.substr(pos, colon == std::string_view::npos
                                               ? std::string_view::npos
                                               : colon - pos);
    if (colon == std::string_view::npos && allow_v4_tail &&
        group.find('.') != std::string_view::npos) {
      auto v4 = ParseV4(group);
      if (!v4) return false;
      out->push_back(static_cast<uint16_t>(*v4 >> 16));
      out->push_back(static_cast<uint16_t>(*v4 & 0xffff));
      return true;
    }
    if (group.empty() || group.size() > 4) return false;
    unsigned v = 0;
    for (char c : group) {
      int d = HexDigit(c);
      if (d < 0) return false;
      v = v * 16 + static_cast<unsigned>(d);
    }
    out->push_back(static_cast<uint16_t>(v));
    if (out->size() > 8) return false;
    if (colon == std::string_view::npos) return true;
    pos = colon + 1;
  }
}

std::optional<Uint128> ParseV6(std::string_view s) {
  if (s.size() > 45) return std::nullopt;
  std::vector<uint16_t> head, tail;
  size_t gap = s.find("::");
  if (gap != std::string_view::npos) {
    if (s.find("::", gap + 1) != std::string_view::npos) return std::nullopt;
    if (!ParseV6Groups(s.substr(0, gap), &head, false)) return std::nullopt;
    if (!ParseV6Groups(s.substr(gap + 2), &tail, true)) return std::nullopt;
    if (head.size() + tail.size() > 7) return std::nullopt;
  } else {
    if (!ParseV6Groups(s, &head, true) || head.size() != 8) return std::nullopt;
  }
  std::array<uint16_t, 8> groups{};
  std::copy(head.begin(), head.end(), groups.begin());
  std::copy(tail.begin(), tail.end(), groups.end() - tail.size());
  Uint128 v = 0;
  for (uint16_t g : groups) v = (v << 16) | g;
  return v;
}

}  // namespace

Uint128 FamilyMax(IpFamily f) {
  return f == IpFamily::kV4 ? Uint128{0xffffffffu} : ~Uint128{0};
}

std::optional<IpAddress> IpAddress::Parse(std::string_view text) {
  if (text.find(':') != std::string_view::npos) {
    auto v = ParseV6(text);
    if (!v) return std::nullopt;
    return IpAddress{IpFamily::kV6, *v};
  }
  auto v = ParseV4(text);
  if (!v) return std::nullopt;
  return IpAddress::V4(*v);
}

std::optional<IpAddress> IpAddress::FromBytes(const uint8_t* data,
                                              size_t len) {
  if (len != 4 && len != 16) return std::nullopt;
  Uint128 v = 0;
  for (size_t i = 0; i < len; ++i) v = (v << 8) | data[i];
  return IpAddress{len == 4 ? IpFamily::kV4 : IpFamily::kV6, v};
}

std::vector<uint8_t> IpAddress::ToBytes() const {
  size_t len = family == IpFamily::kV4 ? 4 : 16;
  std::vector<uint8_t> out(len);
  for (size_t i = 0; i < len; ++i)
    out[len - 1 - i] = static_cast<uint8_t>(value >> (8 * i));
  return out;
}

std::string IpAddress::ToString() const {
  if (family == IpFamily::kV4) {
    uint32_t v = static_cast<uint32_t>(value);
    return std::to_string(v >> 24) + "." + std::to_string((v >> 16) & 255) +
           "." + std::to_string((v >> 8) & 255) + "." +
           std::to_string(v & 255);
  }
  std::array<uint16_t, 8> g{};
  for (int i = 0; i < 8; ++i)
    g[7 - i] = static_cast<uint16_t>(value >> (16 * i));
  // RFC 5952: compress the longest run (>= 2) of zero groups, leftmost.
  int best = -1, best_len = 0;
  for (int i = 0; i < 8;) {
    if (g[i] != 0) { ++i; continue; }
    int j = i;
    while (j < 8 && g[j] == 0) ++j;
    if (j - i > best_len && j - i >= 2) { best = i; best_len = j - i; }
    i = j;
  }
  static constexpr char kHex[] = "0123456789abcdef";
  auto hex = [](uint16_t v) {
    std::string s;
    bool started = false;
    for (int shift = 12; shift >= 0; shift -= 4) {
      int d = (v >> shift) & 15;
      if (d || started || shift == 0) { s += kHex[d]; started = true; }
    }
    return s;
  };
  std::string out;
  for (int i = 0; i < 8; ++i) {
    if (i == best) {
      out += "::";
      i += best_len - 1;
      continue;
    }
    if (!out.empty() && out.back() != ':') out += ':';
    out += hex(g[i]);
  }
  return out;
}

std::optional<IpRange> IpRange::FromPrefix(const IpAddress& a, int len) {
  int bits = FamilyBits(a.family);
  if (len < 0 || len > bits) return std::nullopt;
  Uint128 host_mask =
      len == bits ? Uint128{0}
                  : (len == 0 ? FamilyMax(a.family)
                              : (FamilyMax(a.family) >> len));
  if (a.value & host_mask) return std::nullopt;
  return IpRange{a, {a.family, a.value | host_mask}};
}

std::optional<IpRange> IpRange::Parse(std::string_view text,
                                      std::string* why) {
  auto fail = [&](const std::string& m) -> std::optional<IpRange> {
    if (why) *why = m;
    return std::nullopt;
  };
  size_t slash = text.find('/');
  if (slash != std::string_view::npos) {
    auto addr = IpAddress::Parse(text.substr(0, slash));
    if (!addr) return fail("'" + std::string(text.substr(0, slash)) +
                           "' is not an IPv4 or IPv6 address");
    std::string_view len_text = text.substr(slash + 1);
    int len = -1;
    auto [p, ec] = std::from_chars(len_text.data(),
                                   len_text.data() + len_text.size(), len);
    if (ec != std::errc() || p != len_text.data() + len_text.size() ||
        len < 0 || len > FamilyBits(addr->family))
      return fail("prefix length '" + std::string(len_text) +
                  "' must be 0.." + std::to_string(FamilyBits(addr->family)));
    auto r = FromPrefix(*addr, len);
    if (!r) return fail("'" + std::string(text) +
                        "' has host bits set beyond the prefix length");
    return r;
  }
  size_t dash = text.find('-');
  if (dash != std::string_view::npos) {
    auto lo = IpAddress::Parse(text.substr(0, dash));
    auto hi = IpAddress::Parse(text.substr(dash + 1));
    if (!lo || !hi) return fail("'" + std::string(text) +
                                "' is not a range ADDRESS-ADDRESS");
    if (lo->family != hi->family)
      return fail("range '" + std::string(text) + "' mixes IPv4 and IPv6");
    if (lo->value > hi->value)
      return fail("range '" + std::string(text) + "' ends before it starts");
    return IpRange{*lo, *hi};
  }
  auto a = IpAddress::Parse(text);
  if (!a) return fail("'" + std::string(text) +
                      "' is not an address, prefix or range");
  return Host(*a);
}

std::optional<IpRange> IpRange::Intersect(const IpRange& r) const {
  if (!Overlaps(r)) return std::nullopt;
  return IpRange{{family(), std::max(start.value, r.start.value)},
                 {family(), std::min(end.value, r.end.value)}};
}

std::vector<IpRange> IpRange::Subtract(const IpRange& r) const {
  if (!Overlaps(r)) return {*this};
  std::vector<IpRange> out;
  if (r.start.value > start.value)
    out.push_back({start, {family(), r.start.value - 1}});
  if (r.end.value < end.value)
    out.push_back({{family(), r.end.value + 1}, end});
  return out;
}

std::string IpRange::ToString() const {
  if (start == end) return start.ToString();
  Uint128 span = end.value - start.value;
  // A prefix when span+1 is a power of two and start is aligned to it.
  if (((span + 1) & span) == 0 && (start.value & span) == 0) {
    int host_bits = 0;
    while (host_bits < 128 && ((span >> host_bits) & 1)) ++host_bits;
    return start.ToString() + "/" +
           std::to_string(FamilyBits(family()) - host_bits);
  }
  return start.ToString() + "-" + end.ToString();
}

std::optional<PortRange> PortRange::Intersect(const PortRange& r) const {
  PortRange out{std::max(low, r.low), std::min(high, r.high)};
  if (out.low > out.high) return std::nullopt;
  return out;
}

std::string PortRange::ToString() const {
  if (IsAny()) return "any";
  if (low == high) return std::to_string(low);
  return std::to_string(low) + "-" + std::to_string(high);
}

std::optional<uint8_t> ParseIpProtocol(std::string_view text) {
  if (text == "any") return kAnyProtocol;
  if (text == "icmp") return 1;
  if (text == "tcp") return 6;
  if (text == "udp") return 17;
  if (text == "gre") return 47;
  if (text == "icmpv6" || text == "ipv6-icmp") return 58;
  if (text == "sctp") return 132;
  unsigned v = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || p != text.data() + text.size() || v > 255)
    return std::nullopt;
  return static_cast<uint8_t>(v);
}

std::string IpProtocolName(uint8_t proto) {
  switch (proto) {
    case 0: return "any";
    case 1: return "icmp";
    case 6: return "tcp";
    case 17: return "udp";
    case 47: return "gre";
    case 58: return "icmpv6";
    case 132: return "sctp";
    default: return std::to_string(proto);
  }
}

bool TrafficSelector::Contains(const TrafficSelector& o) const {
  return addresses.Contains(o.addresses) &&
         (protocol == kAnyProtocol || protocol == o.protocol) &&
         ports.Contains(o.ports);
}

bool TrafficSelector::Overlaps(const TrafficSelector& o) const {
  return Intersect(o).has_value();
}

std::optional<TrafficSelector> TrafficSelector::Intersect(
    const TrafficSelector& o) const {
  auto addr = addresses.Intersect(o.addresses);
  if (!addr) return std::nullopt;
  uint8_t proto = protocol;
  if (protocol == kAnyProtocol) proto = o.protocol;
  else if (o.protocol != kAnyProtocol && o.protocol != protocol)
    return std::nullopt;
  auto p = ports.Intersect(o.ports);
  if (!p) return std::nullopt;
  return TrafficSelector{*addr, proto, *p};
}

std::string TrafficSelector::ToString() const {
  std::string s = addresses.ToString();
  if (protocol != kAnyProtocol) s += " " + IpProtocolName(protocol);
  if (!ports.IsAny()) s += " port " + ports.ToString();
  return s;
}

std::vector<TrafficSelector> NarrowSelectors(
    const std::vector<TrafficSelector>& proposed,
    const std::vector<TrafficSelector>& allowed) {
  std::vector<TrafficSelector> out;
  for (const auto& p : proposed)
    for (const auto& a : allowed)
      if (auto i = p.Intersect(a)) {
        if (std::find(out.begin(), out.end(), *i) == out.end())
          out.push_back(*i);
      }
  return out;
}

std::vector<TrafficSelector> SubtractAddresses(
    const std::vector<TrafficSelector>& selectors,
    const std::vector<IpRange>& taken) {
  std::vector<TrafficSelector> current = selectors;
  for (const auto& t : taken) {
    std::vector<TrafficSelector> next;
    for (const auto& ts : current)
      for (const auto& piece : ts.addresses.Subtract(t))
        next.push_back({piece, ts.protocol, ts.ports});
    current = std::move(next);
  }
  return current;
}

}  // namespace ike::policy
