// What a logical unit counts for /metrics: one block per worker, filled at completion.
#include <gtest/gtest.h>

#include <memory>

#include "ringtgt/metrics/counters.hpp"
#include "ringtgt/scsi/logical_unit.hpp"
#include "ringtgt/storage/memory_backend.hpp"
#include "scsi_test_support.hpp"

namespace ringtgt::scsi {
namespace {

using namespace ringtgt::scsi::testing;
using metrics::OpKind;

// Runs commands on a memory-backed LU as if on worker `slot`.
class CountedLu : public ::testing::Test {
 protected:
  void SetUp() override {
    lu = std::make_unique<LogicalUnit>(0, LunParams{},
                                       std::make_unique<storage::MemoryBackend>(512 * 64));
    stats = std::make_shared<metrics::LunStats>(2);
    lu->set_stats(stats);
    metrics::set_thread_slot(1);
  }
  void TearDown() override { metrics::set_thread_slot(metrics::kNoSlot); }
  Task& run(Bytes cdb, std::uint32_t room = 4096, const Bytes* out = nullptr) {
    return run_task([this](Task& t) { lu->execute(t); }, task, owner, buffer, cdb, room, out);
  }
  const metrics::LunCounters::PerKind& kind(OpKind k) const {
    return stats->slot(1).kinds[static_cast<std::size_t>(k)];
  }
  std::uint64_t ops(OpKind k) const {
    std::uint64_t n = 0;
    for (const auto& b : kind(k).buckets) n += b.get();
    return n;
  }

  std::unique_ptr<LogicalUnit> lu;
  std::shared_ptr<metrics::LunStats> stats;
  CountingOwner owner;
  Task task;
  Bytes buffer;
};

TEST_F(CountedLu, KindsBytesAndErrorsOnTheWorkersBlock) {
  Bytes data(1024, 0x5a);
  EXPECT_EQ(run(cdb10(0x2a, 0, 0, 2), 0, &data).status, Status::good);  // WRITE(10), 2 blocks
  EXPECT_EQ(run(cdb10(0x28, 0, 0, 1), 512).status, Status::good);       // READ(10), 1 block
  EXPECT_EQ(run(cdb10(0x28, 0, 1000, 1), 512).status, Status::check_condition);  // past the end
  EXPECT_EQ(run(cdb10(0x35, 0, 0, 0), 0).status, Status::good);  // SYNCHRONIZE CACHE(10)
  Bytes inquiry = {0x12, 0, 0, 0, 96, 0};
  EXPECT_EQ(run(inquiry, 96).status, Status::good);

  EXPECT_EQ(ops(OpKind::write), 1u);
  EXPECT_EQ(kind(OpKind::write).bytes.get(), 1024u);
  EXPECT_EQ(ops(OpKind::read), 2u);
  EXPECT_EQ(kind(OpKind::read).bytes.get(), 512u);  // the failed read moved nothing
  EXPECT_EQ(ops(OpKind::flush), 1u);
  EXPECT_EQ(ops(OpKind::other), 1u);
  EXPECT_EQ(kind(OpKind::other).bytes.get(), 96u);
  EXPECT_EQ(ops(OpKind::unmap), 0u);
  const auto& errors = stats->slot(1).errors;
  EXPECT_EQ(errors[0x05].get(), 1u);  // ILLEGAL REQUEST (LBA out of range)
  std::uint64_t all_errors = 0;
  for (const auto& e : errors) all_errors += e.get();
  EXPECT_EQ(all_errors, 1u);
  EXPECT_EQ(stats->slot(1).started.get(), 5u);
  EXPECT_EQ(stats->slot(1).finished.get(), 5u);
  // The other worker's block is untouched.
  EXPECT_EQ(stats->slot(0).started.get(), 0u);
}

TEST_F(CountedLu, ThreadWithoutASlotAndLuWithoutStatsCountNothing) {
  metrics::set_thread_slot(metrics::kNoSlot);
  EXPECT_EQ(run(cdb10(0x28, 0, 0, 1), 512).status, Status::good);
  EXPECT_EQ(stats->slot(1).started.get(), 0u);
  EXPECT_EQ(stats->slot(0).started.get(), 0u);
  metrics::set_thread_slot(1);
  lu->set_stats(nullptr);
  EXPECT_EQ(run(cdb10(0x28, 0, 0, 1), 512).status, Status::good);
  EXPECT_EQ(stats->slot(1).started.get(), 0u);
}

// A pooled Task reused for a LUN without a unit must not count against the
// LU it ran on before.
TEST_F(CountedLu, ReusedTaskForAMissingLunIsNotCounted) {
  auto map = std::make_shared<LunMap>();
  map->add(std::shared_ptr<LogicalUnit>(std::move(lu)));
  auto exec = [&](Task& t) { map->execute(t); };
  run_task(exec, task, owner, buffer, cdb10(0x28, 0, 0, 1), 512, nullptr, 0);
  EXPECT_EQ(ops(OpKind::read), 1u);
  // The same Task object again, not reset, now for LUN 9.
  task.lun = 9;
  owner.completions = 0;
  map->execute(task);
  ASSERT_EQ(owner.completions, 1);
  Task& t = task;
  EXPECT_EQ(t.status, Status::check_condition);  // LOGICAL UNIT NOT SUPPORTED
  EXPECT_EQ(ops(OpKind::read), 1u);
  EXPECT_EQ(stats->slot(1).finished.get(), 1u);
}

}  // namespace
}  // namespace ringtgt::scsi
