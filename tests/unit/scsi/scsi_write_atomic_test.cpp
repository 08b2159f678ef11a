// WRITE ATOMIC(16): field checks, the Block Limits maxima, and the range
// lock that keeps concurrent READs and WRITEs from seeing half of it.
#include <gtest/gtest.h>

#include <algorithm>
#include <memory>

#include "ringtgt/scsi/cdb.hpp"
#include "ringtgt/scsi/logical_unit.hpp"
#include "scsi_test_support.hpp"

namespace ringtgt::scsi {
namespace {

using namespace ringtgt::scsi::testing;

constexpr std::uint64_t kBlocks = 4096;

struct Lu {
  explicit Lu(bool read_only = false) {
    auto backend = std::make_unique<QueuedBackend>(512 * kBlocks);
    mem = backend.get();
    mem->queued = false;
    LunParams params;
    params.read_only = read_only;
    lu = std::make_unique<LogicalUnit>(0, params, std::move(backend));
  }
  Task& run(Bytes cdb, const Bytes* out = nullptr) {
    return run_task([this](Task& x) { lu->execute(x); }, task, owner, buffer, cdb, 4096, out);
  }
  QueuedBackend* mem;
  std::unique_ptr<LogicalUnit> lu;
  CountingOwner owner;
  Task task;
  Bytes buffer;
};

Bytes write_atomic(std::uint64_t lba, std::uint16_t blocks, std::uint8_t flags = 0,
                   std::uint16_t boundary = 0) {
  Bytes c(16, 0);
  c[0] = 0x9c;
  c[1] = flags;
  put_be64(&c[2], lba);
  put_be16(&c[10], boundary);
  put_be16(&c[12], blocks);
  return c;
}

TEST(WriteAtomic, WritesTheBlocks) {
  Lu l;
  Bytes data(3 * 512, 0x5a);
  EXPECT_EQ(l.run(write_atomic(10, 3), &data).status, Status::good);
  EXPECT_EQ(l.mem->mem.data()[10 * 512], 0x5a);
  EXPECT_EQ(l.mem->mem.data()[13 * 512 - 1], 0x5a);
  EXPECT_EQ(l.mem->mem.data()[13 * 512], 0x00);
  // FUA and DPO are accepted; the last blocks of the LU too.
  EXPECT_EQ(l.run(write_atomic(kBlocks - 3, 3, 0x18), &data).status, Status::good);
  EXPECT_EQ(l.mem->mem.data()[kBlocks * 512 - 1], 0x5a);
}

TEST(WriteAtomic, FieldAndRangeChecks) {
  Lu l;
  Bytes data(512, 0x11);
  Bytes none;
  for (std::uint8_t wrprotect = 1; wrprotect < 8; ++wrprotect) {
    expect_sense(l.run(write_atomic(0, 1, wrprotect << 5), &data), 0x05, 0x24, 0x00);
  }
  // Beyond MAXIMUM ATOMIC TRANSFER LENGTH (2048 blocks of 512 bytes), and an
  // ATOMIC BOUNDARY beyond MAXIMUM ATOMIC BOUNDARY SIZE.
  expect_sense(l.run(write_atomic(0, 2049), &data), 0x05, 0x24, 0x00);
  expect_sense(l.run(write_atomic(0, 1, 0, 2049), &data), 0x05, 0x24, 0x00);
  EXPECT_EQ(l.run(write_atomic(0, 1, 0, 2048), &data).status, Status::good);
  // Past the end, at 2^63, wrapping around.
  expect_sense(l.run(write_atomic(kBlocks, 1), &data), 0x05, 0x21, 0x00);
  expect_sense(l.run(write_atomic(kBlocks - 1, 2), &data), 0x05, 0x21, 0x00);
  expect_sense(l.run(write_atomic(1ull << 63, 1), &data), 0x05, 0x21, 0x00);
  expect_sense(l.run(write_atomic(~0ull, 1), &data), 0x05, 0x21, 0x00);
  // Zero blocks: the LBA is still checked.
  EXPECT_EQ(l.run(write_atomic(0, 0), &none).status, Status::good);
  EXPECT_EQ(l.run(write_atomic(kBlocks, 0), &none).status, Status::good);
  expect_sense(l.run(write_atomic(kBlocks + 1, 0), &none), 0x05, 0x21, 0x00);
  // Less Data-Out than the CDB's length cannot be written whole.
  expect_sense(l.run(write_atomic(0, 2), &data), 0x05, 0x24, 0x00);
  EXPECT_EQ(l.mem->mem.data()[512], 0x00);

  Lu ro(true);
  expect_sense(ro.run(write_atomic(0, 1), &data), 0x07, 0x27, 0x00);
}

// While the atomic write is with the backend, overlapping READs, WRITEs and
// another WRITE ATOMIC get BUSY; others pass; once it is done all pass.
TEST(WriteAtomic, ConcurrentCommandsNeverSeeHalfOfIt) {
  Lu l;
  Bytes data(8 * 512, 0x77);
  const Bytes cdb = write_atomic(100, 8);
  Task atomic;
  std::copy(cdb.begin(), cdb.end(), atomic.cdb.begin());
  atomic.owner = &l.owner;
  atomic.direction = DataDirection::to_device;
  atomic.buffer = data.data();
  atomic.buffer_len = static_cast<std::uint32_t>(data.size());
  l.mem->queued = true;
  l.lu->execute(atomic);
  ASSERT_EQ(l.mem->queue.size(), 1u);
  EXPECT_EQ(l.owner.completions, 0);  // still in flight
  l.mem->queued = false;

  Bytes one(512, 0x33);
  CountingOwner other;
  Task t;
  Bytes buf;
  auto run = [&](const Bytes& cdb, const Bytes* out) -> Task& {
    return run_task([&](Task& x) { l.lu->execute(x); }, t, other, buf, cdb, 512, out);
  };
  EXPECT_EQ(run(cdb10(0x28, 0, 107, 1), nullptr).status, Status::busy);  // READ(10)
  EXPECT_EQ(run(cdb16(0x88, 0, 99, 2), nullptr).status, Status::busy);   // READ(16)
  EXPECT_EQ(run(cdb10(0x2a, 0, 104, 1), &one).status, Status::busy);     // WRITE(10)
  EXPECT_EQ(run(write_atomic(107, 1), &one).status, Status::busy);
  EXPECT_EQ(run(cdb10(0x28, 0, 108, 1), nullptr).status, Status::good);  // next to it
  EXPECT_EQ(run(cdb10(0x2a, 0, 99, 1), &one).status, Status::good);

  // The backend completes it: the range is free again.
  ASSERT_TRUE(l.mem->step());
  EXPECT_EQ(l.owner.completions, 1);
  EXPECT_EQ(atomic.status, Status::good);
  EXPECT_EQ(l.mem->mem.data()[107 * 512], 0x77);
  EXPECT_EQ(run(cdb10(0x28, 0, 107, 1), nullptr).status, Status::good);
  EXPECT_EQ(run(cdb10(0x2a, 0, 104, 1), &one).status, Status::good);
}

TEST(WriteAtomic, AFailedWriteReleasesTheRange) {
  Lu l;
  Bytes data(2 * 512, 0x77);
  l.mem->mem.inject_error(20 * 512, 512, 5);
  Task& t = l.run(write_atomic(20, 2), &data);
  expect_sense(t, 0x03, 0x0c, 0x00);
  Bytes one(512, 0x33);  // block 21, of the failed write but without the error
  EXPECT_EQ(l.run(cdb10(0x2a, 0, 21, 1), &one).status, Status::good);
}

}  // namespace
}  // namespace ringtgt::scsi
