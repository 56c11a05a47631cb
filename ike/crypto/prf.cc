#include "ike/crypto/prf.h"

namespace ike::crypto {

Result<Prf> Prf::Create(PrfId id) {
  auto info = LookupPrf(id);
  if (!info) {
    return MakeError(ErrorCode::kUnsupported,
                     "PRF transform " + std::to_string(uint16_t(id)) +
                         " is not implemented");
  }
  auto mac = Botan::MessageAuthenticationCode::create(info->botan_name);
  if (!mac) {
    return MakeError(ErrorCode::kUnsupported,
                     "Botan lacks " + info->botan_name);
  }
  return Prf(*info, std::move(mac));
}

Prf::Prf(PrfInfo info, std::unique_ptr<Botan::MessageAuthenticationCode> mac)
    : info_(std::move(info)), mac_(std::move(mac)) {}
Prf::Prf(Prf&&) noexcept = default;
Prf& Prf::operator=(Prf&&) noexcept = default;
Prf::~Prf() = default;

Secret Prf::Compute(ByteView key, ByteView data) const {
  return Compute(key, {data});
}

Secret Prf::Compute(ByteView key, std::initializer_list<ByteView> data) const {
  mac_->set_key(key.data(), key.size());
  for (ByteView part : data) mac_->update(part.data(), part.size());
  Secret out = mac_->final();
  mac_->clear();  // drop the keyed state
  return out;
}

Result<Secret> Prf::Expand(ByteView key, ByteView seed, size_t length) const {
  const size_t hlen = info_.output_bytes;
  if (length > 255 * hlen) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "prf+ output of " + std::to_string(length) +
                         " bytes exceeds 255 blocks of " +
                         std::to_string(hlen));
  }
  Secret out;
  out.reserve(length + hlen);
  Secret block;
  mac_->set_key(key.data(), key.size());
  for (uint8_t counter = 1; out.size() < length; ++counter) {
    mac_->update(block.data(), block.size());
    mac_->update(seed.data(), seed.size());
    mac_->update(counter);
    block = mac_->final();
    out.insert(out.end(), block.begin(), block.end());
  }
  mac_->clear();
  out.resize(length);
  return out;
}

}  // namespace ike::crypto
