// Config layer: mirrored LUNs (ack_quorum, on_quorum_loss, [[target.lun.copy]]).
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "ringtgt/config/config.hpp"

namespace ringtgt::config {
namespace {

// Lines 1-7: a portal, a target and LUN 0 with path /tmp/p.img; tests append
// from line 8 on.
std::string lun(const std::string& more) {
  return "[[portal]]\n"
         "listen = \"127.0.0.1:3260\"\n"
         "[[target]]\n"
         "name = \"iqn.2025-01.com.example:t\"\n"
         "[[target.lun]]\n"
         "number = 0\n"
         "path = \"/tmp/p.img\"\n" +
         more;
}

std::string copy(const std::string& name, const std::string& path, const std::string& more = "") {
  return "[[target.lun.copy]]\nname = \"" + name + "\"\npath = \"" + path + "\"\n" + more;
}

std::string error_of(const std::string& text) {
  try {
    load_string(text, "t.toml");
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "no error";
}

TEST(Mirror, CopiesQuorumAndDomains) {
  const Config c =
      load_string(lun("ack_quorum = 2\non_quorum_loss = \"read_only\"\n"
                      "failure_domain = \"disk:nvme0\"\n") +
                      copy("disk2", "/tmp/c2.img", "failure_domain = \"disk:nvme1\"\n") +
                      copy("disk3", "/tmp/c3.img"),
                  "t.toml");
  const Lun& l = c.targets[0].luns[0];
  ASSERT_EQ(l.copies.size(), 2u);
  EXPECT_EQ(l.copies[0].name, "disk2");
  EXPECT_EQ(l.copies[0].path, "/tmp/c2.img");
  EXPECT_EQ(l.copies[0].failure_domain, "disk:nvme1");
  EXPECT_EQ(l.copies[0].where, "t.toml:11:1");
  EXPECT_EQ(l.copies[1].failure_domain, "");
  EXPECT_EQ(l.ack_quorum, 2u);
  EXPECT_EQ(l.quorum(), 2u);
  EXPECT_EQ(l.on_quorum_loss, QuorumLossPolicy::read_only);
  EXPECT_EQ(l.failure_domain, "disk:nvme0");
}

TEST(Mirror, DefaultsAreAllCopiesAndFail) {
  const Lun l = load_string(lun(copy("b", "/tmp/b.img")), "t.toml").targets[0].luns[0];
  EXPECT_EQ(l.ack_quorum, 0u);
  EXPECT_EQ(l.quorum(), 2u);
  EXPECT_EQ(l.on_quorum_loss, QuorumLossPolicy::fail);
  EXPECT_TRUE(load_string(lun(""), "t.toml").targets[0].luns[0].copies.empty());
}

TEST(Mirror, WrittenConfigReadsBack) {
  const Config c = load_string(lun("ack_quorum = 1\nfailure_domain = \"host:a\"\n") +
                                   copy("b", "/tmp/b.img", "failure_domain = \"host:b\"\n"),
                               "t.toml");
  const Config again = validate(c);
  const Lun& l = again.targets[0].luns[0];
  EXPECT_EQ(l.copies, c.targets[0].luns[0].copies);
  EXPECT_EQ(l.ack_quorum, 1u);
  EXPECT_EQ(l.failure_domain, "host:a");
  EXPECT_EQ(l.on_quorum_loss, QuorumLossPolicy::fail);
}

TEST(Mirror, QuorumOutOfRange) {
  EXPECT_EQ(error_of(lun("ack_quorum = 3\n") + copy("b", "/tmp/b.img")),
            "t.toml:8:14: ack_quorum must be 1..2 (the primary and its 1 copy), not 3");
  EXPECT_EQ(error_of(lun("ack_quorum = 0\n") + copy("b", "/tmp/b.img") + copy("c", "/tmp/c.img")),
            "t.toml:8:14: ack_quorum must be 1..3 (the primary and its 2 copies), not 0");
  EXPECT_EQ(error_of(lun("ack_quorum = 2\n")),
            "t.toml:8:14: ack_quorum must be 1..1 (the primary and its 0 copies), not 2");
  EXPECT_EQ(error_of(lun("ack_quorum = \"2\"\n") + copy("b", "/tmp/b.img")),
            "t.toml:8:14: ack_quorum must be an integer, not a string");
}

TEST(Mirror, ResyncKeys) {
  const Config c = load_string(
      lun("resync_region_size = \"256K\"\nresync_rate = \"8M\"\n") + copy("b", "/tmp/b.img"),
      "t.toml");
  EXPECT_EQ(c.targets[0].luns[0].resync_region_size, 256u << 10);
  EXPECT_EQ(c.targets[0].luns[0].resync_rate, 8u << 20);
  const Config d = load_string(lun("") + copy("b", "/tmp/b.img"), "t.toml");
  EXPECT_EQ(d.targets[0].luns[0].resync_region_size, 1u << 20);
  EXPECT_EQ(error_of(lun("resync_region_size = 3000\n") + copy("b", "/tmp/b.img")),
            "t.toml:8:22: resync_region_size must be a power of two from block_size (512) to "
            "1GiB, not 3000");
  EXPECT_EQ(error_of(lun("resync_region_size = 256\n") + copy("b", "/tmp/b.img")),
            "t.toml:8:22: resync_region_size must be a power of two from block_size (512) to "
            "1GiB, not 256");
  EXPECT_EQ(error_of(lun("resync_rate = \"64K\"\n") + copy("b", "/tmp/b.img")),
            "t.toml:8:15: resync_rate must be at least resync_region_size (1048576) per second, "
            "not 65536");
  EXPECT_EQ(error_of(lun("resync_rate = \"64M\"\n")),
            "t.toml:8:15: resync_rate applies to a LUN with copies ([[target.lun.copy]])");
}

TEST(Mirror, QuorumLossPolicies) {
  const Lun waits =
      load_string(lun("on_quorum_loss = \"wait\"\n") + copy("b", "/tmp/b.img"), "t.toml")
          .targets[0]
          .luns[0];
  EXPECT_EQ(waits.on_quorum_loss, QuorumLossPolicy::wait);
  EXPECT_EQ(waits.quorum_wait_seconds, 20u);
  const Lun briefly =
      load_string(lun("on_quorum_loss = \"wait\"\nquorum_wait = 5\n") + copy("b", "/tmp/b.img"),
                  "t.toml")
          .targets[0]
          .luns[0];
  EXPECT_EQ(briefly.quorum_wait_seconds, 5u);
  EXPECT_EQ(error_of(lun("on_quorum_loss = \"wait\"\nquorum_wait = 0\n") + copy("b", "/tmp/b.img")),
            "t.toml:9:15: quorum_wait (seconds) must be 1..3600, not 0");
  EXPECT_EQ(
      error_of(lun("on_quorum_loss = \"wait\"\nquorum_wait = \"5s\"\n") + copy("b", "/tmp/b.img")),
      "t.toml:9:15: quorum_wait (seconds) must be an integer, not a string");
  EXPECT_EQ(error_of(lun("quorum_wait = 5\n") + copy("b", "/tmp/b.img")),
            "t.toml:8:15: quorum_wait applies to on_quorum_loss = \"wait\"");
  EXPECT_EQ(
      error_of(lun("on_quorum_loss = \"panic\"\n") + copy("b", "/tmp/b.img")),
      "t.toml:8:18: on_quorum_loss \"panic\" is not one of \"fail\", \"wait\", \"read_only\"");
  EXPECT_EQ(error_of(lun("on_quorum_loss = \"fail\"\n")),
            "t.toml:8:18: on_quorum_loss applies to a LUN with copies ([[target.lun.copy]])");
}

TEST(Mirror, BadCopies) {
  EXPECT_EQ(error_of(lun(copy("b", "/tmp/b.img", "size = 5\n"))),
            "t.toml:11:1: unknown key 'size' in [[target.lun.copy]] (allowed: name, path, url, "
            "failure_domain, chap_user, chap_secret_file, command_timeout, connect_wait, "
            "reconnect_max)");
  EXPECT_EQ(error_of(lun(copy("b", "/tmp/b.img") + copy("b", "/tmp/c.img"))),
            "t.toml:12:8: duplicate copy name \"b\" in this LUN");
  EXPECT_EQ(error_of(lun(copy("b", "/tmp/b.img") + copy("c", "/tmp/b.img"))),
            "t.toml:13:8: copy \"c\" has the path of copy \"b\"");
  EXPECT_EQ(error_of(lun(copy("b", "/tmp/p.img"))),
            "t.toml:10:8: copy \"b\" is the LUN's own path");
  EXPECT_EQ(error_of(lun(copy("primary", "/tmp/b.img"))),
            "t.toml:9:8: copy name \"primary\" is taken by the LUN's own path");
  EXPECT_EQ(error_of(lun(copy("a b", "/tmp/b.img"))),
            "t.toml:9:8: copy name \"a b\" must be 1..64 of a-z A-Z 0-9 _ - .");
  EXPECT_EQ(error_of(lun("[[target.lun.copy]]\nname = \"b\"\n")),
            "t.toml:8:1: copy \"b\" needs path = \"FILE or block device\" or url = "
            "\"iscsi://HOST:PORT/IQN/LUN\"");
  EXPECT_EQ(error_of(lun("[[target.lun.copy]]\npath = \"/tmp/b.img\"\n")),
            "t.toml:8:1: [[target.lun.copy]] needs name = \"NAME\" (used in logs and metrics)");
  EXPECT_EQ(error_of(lun(copy("b", "/tmp/b.img", "failure_domain = \"\"\n"))),
            "t.toml:11:18: copy failure_domain must be 1..128 characters");
  EXPECT_EQ(error_of(lun("copy = 3\n")),
            "t.toml:8:8: 'copy' must be an array of tables, written [[target.lun.copy]], not an "
            "integer");
}

TEST(Mirror, CopyPathsAreNobodyElses) {
  const std::string two_luns = lun(copy("b", "/tmp/b.img")) +
                               "[[target.lun]]\n"
                               "number = 1\n"
                               "path = \"/tmp/b.img\"\n";
  EXPECT_EQ(error_of(two_luns),
            "t.toml:13:8: path \"/tmp/b.img\" is already used by target "
            "\"iqn.2025-01.com.example:t\" LUN 0 (copy b)");
  const std::string copy_of_other = lun("") +
                                    "[[target.lun]]\n"
                                    "number = 1\n"
                                    "path = \"/tmp/q.img\"\n" +
                                    copy("b", "/tmp/p.img");
  EXPECT_EQ(error_of(copy_of_other),
            "t.toml:13:8: path \"/tmp/p.img\" is already used by target "
            "\"iqn.2025-01.com.example:t\" LUN 0");
}

// --- remote copies (url) ---

const std::string kUrl = "iscsi://127.0.0.1:3261/iqn.2025-01.com.example:r/1";

std::string remote(const std::string& name, const std::string& url, const std::string& more = "") {
  return "[[target.lun.copy]]\nname = \"" + name + "\"\nurl = \"" + url + "\"\n" + more;
}

TEST(Mirror, RemoteCopyUrl) {
  const Config c =
      load_string(lun(remote("backup", kUrl) + copy("disk2", "/tmp/c2.img")), "t.toml");
  const Lun& l = c.targets[0].luns[0];
  ASSERT_EQ(l.copies.size(), 2u);
  ASSERT_TRUE(l.copies[0].url.has_value());
  EXPECT_EQ(l.copies[0].url->host, "127.0.0.1");
  EXPECT_EQ(l.copies[0].url->port, 3261);
  EXPECT_EQ(l.copies[0].url->target, "iqn.2025-01.com.example:r");
  EXPECT_EQ(l.copies[0].url->lun, 1u);
  EXPECT_EQ(l.copies[0].path, "");
  EXPECT_FALSE(l.copies[0].chap.has_value());
  EXPECT_FALSE(l.copies[1].url.has_value());
  EXPECT_EQ(l.copies[0].command_timeout_seconds, 10u) << "the default bound";
  const Config again = validate(c);
  EXPECT_EQ(again.targets[0].luns[0].copies, l.copies);
}

TEST(Mirror, RemoteCopiesOfTwoLunsAreTwoRemoteLuns) {
  const std::string url1 = "iscsi://127.0.0.1:3261/iqn.2025-01.com.example:r/2";
  const std::string second = "[[target.lun]]\nnumber = 1\npath = \"/tmp/q.img\"\n";
  // Two LUNs, each with a remote copy on its own remote LUN (the path check
  // once took both for the path "" and failed on a null node).
  const Config c = load_string(lun(remote("r", kUrl)) + second + remote("r", url1), "t.toml");
  ASSERT_EQ(c.targets[0].luns.size(), 2u);
  EXPECT_EQ(c.targets[0].luns[1].copies[0].url->lun, 2u);
  EXPECT_EQ(error_of(lun(remote("r", kUrl)) + second + remote("s", kUrl)),
            "t.toml:16:7: url \"" + kUrl +
                "\" is already used by target \"iqn.2025-01.com.example:t\" LUN 0 (copy r)");
}

TEST(Mirror, RemoteCopyCommandTimeout) {
  const Config c = load_string(lun(remote("backup", kUrl, "command_timeout = 3\n")), "t.toml");
  EXPECT_EQ(c.targets[0].luns[0].copies[0].command_timeout_seconds, 3u);
  // Written back by config write, and read again the same.
  const Config again = load_string(to_toml(c), "again.toml");
  EXPECT_EQ(again.targets[0].luns[0].copies[0].command_timeout_seconds, 3u);
  EXPECT_EQ(error_of(lun(remote("r", kUrl, "command_timeout = 0\n"))),
            "t.toml:11:19: copy command_timeout (seconds) must be 1..300, not 0");
  EXPECT_EQ(error_of(lun(remote("r", kUrl, "command_timeout = \"5s\"\n"))),
            "t.toml:11:19: copy command_timeout (seconds) must be an integer, not a string");
  EXPECT_EQ(error_of(lun(copy("b", "/tmp/b.img", "command_timeout = 3\n"))),
            "t.toml:11:19: copy \"b\": command_timeout is for a remote copy (url), not a local "
            "one (path)");
}

TEST(Mirror, RemoteCopyConnectWaitAndReconnectMax) {
  const Config d = load_string(lun(remote("backup", kUrl)), "t.toml");
  EXPECT_EQ(d.targets[0].luns[0].copies[0].connect_wait_seconds, 3u) << "the default wait";
  EXPECT_EQ(d.targets[0].luns[0].copies[0].reconnect_max_seconds, 5u) << "the default pause";
  const Config c =
      load_string(lun(remote("backup", kUrl, "connect_wait = 0\nreconnect_max = 30\n")), "t.toml");
  EXPECT_EQ(c.targets[0].luns[0].copies[0].connect_wait_seconds, 0u);
  EXPECT_EQ(c.targets[0].luns[0].copies[0].reconnect_max_seconds, 30u);
  const Config again = load_string(to_toml(c), "again.toml");
  EXPECT_EQ(again.targets[0].luns[0].copies, c.targets[0].luns[0].copies);
  EXPECT_EQ(error_of(lun(remote("r", kUrl, "connect_wait = 61\n"))),
            "t.toml:11:16: copy connect_wait (seconds) must be 0..60, not 61");
  EXPECT_EQ(error_of(lun(remote("r", kUrl, "reconnect_max = 0\n"))),
            "t.toml:11:17: copy reconnect_max (seconds) must be 1..300, not 0");
  EXPECT_EQ(error_of(lun(copy("b", "/tmp/b.img", "reconnect_max = 9\n"))),
            "t.toml:11:17: copy \"b\": reconnect_max is for a remote copy (url), not a local "
            "one (path)");
}

TEST(Mirror, RemoteCopyErrors) {
  EXPECT_EQ(error_of(lun(remote("r", "iscsi://h/iqn.2025-01.com.example:r"))),
            "t.toml:10:7: copy \"r\": url \"iscsi://h/iqn.2025-01.com.example:r\" is not "
            "iscsi://HOST[:PORT]/IQN/LUN: it has no /LUN after the target");
  EXPECT_EQ(error_of(lun(remote("r", "iscsi://h:99999/iqn.2025-01.com.example:r/0"))),
            "t.toml:10:7: copy \"r\": url \"iscsi://h:99999/iqn.2025-01.com.example:r/0\" is not "
            "iscsi://HOST[:PORT]/IQN/LUN: the port must be 1..65535");
  EXPECT_EQ(error_of(lun(remote("r", kUrl, "path = \"/tmp/r.img\"\n"))),
            "t.toml:10:7: copy \"r\" has both path and url; a copy is one of them");
  EXPECT_EQ(error_of(lun(remote("r", kUrl) + remote("s", kUrl))),
            "t.toml:13:7: copy \"s\" has the url of copy \"r\"");
  EXPECT_EQ(error_of(lun(remote("r", kUrl, "chap_user = \"u\"\n"))),
            "t.toml:11:13: copy \"r\": chap_user and chap_secret_file go together");
  EXPECT_EQ(error_of(lun(remote("r", kUrl, "chap_secret_file = \"/nonexistent/s\"\n"))),
            "t.toml:11:20: copy \"r\": chap_user and chap_secret_file go together");
  EXPECT_EQ(
      error_of(lun(copy("b", "/tmp/b.img", "chap_user = \"u\"\n"))),
      "t.toml:11:13: copy \"b\": chap_user is for a remote copy (url), not a local one (path)");
  EXPECT_EQ(error_of(lun(
                remote("r", kUrl, "chap_user = \"u\"\nchap_secret_file = \"/nonexistent/s\"\n"))),
            "t.toml:12:20: cannot open secret file \"/nonexistent/s\": No such file or directory");
}

TEST(Mirror, RemoteCopyChapSecretIsRead) {
  char dir[] = "/tmp/ringtgt-copy-chap-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  const std::string file = std::string(dir) + "/secret";
  {
    FILE* f = std::fopen(file.c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::fputs("a-long-enough-secret\n", f);
    std::fclose(f);
  }
  ASSERT_EQ(chmod(file.c_str(), 0644), 0);
  const std::string text =
      lun(remote("r", kUrl, "chap_user = \"u\"\nchap_secret_file = \"" + file + "\"\n"));
  EXPECT_NE(error_of(text).find("it must not be accessible by group or others"), std::string::npos)
      << error_of(text);
  ASSERT_EQ(chmod(file.c_str(), 0600), 0);
  const Lun l = load_string(text, "t.toml").targets[0].luns[0];
  ASSERT_TRUE(l.copies[0].chap.has_value());
  EXPECT_EQ(l.copies[0].chap->user, "u");
  EXPECT_EQ(l.copies[0].chap->secret, "a-long-enough-secret");
  EXPECT_EQ(l.copies[0].chap->secret_file, file);
  std::remove(file.c_str());
  rmdir(dir);
}

}  // namespace
}  // namespace ringtgt::config
