#include "daemon/log.h"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <mutex>

namespace btnsd::daemon {
namespace {

std::atomic<Level> g_level{Level::kInfo};
std::mutex g_write_mutex;

std::string TimeStamp() {
  using namespace std::chrono;
  const auto now = system_clock::now();
  const std::time_t seconds = system_clock::to_time_t(now);
  const auto millis =
      duration_cast<milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  char text[64];
  std::snprintf(text, sizeof text, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
                utc.tm_year + 1900, utc.tm_mon + 1, utc.tm_mday, utc.tm_hour,
                utc.tm_min, utc.tm_sec, static_cast<int>(millis));
  return text;
}

}  // namespace

std::string_view LevelName(Level level) {
  switch (level) {
    case Level::kError: return "error";
    case Level::kWarning: return "warning";
    case Level::kInfo: return "info";
    case Level::kDebug: return "debug";
    case Level::kTrace: return "trace";
  }
  return "info";
}

std::string FormatValue(std::string_view value) {
  bool needs_quotes = value.empty();
  for (char c : value) {
    if (c == ' ' || c == '"' || c == '=' || c == '\\' || c == '\t' ||
        c == '\n') {
      needs_quotes = true;
      break;
    }
  }
  if (!needs_quotes) return std::string(value);
  std::string out = "\"";
  for (char c : value) {
    if (c == '"' || c == '\\') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  out += '"';
  return out;
}

std::string FormatRecord(Level level, std::string_view event,
                         std::initializer_list<Field> fields) {
  std::string line = "level=";
  line += LevelName(level);
  line += " event=";
  line += FormatValue(event);
  for (const Field& field : fields) {
    line += ' ';
    line += field.key;
    line += '=';
    line += FormatValue(field.value);
  }
  return line;
}

void Logger::SetLevel(Level level) { g_level = level; }
Level Logger::level() { return g_level; }
bool Logger::Enabled(Level level) { return level <= g_level.load(); }

void Logger::Write(Level level, std::string_view event,
                   std::initializer_list<Field> fields) {
  std::string line = TimeStamp() + " " + FormatRecord(level, event, fields);
  line += '\n';
  std::lock_guard lock(g_write_mutex);
  std::fwrite(line.data(), 1, line.size(), stderr);
  std::fflush(stderr);
}

}  // namespace btnsd::daemon
