#include "ike/crypto/sk_payload.h"

#include <algorithm>

#include <botan/aead.h>
#include <botan/block_cipher.h>
#include <botan/cipher_mode.h>
#include <botan/mac.h>

namespace ike::crypto {
namespace {

// Botan cipher objects of finished SkCiphers, kept per thread and re-keyed
// by the next Create: looking an algorithm up by name and allocating its
// state cost more than the key schedule and the AEAD pass over an IKE_AUTH
// message. A spare object is re-keyed with zeros before it is kept, so no
// key outlives its SkCipher.
template <class T>
class Spares {
 public:
  std::unique_ptr<T> Take(const std::string& name) {
    for (auto& [n, list] : lists_) {
      if (n != name || list.empty()) continue;
      std::unique_ptr<T> obj = std::move(list.back());
      list.pop_back();
      return obj;
    }
    return nullptr;
  }
  // `keyed`: the object holds a key of its SkCipher (one never keyed holds
  // none, or the zero key it was kept with before).
  void Keep(const std::string& name, std::unique_ptr<T> obj, bool keyed) {
    if (!obj) return;
    if (keyed) {
      // An all-zero key overwrites the key schedule in place, where clear()
      // would free it and the next set_key allocate it again.
      static constexpr uint8_t kZeroKey[64] = {};
      const size_t len = obj->key_spec().minimum_keylength();
      if (len > sizeof(kZeroKey)) return;  // freed (and zeroed) by unique_ptr
      try {
        obj->set_key(kZeroKey, len);
      } catch (const std::exception&) {
        return;
      }
    }
    for (auto& [n, list] : lists_) {
      if (n != name) continue;
      if (list.size() < kPerName) list.push_back(std::move(obj));
      return;
    }
    lists_.emplace_back(name, std::vector<std::unique_ptr<T>>{});
    lists_.back().second.push_back(std::move(obj));
  }

 private:
  static constexpr size_t kPerName = 4;
  std::vector<std::pair<std::string, std::vector<std::unique_ptr<T>>>> lists_;
};

struct SpareCiphers {
  Spares<Botan::AEAD_Mode> aead_enc, aead_dec;
  Spares<Botan::Cipher_Mode> cbc_enc, cbc_dec;
  Spares<Botan::MessageAuthenticationCode> mac;
  Spares<Botan::BlockCipher> block;
};

// Null once this thread's spares are destroyed (an SkCipher in another
// thread_local may outlive them).
thread_local bool spares_gone = false;
struct SparesOwner {
  SpareCiphers ciphers;
  ~SparesOwner() { spares_gone = true; }
};
SpareCiphers* Spare() {
  if (spares_gone) return nullptr;
  thread_local SparesOwner owner;
  return &owner.ciphers;
}

template <class T, class Make>
std::unique_ptr<T> TakeOr(Spares<T> SpareCiphers::*which,
                          const std::string& name, Make make) {
  if (SpareCiphers* spare = Spare())
    if (auto obj = (spare->*which).Take(name)) return obj;
  return make();
}

// The block cipher that makes CBC IVs.
std::string BlockName(const EncrInfo& info) {
  return "AES-" + std::to_string(info.key_bits);
}

}  // namespace

SkCipher::SkCipher() = default;
SkCipher::SkCipher(SkCipher&&) noexcept = default;
SkCipher& SkCipher::operator=(SkCipher&& other) noexcept {
  if (this != &other) {
    Release();
    info_ = other.info_;
    icv_bytes_ = other.icv_bytes_;
    salt_ = std::move(other.salt_);
    aead_enc_ = std::move(other.aead_enc_);
    aead_dec_ = std::move(other.aead_dec_);
    cbc_enc_ = std::move(other.cbc_enc_);
    cbc_dec_ = std::move(other.cbc_dec_);
    mac_ = std::move(other.mac_);
    integ_ = other.integ_;
    iv_cipher_ = std::move(other.iv_cipher_);
    key_ = std::move(other.key_);
    protect_keyed_ = other.protect_keyed_;
    unprotect_keyed_ = other.unprotect_keyed_;
    iv_counter_ = other.iv_counter_;
    iv_budget_ = other.iv_budget_;
    iv_seeded_ = other.iv_seeded_;
  }
  return *this;
}
SkCipher::~SkCipher() { Release(); }

void SkCipher::Release() {
  SpareCiphers* spares = Spare();
  if (!spares) return;  // the unique_ptrs free the objects
  SpareCiphers& spare = *spares;
  if (aead_enc_ || aead_dec_) {
    spare.aead_enc.Keep(info_->botan_name, std::move(aead_enc_),
                        protect_keyed_);
    spare.aead_dec.Keep(info_->botan_name, std::move(aead_dec_),
                        unprotect_keyed_);
  }
  if (cbc_enc_ || cbc_dec_) {
    spare.cbc_enc.Keep(info_->botan_name, std::move(cbc_enc_),
                       protect_keyed_);
    spare.cbc_dec.Keep(info_->botan_name, std::move(cbc_dec_),
                       unprotect_keyed_);
  }
  if (mac_) spare.mac.Keep(integ_->botan_name, std::move(mac_), true);
  if (iv_cipher_)
    spare.block.Keep(BlockName(*info_), std::move(iv_cipher_),
                     protect_keyed_);
}

Result<SkCipher> SkCipher::Create(const TransformSet& set, ByteView encr_key,
                                  ByteView integ_key) {
  const EncrInfo* encr = LookupEncr(set.encr, set.encr_key_bits);
  if (!encr) {
    return MakeError(ErrorCode::kUnsupported,
                     "ENCR transform " + std::to_string(uint16_t(set.encr)) +
                         " is not implemented");
  }
  if (encr_key.size() != encr->keymat_bytes()) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "SK_e is " + std::to_string(encr_key.size()) +
                         " bytes, " + encr->display_name + " needs " +
                         std::to_string(encr->keymat_bytes()));
  }
  SkCipher c;
  c.info_ = encr;
  ByteView key = encr_key.first(encr->key_bytes);
  // The ciphers get the key on first use: a message is either protected or
  // opened, so one of the two key schedules is usually never needed.
  c.key_.assign(key.begin(), key.end());
  try {
    if (encr->aead) {
      if (set.integ != IntegId::kNone) {
        return MakeError(ErrorCode::kInvalidArgument,
                         "INTEG must be NONE with " + encr->display_name);
      }
      c.salt_.assign(encr_key.begin() + encr->key_bytes, encr_key.end());
      c.aead_enc_ = TakeOr(&SpareCiphers::aead_enc, encr->botan_name, [&] {
        return Botan::AEAD_Mode::create_or_throw(encr->botan_name,
                                                 Botan::ENCRYPTION);
      });
      c.aead_dec_ = TakeOr(&SpareCiphers::aead_dec, encr->botan_name, [&] {
        return Botan::AEAD_Mode::create_or_throw(encr->botan_name,
                                                 Botan::DECRYPTION);
      });
      c.icv_bytes_ = encr->icv_bytes;
    } else {
      const IntegInfo* integ = LookupInteg(set.integ);
      if (!integ || set.integ == IntegId::kNone) {
        return MakeError(ErrorCode::kUnsupported,
                         encr->display_name + " needs an implemented INTEG");
      }
      if (integ_key.size() != integ->key_bytes) {
        return MakeError(ErrorCode::kInvalidArgument,
                         "SK_a is " + std::to_string(integ_key.size()) +
                             " bytes, " + integ->display_name + " needs " +
                             std::to_string(integ->key_bytes));
      }
      c.cbc_enc_ = TakeOr(&SpareCiphers::cbc_enc, encr->botan_name, [&] {
        return Botan::Cipher_Mode::create_or_throw(encr->botan_name,
                                                   Botan::ENCRYPTION);
      });
      c.cbc_dec_ = TakeOr(&SpareCiphers::cbc_dec, encr->botan_name, [&] {
        return Botan::Cipher_Mode::create_or_throw(encr->botan_name,
                                                   Botan::DECRYPTION);
      });
      c.integ_ = integ;
      c.mac_ = TakeOr(&SpareCiphers::mac, integ->botan_name, [&] {
        return Botan::MessageAuthenticationCode::create_or_throw(
            integ->botan_name);
      });
      c.mac_->set_key(integ_key.data(), integ_key.size());
      const std::string block = BlockName(*encr);
      c.iv_cipher_ = TakeOr(&SpareCiphers::block, block, [&] {
        return Botan::BlockCipher::create_or_throw(block);
      });
      c.icv_bytes_ = integ->icv_bytes;
    }
  } catch (const std::exception& e) {
    return MakeError(ErrorCode::kUnsupported,
                     "Botan cannot set up " + encr->botan_name + ": " +
                         e.what());
  }
  return c;
}

void SkCipher::KeyForProtect() {
  if (protect_keyed_) return;
  if (aead_enc_) aead_enc_->set_key(key_);
  if (cbc_enc_) cbc_enc_->set_key(key_);
  if (iv_cipher_) iv_cipher_->set_key(key_);
  protect_keyed_ = true;
}

void SkCipher::KeyForUnprotect() const {
  if (unprotect_keyed_) return;
  if (aead_dec_) aead_dec_->set_key(key_);
  if (cbc_dec_) cbc_dec_->set_key(key_);
  unprotect_keyed_ = true;
}

size_t SkCipher::MinimalPadding(size_t plaintext_length) const {
  const size_t b = info_->block_bytes;
  return (b - (plaintext_length + 1) % b) % b;
}

size_t SkCipher::BodyLength(size_t plaintext_length,
                            std::optional<size_t> padding_length) const {
  size_t pad = padding_length ? *padding_length : MinimalPadding(plaintext_length);
  return info_->iv_bytes + plaintext_length + pad + 1 + icv_bytes_;
}

Result<Bytes> SkCipher::NextIv(RandomSource& random) {
  if (!iv_seeded_) {
    uint8_t start[8];
    random.Fill(start);
    for (uint8_t b : start) iv_counter_ = (iv_counter_ << 8) | b;
    iv_budget_ = ~uint64_t(0);
    iv_seeded_ = true;
  }
  if (iv_budget_ == 0) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "SK IV counter exhausted: rekey the IKE SA");
  }
  --iv_budget_;
  const uint64_t n = iv_counter_++;
  uint8_t block[16] = {};
  for (int i = 0; i < 8; ++i) block[15 - i] = uint8_t(n >> (8 * i));
  if (iv_cipher_) {
    iv_cipher_->encrypt(block);
    return Bytes(block, block + 16);
  }
  return Bytes(block + 8, block + 16);
}

Result<Bytes> SkCipher::Protect(ByteView prefix, ByteView plaintext,
                                RandomSource& random,
                                const SkProtectOptions& options) {
  Bytes padding = options.padding
                      ? *options.padding
                      : Bytes(MinimalPadding(plaintext.size()), 0);
  if (padding.size() > 255 ||
      (plaintext.size() + padding.size() + 1) % info_->block_bytes != 0) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "padding of " + std::to_string(padding.size()) +
                         " bytes does not align the plaintext to " +
                         std::to_string(info_->block_bytes));
  }
  KeyForProtect();
  Bytes iv;
  if (options.iv) {
    iv = *options.iv;
  } else {
    auto next = NextIv(random);
    if (!next) return next.error();
    iv = std::move(*next);
  }
  if (iv.size() != info_->iv_bytes) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "IV must be " + std::to_string(info_->iv_bytes) + " bytes");
  }
  // One buffer: IV || plaintext || padding || pad length, encrypted in
  // place after the IV; the ICV is appended by the AEAD or below.
  const size_t iv_len = iv.size();
  Botan::secure_vector<uint8_t> buf;
  buf.reserve(iv_len + plaintext.size() + padding.size() + 1 + icv_bytes_);
  buf.assign(iv.begin(), iv.end());
  buf.insert(buf.end(), plaintext.begin(), plaintext.end());
  buf.insert(buf.end(), padding.begin(), padding.end());
  buf.push_back(static_cast<uint8_t>(padding.size()));

  if (aead_enc_) {
    uint8_t nonce[12];
    std::copy(salt_.begin(), salt_.end(), nonce);
    std::copy(iv.begin(), iv.end(), nonce + salt_.size());
    aead_enc_->set_associated_data(prefix.data(), prefix.size());
    aead_enc_->start(nonce, salt_.size() + iv_len);
    aead_enc_->finish(buf, iv_len);  // appends the tag
  } else {
    cbc_enc_->start(iv);
    cbc_enc_->finish(buf, iv_len);
    mac_->update(prefix.data(), prefix.size());
    mac_->update(buf.data(), buf.size());
    uint8_t tag[64];
    mac_->final(tag);
    buf.insert(buf.end(), tag, tag + icv_bytes_);
  }
  return Bytes(buf.begin(), buf.end());
}

Result<SkPlaintext> SkCipher::Unprotect(ByteView prefix, ByteView body) const {
  const size_t min_ct = aead_enc_ ? 1 : info_->block_bytes;
  if (body.size() < info_->iv_bytes + min_ct + icv_bytes_) {
    return MakeError(ErrorCode::kMalformed,
                     "SK payload body of " + std::to_string(body.size()) +
                         " bytes is shorter than IV + one block + ICV (" +
                         std::to_string(info_->iv_bytes + min_ct + icv_bytes_) +
                         ")");
  }
  ByteView iv = body.first(info_->iv_bytes);
  const size_t ct_len = body.size() - info_->iv_bytes - icv_bytes_;
  ByteView ct = body.subspan(info_->iv_bytes, ct_len);
  ByteView icv = body.last(icv_bytes_);

  KeyForUnprotect();
  Botan::secure_vector<uint8_t> buf;
  if (aead_dec_) {
    uint8_t nonce[12];
    std::copy(salt_.begin(), salt_.end(), nonce);
    std::copy(iv.begin(), iv.end(), nonce + salt_.size());
    buf.assign(ct.begin(), body.end());  // ciphertext || tag
    try {
      aead_dec_->set_associated_data(prefix.data(), prefix.size());
      aead_dec_->start(nonce, salt_.size() + iv.size());
      aead_dec_->finish(buf);  // constant-time tag check inside Botan
    } catch (const std::exception&) {
      return MakeError(ErrorCode::kIntegrityCheckFailed,
                       "SK payload ICV does not verify");
    }
  } else {
    if (ct_len % info_->block_bytes != 0) {
      return MakeError(ErrorCode::kMalformed,
                       "SK ciphertext length " + std::to_string(ct_len) +
                           " is not a multiple of the block size");
    }
    mac_->update(prefix.data(), prefix.size());
    mac_->update(body.data(), info_->iv_bytes + ct_len);
    uint8_t tag[64];
    mac_->final(tag);
    if (!ConstantTimeEqual(ByteView(tag, icv_bytes_), icv)) {
      return MakeError(ErrorCode::kIntegrityCheckFailed,
                       "SK payload ICV does not verify");
    }
    buf.assign(ct.begin(), ct.end());
    cbc_dec_->start(iv.data(), iv.size());
    cbc_dec_->finish(buf);
  }
  if (buf.empty()) {
    return MakeError(ErrorCode::kMalformed, "SK plaintext is empty");
  }
  const size_t pad_len = buf.back();
  if (pad_len + 1 > buf.size()) {
    return MakeError(ErrorCode::kMalformed,
                     "SK Pad Length " + std::to_string(pad_len) +
                         " exceeds the decrypted data");
  }
  const size_t payload_len = buf.size() - pad_len - 1;
  SkPlaintext out;
  out.payloads.assign(buf.begin(), buf.begin() + payload_len);
  out.padding.assign(buf.begin() + payload_len, buf.end() - 1);
  return out;
}

Result<SkLocation> FindSkPayload(ByteView message) {
  constexpr size_t kHeader = 28;
  if (message.size() < kHeader) {
    return MakeError(ErrorCode::kMalformed,
                     "IKE message shorter than the 28-byte header");
  }
  const size_t declared = (size_t(message[24]) << 24) |
                          (size_t(message[25]) << 16) |
                          (size_t(message[26]) << 8) | message[27];
  if (declared != message.size()) {
    return MakeError(ErrorCode::kMalformed,
                     "IKE header Length " + std::to_string(declared) +
                         " differs from the datagram size " +
                         std::to_string(message.size()));
  }
  uint8_t next = message[16];
  size_t off = kHeader;
  while (next != 0) {
    if (off + 4 > message.size()) {
      return MakeError(ErrorCode::kMalformed,
                       "payload header at offset " + std::to_string(off) +
                           " runs past the message end");
    }
    const size_t len = (size_t(message[off + 2]) << 8) | message[off + 3];
    if (len < 4 || off + len > message.size()) {
      return MakeError(ErrorCode::kMalformed,
                       "payload Length " + std::to_string(len) +
                           " at offset " + std::to_string(off) +
                           " is invalid");
    }
    if (next == uint8_t(wire::PayloadType::kSk)) {
      return SkLocation{off + 4, len - 4, message[off]};
    }
    next = message[off];
    off += len;
  }
  return MakeError(ErrorCode::kMalformed, "message has no SK payload");
}

}  // namespace ike::crypto
