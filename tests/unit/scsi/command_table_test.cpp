// The command table is what a logical unit runs and reports: every opcode it
// lacks gets INVALID COMMAND OPERATION CODE and is reported unsupported, every
// row it offers runs and is reported with the row's CDB usage data.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <memory>

#include "command_table.hpp"
#include "ringtgt/scsi/logical_unit.hpp"
#include "ringtgt/storage/memory_backend.hpp"
#include "scsi_test_support.hpp"

namespace ringtgt::scsi {
namespace {

using namespace ringtgt::scsi::testing;

struct OneLu {
  explicit OneLu(bool spc2, bool thin) {
    LunParams p;
    p.block_size = 512;
    p.naa = 0x1234567890abcdefull;
    p.spc2_reservations = spc2;
    p.thin_provisioned = thin;
    lu = std::make_shared<LogicalUnit>(0, p, std::make_unique<storage::MemoryBackend>(512 * 2048));
  }
  Task& run(const Bytes& cdb) {
    return run_task([this](Task& t) { lu->execute(t); }, task, owner, buffer, cdb, 4096, nullptr);
  }
  bool invalid_opcode(const Bytes& cdb) {
    const Task& t = run(cdb);
    return t.status == Status::check_condition && t.sense[2] == sense::invalid_opcode.key &&
           t.sense[12] == sense::invalid_opcode.asc && t.sense[13] == sense::invalid_opcode.ascq;
  }
  // RSOC for one command (REPORTING OPTIONS 3: with or without service action).
  Bytes reported(std::uint8_t opcode, std::uint16_t sa) {
    Bytes c{0xa3, 0x0c, 0x03, opcode, 0, 0, 0, 0, 0x01, 0, 0, 0};
    put_be16(&c[4], sa);
    const Task& t = run(c);
    EXPECT_EQ(t.status, Status::good);
    return Bytes(buffer.begin(), buffer.begin() + t.data_in_length);
  }

  std::shared_ptr<LogicalUnit> lu;
  CountingOwner owner;
  Task task;
  Bytes buffer;
};

const detail::Command* find(const Bytes& cdb) {
  std::array<std::uint8_t, 16> c{};
  std::copy(cdb.begin(), cdb.end(), c.begin());
  return detail::find_command(c);
}

TEST(CommandTable, OpcodesNotInTheTableAreInvalidAndUnsupported) {
  for (bool thin : {false, true}) {
    OneLu l(true, thin);
    for (int op = 0; op < 256; ++op) {
      Bytes cdb(16, 0);
      cdb[0] = static_cast<std::uint8_t>(op);
      const detail::Command* row = find(cdb);
      if (row != nullptr && detail::offered(*row, true, thin)) continue;
      EXPECT_TRUE(l.invalid_opcode(cdb)) << "opcode " << op;
      EXPECT_EQ(l.reported(static_cast<std::uint8_t>(op), 0).at(1) & 0x07, 0x01) << "opcode " << op;
    }
  }
}

TEST(CommandTable, OfferedRowsRunAndAreReportedWithTheirUsage) {
  OneLu l(true, true);
  int rows = 0;
  for (const detail::Command& row : detail::commands()) {
    if (row.service_action == detail::kOtherServiceActions || !detail::offered(row, true, true))
      continue;
    ++rows;
    const std::uint16_t sa = row.service_action == detail::kNoServiceAction
                                 ? 0
                                 : static_cast<std::uint16_t>(row.service_action);
    Bytes cdb(16, 0);
    cdb[0] = row.opcode;
    cdb[1] = static_cast<std::uint8_t>(sa);
    EXPECT_FALSE(l.invalid_opcode(cdb)) << row.name;
    const Bytes r = l.reported(row.opcode, sa);
    ASSERT_EQ(r.size(), 4u + row.cdb_length) << row.name;
    EXPECT_EQ(r[1] & 0x07, 0x03) << row.name;  // SUPPORT: as the standard says
    EXPECT_EQ(get_be16(&r[2]), row.cdb_length) << row.name;
    EXPECT_TRUE(std::equal(r.begin() + 4, r.end(), row.usage.begin())) << row.name;
  }
  EXPECT_GT(rows, 50);
}

TEST(CommandTable, EveryOfferedRowHasAHandler) {
  for (const detail::Command& row : detail::commands()) {
    if (row.offered == detail::Offered::never) continue;
    EXPECT_NE(row.run, nullptr) << row.name;
  }
}

TEST(CommandTable, RowsNotOfferedAreInvalid) {
  OneLu l(false, false);
  EXPECT_TRUE(l.invalid_opcode({0x16, 0, 0, 0, 0, 0}));                 // RESERVE(6)
  EXPECT_TRUE(l.invalid_opcode({0x57, 0, 0, 0, 0, 0, 0, 0, 0, 0}));     // RELEASE(10)
  EXPECT_TRUE(l.invalid_opcode({0x42, 0, 0, 0, 0, 0, 0, 0, 0x18, 0}));  // UNMAP
  EXPECT_TRUE(l.invalid_opcode({0x4d, 0, 0, 0, 0, 0, 0, 0, 0x10, 0}));  // LOG SENSE: never
}

TEST(CommandTable, ServiceActionsFindTheirRowOrTheCatchAll) {
  std::array<std::uint8_t, 16> c{};
  c[0] = 0x9e;
  c[1] = 0x10;
  EXPECT_STREQ(detail::find_command(c)->name, "READ CAPACITY(16)");
  c[1] = 0x12;
  EXPECT_STREQ(detail::find_command(c)->name, "GET LBA STATUS");
  c[1] = 0x11;
  EXPECT_EQ(detail::find_command(c)->service_action, detail::kOtherServiceActions);
  EXPECT_TRUE(detail::has_service_actions(0x9e));
  EXPECT_FALSE(detail::has_service_actions(0x28));
  c[0] = 0x28;
  EXPECT_EQ(detail::find_command(c)->pr, detail::PrClass::read);
  EXPECT_EQ(detail::find_command(c)->direction, DataDirection::from_device);
}

}  // namespace
}  // namespace ringtgt::scsi
