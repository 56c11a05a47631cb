#include "ike/crypto/prf.h"

namespace ike::crypto {
namespace {

// HMAC objects of destroyed Prfs, per thread and PRF, for the next Create:
// creating Botan's HMAC by name costs as much as two HMAC computations over
// short inputs. They hold no key (Compute and Expand clear it).
using SpareMacs =
    std::vector<std::pair<PrfId, std::unique_ptr<Botan::MessageAuthenticationCode>>>;
// Null once this thread's spares are destroyed (a Prf in another
// thread_local may outlive them).
thread_local bool spares_gone = false;
struct SparesOwner {
  SpareMacs macs;
  ~SparesOwner() { spares_gone = true; }
};
SpareMacs* Spares() {
  if (spares_gone) return nullptr;
  thread_local SparesOwner owner;
  return &owner.macs;
}
constexpr size_t kSparesPerPrf = 4;

}  // namespace

Result<Prf> Prf::Create(PrfId id) {
  const PrfInfo* info = LookupPrf(id);
  if (!info) {
    return MakeError(ErrorCode::kUnsupported,
                     "PRF transform " + std::to_string(uint16_t(id)) +
                         " is not implemented");
  }
  if (SpareMacs* spares = Spares()) {
    for (auto it = spares->rbegin(); it != spares->rend(); ++it) {
      if (it->first != id) continue;
      auto mac = std::move(it->second);
      spares->erase(std::next(it).base());
      return Prf(info, std::move(mac));
    }
  }
  auto mac = Botan::MessageAuthenticationCode::create(info->botan_name);
  if (!mac) {
    return MakeError(ErrorCode::kUnsupported,
                     "Botan lacks " + info->botan_name);
  }
  return Prf(info, std::move(mac));
}

Prf::Prf(const PrfInfo* info,
         std::unique_ptr<Botan::MessageAuthenticationCode> mac)
    : info_(info), mac_(std::move(mac)) {}
Prf::Prf(Prf&&) noexcept = default;
Prf& Prf::operator=(Prf&& other) noexcept {
  if (this != &other) {
    Release();
    info_ = other.info_;
    mac_ = std::move(other.mac_);
  }
  return *this;
}
Prf::~Prf() { Release(); }

void Prf::Release() {
  if (!mac_) return;
  mac_->clear();
  SpareMacs* spares = Spares();
  size_t same = 0;
  if (spares)
    for (const auto& s : *spares) same += s.first == info_->id;
  if (spares && same < kSparesPerPrf)
    spares->emplace_back(info_->id, std::move(mac_));
  mac_.reset();
}

Secret Prf::Compute(ByteView key, ByteView data) const {
  return Compute(key, {data});
}

Secret Prf::Compute(ByteView key, std::initializer_list<ByteView> data) const {
  Secret out(output_size());
  ComputeInto(key, data, out.data());
  return out;
}

void Prf::ComputeInto(ByteView key, std::initializer_list<ByteView> data,
                      uint8_t* out) const {
  mac_->set_key(key.data(), key.size());
  for (ByteView part : data) mac_->update(part.data(), part.size());
  mac_->final(out);
  mac_->clear();  // drop the keyed state
}

Result<Secret> Prf::Expand(ByteView key, ByteView seed, size_t length) const {
  const size_t hlen = info_->output_bytes;
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
