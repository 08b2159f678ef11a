// Logical block provisioning in the backends: unmap, write_zeroes and the
// mapped/deallocated query, on a real file (ext4/xfs/tmpfs punch holes) and
// in memory.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "ringtgt/storage/file_backend.hpp"
#include "ringtgt/storage/memory_backend.hpp"
#include "storage_test_support.hpp"

namespace ringtgt::storage {
namespace {

using Bytes = std::vector<std::uint8_t>;
using testing::Result;

// Runs every operation with a plain syscall through IoEngine's defaults,
// recording the fallocate calls.
class InlineEngine final : public reactor::IoEngine {
 public:
  struct Fallocate {
    int mode;
    std::uint64_t offset, len;
    bool durable;
  };
  void read(int fd, void* buf, std::size_t len, std::uint64_t offset, IoOp* op) override {
    ssize_t n = ::pread(fd, buf, len, static_cast<off_t>(offset));
    op->on_complete(n < 0 ? -errno : static_cast<int>(n));
  }
  void write(int fd, const void* buf, std::size_t len, std::uint64_t offset, int,
             IoOp* op) override {
    ssize_t n = ::pwrite(fd, buf, len, static_cast<off_t>(offset));
    op->on_complete(n < 0 ? -errno : static_cast<int>(n));
  }
  void fsync(int fd, bool, IoOp* op) override { op->on_complete(::fsync(fd) == 0 ? 0 : -errno); }
  void fallocate(int fd, int mode, std::uint64_t offset, std::uint64_t len, IoOp* op) override {
    calls.push_back({mode, offset, len, false});
    IoEngine::fallocate(fd, mode, offset, len, op);
  }
  void fallocate_durable(int fd, int mode, std::uint64_t offset, std::uint64_t len,
                         IoOp* op) override {
    calls.push_back({mode, offset, len, true});
    IoEngine::fallocate_durable(fd, mode, offset, len, op);
  }
  void recv(int, void*, std::size_t, int, IoOp* op) override { op->on_complete(-ENOTSUP); }
  void sendmsg(int, const msghdr*, int, IoOp* op) override { op->on_complete(-ENOTSUP); }

  std::vector<Fallocate> calls;
};

class FileProvisioningTest : public testing::FileBackendFixture<InlineEngine> {
 protected:
  Bytes read_back(FileBackend& b, std::uint64_t offset, std::size_t len) {
    Bytes in(len, 0xee);
    Result r;
    b.read(in.data(), len, offset, &r);
    EXPECT_EQ(r.value, static_cast<int>(len));
    return in;
  }
  void fill(FileBackend& b, std::uint8_t byte) {
    Bytes data(1 << 20, byte);
    Result r;
    b.write(data.data(), data.size(), 0, false, &r);
    ASSERT_EQ(r.value, 1 << 20);
  }
};

TEST_F(FileProvisioningTest, ProbeFindsHolePunchingOnTheTestFileSystem) {
  FileBackend b(opts(WriteAckPolicy::writethrough));
  // /tmp is ext4, xfs or tmpfs here, all of which punch holes; the probe
  // must neither change the size nor touch data.
  EXPECT_TRUE(b.can_unmap());
  EXPECT_EQ(std::filesystem::file_size(dir + "/lun.img"), 1u << 20);
}

TEST_F(FileProvisioningTest, ReadOnlyBackendCannotUnmap) {
  { FileBackend create(opts(WriteAckPolicy::writethrough)); }
  auto o = opts(WriteAckPolicy::writethrough);
  o.read_only = true;
  FileBackend b(o);
  EXPECT_FALSE(b.can_unmap());
  Result r;
  b.unmap(0, 4096, &r);
  EXPECT_EQ(r.value, -EOPNOTSUPP);
}

TEST_F(FileProvisioningTest, UnmapDeallocatesAndReadsZeroesDurablyUnderWritethrough) {
  FileBackend b(opts(WriteAckPolicy::writethrough));
  fill(b, 0xab);
  EXPECT_TRUE(b.extent_at(0, 1 << 20).mapped);
  Result r;
  b.unmap(65536, 131072, &r);
  EXPECT_EQ(r.calls, 1);
  EXPECT_EQ(r.value, 0);
  ASSERT_EQ(engine.calls.size(), 1u);
  EXPECT_EQ(engine.calls[0].mode, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE);
  EXPECT_TRUE(engine.calls[0].durable);
  EXPECT_EQ(engine.calls[0].offset, 65536u);
  EXPECT_EQ(engine.calls[0].len, 131072u);

  const Bytes in = read_back(b, 0, 1 << 20);
  for (std::size_t i = 0; i < in.size(); ++i) {
    const bool hole = i >= 65536 && i < 196608;
    ASSERT_EQ(in[i], hole ? 0x00 : 0xab) << "byte " << i;
  }
  auto e = b.extent_at(0, 1 << 20);
  EXPECT_TRUE(e.mapped);
  EXPECT_EQ(e.length, 65536u);
  e = b.extent_at(65536, 1 << 20);
  EXPECT_FALSE(e.mapped);
  EXPECT_EQ(e.length, 131072u);
  e = b.extent_at(196608, 4096);
  EXPECT_TRUE(e.mapped);
  EXPECT_EQ(e.length, 4096u);
  EXPECT_EQ(std::filesystem::file_size(dir + "/lun.img"), 1u << 20);
}

TEST_F(FileProvisioningTest, UnmapsOfOneCommandShareTheLastOnesSync) {
  FileBackend b(opts(WriteAckPolicy::writethrough));
  fill(b, 0x11);
  Result r1, r2;
  b.unmap(0, 4096, &r1, true);
  b.unmap(8192, 4096, &r2, false);
  EXPECT_EQ(r1.value, 0);
  EXPECT_EQ(r2.value, 0);
  ASSERT_EQ(engine.calls.size(), 2u);
  EXPECT_FALSE(engine.calls[0].durable);
  EXPECT_TRUE(engine.calls[1].durable);
  EXPECT_EQ(read_back(b, 0, 4096), Bytes(4096, 0));
  EXPECT_EQ(read_back(b, 8192, 4096), Bytes(4096, 0));
}

TEST_F(FileProvisioningTest, WritebackUnmapIsNotSynced) {
  FileBackend b(opts(WriteAckPolicy::writeback));
  Result r;
  b.unmap(0, 4096, &r);
  EXPECT_EQ(r.value, 0);
  ASSERT_EQ(engine.calls.size(), 1u);
  EXPECT_FALSE(engine.calls[0].durable);
}

TEST_F(FileProvisioningTest, WriteZeroesZeroesAndStaysMapped) {
  FileBackend b(opts(WriteAckPolicy::writeback));
  fill(b, 0x77);
  Result r;
  b.write_zeroes(8192, 8192, true, &r);
  ASSERT_EQ(r.value, 0);
  ASSERT_EQ(engine.calls.size(), 1u);
  EXPECT_EQ(engine.calls[0].mode, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE);
  EXPECT_TRUE(engine.calls[0].durable);  // fua
  const Bytes in = read_back(b, 0, 32768);
  for (std::size_t i = 0; i < in.size(); ++i) {
    ASSERT_EQ(in[i], (i >= 8192 && i < 16384) ? 0x00 : 0x77) << "byte " << i;
  }
  EXPECT_TRUE(b.extent_at(8192, 8192).mapped);
}

TEST_F(FileProvisioningTest, FreshSparseFileIsDeallocatedToTheEnd) {
  FileBackend b(opts(WriteAckPolicy::writethrough));
  auto e = b.extent_at(4096, 1 << 20);
  EXPECT_FALSE(e.mapped);
  EXPECT_EQ(e.length, 1u << 20);  // capped at max_len
}

TEST(MemoryProvisioning, UnmapZeroesWholeUnitsAndTracksThem) {
  MemoryBackend b(64 * 1024);
  EXPECT_TRUE(b.can_unmap());
  EXPECT_FALSE(b.extent_at(0, 4096).mapped);  // fresh: deallocated
  Bytes data(64 * 1024, 0xcd);
  Result w;
  b.write(data.data(), data.size(), 0, false, &w);
  ASSERT_EQ(w.value, 64 * 1024);
  auto e = b.extent_at(0, 64 * 1024);
  EXPECT_TRUE(e.mapped);
  EXPECT_EQ(e.length, 64u * 1024);

  Result u;
  b.unmap(1024, 2048, &u);
  EXPECT_EQ(u.value, 0);
  EXPECT_EQ(b.unmap_count(), 1u);
  for (std::size_t i = 0; i < data.size(); ++i) {
    ASSERT_EQ(b.data()[i], (i >= 1024 && i < 3072) ? 0x00 : 0xcd) << "byte " << i;
  }
  e = b.extent_at(0, 64 * 1024);
  EXPECT_TRUE(e.mapped);
  EXPECT_EQ(e.length, 1024u);
  e = b.extent_at(1024, 64 * 1024);
  EXPECT_FALSE(e.mapped);
  EXPECT_EQ(e.length, 2048u);
  EXPECT_TRUE(b.extent_at(3072, 512).mapped);

  // Part of a unit: zeroed, still mapped.
  Result p;
  b.unmap(4096 + 100, 200, &p);
  EXPECT_EQ(p.value, 0);
  EXPECT_EQ(b.data()[4096 + 100], 0);
  EXPECT_TRUE(b.extent_at(4096, 512).mapped);
}

TEST(MemoryProvisioning, WithoutUnmapSupportUnmapFailsAndChangesNothing) {
  MemoryBackend b(8192);
  b.set_unmap_supported(false);
  EXPECT_FALSE(b.can_unmap());
  b.data()[0] = 1;
  Result u;
  b.unmap(0, 4096, &u);
  EXPECT_EQ(u.value, -EOPNOTSUPP);
  EXPECT_EQ(b.data()[0], 1);
}

TEST(MemoryProvisioning, OutOfRangeAndInjectedErrors) {
  MemoryBackend b(8192);
  Result u;
  b.unmap(4096, 8192, &u);
  EXPECT_EQ(u.value, -EINVAL);
  b.inject_error(0, 512, EIO);
  Result z;
  b.write_zeroes(0, 4096, false, &z);
  EXPECT_EQ(z.value, -EIO);
  Result z2;
  b.write_zeroes(4096, 4096, false, &z2);
  EXPECT_EQ(z2.value, 0);
  EXPECT_EQ(b.write_zeroes_count(), 1u);
  EXPECT_TRUE(b.extent_at(4096, 4096).mapped);
}

}  // namespace
}  // namespace ringtgt::storage
