// Live changes to the Registry that the admin methods and reload use: snapshots are
// replaced, never changed under a reader; a LUN map a session holds stays whole.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

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

config::Lun lun(std::uint32_t n, const fs::path& p, std::uint64_t size) {
  config::Lun l;
  l.number = n;
  l.path = p.string();
  l.size = size;
  return l;
}

TEST(RegistryLive, LunAddedAndRemovedThroughANewMap) {
  TempDir tmp;
  Registry reg(one_target(tmp.path));
  auto entry = reg.find_target("iqn.2025-01.com.example:a");
  ASSERT_TRUE(entry);
  auto held = entry->luns();  // what a session runs on
  const auto v0 = entry->luns_version();

  auto l2 = lun(2, tmp.path / "a2.img", 2u << 20);
  reg.put_lun(entry->name, l2, reg.open_lun(entry->name, l2));
  EXPECT_GT(entry->luns_version(), v0);
  EXPECT_EQ(entry->luns()->luns(), (std::vector<std::uint64_t>{1, 2}));
  EXPECT_EQ(held->luns(), (std::vector<std::uint64_t>{1}));  // the old map is untouched
  EXPECT_EQ(fs::file_size(tmp.path / "a2.img"), 2u << 20);

  auto lu1 = entry->luns()->find(1);
  reg.remove_lun(entry->name, 1);
  EXPECT_EQ(entry->luns()->luns(), (std::vector<std::uint64_t>{2}));
  EXPECT_EQ(held->find(1), lu1);  // in-flight commands on the held map keep their LU
  EXPECT_THROW(reg.remove_lun(entry->name, 1), std::runtime_error);
}

TEST(RegistryLive, ResizeGrowsFileAndBlockCount) {
  TempDir tmp;
  Registry reg(one_target(tmp.path));
  auto lu = reg.find_target("iqn.2025-01.com.example:a")->luns()->find(1);
  ASSERT_TRUE(lu);
  EXPECT_EQ(lu->block_count(), 2048u);
  reg.resize_lun("iqn.2025-01.com.example:a", 1, 4u << 20);
  EXPECT_EQ(lu->block_count(), 8192u);
  EXPECT_EQ(lu->backend().size_bytes(), 4u << 20);
  EXPECT_EQ(fs::file_size(tmp.path / "a1.img"), 4u << 20);
  EXPECT_THROW(reg.resize_lun("iqn.2025-01.com.example:a", 1, 1u << 20), std::runtime_error);
  EXPECT_THROW(reg.resize_lun("iqn.2025-01.com.example:a", 1, (4u << 20) + 100),
               std::runtime_error);  // not a multiple of the block size
  EXPECT_EQ(lu->block_count(), 8192u);
}

TEST(RegistryLive, TargetsComeAndGoWhileHoldersKeepTheirs) {
  TempDir tmp;
  Registry reg(one_target(tmp.path));
  auto old = reg.find_target("iqn.2025-01.com.example:a");
  config::Target b;
  b.name = "iqn.2025-01.com.example:b";
  b.allowed_initiators = {"iqn.2025-01.com.example:i"};
  b.luns.push_back(lun(0, tmp.path / "b0.img", 1u << 20));
  reg.add_target(b);
  EXPECT_THROW(reg.add_target(b), std::runtime_error);
  auto eb = reg.find_target(b.name);
  ASSERT_TRUE(eb);
  EXPECT_TRUE(eb->allows("iqn.2025-01.com.example:i"));
  EXPECT_FALSE(eb->allows("iqn.2025-01.com.example:j"));
  reg.set_target_initiators(b.name, {});
  EXPECT_TRUE(eb->allows("iqn.2025-01.com.example:j"));

  std::string out;
  reg.append_send_targets("iqn.2025-01.com.example:j", "All", "127.0.0.1:3260", out);
  EXPECT_NE(out.find(b.name), std::string::npos);

  reg.remove_target("iqn.2025-01.com.example:a");
  EXPECT_FALSE(reg.find_target("iqn.2025-01.com.example:a"));
  EXPECT_EQ(reg.targets().size(), 1u);
  EXPECT_EQ(old->luns()->luns(), (std::vector<std::uint64_t>{1}));  // a session's entry lives on
  EXPECT_THROW(reg.remove_target("iqn.2025-01.com.example:a"), std::runtime_error);
}

TEST(RegistryLive, OpenLunFailureNamesTargetAndLun) {
  TempDir tmp;
  Registry reg(one_target(tmp.path));
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

}  // namespace
}  // namespace ringtgt::net
