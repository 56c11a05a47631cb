#include "btns_api/frame.h"

namespace btns_api {

FrameResult FrameDecoder::Next(std::string* payload) {
  if (buffered() < kFrameHeaderSize) return FrameResult::kNeedMore;
  const auto* p = reinterpret_cast<const uint8_t*>(buffer_.data()) + consumed_;
  const uint32_t length = (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) |
                          (uint32_t{p[2]} << 8) | uint32_t{p[3]};
  if (length > max_frame_) return FrameResult::kTooLarge;
  if (length == 0) return FrameResult::kEmpty;
  if (buffered() < kFrameHeaderSize + length) return FrameResult::kNeedMore;
  payload->assign(buffer_, consumed_ + kFrameHeaderSize, length);
  consumed_ += kFrameHeaderSize + length;
  // Compact once the consumed prefix dominates, keeping appends amortised.
  if (consumed_ == buffer_.size()) {
    buffer_.clear();
    consumed_ = 0;
  } else if (consumed_ > 4096 && consumed_ * 2 > buffer_.size()) {
    buffer_.erase(0, consumed_);
    consumed_ = 0;
  }
  return FrameResult::kFrame;
}

void AppendFrame(const std::string& payload, std::string* out) {
  const uint32_t n = static_cast<uint32_t>(payload.size());
  const char header[4] = {static_cast<char>(n >> 24), static_cast<char>(n >> 16),
                          static_cast<char>(n >> 8), static_cast<char>(n)};
  out->append(header, 4);
  out->append(payload);
}

}  // namespace btns_api
