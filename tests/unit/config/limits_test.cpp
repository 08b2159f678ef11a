// [limits]: defaults, values read, and the file:line:col errors of bad ones.
#include <gtest/gtest.h>

#include <string>

#include "ringtgt/config/config.hpp"

namespace ringtgt::config {
namespace {

// Lines 1-4: a portal and a target; [limits] starts at line 5.
const std::string kHead =
    "[[portal]]\n"
    "listen = \"127.0.0.1:3260\"\n"
    "[[target]]\n"
    "name = \"iqn.2025-01.com.example:t\"\n"
    "[limits]\n";

std::string error_of(const std::string& text) {
  try {
    load_string(text, "t.toml");
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "no error";
}

TEST(Limits, Defaults) {
  Config c = load_string(kHead, "t.toml");
  EXPECT_EQ(c.limits.max_sessions, 64u);
  EXPECT_EQ(c.limits.max_sessions_per_initiator, 16u);
  EXPECT_EQ(c.limits.max_connections, 1024u);
  EXPECT_EQ(c.limits.max_buffer_memory, 512ull << 20);
  EXPECT_EQ(c.limits.max_session_output, 16ull << 20);
}

TEST(Limits, ValuesRead) {
  Config c = load_string(kHead +
                             "max_sessions = 3\n"
                             "max_sessions_per_initiator = 2\n"
                             "max_connections = 10\n"
                             "max_buffer_memory = \"96M\"\n",
                         "t.toml");
  EXPECT_EQ(c.limits.max_sessions, 3u);
  EXPECT_EQ(c.limits.max_sessions_per_initiator, 2u);
  EXPECT_EQ(c.limits.max_connections, 10u);
  EXPECT_EQ(c.limits.max_buffer_memory, 96ull << 20);
  EXPECT_EQ(
      load_string(kHead + "max_buffer_memory = 70000000\n", "t.toml").limits.max_buffer_memory,
      70000000u);
  EXPECT_EQ(
      load_string(kHead + "max_session_output = \"1M\"\n", "t.toml").limits.max_session_output,
      1ull << 20);
}

TEST(Limits, Errors) {
  EXPECT_EQ(error_of(kHead + "max_sessions = 0\n"),
            "t.toml:6:16: limits.max_sessions must be 1..65535, not 0");
  EXPECT_EQ(error_of(kHead + "max_sessions_per_initiator = 70000\n"),
            "t.toml:6:30: limits.max_sessions_per_initiator must be 1..65535, not 70000");
  EXPECT_EQ(error_of(kHead + "max_connections = \"many\"\n").substr(0, 12), "t.toml:6:19:");
  EXPECT_EQ(error_of(kHead + "max_buffer_memory = \"8M\"\n"),
            "t.toml:6:21: limits.max_buffer_memory must be at least 64M (twice the largest "
            "command buffer), not 8388608 bytes");
  EXPECT_NE(error_of(kHead + "max_buffer_memory = \"lots\"\n").find("t.toml:6:21:"),
            std::string::npos);
  EXPECT_EQ(error_of(kHead + "max_session_output = \"64K\"\n"),
            "t.toml:6:22: limits.max_session_output must be from 256K to 1G, not 65536 bytes");
  EXPECT_EQ(error_of(kHead + "max_session_output = \"2G\"\n"),
            "t.toml:6:22: limits.max_session_output must be from 256K to 1G, not 2147483648 bytes");
  EXPECT_NE(error_of(kHead + "max_session = 3\n").find("t.toml:6:1:"), std::string::npos);
  EXPECT_NE(error_of(kHead.substr(0, kHead.size() - 9) + "limits = 5\n").find("t.toml:5:"),
            std::string::npos);
}

// target.portals: lines 1-4 two portals, 5-6 the target, 7 its portals.
const std::string kTwoPortals =
    "[[portal]]\n"
    "listen = \"127.0.0.1:3260\"\n"
    "[[portal]]\n"
    "listen = \"[::1]:3261\"\n"
    "[[target]]\n"
    "name = \"iqn.2025-01.com.example:t\"\n";

TEST(TargetPortals, DefaultIsEveryPortal) {
  Config c = load_string(kTwoPortals, "t.toml");
  EXPECT_TRUE(c.targets.at(0).portals.empty());
}

TEST(TargetPortals, SubsetRead) {
  Config c = load_string(kTwoPortals + "portals = [\"[::1]:3261\"]\n", "t.toml");
  ASSERT_EQ(c.targets.at(0).portals.size(), 1u);
  EXPECT_EQ(c.targets.at(0).portals[0].to_string(), "[::1]:3261");
}

TEST(TargetPortals, Errors) {
  EXPECT_EQ(error_of(kTwoPortals + "portals = [\"127.0.0.1:3262\"]\n"),
            "t.toml:7:12: portal 127.0.0.1:3262 is not one of the [[portal]] listen values "
            "(127.0.0.1:3260, [::1]:3261)");
  EXPECT_EQ(error_of(kTwoPortals + "portals = []\n").substr(0, 12), "t.toml:7:11:");
  EXPECT_EQ(error_of(kTwoPortals + "portals = [3260]\n"),
            "t.toml:7:12: portals entries must be strings, not an integer");
  EXPECT_EQ(error_of(kTwoPortals + "portals = [\"127.0.0.1:3260\", \"127.0.0.1:3260\"]\n"),
            "t.toml:7:30: portal 127.0.0.1:3260 listed twice");
  EXPECT_NE(error_of(kTwoPortals + "portals = [\"nohost\"]\n").find("t.toml:7:12: bad portal"),
            std::string::npos);
}

}  // namespace
}  // namespace ringtgt::config
