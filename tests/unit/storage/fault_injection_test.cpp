// The fault-injection seam: the plan's decisions, the engine beneath a file
// backend (what the backend does about each fault), and the delaying decorator.
#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "ringtgt/storage/fault_injecting_engine.hpp"
#include "ringtgt/storage/fault_injection.hpp"
#include "ringtgt/storage/memory_backend.hpp"
#include "storage_test_support.hpp"

namespace ringtgt::storage {
namespace {

using testing::RecordedOp;
using testing::RecordingEngine;
using testing::Result;
using Io = FaultPlan::Io;
using Action = DeviceFault::Action;

FaultRule rule(FaultKind kind, std::uint64_t offset = 0, std::uint64_t length = 0) {
  FaultRule r;
  r.kind = kind;
  r.offset = offset;
  r.length = length;
  return r;
}

TEST(FaultPlan, NothingArmedLeavesEveryIoAlone) {
  FaultPlan plan;
  EXPECT_EQ(plan.at_device(Io::read, 0, 4096).action, Action::none);
  EXPECT_EQ(plan.at_device(Io::sync, 0, 0).action, Action::none);
  EXPECT_EQ(plan.delay_for(Io::write, 0, 4096).count(), 0);
}

TEST(FaultPlan, EioHitsItsRangeOnlyAndMovesTheGoodBlocksBeforeIt) {
  FaultPlan plan;
  plan.add(rule(FaultKind::eio, 8192, 4096));
  EXPECT_EQ(plan.at_device(Io::read, 0, 8192).action, Action::none);      // ends before
  EXPECT_EQ(plan.at_device(Io::read, 12288, 4096).action, Action::none);  // starts after
  DeviceFault f = plan.at_device(Io::read, 4096, 8192);                   // runs into it
  EXPECT_EQ(f.action, Action::move_only);
  EXPECT_EQ(f.bytes, 4096u);
  EXPECT_EQ(plan.counters()->get(FaultKind::eio), 0u);  // not a fault yet
  f = plan.at_device(Io::write, 8192 + 512, 512);
  EXPECT_EQ(f.action, Action::fail);
  EXPECT_EQ(f.error, EIO);
  EXPECT_EQ(plan.counters()->get(FaultKind::eio), 1u);
}

TEST(FaultPlan, ReadOnlyRuleSparesWritesAndCountedRulesAreSpent) {
  FaultPlan plan;
  FaultRule r = rule(FaultKind::eio);
  r.writes = false;
  r.count = 2;
  plan.add(r);
  EXPECT_EQ(plan.at_device(Io::write, 0, 512).action, Action::none);
  EXPECT_EQ(plan.at_device(Io::read, 0, 512).action, Action::fail);
  EXPECT_EQ(plan.at_device(Io::read, 0, 512).action, Action::fail);
  EXPECT_EQ(plan.at_device(Io::read, 0, 512).action, Action::none);
  EXPECT_TRUE(plan.rules().empty());
}

TEST(FaultPlan, EnospcHitsWritesAndFlushFailureHitsSyncs) {
  FaultPlan plan;
  plan.add(rule(FaultKind::enospc));
  plan.add(rule(FaultKind::flush_failure));
  EXPECT_EQ(plan.at_device(Io::read, 0, 512).action, Action::none);
  EXPECT_EQ(plan.at_device(Io::write, 0, 512).error, ENOSPC);
  EXPECT_EQ(plan.at_device(Io::sync, 0, 0).error, EIO);
}

TEST(FaultPlan, ShortTransfersHalveInWholeSectorsAndLeaveOneSectorAlone) {
  FaultPlan plan;
  plan.add(rule(FaultKind::short_transfer));
  DeviceFault f = plan.at_device(Io::write, 0, 65536);
  EXPECT_EQ(f.action, Action::move_only);
  EXPECT_EQ(f.bytes, 32768u);
  EXPECT_EQ(plan.at_device(Io::read, 0, 1536).bytes, 512u);
  EXPECT_EQ(plan.at_device(Io::read, 0, 512).action, Action::none);
  FaultPlan plan4k(4096);
  plan4k.add(rule(FaultKind::short_transfer));
  EXPECT_EQ(plan4k.at_device(Io::read, 0, 12288).bytes, 4096u);
  EXPECT_EQ(plan4k.at_device(Io::read, 0, 4096).action, Action::none);
}

TEST(FaultPlan, ADelayHitsSyncsOnlyWhenItCoversEveryWrite) {
  FaultPlan plan;
  FaultRule ranged = rule(FaultKind::delay, 4096, 4096);
  ranged.delay = std::chrono::milliseconds(100);
  plan.add(ranged);
  EXPECT_EQ(plan.delay_for(Io::sync, 0, 0).count(), 0);
  EXPECT_EQ(plan.delay_for(Io::read, 4096, 512).count(), 100);
  FaultRule whole = rule(FaultKind::delay);
  whole.delay = std::chrono::milliseconds(200);
  plan.add(whole);
  EXPECT_EQ(plan.delay_for(Io::sync, 0, 0).count(), 200);
}

TEST(FaultPlan, RemoveAndClear) {
  FaultPlan plan;
  const auto a = plan.add(rule(FaultKind::eio));
  const auto b = plan.add(rule(FaultKind::enospc));
  EXPECT_NE(a, b);
  EXPECT_TRUE(plan.remove(a));
  EXPECT_FALSE(plan.remove(a));
  ASSERT_EQ(plan.rules().size(), 1u);
  plan.clear();
  EXPECT_EQ(plan.at_device(Io::write, 0, 512).action, Action::none);
}

// A file backend whose lanes run through a FaultInjectingEngine over the
// test's RecordingEngine.
class InjectedFileBackendTest : public testing::FileBackendFixture<RecordingEngine> {
 protected:
  FileBackendOptions injected(WriteAckPolicy policy) {
    FileBackendOptions o = opts(policy);
    o.engine_for_tests = [this](reactor::IoEngine& e) {
      return std::make_unique<FaultInjectingEngine>(e, plan);
    };
    return o;
  }
  std::shared_ptr<FaultPlan> plan = std::make_shared<FaultPlan>();
};

TEST_F(InjectedFileBackendTest, ShortTransfersAreContinuedAndTheDataIsRight) {
  FileBackend b(injected(WriteAckPolicy::writethrough));
  plan->add(rule(FaultKind::short_transfer));
  std::vector<std::uint8_t> out(16384), in(16384);
  for (std::size_t i = 0; i < out.size(); ++i) out[i] = static_cast<std::uint8_t>(i * 7);
  Result w, r;
  b.write(out.data(), out.size(), 4096, false, &w);
  EXPECT_EQ(w.value, 16384);
  b.read(in.data(), in.size(), 4096, &r);
  EXPECT_EQ(r.value, 16384);
  EXPECT_EQ(in, out);
  // 16K, 8K, 4K, 2K and 1K shortened, the last 512 bytes not: 5 short writes.
  std::size_t writes = 0;
  for (const auto& op : engine.ops) writes += op.kind == RecordedOp::write;
  EXPECT_EQ(writes, 6u);
  EXPECT_EQ(plan->counters()->get(FaultKind::short_transfer), 10u);
}

TEST_F(InjectedFileBackendTest, AnEioAfterGoodBlocksReportsHowFarItGot) {
  FileBackend b(injected(WriteAckPolicy::writethrough));
  plan->add(rule(FaultKind::eio, 8192, 512));
  std::vector<std::uint8_t> buf(8192);
  Result r;
  b.read(buf.data(), buf.size(), 4096, &r);
  EXPECT_EQ(r.value, 4096);  // the logical unit names block (4096 + 4096) / bs as failed
  Result r2;
  b.read(buf.data(), 512, 8192, &r2);
  EXPECT_EQ(r2.value, -EIO);
}

TEST_F(InjectedFileBackendTest, AFailedSyncFailsItsWriteAndEveryLaterDurableOne) {
  FileBackend b(injected(WriteAckPolicy::writethrough));
  FaultRule f = rule(FaultKind::flush_failure);
  f.count = 1;
  plan->add(f);
  std::vector<std::uint8_t> buf(4096, 0xab);
  Result w1, w2, s;
  b.write(buf.data(), buf.size(), 0, false, &w1);
  EXPECT_EQ(w1.value, -EIO);
  EXPECT_TRUE(plan->rules().empty());  // spent: what follows is the backend's own doing
  b.write(buf.data(), buf.size(), 4096, false, &w2);
  EXPECT_EQ(w2.value, -EIO);
  b.flush(&s);
  EXPECT_EQ(s.value, -EIO);
  EXPECT_EQ(b.durability_lost_errno(), EIO);
}

TEST_F(InjectedFileBackendTest, EnospcReachesTheCaller) {
  FileBackend b(injected(WriteAckPolicy::writeback));
  plan->add(rule(FaultKind::enospc));
  std::vector<std::uint8_t> buf(4096);
  Result w, r;
  b.write(buf.data(), buf.size(), 0, false, &w);
  EXPECT_EQ(w.value, -ENOSPC);
  b.read(buf.data(), buf.size(), 0, &r);
  EXPECT_EQ(r.value, 4096);
}

// An engine whose timers fire when the test says.
class ManualTimerEngine final : public reactor::IoEngine {
 public:
  void read(int, void*, std::size_t, std::uint64_t, reactor::IoOp*) override {}
  void write(int, const void*, std::size_t, std::uint64_t, int, reactor::IoOp*) override {}
  void fsync(int, bool, reactor::IoOp*) override {}
  void recv(int, void*, std::size_t, int, reactor::IoOp*) override {}
  void sendmsg(int, const msghdr*, int, reactor::IoOp*) override {}
  void start_timer(std::chrono::nanoseconds after, reactor::TimerOp* op) override {
    timers.push_back({after, op});
  }
  std::vector<std::pair<std::chrono::nanoseconds, reactor::TimerOp*>> timers;
};

TEST(FaultInjectingBackend, ADelayedIoCompletesOnlyWhenItsTimerFires) {
  ManualTimerEngine engine;
  reactor::IoEngine::set_current(&engine);
  auto plan = std::make_shared<FaultPlan>();
  FaultInjectingBackend b(std::make_unique<MemoryBackend>(1 << 20), plan);
  FaultRule r = rule(FaultKind::delay, 0, 4096);
  r.delay = std::chrono::milliseconds(1500);
  plan->add(r);
  std::vector<std::uint8_t> buf(4096, 0x5c);
  Result slow, fast;
  b.write(buf.data(), 4096, 0, false, &slow);
  b.write(buf.data(), 4096, 8192, false, &fast);  // outside the range
  EXPECT_EQ(fast.value, 4096);
  EXPECT_EQ(slow.calls, 0);
  ASSERT_EQ(engine.timers.size(), 1u);
  EXPECT_EQ(engine.timers[0].first, std::chrono::milliseconds(1500));
  engine.timers[0].second->on_complete(-ETIME);
  EXPECT_EQ(slow.value, 4096);  // the inner result, not the timer's
  EXPECT_EQ(plan->counters()->get(FaultKind::delay), 1u);
  reactor::IoEngine::set_current(nullptr);
}

}  // namespace
}  // namespace ringtgt::storage
