#include "ike/sa/fragments.h"

#include "ike/crypto/sk_payload.h"

namespace ike::sa::internal {
namespace {

constexpr size_t kIkeHeader = 28;
constexpr size_t kSkfHeader = 8;  // generic header + number + total

crypto::Result<Bytes> SealWith(crypto::SkCipher& cipher,
                               const wire::Header& header, uint8_t first_inner,
                               uint16_t number, uint16_t total,
                               crypto::ByteView plain,
                               crypto::RandomSource& random) {
  size_t body_len = cipher.BodyLength(plain.size());
  wire::Message m;
  m.header = header;
  wire::SkfPayload skf;
  skf.first_inner = wire::PayloadType(number == 1 ? first_inner : 0);
  skf.fragment_number = number;
  skf.total_fragments = total;
  skf.body.assign(body_len, 0);
  m.payloads.push_back(wire::MakePayload(std::move(skf)));
  auto encoded = wire::EncodeMessage(m);
  if (!encoded.ok())
    return crypto::MakeError(crypto::ErrorCode::kInvalidArgument,
                             "encoding fragment: " + encoded.error().message);
  Bytes out = std::move(*encoded);
  size_t prefix_len = out.size() - body_len;
  auto body =
      cipher.Protect(crypto::ByteView(out.data(), prefix_len), plain, random);
  if (!body.ok()) return body.error();
  if (body->size() != body_len)
    return crypto::MakeError(crypto::ErrorCode::kInvalidArgument,
                             "SKF body length differs from BodyLength()");
  std::copy(body->begin(), body->end(), out.begin() + prefix_len);
  return out;
}

}  // namespace

crypto::Result<Bytes> SealFragment(const crypto::TransformSet& set,
                                   IkeDirectionKeys keys,
                                   const wire::Header& header,
                                   uint8_t first_inner, uint16_t number,
                                   uint16_t total, crypto::ByteView plain,
                                   crypto::RandomSource& random) {
  auto cipher = crypto::SkCipher::Create(set, keys.encryption, keys.integrity);
  if (!cipher.ok()) return cipher.error();
  return SealWith(*cipher, header, first_inner, number, total, plain, random);
}

crypto::Result<std::vector<Bytes>> SealFragments(
    const crypto::TransformSet& set, IkeDirectionKeys keys,
    const wire::Header& header, const std::vector<wire::Payload>& inner,
    size_t max_datagram, crypto::RandomSource& random) {
  // One cipher for all fragments: its IV counter keeps IVs distinct.
  auto cipher = crypto::SkCipher::Create(set, keys.encryption, keys.integrity);
  if (!cipher.ok()) return cipher.error();
  auto chain = wire::EncodePayloadChain(inner);
  if (!chain.ok())
    return crypto::MakeError(crypto::ErrorCode::kInvalidArgument,
                             "encoding inner payloads: " + chain.error().message);
  if (max_datagram <= kIkeHeader + kSkfHeader + 64)
    return crypto::MakeError(crypto::ErrorCode::kInvalidArgument,
                             "fragment size " + std::to_string(max_datagram) +
                                 " leaves no room for content");
  size_t chunk = max_datagram - kIkeHeader - kSkfHeader;
  while (chunk > 0 &&
         kIkeHeader + kSkfHeader + cipher->BodyLength(chunk) > max_datagram)
    --chunk;
  if (chunk < 16)
    return crypto::MakeError(crypto::ErrorCode::kInvalidArgument,
                             "fragment size too small for the cipher");
  const Bytes& all = chain->bytes;
  size_t total = std::max<size_t>(1, (all.size() + chunk - 1) / chunk);
  if (total > 0xffff)
    return crypto::MakeError(crypto::ErrorCode::kInvalidArgument,
                             "message needs more than 65535 fragments");
  std::vector<Bytes> out;
  for (size_t i = 0; i < total; ++i) {
    size_t begin = i * chunk;
    size_t len = std::min(chunk, all.size() - begin);
    auto f = SealWith(*cipher, header, chain->first_type, uint16_t(i + 1),
                      uint16_t(total), crypto::ByteView(all.data() + begin, len),
                      random);
    if (!f.ok()) return f.error();
    out.push_back(std::move(*f));
  }
  return out;
}

void Reassembly::Reset(uint32_t message_id, uint16_t total) {
  message_id_ = message_id;
  total_ = total;
  received_ = 0;
  first_inner_ = 0;
  bytes_ = 0;
  parts_.assign(total, {});
  have_.assign(total, false);
  largest_ = 0;
}

Reassembly::Step Reassembly::Add(const crypto::TransformSet& set,
                                 IkeDirectionKeys keys,
                                 std::span<const uint8_t> datagram,
                                 uint32_t message_id,
                                 const wire::SkfPayload& skf,
                                 const ReassemblyLimits& limits) {
  auto drop = [](std::string why) {
    return Step{Outcome::kDropped, std::move(why), {}};
  };
  uint16_t number = skf.fragment_number, total = skf.total_fragments;
  if (number == 0 || total == 0 || number > total)
    return drop("fragment number " + std::to_string(number) + " of " +
                std::to_string(total));
  if (total > limits.max_fragments)
    return drop("message in " + std::to_string(total) +
                " fragments, more than the limit of " +
                std::to_string(limits.max_fragments));
  // Authenticate before anything is stored or replaced (2.6).
  auto where = wire::LocateSk(datagram);
  if (!where.ok() || where->type != wire::PayloadType::kSkf)
    return drop("no SKF payload");
  auto cipher = crypto::SkCipher::Create(set, keys.encryption, keys.integrity);
  if (!cipher.ok()) return drop(cipher.error().message);
  auto plain = cipher->Unprotect(
      datagram.subspan(0, where->body_offset),
      datagram.subspan(where->body_offset, where->body_length));
  if (!plain.ok()) return drop("fragment integrity: " + plain.error().message);

  if (!active() || message_id != message_id_) {
    Reset(message_id, total);
  } else if (total > total_) {
    // The sender re-fragmented (e.g. smaller PMTU): start over (2.6).
    Reset(message_id, total);
  } else if (total < total_) {
    return drop("fragment of an older fragmentation (total " +
                std::to_string(total) + " < " + std::to_string(total_) + ")");
  }
  size_t index = number - 1;
  if (have_[index]) return Step{Outcome::kIncomplete, {}, {}};  // duplicate
  if (bytes_ + plain->payloads.size() > limits.max_bytes) {
    size_t would = bytes_ + plain->payloads.size();
    Reset(message_id, 0);
    total_ = 0;
    parts_.clear();
    have_.clear();
    return drop("reassembled message would exceed " +
                std::to_string(limits.max_bytes) + " octets (" +
                std::to_string(would) + "); discarded");
  }
  if (number == 1) first_inner_ = where->first_inner;
  bytes_ += plain->payloads.size();
  largest_ = std::max(largest_, datagram.size());
  parts_[index] = std::move(plain->payloads);
  have_[index] = true;
  if (++received_ < total_) return Step{Outcome::kIncomplete, {}, {}};

  Bytes all;
  all.reserve(bytes_);
  for (auto& p : parts_) all.insert(all.end(), p.begin(), p.end());
  uint8_t first = first_inner_;
  total_ = 0;
  parts_.clear();
  parts_.shrink_to_fit();
  have_.clear();
  have_.shrink_to_fit();
  if (all.empty()) return Step{Outcome::kComplete, {}, {}, largest_};
  auto chain = wire::DecodePayloadChain(first, crypto::View(all));
  if (!chain.ok())
    return drop("reassembled content: " + chain.error().message);
  return Step{Outcome::kComplete, {}, std::move(*chain), largest_};
}

}  // namespace ike::sa::internal
