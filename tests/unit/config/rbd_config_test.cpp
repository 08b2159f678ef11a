// RBD LUNs in the config: path = "rbd:POOL/IMAGE" or a [target.lun.rbd] table,
// checked without a cluster (nothing here connects).
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "ringtgt/config/config.hpp"

namespace ringtgt::config {
namespace {

namespace fs = std::filesystem;

// Lines 1-4: a portal and a target; line 5 on: the LUN.
const std::string kHead =
    "[[portal]]\n"
    "listen = \"127.0.0.1:3260\"\n"
    "[[target]]\n"
    "name = \"iqn.2025-01.com.example:t\"\n";

std::string error_of(const std::string& text) {
  try {
    load_string(text, "t.toml");
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "no error";
}

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
