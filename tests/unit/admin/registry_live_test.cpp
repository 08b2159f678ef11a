// Live changes to the Registry that the admin methods and reload use: snapshots are
// replaced, never changed under a reader; a LUN map a session holds stays whole.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "ringtgt/lun/lun_factory.hpp"
#include "ringtgt/net/registry.hpp"

namespace ringtgt::net {
namespace {

namespace fs = std::filesystem;

struct TempDir {
  fs::path path = fs::temp_directory_path() / ("ringtgt-reg-" + std::to_string(::getpid()));
  TempDir() { fs::create_directories(path); }
  ~TempDir() { fs::remove_all(path); }
};

config::Config one_target(const fs::path& dir) {
  return config::load_string(
      "[[portal]]\nlisten = \"127.0.0.1:3260\"\n"
      "[[target]]\nname = \"iqn.2025-01.com.example:a\"\n"
      "  [[target.lun]]\n  number = 1\n  path = \"" +
          (dir / "a1.img").string() + "\"\n  size = \"1M\"\n",
      "t.toml");
}

// The daemon's wiring: the registry opens LUNs with the one LUN factory.
LunOpener factory_of(const config::Config& cfg) {
  auto f = std::make_shared<lun::LunFactory>(cfg.state_dir, 1);
  return [f](const std::string& target, const config::Lun& l) { return f->open(target, l); };
}

config::Lun lun(std::uint32_t n, const fs::path& p, std::uint64_t size) {
  config::Lun l;
  l.number = n;
  l.path = p.string();
  l.size = size;
  return l;
}

TEST(RegistryLive, LunAddedAndRemovedThroughANewMap) {
  TempDir tmp;
  const auto cfg = one_target(tmp.path);
  Registry reg(cfg, factory_of(cfg));
  auto entry = reg.catalog().find_target("iqn.2025-01.com.example:a");
  ASSERT_TRUE(entry);
  auto held = entry->luns();  // what a session runs on
  const auto v0 = entry->luns_version();

  auto l2 = lun(2, tmp.path / "a2.img", 2u << 20);
  reg.catalog().put_lun(entry->name, l2, reg.open_lun(entry->name, l2));
  EXPECT_GT(entry->luns_version(), v0);
  EXPECT_EQ(entry->luns()->luns(), (std::vector<std::uint64_t>{1, 2}));
  EXPECT_EQ(held->luns(), (std::vector<std::uint64_t>{1}));  // the old map is untouched
  EXPECT_EQ(fs::file_size(tmp.path / "a2.img"), 2u << 20);

  auto lu1 = entry->luns()->find(1);
  reg.catalog().remove_lun(entry->name, 1);
  EXPECT_EQ(entry->luns()->luns(), (std::vector<std::uint64_t>{2}));
  EXPECT_EQ(held->find(1), lu1);  // in-flight commands on the held map keep their LU
  EXPECT_THROW(reg.catalog().remove_lun(entry->name, 1), std::runtime_error);
}

TEST(RegistryLive, ResizeGrowsFileAndBlockCount) {
  TempDir tmp;
  const auto cfg = one_target(tmp.path);
  Registry reg(cfg, factory_of(cfg));
  auto lu = reg.catalog().find_target("iqn.2025-01.com.example:a")->luns()->find(1);
  ASSERT_TRUE(lu);
  EXPECT_EQ(lu->block_count(), 2048u);
  reg.catalog().resize_lun("iqn.2025-01.com.example:a", 1, 4u << 20);
  EXPECT_EQ(lu->block_count(), 8192u);
  EXPECT_EQ(lu->backend().size_bytes(), 4u << 20);
  EXPECT_EQ(fs::file_size(tmp.path / "a1.img"), 4u << 20);
  EXPECT_THROW(reg.catalog().resize_lun("iqn.2025-01.com.example:a", 1, 1u << 20),
               std::runtime_error);
  EXPECT_THROW(reg.catalog().resize_lun("iqn.2025-01.com.example:a", 1, (4u << 20) + 100),
               std::runtime_error);  // not a multiple of the block size
  EXPECT_EQ(lu->block_count(), 8192u);
}

TEST(RegistryLive, TargetsComeAndGoWhileHoldersKeepTheirs) {
  TempDir tmp;
  const auto cfg = one_target(tmp.path);
  Registry reg(cfg, factory_of(cfg));
  auto old = reg.catalog().find_target("iqn.2025-01.com.example:a");
  config::Target b;
  b.name = "iqn.2025-01.com.example:b";
  b.allowed_initiators = {"iqn.2025-01.com.example:i"};
  b.luns.push_back(lun(0, tmp.path / "b0.img", 1u << 20));
  reg.catalog().add_target(b);
  EXPECT_THROW(reg.catalog().add_target(b), std::runtime_error);
  auto eb = reg.catalog().find_target(b.name);
  ASSERT_TRUE(eb);
  EXPECT_TRUE(eb->allows("iqn.2025-01.com.example:i"));
  EXPECT_FALSE(eb->allows("iqn.2025-01.com.example:j"));
  reg.catalog().set_target_initiators(b.name, {});
  EXPECT_TRUE(eb->allows("iqn.2025-01.com.example:j"));

  std::string out;
  reg.catalog().append_send_targets("iqn.2025-01.com.example:j", "All", "127.0.0.1:3260", out);
  EXPECT_NE(out.find(b.name), std::string::npos);

  reg.catalog().remove_target("iqn.2025-01.com.example:a");
  EXPECT_FALSE(reg.catalog().find_target("iqn.2025-01.com.example:a"));
  EXPECT_EQ(reg.catalog().targets().size(), 1u);
  EXPECT_EQ(old->luns()->luns(), (std::vector<std::uint64_t>{1}));  // a session's entry lives on
  EXPECT_THROW(reg.catalog().remove_target("iqn.2025-01.com.example:a"), std::runtime_error);
}

TEST(RegistryLive, OpenLunFailureNamesTargetAndLun) {
  TempDir tmp;
  const auto cfg = one_target(tmp.path);
  Registry reg(cfg, factory_of(cfg));
  config::Lun missing;
  missing.number = 7;
  missing.path = (tmp.path / "nope.img").string();  // no size: must exist
  try {
    reg.open_lun("iqn.2025-01.com.example:a", missing);
    FAIL() << "opened a missing file";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("target iqn.2025-01.com.example:a LUN 7"),
              std::string::npos)
        << e.what();
  }
}

// --- EXTENDED COPY copy targets: what an initiator may reach from its session ---

// Target a (the session's): LUNs 0 and 1, LUN 2 masked to iqn.other. b admits iqn.me,
// c only iqn.other, d asks CHAP with a's credentials (when a has them), e other ones,
// f is offered on the second portal only.
config::Config copy_targets_config(const fs::path& dir, bool a_has_chap) {
  auto secret = [&](const std::string& name, const std::string& value) {
    const fs::path p = dir / name;
    { std::ofstream(p) << value; }
    fs::permissions(p, fs::perms::owner_read | fs::perms::owner_write);
    return p.string();
  };
  const std::string same = secret("same.secret", "same-secret-0123");
  const std::string other = secret("other.secret", "other-secret-0123");
  auto lun_text = [&](const std::string& file, int n, const std::string& more = "") {
    return "  [[target.lun]]\n  number = " + std::to_string(n) + "\n  path = \"" +
           (dir / file).string() + "\"\n  size = \"1M\"\n" + more;
  };
  std::string t = "state_dir = \"" + dir.string() +
                  "\"\n"
                  "[[portal]]\nlisten = \"127.0.0.1:3260\"\n"
                  "[[portal]]\nlisten = \"127.0.0.2:3260\"\n";
  t += "[[target]]\nname = \"iqn.2025-01.com.example:a\"\n";
  if (a_has_chap) t += "chap_user = \"u\"\nchap_secret_file = \"" + same + "\"\n";
  t += lun_text("a0.img", 0) + lun_text("a1.img", 1) +
       lun_text("a2.img", 2, "  allowed_initiators = [\"iqn.2025-01.com.example:other\"]\n");
  t += "[[target]]\nname = \"iqn.2025-01.com.example:b\"\n"
       "allowed_initiators = [\"iqn.2025-01.com.example:me\"]\n" +
       lun_text("b0.img", 0);
  t += "[[target]]\nname = \"iqn.2025-01.com.example:c\"\n"
       "allowed_initiators = [\"iqn.2025-01.com.example:other\"]\n" +
       lun_text("c0.img", 0);
  t +=
      "[[target]]\nname = \"iqn.2025-01.com.example:d\"\nchap_user = \"u\"\nchap_secret_file = \"" +
      same + "\"\n" + lun_text("d0.img", 0);
  t +=
      "[[target]]\nname = \"iqn.2025-01.com.example:e\"\nchap_user = \"u\"\nchap_secret_file = \"" +
      other + "\"\n" + lun_text("e0.img", 0);
  t += "[[target]]\nname = \"iqn.2025-01.com.example:f\"\nportals = [\"127.0.0.2:3260\"]\n" +
       lun_text("f0.img", 0);
  return config::load_string(t, "t.toml");
}

std::uint64_t designator_of(const Registry& reg, const std::string& target, std::uint64_t lun) {
  return scsi::naa_designator(reg.catalog().find_target(target)->luns()->find(lun)->params());
}

TEST(RegistryCopyTargets, WhatTheInitiatorCouldLogInToAndSee) {
  TempDir tmp;
  const auto cfg = copy_targets_config(tmp.path, false);
  Registry reg(cfg, factory_of(cfg));
  const std::string me = "iqn.2025-01.com.example:me";
  const std::uint64_t isid = 0x23d000000001ull;
  const std::uint16_t tsih = reg.sessions().session_started({me, isid, "iqn.2025-01.com.example:a"},
                                                            nullptr, {}, "127.0.0.1:3260");
  ASSERT_NE(tsih, 0);
  const scsi::Nexus nexus{me, "iqn.2025-01.com.example:a", isid << 16 | tsih, {}};
  auto find = [&](const std::string& target, std::uint64_t lun) {
    return reg.find_copy_target(designator_of(reg, "iqn.2025-01.com.example:" + target, lun),
                                nexus);
  };
  auto a1 = reg.catalog().find_target("iqn.2025-01.com.example:a")->luns()->find(1);
  EXPECT_EQ(find("a", 1), a1);
  EXPECT_TRUE(find("a", 0));
  EXPECT_FALSE(find("a", 2));  // masked to another initiator
  EXPECT_TRUE(find("b", 0));   // its ACL admits me
  EXPECT_FALSE(find("c", 0));  // its ACL does not
  EXPECT_FALSE(find("d", 0));  // CHAP, and the session proved no secret
  EXPECT_FALSE(find("e", 0));
  EXPECT_FALSE(find("f", 0));  // not offered on the portal the session came in through
  EXPECT_FALSE(reg.find_copy_target(0x6000000000000001ull, nexus));

  // The LUs carry it as their resolver.
  EXPECT_EQ(a1->copy_targets()(designator_of(reg, "iqn.2025-01.com.example:b", 0), nexus),
            reg.catalog().find_target("iqn.2025-01.com.example:b")->luns()->find(0));

  // From the second portal, f is there.
  const std::uint64_t isid2 = 0x23d000000002ull;
  const std::uint16_t tsih2 = reg.sessions().session_started(
      {me, isid2, "iqn.2025-01.com.example:a"}, nullptr, {}, "127.0.0.2:3260");
  const scsi::Nexus there{me, "iqn.2025-01.com.example:a", isid2 << 16 | tsih2, {}};
  EXPECT_TRUE(reg.find_copy_target(designator_of(reg, "iqn.2025-01.com.example:f", 0), there));
  // A nexus whose session the registry does not know: no portal, so only targets
  // offered everywhere.
  const scsi::Nexus unknown{me, "iqn.2025-01.com.example:a", 0x77, {}};
  EXPECT_FALSE(reg.find_copy_target(designator_of(reg, "iqn.2025-01.com.example:f", 0), unknown));
  EXPECT_TRUE(reg.find_copy_target(designator_of(reg, "iqn.2025-01.com.example:b", 0), unknown));

  // Live changes count: b's ACL no longer admits me; LUN 1 of a is removed (what a copy
  // already holds stays valid).
  reg.catalog().set_target_initiators("iqn.2025-01.com.example:b",
                                      {"iqn.2025-01.com.example:other"});
  EXPECT_FALSE(find("b", 0));
  const std::uint64_t a1_designator = designator_of(reg, "iqn.2025-01.com.example:a", 1);
  auto held = reg.find_copy_target(a1_designator, nexus);
  reg.catalog().remove_lun("iqn.2025-01.com.example:a", 1);
  EXPECT_FALSE(reg.find_copy_target(a1_designator, nexus));
  ASSERT_TRUE(held);
  EXPECT_EQ(held->block_count(), 2048u);
}

TEST(RegistryCopyTargets, ChapTargetsNeedTheCredentialsTheSessionProved) {
  TempDir tmp;
  const auto cfg = copy_targets_config(tmp.path, true);
  Registry reg(cfg, factory_of(cfg));
  const std::string me = "iqn.2025-01.com.example:me";
  const std::uint16_t tsih = reg.sessions().session_started({me, 1, "iqn.2025-01.com.example:a"},
                                                            nullptr, {}, "127.0.0.1:3260");
  const scsi::Nexus nexus{me, "iqn.2025-01.com.example:a", std::uint64_t{1} << 16 | tsih, {}};
  auto find = [&](const std::string& target) {
    return reg.find_copy_target(designator_of(reg, "iqn.2025-01.com.example:" + target, 0), nexus);
  };
  EXPECT_TRUE(find("d"));   // the same user and secret as a
  EXPECT_FALSE(find("e"));  // another secret
  EXPECT_TRUE(find("b"));   // no CHAP at all
}

}  // namespace
}  // namespace ringtgt::net
