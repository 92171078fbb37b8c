#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "longlive/error.h"
#include "longlive/log.h"

namespace longlive {
namespace {

TEST(Log, ParsesEveryLevelAndRejectsUnknownNames) {
  EXPECT_EQ(log::parse_level("debug"), log::Level::debug);
  EXPECT_EQ(log::parse_level("warning"), log::Level::warn);
  try {
    log::parse_level("loud");
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("'loud'"), std::string::npos) << e.what();
  }
}

TEST(Log, CallbackReceivesMessagesAtOrAboveLevel) {
  std::vector<std::string> seen;
  log::set_callback([&](log::Level, std::string_view text) { seen.emplace_back(text); });
  log::set_level(log::Level::info);
  log::debug("hidden {}", 1);
  log::info("shown {}", 2);
  log::set_callback(nullptr);
  log::set_level(log::Level::warn);
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0], "shown 2");
}

}  // namespace
}  // namespace longlive
