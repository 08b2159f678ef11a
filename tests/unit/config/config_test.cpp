// Config layer: TOML -> validated Config, and the errors a person reads.
#include "ringtgt/config/config.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "ringtgt/common/atomic_file.hpp"

namespace ringtgt::config {
namespace {

namespace fs = std::filesystem;

// Lines 1-2: a portal; lines 3-4: a target. Tests append from line 5 on.
const std::string kHead =
    "[[portal]]\n"
    "listen = \"127.0.0.1:3260\"\n"
    "[[target]]\n"
    "name = \"iqn.2025-01.com.example:t\"\n";

// kHead plus one LUN at lines 5-7; more LUN keys go from line 8 on.
std::string with_lun(const std::string& more = "") {
  return kHead +
         "[[target.lun]]\n"
         "number = 0\n"
         "path = \"/tmp/x.img\"\n" +
         more;
}

// what() of the ConfigError that loading text throws, or "no error".
std::string error_of(const std::string& text) {
  try {
    load_string(text, "t.toml");
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "no error";
}

fs::path conf_dir() {
  return fs::path(RINGTGT_SOURCE_DIR) / "conf";
}

TEST(ConfigError, WhatHasFileLineColumn) {
  ConfigError e("a.toml", 3, 14, "bad thing");
  EXPECT_STREQ(e.what(), "a.toml:3:14: bad thing");
  EXPECT_EQ(e.file(), "a.toml");
  EXPECT_EQ(e.line(), 3u);
  EXPECT_EQ(e.column(), 14u);
}

TEST(Portal, ToString) {
  EXPECT_EQ((Portal{"127.0.0.1", 3260}).to_string(), "127.0.0.1:3260");
  EXPECT_EQ((Portal{"::1", 3261}).to_string(), "[::1]:3261");
  EXPECT_EQ((Portal{"0.0.0.0", 1}).to_string(), "0.0.0.0:1");
}

TEST(Load, FullConfig) {
  const std::string text = R"(workers = 4
log_level = "debug"
state_dir = "/var/lib/ringtgt"

[[portal]]
listen = "0.0.0.0:3260"
[[portal]]
listen = "[::1]:3261"
[[portal]]
listen = "10.0.0.11"
[[portal]]
listen = "[::]"

[iscsi]
max_recv_data_segment_length = 65536
max_burst_length = 262144
first_burst_length = 8192
initial_r2t = true
immediate_data = false
max_outstanding_r2t = 4
header_digest = true
data_digest = true
default_time2wait = 5
default_time2retain = 20
queue_depth = 64
nop_interval = 10
nop_timeout = 20
login_timeout = 30

[[target]]
name = "iqn.2025-01.com.jacobgade:demo"
alias = "demo"
allowed_initiators = ["iqn.2025-01.com.jacobgade:node2", "eui.0123456789ABCDEF"]

  [[target.lun]]
  number = 16383
  path = "/dev/vg0/lun1"
  block_size = 4096
  read_only = true
  direct_io = true
  write_ack = "writeback"
  serial = "SN-0001"
  allow_sanitize = true
  sanitize_rate = "8M"

  [[target.lun]]
  number = 0
  path = "/tmp/a.img"
  size = 1048576

[[target]]
name = "naa.60014051234567890123456789abcdef"
)";
  Config c = load_string(text, "full.toml");
  EXPECT_EQ(c.source, "full.toml");
  EXPECT_EQ(c.workers, 4u);
  EXPECT_EQ(c.log_level, "debug");
  EXPECT_EQ(c.state_dir, "/var/lib/ringtgt");
  ASSERT_EQ(c.portals.size(), 4u);
  EXPECT_EQ(c.portals[0].host, "0.0.0.0");
  EXPECT_EQ(c.portals[0].port, 3260);
  EXPECT_EQ(c.portals[1].host, "::1");
  EXPECT_EQ(c.portals[1].port, 3261);
  EXPECT_EQ(c.portals[1].to_string(), "[::1]:3261");
  EXPECT_EQ(c.portals[2].host, "10.0.0.11");
  EXPECT_EQ(c.portals[2].port, 3260);
  EXPECT_EQ(c.portals[3].host, "::");
  EXPECT_EQ(c.portals[3].port, 3260);

  const IscsiSettings& s = c.iscsi;
  EXPECT_EQ(s.max_recv_data_segment_length, 65536u);
  EXPECT_EQ(s.max_burst_length, 262144u);
  EXPECT_EQ(s.first_burst_length, 8192u);
  EXPECT_TRUE(s.initial_r2t);
  EXPECT_FALSE(s.immediate_data);
  EXPECT_EQ(s.max_outstanding_r2t, 4u);
  EXPECT_TRUE(s.header_digest);
  EXPECT_TRUE(s.data_digest);
  EXPECT_EQ(s.default_time2wait, 5u);
  EXPECT_EQ(s.default_time2retain, 20u);
  EXPECT_EQ(s.queue_depth, 64u);
  EXPECT_EQ(s.nop_interval_seconds, 10u);
  EXPECT_EQ(s.nop_timeout_seconds, 20u);
  EXPECT_EQ(s.login_timeout_seconds, 30u);

  ASSERT_EQ(c.targets.size(), 2u);
  const Target& t = c.targets[0];
  EXPECT_EQ(t.name, "iqn.2025-01.com.jacobgade:demo");
  EXPECT_EQ(t.alias, "demo");
  ASSERT_EQ(t.allowed_initiators.size(), 2u);
  EXPECT_EQ(t.allowed_initiators[0], "iqn.2025-01.com.jacobgade:node2");
  EXPECT_EQ(t.allowed_initiators[1], "eui.0123456789ABCDEF");
  ASSERT_EQ(t.luns.size(), 2u);
  const Lun& a = t.luns[0];
  EXPECT_EQ(a.number, 16383u);
  EXPECT_EQ(a.path, "/dev/vg0/lun1");
  EXPECT_FALSE(a.size.has_value());
  EXPECT_EQ(a.block_size, 4096u);
  EXPECT_TRUE(a.read_only);
  EXPECT_EQ(a.direct_io, std::optional<bool>(true));
  EXPECT_EQ(a.write_ack, WriteAckPolicy::writeback);
  EXPECT_EQ(a.serial, "SN-0001");
  EXPECT_TRUE(a.allow_sanitize);
  EXPECT_EQ(a.sanitize_rate, 8u << 20);
  const Lun& b = t.luns[1];
  EXPECT_EQ(b.number, 0u);
  EXPECT_EQ(b.path, "/tmp/a.img");
  ASSERT_TRUE(b.size.has_value());
  EXPECT_EQ(*b.size, 1048576u);
  EXPECT_EQ(b.block_size, 512u);
  EXPECT_FALSE(b.read_only);
  EXPECT_FALSE(b.direct_io.has_value());  // the store decides (block device: on)
  EXPECT_EQ(b.write_ack, WriteAckPolicy::writethrough);
  EXPECT_EQ(b.serial, "");
  EXPECT_FALSE(b.allow_sanitize);  // SANITIZE is refused unless asked for
  EXPECT_EQ(b.sanitize_rate, 0u);

  EXPECT_EQ(c.targets[1].name, "naa.60014051234567890123456789abcdef");
  EXPECT_EQ(c.targets[1].alias, "");
  EXPECT_TRUE(c.targets[1].allowed_initiators.empty());
  EXPECT_TRUE(c.targets[1].luns.empty());
}

// One [[target.lun]] on its own (lun.add): the file's rules, but no folder to resolve
// a relative path against.
TEST(LoadLun, TheFilesRulesForOneLun) {
  Lun l = load_lun(
      "number = 7\npath = \"/tmp/x.img\"\nsize = \"2M\"\nphysical_block_size = 4096\n"
      "provisioning = \"full\"\nwrite_ack = \"writeback\"\n"
      "allowed_initiators = [\"iqn.2025-01.com.example:i\"]\n",
      "lun.add");
  EXPECT_EQ(l.number, 7u);
  EXPECT_EQ(l.path, "/tmp/x.img");
  EXPECT_EQ(l.size, std::optional<std::uint64_t>(2u << 20));
  EXPECT_EQ(l.physical_block_size, 4096u);
  EXPECT_EQ(l.provisioning, std::optional<Provisioning>(Provisioning::full));
  EXPECT_EQ(l.write_ack, WriteAckPolicy::writeback);
  EXPECT_EQ(l.allowed_initiators, std::vector<std::string>{"iqn.2025-01.com.example:i"});

  auto problem = [](const std::string& text) {
    try {
      load_lun(text, "lun.add");
    } catch (const ConfigError& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  EXPECT_NE(problem("number = 1\npath = \"rel.img\"\n").find("path must be absolute"),
            std::string::npos);
  EXPECT_NE(problem("number = 1\npath = \"/a\"\nblock_size = 1000\n")
                .find("block_size must be 512 or 4096, not 1000"),
            std::string::npos);
  EXPECT_NE(problem("number = 1\npath = \"/a\"\nprovisioning = \"x\"\n")
                .find("provisioning \"x\" is not one of"),
            std::string::npos);
  EXPECT_NE(problem("number = 1\npath = \"/a\"\ncolour = 1\n").find("unknown key 'colour'"),
            std::string::npos);
  EXPECT_NE(problem("number = 1\npath = \"/a\"\nallowed_initiators = [\"bad name\"]\n")
                .find("not a valid iSCSI name"),
            std::string::npos);
}

TEST(Load, Defaults) {
  Config c = load_string(kHead, "t.toml");
  EXPECT_EQ(c.workers, 0u);
  EXPECT_EQ(c.log_level, "info");
  EXPECT_EQ(c.state_dir, (fs::current_path() / "state").string());
  const IscsiSettings s;
  EXPECT_EQ(c.iscsi.max_recv_data_segment_length, 262144u);
  EXPECT_EQ(c.iscsi.max_burst_length, 1048576u);
  EXPECT_EQ(c.iscsi.first_burst_length, 65536u);
  EXPECT_FALSE(c.iscsi.initial_r2t);
  EXPECT_TRUE(c.iscsi.immediate_data);
  EXPECT_EQ(c.iscsi.max_outstanding_r2t, 1u);
  EXPECT_EQ(c.iscsi.default_time2wait, 2u);
  EXPECT_EQ(c.iscsi.default_time2retain, 0u);
  EXPECT_EQ(c.iscsi.queue_depth, 128u);
  EXPECT_EQ(c.iscsi.nop_interval_seconds, 15u);
  EXPECT_EQ(c.iscsi.nop_timeout_seconds, 30u);
  EXPECT_EQ(c.iscsi.login_timeout_seconds, 15u);
  EXPECT_EQ(s.queue_depth, c.iscsi.queue_depth);
}

TEST(Load, SizeSuffixes) {
  auto size_of = [](const std::string& v) {
    Config c = load_string(with_lun("size = " + v + "\n"), "t.toml");
    return *c.targets.at(0).luns.at(0).size;
  };
  EXPECT_EQ(size_of("\"4K\""), 4096u);
  EXPECT_EQ(size_of("\"512M\""), 512ull << 20);
  EXPECT_EQ(size_of("\"1G\""), 1ull << 30);
  EXPECT_EQ(size_of("\"2T\""), 2ull << 40);
  EXPECT_EQ(size_of("\"1g\""), 1ull << 30);
  EXPECT_EQ(size_of("\"1024\""), 1024u);
  EXPECT_EQ(size_of("107374182400"), 100ull << 30);
}

TEST(Load, TopLevelKeysAfterATableBelongToThatTable) {
  // TOML: state_dir below [[target.lun]] is a key of that LUN, not of the top level.
  EXPECT_EQ(error_of(with_lun("state_dir = \"s\"\n")),
            "t.toml:8:1: unknown key 'state_dir' in [[target.lun]] (allowed: number, path, size, "
            "block_size, physical_block_size, read_only, direct_io, write_ack, serial, "
            "allowed_initiators, provisioning, allow_sanitize, sanitize_rate, rbd, ack_quorum, "
            "on_quorum_loss, quorum_wait, failure_domain, copy, resync_region_size, resync_rate, "
            "max_transfer)");
}

TEST(Load, RelativePathsResolveAgainstCurrentDir) {
  Config c = load_string(
      "state_dir = \"s\"\n" + kHead + "[[target.lun]]\nnumber = 0\npath = \"sub/../x.img\"\n",
      "t.toml");
  EXPECT_EQ(c.state_dir, (fs::current_path() / "s").string());
  EXPECT_EQ(c.targets[0].luns[0].path, (fs::current_path() / "x.img").string());
}

class TempDir : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/ringtgt-config-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path write(const std::string& name, const std::string& text) {
    fs::path p = dir_ / name;
    fs::create_directories(p.parent_path());
    std::ofstream(p) << text;
    return p;
  }
  fs::path dir_;
};

TEST_F(TempDir, LoadFileResolvesAgainstTheFilesFolder) {
  fs::path p = write("etc/r.toml", kHead +
                                       "[[target.lun]]\nnumber = 0\npath = \"../data/a.img\"\n"
                                       "size = \"1M\"\n");
  Config c = load_file(p.string());
  EXPECT_EQ(c.source, p.string());
  EXPECT_EQ(c.state_dir, (dir_ / "etc/state").string());
  EXPECT_EQ(c.targets[0].luns[0].path, (dir_ / "data/a.img").string());
  EXPECT_EQ(*c.targets[0].luns[0].size, 1u << 20);
}

TEST_F(TempDir, LoadFileErrorsCarryTheFileName) {
  fs::path p = write("bad.toml", kHead + "bogus = 1\n");
  try {
    load_file(p.string());
    FAIL() << "no error";
  } catch (const ConfigError& e) {
    EXPECT_EQ(e.file(), p.string());
    EXPECT_EQ(e.line(), 5u);
    EXPECT_EQ(e.column(), 1u);
    EXPECT_EQ(std::string(e.what()),
              p.string() +
                  ":5:1: unknown key 'bogus' in [[target]] (allowed: name, alias, "
                  "allowed_initiators, chap_user, chap_secret_file, mutual_user, "
                  "mutual_secret_file, lun, portals)");
  }
}

TEST_F(TempDir, MissingFile) {
  std::string p = (dir_ / "nope.toml").string();
  try {
    load_file(p);
    FAIL() << "no error";
  } catch (const ConfigError& e) {
    EXPECT_EQ(e.line(), 0u);
    EXPECT_EQ(e.column(), 0u);
    EXPECT_EQ(std::string(e.what()), p + ":0:0: cannot open: No such file or directory");
  }
}

TEST_F(TempDir, DirectoryIsNotAFile) {
  std::string p = dir_.string();
  try {
    load_file(p);
    FAIL() << "no error";
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()), p + ":0:0: cannot read: Is a directory");
  }
}

// --- CHAP secret files and LUN masking ---

class Secrets : public TempDir {
 protected:
  std::string secret(const std::string& name, const std::string& content,
                     fs::perms mode = fs::perms::owner_read | fs::perms::owner_write) {
    fs::path p = write(name, content);
    fs::permissions(p, mode);
    return p.string();
  }
  // kHead's target with CHAP keys (line 5 on).
  static std::string target_chap(const std::string& file, const std::string& more = "") {
    return kHead + "chap_user = \"node2\"\nchap_secret_file = \"" + file + "\"\n" + more;
  }
};

TEST_F(Secrets, TargetAndDiscoveryChap) {
  std::string s1 = secret("s1", "twelve-bytes\n");
  std::string s2 = secret("s2", "another-secret-value\r\n");
  std::string s3 = secret("s3", "discovery-secret");
  Config c = load_string(
      "[discovery]\nchap_user = \"disc\"\nchap_secret_file = \"" + s3 + "\"\n" +
          target_chap(s1, "mutual_user = \"node1\"\nmutual_secret_file = \"" + s2 + "\"\n"),
      "t.toml");
  ASSERT_TRUE(c.discovery_chap.has_value());
  EXPECT_EQ(c.discovery_chap->user, "disc");
  EXPECT_EQ(c.discovery_chap->secret, "discovery-secret");
  EXPECT_FALSE(c.discovery_chap->mutual());
  ASSERT_TRUE(c.targets[0].chap.has_value());
  const Chap& chap = *c.targets[0].chap;
  EXPECT_EQ(chap.user, "node2");
  EXPECT_EQ(chap.secret, "twelve-bytes");  // trailing newline dropped
  EXPECT_EQ(chap.secret_file, s1);
  EXPECT_TRUE(chap.mutual());
  EXPECT_EQ(chap.mutual_user, "node1");
  EXPECT_EQ(chap.mutual_secret, "another-secret-value");
  EXPECT_EQ(chap.mutual_secret_file, s2);
}

TEST_F(Secrets, NoChapByDefault) {
  Config c = load_string(kHead, "t.toml");
  EXPECT_FALSE(c.discovery_chap.has_value());
  EXPECT_FALSE(c.targets[0].chap.has_value());
}

TEST_F(Secrets, GroupOrWorldReadableFileRefused) {
  std::string s = secret("open", "twelve-bytes-long",
                         fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read |
                             fs::perms::others_read);
  std::string e = error_of(target_chap(s));
  EXPECT_EQ(e, "t.toml:6:20: secret file \"" + s +
                   "\" has mode 0644: it must not be accessible by group or others (chmod 600 " +
                   s + ")");
  std::string g =
      secret("group", "twelve-bytes-long", fs::perms::owner_read | fs::perms::group_read);
  EXPECT_NE(error_of(target_chap(g)).find("has mode 0440"), std::string::npos);
  // The secret itself never appears in an error.
  EXPECT_EQ(e.find("twelve-bytes-long"), std::string::npos);
}

TEST_F(Secrets, BadSecretFiles) {
  std::string shrt = secret("short", "elevenbytes\n");
  EXPECT_EQ(error_of(target_chap(shrt)),
            "t.toml:6:20: the secret in secret file \"" + shrt +
                "\" is 11 bytes long; CHAP secrets must be 12..255 bytes");
  std::string empty = secret("empty", "");
  EXPECT_NE(error_of(target_chap(empty)).find("is 0 bytes long"), std::string::npos);
  std::string lng = secret("long", std::string(256, 'x'));
  EXPECT_NE(error_of(target_chap(lng)).find("is 256 bytes long"), std::string::npos);
  std::string lines = secret("lines", "first-line-here\nsecond-line\n");
  EXPECT_NE(error_of(target_chap(lines)).find("single line"), std::string::npos);
  std::string missing = (dir_ / "missing").string();
  EXPECT_EQ(error_of(target_chap(missing)),
            "t.toml:6:20: cannot open secret file \"" + missing + "\": No such file or directory");
  EXPECT_EQ(error_of(target_chap(dir_.string())),
            "t.toml:6:20: secret file \"" + dir_.string() + "\" is not a regular file");
}

TEST_F(Secrets, IncompleteChapSettings) {
  std::string s = secret("s", "twelve-bytes-long");
  std::string m = secret("m", "mutual-secret-value");
  EXPECT_EQ(error_of(kHead + "chap_user = \"node2\"\n"),
            "t.toml:5:13: target \"iqn.2025-01.com.example:t\": chap_user needs chap_secret_file");
  EXPECT_NE(error_of(kHead + "chap_secret_file = \"" + s + "\"\n").find("no chap_user"),
            std::string::npos);
  EXPECT_NE(error_of(target_chap(s, "mutual_user = \"node1\"\n"))
                .find("mutual_user and mutual_secret_file go together"),
            std::string::npos);
  EXPECT_NE(error_of(target_chap(s, "mutual_secret_file = \"" + m + "\"\n"))
                .find("mutual_user and mutual_secret_file go together"),
            std::string::npos);
  EXPECT_NE(error_of(kHead + "chap_user = \"\"\nchap_secret_file = \"" + s + "\"\n")
                .find("chap_user must be 1..255 bytes"),
            std::string::npos);
  std::string same = secret("same", "twelve-bytes-long");
  EXPECT_NE(
      error_of(target_chap(s, "mutual_user = \"node1\"\nmutual_secret_file = \"" + same + "\"\n"))
          .find("mutual secret must differ"),
      std::string::npos);
  EXPECT_NE(error_of("[discovery]\nchap_usr = \"x\"\n" + kHead)
                .find("unknown key 'chap_usr' in [discovery]"),
            std::string::npos);
}

TEST_F(Secrets, RelativeSecretPathResolvesAgainstTheConfigFolder) {
  secret("etc/secrets/node2", "twelve-bytes-long");
  fs::path p = write("etc/r.toml", target_chap("secrets/node2"));
  Config c = load_file(p.string());
  EXPECT_EQ(c.targets[0].chap->secret_file, (dir_ / "etc/secrets/node2").string());
  EXPECT_EQ(c.targets[0].chap->secret, "twelve-bytes-long");
}

TEST(LunMasking, AllowedInitiatorsPerLun) {
  Config c = load_string(with_lun("allowed_initiators = [\"iqn.2000-01.com.example:a\", "
                                  "\"iqn.2000-01.com.example:b\"]\n"),
                         "t.toml");
  EXPECT_EQ(c.targets[0].luns[0].allowed_initiators,
            (std::vector<std::string>{"iqn.2000-01.com.example:a", "iqn.2000-01.com.example:b"}));
  EXPECT_TRUE(load_string(with_lun(), "t.toml").targets[0].luns[0].allowed_initiators.empty());
}

TEST(LunMasking, Errors) {
  EXPECT_EQ(error_of(with_lun("allowed_initiators = [\"IQN.x\"]\n")),
            "t.toml:8:23: initiator name \"IQN.x\" is not a valid iSCSI name: iSCSI names must be "
            "lowercase (\"iqn.\", \"eui.\", \"naa.\")");
  EXPECT_NE(error_of(with_lun("allowed_initiators = [\"iqn.2000-01.com.example:a\", "
                              "\"iqn.2000-01.com.example:a\"]\n"))
                .find("listed twice"),
            std::string::npos);
  // A LUN cannot admit an initiator its target refuses.
  std::string text =
      "[[portal]]\nlisten = \"127.0.0.1:3260\"\n[[target]]\n"
      "name = \"iqn.2025-01.com.example:t\"\n"
      "allowed_initiators = [\"iqn.2000-01.com.example:a\"]\n"
      "[[target.lun]]\nnumber = 0\npath = \"/tmp/x.img\"\n"
      "allowed_initiators = [\"iqn.2000-01.com.example:b\"]\n";
  EXPECT_EQ(error_of(text),
            "t.toml:9:23: initiator \"iqn.2000-01.com.example:b\" may not log in to target "
            "\"iqn.2025-01.com.example:t\" (not in its allowed_initiators), so it can never see "
            "this LUN");
}

TEST(Provisioning, ThinFullOrUnset) {
  EXPECT_FALSE(load_string(with_lun(), "t.toml").targets[0].luns[0].provisioning.has_value());
  EXPECT_EQ(
      load_string(with_lun("provisioning = \"thin\"\n"), "t.toml").targets[0].luns[0].provisioning,
      Provisioning::thin);
  EXPECT_EQ(
      load_string(with_lun("provisioning = \"full\"\n"), "t.toml").targets[0].luns[0].provisioning,
      Provisioning::full);
  // Full on a read-only LUN is fine: it is what a read-only LUN is.
  EXPECT_EQ(load_string(with_lun("read_only = true\nprovisioning = \"full\"\n"), "t.toml")
                .targets[0]
                .luns[0]
                .provisioning,
            Provisioning::full);
  // Thin on a read-only LUN: it reports what the image holds (UNMAP gets DATA PROTECT).
  EXPECT_EQ(load_string(with_lun("read_only = true\nprovisioning = \"thin\"\n"), "t.toml")
                .targets[0]
                .luns[0]
                .provisioning,
            Provisioning::thin);
}

TEST(Provisioning, Errors) {
  EXPECT_EQ(error_of(with_lun("provisioning = \"thick\"\n")),
            "t.toml:8:16: provisioning \"thick\" is not one of \"thin\", \"full\"");
  EXPECT_EQ(error_of(with_lun("provisioning = true\n")),
            "t.toml:8:16: provisioning must be a string, not a boolean");
}

TEST(ShippedConfigs, DemoParses) {
  fs::path p = conf_dir() / "demo.toml";
  Config c = load_file(p.string());
  fs::path state = (fs::absolute(conf_dir()) / "../state").lexically_normal();
  EXPECT_EQ(c.workers, 0u);
  EXPECT_EQ(c.log_level, "info");
  EXPECT_EQ(c.state_dir, state.string());
  EXPECT_EQ(c.admin.socket, (state / "admin.sock").string());
  ASSERT_EQ(c.portals.size(), 1u);
  EXPECT_EQ(c.portals[0].to_string(), "127.0.0.1:3260");
  ASSERT_EQ(c.targets.size(), 2u);
  const Target& t = c.targets[0];
  EXPECT_EQ(t.name, "iqn.2025-01.com.jacobgade:demo");
  EXPECT_EQ(t.alias, "demo");
  EXPECT_TRUE(t.allowed_initiators.empty());
  ASSERT_EQ(t.luns.size(), 2u);
  EXPECT_EQ(t.luns[0].number, 1u);
  EXPECT_EQ(t.luns[0].path, (state / "demo-lun1.img").string());
  EXPECT_EQ(t.luns[0].size, std::optional<std::uint64_t>(1ull << 30));
  EXPECT_EQ(t.luns[0].write_ack, WriteAckPolicy::writethrough);
  EXPECT_EQ(t.luns[1].number, 2u);
  EXPECT_EQ(t.luns[1].path, (state / "demo-lun2.img").string());
  EXPECT_EQ(t.luns[1].size, std::optional<std::uint64_t>(1ull << 30));
  EXPECT_EQ(t.luns[1].write_ack, WriteAckPolicy::writethrough);
  const Target& wb = c.targets[1];
  EXPECT_EQ(wb.name, "iqn.2025-01.com.jacobgade:demo-writeback");
  ASSERT_EQ(wb.luns.size(), 1u);
  EXPECT_EQ(wb.luns[0].number, 1u);
  EXPECT_EQ(wb.luns[0].path, (state / "demo-wb.img").string());
  EXPECT_EQ(wb.luns[0].size, std::optional<std::uint64_t>(512ull << 20));
  EXPECT_EQ(wb.luns[0].write_ack, WriteAckPolicy::writeback);
}

// node1.toml with its /etc/ringtgt/secrets/ files replaced by ones in a temporary folder.
class ShippedNode1 : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/ringtgt-node1-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }
  Config load() {
    std::ifstream in(conf_dir() / "node1.toml");
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const std::string from = "\"/etc/ringtgt/secrets/";  // in values, not comments
    int n = 0;
    for (std::size_t at; (at = text.find(from)) != std::string::npos;) {
      std::size_t end = text.find('"', at + 1);
      std::string name = text.substr(at + from.size(), end - at - from.size());
      fs::path secret = dir_ / name;
      if (!fs::exists(secret)) {
        std::ofstream(secret) << "secret-of-" << name << "-" << n++ << "\n";
        fs::permissions(secret, fs::perms::owner_read | fs::perms::owner_write);
      }
      text.replace(at, from.size(), "\"" + dir_.string() + "/");
    }
    return load_string(text, "node1.toml");
  }
  fs::path dir_;
};

TEST_F(ShippedNode1, Parses) {
  Config c = load();
  ASSERT_EQ(c.portals.size(), 1u);
  EXPECT_EQ(c.portals[0].to_string(), "10.0.0.11:3260");
  ASSERT_EQ(c.targets.size(), 2u);
  EXPECT_EQ(c.targets[0].name, "iqn.2025-01.com.jacobgade:node1.lun1");
  EXPECT_EQ(c.targets[0].allowed_initiators,
            std::vector<std::string>{"iqn.2025-01.com.jacobgade:node2"});
  ASSERT_EQ(c.targets[0].luns.size(), 1u);
  EXPECT_EQ(c.targets[0].luns[0].number, 0u);
  EXPECT_EQ(c.targets[0].luns[0].path, "/dev/vg0/lun1");
  EXPECT_FALSE(c.targets[0].luns[0].size.has_value());
  EXPECT_EQ(c.targets[0].luns[0].write_ack, WriteAckPolicy::writethrough);
  EXPECT_EQ(c.targets[1].name, "iqn.2025-01.com.jacobgade:node1.lun2");
  EXPECT_EQ(c.targets[1].allowed_initiators,
            std::vector<std::string>{"iqn.2025-01.com.jacobgade:node3"});
  ASSERT_EQ(c.targets[1].luns.size(), 1u);
  EXPECT_EQ(c.targets[1].luns[0].number, 0u);
  EXPECT_EQ(c.targets[1].luns[0].path, "/dev/vg0/lun2");
  EXPECT_FALSE(c.targets[1].luns[0].size.has_value());
  ASSERT_TRUE(c.discovery_chap.has_value());
  EXPECT_EQ(c.discovery_chap->user, "discovery");
  EXPECT_FALSE(c.discovery_chap->mutual());
  ASSERT_TRUE(c.targets[0].chap.has_value());
  EXPECT_EQ(c.targets[0].chap->user, "node2");
  EXPECT_EQ(c.targets[0].chap->secret_file, (dir_ / "node2").string());
  EXPECT_TRUE(c.targets[0].chap->secret.starts_with("secret-of-node2-"));
  EXPECT_EQ(c.targets[0].chap->mutual_user, "node1");
  ASSERT_TRUE(c.targets[1].chap.has_value());
  EXPECT_EQ(c.targets[1].chap->user, "node3");
  EXPECT_EQ(c.targets[1].chap->mutual_secret_file, (dir_ / "node1-for-node3").string());
}

TEST(IscsiName, Valid) {
  EXPECT_EQ(iscsi_name_problem("iqn.2025-01.com.jacobgade:demo"), std::nullopt);
  EXPECT_EQ(iscsi_name_problem("iqn.1994-05.com.redhat:abc123"), std::nullopt);
  EXPECT_EQ(iscsi_name_problem("eui.02004567A425678D"), std::nullopt);
  EXPECT_EQ(iscsi_name_problem("naa.52004567BA64678D"), std::nullopt);
  EXPECT_EQ(iscsi_name_problem("naa.62004567BA64678D0123456789ABCDEF"), std::nullopt);
  EXPECT_EQ(iscsi_name_problem("iqn.2025-01.com." + std::string(223 - 16, 'a')), std::nullopt);
}

TEST(IscsiName, Invalid) {
  EXPECT_EQ(iscsi_name_problem(""), "it is empty");
  EXPECT_EQ(iscsi_name_problem("iqn.2025-01.com." + std::string(224 - 16, 'a')),
            "it is 224 bytes long, at most 223 are allowed");
  EXPECT_EQ(iscsi_name_problem("iqn.2025-13.com.x"),
            "the month in \"iqn.yyyy-mm.\" must be 01..12");
  EXPECT_EQ(iscsi_name_problem("iqn.25-01.com.x"),
            "\"iqn.\" must be followed by a date yyyy-mm, a dot and a reversed domain name "
            "(iqn.2025-01.com.example:name)");
  EXPECT_EQ(iscsi_name_problem("iqn.2025-01."),
            "\"iqn.\" must be followed by a date yyyy-mm, a dot and a reversed domain name "
            "(iqn.2025-01.com.example:name)");
  EXPECT_EQ(iscsi_name_problem("iqn.2025-01.com.X"), "iSCSI names must be lowercase");
  EXPECT_EQ(iscsi_name_problem("iqn.2025-01.com.x y"),
            "character ' ' is not allowed (use a-z, 0-9, '-', '.' and ':')");
  EXPECT_EQ(iscsi_name_problem("IQN.2025-01.com.x"),
            "iSCSI names must be lowercase (\"iqn.\", \"eui.\", \"naa.\")");
  EXPECT_EQ(iscsi_name_problem("eui.0123"), "\"eui.\" must be followed by 16 hex digits");
  EXPECT_EQ(iscsi_name_problem("eui.0123456789abcdeg"),
            "\"eui.\" must be followed by 16 hex digits");
  EXPECT_EQ(iscsi_name_problem("naa.0123456789abcdef0"),
            "\"naa.\" must be followed by 16 or 32 hex digits");
  EXPECT_EQ(iscsi_name_problem("target1"), "it must start with \"iqn.\", \"eui.\" or \"naa.\"");
}

// ---- errors: message and exact line:column ----

TEST(Errors, TomlSyntax) {
  // An unterminated string: toml++ reports it where the line ends.
  EXPECT_EQ(error_of("workers = 1\nlog_level = \"info\n"),
            "t.toml:2:18: Error while parsing string: unescaped control characters other than "
            "TAB (U+0009) are explicitly prohibited");
  EXPECT_EQ(error_of("[[portal]\n"),
            "t.toml:1:10: Error while parsing table header: expected ']', saw '\\n'");
  EXPECT_EQ(error_of("a = 1\na = 2\n"),
            "t.toml:2:5: Error while parsing key-value pair: cannot redefine existing integer "
            "'a'");
}

TEST(Errors, UnknownKeys) {
  EXPECT_EQ(error_of("wrokers = 1\n" + kHead),
            "t.toml:1:1: unknown key 'wrokers' in the top level (allowed: workers, log_level, "
            "state_dir, portal, iscsi, discovery, target, limits, metrics, admin, testing)");
  EXPECT_EQ(error_of("[[portal]]\n  listen = \"127.0.0.1\"\n  port = 3260\n"),
            "t.toml:3:3: unknown key 'port' in [[portal]] (allowed: listen)");
  EXPECT_EQ(error_of(kHead + "[iscsi]\nqueue_dept = 3\n"),
            "t.toml:6:1: unknown key 'queue_dept' in [iscsi] (allowed: "
            "max_recv_data_segment_length, max_burst_length, first_burst_length, initial_r2t, "
            "immediate_data, max_outstanding_r2t, header_digest, data_digest, "
            "default_time2wait, default_time2retain, queue_depth, nop_interval, nop_timeout, "
            "login_timeout)");
  EXPECT_EQ(error_of(kHead + "aliass = \"x\"\n"),
            "t.toml:5:1: unknown key 'aliass' in [[target]] (allowed: name, alias, "
            "allowed_initiators, chap_user, chap_secret_file, mutual_user, mutual_secret_file, "
            "lun, portals)");
  EXPECT_EQ(error_of(with_lun("  blok_size = 4096\n")),
            "t.toml:8:3: unknown key 'blok_size' in [[target.lun]] (allowed: number, path, size, "
            "block_size, physical_block_size, read_only, direct_io, write_ack, serial, "
            "allowed_initiators, provisioning, allow_sanitize, sanitize_rate, rbd, ack_quorum, "
            "on_quorum_loss, quorum_wait, failure_domain, copy, resync_region_size, resync_rate, "
            "max_transfer)");
  // A sub-table under a misspelled name: the key in the header is what is reported.
  EXPECT_EQ(error_of(kHead + "[[target.luns]]\n"),
            "t.toml:5:10: unknown key 'luns' in [[target]] (allowed: name, alias, "
            "allowed_initiators, chap_user, chap_secret_file, mutual_user, mutual_secret_file, "
            "lun, portals)");
}

TEST(Errors, WrongTypes) {
  EXPECT_EQ(error_of("workers = \"4\"\n" + kHead),
            "t.toml:1:11: workers must be an integer, not a string");
  EXPECT_EQ(error_of("log_level = 3\n" + kHead),
            "t.toml:1:13: log_level must be a string, not an integer");
  EXPECT_EQ(error_of(kHead + "[iscsi]\ninitial_r2t = \"yes\"\n"),
            "t.toml:6:15: iscsi.initial_r2t must be true or false, not a string");
  EXPECT_EQ(error_of(kHead + "[iscsi]\nqueue_depth = 1.5\n"),
            "t.toml:6:15: iscsi.queue_depth must be an integer, not a float");
  EXPECT_EQ(error_of(with_lun("read_only = 1\n")),
            "t.toml:8:13: read_only must be true or false, not an integer");
  EXPECT_EQ(error_of(with_lun("size = 1.0\n")),
            "t.toml:8:8: size must be an integer or a string, not a float");
  EXPECT_EQ(error_of("portal = \"127.0.0.1:3260\"\n"),
            "t.toml:1:10: 'portal' must be an array of tables, written [[portal]], not a string");
  EXPECT_EQ(error_of("[portal]\nlisten = \"127.0.0.1\"\n"),
            "t.toml:1:1: 'portal' must be an array of tables, written [[portal]], not a table");
  EXPECT_EQ(error_of("iscsi = 1\n" + kHead),
            "t.toml:1:9: 'iscsi' must be a table, written [iscsi], not an integer");
  EXPECT_EQ(error_of(kHead + "lun = 1\n"),
            "t.toml:5:7: 'lun' must be an array of tables, written [[target.lun]], not an "
            "integer");
  EXPECT_EQ(error_of(kHead + "allowed_initiators = \"iqn.2025-01.com.x:i\"\n"),
            "t.toml:5:22: allowed_initiators must be an array of initiator names, not a string");
  EXPECT_EQ(error_of(kHead + "allowed_initiators = [1]\n"),
            "t.toml:5:23: allowed_initiators entries must be strings, not an integer");
  EXPECT_EQ(error_of("[[portal]]\nlisten = 3260\n"),
            "t.toml:2:10: listen must be a string, not an integer");
}

TEST(Errors, RootValues) {
  EXPECT_EQ(error_of("workers = 2000\n" + kHead), "t.toml:1:11: workers must be 0..1024, not 2000");
  EXPECT_EQ(error_of("workers = -1\n" + kHead), "t.toml:1:11: workers must be 0..1024, not -1");
  EXPECT_EQ(error_of("log_level = \"verbose\"\n" + kHead),
            "t.toml:1:13: log_level \"verbose\" is not one of trace, debug, info, warn, error, "
            "critical, off");
  EXPECT_EQ(error_of("state_dir = \"\"\n" + kHead), "t.toml:1:13: state_dir must not be empty");
}

struct RangeCase {
  std::string key;
  long long bad;
  std::string range;
};

TEST(Errors, IscsiRanges) {
  const RangeCase cases[] = {
      {"max_recv_data_segment_length", 511, "512..16777215"},
      {"max_recv_data_segment_length", 16777216, "512..16777215"},
      {"max_burst_length", 511, "512..16777215"},
      {"max_burst_length", 16777216, "512..16777215"},
      {"first_burst_length", 100, "512..16777215"},
      {"first_burst_length", 16777216, "512..16777215"},
      {"max_outstanding_r2t", 0, "1..65535"},
      {"max_outstanding_r2t", 65536, "1..65535"},
      {"default_time2wait", 3601, "0..3600"},
      {"default_time2wait", -1, "0..3600"},
      {"default_time2retain", 3601, "0..3600"},
      {"queue_depth", 0, "1..4096"},
      {"queue_depth", 4097, "1..4096"},
      {"nop_interval", 3601, "0..3600"},
      {"nop_timeout", 3601, "0..3600"},
      {"login_timeout", 0, "1..3600"},
      {"login_timeout", 3601, "1..3600"},
  };
  for (const RangeCase& c : cases) {
    std::string line = c.key + " = " + std::to_string(c.bad) + "\n";
    std::string col = std::to_string(c.key.size() + 4);
    EXPECT_EQ(error_of(kHead + "[iscsi]\n" + line), "t.toml:6:" + col + ": iscsi." + c.key +
                                                        " must be " + c.range + ", not " +
                                                        std::to_string(c.bad))
        << c.key;
  }
  // Boundaries are accepted.
  EXPECT_EQ(
      error_of(kHead + "[iscsi]\nmax_recv_data_segment_length = 16777215\nmax_burst_length = 512\n"
                       "first_burst_length = 512\nmax_outstanding_r2t = 65535\n"
                       "default_time2wait = 3600\ndefault_time2retain = 0\nqueue_depth = 4096\n"
                       "nop_interval = 0\nnop_timeout = 0\nlogin_timeout = 1\n"),
      "no error");
}

TEST(Errors, FirstBurstAboveMaxBurst) {
  EXPECT_EQ(error_of(kHead + "[iscsi]\nmax_burst_length = 8192\nfirst_burst_length = 8193\n"),
            "t.toml:7:22: iscsi.first_burst_length (8193) must not exceed iscsi.max_burst_length "
            "(8192)");
  // Only max_burst_length given, below the default first_burst_length 65536: points at it.
  EXPECT_EQ(error_of(kHead + "[iscsi]\nmax_burst_length = 4096\n"),
            "t.toml:6:20: iscsi.first_burst_length (65536) must not exceed "
            "iscsi.max_burst_length (4096)");
}

TEST(Errors, Portals) {
  auto portal_error = [](const std::string& listen) {
    return error_of("[[portal]]\nlisten = \"" + listen +
                    "\"\n[[target]]\n"
                    "name = \"iqn.2025-01.com.example:t\"\n");
  };
  EXPECT_EQ(portal_error("localhost:3260"),
            "t.toml:2:10: bad portal \"localhost:3260\": 'localhost' is not an IPv4 address "
            "literal (use an address such as \"0.0.0.0\", \"127.0.0.1\", or \"[::1]\" for IPv6; "
            "host names are not resolved)");
  EXPECT_EQ(portal_error("256.0.0.1"),
            "t.toml:2:10: bad portal \"256.0.0.1\": '256.0.0.1' is not an IPv4 address literal "
            "(use an address such as \"0.0.0.0\", \"127.0.0.1\", or \"[::1]\" for IPv6; host "
            "names are not resolved)");
  EXPECT_EQ(portal_error("127.0.0.1:0"),
            "t.toml:2:10: bad portal \"127.0.0.1:0\": port '0' must be a number 1..65535");
  EXPECT_EQ(portal_error("127.0.0.1:65536"),
            "t.toml:2:10: bad portal \"127.0.0.1:65536\": port '65536' must be a number 1..65535");
  EXPECT_EQ(portal_error("127.0.0.1:"),
            "t.toml:2:10: bad portal \"127.0.0.1:\": port '' must be a number 1..65535");
  EXPECT_EQ(portal_error("127.0.0.1:+80"),
            "t.toml:2:10: bad portal \"127.0.0.1:+80\": port '+80' must be a number 1..65535");
  EXPECT_EQ(portal_error("::1"),
            "t.toml:2:10: bad portal \"::1\": an IPv6 address goes in brackets, as in "
            "\"[::1]:3260\"");
  EXPECT_EQ(portal_error("[::1"),
            "t.toml:2:10: bad portal \"[::1\": missing ']' after the IPv6 address");
  EXPECT_EQ(portal_error("[::1]3260"),
            "t.toml:2:10: bad portal \"[::1]3260\": expected ':PORT' after ']'");
  EXPECT_EQ(portal_error("[::g]:3260"),
            "t.toml:2:10: bad portal \"[::g]:3260\": '::g' is not an IPv6 address literal");
  EXPECT_EQ(portal_error("[127.0.0.1]:3260"),
            "t.toml:2:10: bad portal \"[127.0.0.1]:3260\": '127.0.0.1' is not an IPv6 address "
            "literal");
  EXPECT_EQ(error_of("[[portal]]\n\n[[target]]\nname = \"iqn.2025-01.com.example:t\"\n"),
            "t.toml:1:1: [[portal]] needs listen = \"IP:PORT\"");
  EXPECT_EQ(error_of(kHead + "[[portal]]\nlisten = \"127.0.0.1\"\n"),
            "t.toml:6:10: duplicate portal 127.0.0.1:3260 (already listed at line 2)");
}

TEST(Errors, NoPortalNoTarget) {
  EXPECT_EQ(error_of("[[target]]\nname = \"iqn.2025-01.com.example:t\"\n"),
            "t.toml:1:1: no [[portal]]: at least one portal (listen = \"IP:PORT\") is needed");
  EXPECT_EQ(error_of(""),
            "t.toml:1:1: no [[portal]]: at least one portal (listen = \"IP:PORT\") is needed");
  EXPECT_EQ(error_of("portal = []\n"),
            "t.toml:1:1: no [[portal]]: at least one portal (listen = \"IP:PORT\") is needed");
  EXPECT_EQ(error_of("[[portal]]\nlisten = \"127.0.0.1\"\n"),
            "t.toml:1:1: no [[target]]: at least one target (name = \"iqn....\") is needed");
}

TEST(Errors, TargetNames) {
  auto head = std::string("[[portal]]\nlisten = \"127.0.0.1\"\n[[target]]\n");
  EXPECT_EQ(error_of(head + "name = \"iqn.2025-01.com.Example:t\"\n"),
            "t.toml:4:8: target name \"iqn.2025-01.com.Example:t\" is not a valid iSCSI name: "
            "iSCSI names must be lowercase");
  EXPECT_EQ(error_of(head + "name = \"demo\"\n"),
            "t.toml:4:8: target name \"demo\" is not a valid iSCSI name: it must start with "
            "\"iqn.\", \"eui.\" or \"naa.\"");
  EXPECT_EQ(error_of(head + "name = \"iqn.2025.com.example\"\n"),
            "t.toml:4:8: target name \"iqn.2025.com.example\" is not a valid iSCSI name: "
            "\"iqn.\" must be followed by a date yyyy-mm, a dot and a reversed domain name "
            "(iqn.2025-01.com.example:name)");
  EXPECT_EQ(error_of(head + "name = \"eui.12345\"\n"),
            "t.toml:4:8: target name \"eui.12345\" is not a valid iSCSI name: \"eui.\" must be "
            "followed by 16 hex digits");
  EXPECT_EQ(error_of(head + "name = \"naa.12345\"\n"),
            "t.toml:4:8: target name \"naa.12345\" is not a valid iSCSI name: \"naa.\" must be "
            "followed by 16 or 32 hex digits");
  std::string long_name = "iqn.2025-01.com.example:" + std::string(200, 'x');
  EXPECT_EQ(error_of(head + "name = \"" + long_name + "\"\n"),
            "t.toml:4:8: target name \"" + long_name +
                "\" is not a valid iSCSI name: it is 224 bytes long, at most 223 are allowed");
  EXPECT_EQ(error_of(head + "alias = \"x\"\n"),
            "t.toml:3:1: [[target]] needs name = \"iqn.yyyy-mm.reversed.domain:name\"");
  EXPECT_EQ(error_of(kHead + "[[target]]\nname = \"iqn.2025-01.com.example:t\"\n"),
            "t.toml:6:8: duplicate target name \"iqn.2025-01.com.example:t\" (already defined at "
            "line 4)");
}

TEST(Errors, InitiatorNames) {
  EXPECT_EQ(error_of(kHead + "allowed_initiators = [\"iqn.2025-01.com.x:a\", \"node2\"]\n"),
            "t.toml:5:46: initiator name \"node2\" is not a valid iSCSI name: it must start with "
            "\"iqn.\", \"eui.\" or \"naa.\"");
  EXPECT_EQ(error_of(kHead + "allowed_initiators = [\"iqn.2025-01.com.x:a\",\n"
                             "  \"iqn.2025-01.com.x:a\"]\n"),
            "t.toml:6:3: initiator \"iqn.2025-01.com.x:a\" is listed twice");
}

TEST(Errors, Luns) {
  EXPECT_EQ(error_of(kHead + "[[target.lun]]\npath = \"/tmp/x\"\n"),
            "t.toml:5:1: [[target.lun]] needs number = 0..16383");
  EXPECT_EQ(error_of(kHead + "[[target.lun]]\nnumber = 16384\npath = \"/tmp/x\"\n"),
            "t.toml:6:10: LUN number must be 0..16383, not 16384");
  EXPECT_EQ(error_of(kHead + "[[target.lun]]\nnumber = -1\npath = \"/tmp/x\"\n"),
            "t.toml:6:10: LUN number must be 0..16383, not -1");
  EXPECT_EQ(error_of(kHead + "[[target.lun]]\nnumber = 1\n"),
            "t.toml:5:1: [[target.lun]] needs path = \"FILE or block device\" (or "
            "\"rbd:POOL/IMAGE\")");
  EXPECT_EQ(error_of(kHead + "[[target.lun]]\nnumber = 1\npath = \"\"\n"),
            "t.toml:7:8: path must not be empty");
  EXPECT_EQ(error_of(with_lun("[[target.lun]]\nnumber = 0\npath = \"/tmp/y\"\n")),
            "t.toml:9:10: duplicate LUN number 0 in target \"iqn.2025-01.com.example:t\" (already "
            "defined at line 6)");
  // The same number in two targets is fine; the same file twice is not.
  EXPECT_EQ(error_of(with_lun("[[target]]\nname = \"iqn.2025-01.com.example:u\"\n"
                              "[[target.lun]]\nnumber = 0\npath = \"/tmp/y\"\n")),
            "no error");
  EXPECT_EQ(error_of(with_lun("[[target]]\nname = \"iqn.2025-01.com.example:u\"\n"
                              "[[target.lun]]\nnumber = 0\npath = \"/tmp/../tmp/x.img\"\n")),
            "t.toml:12:8: path \"/tmp/x.img\" is already used by target "
            "\"iqn.2025-01.com.example:t\" LUN 0");
}

TEST(Errors, BlockSize) {
  EXPECT_EQ(error_of(with_lun("block_size = 1024\n")),
            "t.toml:8:14: block_size must be 512 or 4096, not 1024");
  EXPECT_EQ(error_of(with_lun("block_size = 0\n")),
            "t.toml:8:14: block_size must be 512 or 4096, not 0");
  EXPECT_EQ(error_of(with_lun("block_size = \"4K\"\n")),
            "t.toml:8:14: block_size must be an integer, not a string");
}

TEST(Errors, MaxTransfer) {
  EXPECT_EQ(
      load_string(with_lun("max_transfer = \"64K\"\n"), "t.toml").targets[0].luns[0].max_transfer,
      65536u);
  EXPECT_EQ(load_string(with_lun(""), "t.toml").targets[0].luns[0].max_transfer, 0u);
  EXPECT_EQ(error_of(with_lun("max_transfer = \"64M\"\n")),
            "t.toml:8:16: max_transfer must be a multiple of block_size (512) from 512 to 32M, not "
            "67108864");
  EXPECT_EQ(error_of(with_lun("max_transfer = 1000\n")),
            "t.toml:8:16: max_transfer must be a multiple of block_size (512) from 512 to 32M, not "
            "1000");
  EXPECT_EQ(error_of(with_lun("block_size = 4096\nmax_transfer = \"2K\"\n")),
            "t.toml:9:16: max_transfer must be a multiple of block_size (4096) from 4096 to 32M, "
            "not 2048");
}

TEST(Errors, PhysicalBlockSize) {
  EXPECT_EQ(load_string(with_lun("physical_block_size = 4096\n"), "t.toml")
                .targets[0]
                .luns[0]
                .physical_block_size,
            4096u);
  EXPECT_EQ(error_of(with_lun("physical_block_size = 256\n")),
            "t.toml:8:23: physical_block_size must be a power of two from block_size (512) to "
            "1048576, not 256");
  EXPECT_EQ(error_of(with_lun("physical_block_size = 6144\n")),
            "t.toml:8:23: physical_block_size must be a power of two from block_size (512) to "
            "1048576, not 6144");
  EXPECT_EQ(error_of(with_lun("block_size = 4096\nphysical_block_size = 512\n")),
            "t.toml:9:23: physical_block_size must be a power of two from block_size (4096) to "
            "1048576, not 512");
}

TEST(Errors, Size) {
  const std::string hint =
      " (an integer of bytes, or a string such as \"512M\" or \"1G\" with suffix K, M, G or T: "
      "powers of 1024)";
  EXPECT_EQ(error_of(with_lun("size = 0\n")),
            "t.toml:8:8: size must be greater than 0, not 0" + hint);
  EXPECT_EQ(error_of(with_lun("size = -512\n")),
            "t.toml:8:8: size must be greater than 0, not -512" + hint);
  EXPECT_EQ(error_of(with_lun("size = \"0G\"\n")),
            "t.toml:8:8: size must be greater than 0" + hint);
  EXPECT_EQ(error_of(with_lun("size = \"1X\"\n")), "t.toml:8:8: size \"1X\" is not a size" + hint);
  EXPECT_EQ(error_of(with_lun("size = \"1 G\"\n")),
            "t.toml:8:8: size \"1 G\" is not a size" + hint);
  EXPECT_EQ(error_of(with_lun("size = \"G\"\n")), "t.toml:8:8: size \"G\" is not a size" + hint);
  EXPECT_EQ(error_of(with_lun("size = \"99999999999T\"\n")),
            "t.toml:8:8: size \"99999999999T\" is too large");
  EXPECT_EQ(error_of(with_lun("size = 1000\n")),
            "t.toml:8:8: size 1000 is not a multiple of block_size 512");
  EXPECT_EQ(error_of(with_lun("block_size = 4096\nsize = \"2K\"\n")),
            "t.toml:9:8: size 2048 is not a multiple of block_size 4096");
}

TEST(Errors, WriteAckAndSerial) {
  EXPECT_EQ(error_of(with_lun("write_ack = \"write-back\"\n")),
            "t.toml:8:13: write_ack \"write-back\" is not one of \"writethrough\", \"writeback\"");
  EXPECT_EQ(error_of(with_lun("write_ack = true\n")),
            "t.toml:8:13: write_ack must be a string, not a boolean");
  EXPECT_EQ(error_of(with_lun("serial = \"a b\"\n")),
            "t.toml:8:10: serial may hold only printable ASCII without spaces");
  EXPECT_EQ(error_of(with_lun("serial = \"" + std::string(65, 'x') + "\"\n")),
            "t.toml:8:10: serial is longer than 64 characters");
  EXPECT_EQ(error_of(kHead + "alias = \"" + std::string(256, 'a') + "\"\n"),
            "t.toml:5:9: alias is longer than 255 bytes");
}

}  // namespace
}  // namespace ringtgt::config

// ---- [metrics] (the Prometheus endpoint) ----
namespace ringtgt::config {
namespace {

TEST(Metrics, AbsentMeansOff) {
  Config c = load_string(with_lun(), "t.toml");
  EXPECT_FALSE(c.metrics.listen.has_value());
}

TEST(Metrics, ListenAddresses) {
  Config c = load_string(with_lun("[metrics]\nlisten = \"127.0.0.1:9200\"\n"), "t.toml");
  ASSERT_TRUE(c.metrics.listen.has_value());
  EXPECT_EQ(c.metrics.listen->to_string(), "127.0.0.1:9200");
  c = load_string(with_lun("[metrics]\nlisten = \"0.0.0.0\"\n"), "t.toml");
  ASSERT_TRUE(c.metrics.listen.has_value());
  EXPECT_EQ(c.metrics.listen->to_string(), "0.0.0.0:9105");  // default port
}

TEST(Metrics, Errors) {
  EXPECT_EQ(error_of(with_lun("[metrics]\nlisten = \"localhost:9105\"\n")),
            "t.toml:9:10: bad metrics.listen \"localhost:9105\": 'localhost' is not an IPv4 "
            "address literal (use an address such as \"0.0.0.0\", \"127.0.0.1\", or \"[::1]\" "
            "for IPv6; host names are not resolved)");
  EXPECT_EQ(error_of(with_lun("[metrics]\nlisten = \"[::1]:9105\"\n")),
            "t.toml:9:10: metrics.listen \"[::1]:9105\": the metrics endpoint listens on IPv4 "
            "addresses only");
  EXPECT_EQ(error_of(with_lun("[metrics]\nlisten = \"127.0.0.1:0\"\n")),
            "t.toml:9:10: bad metrics.listen \"127.0.0.1:0\": port '0' must be a number 1..65535");
  EXPECT_EQ(error_of(with_lun("[metrics]\nlisten = 9105\n")),
            "t.toml:9:10: metrics.listen must be a string, not an integer");
  EXPECT_EQ(error_of(with_lun("[metrics]\nport = 9105\n")),
            "t.toml:9:1: unknown key 'port' in [metrics] (allowed: listen)");
  EXPECT_EQ(error_of(with_lun("[metrics]\n")),
            "t.toml:8:1: [metrics] needs listen = \"IP:PORT\" "
            "(for example \"127.0.0.1:9105\")");
  EXPECT_EQ(error_of("metrics = \"127.0.0.1:9105\"\n" + with_lun()),
            "t.toml:1:11: 'metrics' must be a table, written [metrics], not a string");
}

}  // namespace
}  // namespace ringtgt::config

namespace ringtgt::config {
namespace {

TEST(Metrics, ShippedConfigsServeMetrics) {
  Config demo = load_file((conf_dir() / "demo.toml").string());
  ASSERT_TRUE(demo.metrics.listen.has_value());
  EXPECT_EQ(demo.metrics.listen->host, "127.0.0.1");  // the demo stays on loopback
  Config installed = load_file((conf_dir() / "ringtgt.toml").string());
  ASSERT_TRUE(installed.metrics.listen.has_value());
  EXPECT_EQ(installed.metrics.listen->to_string(), "127.0.0.1:9105");
  ASSERT_EQ(installed.portals.size(), 1u);
  EXPECT_EQ(installed.portals[0].host, "127.0.0.1");  // a fresh install exposes nothing
}

TEST_F(ShippedNode1, MetricsOnNode1sAddress) {
  Config c = load();
  ASSERT_TRUE(c.metrics.listen.has_value());
  EXPECT_EQ(c.metrics.listen->to_string(), "10.0.0.11:9105");  // Prometheus runs in K3s
}

}  // namespace
}  // namespace ringtgt::config

// --- [admin] ---
namespace ringtgt::config {
namespace {

TEST(Admin, DefaultsWhenAbsent) {
  Config c = load_string(kHead, "t.toml");
  EXPECT_EQ(c.admin.socket, "/run/ringtgt/admin.sock");
  EXPECT_EQ(c.admin.group, "");
}

TEST(Admin, SocketResolvesAndGroupIsKept) {
  Config c =
      load_string(kHead + "[admin]\nsocket = \"/tmp/x/admin.sock\"\ngroup = \"root\"\n", "t.toml");
  EXPECT_EQ(c.admin.socket, "/tmp/x/admin.sock");
  EXPECT_EQ(c.admin.group, "root");
  Config rel = load_string(kHead + "[admin]\nsocket = \"run/a.sock\"\n", "t.toml");
  EXPECT_EQ(rel.admin.socket, (fs::current_path() / "run/a.sock").lexically_normal().string());
}

TEST(Admin, Errors) {
  EXPECT_EQ(error_of("admin = 3\n" + kHead),
            "t.toml:1:9: 'admin' must be a table, written [admin], not an integer");
  EXPECT_EQ(error_of(kHead + "[admin]\nsockt = \"/a\"\n"),
            "t.toml:6:1: unknown key 'sockt' in [admin] (allowed: socket, group)");
  EXPECT_EQ(error_of(kHead + "[admin]\nsocket = \"\"\n"),
            "t.toml:6:10: admin.socket must not be empty");
  EXPECT_EQ(error_of(kHead + "[admin]\nsocket = 5\n"),
            "t.toml:6:10: admin.socket must be a string, not an integer");
  const std::string long_path = "/" + std::string(120, 'a');
  EXPECT_EQ(error_of(kHead + "[admin]\nsocket = \"" + long_path + "\"\n"),
            "t.toml:6:10: admin.socket \"" + long_path +
                "\" is 121 bytes long; a Unix socket path must be at most 107 bytes");
  EXPECT_EQ(error_of(kHead + "[admin]\ngroup = \"a b\"\n"),
            "t.toml:6:9: admin.group \"a b\" is not a group name (1..32 of a-z A-Z 0-9 _ - .)");
  EXPECT_EQ(error_of(kHead + "[admin]\ngroup = \"no-such-group-rt\"\n"),
            "t.toml:6:9: admin.group \"no-such-group-rt\": no such group on this host");
}

}  // namespace
}  // namespace ringtgt::config

// --- to_toml / validate / write_file_atomically ---
namespace ringtgt::config {
namespace {

TEST(Writer, RoundTripsEveryKey) {
  const std::string text = kHead +
                           "alias = \"a\"\n"
                           "allowed_initiators = [\"iqn.2000-01.com.example:a\"]\n"
                           "[[target.lun]]\nnumber = 3\npath = \"/tmp/x.img\"\nsize = \"1M\"\n"
                           "block_size = 4096\nread_only = true\nwrite_ack = \"writeback\"\n"
                           "serial = \"S1\"\nallowed_initiators = [\"iqn.2000-01.com.example:a\"]\n"
                           "[iscsi]\nqueue_depth = 7\nnop_interval = 0\n"
                           "[admin]\nsocket = \"/tmp/r/admin.sock\"\ngroup = \"root\"\n";
  Config a = load_string(text, "t.toml");
  std::string written = to_toml(a);
  EXPECT_EQ(written.rfind("# Written by ringtgt", 0), 0u) << written;
  Config b = load_string(written, "t.toml");
  EXPECT_EQ(to_toml(b), written);
  ASSERT_EQ(b.targets.size(), 1u);
  EXPECT_EQ(b.targets[0].alias, "a");
  EXPECT_EQ(b.targets[0].allowed_initiators, a.targets[0].allowed_initiators);
  ASSERT_EQ(b.targets[0].luns.size(), 1u);
  const Lun& l = b.targets[0].luns[0];
  EXPECT_EQ(l.number, 3u);
  EXPECT_EQ(l.size, std::optional<std::uint64_t>(1u << 20));
  EXPECT_EQ(l.block_size, 4096u);
  EXPECT_TRUE(l.read_only);
  EXPECT_EQ(l.write_ack, WriteAckPolicy::writeback);
  EXPECT_EQ(l.serial, "S1");
  EXPECT_EQ(l.allowed_initiators.size(), 1u);
  EXPECT_EQ(b.iscsi.queue_depth, 7u);
  EXPECT_EQ(b.iscsi.nop_interval_seconds, 0u);
  EXPECT_EQ(b.admin.socket, "/tmp/r/admin.sock");
  EXPECT_EQ(b.admin.group, "root");
}

TEST(Writer, ValidateAppliesTheLoadersRules) {
  Config c = load_string(with_lun(), "t.toml");
  EXPECT_NO_THROW(validate(c));
  Config bad = c;
  bad.targets[0].luns.push_back(bad.targets[0].luns[0]);  // duplicate LUN 0
  bad.targets[0].luns[1].path = "/tmp/y.img";
  try {
    validate(bad);
    FAIL() << "duplicate LUN accepted";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("duplicate LUN number 0"), std::string::npos) << e.what();
  }
  Config bs = c;
  bs.targets[0].luns[0].block_size = 1000;
  EXPECT_THROW(validate(bs), ConfigError);
}

TEST(Writer, WriteFileAtomicallyReplacesTheFile) {
  fs::path dir = fs::temp_directory_path() / ("ringtgt-writer-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  fs::path f = dir / "c.toml";
  { std::ofstream(f) << "old\n"; }
  common::write_file_atomically(f.string(), "new text\n");
  std::ifstream in(f);
  std::string got((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(got, "new text\n");
  std::size_t files = 0;
  for ([[maybe_unused]] auto& e : fs::directory_iterator(dir)) ++files;
  EXPECT_EQ(files, 1u);  // no temporary file left behind
  EXPECT_THROW(common::write_file_atomically((dir / "no/such/dir/c.toml").string(), "x"),
               std::runtime_error);
  fs::remove_all(dir);
}

// The APTPL state file is created 0600; a replaced file keeps its own mode.
TEST(Writer, WriteFileAtomicallyKeepsTheModeOfTheFileItReplaces) {
  fs::path dir = fs::temp_directory_path() / ("ringtgt-writer-mode-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  fs::path fresh = dir / "fresh";
  common::write_file_atomically(fresh, "a", 0600);
  EXPECT_EQ(fs::status(fresh).permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write);
  fs::path kept = dir / "kept";
  { std::ofstream(kept) << "old"; }
  fs::permissions(kept, fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read);
  common::write_file_atomically(kept, "new", 0600);
  EXPECT_EQ(fs::status(kept).permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace ringtgt::config

namespace ringtgt::config {
namespace {

TEST(Digests, AllowedNeverOrRequired) {
  Config c = load_string(kHead + "[iscsi]\nheader_digest = \"required\"\ndata_digest = \"never\"\n",
                         "t.toml");
  EXPECT_TRUE(c.iscsi.header_digest);
  EXPECT_TRUE(c.iscsi.require_header_digest);
  EXPECT_FALSE(c.iscsi.data_digest);
  EXPECT_FALSE(c.iscsi.require_data_digest);
  Config allowed = load_string(kHead + "[iscsi]\nheader_digest = \"allowed\"\n", "t.toml");
  EXPECT_TRUE(allowed.iscsi.header_digest);
  EXPECT_FALSE(allowed.iscsi.require_header_digest);
  EXPECT_EQ(error_of(kHead + "[iscsi]\nheader_digest = \"always\"\n"),
            "t.toml:6:17: iscsi.header_digest must be \"allowed\", \"never\" or \"required\"");
  EXPECT_EQ(error_of(kHead + "[iscsi]\ndata_digest = 1\n"),
            "t.toml:6:15: iscsi.data_digest must be \"allowed\", \"never\" or \"required\"");
}

// The initiator chooses unless the file says otherwise: Linux with CRC32C in
// iscsid.conf logs in to a config that never mentions digests.
TEST(Digests, DefaultIsAllowed) {
  Config c = load_string(kHead, "t.toml");
  EXPECT_TRUE(c.iscsi.header_digest);
  EXPECT_TRUE(c.iscsi.data_digest);
  EXPECT_FALSE(c.iscsi.require_header_digest);
  EXPECT_FALSE(c.iscsi.require_data_digest);
}

// Files written before "allowed"/"never" existed keep their meaning.
TEST(Digests, TrueAndFalseAreTheOldSpellings) {
  Config c = load_string(kHead + "[iscsi]\nheader_digest = false\ndata_digest = true\n", "t.toml");
  EXPECT_FALSE(c.iscsi.header_digest);
  EXPECT_FALSE(c.iscsi.require_header_digest);
  EXPECT_TRUE(c.iscsi.data_digest);
  EXPECT_FALSE(c.iscsi.require_data_digest);
}

}  // namespace
}  // namespace ringtgt::config

// ---- RBD LUNs: path = "rbd:POOL/IMAGE" or a [target.lun.rbd] table, checked
// without a cluster (nothing here connects) ----
namespace ringtgt::config {
namespace {

class RbdConfig : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("ringtgt-rbdcfg-" + std::to_string(::getpid()));
    fs::create_directories(dir_);
    std::ofstream(dir_ / "ceph.conf") << "[global]\n";
    std::ofstream(dir_ / "gw.keyring") << "[client.gw]\n";
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string conf() const { return (dir_ / "ceph.conf").string(); }
  std::string keyring() const { return (dir_ / "gw.keyring").string(); }
  fs::path dir_;
};

TEST_F(RbdConfig, PathForm) {
  Config c =
      load_string(kHead + "[[target.lun]]\nnumber = 0\npath = \"rbd:vms/disk1\"\n", "t.toml");
  const Lun& l = c.targets[0].luns[0];
  ASSERT_TRUE(l.rbd);
  EXPECT_EQ(l.rbd->pool, "vms");
  EXPECT_EQ(l.rbd->image, "disk1");
  EXPECT_EQ(l.rbd->rados_namespace, "");
  EXPECT_EQ(l.rbd->client, "admin");
  EXPECT_EQ(l.rbd->op_timeout, 20u);
  EXPECT_EQ(l.path, "rbd:vms/disk1");  // not made absolute

  Config ns =
      load_string(kHead + "[[target.lun]]\nnumber = 0\npath = \"rbd:vms/team/disk1\"\n", "t.toml");
  EXPECT_EQ(ns.targets[0].luns[0].rbd->rados_namespace, "team");
  EXPECT_EQ(ns.targets[0].luns[0].path, "rbd:vms/team/disk1");
}

TEST_F(RbdConfig, TableForm) {
  Config c = load_string(kHead +
                             "[[target.lun]]\nnumber = 0\nwrite_ack = \"writeback\"\n"
                             "[target.lun.rbd]\npool = \"vms\"\nnamespace = \"team\"\n"
                             "image = \"disk1\"\nconf = \"" +
                             conf() + "\"\nclient = \"client.gw\"\nkeyring = \"" + keyring() +
                             "\"\nop_timeout = 7\n",
                         "t.toml");
  const Lun& l = c.targets[0].luns[0];
  ASSERT_TRUE(l.rbd);
  EXPECT_EQ(l.path, "rbd:vms/team/disk1");
  EXPECT_EQ(l.rbd->conf, conf());
  EXPECT_EQ(l.rbd->keyring, keyring());
  EXPECT_EQ(l.rbd->client, "gw");  // "client." dropped
  EXPECT_EQ(l.rbd->op_timeout, 7u);
  EXPECT_EQ(l.write_ack, WriteAckPolicy::writeback);

  // The path names the image, the table how to reach the cluster.
  Config both = load_string(kHead + "[[target.lun]]\nnumber = 0\npath = \"rbd:vms/disk1\"\n" +
                                "[target.lun.rbd]\nconf = \"" + conf() + "\"\n",
                            "t.toml");
  EXPECT_EQ(both.targets[0].luns[0].rbd->image, "disk1");
  EXPECT_EQ(both.targets[0].luns[0].rbd->conf, conf());
}

TEST_F(RbdConfig, WrittenConfigReadsBackTheSame) {
  Config c = load_string(kHead + "[[target.lun]]\nnumber = 0\n[target.lun.rbd]\npool = \"p\"\n" +
                             "image = \"i\"\nconf = \"" + conf() + "\"\nclient = \"gw\"\n",
                         "t.toml");
  Config again = validate(c);
  EXPECT_EQ(again.targets[0].luns[0].rbd, c.targets[0].luns[0].rbd);
  EXPECT_EQ(again.targets[0].luns[0].path, "rbd:p/i");
}

TEST_F(RbdConfig, ErrorsHaveLineAndColumn) {
  EXPECT_EQ(error_of(kHead + "[[target.lun]]\nnumber = 0\npath = \"rbd:vms\"\n"),
            "t.toml:7:8: path \"rbd:vms\" is not \"rbd:POOL/IMAGE\" or "
            "\"rbd:POOL/NAMESPACE/IMAGE\"");
  EXPECT_NE(error_of(kHead + "[[target.lun]]\nnumber = 0\npath = \"rbd:vms/a/b/c\"\n")
                .find("t.toml:7:8: path"),
            std::string::npos);
  EXPECT_NE(error_of(kHead + "[[target.lun]]\nnumber = 0\npath = \"rbd:/disk\"\n")
                .find("the RBD pool name must not be empty"),
            std::string::npos);
  EXPECT_NE(error_of(kHead + "[[target.lun]]\nnumber = 0\npath = \"rbd:vms/d@snap\"\n")
                .find("must not contain '/' or '@'"),
            std::string::npos);
  EXPECT_EQ(error_of(kHead + "[[target.lun]]\nnumber = 0\n[target.lun.rbd]\npool = \"p\"\n"),
            "t.toml:7:1: [target.lun.rbd] needs pool and image (or path = \"rbd:POOL/IMAGE\")");
  EXPECT_NE(error_of(kHead + "[[target.lun]]\nnumber = 0\n[target.lun.rbd]\npool = \"p\"\n" +
                     "image = \"i\"\nuser = \"x\"\n")
                .find("t.toml:10:1: unknown key 'user' in [target.lun.rbd]"),
            std::string::npos);
  EXPECT_EQ(error_of(kHead + "[[target.lun]]\nnumber = 0\npath = \"rbd:p/i\"\n" +
                     "[target.lun.rbd]\nimage = \"j\"\n"),
            "t.toml:9:9: rbd.image is already given by path");
  EXPECT_EQ(error_of(kHead + "[[target.lun]]\nnumber = 0\npath = \"/tmp/x.img\"\n" +
                     "[target.lun.rbd]\npool = \"p\"\nimage = \"i\"\n"),
            "t.toml:8:1: a LUN with an rbd table has path = \"rbd:POOL/IMAGE\" or no path, not "
            "a file");
  EXPECT_EQ(error_of(kHead + "[[target.lun]]\nnumber = 0\npath = \"rbd:p/i\"\n" +
                     "[target.lun.rbd]\nconf = \"/nonexistent/ceph.conf\"\n"),
            "t.toml:9:8: rbd.conf \"/nonexistent/ceph.conf\" is not a readable file");
  EXPECT_EQ(error_of(kHead + "[[target.lun]]\nnumber = 0\npath = \"rbd:p/i\"\n" +
                     "[target.lun.rbd]\nop_timeout = 0\n"),
            "t.toml:9:14: rbd.op_timeout (seconds) must be 1..3600, not 0");
  EXPECT_EQ(error_of(kHead + "[[target.lun]]\nnumber = 0\npath = \"rbd:p/i\"\ndirect_io = true\n"),
            "t.toml:8:13: direct_io does not apply to an RBD image (librbd does its I/O)");
  EXPECT_EQ(error_of(kHead + "[[target.lun]]\nnumber = 0\nrbd = 3\n"),
            "t.toml:7:7: rbd must be a table, not an integer");
  // One image, one LUN: two LUNs on it would be two writers the target cannot order.
  EXPECT_NE(error_of(kHead + "[[target.lun]]\nnumber = 0\npath = \"rbd:p/i\"\n" +
                     "[[target.lun]]\nnumber = 1\n[target.lun.rbd]\npool = \"p\"\nimage = \"i\"\n")
                .find("path \"rbd:p/i\" is already used by"),
            std::string::npos);
}

TEST(RbdLoadLun, AdminLunAddForm) {
  Lun l = load_lun("number = 3\npath = \"rbd:vms/disk1\"\nrbd = { client = \"gw\" }\n", "lun.add");
  ASSERT_TRUE(l.rbd);
  EXPECT_EQ(l.rbd->client, "gw");
  EXPECT_EQ(l.path, "rbd:vms/disk1");
  try {
    load_lun("number = 3\npath = \"rbd:vms/disk1\"\nrbd = { conf = \"rel.conf\" }\n", "lun.add");
    FAIL() << "a relative conf was accepted";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("rbd.conf must be absolute"), std::string::npos);
  }
}

}  // namespace
}  // namespace ringtgt::config

// ---- [testing] (test seams) ----
namespace ringtgt::config {
namespace {

TEST(Testing, FaultInjectionIsOffUnlessAsked) {
  EXPECT_FALSE(load_string(with_lun(), "t.toml").fault_testing.fault_injection);
  EXPECT_TRUE(load_string(with_lun("[testing]\nfault_injection = true\n"), "t.toml")
                  .fault_testing.fault_injection);
  EXPECT_FALSE(load_string(with_lun("[testing]\nfault_injection = false\n"), "t.toml")
                   .fault_testing.fault_injection);
}

TEST(Testing, Errors) {
  EXPECT_EQ(error_of(with_lun("[testing]\nfault_injection = 1\n")),
            "t.toml:9:19: testing.fault_injection must be true or false, not an integer");
  EXPECT_EQ(error_of(with_lun("[testing]\nfaults = true\n")),
            "t.toml:9:1: unknown key 'faults' in [testing] (allowed: durability_log, "
            "ack_before_flush, fault_injection)");
  EXPECT_EQ(error_of("testing = true\n" + with_lun()),
            "t.toml:1:11: 'testing' must be a table, written [testing], not a boolean");
}

}  // namespace
}  // namespace ringtgt::config
