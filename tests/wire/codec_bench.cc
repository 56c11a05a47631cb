// Measures decode and encode throughput of the codec over the test corpus.
//   bazel run //tests/wire:codec_bench [-- ITERATIONS]
#include <chrono>
#include <cstdio>
#include <cstdlib>

#include "tests/wire/corpus.h"

int main(int argc, char** argv) {
  const int iterations = argc > 1 ? std::atoi(argv[1]) : 20000;
  std::vector<ike::wire::Bytes> messages;
  size_t total_bytes = 0;
  for (const auto& entry : ike::wire::testing::BuildCorpus()) {
    messages.push_back(ike::wire::EncodeMessage(entry.message).value());
    total_bytes += messages.back().size();
  }
  using Clock = std::chrono::steady_clock;
  size_t payloads = 0;
  auto start = Clock::now();
  for (int i = 0; i < iterations; ++i) {
    for (const auto& bytes : messages) {
      auto decoded = ike::wire::DecodeMessage(bytes);
      if (!decoded.ok()) return 1;
      payloads += decoded->payloads.size();
    }
  }
  const double decode_seconds = std::chrono::duration<double>(Clock::now() - start).count();
  std::vector<ike::wire::Message> decoded;
  for (const auto& bytes : messages) decoded.push_back(ike::wire::DecodeMessage(bytes).value());
  size_t encoded_bytes = 0;
  start = Clock::now();
  for (int i = 0; i < iterations; ++i) {
    for (const auto& message : decoded) encoded_bytes += ike::wire::EncodeMessage(message)->size();
  }
  const double encode_seconds = std::chrono::duration<double>(Clock::now() - start).count();
  const double count = static_cast<double>(iterations) * messages.size();
  std::printf("corpus: %zu messages, %zu bytes, %.1f payloads per message\n", messages.size(),
              total_bytes, static_cast<double>(payloads) / count);
  std::printf("decode: %.0f messages/s, %.1f MB/s\n", count / decode_seconds,
              iterations * total_bytes / decode_seconds / 1e6);
  std::printf("encode: %.0f messages/s, %.1f MB/s\n", count / encode_seconds,
              encoded_bytes / encode_seconds / 1e6);
  return 0;
}
