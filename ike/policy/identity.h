// IKEv2 identities (RFC 7296 section 3.5, RFC 7619 ID_NULL) and the PAD's
// peer-ID matchers (RFC 4301 section 4.4.3.1).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ike/policy/address.h"
#include "ike/wire/constants.h"

namespace ike::policy {

using ike::wire::IdType;

struct Identity {
  IdType type = IdType::kNull;
  // Identification Data exactly as carried in the ID payload.
  std::vector<uint8_t> data;
  // Human form for DER DNs ("CN=host,O=Example"); derived for other types.
  std::string printable;

  static Identity Null() { return {IdType::kNull, {}, "null"}; }
  static Identity Address(const IpAddress& a);
  static Identity Fqdn(std::string_view name);
  static Identity Rfc822(std::string_view addr);
  static Identity KeyId(std::vector<uint8_t> bytes);
  static Identity DerDn(std::vector<uint8_t> der, std::string printable);

  // Text form "TYPE:VALUE" used in config files and logs, e.g.
  // "fqdn:host.example.com", "ipv4:192.0.2.1", "keyid:0a0b", "null".
  std::string ToString() const;
  // Payload equality: type and data (RFC 4301 exact match).
  bool operator==(const Identity& o) const {
    return type == o.type && data == o.data;
  }
};

// Parses the non-DN text forms ("ipv4:", "ipv6:", "fqdn:", "email:",
// "keyid:" hex, "null"). DNs need an ASN.1 encoder and are built by the
// config loader. Returns nullopt with a reason.
std::optional<Identity> ParseSimpleIdentity(std::string_view text,
                                            std::string* why);

// How a PAD entry matches the ID a peer asserted.
struct IdMatcher {
  enum class Kind {
    kAny,             // every ID, including ID_NULL
    kExact,           // type and data equal
    kDomainSuffix,    // "*.example.com": FQDNs strictly below the domain
    kEmailDomain,     // "*@example.com": RFC822 addresses at that domain
    kSubnet,          // IPv4/IPv6 address IDs inside a prefix or range
  };
  Kind kind = Kind::kAny;
  Identity exact;
  std::string suffix;  // lower-case domain for the wildcard kinds
  IpRange subnet;

  bool Matches(const Identity& id) const;
  std::string ToString() const;
  bool operator==(const IdMatcher& o) const {
    return kind == o.kind && exact == o.exact && suffix == o.suffix &&
           (kind != Kind::kSubnet || subnet == o.subnet);
  }
};

}  // namespace ike::policy
