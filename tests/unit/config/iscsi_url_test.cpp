// Config layer: iscsi://HOST[:PORT]/IQN/LUN, the url of a remote copy.
#include "ringtgt/config/iscsi_url.hpp"

#include <gtest/gtest.h>

#include <string>

namespace ringtgt::config {
namespace {

std::string error_of(const std::string& url) {
  IscsiUrl u;
  std::string why;
  return parse_iscsi_url(url, &u, &why) ? "ok" : why;
}

TEST(IscsiUrl, HostPortTargetLun) {
  IscsiUrl u;
  std::string why;
  ASSERT_TRUE(parse_iscsi_url("iscsi://10.0.0.14:3261/iqn.2025-01.com.example:r/7", &u, &why));
  EXPECT_EQ(u.host, "10.0.0.14");
  EXPECT_EQ(u.port, 3261);
  EXPECT_EQ(u.target, "iqn.2025-01.com.example:r");
  EXPECT_EQ(u.lun, 7u);
  EXPECT_EQ(u.portal(), "10.0.0.14:3261");
  EXPECT_EQ(u.text(), "iscsi://10.0.0.14:3261/iqn.2025-01.com.example:r/7");
}

TEST(IscsiUrl, PortDefaultsTo3260AndIpv6KeepsBrackets) {
  IscsiUrl u;
  std::string why;
  ASSERT_TRUE(parse_iscsi_url("iscsi://backup.lan/iqn.2025-01.com.example:r/0", &u, &why));
  EXPECT_EQ(u.host, "backup.lan");
  EXPECT_EQ(u.port, 3260);
  ASSERT_TRUE(parse_iscsi_url("iscsi://[::1]:4000/iqn.2025-01.com.example:r/1", &u, &why));
  EXPECT_EQ(u.host, "::1");
  EXPECT_EQ(u.port, 4000);
  EXPECT_EQ(u.portal(), "[::1]:4000");
  ASSERT_TRUE(parse_iscsi_url("iscsi://[::1]/iqn.2025-01.com.example:r/1", &u, &why));
  EXPECT_EQ(u.port, 3260);
}

TEST(IscsiUrl, BadUrlsSayWhy) {
  EXPECT_EQ(error_of("http://h/iqn.2025-01.com.example:r/1"), "it does not start with iscsi://");
  EXPECT_EQ(error_of("iscsi://h"), "it has no /TARGET/LUN after the host");
  EXPECT_EQ(error_of("iscsi://h/iqn.2025-01.com.example:r"), "it has no /LUN after the target");
  EXPECT_EQ(error_of("iscsi://:3260/iqn.2025-01.com.example:r/1"), "no host");
  EXPECT_EQ(error_of("iscsi://h:/iqn.2025-01.com.example:r/1"), "an empty port after ':'");
  EXPECT_EQ(error_of("iscsi://h:0/iqn.2025-01.com.example:r/1"), "the port must be 1..65535");
  EXPECT_EQ(error_of("iscsi://h:65536/iqn.2025-01.com.example:r/1"), "the port must be 1..65535");
  EXPECT_EQ(error_of("iscsi://[::1/iqn.2025-01.com.example:r/1"), "an IPv6 address needs its ']'");
  EXPECT_EQ(error_of("iscsi://u:p@h/iqn.2025-01.com.example:r/1"),
            "credentials go in chap_user and chap_secret_file, not in the URL");
  EXPECT_EQ(error_of("iscsi://h/target/1"),
            "\"target\" is not a target name (iqn., eui. or naa., of a-z A-Z 0-9 . - :)");
  EXPECT_EQ(error_of("iscsi://h/iqn.2025-01.com.example:r/x"), "the LUN must be a number 0..16383");
  EXPECT_EQ(error_of("iscsi://h/iqn.2025-01.com.example:r/16384"),
            "the LUN must be a number 0..16383");
  EXPECT_EQ(error_of("iscsi://h/iqn.2025-01.com.example:r/"), "the LUN must be a number 0..16383");
}

}  // namespace
}  // namespace ringtgt::config
