#include "tools/ikedecode/render.h"

#include <arpa/inet.h>

#include <cstdio>
#include <sstream>
#include <variant>

#include "ike/wire/names.h"

namespace ikedecode {
namespace {

using namespace ike::wire;

std::string Quote(const std::string& text) {
  std::string out = "\"";
  for (unsigned char c : text) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20 || c >= 0x7f) {
      char escape[8];
      std::snprintf(escape, sizeof escape, "\\u%04x", c);
      out += escape;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

// Minimal ordered JSON object builder; values are already-encoded JSON.
class Object {
 public:
  Object& Raw(const std::string& key, const std::string& json) {
    fields_ += (fields_.empty() ? "" : ",") + Quote(key) + ":" + json;
    return *this;
  }
  Object& Str(const std::string& key, const std::string& value) { return Raw(key, Quote(value)); }
  Object& Num(const std::string& key, uint64_t value) { return Raw(key, std::to_string(value)); }
  Object& Bool(const std::string& key, bool value) { return Raw(key, value ? "true" : "false"); }
  std::string Json() const { return "{" + fields_ + "}"; }

 private:
  std::string fields_;
};

std::string Array(const std::vector<std::string>& items) {
  std::string out = "[";
  for (size_t i = 0; i < items.size(); ++i) out += (i ? "," : "") + items[i];
  return out + "]";
}

std::string SpiHex(uint64_t spi) {
  char text[17];
  std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(spi));
  return text;
}

std::string AddressText(std::span<const uint8_t> address) {
  if (address.size() != 4 && address.size() != 16) return Hex(address);
  char text[INET6_ADDRSTRLEN] = {};
  inet_ntop(address.size() == 4 ? AF_INET : AF_INET6, address.data(), text, sizeof text);
  return text;
}

bool Printable(std::span<const uint8_t> bytes) {
  for (uint8_t c : bytes) {
    if (c < 0x20 || c >= 0x7f) return false;
  }
  return true;
}

// Human text of identification data, by ID type.
std::string IdText(const IdPayload& id) {
  switch (id.type) {
    case IdType::kIpv4Addr:
    case IdType::kIpv6Addr:
      return AddressText(id.data);
    case IdType::kFqdn:
    case IdType::kRfc822Addr:
      return std::string(id.data.begin(), id.data.end());
    case IdType::kNull:
      return "";
    default:
      return Printable(id.data) ? std::string(id.data.begin(), id.data.end()) : Hex(id.data);
  }
}

std::string TransformJson(const Transform& t) {
  Object o;
  o.Num("type", static_cast<uint8_t>(t.type))
      .Str("type_name", TransformTypeName(t.type))
      .Num("id", t.id)
      .Str("name", TransformIdName(t.type, t.id));
  if (auto key_length = t.KeyLength()) o.Num("key_length", *key_length);
  return o.Json();
}

std::string SelectorJson(const TrafficSelector& s) {
  Object o;
  o.Num("ts_type", static_cast<uint8_t>(s.type))
      .Str("ts_type_name", TsTypeName(s.type))
      .Num("ip_protocol", s.ip_protocol)
      .Num("start_port", s.start_port)
      .Num("end_port", s.end_port)
      .Str("start", AddressText(s.start_address))
      .Str("end", AddressText(s.end_address));
  return o.Json();
}

void AddBodyJson(const PayloadBody& body, Object& o) {
  struct Visitor {
    Object& o;
    void operator()(const SaPayload& p) {
      std::vector<std::string> proposals;
      for (const Proposal& proposal : p.proposals) {
        std::vector<std::string> transforms;
        for (const Transform& t : proposal.transforms) transforms.push_back(TransformJson(t));
        proposals.push_back(Object()
                                .Num("number", proposal.number)
                                .Num("protocol", static_cast<uint8_t>(proposal.protocol))
                                .Str("protocol_name", ProtocolName(static_cast<uint8_t>(proposal.protocol)))
                                .Str("spi", Hex(proposal.spi))
                                .Raw("transforms", Array(transforms))
                                .Json());
      }
      o.Raw("proposals", Array(proposals));
    }
    void operator()(const KePayload& p) {
      o.Num("group", static_cast<uint16_t>(p.group))
          .Str("group_name", TransformIdName(TransformType::kKe, static_cast<uint16_t>(p.group)))
          .Num("data_length", p.data.size());
    }
    void Id(const IdPayload& p) {
      o.Num("id_type", static_cast<uint8_t>(p.type))
          .Str("id_type_name", IdTypeName(p.type))
          .Str("data", Hex(p.data))
          .Str("text", IdText(p));
    }
    void operator()(const IdiPayload& p) { Id(p); }
    void operator()(const IdrPayload& p) { Id(p); }
    void operator()(const CertPayload& p) {
      o.Num("encoding", static_cast<uint8_t>(p.encoding))
          .Str("encoding_name", CertEncodingName(p.encoding))
          .Num("data_length", p.data.size());
    }
    void operator()(const CertReqPayload& p) {
      o.Num("encoding", static_cast<uint8_t>(p.encoding))
          .Str("encoding_name", CertEncodingName(p.encoding))
          .Str("authority", Hex(p.authority));
    }
    void operator()(const AuthPayload& p) {
      o.Num("method", static_cast<uint8_t>(p.method))
          .Str("method_name", AuthMethodName(p.method))
          .Num("data_length", p.data.size());
    }
    void operator()(const NoncePayload& p) { o.Str("data", Hex(p.data)); }
    void operator()(const NotifyPayload& p) {
      o.Num("protocol", p.protocol)
          .Num("notify_type", static_cast<uint16_t>(p.type))
          .Str("notify_name", NotifyName(p.type))
          .Str("spi", Hex(p.spi))
          .Str("data", Hex(p.data));
    }
    void operator()(const DeletePayload& p) {
      std::vector<std::string> spis;
      for (const Bytes& spi : p.spis) spis.push_back(Quote(Hex(spi)));
      o.Num("protocol", static_cast<uint8_t>(p.protocol))
          .Num("spi_size", p.spi_size)
          .Raw("spis", Array(spis));
    }
    void operator()(const VendorIdPayload& p) { o.Str("data", Hex(p.data)); }
    void Ts(const TsPayload& p) {
      std::vector<std::string> selectors;
      for (const TrafficSelector& s : p.selectors) selectors.push_back(SelectorJson(s));
      o.Raw("selectors", Array(selectors));
    }
    void operator()(const TsiPayload& p) { Ts(p); }
    void operator()(const TsrPayload& p) { Ts(p); }
    void operator()(const SkPayload& p) {
      o.Num("first_inner", static_cast<uint8_t>(p.first_inner))
          .Str("first_inner_name", PayloadName(static_cast<uint8_t>(p.first_inner)))
          .Num("body_length", p.body.size());
    }
    void operator()(const SkfPayload& p) {
      o.Num("fragment_number", p.fragment_number)
          .Num("total_fragments", p.total_fragments)
          .Num("first_inner", static_cast<uint8_t>(p.first_inner))
          .Num("body_length", p.body.size());
    }
    void operator()(const CpPayload& p) {
      std::vector<std::string> attributes;
      for (const ConfigAttribute& a : p.attributes) {
        attributes.push_back(Object().Num("type", a.type).Str("value", Hex(a.value)).Json());
      }
      o.Num("cfg_type", static_cast<uint8_t>(p.type))
          .Str("cfg_type_name", CfgTypeName(p.type))
          .Raw("attributes", Array(attributes));
    }
    void operator()(const EapPayload& p) { o.Str("data", Hex(p.message)); }
    void operator()(const UnknownPayload& p) { o.Num("body_length", p.body.size()); }
  };
  std::visit(Visitor{o}, body);
}

std::string PayloadsJson(const std::vector<Payload>& payloads) {
  std::vector<std::string> items;
  for (const Payload& payload : payloads) {
    Object p;
    p.Num("type", payload.TypeCode())
        .Str("name", PayloadName(payload.TypeCode()))
        .Bool("critical", payload.critical);
    AddBodyJson(payload.body, p);
    items.push_back(p.Json());
  }
  return Array(items);
}

std::string SaText(const SaPayload& sa) {
  std::string out;
  for (const Proposal& p : sa.proposals) {
    out += "\n  proposal " + std::to_string(p.number) + " " +
           ProtocolName(static_cast<uint8_t>(p.protocol));
    if (!p.spi.empty()) out += " SPI " + Hex(p.spi);
    out += ":";
    for (size_t i = 0; i < p.transforms.size(); ++i) {
      const Transform& t = p.transforms[i];
      out += (i ? ", " : " ") + TransformIdName(t.type, t.id);
      if (auto key_length = t.KeyLength()) out += "/" + std::to_string(*key_length);
    }
  }
  return out;
}

std::string TsText(const TsPayload& ts) {
  std::string out;
  for (const TrafficSelector& s : ts.selectors) {
    out += "\n  " + AddressText(s.start_address) + "-" + AddressText(s.end_address) +
           " proto " + std::to_string(s.ip_protocol) + " ports " +
           std::to_string(s.start_port) + "-" + std::to_string(s.end_port);
  }
  return out;
}

std::string BodyText(const PayloadBody& body) {
  struct Visitor {
    std::string operator()(const SaPayload& p) { return SaText(p); }
    std::string operator()(const KePayload& p) {
      return TransformIdName(TransformType::kKe, static_cast<uint16_t>(p.group)) + ", " +
             std::to_string(p.data.size()) + " bytes";
    }
    std::string Id(const IdPayload& p) { return IdTypeName(p.type) + " " + IdText(p); }
    std::string operator()(const IdiPayload& p) { return Id(p); }
    std::string operator()(const IdrPayload& p) { return Id(p); }
    std::string operator()(const CertPayload& p) {
      return CertEncodingName(p.encoding) + ", " + std::to_string(p.data.size()) + " bytes";
    }
    std::string operator()(const CertReqPayload& p) {
      return CertEncodingName(p.encoding) + ", " + std::to_string(p.authority.size() / 20) +
             " CA hashes";
    }
    std::string operator()(const AuthPayload& p) {
      return AuthMethodName(p.method) + ", " + std::to_string(p.data.size()) + " bytes";
    }
    std::string operator()(const NoncePayload& p) { return std::to_string(p.data.size()) + " bytes"; }
    std::string operator()(const NotifyPayload& p) {
      std::string out = NotifyName(p.type);
      if (p.protocol) out += " " + ProtocolName(p.protocol);
      if (!p.spi.empty()) out += " SPI " + Hex(p.spi);
      if (!p.data.empty()) out += " data " + Hex(p.data);
      return out;
    }
    std::string operator()(const DeletePayload& p) {
      std::string out = ProtocolName(static_cast<uint8_t>(p.protocol));
      for (const Bytes& spi : p.spis) out += " " + Hex(spi);
      return out;
    }
    std::string operator()(const VendorIdPayload& p) {
      return Printable(p.data) ? "\"" + std::string(p.data.begin(), p.data.end()) + "\"" : Hex(p.data);
    }
    std::string operator()(const TsiPayload& p) { return TsText(p); }
    std::string operator()(const TsrPayload& p) { return TsText(p); }
    std::string operator()(const SkPayload& p) {
      return "encrypted, first inner " + PayloadName(static_cast<uint8_t>(p.first_inner)) + ", " +
             std::to_string(p.body.size()) + " bytes";
    }
    std::string operator()(const SkfPayload& p) {
      return "fragment " + std::to_string(p.fragment_number) + "/" +
             std::to_string(p.total_fragments) + ", first inner " +
             PayloadName(static_cast<uint8_t>(p.first_inner)) + ", " +
             std::to_string(p.body.size()) + " bytes";
    }
    std::string operator()(const CpPayload& p) {
      std::string out = CfgTypeName(p.type);
      for (const ConfigAttribute& a : p.attributes) out += " attr " + std::to_string(a.type);
      return out;
    }
    std::string operator()(const EapPayload& p) { return std::to_string(p.message.size()) + " bytes"; }
    std::string operator()(const UnknownPayload& p) {
      return "skipped, " + std::to_string(p.body.size()) + " bytes";
    }
  };
  return std::visit(Visitor{}, body);
}

void PayloadsText(const std::vector<Payload>& payloads, const std::string& indent,
                  std::ostringstream& out) {
  for (const Payload& payload : payloads) {
    std::string name = PayloadName(payload.TypeCode());
    name.resize(std::max<size_t>(name.size() + 1, 9), ' ');
    std::string body = BodyText(payload.body);
    // Multi-line bodies (SA, TS) are indented one level below the payload.
    for (size_t at = 0; (at = body.find('\n', at)) != std::string::npos; at += 1 + indent.size()) {
      body.insert(at + 1, indent);
    }
    out << indent << name << (payload.critical ? "(critical) " : "") << body << "\n";
  }
}

std::string WhereText(const Observation& ob) {
  std::string out = "#" + std::to_string(ob.index);
  if (ob.datagram) {
    out += " " + ob.datagram->source + ":" + std::to_string(ob.datagram->source_port) +
           " -> " + ob.datagram->destination + ":" +
           std::to_string(ob.datagram->destination_port);
  }
  return out;
}

}  // namespace

std::string Hex(std::span<const uint8_t> bytes) {
  static const char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (uint8_t b : bytes) {
    out += kDigits[b >> 4];
    out += kDigits[b & 0x0f];
  }
  return out;
}

std::string RenderText(const Observation& ob) {
  std::ostringstream out;
  out << WhereText(ob);
  if (!ob.decoded.ok()) {
    out << "  undecodable: " << ob.decoded.error().message << " -> a responder answers "
        << NotifyName(ob.decoded.error().notify) << "\n";
    return out.str();
  }
  const Header& h = ob.decoded->header;
  out << "  " << ExchangeName(h.exchange) << (h.IsResponse() ? " response" : " request")
      << (h.IsInitiator() ? " (from initiator)" : " (from responder)") << " msgid "
      << h.message_id << " length " << h.length << "\n";
  out << "  SPIi " << SpiHex(h.initiator_spi) << "  SPIr " << SpiHex(h.responder_spi) << "\n";
  PayloadsText(ob.decoded->payloads, "    ", out);
  if (ob.decrypted) {
    const Decrypted& d = *ob.decrypted;
    if (!d.error.empty()) {
      out << "    decryption failed: " << d.error << "\n";
    } else if (!d.payloads.ok()) {
      out << "    decrypted, but the inner payloads do not decode: " << d.payloads.error().message
          << "\n";
    } else {
      out << "    decrypted (" << d.plaintext.size() << " bytes):\n";
      PayloadsText(d.payloads.value(), "      ", out);
    }
  }
  return out.str();
}

std::string RenderJson(const Observation& ob) {
  Object o;
  o.Num("index", ob.index);
  if (ob.datagram) {
    o.Str("src", ob.datagram->source)
        .Str("dst", ob.datagram->destination)
        .Num("sport", ob.datagram->source_port)
        .Num("dport", ob.datagram->destination_port)
        .Bool("non_esp_marker", ob.datagram->had_non_esp_marker);
  }
  o.Bool("ok", ob.decoded.ok());
  if (!ob.decoded.ok()) {
    const WireError& e = ob.decoded.error();
    o.Raw("error", Object()
                       .Num("notify", static_cast<uint16_t>(e.notify))
                       .Str("notify_name", NotifyName(e.notify))
                       .Num("offset", e.offset)
                       .Str("message", e.message)
                       .Json());
    return o.Json();
  }
  const Header& h = ob.decoded->header;
  o.Raw("header", Object()
                      .Str("ispi", SpiHex(h.initiator_spi))
                      .Str("rspi", SpiHex(h.responder_spi))
                      .Num("first_payload", h.first_payload)
                      .Num("major_version", h.major_version)
                      .Num("minor_version", h.minor_version)
                      .Num("exchange", static_cast<uint8_t>(h.exchange))
                      .Str("exchange_name", ExchangeName(h.exchange))
                      .Num("flags", h.flags)
                      .Bool("initiator", h.IsInitiator())
                      .Bool("response", h.IsResponse())
                      .Num("message_id", h.message_id)
                      .Num("length", h.length)
                      .Json());
  o.Raw("payloads", PayloadsJson(ob.decoded->payloads));
  o.Bool("reencodes_identically", ob.reencodes_identically);
  if (ob.decrypted) {
    const Decrypted& d = *ob.decrypted;
    Object inner;
    inner.Bool("ok", d.error.empty() && d.payloads.ok());
    if (!d.error.empty()) {
      inner.Str("error", d.error);
    } else if (!d.payloads.ok()) {
      inner.Str("error", d.payloads.error().message);
    } else {
      inner.Num("plaintext_length", d.plaintext.size())
          .Num("first_inner", d.first_inner)
          .Bool("reencodes_identically", d.reencodes_identically)
          .Raw("payloads", PayloadsJson(d.payloads.value()));
    }
    o.Raw("decrypted", inner.Json());
  }
  return o.Json();
}

}  // namespace ikedecode
