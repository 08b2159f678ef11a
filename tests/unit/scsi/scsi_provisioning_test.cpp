// Logical block provisioning: UNMAP, WRITE SAME with UNMAP/NDOB, GET LBA
// STATUS, and how a thin and a fully provisioned LU describe themselves
// (READ CAPACITY(16), VPD B0h/B2h, REPORT SUPPORTED OPERATION CODES).
#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "ringtgt/scsi/cdb.hpp"
#include "ringtgt/scsi/logical_unit.hpp"
#include "ringtgt/storage/memory_backend.hpp"
#include "scsi_test_support.hpp"

namespace ringtgt::scsi {
namespace {

using namespace ringtgt::scsi::testing;

constexpr std::uint64_t kBlocks = 17 * 256;  // fill() writes 256 at a time

class Lu {
 public:
  explicit Lu(bool thin, bool read_only = false, std::uint64_t blocks = kBlocks) {
    auto backend = std::make_unique<storage::MemoryBackend>(512 * blocks);
    mem = backend.get();
    LunParams params;
    params.thin_provisioned = thin;
    params.read_only = read_only;
    lu = std::make_unique<LogicalUnit>(0, params, std::move(backend));
  }

  Task& run(Bytes cdb, std::uint32_t room = 4096, const Bytes* out = nullptr) {
    return run_task([this](Task& t) { lu->execute(t); }, task, owner, buffer, cdb, room, out);
  }
  Task& unmap(const Bytes& params, std::uint8_t flags = 0) {
    Bytes c(10, 0);
    c[0] = 0x42;
    c[1] = flags;
    put_be16(&c[7], static_cast<std::uint16_t>(params.size()));
    return run(c, 0, &params);
  }
  void fill(std::uint8_t byte) {
    Bytes data(512 * 256, byte);
    for (std::uint64_t lba = 0; lba + 256 <= kBlocks; lba += 256) {
      ASSERT_EQ(run(cdb10(0x2a, 0, static_cast<std::uint32_t>(lba), 256), 0, &data).status,
                Status::good);
    }
  }
  bool block_is(std::uint64_t lba, std::uint8_t byte) const {
    for (std::size_t i = 0; i < 512; ++i) {
      if (mem->data()[lba * 512 + i] != byte) return false;
    }
    return true;
  }
  bool mapped(std::uint64_t lba) { return mem->extent_at(lba * 512, 512).mapped; }

  storage::MemoryBackend* mem;
  std::unique_ptr<LogicalUnit> lu;
  CountingOwner owner;
  Task task;
  Bytes buffer;
};

// An UNMAP parameter list: header and one descriptor per (lba, blocks).
Bytes unmap_list(std::initializer_list<std::pair<std::uint64_t, std::uint32_t>> ranges) {
  Bytes p(8 + 16 * ranges.size(), 0);
  put_be16(&p[0], static_cast<std::uint16_t>(p.size() - 2));
  put_be16(&p[2], static_cast<std::uint16_t>(p.size() - 8));
  std::size_t i = 0;
  for (auto [lba, n] : ranges) {
    put_be64(&p[8 + 16 * i], lba);
    put_be32(&p[8 + 16 * i + 8], n);
    ++i;
  }
  return p;
}

Bytes inquiry_vpd(std::uint8_t page) {
  Bytes c(6, 0);
  c[0] = 0x12;
  c[1] = 0x01;
  c[2] = page;
  put_be16(&c[3], 255);
  return c;
}

Bytes read_capacity16() {
  Bytes c(16, 0);
  c[0] = 0x9e;
  c[1] = 0x10;
  put_be32(&c[10], 32);
  return c;
}

Bytes get_lba_status(std::uint64_t lba, std::uint32_t alloc) {
  Bytes c(16, 0);
  c[0] = 0x9e;
  c[1] = 0x12;
  put_be64(&c[2], lba);
  put_be32(&c[10], alloc);
  return c;
}

// REPORT SUPPORTED OPERATION CODES for one opcode: its SUPPORT field.
std::uint8_t opcode_support(Lu& l, std::uint8_t opcode) {
  Bytes c(12, 0);
  c[0] = 0xa3;
  c[1] = 0x0c;
  c[2] = 0x01;
  c[3] = opcode;
  put_be32(&c[6], 64);
  Task& t = l.run(c, 64);
  EXPECT_EQ(t.status, Status::good);
  return l.buffer[1] & 0x07;
}

TEST(Provisioning, ThinNeedsABackendThatCanUnmap) {
  auto backend = std::make_unique<storage::MemoryBackend>(512 * 64);
  backend->set_unmap_supported(false);
  LunParams params;
  params.thin_provisioned = true;
  try {
    LogicalUnit lu(7, params, std::move(backend));
    FAIL() << "a thin LU on a backend that cannot unmap was accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("LUN 7"), std::string::npos) << e.what();
  }
  // Read-only, it only reports provisioning: accepted, and UNMAP is refused
  // as a write (DATA PROTECT) before the backend is asked.
  auto ro_backend = std::make_unique<storage::MemoryBackend>(512 * 64);
  ro_backend->set_unmap_supported(false);
  params.read_only = true;
  auto ro = std::make_shared<LogicalUnit>(7, params, std::move(ro_backend));
  EXPECT_TRUE(ro->params().thin_provisioned);
}

TEST(Provisioning, FullLuReportsNoProvisioningAndRefusesUnmap) {
  Lu l(false);
  ASSERT_EQ(l.run(read_capacity16(), 32).status, Status::good);
  EXPECT_EQ(l.buffer[14] & 0xc0, 0);  // LBPME, LBPRZ
  ASSERT_EQ(l.run(inquiry_vpd(0xb2)).status, Status::good);
  EXPECT_EQ(l.buffer[5], 0);
  EXPECT_EQ(l.buffer[6] & 0x07, 0);
  ASSERT_EQ(l.run(inquiry_vpd(0xb0)).status, Status::good);
  EXPECT_EQ(get_be32(&l.buffer[20]), 0u);
  EXPECT_EQ(get_be32(&l.buffer[24]), 0u);
  EXPECT_EQ(opcode_support(l, 0x42), 0x01);  // not supported

  l.fill(0xaa);
  expect_sense(l.unmap(unmap_list({{0, 8}})), 0x05, 0x20, 0x00);
  Bytes zero(512, 0);
  expect_sense(l.run(cdb10(0x41, 0x08, 0, 8), 0, &zero), 0x05, 0x24, 0x00);
  EXPECT_TRUE(l.block_is(0, 0xaa));
  EXPECT_EQ(l.mem->unmap_count(), 0u);
}

TEST(Provisioning, ThinLuReportsLbpmeLbprzAndItsLimits) {
  Lu l(true);
  ASSERT_EQ(l.run(read_capacity16(), 32).status, Status::good);
  EXPECT_EQ(l.buffer[14] & 0xc0, 0xc0);
  EXPECT_EQ(l.buffer[13] & 0x0f, 0);  // LBPPBE

  ASSERT_EQ(l.run(inquiry_vpd(0xb2)).status, Status::good);
  EXPECT_EQ(get_be16(&l.buffer[2]), 4);
  EXPECT_EQ(l.buffer[5] & 0x80, 0x80);  // LBPU
  EXPECT_EQ(l.buffer[5] & 0x40, 0x40);  // LBPWS
  EXPECT_EQ(l.buffer[5] & 0x20, 0x20);  // LBPWS10
  EXPECT_EQ(l.buffer[5] & 0x1c, 0x04);  // LBPRZ 001b
  EXPECT_EQ(l.buffer[5] & 0x02, 0x00);  // ANC_SUP
  EXPECT_EQ(l.buffer[6] & 0x07, 0x02);  // thin provisioned

  ASSERT_EQ(l.run(inquiry_vpd(0xb0)).status, Status::good);
  EXPECT_EQ(get_be32(&l.buffer[20]), 1u << 20);
  EXPECT_EQ(get_be32(&l.buffer[24]), 256u);
  EXPECT_EQ(get_be32(&l.buffer[28]), 8u);  // 4096 / 512
  EXPECT_EQ(l.buffer[32] & 0x80, 0x80);

  ASSERT_EQ(l.run(inquiry_vpd(0x00)).status, Status::good);
  const Bytes pages(l.buffer.begin() + 4, l.buffer.begin() + 4 + get_be16(&l.buffer[2]));
  EXPECT_NE(std::find(pages.begin(), pages.end(), 0xb2), pages.end());
  EXPECT_EQ(opcode_support(l, 0x42), 0x03);
}

TEST(Provisioning, LbprzOnlyFor512ByteBlocks) {
  auto backend = std::make_unique<storage::MemoryBackend>(4096 * 64);
  LunParams params;
  params.block_size = 4096;
  params.thin_provisioned = true;
  LogicalUnit lu(0, params, std::move(backend));
  Task task;
  CountingOwner owner;
  Bytes buffer;
  auto run = [&](Bytes c, std::uint32_t room) {
    return run_task([&](Task& t) { lu.execute(t); }, task, owner, buffer, c, room, nullptr).status;
  };
  ASSERT_EQ(run(read_capacity16(), 32), Status::good);
  EXPECT_EQ(buffer[14] & 0xc0, 0x80);  // LBPME without LBPRZ
  ASSERT_EQ(run(inquiry_vpd(0xb2), 255), Status::good);
  EXPECT_EQ(buffer[5], 0x80 | 0x40 | 0x20);
  ASSERT_EQ(run(inquiry_vpd(0xb0), 255), Status::good);
  EXPECT_EQ(get_be32(&buffer[28]), 1u);  // OPTIMAL UNMAP GRANULARITY: one 4096-byte block
}

TEST(Unmap, DeallocatesEveryDescriptorAndReadsZeroes) {
  Lu l(true);
  l.fill(0xaa);
  Task& t = l.unmap(unmap_list({{16, 8}, {100, 1}, {kBlocks - 4, 4}}));
  ASSERT_EQ(t.status, Status::good);
  EXPECT_EQ(l.mem->unmap_count(), 3u);
  EXPECT_EQ(l.mem->final_unmap_count(), 1u);  // one sync for the whole list
  for (std::uint64_t lba = 0; lba < kBlocks; ++lba) {
    const bool gone = (lba >= 16 && lba < 24) || lba == 100 || lba >= kBlocks - 4;
    ASSERT_TRUE(l.block_is(lba, gone ? 0x00 : 0xaa)) << "LBA " << lba;
    ASSERT_EQ(l.mapped(lba), !gone) << "LBA " << lba;
  }
  // READ of deallocated blocks: zeroes.
  ASSERT_EQ(l.run(cdb10(0x28, 0, 16, 8), 4096).status, Status::good);
  EXPECT_EQ(l.buffer, Bytes(4096, 0));
}

TEST(Unmap, ZeroLengthListsAndZeroBlockDescriptorsAreGood) {
  Lu l(true);
  l.fill(0xaa);
  Bytes c(10, 0);
  c[0] = 0x42;
  EXPECT_EQ(l.run(c, 0).status, Status::good);                                  // no parameter list
  EXPECT_EQ(l.unmap(unmap_list({{0, 0}, {kBlocks, 0}})).status, Status::good);  // 0 blocks at end
  EXPECT_EQ(l.unmap(unmap_list({})).status, Status::good);                      // header only
  EXPECT_EQ(l.mem->unmap_count(), 0u);
  EXPECT_TRUE(l.block_is(0, 0xaa));
}

TEST(Unmap, InvalidListsChangeNothing) {
  Lu l(true);
  l.fill(0xaa);
  // Shorter than the header.
  Bytes short_list(4, 0);
  expect_sense(l.unmap(short_list), 0x05, 0x1a, 0x00);
  // ANCHOR: not supported; the field pointer names CDB byte 1 bit 0.
  Task& a = l.unmap(unmap_list({{0, 8}}), 0x01);
  expect_sense(a, 0x05, 0x24, 0x00);
  EXPECT_EQ(a.sense[15], 0xc8);
  EXPECT_EQ(get_be16(&a.sense[16]), 1);
  // A valid descriptor then one past the end: LBA OUT OF RANGE, and the
  // first is not unmapped either.
  expect_sense(l.unmap(unmap_list({{0, 8}, {kBlocks - 2, 3}})), 0x05, 0x21, 0x00);
  expect_sense(l.unmap(unmap_list({{~0ull - 1, 4}})), 0x05, 0x21, 0x00);
  // More descriptors than MAXIMUM UNMAP BLOCK DESCRIPTOR COUNT.
  Bytes many(8 + 16 * 257, 0);
  put_be16(&many[0], static_cast<std::uint16_t>(many.size() - 2));
  put_be16(&many[2], static_cast<std::uint16_t>(many.size() - 8));
  for (int i = 0; i < 257; ++i) put_be32(&many[8 + 16 * i + 8], 1);
  expect_sense(l.unmap(many), 0x05, 0x26, 0x00);
  // More blocks in all than MAXIMUM UNMAP LBA COUNT (overlapping ranges).
  Bytes big(8 + 16 * 256, 0);
  put_be16(&big[0], static_cast<std::uint16_t>(big.size() - 2));
  put_be16(&big[2], static_cast<std::uint16_t>(big.size() - 8));
  for (int i = 0; i < 256; ++i) put_be32(&big[8 + 16 * i + 8], 4097);
  expect_sense(l.unmap(big), 0x05, 0x26, 0x00);
  EXPECT_EQ(l.mem->unmap_count(), 0u);
  EXPECT_TRUE(l.block_is(0, 0xaa));
  EXPECT_TRUE(l.mapped(0));
}

TEST(Unmap, IncompleteLastDescriptorIsIgnored) {
  Lu l(true);
  l.fill(0xaa);
  Bytes p = unmap_list({{0, 1}, {8, 1}});
  put_be16(&p[2], 16 + 8);  // the second descriptor is cut short
  ASSERT_EQ(l.unmap(p).status, Status::good);
  EXPECT_TRUE(l.block_is(0, 0x00));
  EXPECT_TRUE(l.block_is(8, 0xaa));
}

TEST(Unmap, ReadOnlyAndBackendErrors) {
  Lu ro(true, true);
  expect_sense(ro.unmap(unmap_list({{0, 1}})), 0x07, 0x27, 0x00);
  Lu l(true);
  l.fill(0xaa);
  l.mem->inject_error(512 * 40, 512, 5);
  Task& t = l.unmap(unmap_list({{0, 1}, {40, 1}}));
  expect_sense(t, 0x03, 0x0c, 0x00);
  EXPECT_EQ(get_be32(&t.sense[3]), 40u);  // INFORMATION: the descriptor that failed
}

TEST(WriteSameProvisioning, UnmapWithZeroesOrNdobDeallocates) {
  Lu l(true);
  l.fill(0xaa);
  Bytes zero(512, 0);
  ASSERT_EQ(l.run(cdb10(0x41, 0x08, 10, 5), 0, &zero).status, Status::good);
  EXPECT_EQ(l.mem->unmap_count(), 1u);
  ASSERT_EQ(l.run(cdb16(0x93, 0x08 | 0x01, 50, 3), 0).status, Status::good);  // NDOB
  EXPECT_EQ(l.mem->unmap_count(), 2u);
  for (std::uint64_t lba = 0; lba < 64; ++lba) {
    const bool gone = (lba >= 10 && lba < 15) || (lba >= 50 && lba < 53);
    ASSERT_TRUE(l.block_is(lba, gone ? 0 : 0xaa)) << lba;
    ASSERT_EQ(l.mapped(lba), !gone) << lba;
  }
  // 0 blocks: to the end of the medium.
  ASSERT_EQ(l.run(cdb16(0x93, 0x08, kBlocks - 10, 0), 0, &zero).status, Status::good);
  EXPECT_FALSE(l.mapped(kBlocks - 1));
  EXPECT_TRUE(l.block_is(kBlocks - 10, 0));
  EXPECT_TRUE(l.block_is(kBlocks - 11, 0xaa));
}

TEST(WriteSameProvisioning, UnmapDeallocatesWhateverTheData) {
  Lu l(true);
  l.fill(0xaa);
  Bytes pattern(512, 0x3c);
  ASSERT_EQ(l.run(cdb10(0x41, 0x08, 0, 4), 0, &pattern).status, Status::good);
  EXPECT_EQ(l.mem->unmap_count(), 1u);
  for (int lba = 0; lba < 4; ++lba) {
    EXPECT_TRUE(l.block_is(lba, 0x00));
    EXPECT_FALSE(l.mapped(lba));
  }
  EXPECT_TRUE(l.block_is(4, 0xaa));
  // Without UNMAP the same pattern is written.
  ASSERT_EQ(l.run(cdb10(0x41, 0, 0, 2), 0, &pattern).status, Status::good);
  EXPECT_TRUE(l.block_is(0, 0x3c) && l.block_is(1, 0x3c));
  EXPECT_TRUE(l.mapped(0));
}

TEST(WriteSameProvisioning, ZeroesWithoutUnmapStayMapped) {
  Lu l(true);
  l.fill(0xaa);
  ASSERT_EQ(l.run(cdb16(0x93, 0x01, 5, 2), 0).status, Status::good);  // NDOB, no UNMAP
  Bytes zero(512, 0);
  ASSERT_EQ(l.run(cdb10(0x41, 0, 9, 1), 0, &zero).status, Status::good);
  EXPECT_EQ(l.mem->unmap_count(), 0u);
  EXPECT_EQ(l.mem->write_zeroes_count(), 2u);
  EXPECT_TRUE(l.block_is(5, 0) && l.block_is(6, 0) && l.block_is(9, 0));
  EXPECT_TRUE(l.block_is(7, 0xaa));
  EXPECT_TRUE(l.mapped(5) && l.mapped(9));
}

TEST(WriteSameProvisioning, AnchorAndDataOutSizeAreChecked) {
  Lu l(true);
  l.fill(0xaa);
  Bytes zero(512, 0);
  expect_sense(l.run(cdb10(0x41, 0x10, 0, 1), 0, &zero), 0x05, 0x24, 0x00);  // ANCHOR
  expect_sense(l.run(cdb10(0x41, 0x18, 0, 1), 0, &zero), 0x05, 0x24, 0x00);  // + UNMAP
  Bytes half(256, 0), twice(1024, 0);
  expect_sense(l.run(cdb16(0x93, 0x08, 0, 1), 0, &half), 0x05, 0x24, 0x00);
  expect_sense(l.run(cdb16(0x93, 0x08, 0, 1), 0, &twice), 0x05, 0x24, 0x00);
  expect_sense(l.run(cdb16(0x93, 0x08, kBlocks - 1, 2), 0, &zero), 0x05, 0x21, 0x00);
  EXPECT_EQ(l.mem->unmap_count(), 0u);
  EXPECT_TRUE(l.block_is(0, 0xaa));
}

TEST(GetLbaStatus, ThinLuReportsMappedAndDeallocatedRuns) {
  Lu l(true);
  l.fill(0xaa);
  ASSERT_EQ(l.unmap(unmap_list({{100, 50}})).status, Status::good);
  Task& t = l.run(get_lba_status(90, 8 + 16 * 8), 8 + 16 * 8);
  ASSERT_EQ(t.status, Status::good);
  ASSERT_EQ(get_be32(&l.buffer[0]), 4u + 16 * 3);
  ASSERT_EQ(t.data_in_length, 8u + 16 * 3);
  const std::uint8_t* d = &l.buffer[8];
  EXPECT_EQ(get_be64(&d[0]), 90u);
  EXPECT_EQ(get_be32(&d[8]), 10u);
  EXPECT_EQ(d[12] & 0x0f, 0x00);  // mapped
  EXPECT_EQ(get_be64(&d[16]), 100u);
  EXPECT_EQ(get_be32(&d[24]), 50u);
  EXPECT_EQ(d[28] & 0x0f, 0x01);  // deallocated
  EXPECT_EQ(get_be64(&d[32]), 150u);
  EXPECT_EQ(get_be32(&d[40]), kBlocks - 150);
  EXPECT_EQ(d[44] & 0x0f, 0x00);

  // Room for one descriptor: the first only, starting at the LBA asked for.
  Task& one = l.run(get_lba_status(120, 24), 24);
  ASSERT_EQ(one.status, Status::good);
  EXPECT_EQ(get_be32(&l.buffer[0]), 20u);
  EXPECT_EQ(get_be64(&l.buffer[8]), 120u);
  EXPECT_EQ(get_be32(&l.buffer[16]), 30u);
  EXPECT_EQ(l.buffer[20] & 0x0f, 0x01);

  expect_sense(l.run(get_lba_status(kBlocks, 24), 24), 0x05, 0x21, 0x00);
}

TEST(GetLbaStatus, FullLuSaysAllMappedEvenWhereTheStoreIsSparse) {
  Lu l(false);  // a fresh memory backend is all deallocated underneath
  Task& t = l.run(get_lba_status(10, 64), 64);
  ASSERT_EQ(t.status, Status::good);
  EXPECT_EQ(get_be32(&l.buffer[0]), 20u);
  EXPECT_EQ(get_be32(&l.buffer[16]), kBlocks - 10);
  EXPECT_EQ(l.buffer[20], 0x00);
}

}  // namespace
}  // namespace ringtgt::scsi
