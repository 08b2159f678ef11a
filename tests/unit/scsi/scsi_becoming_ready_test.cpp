// A LU whose store is not open yet (LunParams::becoming_ready: an RBD image
// that was missing at start): found and identified, everything else NOT
// READY, LOGICAL UNIT IS IN PROCESS OF BECOMING READY, which initiators retry.
#include <gtest/gtest.h>

#include <memory>

#include "ringtgt/scsi/logical_unit.hpp"
#include "ringtgt/storage/memory_backend.hpp"
#include "scsi_test_support.hpp"

namespace ringtgt::scsi {
namespace {

using namespace ringtgt::scsi::testing;

struct Lu {
  explicit Lu(bool becoming_ready) {
    LunParams params;
    params.becoming_ready = becoming_ready;
    params.device_name = "test,lun,3";
    lu = std::make_unique<LogicalUnit>(3, params,
                                       std::make_unique<storage::MemoryBackend>(512 * 64));
  }
  Task& run(Bytes cdb, const Bytes* out = nullptr, std::uint32_t room = 512) {
    return run_task([this](Task& x) { lu->execute(x); }, task, owner, buffer, cdb, room, out);
  }
  std::unique_ptr<LogicalUnit> lu;
  CountingOwner owner;
  Task task;
  Bytes buffer;
};

TEST(BecomingReady, MediumCommandsHearNotReady) {
  Lu l(true);
  expect_sense(l.run(Bytes(6, 0)), 0x02, 0x04, 0x01);               // TEST UNIT READY
  expect_sense(l.run(cdb16(0x9e, 0x10, 0, 32)), 0x02, 0x04, 0x01);  // READ CAPACITY(16)
  expect_sense(l.run(cdb10(0x28, 0, 0, 1)), 0x02, 0x04, 0x01);      // READ(10)
  Bytes one(512, 1);
  expect_sense(l.run(cdb10(0x2a, 0, 0, 1), &one), 0x02, 0x04, 0x01);  // WRITE(10)
  expect_sense(l.run(cdb10(0x35, 0, 0, 0)), 0x02, 0x04, 0x01);        // SYNCHRONIZE CACHE
}

TEST(BecomingReady, InquiryReportLunsAndRequestSenseAnswer) {
  Lu l(true);
  EXPECT_EQ(l.run({0x12, 0, 0, 0, 36, 0}).status, Status::good);  // INQUIRY
  Bytes report_luns(12, 0);
  report_luns[0] = 0xa0;
  report_luns[9] = 64;
  EXPECT_EQ(l.run(report_luns).status, Status::good);
  Task& rs = l.run({0x03, 0, 0, 0, 18, 0});  // REQUEST SENSE: why
  ASSERT_EQ(rs.status, Status::good);
  EXPECT_EQ(l.buffer[2], 0x02);
  EXPECT_EQ(l.buffer[12], 0x04);
  EXPECT_EQ(l.buffer[13], 0x01);
}

TEST(BecomingReady, AnOpenLuIsReady) {
  Lu l(false);
  EXPECT_EQ(l.run(Bytes(6, 0)).status, Status::good);
  Task& rs = l.run({0x03, 0, 0, 0, 18, 0});
  ASSERT_EQ(rs.status, Status::good);
  EXPECT_EQ(l.buffer[2], 0x00);
}

}  // namespace
}  // namespace ringtgt::scsi
