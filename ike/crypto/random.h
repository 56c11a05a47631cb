// Injected randomness. ike/crypto never reaches for a global RNG: every
// operation that needs random bytes (IVs, nonces, key generation, signature
// blinding) takes a RandomSource, so tests can fix the bytes.
#pragma once

#include <cstdint>
#include <memory>
#include <span>

#include <botan/rng.h>

#include "ike/crypto/result.h"

namespace ike::crypto {

class RandomSource {
 public:
  virtual ~RandomSource() = default;
  virtual void Fill(std::span<uint8_t> out) = 0;

  Bytes Generate(size_t length);

  // The same source seen as a Botan RNG, for Botan calls that need one.
  Botan::RandomNumberGenerator& AsBotan();

 private:
  std::unique_ptr<Botan::RandomNumberGenerator> adapter_;
};

// Operating-system randomness (Botan's System_RNG: getrandom(2)).
class SystemRandomSource final : public RandomSource {
 public:
  SystemRandomSource();
  ~SystemRandomSource() override;
  void Fill(std::span<uint8_t> out) override;

 private:
  std::unique_ptr<Botan::RandomNumberGenerator> rng_;
};

// A userspace CSPRNG (Botan ChaCha_RNG seeded and periodically reseeded
// from the operating system): what the daemon should use for nonces, SPIs
// and keys, where a system call per request is measurably slower.
class DrbgRandomSource final : public RandomSource {
 public:
  DrbgRandomSource();
  ~DrbgRandomSource() override;
  void Fill(std::span<uint8_t> out) override;

 private:
  std::unique_ptr<Botan::RandomNumberGenerator> system_;
  std::unique_ptr<Botan::RandomNumberGenerator> rng_;
};

// A reproducible stream (HMAC_DRBG(SHA-256) from a fixed seed), for tests
// and benchmarks. Never for production keys.
class DeterministicRandomSource final : public RandomSource {
 public:
  explicit DeterministicRandomSource(ByteView seed);
  ~DeterministicRandomSource() override;
  void Fill(std::span<uint8_t> out) override;

 private:
  std::unique_ptr<Botan::RandomNumberGenerator> drbg_;
};

}  // namespace ike::crypto
