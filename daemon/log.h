// Structured logging to stderr: one line per record, a level and stable
// key=value fields, so journald and grep both read it.
//
//   2026-11-27T21:40:00.123Z level=info event=ike-sa-up ike_sa=3 peer=192.0.2.2
//
// Thread-safe: records from the protocol and kernel threads never interleave
// within a line.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>

namespace btnsd::daemon {

enum class Level : uint8_t { kError, kWarning, kInfo, kDebug, kTrace };
std::string_view LevelName(Level level);

struct Field {
  Field(std::string_view k, std::string_view v) : key(k), value(v) {}
  Field(std::string_view k, const char* v) : key(k), value(v) {}
  Field(std::string_view k, const std::string& v) : key(k), value(v) {}
  Field(std::string_view k, uint64_t v) : key(k), value(std::to_string(v)) {}
  Field(std::string_view k, int64_t v) : key(k), value(std::to_string(v)) {}
  Field(std::string_view k, int v) : key(k), value(std::to_string(v)) {}
  Field(std::string_view k, unsigned v) : key(k), value(std::to_string(v)) {}
  std::string_view key;
  std::string value;
};

// Quotes a value when it holds spaces, quotes or '=' (so a line splits
// unambiguously into fields).
std::string FormatValue(std::string_view value);
// "level=info event=x k=v ..." without the time stamp (tests compare this).
std::string FormatRecord(Level level, std::string_view event,
                         std::initializer_list<Field> fields);

class Logger {
 public:
  static void SetLevel(Level level);
  static Level level();
  static bool Enabled(Level level);
  static void Write(Level level, std::string_view event,
                    std::initializer_list<Field> fields);
};

#define BTNSD_LOG(level, event, ...)                                   \
  do {                                                                 \
    if (::btnsd::daemon::Logger::Enabled(level))                       \
      ::btnsd::daemon::Logger::Write(level, event, {__VA_ARGS__});     \
  } while (0)

}  // namespace btnsd::daemon
