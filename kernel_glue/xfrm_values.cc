#include <arpa/inet.h>

#include <cstdio>
#include <cstring>
#include <type_traits>

#include "kernel_glue/xfrm_interface.h"
#include "kernel_glue/xfrm_rules.h"

namespace kernel_glue {

std::string KernelError::ToString() const {
  std::string text = operation + ": " + std::strerror(error_number) + " (errno " +
                     std::to_string(error_number) + ")";
  if (!kernel_message.empty()) text += ": kernel says \"" + kernel_message + "\"";
  return text;
}

std::optional<IpAddress> IpAddress::Parse(std::string_view text) {
  std::string copy(text);
  IpAddress address;
  if (inet_pton(AF_INET, copy.c_str(), address.bytes.data()) == 1) {
    address.family = AddressFamily::kIpv4;
    return address;
  }
  if (inet_pton(AF_INET6, copy.c_str(), address.bytes.data()) == 1) {
    address.family = AddressFamily::kIpv6;
    return address;
  }
  return std::nullopt;
}

IpAddress IpAddress::Any(AddressFamily family) {
  IpAddress address;
  address.family = family;
  return address;
}

std::string IpAddress::ToString() const {
  char buffer[INET6_ADDRSTRLEN] = {};
  inet_ntop(family == AddressFamily::kIpv4 ? AF_INET : AF_INET6, bytes.data(),
            buffer, sizeof(buffer));
  return buffer;
}

Selector Selector::HostToHost(const IpAddress& src, const IpAddress& dst) {
  Selector selector;
  selector.src = src;
  selector.dst = dst;
  selector.src_prefix = static_cast<uint8_t>(src.size() * 8);
  selector.dst_prefix = static_cast<uint8_t>(dst.size() * 8);
  return selector;
}

std::string Selector::ToString() const {
  std::string text = src.ToString() + "/" + std::to_string(src_prefix);
  if (src_port != 0) text += ":" + std::to_string(src_port);
  text += " -> " + dst.ToString() + "/" + std::to_string(dst_prefix);
  if (dst_port != 0) text += ":" + std::to_string(dst_port);
  if (protocol != 0) text += " proto " + std::to_string(protocol);
  return text;
}

std::string SaId::ToString() const {
  char spi_text[16];
  std::snprintf(spi_text, sizeof(spi_text), "0x%08x", spi);
  std::string text = std::string("spi=") + spi_text + " dst=" + dst.ToString() +
                     " proto=" + std::to_string(protocol);
  if (mark) text += " mark=" + std::to_string(mark->value) + "/" + std::to_string(mark->mask);
  return text;
}

const char* DirectionName(Direction direction) {
  switch (direction) {
    case Direction::kIn: return "in";
    case Direction::kOut: return "out";
    case Direction::kFwd: return "fwd";
  }
  return "?";
}

std::string PolicyId::ToString() const {
  std::string text = std::string("dir ") + DirectionName(direction) + " " +
                     selector.ToString();
  if (mark) text += " mark=" + std::to_string(mark->value) + "/" + std::to_string(mark->mask);
  return text;
}

const char* CipherKernelName(Cipher cipher) {
  switch (cipher) {
    case Cipher::kAesGcm16: return "rfc4106(gcm(aes))";
    case Cipher::kChaCha20Poly1305: return "rfc7539esp(chacha20,poly1305)";
    case Cipher::kAesCbc: return "cbc(aes)";
  }
  return "";
}

const char* IntegrityKernelName(Integrity integrity) {
  switch (integrity) {
    case Integrity::kNone: return "";
    case Integrity::kHmacSha256_128: return "hmac(sha256)";
    case Integrity::kHmacSha384_192: return "hmac(sha384)";
    case Integrity::kHmacSha512_256: return "hmac(sha512)";
  }
  return "";
}

bool IsAead(Cipher cipher) { return cipher != Cipher::kAesCbc; }

unsigned IcvBits(Cipher cipher, Integrity integrity) {
  if (IsAead(cipher)) return 128;
  switch (integrity) {
    case Integrity::kNone: return 0;
    case Integrity::kHmacSha256_128: return 128;
    case Integrity::kHmacSha384_192: return 192;
    case Integrity::kHmacSha512_256: return 256;
  }
  return 0;
}

KernelError MakeError(std::string operation, int error_number, std::string message) {
  KernelError error;
  error.operation = std::move(operation);
  error.error_number = error_number;
  error.kernel_message = std::move(message);
  return error;
}

namespace {

Status Invalid(const std::string& operation, const std::string& why) {
  return MakeError(operation, EINVAL, why);
}

bool PrefixFits(uint8_t prefix, const IpAddress& address) {
  return prefix <= address.size() * 8;
}

Status ValidateSelector(const std::string& operation, const Selector& selector) {
  if (selector.src.family != selector.dst.family)
    return Invalid(operation, "selector src and dst are of different address families");
  if (!PrefixFits(selector.src_prefix, selector.src) ||
      !PrefixFits(selector.dst_prefix, selector.dst))
    return Invalid(operation, "selector prefix length exceeds the address length");
  return Status::Ok();
}

}  // namespace

Status ValidateSa(const SaParams& sa, const Ownership& ownership) {
  const std::string operation = "install SA " + sa.id.ToString();
  if (sa.id.spi == 0) return Invalid(operation, "spi must not be 0");
  if (sa.id.protocol != kIpProtoEsp) return Invalid(operation, "only ESP (protocol 50) is supported");
  if (sa.src.family != sa.id.dst.family)
    return Invalid(operation, "src and dst are of different address families");
  if (!ownership.OwnsReqid(sa.reqid))
    return MakeError(operation, EPERM,
                     "reqid " + std::to_string(sa.reqid) + " is outside the owned range");
  const size_t key = sa.encryption_key.size();
  switch (sa.cipher) {
    case Cipher::kAesGcm16:
      if (key != 20 && key != 28 && key != 36)
        return Invalid(operation, "AES-GCM key must be 16/24/32 bytes plus a 4-byte salt");
      break;
    case Cipher::kChaCha20Poly1305:
      if (key != 36) return Invalid(operation, "ChaCha20-Poly1305 key must be 32 bytes plus a 4-byte salt");
      break;
    case Cipher::kAesCbc:
      if (key != 16 && key != 24 && key != 32)
        return Invalid(operation, "AES-CBC key must be 16, 24 or 32 bytes");
      break;
  }
  if (IsAead(sa.cipher)) {
    if (sa.integrity != Integrity::kNone)
      return Invalid(operation, "an AEAD cipher takes no separate integrity transform");
    if (!sa.integrity_key.empty()) return Invalid(operation, "integrity key given for an AEAD cipher");
  } else {
    size_t expected = 0;
    switch (sa.integrity) {
      case Integrity::kNone: return Invalid(operation, "AES-CBC needs an integrity transform");
      case Integrity::kHmacSha256_128: expected = 32; break;
      case Integrity::kHmacSha384_192: expected = 48; break;
      case Integrity::kHmacSha512_256: expected = 64; break;
    }
    if (sa.integrity_key.size() != expected)
      return Invalid(operation, "integrity key must be " + std::to_string(expected) + " bytes");
  }
  if (sa.replay_window > 4096) return Invalid(operation, "replay window above 4096 packets");
  if (sa.selector) {
    Status status = ValidateSelector(operation, *sa.selector);
    if (!status.ok()) return status;
  }
  if (sa.encap && (sa.encap->src_port == 0 || sa.encap->dst_port == 0))
    return Invalid(operation, "UDP encapsulation ports must not be 0");
  return Status::Ok();
}

namespace {

Status ValidateTemplates(const std::string& operation, PolicyAction action,
                         const std::vector<PolicyTemplate>& templates,
                         const Ownership* ownership) {
  if (action == PolicyAction::kProtect && templates.empty())
    return Invalid(operation, "a protect policy needs at least one template");
  if (action != PolicyAction::kProtect && !templates.empty())
    return Invalid(operation, "only protect policies take templates");
  for (const PolicyTemplate& t : templates) {
    if (t.mode == Mode::kTunnel && t.tunnel_src.family != t.tunnel_dst.family)
      return Invalid(operation, "tunnel endpoints are of different address families");
    if (ownership != nullptr && !ownership->OwnsReqid(t.reqid))
      return MakeError(operation, EPERM,
                       "template reqid " + std::to_string(t.reqid) + " is outside the owned range");
  }
  return Status::Ok();
}

}  // namespace

Status ValidatePolicy(const PolicyParams& policy, const Ownership& ownership) {
  const std::string operation = "install policy " + policy.id.ToString();
  Status status = ValidateSelector(operation, policy.id.selector);
  if (!status.ok()) return status;
  if (!ownership.OwnsPriority(policy.priority))
    return MakeError(operation, EPERM,
                     "priority " + std::to_string(policy.priority) + " is outside the owned band");
  return ValidateTemplates(operation, policy.action, policy.templates, &ownership);
}

Status ValidateSocketPolicy(const SocketPolicy& policy) {
  const std::string operation = std::string("set socket policy dir ") + DirectionName(policy.direction);
  if (policy.direction == Direction::kFwd)
    return Invalid(operation, "a socket policy is either in or out");
  return ValidateTemplates(operation, policy.action, policy.templates, nullptr);
}

namespace {

void AppendBytes(std::string& key, const void* data, size_t size) {
  key.append(static_cast<const char*>(data), size);
}

void AppendAddress(std::string& key, const IpAddress& address) {
  key.push_back(static_cast<char>(address.family));
  AppendBytes(key, address.bytes.data(), address.size());
}

void AppendMark(std::string& key, const std::optional<Mark>& mark) {
  Mark value = mark.value_or(Mark{});
  AppendBytes(key, &value.value, sizeof(value.value));
  AppendBytes(key, &value.mask, sizeof(value.mask));
}

}  // namespace

std::string SaKey(const SaId& id) {
  std::string key;
  AppendAddress(key, id.dst);
  AppendBytes(key, &id.spi, sizeof(id.spi));
  key.push_back(static_cast<char>(id.protocol));
  AppendMark(key, id.mark);
  return key;
}

std::string PolicyKey(const PolicyId& id) {
  std::string key;
  const Selector& s = id.selector;
  AppendAddress(key, s.src);
  AppendAddress(key, s.dst);
  const uint8_t bytes[] = {s.src_prefix, s.dst_prefix, s.protocol,
                           static_cast<uint8_t>(id.direction)};
  AppendBytes(key, bytes, sizeof(bytes));
  AppendBytes(key, &s.src_port, sizeof(s.src_port));
  AppendBytes(key, &s.dst_port, sizeof(s.dst_port));
  AppendMark(key, id.mark);
  return key;
}

std::vector<Status> XfrmInterface::Apply(const std::vector<XfrmOperation>& operations) {
  std::vector<Status> results;
  results.reserve(operations.size());
  for (const XfrmOperation& operation : operations) {
    results.push_back(std::visit(
        [this](const auto& op) -> Status {
          using Op = std::decay_t<decltype(op)>;
          if constexpr (std::is_same_v<Op, AddSaOp>) return AddSa(op.sa);
          if constexpr (std::is_same_v<Op, UpdateSaOp>) return UpdateSa(op.sa);
          if constexpr (std::is_same_v<Op, DeleteSaOp>) return DeleteSa(op.id);
          if constexpr (std::is_same_v<Op, AddPolicyOp>) return AddPolicy(op.policy);
          if constexpr (std::is_same_v<Op, UpdatePolicyOp>) return UpdatePolicy(op.policy);
          if constexpr (std::is_same_v<Op, DeletePolicyOp>) return DeletePolicy(op.id);
        },
        operation));
  }
  return results;
}

}  // namespace kernel_glue
