// The file backend's write path against an engine whose completions the test
// delivers by hand: group commit, the fsync gate, O_DIRECT durable writes,
// short transfers continued, and which errno reaches the caller.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <spdlog/sinks/ringbuffer_sink.h>
#include <spdlog/spdlog.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "ringtgt/storage/durability_check.hpp"
#include "ringtgt/storage/durability_log.hpp"
#include "ringtgt/storage/file_backend.hpp"
#include "storage_test_support.hpp"

namespace ringtgt::storage {
namespace {

using testing::Result;

// Every operation is queued; complete() runs the syscall (or an injected
// result) and delivers the completion, so the test decides the order.
class ManualEngine final : public reactor::IoEngine {
 public:
  enum Kind { read_op, write_op, fsync_op };
  struct Pending {
    Kind kind;
    int fd;
    std::uint8_t* buf;
    std::size_t len;
    std::uint64_t offset;
    int rw_flags;
    reactor::IoOp* op;
  };

  void read(int fd, void* buf, std::size_t len, std::uint64_t offset, IoOp* op) override {
    push({read_op, fd, static_cast<std::uint8_t*>(buf), len, offset, 0, op});
  }
  void write(int fd, const void* buf, std::size_t len, std::uint64_t offset, int rw_flags,
             IoOp* op) override {
    push({write_op, fd, static_cast<std::uint8_t*>(const_cast<void*>(buf)), len, offset, rw_flags,
          op});
  }
  void fsync(int fd, bool, IoOp* op) override { push({fsync_op, fd, nullptr, 0, 0, 0, op}); }
  void recv(int, void*, std::size_t, int, IoOp* op) override { op->on_complete(-ENOTSUP); }
  void sendmsg(int, const msghdr*, int, IoOp* op) override { op->on_complete(-ENOTSUP); }

  // Completes queued operation i (in submission order among those left),
  // moving at most `cap` bytes, or failing with `inject` when it is < 0.
  void complete(std::size_t i, int inject = 0, std::size_t cap = SIZE_MAX) {
    ASSERT_LT(i, queue.size());
    Pending p = queue[i];
    queue.erase(queue.begin() + static_cast<long>(i));
    int rc = inject;
    if (inject >= 0) rc = run(p, cap);
    p.op->on_complete(rc);
  }
  std::size_t count(Kind k) const {
    std::size_t n = 0;
    for (const auto& p : queue) n += p.kind == k;
    return n;
  }
  std::size_t index_of(Kind k) const {
    for (std::size_t i = 0; i < queue.size(); ++i)
      if (queue[i].kind == k) return i;
    ADD_FAILURE() << "no queued operation of kind " << k;
    return SIZE_MAX;
  }

  std::deque<Pending> queue;
  std::vector<Pending> submitted;  // everything, in order

 private:
  void push(const Pending& p) {
    queue.push_back(p);
    submitted.push_back(p);
  }
  static int run(const Pending& p, std::size_t cap) {
    const std::size_t len = std::min(p.len, cap);
    ssize_t n = 0;
    if (p.kind == read_op) {
      n = ::pread(p.fd, p.buf, len, static_cast<off_t>(p.offset));
    } else if (p.kind == write_op) {
      iovec iov{p.buf, len};
      n = ::pwritev2(p.fd, &iov, 1, static_cast<off_t>(p.offset), p.rw_flags);
    } else {
      n = ::fdatasync(p.fd);
    }
    return n < 0 ? -errno : static_cast<int>(n);
  }
};

using WritePathTest = testing::FileBackendFixture<ManualEngine>;

// A 4096-aligned buffer (O_DIRECT) filled with one byte value.
struct AlignedBlock {
  explicit AlignedBlock(std::size_t n, std::uint8_t fill) : size(n) {
    data = static_cast<std::uint8_t*>(std::aligned_alloc(4096, n));
    std::memset(data, fill, n);
  }
  ~AlignedBlock() { std::free(data); }
  std::uint8_t* data;
  std::size_t size;
};

TEST_F(WritePathTest, BufferedWritethroughWriteIsAckedOnlyAfterAFlushThatStartedLater) {
  FileBackend b(opts(WriteAckPolicy::writethrough));
  AlignedBlock a(4096, 0xa1);
  Result ra;
  b.write(a.data, a.size, 0, false, &ra);
  ASSERT_EQ(engine.queue.size(), 1u);
  EXPECT_EQ(engine.queue[0].kind, ManualEngine::write_op);
  EXPECT_EQ(engine.queue[0].rw_flags, 0);  // page cache; durability comes from the flush
  engine.complete(0);
  EXPECT_EQ(ra.calls, 0) << "acknowledged before any flush";
  ASSERT_EQ(engine.count(ManualEngine::fsync_op), 1u);
  engine.complete(engine.index_of(ManualEngine::fsync_op));
  EXPECT_EQ(ra.calls, 1);
  EXPECT_EQ(ra.value, 4096);
  EXPECT_EQ(b.group_commit_flushes(), 1u);
}

TEST_F(WritePathTest, WritesCompletingDuringAFlushShareTheNextOne) {
  FileBackend b(opts(WriteAckPolicy::writethrough));
  AlignedBlock blk(4096, 0x5c);
  Result first, r[3];
  b.write(blk.data, blk.size, 0, false, &first);
  for (int i = 0; i < 3; ++i) b.write(blk.data, blk.size, 4096u * (i + 1), false, &r[i]);
  engine.complete(0);  // first write done: flush 1 starts
  ASSERT_EQ(engine.count(ManualEngine::fsync_op), 1u);
  // The other three complete while flush 1 runs: it may not contain them.
  for (int i = 0; i < 3; ++i) engine.complete(engine.index_of(ManualEngine::write_op));
  EXPECT_EQ(engine.count(ManualEngine::fsync_op), 1u) << "a second flush in flight";
  engine.complete(engine.index_of(ManualEngine::fsync_op));
  EXPECT_EQ(first.value, 4096);
  for (auto& x : r) EXPECT_EQ(x.calls, 0) << "acknowledged by a flush that started before it";
  ASSERT_EQ(engine.count(ManualEngine::fsync_op), 1u);  // one flush for all three
  engine.complete(engine.index_of(ManualEngine::fsync_op));
  for (auto& x : r) {
    EXPECT_EQ(x.calls, 1);
    EXPECT_EQ(x.value, 4096);
  }
  EXPECT_EQ(b.group_commit_flushes(), 2u);
  EXPECT_TRUE(engine.queue.empty());
}

TEST_F(WritePathTest, WritebackWritesNeedNoFlushButSyncCacheJoinsTheGroup) {
  FileBackend b(opts(WriteAckPolicy::writeback));
  AlignedBlock blk(4096, 0x77);
  Result w, fua, sync1, sync2;
  b.write(blk.data, blk.size, 0, false, &w);
  engine.complete(0);
  EXPECT_EQ(w.value, 4096);
  EXPECT_TRUE(engine.queue.empty());
  b.write(blk.data, blk.size, 4096, true, &fua);  // FUA on the page cache: group commit
  engine.complete(0);
  EXPECT_EQ(fua.calls, 0);
  b.flush(&sync1);  // arrives while the FUA's flush runs: waits for the next
  engine.complete(engine.index_of(ManualEngine::fsync_op));
  EXPECT_EQ(fua.value, 4096);
  EXPECT_EQ(sync1.calls, 0);
  b.flush(&sync2);  // arrives while flush 2 (sync1's) runs: waits for flush 3
  engine.complete(engine.index_of(ManualEngine::fsync_op));
  EXPECT_EQ(sync1.value, 0);
  EXPECT_EQ(sync2.calls, 0) << "sync2 arrived after flush 2 started";
  engine.complete(engine.index_of(ManualEngine::fsync_op));
  EXPECT_EQ(sync2.value, 0);
}

TEST_F(WritePathTest, AFailedFlushFailsItsWritesAndNothingLaterClaimsThemDurable) {
  FileBackend b(opts(WriteAckPolicy::writethrough));
  AlignedBlock blk(4096, 0x42);
  Result a, c, later, sync;
  b.write(blk.data, blk.size, 0, false, &a);
  b.write(blk.data, blk.size, 4096, false, &c);
  engine.complete(0);                                        // a written; flush 1 starts
  engine.complete(engine.index_of(ManualEngine::write_op));  // c waits for flush 2
  engine.complete(engine.index_of(ManualEngine::fsync_op), -EIO);
  EXPECT_EQ(a.value, -EIO);
  EXPECT_EQ(c.value, -EIO) << "c must not be acknowledged by a flush after the failure";
  EXPECT_EQ(b.durability_lost_errno(), EIO);
  EXPECT_EQ(engine.count(ManualEngine::fsync_op), 0u) << "a flush after the failure";
  b.write(blk.data, blk.size, 8192, false, &later);
  engine.complete(0);
  EXPECT_EQ(later.value, -EIO);
  b.flush(&sync);
  EXPECT_EQ(sync.value, -EIO);
  EXPECT_TRUE(engine.queue.empty());
}

TEST_F(WritePathTest, ShortWritesAndReadsAreContinuedFromWhereTheyStopped) {
  FileBackend b(opts(WriteAckPolicy::writeback));
  std::vector<std::uint8_t> data(16384);
  for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<std::uint8_t>(i * 7 + 3);
  Result w;
  b.write(data.data(), data.size(), 4096, false, &w);
  for (int piece = 0; piece < 4; ++piece) {
    ASSERT_EQ(engine.queue.size(), 1u);
    EXPECT_EQ(engine.queue[0].offset, 4096u + 4096u * piece);
    EXPECT_EQ(engine.queue[0].len, 16384u - 4096u * piece);
    engine.complete(0, 0, 4096);  // the kernel takes 4 KiB each time
  }
  EXPECT_EQ(w.calls, 1);
  EXPECT_EQ(w.value, 16384);
  std::vector<std::uint8_t> back(16384);
  Result r;
  b.read(back.data(), back.size(), 4096, &r);
  while (!engine.queue.empty()) engine.complete(0, 0, 5000);
  EXPECT_EQ(r.value, 16384);
  EXPECT_EQ(back, data);
}

TEST_F(WritePathTest, AReadAtTheEndOfTheFileReportsHowFarItGot) {
  FileBackend b(opts(WriteAckPolicy::writeback, 8192));
  std::vector<std::uint8_t> back(8192);
  Result r;
  b.read(back.data(), back.size(), 4096, &r);  // only 4096 bytes are there
  engine.complete(0);
  ASSERT_EQ(engine.queue.size(), 1u);  // asks for the rest
  engine.complete(0);                  // which reads 0: end of file
  EXPECT_EQ(r.value, 4096);
}

TEST_F(WritePathTest, EnospcReachesTheCallerAndEinvalIsLoggedAsABug) {
  auto sink = std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(16);
  auto previous = spdlog::default_logger();
  spdlog::set_default_logger(std::make_shared<spdlog::logger>("test", sink));
  FileBackend b(opts(WriteAckPolicy::writeback));
  AlignedBlock blk(4096, 1);
  Result full, bad;
  b.write(blk.data, blk.size, 0, false, &full);
  engine.complete(0, -ENOSPC);
  EXPECT_EQ(full.value, -ENOSPC);
  EXPECT_TRUE(sink->last_formatted().empty());
  b.write(blk.data, blk.size, 4096, false, &bad);
  engine.complete(0, -EINVAL);
  EXPECT_EQ(bad.value, -EINVAL);
  const auto lines = sink->last_formatted();
  spdlog::set_default_logger(previous);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_NE(lines[0].find("misaligned"), std::string::npos) << lines[0];
  EXPECT_NE(lines[0].find(path("lun.img")), std::string::npos) << lines[0];
  EXPECT_NE(lines[0].find("offset 4096"), std::string::npos) << lines[0];
}

TEST_F(WritePathTest, DirectDurableWriteIsOneDsyncWriteWithoutFlush) {
  auto o = opts(WriteAckPolicy::writethrough);
  o.direct_io = true;
  o.block_size = 512;
  FileBackend b(o);
  EXPECT_TRUE(b.direct_io());
  AlignedBlock blk(4096, 0x3d);
  Result r;
  b.write(blk.data, blk.size, 8192, false, &r);
  ASSERT_EQ(engine.queue.size(), 1u);
  EXPECT_NE(::fcntl(engine.queue[0].fd, F_GETFL) & O_DIRECT, 0);
  EXPECT_EQ(engine.queue[0].rw_flags, RWF_DSYNC);
  engine.complete(0);
  EXPECT_EQ(r.value, 4096);  // durable on completion: no flush queued
  EXPECT_TRUE(engine.queue.empty());
  EXPECT_EQ(b.group_commit_flushes(), 0u);
  // The data is in the file.
  std::vector<std::uint8_t> back(4096);
  int fd = ::open(path("lun.img").c_str(), O_RDONLY);
  ASSERT_EQ(::pread(fd, back.data(), back.size(), 8192), 4096);
  ::close(fd);
  EXPECT_EQ(back, std::vector<std::uint8_t>(4096, 0x3d));
}

TEST_F(WritePathTest, DirectWritebackWriteIsPlainUnlessFua) {
  auto o = opts(WriteAckPolicy::writeback);
  o.direct_io = true;
  FileBackend b(o);
  AlignedBlock blk(4096, 0x11);
  Result plain, fua, sync;
  b.write(blk.data, blk.size, 0, false, &plain);
  b.write(blk.data, blk.size, 4096, true, &fua);
  EXPECT_EQ(engine.queue[0].rw_flags, 0);
  EXPECT_EQ(engine.queue[1].rw_flags, RWF_DSYNC);
  engine.complete(0);
  engine.complete(0);
  EXPECT_EQ(plain.value, 4096);
  EXPECT_EQ(fua.value, 4096);
  b.flush(&sync);  // SYNCHRONIZE CACHE: the device's cache
  ASSERT_EQ(engine.count(ManualEngine::fsync_op), 1u);
  engine.complete(0);
  EXPECT_EQ(sync.value, 0);
}

TEST_F(WritePathTest, FilesDefaultToThePageCache) {
  FileBackend b(opts(WriteAckPolicy::writethrough));
  EXPECT_FALSE(b.direct_io());
}

// ---------------------------------------------------------------- recording seam + checker

// Drives 16 writes with completions in a scrambled order, and a
// SYNCHRONIZE CACHE in the middle, recording everything.
std::vector<std::string> run_recorded(WritePathTest& t, ManualEngine& engine, FileBackendOptions o,
                                      std::size_t* acks) {
  DurabilityLog log;
  o.durability_log = &log;
  FileBackend b(o);
  AlignedBlock blk(4096, 0x6b);
  Result r[16], sync;
  for (int i = 0; i < 16; ++i) {
    b.write(blk.data, blk.size, 4096u * i, i % 5 == 0, &r[i]);
    if (i == 8) b.flush(&sync);
    // complete something now and then, newest first, so completions interleave
    if (i % 3 == 2 && !engine.queue.empty()) engine.complete(engine.queue.size() - 1);
  }
  while (!engine.queue.empty()) engine.complete(0);
  for (auto& x : r) EXPECT_EQ(x.calls, 1);
  EXPECT_EQ(sync.value, 0);
  *acks = 0;
  for (const auto& e : log.events()) *acks += e.kind == DurabilityEvent::Kind::ack;
  (void)t;
  return check_durability(log.events());
}

TEST_F(WritePathTest, CheckerFindsNoLostAckUnderEachPolicy) {
  for (auto policy : {WriteAckPolicy::writethrough, WriteAckPolicy::writeback}) {
    for (bool direct : {false, true}) {
      auto o = opts(policy);
      o.direct_io = direct;
      std::size_t acks = 0;
      const auto problems = run_recorded(*this, engine, o, &acks);
      EXPECT_EQ(acks, 16u);
      EXPECT_TRUE(problems.empty())
          << to_string(policy) << (direct ? " direct: " : ": ") << problems.front();
    }
  }
}

TEST_F(WritePathTest, CheckerCatchesAcksSentBeforeTheFlush) {
  auto o = opts(WriteAckPolicy::writethrough);
  o.broken_ack_before_flush_for_tests = true;
  std::size_t acks = 0;
  const auto problems = run_recorded(*this, engine, o, &acks);
  ASSERT_FALSE(problems.empty());
  EXPECT_NE(problems[0].find("before any flush covered it"), std::string::npos) << problems[0];
}

TEST(DurabilityChecker, AFlushThatStartedBeforeTheWriteCompletedDoesNotCoverIt) {
  using K = DurabilityEvent::Kind;
  std::vector<DurabilityEvent> log;
  DurabilityEvent start{K::flush_started, 0};
  start.flush_id = 1;
  DurabilityEvent done{K::flush_done, 0};
  done.flush_id = 1;
  DurabilityEvent written{K::write_done, 7};
  DurabilityEvent ack{K::ack, 7};
  ack.must_be_durable = true;
  ack.result = 4096;
  log = {start, written, done, ack};
  EXPECT_EQ(check_durability(log).size(), 1u);
  log = {written, start, done, ack};
  EXPECT_TRUE(check_durability(log).empty());
  DurabilityEvent failed = done;
  failed.result = -EIO;
  log = {written, start, failed, ack};
  EXPECT_EQ(check_durability(log).size(), 1u) << "a failed flush made it durable";
  // writeback: no promise on the write itself, but a later SYNCHRONIZE CACHE owes it
  ack.must_be_durable = false;
  DurabilityEvent sync_req{K::sync_requested, 9}, sync_ack{K::sync_ack, 9};
  log = {written, ack, sync_req, sync_ack};
  EXPECT_EQ(check_durability(log).size(), 1u);
  log = {written, ack, sync_req, start, done, sync_ack};
  EXPECT_TRUE(check_durability(log).empty());
}

}  // namespace
}  // namespace ringtgt::storage
