// Length-prefixed frames on the API stream: a 4-octet big-endian length,
// then that many octets of one serialized message.
#ifndef BTNS_API_FRAME_H_
#define BTNS_API_FRAME_H_

#include <cstddef>
#include <cstdint>
#include <string>

namespace btns_api {

inline constexpr size_t kFrameHeaderSize = 4;
inline constexpr size_t kDefaultMaxFrame = 64 * 1024;

enum class FrameResult { kFrame, kNeedMore, kTooLarge, kEmpty };

class FrameDecoder {
 public:
  explicit FrameDecoder(size_t max_frame = kDefaultMaxFrame)
      : max_frame_(max_frame) {}

  // Buffers input. Never holds more than one header plus one frame of at
  // most max_frame octets beyond what Next() has not yet consumed.
  void Append(const uint8_t* data, size_t len) {
    buffer_.append(reinterpret_cast<const char*>(data), len);
  }
  // Extracts the next complete frame's payload. kTooLarge and kEmpty
  // (a zero-length frame) are fatal for the stream.
  FrameResult Next(std::string* payload);
  size_t buffered() const { return buffer_.size() - consumed_; }

 private:
  size_t max_frame_;
  std::string buffer_;
  size_t consumed_ = 0;
};

// Appends header and payload to `out`.
void AppendFrame(const std::string& payload, std::string* out);

}  // namespace btns_api

#endif  // BTNS_API_FRAME_H_
