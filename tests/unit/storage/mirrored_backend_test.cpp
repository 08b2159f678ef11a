// The mirrored backend: parallel writes, the quorum and its loss, the order
// of overlapping writes, and read repair, over copies whose completions the
// test releases one by one.
#include "ringtgt/storage/mirrored_backend.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>
#include <vector>

#include "../home_engine.hpp"
#include "activity_log.hpp"
#include "ringtgt/storage/memory_backend.hpp"
#include "storage_test_support.hpp"

namespace ringtgt::storage {
namespace {

using metrics::MirrorCounters;
using testing::Result;

// A copy in RAM whose operations wait until the test completes them; a
// write's data lands when it completes, so the order of completions is the
// order the copy applied the writes in.
class HeldBackend final : public Backend {
 public:
  enum class Kind { read, write, flush, unmap, zeroes };
  struct Pending {
    Kind kind;
    void* buf;
    std::size_t len;
    std::uint64_t offset;
    IoOp* op;
  };

  explicit HeldBackend(std::uint64_t size, WriteAckPolicy policy = WriteAckPolicy::writethrough)
      : policy_(policy), data_(size, 0) {}

  std::uint64_t size_bytes() const override { return data_.size(); }
  WriteAckPolicy ack_policy() const override { return policy_; }
  void read(void* buf, std::size_t len, std::uint64_t offset, IoOp* op) override {
    pending.push_back({Kind::read, buf, len, offset, op});
  }
  void write(const void* buf, std::size_t len, std::uint64_t offset, bool, IoOp* op) override {
    pending.push_back({Kind::write, const_cast<void*>(buf), len, offset, op});
  }
  void flush(IoOp* op) override { pending.push_back({Kind::flush, nullptr, 0, 0, op}); }
  bool can_unmap() const override { return true; }
  void unmap(std::uint64_t offset, std::uint64_t len, IoOp* op, bool) override {
    pending.push_back({Kind::unmap, nullptr, len, offset, op});
  }
  void write_zeroes(std::uint64_t offset, std::uint64_t len, bool, IoOp* op) override {
    pending.push_back({Kind::zeroes, nullptr, len, offset, op});
  }
  std::string describe() const override { return "held"; }
  bool connected() const override { return up; }
  std::uint64_t connections() const override { return connects; }

  // As a remote store: whether it is connected, and how often it connected.
  bool up = true;
  std::uint64_t connects = 0;

  // Completes the oldest pending operation: with `error` (< 0) or as the
  // device would (moving the data).
  void complete_next(int error = 0) {
    ASSERT_FALSE(pending.empty());
    Pending p = pending.front();
    pending.pop_front();
    if (error < 0) return p.op->on_complete(error);
    if (p.kind == Kind::write) std::memcpy(&data_[p.offset], p.buf, p.len);
    if (p.kind == Kind::read) std::memcpy(p.buf, &data_[p.offset], p.len);
    if (p.kind == Kind::zeroes || p.kind == Kind::unmap) std::memset(&data_[p.offset], 0, p.len);
    const bool moves = p.kind == Kind::read || p.kind == Kind::write;
    p.op->on_complete(moves ? static_cast<int>(p.len) : 0);
  }

  std::uint8_t at(std::uint64_t offset) const { return data_[offset]; }
  void fill(std::uint64_t offset, std::size_t len, std::uint8_t v) {
    std::memset(&data_[offset], v, len);
  }

  std::deque<Pending> pending;

 private:
  WriteAckPolicy policy_;
  std::vector<std::uint8_t> data_;
};

constexpr std::uint64_t kSize = 1 << 20;
constexpr std::uint64_t kRegion = 64 << 10;  // resync tests: 16 regions

class Mirror : public ::testing::Test {
 protected:
  // copies: the primary and `copies - 1` more.
  void build(unsigned copies, std::uint32_t quorum,
             QuorumLossAction action = QuorumLossAction::fail,
             std::uint64_t region_size = std::uint64_t{1} << 20) {
    std::vector<MirrorCopy> v;
    for (unsigned i = 0; i < copies; ++i) {
      auto b = std::make_unique<HeldBackend>(kSize, policy);
      held.push_back(b.get());
      v.push_back({i == 0 ? "primary" : "disk" + std::to_string(i + 1), "", std::move(b),
                   i < locations.size() ? locations[i] : ""});
    }
    MirrorOptions o;
    o.lun_label = "target t LUN 1";
    o.ack_quorum = quorum;
    o.on_quorum_loss = action;
    o.region_size = region_size;
    o.quorum_wait = quorum_wait;
    o.state_path = state_path;
    o.max_behind_bytes = max_behind_bytes;
    mirror = std::make_unique<MirroredBackend>(std::move(v), o);
  }

  // Gives the mirror an owner (the LU, in the daemon), which lets it answer
  // before the copies behind are done.
  void own() { mirror->set_owner(owner); }

  // A 4 KiB write of `value` at offset, answered once the primary holds it
  // (the mirror has an owner): the other copies still have it pending, and
  // write it from the mirror's own copy (the caller's buffer is gone).
  void write_behind(std::uint64_t offset, std::uint8_t value) {
    std::vector<std::uint8_t> buf(4096, value);
    Result w;
    mirror->write(buf.data(), buf.size(), offset, false, &w);
    held[0]->complete_next();
    ASSERT_EQ(w.calls, 1) << "answered at the primary";
    ASSERT_EQ(w.value, 4096);
  }

  std::uint64_t behind(std::size_t copy) const {
    return mirror->mirror_counters()->copies[copy]->writes_behind.load();
  }

  // Completes the oldest pending operation of every copy, in copy order.
  void complete_all_once() {
    for (auto* h : held) h->complete_next();
  }

  // Completes the probe a resync of copy `target` starts with: for each
  // clean region it looks at, a 4 KiB read from the primary, then one from
  // the copy (resync_job.hpp). Returns how many regions it compared.
  int complete_probes(std::size_t target = 1) {
    int n = 0;
    auto probing = [](const HeldBackend& h) {
      return h.pending.size() == 1 && h.pending.front().kind == HeldBackend::Kind::read &&
             h.pending.front().len == 4096;
    };
    while (probing(*held[0])) {
      held[0]->complete_next();
      EXPECT_TRUE(probing(*held[target])) << "the copy's half of the probe";
      if (!probing(*held[target])) break;
      held[target]->complete_next();
      ++n;
    }
    return n;
  }

  std::vector<HeldBackend*> held;
  std::unique_ptr<MirroredBackend> mirror;
  std::string state_path;              // set before build: the activity log's file
  std::vector<std::string> locations;  // set before build: each copy's, in the state file
  std::chrono::nanoseconds quorum_wait = std::chrono::seconds(20);  // set before build
  WriteAckPolicy policy = WriteAckPolicy::writethrough;             // set before build
  std::uint64_t max_behind_bytes = std::uint64_t{64} << 20;         // set before build
  std::shared_ptr<int> owner = std::make_shared<int>(0);
};

TEST_F(Mirror, AWriteGoesToEveryCopyAtOnceAndAnswersWhenAllHaveIt) {
  build(3, 2);
  std::vector<std::uint8_t> buf(4096, 0xab);
  Result r;
  mirror->write(buf.data(), buf.size(), 8192, false, &r);
  // Submitted to all three before any completed: in parallel.
  for (auto* h : held) ASSERT_EQ(h->pending.size(), 1u);
  held[0]->complete_next();
  held[1]->complete_next();
  // The quorum holds it, but a copy still writes from the caller's buffer.
  EXPECT_EQ(r.calls, 0);
  held[2]->complete_next();
  EXPECT_EQ(r.calls, 1);
  EXPECT_EQ(r.value, 4096);
  for (auto* h : held) EXPECT_EQ(h->at(8192), 0xab);
  for (const auto& c : mirror->mirror_counters()->copies) EXPECT_EQ(c->writes.load(), 1u);
}

TEST_F(Mirror, AWriteIsAnsweredAtQuorumWhileTheCopiesBehindWriteAPrivateCopyOfIt) {
  build(3, 2);
  own();
  std::vector<std::uint8_t> buf(4096, 0xab);
  Result r;
  mirror->write(buf.data(), buf.size(), 8192, false, &r);
  held[0]->complete_next();
  EXPECT_EQ(r.calls, 0);
  held[1]->complete_next();
  ASSERT_EQ(r.calls, 1);
  EXPECT_EQ(r.value, 4096);
  EXPECT_EQ(behind(2), 1u);
  EXPECT_EQ(behind(0), 0u);
  // The caller's buffer is reused at once; the copy behind must not see it.
  std::fill(buf.begin(), buf.end(), 0xcd);
  held[2]->complete_next();
  EXPECT_EQ(r.calls, 1);
  for (auto* h : held) EXPECT_EQ(h->at(8192), 0xab);
  EXPECT_EQ(behind(2), 0u);
  const auto& m = *mirror->mirror_counters();
  EXPECT_EQ(m.writes_at_quorum_only.load(), 1u);
  EXPECT_EQ(m.writes_on_all_copies.load(), 0u);
}

TEST_F(Mirror, AWriteIsNotAnsweredWhileACopyBeforeTheQuorumIsStillWriting) {
  // The primary (the source of reads and of a crash's resync) is the slow one.
  build(3, 2);
  own();
  std::vector<std::uint8_t> buf(4096, 0x11);
  Result r;
  mirror->write(buf.data(), buf.size(), 0, false, &r);
  held[1]->complete_next();
  held[2]->complete_next();
  EXPECT_EQ(r.calls, 0);
  held[0]->complete_next();
  EXPECT_EQ(r.calls, 1);
  EXPECT_EQ(r.value, 4096);
  EXPECT_EQ(mirror->mirror_counters()->writes_on_all_copies.load(), 1u);
}

TEST_F(Mirror, WithoutAnOwnerOrPastTheBoundOnDataBehindEveryCopyAnswersFirst) {
  build(2, 1);  // no owner
  std::vector<std::uint8_t> buf(4096, 0x12);
  Result r;
  mirror->write(buf.data(), buf.size(), 0, false, &r);
  held[0]->complete_next();
  EXPECT_EQ(r.calls, 0);
  held[1]->complete_next();
  EXPECT_EQ(r.calls, 1);

  held.clear();
  max_behind_bytes = 4096;
  build(2, 1);
  own();
  Result a, b;
  mirror->write(buf.data(), buf.size(), 0, false, &a);
  mirror->write(buf.data(), buf.size(), 65536, false, &b);
  held[0]->complete_next();
  held[0]->complete_next();
  EXPECT_EQ(a.calls, 1);  // 4 KiB behind: the bound
  EXPECT_EQ(b.calls, 0);  // would be 8 KiB: waits for the copy
  held[1]->complete_next();
  held[1]->complete_next();
  EXPECT_EQ(b.calls, 1);
  EXPECT_EQ(behind(1), 0u);
}

TEST_F(Mirror, AnUnmapWaitsForEveryCopySinceOneMayNotBeAbleToDoIt) {
  build(2, 1);
  own();
  Result r;
  mirror->unmap(0, 4096, &r);
  held[0]->complete_next();
  EXPECT_EQ(r.calls, 0);
  held[1]->complete_next(-EOPNOTSUPP);
  ASSERT_EQ(r.calls, 1);
  EXPECT_EQ(r.value, -EOPNOTSUPP);  // the caller falls back to writing zeroes everywhere
}

TEST_F(Mirror, HeldEarlyAnswersLetTheWritesBehindSettleBeforeAReloadHandsTheCopiesOn) {
  build(2, 1);
  own();
  write_behind(0, 0x17);
  mirror->hold_early_answers(true);
  EXPECT_FALSE(mirror->nothing_behind());
  std::vector<std::uint8_t> buf(4096, 0x18);
  Result b;
  mirror->write(buf.data(), buf.size(), 65536, false, &b);
  held[0]->complete_next();
  EXPECT_EQ(b.calls, 0) << "held: answered once every copy has it";
  held[1]->complete_next();
  EXPECT_TRUE(mirror->nothing_behind());
  held[1]->complete_next();
  EXPECT_EQ(b.calls, 1);
}

TEST_F(Mirror, TheOwnerIsHeldUntilTheLastCopyIsDone) {
  build(2, 1);
  own();
  std::weak_ptr<int> watch = owner;
  write_behind(0, 0x13);
  owner.reset();  // the LU is dropped while its write is still behind
  EXPECT_FALSE(watch.expired());
  held[1]->complete_next();
  EXPECT_TRUE(watch.expired());
}

TEST_F(Mirror, ACopyThatFailsAWriteItWasBehindOnLeavesWithTheRegionDirty) {
  build(2, 1);
  own();
  write_behind(0, 0x14);
  held[1]->complete_next(-EIO);
  EXPECT_FALSE(mirror->in_sync(1));
  EXPECT_GT(mirror->dirty_bytes(1), 0u);
  EXPECT_EQ(behind(1), 0u);
}

TEST_F(Mirror, AReadOfACopyWithAnOverlappingWriteBehindWaitsForIt) {
  build(3, 1);
  own();
  write_behind(4096, 0x77);
  // The primary, which held it, goes: disk2 is the first in sync, behind.
  mirror->mark_out_of_sync(0, "test", 0);
  std::vector<std::uint8_t> got(4096, 0);
  Result r;
  mirror->read(got.data(), got.size(), 4096, &r);
  EXPECT_EQ(held[1]->pending.size(), 1u);  // only the write: the read waits
  held[1]->complete_next();
  EXPECT_EQ(held[1]->pending.size(), 0u);  // still: the write goes on on disk3
  held[2]->complete_next();
  ASSERT_EQ(held[1]->pending.size(), 1u);  // the read, now
  held[1]->complete_next();
  ASSERT_EQ(r.calls, 1);
  EXPECT_EQ(r.value, 4096);
  EXPECT_EQ(got[0], 0x77);
}

TEST_F(Mirror, AReadWhoseCopyFailedTheWriteItWaitedForIsServedByAnother) {
  build(3, 1);
  own();
  write_behind(0, 0x78);
  mirror->mark_out_of_sync(0, "test", 0);
  std::vector<std::uint8_t> got(4096, 0);
  Result r;
  mirror->read(got.data(), got.size(), 0, &r);
  held[1]->complete_next(-EIO);  // disk2 fails the write behind: out of sync
  held[2]->complete_next();
  ASSERT_EQ(held[2]->pending.size(), 1u);  // the read went to disk3
  ASSERT_TRUE(held[1]->pending.empty());   // no repair of disk2: its resync mends it
  held[2]->complete_next();
  ASSERT_EQ(r.calls, 1);
  EXPECT_EQ(r.value, 4096);
  EXPECT_EQ(got[0], 0x78);
  EXPECT_EQ(mirror->mirror_counters()->read_repairs.load(), 0u);
}

TEST_F(Mirror, UnderWritebackAFlushWaitsForTheWritesBehindBeforeIt) {
  policy = WriteAckPolicy::writeback;
  build(2, 1);
  own();
  write_behind(0, 0x15);
  Result f;
  mirror->flush(&f);
  EXPECT_TRUE(held[0]->pending.empty());  // not yet: disk2 is behind
  held[1]->complete_next();
  ASSERT_EQ(held[0]->pending.size(), 1u);
  ASSERT_EQ(held[1]->pending.size(), 1u);
  held[0]->complete_next();
  EXPECT_EQ(f.calls, 1);  // at quorum, disk2 after the primary
  EXPECT_EQ(f.value, 0);
  held[1]->complete_next();
  EXPECT_EQ(f.calls, 1);
}

TEST_F(Mirror, UnderWritethroughAFlushDoesNotWaitForTheWritesBehind) {
  build(2, 1);
  own();
  write_behind(0, 0x16);
  Result f;
  mirror->flush(&f);
  ASSERT_EQ(held[0]->pending.size(), 1u);  // the flush, at once
  held[0]->complete_next();
  EXPECT_EQ(f.calls, 1);
  held[1]->complete_next();
  held[1]->complete_next();
}

std::uint64_t latency_samples(const metrics::MirrorCounters::Copy& c) {
  std::uint64_t n = 0;
  for (const auto& b : c.write_latency) n += b.load();
  return n;
}

TEST_F(Mirror, EachCopysWriteLatencyIsTimedFromTheFanOut) {
  build(2, 1);
  std::vector<std::uint8_t> buf(4096, 0x5c);
  Result r;
  mirror->write(buf.data(), buf.size(), 0, false, &r);
  held[0]->complete_next();
  std::this_thread::sleep_for(std::chrono::milliseconds(3));  // the slow copy
  held[1]->complete_next();
  const auto& copies = mirror->mirror_counters()->copies;
  EXPECT_EQ(latency_samples(*copies[0]), 1u);
  EXPECT_EQ(latency_samples(*copies[1]), 1u);
  EXPECT_GE(copies[1]->write_latency_sum_ns.load(), 3'000'000u);
  EXPECT_LT(copies[0]->write_latency_sum_ns.load(), copies[1]->write_latency_sum_ns.load());
  // Flushes and zeroings are not data writes: not timed.
  Result f;
  mirror->flush(&f);
  mirror->write_zeroes(8192, 4096, false, &r);
  complete_all_once();
  complete_all_once();
  EXPECT_EQ(latency_samples(*copies[0]), 1u);
}

TEST_F(Mirror, WritesAreCountedOnAllCopiesOrAtQuorumOnly) {
  build(3, 2);
  std::vector<std::uint8_t> buf(4096, 0x21);
  const auto& m = *mirror->mirror_counters();
  Result r;
  mirror->write(buf.data(), buf.size(), 0, false, &r);
  complete_all_once();
  EXPECT_EQ(m.writes_on_all_copies.load(), 1u);
  EXPECT_EQ(m.writes_at_quorum_only.load(), 0u);
  // A copy fails this one: GOOD at quorum, not on all copies.
  mirror->write(buf.data(), buf.size(), 4096, false, &r);
  held[0]->complete_next();
  held[1]->complete_next();
  held[2]->complete_next(-EIO);
  EXPECT_EQ(r.value, 4096);
  mirror->unmap(8192, 4096, &r);
  held[0]->complete_next();
  held[1]->complete_next();
  EXPECT_EQ(m.writes_on_all_copies.load(), 1u);
  EXPECT_EQ(m.writes_at_quorum_only.load(), 2u);
  // A flush is not a write; a failed write is not counted.
  mirror->flush(&r);
  held[0]->complete_next();
  held[1]->complete_next();
  mirror->write(buf.data(), buf.size(), 0, false, &r);
  held[0]->complete_next(-EIO);
  held[1]->complete_next();
  EXPECT_LT(r.value, 0);
  EXPECT_EQ(m.writes_on_all_copies.load() + m.writes_at_quorum_only.load(), 3u);
}

TEST_F(Mirror, AFailedCopyLeavesTheSetAndWritesGoOnAtQuorum) {
  build(3, 2);
  std::vector<std::uint8_t> buf(4096, 0x11);
  Result r;
  mirror->write(buf.data(), buf.size(), 0, false, &r);
  held[0]->complete_next();
  held[1]->complete_next();
  held[2]->complete_next(-EIO);
  EXPECT_EQ(r.value, 4096);
  EXPECT_FALSE(mirror->in_sync(2));
  EXPECT_EQ(mirror->in_sync_count(), 2u);
  EXPECT_EQ(mirror->mirror_counters()->quorum_losses.load(), 0u);

  // Out of the set: the next write does not go to it.
  Result r2;
  mirror->write(buf.data(), buf.size(), 4096, true, &r2);
  EXPECT_EQ(held[2]->pending.size(), 0u);
  held[0]->complete_next();
  held[1]->complete_next();
  EXPECT_EQ(r2.value, 4096);
  EXPECT_EQ(mirror->mirror_counters()->copies[2]->writes.load(), 0u);
}

TEST_F(Mirror, BelowQuorumFailAnswersTheQuorumErrorAndTouchesNoCopy) {
  build(3, 2);
  std::vector<std::uint8_t> buf(512, 0x22);
  Result r;
  mirror->write(buf.data(), buf.size(), 0, false, &r);
  held[0]->complete_next();
  held[1]->complete_next(-EIO);
  held[2]->complete_next(-ENOSPC);
  EXPECT_EQ(r.value, kQuorumLostError);
  EXPECT_EQ(mirror->in_sync_count(), 1u);
  EXPECT_EQ(mirror->mirror_counters()->quorum_losses.load(), 1u);

  Result r2, f;
  mirror->write(buf.data(), buf.size(), 512, false, &r2);
  mirror->flush(&f);
  EXPECT_EQ(r2.value, kQuorumLostError);
  EXPECT_EQ(f.value, kQuorumLostError);
  EXPECT_TRUE(held[0]->pending.empty());
  // Reads go on from the copy that is left.
  std::vector<std::uint8_t> in(512);
  Result rd;
  mirror->read(in.data(), in.size(), 0, &rd);
  held[0]->complete_next();
  EXPECT_EQ(rd.value, 512);
  EXPECT_EQ(in[0], 0x22);
}

TEST_F(Mirror, BelowQuorumReadOnlyAnswersWriteProtected) {
  build(2, 2, QuorumLossAction::read_only);
  std::vector<std::uint8_t> buf(512, 0x33);
  Result r;
  mirror->write(buf.data(), buf.size(), 0, false, &r);
  held[0]->complete_next(-EIO);
  held[1]->complete_next();
  EXPECT_EQ(r.value, kQuorumReadOnlyError);
  EXPECT_FALSE(mirror->in_sync(0));
  // The primary is out: reads come from the copy that is in sync.
  std::vector<std::uint8_t> in(512);
  Result rd;
  mirror->read(in.data(), in.size(), 0, &rd);
  EXPECT_TRUE(held[0]->pending.empty());
  held[1]->complete_next();
  EXPECT_EQ(rd.value, 512);
  EXPECT_EQ(in[0], 0x33);
}

// on_quorum_loss = "wait": writes and flushes wait, touching no copy and
// holding no range, until a resync brings the quorum back; then they go on,
// on their own thread.
TEST_F(Mirror, BelowQuorumWaitHoldsWritesUntilTheQuorumIsBack) {
  build(2, 2, QuorumLossAction::wait, kRegion);
  ringtgt::testing::HomeEngine home;
  held[0]->fill(0, kRegion, 0x5a);            // what the copy missed
  mirror->mark_out_of_sync(1, "test", -EIO);  // 1 of 2 in sync: below quorum
  mirror->mark_dirty(1, 0, 1);
  std::vector<std::uint8_t> buf(4096, 0x77);
  Result w, f;
  mirror->write(buf.data(), buf.size(), 0, false, &w);  // in the region the resync copies
  mirror->flush(&f);
  EXPECT_EQ(w.calls + f.calls, 0);
  for (auto* h : held) EXPECT_TRUE(h->pending.empty());
  EXPECT_EQ(mirror->mirror_counters()->writes_waiting_for_quorum.load(), 2u);
  EXPECT_EQ(home.foreign.outstanding(), 2u) << "the reactor may not stop while they wait";

  ASSERT_EQ(mirror->begin_resync(1), "");
  mirror->run_resync(1, nullptr);
  EXPECT_EQ(complete_probes(), 7) << "region 0 is dirty: 7 of the 8 probed are clean";
  ASSERT_EQ(held[0]->pending.size(), 1u) << "the waiting write does not hold region 0";
  held[0]->complete_next();
  held[1]->complete_next();
  EXPECT_EQ(mirror->in_sync_count(), 2u);
  EXPECT_EQ(w.calls, 0) << "answered on its own thread, not the resync's";
  home.wait_and_drain();
  EXPECT_EQ(mirror->mirror_counters()->writes_waiting_for_quorum.load(), 0u);
  ASSERT_EQ(held[1]->pending.size(), 2u);  // the write, then the flush
  complete_all_once();
  complete_all_once();
  EXPECT_EQ(w.value, 4096);
  EXPECT_EQ(f.value, 0);
  EXPECT_EQ(held[1]->at(0), 0x77) << "the write lands after the region's resync";
  EXPECT_EQ(mirror->mirror_counters()->writes_on_all_copies.load(), 1u);
}

TEST_F(Mirror, BelowQuorumWaitAnswersTheQuorumErrorWhenTheTimeIsUp) {
  quorum_wait = std::chrono::milliseconds(50);
  build(2, 2, QuorumLossAction::wait);
  ringtgt::testing::HomeEngine home;
  mirror->mark_out_of_sync(1, "test", -EIO);
  std::vector<std::uint8_t> buf(4096, 0x77);
  Result w;
  const auto asked = std::chrono::steady_clock::now();
  mirror->write(buf.data(), buf.size(), 0, false, &w);
  EXPECT_EQ(w.calls, 0);
  home.wait_and_drain();
  EXPECT_GE(std::chrono::steady_clock::now() - asked, std::chrono::milliseconds(50));
  EXPECT_EQ(w.calls, 1);
  EXPECT_EQ(w.value, kQuorumLostError);
  for (auto* h : held) EXPECT_TRUE(h->pending.empty());
  EXPECT_EQ(mirror->mirror_counters()->writes_waiting_for_quorum.load(), 0u);
  EXPECT_EQ(home.foreign.outstanding(), 0u);
}

TEST_F(Mirror, BelowQuorumWaitWithoutALoopToComeBackToAnswersAtOnce) {
  build(2, 2, QuorumLossAction::wait);
  mirror->mark_out_of_sync(1, "test", -EIO);
  std::vector<std::uint8_t> buf(4096, 0x77);
  Result w;
  mirror->write(buf.data(), buf.size(), 0, false, &w);
  EXPECT_EQ(w.value, kQuorumLostError);
  EXPECT_TRUE(held[0]->pending.empty());
}

TEST_F(Mirror, OverlappingWritesApplyInArrivalOrderOnEveryCopy) {
  build(2, 2);
  std::vector<std::uint8_t> a(4096, 0xaa), b(4096, 0xbb), c(4096, 0xcc), d(4096, 0xdd);
  Result ra, rb, rc, rd;
  mirror->write(a.data(), a.size(), 0, false, &ra);
  mirror->write(b.data(), b.size(), 2048, false, &rb);   // overlaps a
  mirror->write(c.data(), c.size(), 65536, false, &rc);  // overlaps nothing
  mirror->write(d.data(), d.size(), 4096, false, &rd);   // overlaps b only, which waits
  // a and c are in flight on both copies; b waits for a, d for b.
  for (auto* h : held) ASSERT_EQ(h->pending.size(), 2u);
  // Complete a on the second copy first: b still waits for the primary.
  held[1]->complete_next();
  EXPECT_EQ(held[1]->pending.size(), 1u);
  held[0]->complete_next();
  EXPECT_EQ(ra.value, 4096);
  // Now b is submitted to both; d still waits for it.
  for (auto* h : held) ASSERT_EQ(h->pending.size(), 2u);  // c and b
  complete_all_once();                                    // c
  EXPECT_EQ(rc.value, 4096);
  EXPECT_EQ(rd.calls, 0);
  complete_all_once();  // b
  EXPECT_EQ(rb.value, 4096);
  complete_all_once();  // d
  EXPECT_EQ(rd.value, 4096);
  for (auto* h : held) {
    EXPECT_EQ(h->at(0), 0xaa);
    EXPECT_EQ(h->at(2047), 0xaa);
    EXPECT_EQ(h->at(2048), 0xbb);
    EXPECT_EQ(h->at(4095), 0xbb);
    EXPECT_EQ(h->at(4096), 0xdd);
    EXPECT_EQ(h->at(65536), 0xcc);
  }
}

TEST_F(Mirror, AFailedReadIsServedFromACopyAndRepaired) {
  build(3, 2);
  held[0]->fill(0, 4096, 0x00);  // the primary's blocks are bad
  held[1]->fill(0, 4096, 0x77);
  held[2]->fill(0, 4096, 0x77);
  std::vector<std::uint8_t> in(4096);
  Result r;
  mirror->read(in.data(), in.size(), 0, &r);
  held[0]->complete_next(-EIO);
  // Read from the next in-sync copy.
  ASSERT_EQ(held[1]->pending.size(), 1u);
  // A write to those blocks meanwhile waits for the repair.
  std::vector<std::uint8_t> w(512, 0x99);
  Result rw;
  mirror->write(w.data(), w.size(), 0, false, &rw);
  EXPECT_TRUE(held[2]->pending.empty());
  held[1]->complete_next();
  // ... and written back to the primary, durably.
  ASSERT_EQ(held[0]->pending.size(), 1u);
  EXPECT_EQ(held[0]->pending.front().kind, HeldBackend::Kind::write);
  held[0]->complete_next();
  EXPECT_EQ(r.value, 4096);
  EXPECT_EQ(in[0], 0x77);
  EXPECT_EQ(held[0]->at(100), 0x77);
  EXPECT_TRUE(mirror->in_sync(0));
  EXPECT_EQ(mirror->mirror_counters()->read_repairs.load(), 1u);
  // The held write starts now, after the repair.
  for (auto* h : held) ASSERT_EQ(h->pending.size(), 1u);
  complete_all_once();
  EXPECT_EQ(rw.value, 512);
  EXPECT_EQ(held[0]->at(0), 0x99);
}

TEST_F(Mirror, AReadThatFailsEverywhereReportsTheFirstError) {
  build(2, 1);
  std::vector<std::uint8_t> in(512);
  Result r;
  mirror->read(in.data(), in.size(), 0, &r);
  held[0]->complete_next(-EIO);
  held[1]->complete_next(-ENODATA);
  EXPECT_EQ(r.value, -EIO);
  EXPECT_EQ(mirror->mirror_counters()->read_repairs.load(), 0u);
}

TEST_F(Mirror, ARepairThatCannotBeWrittenTakesTheCopyOut) {
  build(2, 1);
  std::vector<std::uint8_t> in(512);
  Result r;
  mirror->read(in.data(), in.size(), 0, &r);
  held[0]->complete_next(-EIO);
  held[1]->complete_next();
  held[0]->complete_next(-EIO);  // the write back
  EXPECT_EQ(r.value, 512);       // the data itself was good
  EXPECT_FALSE(mirror->in_sync(0));
}

TEST_F(Mirror, FlushAndZeroesGoEverywhere) {
  build(2, 2);
  Result f;
  mirror->flush(&f);
  for (auto* h : held) ASSERT_EQ(h->pending.size(), 1u);
  complete_all_once();
  EXPECT_EQ(f.value, 0);
  // A copy that cannot zero: the caller falls back to writing zeroes, and
  // nobody leaves the set for it.
  Result z;
  mirror->write_zeroes(0, 4096, false, &z);
  held[0]->complete_next();
  held[1]->complete_next(-EOPNOTSUPP);
  EXPECT_EQ(z.value, -EOPNOTSUPP);
  EXPECT_EQ(mirror->in_sync_count(), 2u);
  Result u;
  mirror->unmap(0, 8192, &u);
  complete_all_once();
  EXPECT_EQ(u.value, 0);
}

TEST_F(Mirror, InlineCompletionsAreCountedOnce) {
  // Copies that complete before the call returns (RAM backends).
  std::vector<MirrorCopy> v;
  v.push_back({"primary", "", std::make_unique<MemoryBackend>(kSize), ""});
  v.push_back({"b", "", std::make_unique<MemoryBackend>(kSize), ""});
  MirrorOptions o;
  o.ack_quorum = 2;
  MirroredBackend m(std::move(v), o);
  std::vector<std::uint8_t> buf(512, 0x5c), in(512);
  Result w, r;
  m.write(buf.data(), buf.size(), 0, true, &w);
  m.read(in.data(), in.size(), 0, &r);
  EXPECT_EQ(w.calls, 1);
  EXPECT_EQ(w.value, 512);
  EXPECT_EQ(in[0], 0x5c);
}

// --- resynchronisation (16 regions of kRegion) ---

TEST_F(Mirror, AnOutOfSyncCopyRecordsOnlyTheRegionsItMisses) {
  build(2, 1, QuorumLossAction::fail, kRegion);
  mirror->mark_out_of_sync(1, "test", -EIO);
  EXPECT_EQ(mirror->copy_state(1), MirroredBackend::CopyState::out_of_sync);
  std::vector<std::uint8_t> buf(8192, 0x77);
  Result r;
  // Across the border of regions 2 and 3.
  mirror->write(buf.data(), buf.size(), 3 * kRegion - 4096, false, &r);
  EXPECT_EQ(held[1]->pending.size(), 0u);
  held[0]->complete_next();
  EXPECT_EQ(r.value, 8192);
  Result u;
  mirror->unmap(10 * kRegion, 4096, &u);
  held[0]->complete_next();
  EXPECT_EQ(mirror->dirty_bytes(1), 3 * kRegion);
  EXPECT_EQ(mirror->mirror_counters()->copies[1]->dirty_bytes.load(), 3 * kRegion);
  EXPECT_EQ(mirror->dirty_bytes(0), 0u);
}

TEST_F(Mirror, AResyncCopiesTheDirtyRegionsAndTheCopyRejoins) {
  build(2, 1, QuorumLossAction::fail, kRegion);
  held[0]->fill(5 * kRegion, kRegion, 0x5a);  // what the copy missed
  EXPECT_NE(mirror->begin_resync(1), "") << "an in-sync copy is not resynced";
  mirror->mark_out_of_sync(1, "test", -EIO);
  mirror->mark_dirty(1, 5 * kRegion + 100, 1);
  EXPECT_EQ(mirror->begin_resync(1), "");
  EXPECT_NE(mirror->begin_resync(1), "") << "one resync at a time";
  mirror->run_resync(1, nullptr);
  EXPECT_EQ(complete_probes(), 8) << "regions 0, 2, .. 14: clean and equal";
  ASSERT_EQ(held[0]->pending.size(), 1u);
  EXPECT_EQ(held[0]->pending.front().offset, 5 * kRegion);
  EXPECT_EQ(held[0]->pending.front().len, kRegion);
  held[0]->complete_next();  // the read from the in-sync copy
  ASSERT_EQ(held[1]->pending.size(), 1u);
  held[1]->complete_next();  // the write to the resyncing copy
  EXPECT_EQ(mirror->copy_state(1), MirroredBackend::CopyState::in_sync);
  EXPECT_EQ(mirror->in_sync_count(), 2u);
  EXPECT_EQ(mirror->dirty_bytes(1), 0u);
  EXPECT_EQ(held[1]->at(5 * kRegion), 0x5a);
  EXPECT_EQ(held[1]->at(6 * kRegion - 1), 0x5a);
  EXPECT_EQ(held[1]->at(6 * kRegion), 0x00) << "a clean region is not copied";
  EXPECT_EQ(mirror->mirror_counters()->copies[1]->resynced_bytes.load(), kRegion);
}

TEST_F(Mirror, ACopyWhoseStoreDiffersInACleanRegionIsSyncedInFull) {
  build(2, 1, QuorumLossAction::fail, kRegion);
  held[0]->fill(4 * kRegion, kRegion, 0x5a);  // not missed by the copy: it was made anew
  held[0]->fill(9 * kRegion, kRegion, 0x66);  // missed, and not probed (odd)
  mirror->mark_out_of_sync(1, "test", -EIO);
  mirror->mark_dirty(1, 0, 1);
  ASSERT_EQ(mirror->begin_resync(1), "");
  mirror->run_resync(1, nullptr);
  EXPECT_EQ(complete_probes(), 2) << "region 0 dirty; 2 equal, 4 differs: no more probes";
  EXPECT_EQ(mirror->dirty_bytes(1), kSize) << "every region is dirty";
  for (int i = 0; i < 64 && !(held[0]->pending.empty() && held[1]->pending.empty()); ++i) {
    if (!held[0]->pending.empty()) held[0]->complete_next();
    if (!held[1]->pending.empty()) held[1]->complete_next();
  }
  EXPECT_EQ(mirror->copy_state(1), MirroredBackend::CopyState::in_sync);
  EXPECT_EQ(mirror->mirror_counters()->copies[1]->resynced_bytes.load(), kSize);
  EXPECT_EQ(held[1]->at(4 * kRegion), 0x5a);
  EXPECT_EQ(held[1]->at(9 * kRegion + 7), 0x66);
}

TEST_F(Mirror, AWriteToARegionBeingCopiedWaitsAndLandsAfterTheCopy) {
  build(2, 1, QuorumLossAction::fail, kRegion);
  held[0]->fill(0, kRegion, 0x5a);
  mirror->mark_out_of_sync(1, "test", -EIO);
  mirror->mark_dirty(1, 0, 1);
  ASSERT_EQ(mirror->begin_resync(1), "");
  mirror->run_resync(1, nullptr);
  complete_probes();
  ASSERT_EQ(held[0]->pending.size(), 1u);  // region 0 read from the primary
  std::vector<std::uint8_t> buf(4096, 0x99);
  Result w;
  mirror->write(buf.data(), buf.size(), 4096, false, &w);
  EXPECT_EQ(held[0]->pending.size(), 1u) << "the write waits for the region's copy";
  held[0]->complete_next();
  held[1]->complete_next();  // the region's old data lands on the copy
  // Now the write goes to both, the resyncing copy too (it rejoined already:
  // nothing else was dirty).
  ASSERT_EQ(held[0]->pending.size(), 1u);
  ASSERT_EQ(held[1]->pending.size(), 1u);
  held[0]->complete_next();
  held[1]->complete_next();
  EXPECT_EQ(w.value, 4096);
  EXPECT_EQ(held[1]->at(4096), 0x99) << "the stale copy did not overwrite the write";
  EXPECT_EQ(held[1]->at(0), 0x5a);
  EXPECT_EQ(mirror->copy_state(1), MirroredBackend::CopyState::in_sync);
}

TEST_F(Mirror, WritesDuringAResyncGoToTheCopyWithoutCountingForTheQuorum) {
  build(2, 1, QuorumLossAction::fail, kRegion);
  mirror->mark_out_of_sync(1, "test", -EIO);
  mirror->mark_dirty(1, 0, 1);
  ASSERT_EQ(mirror->begin_resync(1), "");
  // Not run yet: the copy is resyncing, region 0 dirty.
  std::vector<std::uint8_t> buf(4096, 0x42);
  Result w;
  mirror->write(buf.data(), buf.size(), 8 * kRegion, false, &w);
  ASSERT_EQ(held[1]->pending.size(), 1u) << "a resyncing copy gets the writes";
  held[1]->complete_next(-EIO);  // it fails: the resync stops, the region is dirty
  EXPECT_EQ(w.calls, 0);
  held[0]->complete_next();
  EXPECT_EQ(w.value, 4096) << "the in-sync primary alone is the quorum";
  EXPECT_EQ(mirror->copy_state(1), MirroredBackend::CopyState::out_of_sync);
  EXPECT_EQ(mirror->dirty_bytes(1), 2 * kRegion);
}

TEST_F(Mirror, ACopyThatLosesItsConnectionLeavesAndIsResyncedWhenItIsBack) {
  build(2, 1);
  held[1]->connects = 1;
  EXPECT_TRUE(mirror->check_connections().empty());
  EXPECT_TRUE(mirror->in_sync(1));
  // Down: out of the set even without a write, and shown connecting.
  held[1]->up = false;
  EXPECT_TRUE(mirror->check_connections().empty());
  EXPECT_FALSE(mirror->in_sync(1));
  const auto& c = *mirror->mirror_counters()->copies[1];
  EXPECT_EQ(c.shown_state(), MirrorCounters::State::connecting);
  EXPECT_EQ(mirror->copy_state(1), MirrorCounters::State::out_of_sync);
  std::vector<std::uint8_t> buf(4096, 0x5a);
  Result r;
  mirror->write(buf.data(), buf.size(), 0, true, &r);
  held[0]->complete_next();
  EXPECT_EQ(r.value, 4096);
  EXPECT_EQ(mirror->dirty_bytes(1), kSize);  // one region of 1 MiB
  // Back with a new connection: it is the one to resync.
  held[1]->up = true;
  held[1]->connects = 2;
  EXPECT_EQ(mirror->check_connections(), std::vector<std::size_t>{1});
  EXPECT_EQ(c.shown_state(), MirrorCounters::State::out_of_sync);
  EXPECT_EQ(mirror->begin_resync(1), "");
  EXPECT_TRUE(mirror->check_connections().empty());  // resyncing: nothing more to start
}

TEST_F(Mirror, ACopyWhoseFailureArrivesAfterItsReconnectIsStillResynced) {
  build(2, 1);
  held[1]->connects = 1;
  std::vector<std::uint8_t> buf(4096, 0x5a);
  Result r;
  mirror->write(buf.data(), buf.size(), 0, true, &r);
  // The connection drops and comes back before the write's failure is
  // handed to the mirror: it sees connection 2 already.
  held[1]->connects = 2;
  held[0]->complete_next();
  held[1]->complete_next(-ENOTCONN);
  EXPECT_EQ(r.value, 4096);
  EXPECT_EQ(mirror->copy_state(1), MirrorCounters::State::out_of_sync);
  EXPECT_EQ(mirror->check_connections(), std::vector<std::size_t>{1});
  EXPECT_TRUE(mirror->check_connections().empty()) << "reported once";
  // A medium error on a connected copy is not a reason to resync by itself.
  build(2, 1);
  held[3]->connects = 1;
  Result r2;
  mirror->write(buf.data(), buf.size(), 0, true, &r2);
  held[2]->complete_next();
  held[3]->complete_next(-EIO);
  EXPECT_EQ(mirror->copy_state(1), MirrorCounters::State::out_of_sync);
  EXPECT_TRUE(mirror->check_connections().empty());
}

TEST_F(Mirror, ACopyTakenOutWhileConnectedIsNotResyncedByItself) {
  build(2, 1);
  held[1]->connects = 1;
  mirror->mark_out_of_sync(1, "taken out by a test", 0);
  EXPECT_TRUE(mirror->check_connections().empty());
  EXPECT_EQ(mirror->mirror_counters()->copies[1]->shown_state(),
            MirrorCounters::State::out_of_sync);
}

TEST_F(Mirror, NoResyncWithoutAnInSyncCopyToCopyFrom) {
  build(2, 1, QuorumLossAction::fail, kRegion);
  mirror->mark_out_of_sync(1, "test", -EIO);
  mirror->mark_out_of_sync(0, "test", -EIO);
  EXPECT_NE(mirror->begin_resync(1), "");
  EXPECT_EQ(mirror->copy_state(1), MirroredBackend::CopyState::out_of_sync);
}

// --- the state file: bitmaps and the activity log across restarts ---
class MirrorState : public Mirror {
 protected:
  void SetUp() override {
    char dir[] = "/tmp/ringtgt-mirror-state-XXXXXX";
    ASSERT_NE(::mkdtemp(dir), nullptr);
    dir_ = dir;
    state_path = dir_ + "/mirror.state";
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  // A second backend over the file, as a restart sees it. While the first
  // lives (it did not stop cleanly: a crash), over a copy of the file, as
  // another process would: over the same one, it would be the first's
  // replacement in a reload (open_replacement).
  std::unique_ptr<MirroredBackend> reopen(std::vector<std::string> where = {"", ""}) {
    std::string path = state_path;
    if (mirror) {
      path = dir_ + "/after-crash-" + std::to_string(++crashes_) + ".state";
      std::filesystem::copy_file(state_path, path);
    }
    return open_over(path, where);
  }
  // The LU a reload opens while the first still serves.
  std::unique_ptr<MirroredBackend> open_replacement() { return open_over(state_path, {"", ""}); }
  std::unique_ptr<MirroredBackend> open_over(const std::string& path,
                                             std::vector<std::string> where,
                                             std::uint64_t region_size = kRegion) {
    std::vector<MirrorCopy> v;
    v.push_back({"primary", "", std::make_unique<HeldBackend>(kSize), where[0]});
    v.push_back({"disk2", "", std::make_unique<HeldBackend>(kSize), where[1]});
    MirrorOptions o;
    o.lun_label = "target t LUN 1 (restarted)";
    o.region_size = region_size;
    o.state_path = path;
    return std::make_unique<MirroredBackend>(std::move(v), o);
  }
  // A 4 KiB write at 7 * kRegion, left in flight on both copies (a crash or
  // a reload comes now); in_flight.value once it is answered.
  void start_write_in_flight() {
    mirror->write(in_flight_data.data(), in_flight_data.size(), 7 * kRegion, false, &in_flight);
    ASSERT_EQ(held[1]->pending.size(), 1u);
  }
  std::vector<std::uint8_t> in_flight_data = std::vector<std::uint8_t>(4096, 0x31);
  Result in_flight;
  std::string dir_;
  int crashes_ = 0;
};

TEST_F(MirrorState, AReloadsReplacementTakesTheHotRegionsOverWithoutAResync) {
  build(2, 1, QuorumLossAction::fail, kRegion);
  start_write_in_flight();
  auto next = open_replacement();
  EXPECT_EQ(next->copy_state(1), MirroredBackend::CopyState::in_sync) << "no crash: no resync";
  EXPECT_EQ(next->dirty_bytes(1), 0u);
  EXPECT_TRUE(next->take_resync_at_start().empty());
  // The old LU's write fails on disk2: the replacement learns it.
  held[0]->complete_next();
  held[1]->complete_next(-EIO);
  EXPECT_EQ(in_flight.value, 4096);
  EXPECT_EQ(mirror->copy_state(1), MirroredBackend::CopyState::out_of_sync);
  EXPECT_EQ(next->copy_state(1), MirroredBackend::CopyState::out_of_sync);
  EXPECT_EQ(next->dirty_bytes(1), kRegion) << "the region the old LU's write missed";
  // The old LU goes; the file is the replacement's (a crash now: region 7
  // dirty on disk2, which is out of sync).
  mirror.reset();
  std::filesystem::copy_file(state_path, dir_ + "/crash.state");
  auto crashed = open_over(dir_ + "/crash.state", {"", ""});
  EXPECT_EQ(crashed->copy_state(1), MirroredBackend::CopyState::out_of_sync);
  EXPECT_EQ(crashed->dirty_bytes(1), kRegion);
}

TEST_F(MirrorState, ADroppedReplacementLeavesTheFileToTheLiveLu) {
  build(2, 1, QuorumLossAction::fail, kRegion);
  auto next = open_replacement();
  next.reset();  // the reload failed after opening it
  mirror->mark_dirty(1, 3 * kRegion, 1);
  mirror->mark_out_of_sync(1, "test", -EIO);  // the file is written, with the bitmap
  std::filesystem::copy_file(state_path, dir_ + "/crash.state");
  auto crashed = open_over(dir_ + "/crash.state", {"", ""});
  EXPECT_EQ(crashed->copy_state(1), MirroredBackend::CopyState::out_of_sync)
      << "the live LU writes its file again";
  EXPECT_EQ(crashed->dirty_bytes(1), kRegion);
}

TEST_F(MirrorState, RegionsWithWritesInFlightAtACrashAreResyncedAfterIt) {
  build(2, 1, QuorumLossAction::fail, kRegion);
  // In flight on both copies: the crash comes now.
  start_write_in_flight();
  auto after = reopen();
  EXPECT_EQ(after->copy_state(0), MirroredBackend::CopyState::in_sync);
  EXPECT_EQ(after->copy_state(1), MirroredBackend::CopyState::out_of_sync);
  EXPECT_EQ(after->dirty_bytes(1), kRegion) << "only the hot region";
  EXPECT_EQ(after->take_resync_at_start(), std::vector<std::size_t>{1});
  held[0]->complete_next();
  held[1]->complete_next();
  EXPECT_EQ(in_flight.value, 4096);
}

TEST_F(MirrorState, AWriteAnsweredBeforeACopyHadItIsResyncedToItAfterACrash) {
  build(2, 1, QuorumLossAction::fail, kRegion);
  own();
  write_behind(3 * kRegion, 0x32);
  auto after = reopen();
  EXPECT_EQ(after->copy_state(0), MirroredBackend::CopyState::in_sync) << "the source";
  EXPECT_EQ(after->copy_state(1), MirroredBackend::CopyState::out_of_sync);
  EXPECT_EQ(after->dirty_bytes(1), kRegion);
  held[1]->complete_next();
}

TEST_F(MirrorState, AWriteToAHotRegionDoesNotWriteTheFile) {
  build(2, 1, QuorumLossAction::fail, kRegion);
  std::vector<std::uint8_t> buf(4096, 0x31);
  Result w;
  mirror->write(buf.data(), buf.size(), 0, false, &w);
  held[0]->complete_next();
  held[1]->complete_next();
  std::filesystem::remove(state_path);
  Result w2;
  mirror->write(buf.data(), buf.size(), 8192, false, &w2);
  held[0]->complete_next();
  held[1]->complete_next();
  EXPECT_EQ(w2.value, 4096);
  EXPECT_FALSE(std::filesystem::exists(state_path)) << "region 0 was hot already";
  Result w3;
  mirror->write(buf.data(), buf.size(), 2 * kRegion, false, &w3);
  EXPECT_TRUE(std::filesystem::exists(state_path)) << "a new region is logged before the write";
  held[0]->complete_next();
  held[1]->complete_next();
}

// On a reactor, a write to a region not yet hot waits for the file on the
// log's writer thread, and goes on to the copies back on its own thread.
TEST_F(MirrorState, ANewRegionIsLoggedOffTheReactorThread) {
  build(2, 1, QuorumLossAction::fail, kRegion);
  ringtgt::testing::HomeEngine home;
  std::vector<std::uint8_t> buf(4096, 0x31);
  Result w;
  mirror->write(buf.data(), buf.size(), 5 * kRegion, false, &w);
  EXPECT_TRUE(held[0]->pending.empty()) << "no copy is written before the region is logged";
  EXPECT_EQ(home.foreign.outstanding(), 1u);
  home.wait_and_drain();
  ASSERT_EQ(held[0]->pending.size(), 1u);
  ASSERT_EQ(held[1]->pending.size(), 1u);
  std::ifstream f(state_path);
  std::stringstream text;
  text << f.rdbuf();
  ActivityLog::Record r;
  ASSERT_TRUE(parse_activity_log(text.str(), r));
  ASSERT_FALSE(r.hot.empty());
  EXPECT_EQ(r.hot[0], std::uint64_t{1} << 5) << "region 5, durably hot before the write";
  held[0]->complete_next();
  held[1]->complete_next();
  EXPECT_EQ(w.value, 4096);
  // The region is hot now: the next write to it starts at once.
  Result w2;
  mirror->write(buf.data(), buf.size(), 5 * kRegion + 8192, false, &w2);
  EXPECT_EQ(held[0]->pending.size(), 1u);
  EXPECT_EQ(home.foreign.outstanding(), 0u);
  held[0]->complete_next();
  held[1]->complete_next();
  EXPECT_EQ(w2.value, 4096);
}

TEST_F(MirrorState, AWriteThatLostACopyIsAnsweredOnlyOnceTheFileSaysSo) {
  build(2, 1, QuorumLossAction::fail, kRegion);
  std::vector<std::uint8_t> buf(4096, 0x31);
  Result warm;
  mirror->write(buf.data(), buf.size(), 0, false, &warm);  // region 0 hot, synchronously
  complete_all_once();
  ASSERT_EQ(warm.value, 4096);
  ringtgt::testing::HomeEngine home;  // from here on, a reactor thread
  Result w;
  mirror->write(buf.data(), buf.size(), 0, false, &w);
  held[0]->complete_next();
  held[1]->complete_next(-EIO);  // the primary's copy fails on the reactor
  EXPECT_EQ(w.calls, 0) << "answered before the state file says disk2 is out of sync";
  EXPECT_EQ(home.foreign.outstanding(), 1u);
  home.wait_and_drain();
  EXPECT_EQ(w.value, 4096);
  auto record = [this] {
    std::ifstream f(state_path);
    std::stringstream text;
    text << f.rdbuf();
    ActivityLog::Record r;
    EXPECT_TRUE(parse_activity_log(text.str(), r));
    return r;
  };
  ActivityLog::Record r = record();
  ASSERT_EQ(r.copies.size(), 2u);
  EXPECT_FALSE(r.copies[1].in_sync) << "durably out of sync before the GOOD";
  // Recorded now: the next write that skips it is answered at once.
  Result w2;
  mirror->write(buf.data(), buf.size(), 4096, false, &w2);
  EXPECT_TRUE(held[1]->pending.empty());
  held[0]->complete_next();
  EXPECT_EQ(w2.value, 4096);
  EXPECT_EQ(home.foreign.outstanding(), 0u);
}

TEST_F(MirrorState, AnOutOfSyncCopyStaysOutWithItsBitmapAcrossACleanRestart) {
  build(2, 1, QuorumLossAction::fail, kRegion);
  mirror->mark_out_of_sync(1, "test", -EIO);
  std::vector<std::uint8_t> buf(4096, 0x31);
  Result w;
  mirror->write(buf.data(), buf.size(), 3 * kRegion, false, &w);
  held[0]->complete_next();
  mirror.reset();  // a clean stop
  held.clear();
  auto after = reopen();
  EXPECT_EQ(after->copy_state(1), MirroredBackend::CopyState::out_of_sync);
  EXPECT_EQ(after->dirty_bytes(1), kRegion);
  EXPECT_EQ(after->copy_state(0), MirroredBackend::CopyState::in_sync);
  after.reset();
  // A first start (no file: every copy in sync), a clean stop: nothing to resync.
  std::filesystem::remove(state_path);
  build(2, 1, QuorumLossAction::fail, kRegion);
  EXPECT_TRUE(std::filesystem::exists(state_path));
  mirror.reset();
  auto clean = reopen();
  EXPECT_EQ(clean->copy_state(1), MirroredBackend::CopyState::in_sync);
  EXPECT_TRUE(clean->take_resync_at_start().empty());
}

TEST_F(MirrorState, AnotherRegionSizeMapsTheDirtyRegionsOntoTheNewGrid) {
  build(2, 1, QuorumLossAction::fail, kRegion);
  mirror->mark_out_of_sync(1, "test", -EIO);
  mirror->mark_dirty(1, 3 * kRegion + 100, 1);  // region 3 of 64 KiB
  mirror->mark_dirty(1, 9 * kRegion, 1);        // region 9
  mirror.reset();                               // a clean stop
  held.clear();
  // Larger regions: each dirty one covers the 256 KiB region it falls in.
  auto larger = reopen({"", ""});
  larger.reset();
  std::filesystem::copy_file(state_path, dir_ + "/before.state");
  auto coarse = open_over(dir_ + "/before.state", {"", ""}, 4 * kRegion);
  EXPECT_EQ(coarse->copy_state(1), MirroredBackend::CopyState::out_of_sync);
  EXPECT_EQ(coarse->dirty_bytes(1), 2 * 4 * kRegion) << "regions 0 and 2 of 256 KiB";
  EXPECT_EQ(coarse->copy_state(0), MirroredBackend::CopyState::in_sync);
  EXPECT_EQ(coarse->take_resync_at_start(), std::vector<std::size_t>{1});
  // Smaller regions: the same bytes, in 16 KiB regions.
  auto fine = open_over(state_path, {"", ""}, kRegion / 4);
  EXPECT_EQ(fine->dirty_bytes(1), 2 * kRegion);
}

TEST_F(MirrorState, AnotherRegionSizeKeepsTheCopiesInSync) {
  build(2, 1, QuorumLossAction::fail, kRegion);
  mirror.reset();  // a clean stop, every copy in sync
  auto after = open_over(state_path, {"", ""}, 4 * kRegion);
  EXPECT_EQ(after->copy_state(1), MirroredBackend::CopyState::in_sync) << "no full sync";
  EXPECT_EQ(after->dirty_bytes(1), 0u);
  EXPECT_TRUE(after->take_resync_at_start().empty());
}

TEST_F(MirrorState, AnotherRegionSizeAfterACrashResyncsTheHotRegionsOnTheNewGrid) {
  build(2, 1, QuorumLossAction::fail, kRegion);
  start_write_in_flight();
  std::filesystem::copy_file(state_path, dir_ + "/crash.state");
  auto after = open_over(dir_ + "/crash.state", {"", ""}, 4 * kRegion);
  EXPECT_EQ(after->copy_state(1), MirroredBackend::CopyState::out_of_sync);
  EXPECT_EQ(after->dirty_bytes(1), 4 * kRegion) << "the 256 KiB region holding region 7";
  held[0]->complete_next();
  held[1]->complete_next();
  EXPECT_EQ(in_flight.value, 4096);
}

TEST_F(MirrorState, AReplacementWithAnotherRegionSizeTakesTheHotRegionsOver) {
  build(2, 1, QuorumLossAction::fail, kRegion);
  start_write_in_flight();
  auto next = open_over(state_path, {"", ""}, 4 * kRegion);
  EXPECT_EQ(next->copy_state(1), MirroredBackend::CopyState::in_sync) << "no crash: no resync";
  EXPECT_TRUE(next->take_resync_at_start().empty());
  held[0]->complete_next();
  held[1]->complete_next();
  EXPECT_EQ(in_flight.value, 4096);
  // The old LU goes while the region is still hot; a crash of the
  // replacement now resyncs that region, on its grid.
  mirror.reset();
  std::filesystem::copy_file(state_path, dir_ + "/crash.state");
  auto crashed = open_over(dir_ + "/crash.state", {"", ""}, 4 * kRegion);
  EXPECT_EQ(crashed->dirty_bytes(1), 4 * kRegion) << "region 7 of 64 KiB: region 1 of 256 KiB";
}

TEST_F(MirrorState, ACopyWhoseStoreMovedBetweenTwoRunsIsSyncedInFull) {
  locations = {"/p", "/c"};
  build(2, 1, QuorumLossAction::fail, kRegion);
  mirror.reset();  // a clean stop
  auto same = reopen({"/p", "/c"});
  EXPECT_EQ(same->copy_state(1), MirroredBackend::CopyState::in_sync);
  same.reset();
  auto moved = reopen({"/p", "/c2"});
  EXPECT_EQ(moved->copy_state(1), MirroredBackend::CopyState::out_of_sync);
  EXPECT_EQ(moved->dirty_bytes(1), kSize) << "a new store: every region";
  EXPECT_EQ(moved->copy_state(0), MirroredBackend::CopyState::in_sync);
  EXPECT_EQ(moved->take_resync_at_start(), std::vector<std::size_t>{1});
  EXPECT_TRUE(moved->take_resync_at_start().empty()) << "taken once";
  moved.reset();
  // Still out of sync on the next start, at its new place: not "moved" again.
  auto again = reopen({"/p", "/c2"});
  EXPECT_EQ(again->copy_state(1), MirroredBackend::CopyState::out_of_sync);
  EXPECT_EQ(again->dirty_bytes(1), kSize);
}

TEST_F(MirrorState, AMovedPrimaryIsFilledFromACopyInSync) {
  locations = {"/p", "/c"};
  build(2, 1, QuorumLossAction::fail, kRegion);
  mirror.reset();
  auto moved = reopen({"/p2", "/c"});
  EXPECT_EQ(moved->copy_state(0), MirroredBackend::CopyState::out_of_sync);
  EXPECT_EQ(moved->dirty_bytes(0), kSize);
  EXPECT_EQ(moved->copy_state(1), MirroredBackend::CopyState::in_sync) << "the source";
  moved.reset();
  // Both moved: nothing known to fill the primary from; it stays the source.
  auto both = reopen({"/p3", "/c3"});
  EXPECT_EQ(both->copy_state(0), MirroredBackend::CopyState::out_of_sync)
      << "still out of sync from the last run";
}

// --- copy replace: the old store is swapped only once no I/O is on it ---

TEST_F(Mirror, AReplacementWaitsForTheWriteInFlightOnTheOldStore) {
  build(2, 1, QuorumLossAction::fail, kRegion);
  std::vector<std::uint8_t> buf(4096, 0x21);
  Result w;
  mirror->write(buf.data(), buf.size(), 0, false, &w);
  ASSERT_EQ(mirror->begin_replace(1), "");
  EXPECT_EQ(mirror->copy_state(1), MirroredBackend::CopyState::out_of_sync);
  EXPECT_NE(mirror->begin_replace(1), "") << "one replacement at a time";
  EXPECT_NE(mirror->begin_resync(1), "") << "no resync onto the store being replaced";
  EXPECT_FALSE(mirror->replace_drained(1)) << "the write is still on the old store";
  held[0]->complete_next();
  EXPECT_FALSE(mirror->replace_drained(1));
  held[1]->complete_next();
  EXPECT_EQ(w.value, 4096);
  EXPECT_TRUE(mirror->replace_drained(1));
  // A write now skips the copy: nothing reaches the old store.
  Result w2;
  mirror->write(buf.data(), buf.size(), 8192, false, &w2);
  EXPECT_TRUE(held[1]->pending.empty());
  held[0]->complete_next();
  EXPECT_EQ(w2.value, 4096);
  auto fresh = std::make_unique<HeldBackend>(kSize);
  HeldBackend* next = fresh.get();
  auto old = mirror->finish_replace(1, std::move(fresh), "/new");
  EXPECT_EQ(old.get(), held[1]);
  EXPECT_EQ(&mirror->copy_backend(1), next);
  EXPECT_EQ(mirror->copy_location(1), "/new");
  EXPECT_EQ(mirror->dirty_bytes(1), kSize) << "a full sync";
  // The full sync reads every region from the primary onto the new store.
  held[0]->fill(0, kSize, 0x5a);
  ASSERT_EQ(mirror->begin_resync(1), "");
  mirror->run_resync(1, nullptr);
  for (std::uint64_t r = 0; r < kSize / kRegion; ++r) {
    ASSERT_EQ(held[0]->pending.size(), 1u) << "region " << r;
    held[0]->complete_next();
    ASSERT_EQ(next->pending.size(), 1u) << "region " << r;
    next->complete_next();
  }
  EXPECT_EQ(mirror->copy_state(1), MirroredBackend::CopyState::in_sync);
  EXPECT_EQ(next->at(0), 0x5a);
  EXPECT_EQ(next->at(kSize - 1), 0x5a);
  EXPECT_TRUE(static_cast<HeldBackend*>(old.get())->pending.empty());
}

TEST_F(Mirror, AReplacementWaitsForAReadInFlightAndRefusesTheLastCopyInSync) {
  build(2, 1);
  std::vector<std::uint8_t> in(4096);
  Result r;
  mirror->read(in.data(), in.size(), 0, &r);  // from the primary
  ASSERT_EQ(mirror->begin_replace(0), "");
  EXPECT_FALSE(mirror->replace_drained(0));
  held[0]->complete_next();
  EXPECT_EQ(r.value, 4096);
  EXPECT_TRUE(mirror->replace_drained(0));
  Result r2;
  mirror->read(in.data(), in.size(), 0, &r2);
  EXPECT_TRUE(held[0]->pending.empty()) << "reads come from disk2 meanwhile";
  held[1]->complete_next();
  EXPECT_EQ(r2.value, 4096);
  EXPECT_EQ(mirror->size_bytes(), kSize) << "the LUN keeps its size while the primary is away";
  EXPECT_NE(mirror->begin_replace(1).find("the last copy"), std::string::npos);
  mirror->abandon_replace(0);
  EXPECT_EQ(mirror->begin_replace(0), "") << "given up: it may be tried again";
}

TEST(ActivityLogText, RoundTrips) {
  ActivityLog::Record r;
  r.size_bytes = 1 << 20;
  r.region_size = 4096;
  r.hot = {0x5, 0, 0, 0x8000000000000000ull};
  r.copies = {{"primary", true, {0, 0, 0, 0}, "/dev/vg0/lun1"},
              {"disk2", false, {0xff, 1, 0, 0}, "/mnt/a disk/lun1 copy.img"},
              {"old", true, {0, 0, 0, 0}, ""}};
  ActivityLog::Record back;
  ASSERT_TRUE(parse_activity_log(activity_log_text(r), back));
  EXPECT_EQ(back.size_bytes, r.size_bytes);
  EXPECT_EQ(back.region_size, r.region_size);
  EXPECT_EQ(back.hot, r.hot);
  ASSERT_EQ(back.copies.size(), 3u);
  EXPECT_EQ(back.copies[1].name, "disk2");
  EXPECT_FALSE(back.copies[1].in_sync);
  EXPECT_EQ(back.copies[1].dirty, r.copies[1].dirty);
  EXPECT_EQ(back.copies[0].location, "/dev/vg0/lun1");
  EXPECT_EQ(back.copies[1].location, "/mnt/a disk/lun1 copy.img") << "spaces kept";
  EXPECT_EQ(back.copies[2].location, "") << "a file without locations (older builds)";
  ActivityLog::Record bad;
  EXPECT_FALSE(parse_activity_log("something else\n", bad));
  EXPECT_FALSE(parse_activity_log(activity_log_text(r) + "copy x maybe 1\n", bad));
}

TEST(MirrorCopies, ASmallerCopyIsRefused) {
  std::vector<MirrorCopy> v;
  v.push_back({"primary", "", std::make_unique<HeldBackend>(8192), ""});
  v.push_back({"small", "", std::make_unique<HeldBackend>(4096), ""});
  EXPECT_THROW(MirroredBackend(std::move(v), MirrorOptions{}), std::invalid_argument);
}

TEST(RangeOrderTest, NonOverlappingClaimsRunTogether) {
  RangeOrder order;
  RangeOrder::Claim a{0, 4096, nullptr, nullptr}, b{4096, 4096, nullptr, nullptr};
  EXPECT_TRUE(order.admit(a));
  EXPECT_TRUE(order.admit(b));
  EXPECT_EQ(order.in_flight(), 2u);
  order.release(a);
  order.release(b);
  EXPECT_EQ(order.in_flight(), 0u);
}

}  // namespace
}  // namespace ringtgt::storage
