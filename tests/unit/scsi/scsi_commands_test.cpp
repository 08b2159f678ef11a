// Each SPC/SBC command against the memory backend, byte for byte.
#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "ringtgt/scsi/cdb.hpp"
#include "ringtgt/scsi/logical_unit.hpp"
#include "ringtgt/scsi/lun_addressing.hpp"
#include "ringtgt/storage/memory_backend.hpp"
#include "scsi_test_support.hpp"

namespace ringtgt::scsi {
namespace {

using storage::MemoryBackend;
using storage::WriteAckPolicy;
using namespace ringtgt::scsi::testing;

// One logical unit on a MemoryBackend, and a task to run commands on it.
class Harness {
 public:
  explicit Harness(std::uint32_t block_size = 512, std::uint64_t blocks = 2048,
                   WriteAckPolicy policy = WriteAckPolicy::writethrough, bool read_only = false,
                   std::uint64_t lun = 0, std::uint8_t physical_block_exponent = 0,
                   std::uint32_t max_transfer_bytes = LunParams::kDefaultMaxTransferBytes) {
    auto backend = std::make_unique<MemoryBackend>(block_size * blocks, policy);
    mem = backend.get();
    LunParams params;
    params.block_size = block_size;
    params.max_transfer_bytes = max_transfer_bytes;
    params.physical_block_exponent = physical_block_exponent;
    params.read_only = read_only;
    params.serial = "SN0001";
    params.naa = 0x1234567890abcdefull;
    lu = std::make_shared<LogicalUnit>(lun, params, std::move(backend));
    map.add(lu);
  }

  // Runs cdb with a Data-In buffer of buffer_len bytes (or the Data-Out
  // bytes in data_out) and checks it completed exactly once, synchronously.
  Task& run(Bytes cdb, std::uint32_t buffer_len = 4096, std::uint64_t lun = 0,
            const Bytes* data_out = nullptr) {
    return run_task([this](Task& t) { map.execute(t); }, task, owner, buffer, cdb, buffer_len,
                    data_out, lun);
  }

  Bytes data_in() const { return Bytes(buffer.begin(), buffer.begin() + task.data_in_length); }

  MemoryBackend* mem;
  std::shared_ptr<LogicalUnit> lu;
  LunMap map;
  CountingOwner owner;
  Task task;
  Bytes buffer;
};

void expect_good(const Task& t) {
  EXPECT_EQ(t.status, Status::good);
  EXPECT_EQ(t.sense_len, 0);
}

void expect_check(const Task& t, SenseCode code) {
  ASSERT_EQ(t.status, Status::check_condition);
  ASSERT_EQ(t.sense_len, 18);
  EXPECT_EQ(t.sense[0] & 0x7f, 0x70);
  EXPECT_EQ(t.sense[2] & 0x0f, code.key);
  EXPECT_EQ(t.sense[7], 10);
  EXPECT_EQ(t.sense[12], code.asc);
  EXPECT_EQ(t.sense[13], code.ascq);
  EXPECT_EQ(t.data_in_length, 0u);
}

Bytes pattern(std::size_t n, std::uint8_t seed) {
  Bytes b(n);
  for (std::size_t i = 0; i < n; ++i) b[i] = static_cast<std::uint8_t>(seed + i * 7 + i / 512);
  return b;
}

Bytes inquiry_cdb(bool evpd, std::uint8_t page, std::uint16_t alloc) {
  Bytes c{0x12, static_cast<std::uint8_t>(evpd ? 1 : 0), page, 0, 0, 0};
  put_be16(&c[3], alloc);
  return c;
}

// --- Task::fail ---

TEST(TaskFail, FixedFormatWithInformation) {
  Task t;
  t.fail(sense::unrecovered_read_error, true, 0x01020304);
  EXPECT_EQ(t.status, Status::check_condition);
  ASSERT_EQ(t.sense_len, 18);
  const Bytes expected{0xf0, 0, 0x03, 1, 2, 3, 4, 10, 0, 0, 0, 0, 0x11, 0, 0, 0, 0, 0};
  EXPECT_EQ(Bytes(t.sense.begin(), t.sense.begin() + 18), expected);
}

TEST(TaskFail, InformationTooLargeIsNotValid) {
  Task t;
  t.fail(sense::write_error, true, 0x100000000ull);
  EXPECT_EQ(t.sense[0], 0x70);
  EXPECT_EQ(get_be32(&t.sense[3]), 0u);
}

// --- TEST UNIT READY, START STOP UNIT, unknown opcode ---

TEST(Commands, TestUnitReadyAndStartStop) {
  Harness h;
  expect_good(h.run({0x00, 0, 0, 0, 0, 0}));
  expect_good(h.run({0x1b, 0, 0, 0, 0x01, 0}));
  expect_good(h.run({0x1b, 0, 0, 0, 0x02, 0}));
}

TEST(Commands, UnknownOpcode) {
  Harness h;
  expect_check(h.run({0xc5, 0, 0, 0, 0, 0}), sense::invalid_opcode);
  expect_check(h.run({0x04, 0, 0, 0, 0, 0}), sense::invalid_opcode);  // FORMAT UNIT
}

// --- REQUEST SENSE ---

TEST(RequestSense, FixedNoSense) {
  Harness h;
  Task& t = h.run({0x03, 0, 0, 0, 252, 0});
  expect_good(t);
  EXPECT_EQ(t.transfer_length, 252u);
  const Bytes expected{0x70, 0, 0, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
  EXPECT_EQ(h.data_in(), expected);
}

TEST(RequestSense, DescriptorFormat) {
  Harness h;
  Task& t = h.run({0x03, 0x01, 0, 0, 252, 0});
  expect_good(t);
  EXPECT_EQ(h.data_in(), (Bytes{0x72, 0, 0, 0, 0, 0, 0, 0}));
}

TEST(RequestSense, Truncated) {
  Harness h;
  Task& t = h.run({0x03, 0, 0, 0, 4, 0});
  EXPECT_EQ(t.data_in_length, 4u);
  EXPECT_EQ(h.data_in(), (Bytes{0x70, 0, 0, 0}));
}

// --- INQUIRY ---

TEST(Inquiry, StandardData) {
  Harness h;
  Task& t = h.run(inquiry_cdb(false, 0, 255));
  expect_good(t);
  EXPECT_EQ(t.transfer_length, 255u);
  Bytes expected(96, 0);
  expected[2] = 0x06;
  expected[3] = 0x12;
  expected[4] = 91;
  expected[5] = 0x08;  // 3PC: EXTENDED COPY
  expected[7] = 0x02;
  std::memcpy(&expected[8], "RINGTGT ", 8);
  std::memcpy(&expected[16], "ringtgt disk    ", 16);
  std::memcpy(&expected[32], "0001", 4);
  const std::uint8_t versions[] = {0x00, 0xa0, 0x09, 0x60, 0x04, 0x60, 0x04, 0xc0};
  std::memcpy(&expected[58], versions, sizeof versions);
  EXPECT_EQ(h.data_in(), expected);
}

TEST(Inquiry, AllocationLengthTruncates) {
  Harness h;
  Task& t = h.run(inquiry_cdb(false, 0, 36));
  expect_good(t);
  EXPECT_EQ(t.data_in_length, 36u);
  EXPECT_EQ(t.transfer_length, 36u);
  EXPECT_EQ(h.data_in()[4], 91);  // additional length still the full one
  Task& z = h.run(inquiry_cdb(false, 0, 0));
  expect_good(z);
  EXPECT_EQ(z.data_in_length, 0u);
  // A transport buffer smaller than the allocation length also bounds it.
  Task& small = h.run(inquiry_cdb(false, 0, 255), 10);
  expect_good(small);
  EXPECT_EQ(small.data_in_length, 10u);
}

TEST(Inquiry, InvalidFields) {
  Harness h;
  expect_check(h.run(inquiry_cdb(false, 0x80, 255)), sense::invalid_field_in_cdb);
  Bytes cmddt = inquiry_cdb(false, 0, 255);
  cmddt[1] = 0x02;
  expect_check(h.run(cmddt), sense::invalid_field_in_cdb);
  expect_check(h.run(inquiry_cdb(true, 0x81, 255)), sense::invalid_field_in_cdb);
  expect_check(h.run(inquiry_cdb(true, 0xc0, 255)), sense::invalid_field_in_cdb);
}

TEST(Inquiry, SupportedPages) {
  Harness h;
  expect_good(h.run(inquiry_cdb(true, 0x00, 255)));
  EXPECT_EQ(h.data_in(), (Bytes{0, 0, 0, 7, 0x00, 0x80, 0x83, 0x8f, 0xb0, 0xb1, 0xb2}));
}

TEST(Inquiry, UnitSerialNumber) {
  Harness h;
  expect_good(h.run(inquiry_cdb(true, 0x80, 255)));
  EXPECT_EQ(h.data_in(), (Bytes{0, 0x80, 0, 6, 'S', 'N', '0', '0', '0', '1'}));
}

TEST(Inquiry, DeviceIdentification) {
  Harness h;
  expect_good(h.run(inquiry_cdb(true, 0x83, 255)));
  const Bytes expected{0, 0x83, 0, 12 + 18,
                       // NAA 6: binary, LU, type 3, top nibble forced to 6
                       0x01, 0x03, 0, 8, 0x62, 0x34, 0x56, 0x78, 0x90, 0xab, 0xcd, 0xef,
                       // T10 vendor ID: ASCII, LU, type 1
                       0x02, 0x01, 0, 14, 'R', 'I', 'N', 'G', 'T', 'G', 'T', ' ', 'S', 'N', '0',
                       '0', '0', '1'};
  EXPECT_EQ(h.data_in(), expected);
}

TEST(Inquiry, BlockLimits) {
  for (std::uint32_t bs : {512u, 4096u}) {
    Harness h(bs);
    expect_good(h.run(inquiry_cdb(true, 0xb0, 255)));
    Bytes expected(64, 0);
    expected[1] = 0xb0;
    expected[3] = 0x3c;
    put_be16(&expected[6], bs == 512 ? 8 : 1);
    put_be32(&expected[8], (32u << 20) / bs);
    put_be32(&expected[12], (1u << 20) / bs);
    expected[5] = 64;  // MAXIMUM COMPARE AND WRITE LENGTH
    // MAXIMUM ATOMIC TRANSFER LENGTH 1 MiB, alignment and granularity 0; the
    // same with an atomic boundary, and MAXIMUM ATOMIC BOUNDARY SIZE.
    put_be32(&expected[44], (1u << 20) / bs);
    put_be32(&expected[56], (1u << 20) / bs);
    put_be32(&expected[60], (1u << 20) / bs);
    EXPECT_EQ(h.data_in(), expected) << "block size " << bs;
  }
}

TEST(Inquiry, BlockDeviceCharacteristics) {
  Harness h;
  expect_good(h.run(inquiry_cdb(true, 0xb1, 255)));
  Bytes expected(64, 0);
  expected[1] = 0xb1;
  expected[3] = 0x3c;
  expected[5] = 0x01;
  EXPECT_EQ(h.data_in(), expected);
}

TEST(Inquiry, LogicalBlockProvisioning) {
  Harness h;
  expect_good(h.run(inquiry_cdb(true, 0xb2, 255)));
  EXPECT_EQ(h.data_in(), (Bytes{0, 0xb2, 0, 4, 0, 0, 0, 0}));
}

// --- READ CAPACITY ---

TEST(ReadCapacity, TenAndSixteen) {
  Harness h(4096, 1000);
  Task& t = h.run({0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0});
  expect_good(t);
  EXPECT_EQ(t.transfer_length, 8u);
  EXPECT_EQ(h.data_in(), (Bytes{0, 0, 0x03, 0xe7, 0, 0, 0x10, 0}));

  Bytes rc16(16, 0);
  rc16[0] = 0x9e;
  rc16[1] = 0x10;
  rc16[13] = 32;
  Task& t16 = h.run(rc16);
  expect_good(t16);
  Bytes expected(32, 0);
  put_be64(&expected[0], 999);
  put_be32(&expected[8], 4096);
  EXPECT_EQ(h.data_in(), expected);

  rc16[13] = 12;
  EXPECT_EQ(h.run(rc16).data_in_length, 12u);
  rc16[1] = 0x11;  // another SERVICE ACTION IN(16) action
  expect_check(h.run(rc16), sense::invalid_field_in_cdb);
}

// physical_block_size = 4096 on 512-byte blocks: LBPPBE 3 (eight logical
// blocks per physical block), and Block Limits' OPTIMAL TRANSFER LENGTH
// GRANULARITY follows; 64 KiB physical blocks raise it further.
TEST(ReadCapacity, SixteenReportsPhysicalBlockExponent) {
  for (std::uint8_t exp : {0, 3, 7}) {
    Harness h(512, 2048, WriteAckPolicy::writethrough, false, 0, exp);
    Bytes rc16(16, 0);
    rc16[0] = 0x9e;
    rc16[1] = 0x10;
    rc16[13] = 32;
    expect_good(h.run(rc16));
    EXPECT_EQ(h.data_in()[13], exp);
    expect_good(h.run(inquiry_cdb(true, 0xb0, 255)));
    EXPECT_EQ(get_be16(&h.data_in()[6]), exp <= 3 ? 8u : (1u << exp)) << int(exp);
  }
}

// A LU of more than 2^32 blocks, without allocating it: a backend that only
// reports its size.
class HugeBackend final : public storage::Backend {
 public:
  std::uint64_t size_bytes() const override { return (1ull << 33) * 512; }
  WriteAckPolicy ack_policy() const override { return WriteAckPolicy::writethrough; }
  void read(void*, std::size_t, std::uint64_t, storage::IoOp* op) override {
    op->on_complete(-EIO);
  }
  void write(const void*, std::size_t, std::uint64_t, bool, storage::IoOp* op) override {
    op->on_complete(-EIO);
  }
  void flush(storage::IoOp* op) override { op->on_complete(0); }
  std::string describe() const override { return "huge"; }
};

TEST(ReadCapacity, TenSaturatesAbove32Bits) {
  LogicalUnit lu(0, LunParams{}, std::make_unique<HugeBackend>());
  CountingOwner owner;
  std::uint8_t buf[512] = {};
  Task t;
  t.owner = &owner;
  t.buffer = buf;
  t.buffer_len = sizeof buf;
  t.cdb[0] = 0x25;
  lu.execute(t);
  EXPECT_EQ(owner.completions, 1);
  EXPECT_EQ(get_be32(buf), 0xffffffffu);
  t.cdb = {0x9e, 0x10};
  t.cdb[13] = 32;
  lu.execute(t);
  EXPECT_EQ(get_be64(buf), (1ull << 33) - 1);
  // A read beyond the first 2^32 blocks reaches the backend (whose failure
  // then reports an LBA the fixed format cannot hold).
  t.cdb = {0x88};
  put_be64(&t.cdb[2], 1ull << 32);
  put_be32(&t.cdb[10], 1);
  lu.execute(t);
  EXPECT_EQ(owner.completions, 3);
  EXPECT_EQ(t.sense[2], 0x03);
  EXPECT_EQ(t.sense[0], 0x70);  // VALID clear
}

// --- READ / WRITE ---

TEST(ReadWrite, RoundTripAllSizes) {
  for (std::uint32_t bs : {512u, 4096u}) {
    Harness h(bs, 256);
    const Bytes data = pattern(3 * bs, static_cast<std::uint8_t>(bs));
    // WRITE(10) at LBA 5, READ back with every READ size.
    Task& w = h.run(cdb10(0x2a, 0, 5, 3), 0, 0, &data);
    expect_good(w);
    EXPECT_EQ(w.transfer_length, 3 * bs);
    EXPECT_EQ(std::memcmp(h.mem->data() + 5 * bs, data.data(), data.size()), 0);

    Task& r10 = h.run(cdb10(0x28, 0, 5, 3), 3 * bs);
    expect_good(r10);
    EXPECT_EQ(r10.data_in_length, 3 * bs);
    EXPECT_EQ(h.data_in(), data);

    expect_good(h.run(cdb12(0xa8, 0, 5, 3), 3 * bs));
    EXPECT_EQ(h.data_in(), data);
    expect_good(h.run(cdb16(0x88, 0, 5, 3), 3 * bs));
    EXPECT_EQ(h.data_in(), data);
    expect_good(h.run({0x08, 0, 0, 5, 3, 0}, 3 * bs));
    EXPECT_EQ(h.data_in(), data);

    // WRITE(6), (12), (16) to other places.
    const Bytes one = pattern(bs, 0x42);
    expect_good(h.run({0x0a, 0, 0, 20, 1, 0}, 0, 0, &one));
    expect_good(h.run(cdb12(0xaa, 0, 21, 1), 0, 0, &one));
    expect_good(h.run(cdb16(0x8a, 0, 22, 1), 0, 0, &one));
    for (int lba : {20, 21, 22}) {
      EXPECT_EQ(std::memcmp(h.mem->data() + lba * bs, one.data(), bs), 0) << lba;
    }
  }
}

TEST(ReadWrite, SixByteZeroMeans256Blocks) {
  Harness h(512, 1024);
  Task& t = h.run({0x08, 0, 0, 0, 0, 0}, 256 * 512);
  expect_good(t);
  EXPECT_EQ(t.transfer_length, 256u * 512);
  EXPECT_EQ(t.data_in_length, 256u * 512);
  // READ(6) has a 21-bit LBA: the top bits of byte 1 are not part of it.
  Task& hi = h.run({0x08, 0xe0, 0, 1, 1, 0}, 512);
  expect_good(hi);
}

TEST(ReadWrite, ShortBufferReadFillsItWritesMoveWholeBlocks) {
  Harness h;
  std::memset(h.mem->data(), 0x5a, 4 * 512);
  Task& t = h.run(cdb10(0x28, 0, 0, 4), 1000);  // room for one and a bit blocks
  expect_good(t);
  EXPECT_EQ(t.transfer_length, 2048u);
  EXPECT_EQ(t.data_in_length, 1000u);  // iSCSI: as much Data-In as the initiator expects

  const Bytes partial = pattern(700, 1);
  Task& w = h.run(cdb10(0x2a, 0, 10, 4), 0, 0, &partial);
  expect_good(w);
  EXPECT_EQ(w.transfer_length, 2048u);
  EXPECT_EQ(std::memcmp(h.mem->data() + 10 * 512, partial.data(), 512), 0);
  EXPECT_EQ(h.mem->data()[11 * 512], 0);  // the partial second block is not written
}

TEST(ReadWrite, ZeroLengthIsGoodWithoutIo) {
  Harness h;
  h.mem->inject_error(0, 512 * 2048, EIO);
  Task& t = h.run(cdb10(0x28, 0, 0, 0));
  expect_good(t);
  EXPECT_EQ(t.transfer_length, 0u);
  EXPECT_EQ(t.data_in_length, 0u);
  expect_good(h.run(cdb10(0x2a, 0, 2048, 0)));  // at the end of the medium: fine
  expect_check(h.run(cdb10(0x2a, 0, 2049, 0)), sense::lba_out_of_range);
}

TEST(ReadWrite, FuaReachesBackend) {
  Harness h(512, 64, WriteAckPolicy::writeback);
  const Bytes data = pattern(512, 3);
  expect_good(h.run(cdb10(0x2a, 0, 1, 1), 0, 0, &data));
  EXPECT_EQ(h.mem->fua_write_count(), 0u);
  expect_good(h.run(cdb10(0x2a, 0x08, 1, 1), 0, 0, &data));
  expect_good(h.run(cdb12(0xaa, 0x08, 1, 1), 0, 0, &data));
  expect_good(h.run(cdb16(0x8a, 0x08 | 0x10, 1, 1), 0, 0, &data));  // with DPO
  EXPECT_EQ(h.mem->fua_write_count(), 3u);
  expect_good(h.run(cdb10(0x28, 0x18, 1, 1), 512));  // READ with FUA and DPO
}

TEST(ReadWrite, LbaOutOfRange) {
  Harness h(512, 100);
  expect_check(h.run(cdb10(0x28, 0, 100, 1)), sense::lba_out_of_range);
  expect_check(h.run(cdb10(0x28, 0, 99, 2)), sense::lba_out_of_range);
  expect_good(h.run(cdb10(0x28, 0, 99, 1)));
  expect_check(h.run(cdb16(0x88, 0, ~0ull, 1)), sense::lba_out_of_range);
  expect_check(h.run(cdb16(0x88, 0, ~0ull, 2)), sense::lba_out_of_range);
  expect_check(h.run(cdb16(0x8a, 0, ~0ull, 1)), sense::lba_out_of_range);
  expect_check(h.run(cdb16(0x88, 0, ~0ull - 1, 0)), sense::lba_out_of_range);
  expect_check(h.run(cdb12(0xa8, 0, 0xffffffff, 1)), sense::lba_out_of_range);
  expect_check(h.run({0x08, 0x1f, 0xff, 0xff, 1, 0}), sense::lba_out_of_range);
}

TEST(ReadWrite, TransferLengthAboveBlockLimits) {
  Harness h(512, 65536 + 8);
  expect_check(h.run(cdb16(0x88, 0, 0, 65537)), sense::invalid_field_in_cdb);
  expect_check(h.run(cdb12(0xaa, 0, 0, 0xffffffff)), sense::invalid_field_in_cdb);
  EXPECT_EQ(h.task.transfer_length, 0xffffffffu);  // saturated, not wrapped
  expect_good(h.run(cdb16(0x88, 0, 0, 65536), 32u << 20));
}

// A LUN's max_transfer: what Block Limits reports (the optimal length never
// above it) and what READ and WRITE take.
TEST(ReadWrite, TheLunsOwnMaximumIsReportedAndEnforced) {
  Harness h(512, 2048, WriteAckPolicy::writethrough, false, 0, 0, 64u << 10);
  expect_good(h.run(inquiry_cdb(true, 0xb0, 255)));
  const Bytes vpd = h.data_in();
  ASSERT_GE(vpd.size(), 16u);
  EXPECT_EQ(get_be32(&vpd[8]), 128u);   // MAXIMUM TRANSFER LENGTH
  EXPECT_EQ(get_be32(&vpd[12]), 128u);  // OPTIMAL TRANSFER LENGTH
  expect_good(h.run(cdb10(0x28, 0, 0, 128), 64u << 10));
  expect_check(h.run(cdb10(0x28, 0, 0, 129), 128u << 10), sense::invalid_field_in_cdb);
  const Bytes data = pattern(129 * 512, 3);
  expect_check(h.run(cdb10(0x2a, 0, 0, 129), 0, 0, &data), sense::invalid_field_in_cdb);
}

TEST(ReadWrite, ProtectionFieldsRejected) {
  Harness h;
  expect_check(h.run(cdb10(0x28, 0x20, 0, 1)), sense::invalid_field_in_cdb);
  expect_check(h.run(cdb16(0x8a, 0xe0, 0, 1)), sense::invalid_field_in_cdb);
}

TEST(ReadWrite, ReadOnlyIsWriteProtected) {
  Harness h(512, 64, WriteAckPolicy::writethrough, true);
  const Bytes data = pattern(512, 9);
  expect_check(h.run(cdb10(0x2a, 0, 0, 1), 0, 0, &data), sense::write_protected);
  expect_check(h.run({0x0a, 0, 0, 0, 1, 0}, 0, 0, &data), sense::write_protected);
  EXPECT_EQ(h.mem->data()[0], 0);
  expect_good(h.run(cdb10(0x28, 0, 0, 1), 512));
}

TEST(ReadWrite, BackendErrorIsMediumErrorWithLba) {
  Harness h(512, 64);
  h.mem->inject_error(10 * 512, 512, EIO);
  Task& r = h.run(cdb10(0x28, 0, 8, 4), 4 * 512);
  expect_check(r, sense::unrecovered_read_error);
  EXPECT_EQ(r.sense[0], 0xf0);
  EXPECT_EQ(get_be32(&r.sense[3]), 8u);

  const Bytes data = pattern(512, 1);
  Task& w = h.run(cdb16(0x8a, 0, 10, 1), 0, 0, &data);
  expect_check(w, sense::write_error);
  EXPECT_EQ(get_be32(&w.sense[3]), 10u);

  expect_good(h.run(cdb10(0x28, 0, 11, 1), 512));
}

TEST(ReadWrite, OutOfSpaceIsSpaceAllocationFailedAndMisalignmentNotAMediumError) {
  Harness h(512, 64);
  const Bytes data = pattern(512, 2);
  h.mem->inject_error(20 * 512, 512, ENOSPC);  // a thin LUN whose store is full
  Task& w = h.run(cdb10(0x2a, 0, 20, 1), 0, 0, &data);
  expect_check(w, sense::space_allocation_failed_write_protect);
  EXPECT_EQ(w.sense[2] & 0x0f, 0x07);  // DATA PROTECT
  EXPECT_EQ(w.sense[12], 0x27);
  EXPECT_EQ(w.sense[13], 0x07);
  h.mem->inject_error(30 * 512, 512, EINVAL);  // the backend logged it as our bug
  expect_check(h.run(cdb10(0x2a, 0, 30, 1), 0, 0, &data), sense::internal_target_failure);
  expect_check(h.run(cdb10(0x28, 0, 30, 1), 512), sense::internal_target_failure);
  expect_good(h.run(cdb10(0x2a, 0, 31, 1), 0, 0, &data));
}

// --- SYNCHRONIZE CACHE ---

TEST(SynchronizeCache, FlushesAndRangeChecks) {
  Harness h(512, 100, WriteAckPolicy::writeback);
  expect_good(h.run(cdb10(0x35, 0, 0, 0)));
  expect_good(h.run(cdb16(0x91, 0, 50, 50)));
  expect_good(h.run(cdb10(0x35, 0x02, 10, 1)));  // IMMED
  EXPECT_EQ(h.mem->flush_count(), 3u);
  expect_check(h.run(cdb10(0x35, 0, 101, 0)), sense::lba_out_of_range);
  expect_check(h.run(cdb16(0x91, 0, 50, 51)), sense::lba_out_of_range);
  expect_check(h.run(cdb16(0x91, 0, ~0ull, 1)), sense::lba_out_of_range);
  EXPECT_EQ(h.mem->flush_count(), 3u);
}

// --- MODE SENSE ---

Bytes mode_sense6(std::uint8_t flags, std::uint8_t page, std::uint8_t alloc,
                  std::uint8_t subpage = 0) {
  return {0x1a, flags, page, subpage, alloc, 0};
}

Bytes mode_sense10(std::uint8_t flags, std::uint8_t page, std::uint16_t alloc,
                   std::uint8_t subpage = 0) {
  Bytes c{0x5a, flags, page, subpage, 0, 0, 0, 0, 0, 0};
  put_be16(&c[7], alloc);
  return c;
}

const Bytes kCachingWce{0x08, 0x12, 0x04, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
const Bytes kControl{0x0a, 0x0a, 0, 0x10, 0, 0, 0, 0, 0, 0, 0, 0};
const Bytes kInformationalExceptions{0x1c, 0x0a, 0x08, 0, 0, 0, 0, 0, 0, 0, 0, 0};

Bytes concat(std::initializer_list<Bytes> parts) {
  Bytes out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

TEST(ModeSense, CachingWceFollowsPolicy) {
  Harness wb(512, 100, WriteAckPolicy::writeback);
  Task& t = wb.run(mode_sense6(0x08, 0x08, 255));
  expect_good(t);
  EXPECT_EQ(wb.data_in(), concat({{23, 0, 0x10, 0}, kCachingWce}));

  Harness wt(512, 100, WriteAckPolicy::writethrough);
  expect_good(wt.run(mode_sense6(0x08, 0x08, 255)));
  Bytes caching = kCachingWce;
  caching[2] = 0;
  EXPECT_EQ(wt.data_in(), concat({{23, 0, 0x10, 0}, caching}));
}

TEST(ModeSense, SixWithBlockDescriptorAllPages) {
  Harness h(4096, 1000, WriteAckPolicy::writeback, true);
  Task& t = h.run(mode_sense6(0, 0x3f, 255));
  expect_good(t);
  const Bytes expected = concat({{3 + 8 + 20 + 12 + 12, 0, 0x90, 8},
                                 {0, 0, 0x03, 0xe8, 0, 0, 0x10, 0},
                                 kCachingWce,
                                 kControl,
                                 kInformationalExceptions});
  EXPECT_EQ(h.data_in(), expected);
  EXPECT_EQ(t.transfer_length, 255u);
  // All subpages too.
  expect_good(h.run(mode_sense6(0, 0x3f, 255, 0xff)));
  EXPECT_EQ(h.data_in(), expected);
  // Truncation keeps the full mode data length.
  Task& small = h.run(mode_sense6(0, 0x3f, 6));
  EXPECT_EQ(small.data_in_length, 6u);
  EXPECT_EQ(h.data_in()[0], expected[0]);
}

TEST(ModeSense, TenShortAndLongDescriptors) {
  Harness h(512, 100, WriteAckPolicy::writeback);
  expect_good(h.run(mode_sense10(0, 0x0a, 512)));
  EXPECT_EQ(
      h.data_in(),
      concat({{0, 6 + 8 + 12, 0, 0x10, 0, 0, 0, 8}, {0, 0, 0, 100, 0, 0, 0x02, 0}, kControl}));
  expect_good(h.run(mode_sense10(0x10, 0x1c, 512)));
  EXPECT_EQ(h.data_in(), concat({{0, 6 + 16 + 12, 0, 0x10, 0x01, 0, 0, 16},
                                 {0, 0, 0, 0, 0, 0, 0, 100, 0, 0, 0, 0, 0, 0, 0x02, 0},
                                 kInformationalExceptions}));
  expect_good(h.run(mode_sense10(0x18, 0x08, 512)));  // DBD wins over LLBAA
  EXPECT_EQ(h.data_in(), concat({{0, 6 + 20, 0, 0x10, 0, 0, 0, 0}, kCachingWce}));
}

TEST(ModeSense, PageControl) {
  Harness h(512, 100, WriteAckPolicy::writeback);
  // Changeable: nothing is.
  expect_good(h.run(mode_sense6(0x08, 0x40 | 0x08, 255)));
  Bytes zero_caching(20, 0);
  zero_caching[0] = 0x08;
  zero_caching[1] = 0x12;
  EXPECT_EQ(h.data_in(), concat({{23, 0, 0x10, 0}, zero_caching}));
  // Default and saved report the current values.
  for (std::uint8_t pc : {0x80, 0xc0}) {
    expect_good(h.run(mode_sense6(0x08, pc | 0x08, 255)));
    EXPECT_EQ(h.data_in(), concat({{23, 0, 0x10, 0}, kCachingWce}));
  }
}

TEST(ModeSense, UnknownPageOrSubpage) {
  Harness h;
  expect_check(h.run(mode_sense6(0, 0x19, 255)), sense::invalid_field_in_cdb);
  expect_check(h.run(mode_sense10(0, 0x01, 255)), sense::invalid_field_in_cdb);
  expect_check(h.run(mode_sense6(0, 0x08, 255, 0x01)), sense::invalid_field_in_cdb);
}

// --- REPORT LUNS and the LUN map ---

Bytes report_luns(std::uint8_t select, std::uint32_t alloc) {
  Bytes c(12, 0);
  c[0] = 0xa0;
  c[2] = select;
  put_be32(&c[6], alloc);
  return c;
}

std::shared_ptr<LogicalUnit> memory_lu(std::uint64_t lun) {
  return std::make_shared<LogicalUnit>(lun, LunParams{}, std::make_unique<MemoryBackend>(4096));
}

TEST(ReportLuns, ListsEveryLunFromAnyLun) {
  LunMap map;
  for (std::uint64_t lun : {5, 0, 300, 255}) map.add(memory_lu(lun));
  EXPECT_EQ(map.luns(), (std::vector<std::uint64_t>{0, 5, 255, 300}));
  EXPECT_NE(map.find(300), nullptr);
  EXPECT_EQ(map.find(1), nullptr);

  Harness h;
  h.map = std::move(map);
  const Bytes expected{0, 0,   0, 32, 0, 0, 0, 0,  // 4 entries
                       0, 0,   0, 0,  0, 0, 0, 0, 0,    5,    0, 0, 0, 0, 0, 0,
                       0, 255, 0, 0,  0, 0, 0, 0, 0x41, 0x2c, 0, 0, 0, 0, 0, 0};
  for (std::uint64_t lun : {0, 7, 300}) {
    for (std::uint8_t select : {0, 2}) {
      Task& t = h.run(report_luns(select, 4096), 4096, lun);
      expect_good(t);
      EXPECT_EQ(t.transfer_length, 4096u);
      EXPECT_EQ(h.data_in(), expected);
    }
  }
  expect_good(h.run(report_luns(1, 4096)));
  EXPECT_EQ(h.data_in(), (Bytes{0, 0, 0, 0, 0, 0, 0, 0}));
  expect_check(h.run(report_luns(3, 4096)), sense::invalid_field_in_cdb);
  expect_check(h.run(report_luns(0x10, 4096)), sense::invalid_field_in_cdb);
}

TEST(ReportLuns, Truncation) {
  Harness h;
  h.map.add(memory_lu(1));
  h.map.add(memory_lu(2));
  for (std::uint32_t alloc : {0u, 4u, 8u, 13u, 16u, 24u}) {
    Task& t = h.run(report_luns(0, alloc), 4096);
    expect_good(t);
    EXPECT_EQ(t.data_in_length, alloc);
    const Bytes full{0, 0, 0, 24, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                     0, 1, 0, 0,  0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0};
    EXPECT_EQ(h.data_in(), Bytes(full.begin(), full.begin() + alloc));
  }
  Task& t = h.run(report_luns(0, 4096), 20);  // the transport's buffer bounds it too
  EXPECT_EQ(t.data_in_length, 20u);
}

TEST(ReportLuns, SentToTheLogicalUnitItself) {
  Harness h(512, 64, WriteAckPolicy::writethrough, false, 9);
  CountingOwner owner;
  std::uint8_t buf[64];
  Task t;
  t.owner = &owner;
  t.buffer = buf;
  t.buffer_len = sizeof buf;
  const Bytes c = report_luns(0, 64);
  std::copy(c.begin(), c.end(), t.cdb.begin());
  h.lu->execute(t);
  EXPECT_EQ(owner.completions, 1);
  EXPECT_EQ(Bytes(buf, buf + t.data_in_length),
            (Bytes{0, 0, 0, 8, 0, 0, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0}));
}

TEST(LunMap, UnknownLun) {
  Harness h;
  Task& inq = h.run(inquiry_cdb(false, 0, 96), 4096, 3);
  expect_good(inq);
  ASSERT_EQ(inq.data_in_length, 96u);
  EXPECT_EQ(h.data_in()[0], 0x7f);
  EXPECT_EQ(h.data_in()[4], 91);
  expect_check(h.run(inquiry_cdb(true, 0x80, 96), 4096, 3), sense::lun_not_supported);

  Task& rs = h.run({0x03, 0, 0, 0, 18, 0}, 4096, 3);
  expect_good(rs);
  const Bytes expected{0x70, 0, 0x05, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x25, 0, 0, 0, 0, 0};
  EXPECT_EQ(h.data_in(), expected);

  expect_check(h.run({0x00, 0, 0, 0, 0, 0}, 4096, 3), sense::lun_not_supported);
  expect_check(h.run(cdb10(0x28, 0, 0, 1), 4096, 3), sense::lun_not_supported);
}

TEST(LunAddressing, EncodeDecode) {
  EXPECT_EQ(encode_lun(0), (std::array<std::uint8_t, 8>{0, 0, 0, 0, 0, 0, 0, 0}));
  EXPECT_EQ(encode_lun(255), (std::array<std::uint8_t, 8>{0, 255, 0, 0, 0, 0, 0, 0}));
  EXPECT_EQ(encode_lun(256), (std::array<std::uint8_t, 8>{0x41, 0, 0, 0, 0, 0, 0, 0}));
  EXPECT_EQ(encode_lun(16383), (std::array<std::uint8_t, 8>{0x7f, 0xff, 0, 0, 0, 0, 0, 0}));
  EXPECT_FALSE(encode_lun(16384));
  for (std::uint64_t lun : {0, 1, 255, 256, 1000, 16383}) {
    EXPECT_EQ(decode_lun(encode_lun(lun)->data()), lun);
  }
  const std::uint8_t flat_small[8] = {0x40, 3, 0, 0, 0, 0, 0, 0};
  EXPECT_EQ(decode_lun(flat_small), 3u);
  const std::uint8_t bus[8] = {0x01, 3, 0, 0, 0, 0, 0, 0};
  EXPECT_FALSE(decode_lun(bus));
  const std::uint8_t two_level[8] = {0, 3, 0, 1, 0, 0, 0, 0};
  EXPECT_FALSE(decode_lun(two_level));
  const std::uint8_t logical_unit_method[8] = {0x80, 3, 0, 0, 0, 0, 0, 0};
  EXPECT_FALSE(decode_lun(logical_unit_method));
}

// --- deferred completion ---

// Queues every operation and completes it only when the test says so, as a
// file backend on io_uring does.
class DeferredBackend final : public storage::Backend {
 public:
  explicit DeferredBackend(std::uint64_t size) : data_(size) {}
  std::uint64_t size_bytes() const override { return data_.size(); }
  WriteAckPolicy ack_policy() const override { return WriteAckPolicy::writeback; }
  void read(void* buf, std::size_t len, std::uint64_t off, storage::IoOp* op) override {
    pending_.push_back(
        {op, static_cast<int>(len), [=, this] { std::memcpy(buf, data_.data() + off, len); }});
  }
  void write(const void* buf, std::size_t len, std::uint64_t off, bool,
             storage::IoOp* op) override {
    pending_.push_back(
        {op, static_cast<int>(len), [=, this] { std::memcpy(data_.data() + off, buf, len); }});
  }
  void flush(storage::IoOp* op) override {
    pending_.push_back({op, 0, [] {}});
  }
  std::string describe() const override { return "deferred"; }

  std::size_t pending() const { return pending_.size(); }
  // Completes the oldest operation, with its natural result or the given one.
  void complete_next(std::optional<int> result = std::nullopt) {
    auto p = std::move(pending_.front());
    pending_.pop_front();
    p.effect();
    p.op->on_complete(result.value_or(p.result));
  }

 private:
  struct Pending {
    storage::IoOp* op;
    int result;
    std::function<void()> effect;
  };
  std::vector<std::uint8_t> data_;
  std::deque<Pending> pending_;
};

TEST(Deferred, CompletionArrivesLater) {
  auto backend = std::make_unique<DeferredBackend>(64 * 512);
  DeferredBackend* deferred = backend.get();
  LogicalUnit lu(0, LunParams{}, std::move(backend));
  CountingOwner owner;

  Bytes out = pattern(2 * 512, 77);
  Task w;
  w.owner = &owner;
  w.cdb = {0x2a, 0, 0, 0, 0, 4, 0, 0, 2, 0};
  w.buffer = out.data();
  w.buffer_len = static_cast<std::uint32_t>(out.size());
  w.direction = DataDirection::to_device;
  lu.execute(w);

  Bytes in(2 * 512);
  Task r;
  r.owner = &owner;
  r.cdb = {0x28, 0, 0, 0, 0, 4, 0, 0, 2, 0};
  r.buffer = in.data();
  r.buffer_len = static_cast<std::uint32_t>(in.size());
  r.direction = DataDirection::from_device;
  lu.execute(r);

  Task s;
  s.owner = &owner;
  s.cdb = {0x35};
  lu.execute(s);

  EXPECT_EQ(owner.completions, 0);
  ASSERT_EQ(deferred->pending(), 3u);
  deferred->complete_next();
  EXPECT_EQ(owner.completions, 1);
  EXPECT_EQ(w.status, Status::good);
  deferred->complete_next();
  EXPECT_EQ(owner.completions, 2);
  EXPECT_EQ(r.status, Status::good);
  EXPECT_EQ(r.data_in_length, 1024u);
  EXPECT_EQ(in, out);
  deferred->complete_next();
  EXPECT_EQ(owner.completions, 3);
  EXPECT_EQ(s.status, Status::good);

  // A deferred failure, and a short read.
  lu.execute(r);
  lu.execute(w);
  deferred->complete_next(-EIO);
  deferred->complete_next(512 + 1);  // short write
  EXPECT_EQ(owner.completions, 5);
  EXPECT_EQ(r.status, Status::check_condition);
  EXPECT_EQ(get_be32(&r.sense[3]), 4u);
  EXPECT_EQ(w.status, Status::check_condition);  // 513 bytes of 1024: short
  EXPECT_EQ(get_be32(&w.sense[3]), 5u);          // the first block not written
  EXPECT_EQ(w.sense[12], 0x0c);
}

TEST(Deferred, CompareAndWriteExcludesOverlappingOnes) {
  auto backend = std::make_unique<DeferredBackend>(64 * 512);
  DeferredBackend* deferred = backend.get();
  LogicalUnit lu(0, LunParams{}, std::move(backend));
  CountingOwner owner;

  Bytes out(2 * 2 * 512, 0);  // compare 2 zero blocks, write 2 blocks of 9
  std::memset(out.data() + 1024, 9, 1024);
  auto caw = [&](Task& t, std::uint64_t lba) {
    t.owner = &owner;
    t.cdb = {0x89};
    put_be64(&t.cdb[2], lba);
    t.cdb[13] = 2;
    t.buffer = out.data();
    t.buffer_len = static_cast<std::uint32_t>(out.size());
    t.direction = DataDirection::to_device;
    lu.execute(t);
  };
  Task a, b, c;
  caw(a, 4);
  ASSERT_EQ(deferred->pending(), 1u);  // the compare read
  caw(b, 5);                           // overlaps a: BUSY
  EXPECT_EQ(owner.completions, 1);
  EXPECT_EQ(b.status, Status::busy);
  caw(c, 10);  // disjoint: proceeds
  EXPECT_EQ(deferred->pending(), 2u);
  deferred->complete_next();  // a's read: equal, so a's write is issued
  deferred->complete_next();  // c's read
  deferred->complete_next();  // a's write
  EXPECT_EQ(a.status, Status::good);
  deferred->complete_next();  // c's write
  EXPECT_EQ(c.status, Status::good);
  EXPECT_EQ(owner.completions, 3);
  // a is done: the range is free again, and now it miscompares (blocks 4-5 hold 9s).
  caw(b, 4);
  deferred->complete_next();
  EXPECT_EQ(b.status, Status::check_condition);
  EXPECT_EQ(b.sense[2] & 0x0f, 0x0e);
  EXPECT_EQ(b.sense[12], 0x1d);
  EXPECT_EQ(get_be32(&b.sense[3]), 0u);
  caw(b, 5);
  EXPECT_EQ(deferred->pending(), 1u);  // not BUSY: nothing holds the range
  deferred->complete_next();
}

}  // namespace
}  // namespace ringtgt::scsi
