// [testing] durability_log and ack_before_flush: the durability check's switches.
#include <gtest/gtest.h>

#include <string>

#include "ringtgt/config/config.hpp"

namespace ringtgt::config {
namespace {

const std::string kBase =
    "[[portal]]\nlisten = \"127.0.0.1:3260\"\n"
    "[[target]]\nname = \"iqn.2025-01.com.example:t\"\n"
    "[[target.lun]]\nnumber = 0\npath = \"/tmp/x.img\"\n";

std::string error_of(const std::string& text) {
  try {
    load_string(text, "t.toml");
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "no error";
}

TEST(DurabilityTesting, OffUnlessNamed) {
  const Config c = load_string(kBase, "t.toml");
  EXPECT_TRUE(c.durability_testing.log_path.empty());
  EXPECT_FALSE(c.durability_testing.ack_before_flush);
}

TEST(DurabilityTesting, ReadsTheLogAndTheBrokenOrderAndWritesThemBack) {
  const Config c = load_string(
      kBase + "[testing]\ndurability_log = \"/tmp/d.log\"\nack_before_flush = true\n", "t.toml");
  EXPECT_EQ(c.durability_testing.log_path, "/tmp/d.log");
  EXPECT_TRUE(c.durability_testing.ack_before_flush);
  const Config again = load_string(to_toml(c), "t.toml");
  EXPECT_EQ(again.durability_testing.log_path, "/tmp/d.log");
  EXPECT_TRUE(again.durability_testing.ack_before_flush);
}

TEST(DurabilityTesting, TheBrokenOrderNeedsTheLog) {
  EXPECT_EQ(error_of(kBase + "[testing]\nack_before_flush = true\n"),
            "t.toml:9:20: testing.ack_before_flush needs testing.durability_log: the broken "
            "acknowledgement order exists only to show that the durability checker catches it");
}

TEST(DurabilityTesting, UnknownKeysAndEmptyPathsAreRefused) {
  EXPECT_NE(error_of(kBase + "[testing]\nlog = \"x\"\n").find("unknown key 'log' in [testing]"),
            std::string::npos);
  EXPECT_NE(error_of(kBase + "[testing]\ndurability_log = \"\"\n").find("must not be empty"),
            std::string::npos);
}

}  // namespace
}  // namespace ringtgt::config
