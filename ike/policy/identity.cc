#include "ike/policy/identity.h"

#include <algorithm>
#include <cctype>

namespace ike::policy {
namespace {

std::string Lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) {
    return static_cast<char>(std::tolower(c));
  });
  return out;
}

std::string Hex(const std::vector<uint8_t>& bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string s;
  for (uint8_t b : bytes) {
    s += kHex[b >> 4];
    s += kHex[b & 15];
  }
  return s;
}

bool ParseHex(std::string_view text, std::vector<uint8_t>* out) {
  if (text.empty() || text.size() % 2) return false;
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  for (size_t i = 0; i < text.size(); i += 2) {
    int hi = nibble(text[i]), lo = nibble(text[i + 1]);
    if (hi < 0 || lo < 0) return false;
    out->push_back(static_cast<uint8_t>(hi * 16 + lo));
  }
  return true;
}

std::string AsText(const std::vector<uint8_t>& data) {
  return std::string(data.begin(), data.end());
}

}  // namespace

Identity Identity::Address(const IpAddress& a) {
  return {a.family == IpFamily::kV4 ? IdType::kIpv4Addr : IdType::kIpv6Addr,
          a.ToBytes(), a.ToString()};
}

Identity Identity::Fqdn(std::string_view name) {
  return {IdType::kFqdn, {name.begin(), name.end()}, std::string(name)};
}

Identity Identity::Rfc822(std::string_view addr) {
  return {IdType::kRfc822Addr, {addr.begin(), addr.end()}, std::string(addr)};
}

Identity Identity::KeyId(std::vector<uint8_t> bytes) {
  std::string printable = Hex(bytes);
  return {IdType::kKeyId, std::move(bytes), std::move(printable)};
}

Identity Identity::DerDn(std::vector<uint8_t> der, std::string printable) {
  return {IdType::kDerAsn1Dn, std::move(der), std::move(printable)};
}

std::string Identity::ToString() const {
  switch (type) {
    case IdType::kIpv4Addr:
    case IdType::kIpv6Addr: {
      auto a = IpAddress::FromBytes(data.data(), data.size());
      std::string prefix = type == IdType::kIpv4Addr ? "ipv4:" : "ipv6:";
      return prefix + (a ? a->ToString() : "<bad length " +
                                               std::to_string(data.size()) +
                                               ">");
    }
    case IdType::kFqdn: return "fqdn:" + AsText(data);
    case IdType::kRfc822Addr: return "email:" + AsText(data);
    case IdType::kDerAsn1Dn: return "dn:" + printable;
    case IdType::kKeyId: return "keyid:" + Hex(data);
    case IdType::kNull: return "null";
    default:
      return "type" + std::to_string(static_cast<int>(type)) + ":" +
             Hex(data);
  }
}

std::optional<Identity> ParseSimpleIdentity(std::string_view text,
                                            std::string* why) {
  if (text == "null") return Identity::Null();
  size_t colon = text.find(':');
  if (colon == std::string_view::npos) {
    *why = "expected TYPE:VALUE with TYPE one of ipv4, ipv6, fqdn, email, "
           "dn, keyid, or the word 'null'";
    return std::nullopt;
  }
  std::string type = Lower(text.substr(0, colon));
  std::string_view value = text.substr(colon + 1);
  if (value.empty()) {
    *why = "identity '" + std::string(text) + "' has an empty value";
    return std::nullopt;
  }
  if (type == "ipv4" || type == "ipv6") {
    auto a = IpAddress::Parse(value);
    if (!a || (a->family == IpFamily::kV4) != (type == "ipv4")) {
      *why = "'" + std::string(value) + "' is not an " +
             (type == "ipv4" ? "IPv4" : "IPv6") + " address";
      return std::nullopt;
    }
    return Identity::Address(*a);
  }
  if (type == "fqdn") {
    if (value.find('@') != std::string_view::npos) {
      *why = "an FQDN cannot contain '@' (use email:)";
      return std::nullopt;
    }
    return Identity::Fqdn(value);
  }
  if (type == "email" || type == "rfc822") {
    if (value.find('@') == std::string_view::npos) {
      *why = "an email identity needs a '@'";
      return std::nullopt;
    }
    return Identity::Rfc822(value);
  }
  if (type == "keyid") {
    std::vector<uint8_t> bytes;
    if (!ParseHex(value, &bytes)) {
      *why = "keyid value must be an even number of hex digits";
      return std::nullopt;
    }
    return Identity::KeyId(std::move(bytes));
  }
  *why = "unknown identity type '" + type +
         "'; expected ipv4, ipv6, fqdn, email, dn, keyid or null";
  return std::nullopt;
}

bool IdMatcher::Matches(const Identity& id) const {
  switch (kind) {
    case Kind::kAny: return true;
    case Kind::kExact: return id == exact;
    case Kind::kDomainSuffix: {
      if (id.type != IdType::kFqdn) return false;
      std::string name = Lower(AsText(id.data));
      std::string dotted = "." + suffix;
      return name.size() > dotted.size() &&
             name.compare(name.size() - dotted.size(), dotted.size(),
                          dotted) == 0;
    }
    case Kind::kEmailDomain: {
      if (id.type != IdType::kRfc822Addr) return false;
      std::string addr = Lower(AsText(id.data));
      size_t at = addr.rfind('@');
      return at != std::string::npos && at > 0 &&
             addr.substr(at + 1) == suffix;
    }
    case Kind::kSubnet: {
      if (id.type != IdType::kIpv4Addr && id.type != IdType::kIpv6Addr)
        return false;
      auto a = IpAddress::FromBytes(id.data.data(), id.data.size());
      return a && subnet.Contains(*a);
    }
  }
  return false;
}

std::string IdMatcher::ToString() const {
  switch (kind) {
    case Kind::kAny: return "any";
    case Kind::kExact: return exact.ToString();
    case Kind::kDomainSuffix: return "fqdn:*." + suffix;
    case Kind::kEmailDomain: return "email:*@" + suffix;
    case Kind::kSubnet:
      return std::string(subnet.family() == IpFamily::kV4 ? "ipv4:"
                                                          : "ipv6:") +
             subnet.ToString();
  }
  return "?";
}

}  // namespace ike::policy
