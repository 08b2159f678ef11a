// The logical unit's side of the durability log: which commands promise
// what, and a command's writes linked to its answer so that the checker can
// hold GOOD against them.
#include <gtest/gtest.h>

#include <memory>

#include "ringtgt/scsi/durability_promise.hpp"
#include "ringtgt/scsi/logical_unit.hpp"
#include "ringtgt/storage/durability_check.hpp"
#include "ringtgt/storage/durability_log.hpp"
#include "ringtgt/storage/memory_backend.hpp"
#include "scsi_test_support.hpp"

namespace ringtgt::scsi {
namespace {

using namespace ringtgt::scsi::testing;
using storage::WriteAckPolicy;
using K = storage::DurabilityEvent::Kind;

std::array<std::uint8_t, 16> cdb_of(std::uint8_t opcode, std::uint8_t flags = 0) {
  std::array<std::uint8_t, 16> c{};
  c[0] = opcode;
  c[1] = flags;
  return c;
}

TEST(DurabilityPromise, EveryMediumChangingCommandByPolicyAndFua) {
  const auto wt = WriteAckPolicy::writethrough, wb = WriteAckPolicy::writeback;
  for (std::uint8_t op : {0x0a, 0x2a, 0xaa, 0x8a, 0x41, 0x93, 0x42, 0x89, 0x8b, 0x83}) {
    EXPECT_EQ(durability_promise(cdb_of(op), wt), DurabilityPromise::durable_write) << int(op);
    EXPECT_EQ(durability_promise(cdb_of(op), wb), DurabilityPromise::write) << int(op);
  }
  for (std::uint8_t op : {0x2a, 0xaa, 0x8a, 0x89, 0x8b}) {
    EXPECT_EQ(durability_promise(cdb_of(op, 0x08), wb), DurabilityPromise::durable_write)
        << "FUA " << int(op);
  }
  for (std::uint8_t op : {0x2e, 0xae, 0x8e}) {
    EXPECT_EQ(durability_promise(cdb_of(op), wb), DurabilityPromise::durable_write) << int(op);
  }
  EXPECT_EQ(durability_promise(cdb_of(0x35), wb), DurabilityPromise::sync);
  EXPECT_EQ(durability_promise(cdb_of(0x91), wt), DurabilityPromise::sync);
  for (std::uint8_t op : {0x28, 0x88, 0x00, 0x12, 0x2f}) {
    EXPECT_EQ(durability_promise(cdb_of(op), wt), DurabilityPromise::none) << int(op);
  }
}

// Answers like the transport: records command_done as the status goes out.
struct RecordingOwner : CountingOwner {
  void task_complete(Task& t) override {
    record_command_done(t, t.status == Status::good);
    CountingOwner::task_complete(t);
  }
};

class SeamOn : public ::testing::Test {
 protected:
  void SetUp() override { storage::set_durability_seam({&log, false}); }
  void TearDown() override { storage::set_durability_seam({}); }

  Task& run(LogicalUnit& lu, Bytes cdb, const Bytes* out = nullptr) {
    return run_task([&lu](Task& t) { lu.execute(t); }, task, owner, buffer, cdb, 0, out);
  }

  storage::DurabilityLog log;
  Task task;
  RecordingOwner owner;
  Bytes buffer;
};

TEST_F(SeamOn, CommandsAreLinkedToTheirWritesAndTheCheckerAcceptsAWritebackRun) {
  auto backend = std::make_unique<storage::MemoryBackend>(512 * 256, WriteAckPolicy::writeback);
  backend->set_durability_log(&log, 512);
  LunParams params;
  params.thin_provisioned = true;
  LogicalUnit lu(0, params, std::move(backend));
  Bytes data(1024, 0x71), block(512, 0x19);
  EXPECT_EQ(run(lu, cdb10(0x2a, 0x08, 8, 2), &data).status, Status::good);  // FUA
  EXPECT_EQ(run(lu, cdb10(0x2a, 0, 16, 2), &data).status, Status::good);
  EXPECT_EQ(run(lu, cdb10(0x41, 0, 32, 4), &block).status, Status::good);     // WRITE SAME
  EXPECT_EQ(run(lu, cdb16(0x93, 0x08, 40, 4), &block).status, Status::good);  // with UNMAP
  EXPECT_EQ(run(lu, cdb10(0x35, 0, 0, 0)).status, Status::good);              // SYNC CACHE
  EXPECT_EQ(run(lu, cdb10(0x28, 0, 8, 1)).status, Status::good);              // READ: not logged
  const auto events = log.events();
  int started = 0, done = 0;
  for (const auto& e : events) {
    started += e.kind == K::command_started;
    done += e.kind == K::command_done;
  }
  EXPECT_EQ(started, 5);
  EXPECT_EQ(done, 5);
  const auto r = storage::check_durability_log(events);
  EXPECT_EQ(r.problem_count, 0u) << r.problems.front();
  EXPECT_EQ(r.commands_good, 5u);
  EXPECT_EQ(r.syncs, 1u);
  // After the SYNCHRONIZE CACHE everything is durable: the written blocks,
  // the pattern, and the unmapped range as zeroes.
  const auto& img = r.images.at(1);
  EXPECT_EQ(img.blocks.at(17), storage::block_hash(data.data(), 512));
  EXPECT_EQ(img.blocks.at(33), storage::block_hash(block.data(), 512));
  EXPECT_EQ(img.blocks.at(41), storage::DurableImage::kZeroBlock);
}

}  // namespace
}  // namespace ringtgt::scsi
