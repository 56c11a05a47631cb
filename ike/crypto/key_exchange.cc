#include "ike/crypto/key_exchange.h"

#include <botan/bigint.h>
#include <botan/curve25519.h>
#include <botan/dh.h>
#include <botan/dl_group.h>
#include <botan/ec_group.h>
#include <botan/ecdh.h>
#include <botan/exceptn.h>
#include <botan/pubkey.h>

namespace ike::crypto {
namespace {

CryptoError BadValue(const KeGroupInfo& info, const std::string& what) {
  return MakeError(ErrorCode::kInvalidPublicValue,
                   "KE payload for " + info.display_name + ": " + what);
}

// Group parameters are parsed once; Botan's groups are immutable and
// shareable after construction.
const Botan::DL_Group& ModpGroup(const KeGroupInfo& info) {
  static const Botan::DL_Group g14("modp/ietf/2048");
  static const Botan::DL_Group g15("modp/ietf/3072");
  static const Botan::DL_Group g16("modp/ietf/4096");
  switch (info.id) {
    case KeGroup::kModp2048: return g14;
    case KeGroup::kModp3072: return g15;
    default: return g16;
  }
}

const Botan::EC_Group& EcGroup(const KeGroupInfo& info) {
  static const Botan::EC_Group p256("secp256r1");
  static const Botan::EC_Group p384("secp384r1");
  static const Botan::EC_Group p521("secp521r1");
  switch (info.id) {
    case KeGroup::kEcp256: return p256;
    case KeGroup::kEcp384: return p384;
    default: return p521;
  }
}

Status ValidateModp(const KeGroupInfo& info, ByteView value) {
  const Botan::BigInt& p = ModpGroup(info).get_p();
  Botan::BigInt y(value.data(), value.size());
  if (y <= 1 || y >= p - 1) {
    return BadValue(info, "value must satisfy 1 < y < p-1 (RFC 6989 2.1)");
  }
  return Ok{};
}

Result<Botan::PointGFp> DecodeEcPoint(const KeGroupInfo& info,
                                      ByteView value) {
  const Botan::EC_Group& group = EcGroup(info);
  const size_t coord = info.public_value_bytes / 2;
  Botan::BigInt x(value.data(), coord);
  Botan::BigInt y(value.data() + coord, coord);
  if (x >= group.get_p() || y >= group.get_p()) {
    return BadValue(info, "coordinate not below the field prime");
  }
  try {
    Botan::PointGFp point = group.point(x, y);
    if (point.is_zero() || !point.on_the_curve()) {
      return BadValue(info, "point is not on the curve (RFC 6989 2.3)");
    }
    return point;
  } catch (const std::exception&) {
    return BadValue(info, "point is not on the curve (RFC 6989 2.3)");
  }
}

class ModpKeyExchange final : public KeyExchange {
 public:
  ModpKeyExchange(const KeGroupInfo& info,
                  std::unique_ptr<Botan::DH_PrivateKey> key,
                  Botan::RandomNumberGenerator& rng)
      : info_(info),
        key_(std::move(key)),
        agreement_(*key_, rng, "Raw") {
    Botan::BigInt y = key_->get_y();
    public_ = Botan::unlock(Botan::BigInt::encode_1363(y, info_.public_value_bytes));
  }
  const KeGroupInfo& info() const override { return info_; }
  const Bytes& public_value() const override { return public_; }
  Result<Secret> ComputeSharedSecret(ByteView peer) const override {
    if (auto st = ValidatePeerKeValue(info_.id, peer); !st) return st.error();
    try {
      // Botan's blinded DH; the result is padded to the modulus length as
      // RFC 7296 section 2.14 requires.
      Botan::SymmetricKey z = agreement_.derive_key(0, peer.data(), peer.size());
      return Secret(z.begin(), z.end());
    } catch (const std::exception& e) {
      return BadValue(info_, std::string("rejected: ") + e.what());
    }
  }

 private:
  KeGroupInfo info_;
  std::unique_ptr<Botan::DH_PrivateKey> key_;
  Botan::PK_Key_Agreement agreement_;
  Bytes public_;
};

class EcpKeyExchange final : public KeyExchange {
 public:
  EcpKeyExchange(const KeGroupInfo& info,
                 std::unique_ptr<Botan::ECDH_PrivateKey> key,
                 Botan::RandomNumberGenerator& rng)
      : info_(info),
        key_(std::move(key)),
        agreement_(*key_, rng, "Raw") {
    // RFC 5903 section 7: x || y without the SEC1 0x04 prefix.
    std::vector<uint8_t> sec1 = key_->public_value(Botan::PointGFp::UNCOMPRESSED);
    public_.assign(sec1.begin() + 1, sec1.end());
  }
  const KeGroupInfo& info() const override { return info_; }
  const Bytes& public_value() const override { return public_; }
  Result<Secret> ComputeSharedSecret(ByteView peer) const override {
    if (peer.size() != info_.public_value_bytes) {
      return BadValue(info_, "length " + std::to_string(peer.size()) +
                                 ", expected " +
                                 std::to_string(info_.public_value_bytes));
    }
    auto point = DecodeEcPoint(info_, peer);
    if (!point) return point.error();
    Bytes sec1;
    sec1.reserve(peer.size() + 1);
    sec1.push_back(0x04);
    sec1.insert(sec1.end(), peer.begin(), peer.end());
    try {
      // Botan's blinded ECDH returns the x coordinate, padded to the field
      // size: exactly the RFC 5903 section 7 shared secret.
      Botan::SymmetricKey z = agreement_.derive_key(0, sec1.data(), sec1.size());
      return Secret(z.begin(), z.end());
    } catch (const std::exception& e) {
      return BadValue(info_, std::string("rejected: ") + e.what());
    }
  }

 private:
  KeGroupInfo info_;
  std::unique_ptr<Botan::ECDH_PrivateKey> key_;
  Botan::PK_Key_Agreement agreement_;
  Bytes public_;
};

class X25519KeyExchange final : public KeyExchange {
 public:
  X25519KeyExchange(const KeGroupInfo& info,
                    std::unique_ptr<Botan::Curve25519_PrivateKey> key)
      : info_(info), key_(std::move(key)), public_(key_->public_value()) {}
  const KeGroupInfo& info() const override { return info_; }
  const Bytes& public_value() const override { return public_; }
  Result<Secret> ComputeSharedSecret(ByteView peer) const override {
    if (auto st = ValidatePeerKeValue(info_.id, peer); !st) return st.error();
    Secret shared = key_->agree(peer.data(), peer.size());
    // RFC 8031 section 2.2 / RFC 7748 section 6.1: reject an all-zero
    // result (low-order peer point), checked without early exit.
    uint8_t acc = 0;
    for (uint8_t b : shared) acc |= b;
    if (acc == 0) {
      return BadValue(info_, "X25519 result is all zero (low-order point)");
    }
    return shared;
  }

 private:
  KeGroupInfo info_;
  std::unique_ptr<Botan::Curve25519_PrivateKey> key_;
  Bytes public_;
};

Result<std::unique_ptr<KeyExchange>> Make(KeGroup group, const ByteView* priv,
                                          RandomSource& random) {
  auto info = LookupKeGroup(group);
  if (!info) {
    return MakeError(ErrorCode::kUnsupported,
                     "KE group " + std::to_string(uint16_t(group)) +
                         " is not implemented");
  }
  auto& rng = random.AsBotan();
  try {
    switch (info->kind) {
      case KeKind::kModp: {
        Botan::BigInt x = priv ? Botan::BigInt(priv->data(), priv->size())
                               : Botan::BigInt(0);
        auto key = std::make_unique<Botan::DH_PrivateKey>(rng, ModpGroup(*info), x);
        return std::unique_ptr<KeyExchange>(
            std::make_unique<ModpKeyExchange>(*info, std::move(key), rng));
      }
      case KeKind::kEcp: {
        Botan::BigInt x = priv ? Botan::BigInt(priv->data(), priv->size())
                               : Botan::BigInt(0);
        auto key = std::make_unique<Botan::ECDH_PrivateKey>(rng, EcGroup(*info), x);
        return std::unique_ptr<KeyExchange>(
            std::make_unique<EcpKeyExchange>(*info, std::move(key), rng));
      }
      case KeKind::kCurve25519: {
        std::unique_ptr<Botan::Curve25519_PrivateKey> key;
        if (priv) {
          if (priv->size() != 32) {
            return MakeError(ErrorCode::kInvalidArgument,
                             "X25519 private value must be 32 bytes");
          }
          key = std::make_unique<Botan::Curve25519_PrivateKey>(
              Secret(priv->begin(), priv->end()));
        } else {
          key = std::make_unique<Botan::Curve25519_PrivateKey>(rng);
        }
        return std::unique_ptr<KeyExchange>(
            std::make_unique<X25519KeyExchange>(*info, std::move(key)));
      }
    }
  } catch (const std::exception& e) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "creating a " + info->display_name + " key: " + e.what());
  }
  return MakeError(ErrorCode::kUnsupported, "unknown KE kind");
}

}  // namespace

Result<std::unique_ptr<KeyExchange>> KeyExchange::Generate(
    KeGroup group, RandomSource& random) {
  return Make(group, nullptr, random);
}

Result<std::unique_ptr<KeyExchange>> KeyExchange::FromPrivateValue(
    KeGroup group, ByteView private_value, RandomSource& random) {
  return Make(group, &private_value, random);
}

Status ValidatePeerKeValue(KeGroup group, ByteView value) {
  auto info = LookupKeGroup(group);
  if (!info) {
    return MakeError(ErrorCode::kUnsupported,
                     "KE group " + std::to_string(uint16_t(group)) +
                         " is not implemented");
  }
  if (value.size() != info->public_value_bytes) {
    return BadValue(*info, "length " + std::to_string(value.size()) +
                               ", expected exactly " +
                               std::to_string(info->public_value_bytes));
  }
  switch (info->kind) {
    case KeKind::kModp:
      return ValidateModp(*info, value);
    case KeKind::kEcp: {
      auto point = DecodeEcPoint(*info, value);
      if (!point) return point.error();
      return Ok{};
    }
    case KeKind::kCurve25519:
      return Ok{};
  }
  return Ok{};
}

}  // namespace ike::crypto
