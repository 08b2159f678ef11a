// VERIFY, WRITE AND VERIFY, PRE-FETCH, PREVENT ALLOW MEDIUM REMOVAL, REPORT
// SUPPORTED OPERATION CODES, and READs whose Data-In ends inside a block.
#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <vector>

#include "ringtgt/scsi/cdb.hpp"
#include "ringtgt/scsi/logical_unit.hpp"
#include "ringtgt/storage/memory_backend.hpp"
#include "scsi_test_support.hpp"

namespace ringtgt::scsi {
namespace {

using namespace ringtgt::scsi::testing;

class Lu {
 public:
  explicit Lu(bool read_only = false, std::uint64_t blocks = 1024, bool reservations = false) {
    auto backend = std::make_unique<storage::MemoryBackend>(512 * blocks);
    mem = backend.get();
    LunParams params;
    params.read_only = read_only;
    params.spc2_reservations = reservations;
    lu = std::make_unique<LogicalUnit>(0, params, std::move(backend));
  }

  Task& run(Bytes cdb, std::uint32_t room = 4096, const Bytes* out = nullptr) {
    return run_task([this](Task& t) { lu->execute(t); }, task, owner, buffer, cdb, room, out);
  }

  // A command from nexus n: Data-Out from *out, or up to 512 bytes of Data-In.
  Task& run_as(const Nexus& n, const Bytes& cdb, const Bytes* out = nullptr) {
    task = Task{};
    owner.completions = 0;
    std::copy(cdb.begin(), cdb.end(), task.cdb.begin());
    task.owner = &owner;
    task.nexus = &n;
    buffer.assign(512, 0);
    if (out != nullptr) std::copy(out->begin(), out->end(), buffer.begin());
    task.buffer = buffer.data();
    task.buffer_len = out != nullptr ? static_cast<std::uint32_t>(out->size()) : 512;
    task.direction = out != nullptr ? DataDirection::to_device : DataDirection::from_device;
    lu->execute(task);
    EXPECT_EQ(owner.completions, 1);
    return task;
  }

  storage::MemoryBackend* mem;
  std::unique_ptr<LogicalUnit> lu;
  CountingOwner owner;
  Task task;
  Bytes buffer;
};

TEST(PartialRead, DataInEndingInsideABlockIsFilled) {
  Lu l;
  for (int i = 0; i < 1024; ++i) l.mem->data()[i] = static_cast<std::uint8_t>(i * 7);
  Task& t = l.run(cdb10(0x28, 0, 0, 1), 200);
  EXPECT_EQ(t.status, Status::good);
  EXPECT_EQ(t.transfer_length, 512u);
  ASSERT_EQ(t.data_in_length, 200u);
  EXPECT_EQ(std::memcmp(l.buffer.data(), l.mem->data(), 200), 0);

  Task& u = l.run(cdb10(0x28, 0, 0, 2), 700);
  EXPECT_EQ(u.status, Status::good);
  ASSERT_EQ(u.data_in_length, 700u);
  EXPECT_EQ(std::memcmp(l.buffer.data(), l.mem->data(), 700), 0);
}

TEST(PartialRead, MediumErrorIsReported) {
  Lu l;
  l.mem->inject_error(0, 512, 5);
  Task& t = l.run(cdb10(0x28, 0, 0, 1), 100);
  expect_sense(t, 0x03, 0x11, 0x00);
}

TEST(Verify, RangeAndFieldChecks) {
  Lu l;
  for (std::uint8_t op : {0x2f, 0xaf, 0x8f}) {
    auto cdb = [op](std::uint8_t flags, std::uint64_t lba, std::uint32_t n) {
      if (op == 0x2f) return cdb10(op, flags, static_cast<std::uint32_t>(lba), n);
      if (op == 0xaf) return cdb12(op, flags, static_cast<std::uint32_t>(lba), n);
      return cdb16(op, flags, lba, n);
    };
    EXPECT_EQ(l.run(cdb(0, 0, 8)).status, Status::good);
    EXPECT_EQ(l.run(cdb(0x10, 0, 8)).status, Status::good);  // DPO
    EXPECT_EQ(l.run(cdb(0, 1024, 0)).status, Status::good);  // zero blocks at the end
    expect_sense(l.run(cdb(0, 1023, 2)), 0x05, 0x21, 0x00);
    expect_sense(l.run(cdb(0x20, 0, 1)), 0x05, 0x24, 0x00);  // VRPROTECT
    expect_sense(l.run(cdb(0x04, 0, 1)), 0x05, 0x24, 0x00);  // BYTCHK 10b reserved
  }
}

TEST(Verify, ByteCheckComparesDataOut) {
  Lu l;
  for (int i = 0; i < 2048; ++i) l.mem->data()[512 + i] = static_cast<std::uint8_t>(i);
  Bytes same(l.mem->data() + 512, l.mem->data() + 512 + 1024);
  Task& t = l.run(cdb10(0x2f, 0x02, 1, 2), 0, &same);
  EXPECT_EQ(t.status, Status::good);
  EXPECT_EQ(t.transfer_length, 1024u);

  Bytes diff = same;
  diff[700] ^= 1;
  Task& m = l.run(cdb16(0x8f, 0x02, 1, 2), 0, &diff);
  expect_sense(m, 0x0e, 0x1d, 0x00);
  EXPECT_EQ(m.sense[0], 0xf0);  // INFORMATION valid
  EXPECT_EQ(get_be32(&m.sense[3]), 700u);

  // BYTCHK 11b: one Data-Out block against every block of the range.
  std::memset(l.mem->data() + 10 * 512, 0x42, 3 * 512);
  Bytes one(512, 0x42);
  Task& r = l.run(cdb10(0x2f, 0x06, 10, 3), 0, &one);
  EXPECT_EQ(r.status, Status::good);
  EXPECT_EQ(r.transfer_length, 512u);
  l.mem->data()[12 * 512 + 5] = 0;
  Task& rm = l.run(cdb10(0x2f, 0x06, 10, 3), 0, &one);
  expect_sense(rm, 0x0e, 0x1d, 0x00);
  EXPECT_EQ(get_be32(&rm.sense[3]), 5u);
}

TEST(WriteAndVerify, WritesDurably) {
  Lu l;
  Bytes data(1024, 0x33);
  for (Bytes cdb : {cdb10(0x2e, 0x02, 4, 2), cdb12(0xae, 0x02, 4, 2), cdb16(0x8e, 0x02, 4, 2)}) {
    std::memset(l.mem->data() + 4 * 512, 0, 1024);
    const unsigned fua_before = l.mem->fua_write_count();
    Task& t = l.run(cdb, 0, &data);
    EXPECT_EQ(t.status, Status::good);
    EXPECT_EQ(std::memcmp(l.mem->data() + 4 * 512, data.data(), 1024), 0);
    EXPECT_EQ(l.mem->fua_write_count(), fua_before + 1);
  }
  expect_sense(l.run(cdb10(0x2e, 0, 1024, 1), 0, &data), 0x05, 0x21, 0x00);
  expect_sense(l.run(cdb10(0x2e, 0x20, 0, 1), 0, &data), 0x05, 0x24, 0x00);
  Lu ro(true);
  expect_sense(ro.run(cdb10(0x2e, 0, 0, 1), 0, &data), 0x07, 0x27, 0x00);
}

TEST(WriteSame, FillsTheRangeWithOneBlock) {
  Lu l;
  Bytes block(512);
  for (int i = 0; i < 512; ++i) block[i] = static_cast<std::uint8_t>(i ^ 0x5a);
  Task& t = l.run(cdb10(0x41, 0, 20, 5), 0, &block);
  EXPECT_EQ(t.status, Status::good);
  EXPECT_EQ(t.transfer_length, 512u);
  for (int b = 20; b < 25; ++b) {
    EXPECT_EQ(std::memcmp(l.mem->data() + b * 512, block.data(), 512), 0) << b;
  }
  EXPECT_EQ(l.mem->data()[25 * 512], 0);

  // WRITE SAME(16), and with NDOB.
  Task& u = l.run(cdb16(0x93, 0, 30, 2), 0, &block);
  EXPECT_EQ(u.status, Status::good);
  EXPECT_EQ(std::memcmp(l.mem->data() + 31 * 512, block.data(), 512), 0);
  Task& z = l.run(cdb16(0x93, 0x01, 30, 2), 0);
  EXPECT_EQ(z.status, Status::good);
  EXPECT_EQ(z.transfer_length, 0u);
  EXPECT_EQ(l.mem->data()[31 * 512 + 1], 0);
}

TEST(WriteSame, Checks) {
  Lu l;
  Bytes block(512, 1);
  expect_sense(l.run(cdb10(0x41, 0, 1025, 0), 0, &block), 0x05, 0x21, 0x00);  // past the end
  expect_sense(l.run(cdb16(0x93, 0, 1020, 8), 0, &block), 0x05, 0x21, 0x00);
  expect_sense(l.run(cdb10(0x41, 0x20, 0, 1), 0, &block), 0x05, 0x24, 0x00);  // WRPROTECT
  expect_sense(l.run(cdb10(0x41, 0x10, 0, 1), 0, &block), 0x05, 0x24, 0x00);  // ANCHOR
  expect_sense(l.run(cdb16(0x93, 0x08, 0, 1), 0, &block), 0x05, 0x24, 0x00);  // UNMAP: LBPME 0
  Bytes half(256, 1);
  expect_sense(l.run(cdb10(0x41, 0, 0, 1), 0, &half), 0x05, 0x24, 0x00);
  EXPECT_EQ(l.run(cdb10(0x41, 0, 1024, 0), 0, &block).status, Status::good);  // nothing left
  Lu ro(true);
  expect_sense(ro.run(cdb10(0x41, 0, 0, 1), 0, &block), 0x07, 0x27, 0x00);
}

TEST(WriteSame, ZeroBlocksMeansToTheEndInChunks) {
  Lu big(false, 40000);  // more than two 8 MiB chunks of 512-byte blocks
  Bytes block(512, 0x77);
  Task& t = big.run(cdb16(0x93, 0, 100, 0), 0, &block);
  EXPECT_EQ(t.status, Status::good);
  EXPECT_EQ(big.mem->data()[99 * 512], 0);
  for (std::uint64_t b : {100ull, 16483ull, 16484ull, 32868ull, 39999ull}) {
    EXPECT_EQ(std::memcmp(big.mem->data() + b * 512, block.data(), 512), 0) << b;
  }
  // A medium error in the second chunk names its first block.
  big.mem->inject_error(20000 * 512, 512, 5);
  Task& e = big.run(cdb16(0x93, 0, 0, 30000), 0, &block);
  expect_sense(e, 0x03, 0x0c, 0x00);
  EXPECT_EQ(get_be32(&e.sense[3]), 16384u);
}

TEST(CompareAndWrite, MatchWritesMismatchReports) {
  Lu l;
  std::memset(l.mem->data() + 8 * 512, 0x11, 2 * 512);
  Bytes out(4 * 512, 0x11);
  std::memset(out.data() + 1024, 0x22, 1024);
  Bytes c = cdb16(0x89, 0, 8, 0);
  c[13] = 2;
  Task& t = l.run(c, 0, &out);
  ASSERT_EQ(t.status, Status::good);
  EXPECT_EQ(t.transfer_length, 2048u);
  EXPECT_EQ(l.mem->data()[8 * 512], 0x22);
  EXPECT_EQ(l.mem->data()[10 * 512 - 1], 0x22);

  // Now the medium holds 0x22: comparing with 0x11 miscompares at byte 0.
  std::memset(out.data() + 700, 0x22, 1);
  Task& m = l.run(c, 0, &out);
  expect_sense(m, 0x0e, 0x1d, 0x00);
  EXPECT_EQ(get_be32(&m.sense[3]), 0u);
  EXPECT_EQ(l.mem->data()[8 * 512], 0x22);  // unchanged

  // Checks: range, length limit, protection, short and long Data-Out, zero blocks.
  Bytes oob = cdb16(0x89, 0, 1023, 0);
  oob[13] = 2;
  expect_sense(l.run(oob, 0, &out), 0x05, 0x21, 0x00);
  Bytes big = cdb16(0x89, 0, 0, 0);
  big[13] = 65;
  expect_sense(l.run(big, 0, &out), 0x05, 0x24, 0x00);
  Bytes prot = c;
  prot[1] = 0x20;
  expect_sense(l.run(prot, 0, &out), 0x05, 0x24, 0x00);
  Bytes short_out(3 * 512, 0);
  expect_sense(l.run(c, 0, &short_out), 0x05, 0x24, 0x00);
  Bytes one = c;
  one[13] = 1;  // 4 blocks of Data-Out for 1 block: too much
  expect_sense(l.run(one, 0, &out), 0x05, 0x24, 0x00);
  EXPECT_EQ(l.mem->data()[8 * 512], 0x22);  // unchanged
  Bytes zero = cdb16(0x89, 0, 0, 0);
  Bytes none;  // no Data-Out: nothing to do
  EXPECT_EQ(l.run(zero, 0, &none).status, Status::good);
  expect_sense(l.run(zero, 0, &out), 0x05, 0x24, 0x00);  // 256 blocks wrapped to 0
  Lu ro(true);
  expect_sense(ro.run(c, 0, &out), 0x07, 0x27, 0x00);
}

TEST(OrWrite, OrsTheDataOutIntoTheMedium) {
  Lu l;
  std::memset(l.mem->data() + 4 * 512, 0x0f, 2 * 512);
  Bytes out(2 * 512, 0x30);
  out[5] = 0xc0;
  Task& t = l.run(cdb16(0x8b, 0x08, 4, 2), 0, &out);
  ASSERT_EQ(t.status, Status::good);
  EXPECT_EQ(t.transfer_length, 1024u);
  EXPECT_EQ(l.mem->data()[4 * 512], 0x3f);
  EXPECT_EQ(l.mem->data()[4 * 512 + 5], 0xcf);
  EXPECT_EQ(l.mem->data()[6 * 512 - 1], 0x3f);
  EXPECT_EQ(l.mem->data()[6 * 512], 0x00);  // the block after: untouched

  // ORPROTECT without protection information, beyond the end, read-only,
  // zero blocks.
  expect_sense(l.run(cdb16(0x8b, 0x20, 4, 2), 0, &out), 0x05, 0x24, 0x00);
  expect_sense(l.run(cdb16(0x8b, 0, 1023, 2), 0, &out), 0x05, 0x21, 0x00);
  Bytes none;
  EXPECT_EQ(l.run(cdb16(0x8b, 0, 0, 0), 0, &none).status, Status::good);
  Lu ro(true);
  expect_sense(ro.run(cdb16(0x8b, 0, 4, 2), 0, &out), 0x07, 0x27, 0x00);
}

TEST(OrWrite, PlainWritesWaitOutAClaimedRange) {
  Lu l;
  ASSERT_TRUE(l.lu->caw_lock(8, 2));  // as a COMPARE AND WRITE in flight holds it
  Bytes out(512, 0x44);
  EXPECT_EQ(l.run(cdb10(0x2a, 0, 9, 1), 0, &out).status, Status::busy);
  EXPECT_EQ(l.run(cdb16(0x8b, 0, 9, 1), 0, &out).status, Status::busy);
  EXPECT_EQ(l.mem->data()[9 * 512], 0x00);
  EXPECT_EQ(l.run(cdb10(0x2a, 0, 10, 1), 0, &out).status, Status::good);  // next to it: fine
  l.lu->caw_unlock(8);
  EXPECT_EQ(l.run(cdb10(0x2a, 0, 9, 1), 0, &out).status, Status::good);
  EXPECT_EQ(l.mem->data()[9 * 512], 0x44);
}

TEST(GetLbaStatus, EverythingMapped) {
  Lu l;
  Bytes c = cdb16(0x9e, 0x12, 1000, 0);
  put_be32(&c[10], 24);
  Task& t = l.run(c);
  ASSERT_EQ(t.status, Status::good);
  ASSERT_EQ(t.data_in_length, 24u);
  EXPECT_EQ(get_be32(&l.buffer[0]), 20u);
  EXPECT_EQ(get_be64(&l.buffer[8]), 1000u);
  EXPECT_EQ(get_be32(&l.buffer[16]), 24u);  // blocks 1000..1023
  EXPECT_EQ(l.buffer[20] & 0x0f, 0);        // mapped
  put_be64(&c[2], 1024);
  expect_sense(l.run(c), 0x05, 0x21, 0x00);
}

TEST(ReadDefectData, EmptyLists) {
  Lu l;
  Task& t = l.run({0x37, 0, 0x18 | 0x05, 0, 0, 0, 0, 0, 0xff, 0});
  ASSERT_EQ(t.status, Status::good);
  ASSERT_EQ(t.data_in_length, 4u);
  EXPECT_EQ(l.buffer[1], 0x1d);
  EXPECT_EQ(get_be16(&l.buffer[2]), 0);
  Task& u = l.run({0xb7, 0x08 | 0x04, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0});
  ASSERT_EQ(u.status, Status::good);
  ASSERT_EQ(u.data_in_length, 8u);
  EXPECT_EQ(l.buffer[1], 0x0c);
  EXPECT_EQ(get_be32(&l.buffer[4]), 0u);
}

Bytes rsoc(std::uint8_t options, std::uint8_t opcode = 0, std::uint16_t sa = 0,
           std::uint32_t alloc = 4096);

TEST(Reserve, OffUnlessEnabled) {
  Lu l;
  Task& t = l.run({0x16, 0, 0, 0, 0, 0});
  expect_sense(t, 0x05, 0x20, 0x00);
  expect_sense(l.run({0x17, 0, 0, 0, 0, 0}), 0x05, 0x20, 0x00);
  Task& r = l.run(rsoc(1, 0x16));
  ASSERT_EQ(r.status, Status::good);
  EXPECT_EQ(l.buffer[1] & 0x07, 0x01);  // not supported
  Lu on(false, 1024, true);
  Task& s = on.run(rsoc(1, 0x16));
  ASSERT_EQ(s.status, Status::good);
  EXPECT_EQ(on.buffer[1] & 0x07, 0x03);
}

TEST(Reserve, TwoNexuses) {
  Lu l(false, 1024, true);
  Nexus a{"iqn.a", "t", 1, {}}, b{"iqn.b", "t", 2, {}};
  auto as = [&](const Nexus& n, Bytes cdb) -> Task& {
    l.task = Task{};
    l.owner.completions = 0;
    std::copy(cdb.begin(), cdb.end(), l.task.cdb.begin());
    l.task.owner = &l.owner;
    l.buffer.assign(4096, 0);
    l.task.buffer = l.buffer.data();
    l.task.buffer_len = 4096;
    l.task.direction = DataDirection::from_device;
    l.task.nexus = &n;
    l.lu->execute(l.task);
    EXPECT_EQ(l.owner.completions, 1);
    return l.task;
  };
  const Bytes reserve6{0x16, 0, 0, 0, 0, 0}, release6{0x17, 0, 0, 0, 0, 0};
  const Bytes mode_sense{0x1a, 0, 0x3f, 0, 0xff, 0}, inquiry{0x12, 0, 0, 0, 0xff, 0};
  EXPECT_EQ(as(a, reserve6).status, Status::good);
  EXPECT_EQ(as(a, reserve6).status, Status::good);  // again: same holder
  EXPECT_EQ(as(b, reserve6).status, Status::reservation_conflict);
  EXPECT_EQ(as(b, release6).status, Status::good);  // no-op
  EXPECT_EQ(as(a, mode_sense).status, Status::good);
  Task& conflict = as(b, mode_sense);
  EXPECT_EQ(conflict.status, Status::reservation_conflict);
  EXPECT_EQ(conflict.sense_len, 0);
  EXPECT_EQ(as(b, inquiry).status, Status::good);
  EXPECT_EQ(as(b, cdb10(0x28, 0, 0, 1)).status, Status::reservation_conflict);
  EXPECT_EQ(as(a, release6).status, Status::good);
  EXPECT_EQ(as(b, Bytes{0x56, 0, 0, 0, 0, 0, 0, 0, 0, 0}).status, Status::good);  // RESERVE(10)
  EXPECT_EQ(as(a, mode_sense).status, Status::reservation_conflict);
  // Same initiator name, another session (ISID 1): a different I_T nexus.
  Nexus b2{"iqn.b", "t", 1ull << 16 | 3, {}};
  EXPECT_EQ(as(b2, mode_sense).status, Status::reservation_conflict);
  l.lu->nexus_lost(b);
  EXPECT_EQ(as(a, mode_sense).status, Status::good);
  EXPECT_EQ(as(a, reserve6).status, Status::good);
  l.lu->reset();
  // The reset released the reservation; each nexus first hears of the reset
  // (b was lost before it: only b2 and a are told).
  Task& ua = as(b2, mode_sense);
  EXPECT_EQ(ua.status, Status::check_condition);
  EXPECT_EQ(ua.sense[2] & 0x0f, 0x06);
  EXPECT_EQ(ua.sense[12], 0x29);
  EXPECT_EQ(ua.sense[13], 0x03);
  EXPECT_EQ(as(b2, mode_sense).status, Status::good);
  EXPECT_EQ(as(a, mode_sense).status, Status::check_condition);  // a's unit attention
  // Third-party / extent reservations are not supported.
  EXPECT_EQ(as(a, Bytes{0x16, 0x01, 0, 0, 0, 0}).status, Status::check_condition);
  EXPECT_EQ(as(a, Bytes{0x56, 0x10, 0, 0, 0, 0, 0, 0, 0, 0}).status, Status::check_condition);
}

TEST(UnitAttention, CapacityAndModeChangesAreReportedToTheOtherNexuses) {
  Lu l;
  Nexus a{"iqn.a", "t", 1, {}}, b{"iqn.b", "t", 2, {}};
  auto as = [&](const Nexus& n, const Bytes& cdb, const Bytes* out = nullptr) -> Task& {
    return l.run_as(n, cdb, out);
  };
  auto expect_ua = [](const Task& t, std::uint8_t asc, std::uint8_t ascq) {
    ASSERT_EQ(t.status, Status::check_condition);
    EXPECT_EQ(t.sense[2] & 0x0f, 0x06);
    EXPECT_EQ(t.sense[12], asc);
    EXPECT_EQ(t.sense[13], ascq);
  };
  const Bytes tur{0, 0, 0, 0, 0, 0}, capacity{0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0};
  EXPECT_EQ(as(a, tur).status, Status::good);
  EXPECT_EQ(as(b, tur).status, Status::good);

  // A resize (ringtgtctl lun resize): CAPACITY DATA HAS CHANGED to everyone, once.
  l.lu->set_block_count(2048);
  for (const Nexus* n : {&a, &b}) {
    expect_ua(as(*n, tur), 0x2a, 0x09);
    Task& rc = as(*n, capacity);
    ASSERT_EQ(rc.status, Status::good);
    EXPECT_EQ(get_be32(&l.buffer[0]), 2047u);  // the new last LBA
  }
  l.lu->set_block_count(2048);  // no change: no unit attention
  EXPECT_EQ(as(a, tur).status, Status::good);

  // MODE SELECT(6) by a, setting D_SENSE in the control page: b hears MODE
  // PARAMETERS CHANGED, a (who made the change) does not.
  const Bytes sense6{0x1a, 0, 0x0a, 0, 0xff, 0};
  Task& ms = as(a, sense6);
  ASSERT_EQ(ms.status, Status::good);
  Bytes page(l.buffer.begin(), l.buffer.begin() + ms.data_in_length);
  page[0] = 0;                    // MODE DATA LENGTH: reserved in MODE SELECT
  page[4 + page[3] + 2] |= 0x04;  // D_SENSE
  const Bytes select6{0x15, 0x10, 0, 0, static_cast<std::uint8_t>(page.size()), 0};
  ASSERT_EQ(as(a, select6, &page).status, Status::good);
  EXPECT_EQ(as(a, tur).status, Status::good);
  Task& t = as(b, tur);
  ASSERT_EQ(t.status, Status::check_condition);
  // D_SENSE is on now: descriptor format (72h), sense key in byte 1, ASC/ASCQ in 2/3.
  ASSERT_EQ(t.sense[0] & 0x7f, 0x72);
  EXPECT_EQ(t.sense[1] & 0x0f, 0x06);
  EXPECT_EQ(t.sense[2], 0x2a);
  EXPECT_EQ(t.sense[3], 0x01);
}

TEST(UnitAttention, ResetIsReportedOnceToEveryNexusThatUsedTheUnit) {
  Lu l;
  Nexus a{"iqn.a", "t", 1, {}}, b{"iqn.b", "t", 2, {}}, late{"iqn.c", "t", 3, {}};
  auto as = [&](const Nexus& n, const Bytes& cdb) -> Task& { return l.run_as(n, cdb); };
  const Bytes tur{0, 0, 0, 0, 0, 0}, inquiry{0x12, 0, 0, 0, 0xff, 0};
  EXPECT_EQ(as(a, tur).status, Status::good);
  EXPECT_EQ(as(b, tur).status, Status::good);
  l.lu->reset();
  // INQUIRY does not consume the unit attention.
  EXPECT_EQ(as(a, inquiry).status, Status::good);
  for (const Nexus* n : {&a, &b}) {
    Task& t = as(*n, tur);
    ASSERT_EQ(t.status, Status::check_condition);
    EXPECT_EQ(t.sense[2] & 0x0f, 0x06);
    EXPECT_EQ(t.sense[12], 0x29);
    EXPECT_EQ(t.sense[13], 0x03);
    EXPECT_EQ(as(*n, tur).status, Status::good);  // reported once
  }
  // A nexus that first arrives after the reset has nothing to hear about.
  EXPECT_EQ(as(late, tur).status, Status::good);
}

TEST(Prefetch, RangeChecked) {
  Lu l;
  EXPECT_EQ(l.run(cdb10(0x34, 0x02, 0, 8)).status, Status::good);
  EXPECT_EQ(l.run(cdb16(0x90, 0, 1000, 24)).status, Status::good);
  expect_sense(l.run(cdb10(0x34, 0, 1024, 1)), 0x05, 0x21, 0x00);
  expect_sense(l.run(cdb16(0x90, 0, ~0ull, 1)), 0x05, 0x21, 0x00);
}

TEST(PreventAllow, AcceptedForANonRemovableUnit) {
  Lu l;
  EXPECT_EQ(l.run({0x1e, 0, 0, 0, 1, 0}).status, Status::good);
  EXPECT_EQ(l.run({0x1e, 0, 0, 0, 0, 0}).status, Status::good);
  expect_sense(l.run({0x1e, 0, 0, 0, 2, 0}), 0x05, 0x24, 0x00);
}

Bytes rsoc(std::uint8_t options, std::uint8_t opcode, std::uint16_t sa, std::uint32_t alloc) {
  Bytes c(12, 0);
  c[0] = 0xa3;
  c[1] = 0x0c;
  c[2] = options;
  c[3] = opcode;
  put_be16(&c[4], sa);
  put_be32(&c[6], alloc);
  return c;
}

TEST(ReportSupportedOpcodes, AllCommands) {
  Lu l;
  Task& t = l.run(rsoc(0));
  ASSERT_EQ(t.status, Status::good);
  const std::uint32_t len = get_be32(&l.buffer[0]);
  ASSERT_EQ(len % 8, 0u);
  EXPECT_EQ(t.data_in_length, 4 + len);
  bool saw_rc16 = false, saw_read10 = false;
  for (std::uint32_t off = 4; off < 4 + len; off += 8) {
    const std::uint8_t* d = &l.buffer[off];
    if (d[0] == 0x9e && get_be16(&d[2]) == 0x10) {
      saw_rc16 = true;
      EXPECT_EQ(d[5], 0x01);  // SERVACTV
      EXPECT_EQ(get_be16(&d[6]), 16);
    }
    if (d[0] == 0x28) {
      saw_read10 = true;
      EXPECT_EQ(d[5], 0x00);
      EXPECT_EQ(get_be16(&d[6]), 10);
    }
  }
  EXPECT_TRUE(saw_rc16);
  EXPECT_TRUE(saw_read10);

  // RCTD: 20-byte descriptors with CTDP and a timeouts descriptor.
  Task& r = l.run(rsoc(0x80));
  ASSERT_EQ(r.status, Status::good);
  EXPECT_EQ(get_be32(&l.buffer[0]) % 20, 0u);
  EXPECT_EQ(l.buffer[4 + 5] & 0x02, 0x02);
  EXPECT_EQ(get_be16(&l.buffer[4 + 8]), 0x0a);

  Task& s = l.run(rsoc(0, 0, 0, 10));  // truncated
  EXPECT_EQ(s.status, Status::good);
  EXPECT_EQ(s.data_in_length, 10u);
}

TEST(ReportSupportedOpcodes, OneCommand) {
  Lu l;
  Task& t = l.run(rsoc(1, 0x28));
  ASSERT_EQ(t.status, Status::good);
  EXPECT_EQ(l.buffer[1] & 0x07, 0x03);
  EXPECT_EQ(get_be16(&l.buffer[2]), 10);
  EXPECT_EQ(l.buffer[4], 0x28);
  EXPECT_EQ(t.data_in_length, 14u);

  // Unsupported opcode: SUPPORT 001b.
  Task& u = l.run(rsoc(1, 0xc7));
  ASSERT_EQ(u.status, Status::good);
  EXPECT_EQ(l.buffer[1] & 0x07, 0x01);

  // Options 1 on a command with service actions, 2 on one without: invalid.
  expect_sense(l.run(rsoc(1, 0x9e)), 0x05, 0x24, 0x00);
  expect_sense(l.run(rsoc(2, 0x28)), 0x05, 0x24, 0x00);
  Task& f = l.run(rsoc(2, 0x00));
  expect_sense(f, 0x05, 0x24, 0x00);
  // The field pointer names the REPORTING OPTIONS field (byte 2, bit 2), not
  // the service action: the command itself is supported.
  EXPECT_EQ(f.sense[15], 0x80 | 0x40 | 0x08 | 2);
  EXPECT_EQ(get_be16(&f.sense[16]), 2);

  // An unknown service action of MAINTENANCE IN / SERVICE ACTION IN points
  // at the SERVICE ACTION field (byte 1, bit 4).
  Bytes mi = rsoc(0);
  mi[1] = 0x0b;
  Task& sa = l.run(mi);
  expect_sense(sa, 0x05, 0x24, 0x00);
  EXPECT_EQ(sa.sense[15], 0x80 | 0x40 | 0x08 | 4);
  EXPECT_EQ(get_be16(&sa.sense[16]), 1);
  Task& sai = l.run(cdb16(0x9e, 0x1f, 0, 0));
  expect_sense(sai, 0x05, 0x24, 0x00);
  EXPECT_EQ(get_be16(&sai.sense[16]), 1);

  Task& rc16 = l.run(rsoc(2, 0x9e, 0x10));
  ASSERT_EQ(rc16.status, Status::good);
  EXPECT_EQ(l.buffer[1] & 0x07, 0x03);
  EXPECT_EQ(l.buffer[4], 0x9e);

  Task& rctd = l.run(rsoc(0x82, 0xa3, 0x0c));
  ASSERT_EQ(rctd.status, Status::good);
  EXPECT_EQ(l.buffer[1], 0x83);  // CTDP, supported
  EXPECT_EQ(rctd.data_in_length, 4u + 12u + 12u);
  expect_sense(l.run(rsoc(4)), 0x05, 0x24, 0x00);
}

}  // namespace
}  // namespace ringtgt::scsi

namespace ringtgt::scsi {
namespace {

using namespace ringtgt::scsi::testing;

Bytes report_tmfs_cdb(bool repd, std::uint32_t alloc) {
  Bytes c(12, 0);
  c[0] = 0xa3;
  c[1] = 0x0d;
  c[2] = repd ? 0x80 : 0x00;
  put_be32(&c[6], alloc);
  return c;
}

TEST(ReportSupportedTmfs, WhatTheTransportCompletes) {
  auto backend = std::make_unique<storage::MemoryBackend>(512 * 64);
  LogicalUnit lu(0, LunParams{}, std::move(backend));
  CountingOwner owner;
  Task task;
  Bytes buffer;
  auto run = [&](const Bytes& cdb, std::uint32_t room) -> Task& {
    return run_task([&](Task& t) { lu.execute(t); }, task, owner, buffer, cdb, room, nullptr);
  };
  Task& t = run(report_tmfs_cdb(false, 64), 64);
  ASSERT_EQ(t.status, Status::good);
  ASSERT_EQ(t.data_in_length, 4u);
  EXPECT_EQ(buffer[0], 0xda);  // ABORT TASK, ABORT TASK SET, CLEAR TASK SET, LU RESET, TARGET RESET
  EXPECT_EQ(buffer[1], 0x00);  // no QUERY TASK (SET), no I_T NEXUS RESET
  EXPECT_EQ(buffer[3], 0x00);

  Task& e = run(report_tmfs_cdb(true, 64), 64);  // REPD: the extended form
  ASSERT_EQ(e.status, Status::good);
  ASSERT_EQ(e.data_in_length, 16u);
  EXPECT_EQ(buffer[0], 0xda);
  EXPECT_EQ(buffer[3], 0x0c);

  Task& s = run(report_tmfs_cdb(true, 2), 64);  // the allocation length truncates
  ASSERT_EQ(s.status, Status::good);
  EXPECT_EQ(s.data_in_length, 2u);
}

}  // namespace
}  // namespace ringtgt::scsi
