// FileBackend against a recording IoEngine that runs each operation with a
// plain syscall, and MemoryBackend basics.
#include "ringtgt/storage/file_backend.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <system_error>
#include <vector>

#include "ringtgt/storage/memory_backend.hpp"
#include "storage_test_support.hpp"

namespace ringtgt::storage {
namespace {

using Bytes = std::vector<std::uint8_t>;
using testing::Result;

using testing::RecordedOp;
using testing::RecordingEngine;

using FileBackendTest = testing::FileBackendFixture<RecordingEngine>;

// Buffered (a file's default): durability comes from group commit, an
// fdatasync after the write completed (write_path_test.cpp has the ordering).
TEST_F(FileBackendTest, WritethroughWritesAreFollowedByAnFdatasyncBeforeTheyComplete) {
  FileBackend b(opts(WriteAckPolicy::writethrough));
  EXPECT_EQ(b.ack_policy(), WriteAckPolicy::writethrough);
  EXPECT_FALSE(b.write_cache_enabled());
  Bytes data(4096, 0xab);
  Result r;
  b.write(data.data(), data.size(), 8192, false, &r);
  EXPECT_EQ(r.calls, 1);
  EXPECT_EQ(r.value, 4096);
  ASSERT_EQ(engine.ops.size(), 2u);
  EXPECT_EQ(engine.ops[0].kind, RecordedOp::write);
  EXPECT_EQ(engine.ops[0].len, 4096u);
  EXPECT_EQ(engine.ops[0].offset, 8192u);
  EXPECT_EQ(engine.ops[0].rw_flags, 0);
  EXPECT_EQ(engine.ops[1].kind, RecordedOp::fsync);
  EXPECT_TRUE(engine.ops[1].datasync);
  EXPECT_EQ(engine.ops[1].fd, engine.ops[0].fd);
  Result f;
  b.write(data.data(), data.size(), 0, true, &f);
  ASSERT_EQ(engine.ops.size(), 4u);
  EXPECT_EQ(engine.ops[3].kind, RecordedOp::fsync);
  EXPECT_EQ(f.value, 4096);
}

TEST_F(FileBackendTest, WritebackWritesAreFlushedOnlyWithFua) {
  FileBackend b(opts(WriteAckPolicy::writeback));
  EXPECT_TRUE(b.write_cache_enabled());
  Bytes data(512, 0x11);
  Result r1, r2;
  b.write(data.data(), data.size(), 0, false, &r1);
  ASSERT_EQ(engine.ops.size(), 1u);
  b.write(data.data(), data.size(), 512, true, &r2);
  ASSERT_EQ(engine.ops.size(), 3u);
  EXPECT_EQ(engine.ops[0].rw_flags, 0);
  EXPECT_EQ(engine.ops[1].kind, RecordedOp::write);
  EXPECT_EQ(engine.ops[2].kind, RecordedOp::fsync);
  EXPECT_EQ(r1.value, 512);
  EXPECT_EQ(r2.value, 512);
  EXPECT_EQ(engine.ops[0].fd, engine.ops[1].fd);
}

TEST_F(FileBackendTest, FlushIsAnFdatasync) {
  FileBackend b(opts(WriteAckPolicy::writeback));
  Result r;
  b.flush(&r);
  EXPECT_EQ(r.calls, 1);
  EXPECT_EQ(r.value, 0);
  ASSERT_EQ(engine.ops.size(), 1u);
  EXPECT_EQ(engine.ops[0].kind, RecordedOp::fsync);
  EXPECT_TRUE(engine.ops[0].datasync);
}

TEST_F(FileBackendTest, ReadReturnsWhatWasWritten) {
  FileBackend b(opts(WriteAckPolicy::writethrough));
  Bytes data(1024);
  for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<std::uint8_t>(i * 13);
  Result w, r;
  b.write(data.data(), data.size(), 4096, false, &w);
  Bytes back(1024, 0);
  b.read(back.data(), back.size(), 4096, &r);
  EXPECT_EQ(r.value, 1024);
  EXPECT_EQ(back, data);
  ASSERT_EQ(engine.ops.size(), 3u);  // write, fdatasync, read
  EXPECT_EQ(engine.ops[2].kind, RecordedOp::read);
  EXPECT_EQ(engine.ops[2].offset, 4096u);
  EXPECT_EQ(engine.ops[2].len, 1024u);
}

TEST_F(FileBackendTest, MissingFileIsCreatedSparseAtCreateSize) {
  const std::uint64_t size = 64ull << 20;
  FileBackend b(opts(WriteAckPolicy::writethrough, size));
  EXPECT_EQ(b.size_bytes(), size);
  EXPECT_FALSE(b.is_block_device());
  EXPECT_EQ(b.describe(), path("lun.img"));
  struct stat st {};
  ASSERT_EQ(::stat(path("lun.img").c_str(), &st), 0);
  EXPECT_EQ(static_cast<std::uint64_t>(st.st_size), size);
  EXPECT_LT(static_cast<std::uint64_t>(st.st_blocks) * 512, 1u << 20);  // sparse
}

TEST_F(FileBackendTest, SmallerFileIsGrownToCreateSize) {
  int fd = ::open(path("lun.img").c_str(), O_CREAT | O_WRONLY, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::ftruncate(fd, 4096), 0);
  ::close(fd);
  FileBackend b(opts(WriteAckPolicy::writethrough, 1 << 20));
  EXPECT_EQ(b.size_bytes(), 1u << 20);
}

TEST_F(FileBackendTest, ExistingFileKeepsItsSizeWithoutCreateSize) {
  int fd = ::open(path("lun.img").c_str(), O_CREAT | O_WRONLY, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::ftruncate(fd, 3 << 20), 0);
  ::close(fd);
  FileBackendOptions o;
  o.path = path("lun.img");
  FileBackend b(o);
  EXPECT_EQ(b.size_bytes(), 3u << 20);
  EXPECT_EQ(b.ack_policy(), WriteAckPolicy::writethrough);  // the default
}

TEST_F(FileBackendTest, MissingFileWithoutSizeThrowsNamingThePath) {
  FileBackendOptions o;
  o.path = path("absent.img");
  try {
    FileBackend b(o);
    FAIL() << "no exception";
  } catch (const std::system_error& e) {
    EXPECT_NE(std::string(e.what()).find(o.path), std::string::npos) << e.what();
    EXPECT_EQ(e.code().value(), ENOENT);
  }
}

TEST_F(FileBackendTest, EmptyFileThrowsNamingThePath) {
  int fd = ::open(path("empty.img").c_str(), O_CREAT | O_WRONLY, 0600);
  ASSERT_GE(fd, 0);
  ::close(fd);
  FileBackendOptions o;
  o.path = path("empty.img");
  try {
    FileBackend b(o);
    FAIL() << "no exception";
  } catch (const std::system_error& e) {
    EXPECT_NE(std::string(e.what()).find(o.path), std::string::npos) << e.what();
  }
}

TEST_F(FileBackendTest, ReadOnlyOpensAndReadsButWritesFail) {
  {
    FileBackend rw(opts(WriteAckPolicy::writethrough));
    Bytes data(512, 0x5a);
    Result w;
    rw.write(data.data(), data.size(), 0, false, &w);
    ASSERT_EQ(w.value, 512);
  }
  ASSERT_EQ(::chmod(path("lun.img").c_str(), 0400), 0);
  FileBackendOptions o;
  o.path = path("lun.img");
  o.read_only = true;
  FileBackend ro(o);
  EXPECT_EQ(ro.size_bytes(), 1u << 20);
  Bytes back(512, 0);
  Result r;
  ro.read(back.data(), back.size(), 0, &r);
  EXPECT_EQ(r.value, 512);
  EXPECT_EQ(back, Bytes(512, 0x5a));
  Result w;
  ro.write(back.data(), back.size(), 0, false, &w);
  EXPECT_EQ(w.calls, 1);
  EXPECT_LT(w.value, 0);
}

TEST_F(FileBackendTest, ReadOnlyDoesNotCreateAMissingFile) {
  FileBackendOptions o;
  o.path = path("absent.img");
  o.create_size = 1 << 20;
  o.read_only = true;
  EXPECT_THROW(FileBackend b(o), std::system_error);
  EXPECT_FALSE(std::filesystem::exists(o.path));
}

// ------------------------------------------------------------------ MemoryBackend

TEST(MemoryBackend, ReadWriteFlushAndCounters) {
  MemoryBackend m(8192, WriteAckPolicy::writeback);
  EXPECT_EQ(m.size_bytes(), 8192u);
  EXPECT_EQ(m.describe(), "memory");
  EXPECT_TRUE(m.write_cache_enabled());
  Bytes data(512, 0x42);
  Result w1, w2, f;
  m.write(data.data(), data.size(), 1024, false, &w1);
  m.write(data.data(), data.size(), 2048, true, &w2);
  EXPECT_EQ(w1.value, 512);
  EXPECT_EQ(w2.value, 512);
  EXPECT_EQ(m.fua_write_count(), 1u);
  EXPECT_EQ(m.flush_count(), 0u);
  m.flush(&f);
  EXPECT_EQ(f.value, 0);
  EXPECT_EQ(m.flush_count(), 1u);
  EXPECT_EQ(0, std::memcmp(m.data() + 1024, data.data(), 512));
  Bytes back(512);
  Result r;
  m.read(back.data(), back.size(), 2048, &r);
  EXPECT_EQ(r.value, 512);
  EXPECT_EQ(back, data);
}

TEST(MemoryBackend, DefaultPolicyIsWritethrough) {
  MemoryBackend m(4096);
  EXPECT_EQ(m.ack_policy(), WriteAckPolicy::writethrough);
  EXPECT_FALSE(m.write_cache_enabled());
}

TEST(MemoryBackend, OutOfRangeFailsWithEinval) {
  MemoryBackend m(4096);
  Bytes buf(1024);
  Result r, w;
  m.read(buf.data(), buf.size(), 3584, &r);
  m.write(buf.data(), buf.size(), 8192, false, &w);
  EXPECT_EQ(r.value, -EINVAL);
  EXPECT_EQ(w.value, -EINVAL);
}

TEST(MemoryBackend, InjectedErrorHitsOnlyOverlappingRanges) {
  MemoryBackend m(16384);
  m.inject_error(4096, 512, EIO);
  Bytes buf(512);
  Result before, hit, after, whit;
  m.read(buf.data(), 512, 3584, &before);
  m.read(buf.data(), 1024, 4000, &hit);
  m.read(buf.data(), 512, 4608, &after);
  m.write(buf.data(), 512, 4096, false, &whit);
  EXPECT_EQ(before.value, 512);
  EXPECT_EQ(hit.value, -EIO);
  EXPECT_EQ(after.value, 512);
  EXPECT_EQ(whit.value, -EIO);
}

}  // namespace
}  // namespace ringtgt::storage
