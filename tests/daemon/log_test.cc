#include "daemon/log.h"

#include "gtest/gtest.h"

namespace btnsd::daemon {
namespace {

TEST(LogTest, RecordsAreKeyValueWithQuotingWhereNeeded) {
  EXPECT_EQ(FormatRecord(Level::kInfo, "ike-sa-up",
                         {{"ike_sa", uint64_t{3}}, {"peer", "192.0.2.2"}}),
            "level=info event=ike-sa-up ike_sa=3 peer=192.0.2.2");
  EXPECT_EQ(FormatRecord(Level::kError, "config-error",
                         {{"error", "a.yaml:3:5: pad[0].auth: expected \"psk\""}}),
            "level=error event=config-error "
            "error=\"a.yaml:3:5: pad[0].auth: expected \\\"psk\\\"\"");
  EXPECT_EQ(FormatValue(""), "\"\"");
  EXPECT_EQ(FormatValue("k=v"), "\"k=v\"");
  EXPECT_EQ(FormatValue("line\nbreak"), "\"line\\nbreak\"");
}

TEST(LogTest, LevelsFilter) {
  Logger::SetLevel(Level::kWarning);
  EXPECT_TRUE(Logger::Enabled(Level::kError));
  EXPECT_TRUE(Logger::Enabled(Level::kWarning));
  EXPECT_FALSE(Logger::Enabled(Level::kInfo));
  Logger::SetLevel(Level::kTrace);
  EXPECT_TRUE(Logger::Enabled(Level::kDebug));
  EXPECT_EQ(LevelName(Level::kTrace), "trace");
}

}  // namespace
}  // namespace btnsd::daemon
