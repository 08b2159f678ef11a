// The file backend on a real block device: a loop device over a temp file,
// set up with losetup (root; `mount` package), buffered and with
// --direct-io=on, and with 4 KiB logical blocks. Detached after each test.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "ringtgt/storage/file_backend.hpp"
#include "storage_test_support.hpp"

namespace ringtgt::storage {
namespace {

using testing::RecordedOp;
using testing::RecordingEngine;
using testing::Result;

std::string run(const std::string& cmd) {
  std::string out;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr) return out;
  char buf[256];
  while (std::fgets(buf, sizeof buf, p) != nullptr) out += buf;
  const int status = ::pclose(p);
  if (status != 0)
    throw std::runtime_error(cmd + " failed (" + std::to_string(status) + "): " + out);
  while (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

// A loop device over `file`, detached when it goes.
class LoopDevice {
 public:
  LoopDevice(const std::string& file, const std::string& losetup_options) {
    path_ = run("losetup -f --show " + losetup_options + " " + file + " 2>&1");
  }
  ~LoopDevice() {
    if (!path_.empty()) std::system(("losetup -d " + path_).c_str());
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

class LoopDeviceTest : public testing::FileBackendFixture<RecordingEngine>,
                       public ::testing::WithParamInterface<const char*> {
 protected:
  void SetUp() override {
    FileBackendFixture::SetUp();
    ASSERT_EQ(::geteuid(), 0u) << "losetup needs root: run the storage unit tests as root";
    int fd = ::open(path("backing.img").c_str(), O_CREAT | O_RDWR, 0600);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::ftruncate(fd, 8 << 20), 0);
    ::close(fd);
  }
  std::string backing() const { return path("backing.img"); }
};

struct Aligned {
  explicit Aligned(std::size_t n, std::uint8_t fill)
      : p(static_cast<std::uint8_t*>(std::aligned_alloc(4096, n))) {
    std::memset(p, fill, n);
  }
  ~Aligned() { std::free(p); }
  std::uint8_t* p;
};

TEST_P(LoopDeviceTest, BlockDeviceDefaultsToDirectIoAndDurableWritesAreOneDsyncWrite) {
  LoopDevice loop(backing(), GetParam());
  FileBackendOptions o;
  o.path = loop.path();
  o.block_size = 512;
  FileBackend b(o);  // direct_io unset: the block device's default
  EXPECT_TRUE(b.is_block_device());
  EXPECT_TRUE(b.direct_io());
  EXPECT_EQ(b.alignment().logical_block, 512u);
  EXPECT_EQ(b.size_bytes(), 8u << 20);
  Aligned data(8192, 0xc3);
  Result w;
  b.write(data.p, 8192, 65536, false, &w);
  EXPECT_EQ(w.value, 8192);
  ASSERT_EQ(engine.ops.size(), 1u);
  EXPECT_EQ(engine.ops[0].kind, RecordedOp::write);
  EXPECT_EQ(engine.ops[0].rw_flags, RWF_DSYNC);
  Aligned back(8192, 0);
  Result r;
  b.read(back.p, 8192, 65536, &r);
  EXPECT_EQ(r.value, 8192);
  EXPECT_EQ(std::memcmp(back.p, data.p, 8192), 0);
  Result f;
  b.flush(&f);
  EXPECT_EQ(f.value, 0);
  EXPECT_EQ(engine.ops.back().kind, RecordedOp::fsync);
  // The bytes reached the file under the loop device.
  ::close(::open(loop.path().c_str(), O_RDONLY));  // nothing cached in between
  std::vector<std::uint8_t> file(8192);
  int fd = ::open(backing().c_str(), O_RDONLY);
  ASSERT_EQ(::pread(fd, file.data(), file.size(), 65536), 8192);
  ::close(fd);
  EXPECT_EQ(std::memcmp(file.data(), data.p, 8192), 0);
}

TEST_P(LoopDeviceTest, BufferedBlockDeviceUsesGroupCommit) {
  LoopDevice loop(backing(), GetParam());
  FileBackendOptions o;
  o.path = loop.path();
  o.direct_io = false;
  FileBackend b(o);
  EXPECT_FALSE(b.direct_io());
  Aligned data(4096, 0x19);
  Result w;
  b.write(data.p, 4096, 0, false, &w);
  EXPECT_EQ(w.value, 4096);
  ASSERT_EQ(engine.ops.size(), 2u);
  EXPECT_EQ(engine.ops[0].rw_flags, 0);
  EXPECT_EQ(engine.ops[1].kind, RecordedOp::fsync);
}

TEST_P(LoopDeviceTest, BlockSizeBelowTheDevicesLogicalBlockIsRefusedNamingBoth) {
  LoopDevice loop(backing(), std::string(GetParam()) + " -b 4096");
  FileBackendOptions o;
  o.path = loop.path();
  o.block_size = 512;
  try {
    FileBackend b(o);
    FAIL() << "block_size 512 accepted on a 4096-byte device";
  } catch (const std::runtime_error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("block_size 512"), std::string::npos) << what;
    EXPECT_NE(what.find("4096"), std::string::npos) << what;
    EXPECT_NE(what.find(loop.path()), std::string::npos) << what;
  }
  o.block_size = 4096;
  FileBackend ok(o);
  EXPECT_EQ(ok.alignment().logical_block, 4096u);
  Aligned data(4096, 0x7e);
  Result w;
  ok.write(data.p, 4096, 4096, false, &w);
  EXPECT_EQ(w.value, 4096);
}

INSTANTIATE_TEST_SUITE_P(Loop, LoopDeviceTest,
                         ::testing::Values("--direct-io=off", "--direct-io=on"),
                         [](const auto& info) {
                           return std::string(info.param).find("on") != std::string::npos
                                      ? "DirectIoLoop"
                                      : "BufferedLoop";
                         });

}  // namespace
}  // namespace ringtgt::storage
