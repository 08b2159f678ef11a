// The durability log's file format and per-thread recording, the checker's
// command-level and image checks, and the memory backend's records.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "ringtgt/storage/durability_check.hpp"
#include "ringtgt/storage/durability_log.hpp"
#include "ringtgt/storage/memory_backend.hpp"
#include "storage_test_support.hpp"

namespace ringtgt::storage {
namespace {

using K = DurabilityEvent::Kind;
using testing::Result;

std::string temp_path(const char* name) {
  return (std::filesystem::temp_directory_path() /
          (std::string("seam-dlog-") + std::to_string(::getpid()) + "-" + name))
      .string();
}

TEST(DurabilityLogFile, RecordsFromManyThreadsComeBackInOrderWithTheirHashes) {
  const std::string path = temp_path("threads");
  constexpr int kThreads = 4, kEach = 20000;  // several buffers' worth per thread
  {
    DurabilityLog log(path);
    const std::uint32_t store = log.add_store("/dev/test", 1 << 20, 512, true, false);
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&log, store, t] {
        std::vector<std::uint8_t> block(1024, static_cast<std::uint8_t>(t));
        for (int i = 0; i < kEach; ++i) {
          DurabilityEvent e{K::write_done, log.next_id()};
          e.store = store;
          e.offset = 1024u * static_cast<unsigned>(t);
          e.length = block.size();
          e.tag = static_cast<std::uint64_t>(t) + 1;
          log.record_write(e, block.data(), 512);
        }
      });
    }
    for (auto& th : threads) th.join();
  }  // the destructor writes out every thread's buffer
  const auto events = read_durability_log(path);
  std::filesystem::remove(path);
  ASSERT_EQ(events.size(), 1u + kThreads * kEach);
  EXPECT_EQ(events[0].kind, K::store_opened);
  EXPECT_EQ(events[0].name, "/dev/test");
  EXPECT_EQ(events[0].length, 512u);
  EXPECT_TRUE(events[0].writeback);
  std::vector<std::uint8_t> expect(512, 2);
  const std::uint64_t hash_of_2 = block_hash(expect.data(), expect.size());
  for (std::size_t i = 0; i < events.size(); ++i) {
    ASSERT_EQ(events[i].seq, i);
    if (i == 0) continue;
    ASSERT_EQ(events[i].block_hashes.size(), 2u);
    if (events[i].tag == 3) {
      EXPECT_EQ(events[i].block_hashes[1], hash_of_2);
    }
  }
}

TEST(DurabilityLogFile, AMissingRecordIsReported) {
  const std::string path = temp_path("short");
  {
    DurabilityLog log(path);
    log.record({K::flush_started, 0});
    log.record({K::flush_done, 0});
  }
  // Cut the last record off: the reader must say so, not check half a log.
  const auto size = std::filesystem::file_size(path);
  std::filesystem::resize_file(path, size - 10);
  EXPECT_THROW(read_durability_log(path), std::runtime_error);
  std::filesystem::remove(path);
}

// A write of command `tag` on store 1 (512-byte blocks), done at this point.
DurabilityEvent write_of(std::uint64_t id, std::uint64_t tag, std::uint64_t block,
                         std::uint64_t hash, bool durable = false) {
  DurabilityEvent e{K::write_done, id};
  e.store = 1;
  e.tag = tag;
  e.offset = block * 512;
  e.length = 512;
  e.durable = durable;
  e.block_hashes = {hash};
  return e;
}

DurabilityEvent store1(bool writeback) {
  DurabilityEvent e{K::store_opened, 1};
  e.store = 1;
  e.length = 512;
  e.offset = 1 << 20;
  e.writeback = writeback;
  e.name = "disk";
  return e;
}

DurabilityEvent command(K kind, std::uint64_t tag, bool good, bool durable, bool sync = false) {
  DurabilityEvent e{kind, 0};
  e.tag = tag;
  e.result = good ? 1 : 0;
  e.must_be_durable = durable;
  e.sync = sync;
  return e;
}

DurabilityEvent flush(K kind, std::uint64_t id, int result = 0) {
  DurabilityEvent e{kind, 0};
  e.store = 1;
  e.flush_id = id;
  e.result = result;
  return e;
}

TEST(DurabilityChecker, GoodForACommandNeedsEveryWriteOfItDurable) {
  const auto start = command(K::command_started, 7, false, true);
  const auto good = command(K::command_done, 7, true, true);
  // Two writes of one command (a WRITE SAME in chunks): the flush covers
  // only the first, so GOOD comes too early.
  std::vector<DurabilityEvent> log{store1(false),
                                   start,
                                   write_of(1, 7, 0, 11),
                                   flush(K::flush_started, 100),
                                   write_of(2, 7, 1, 12),
                                   flush(K::flush_done, 100),
                                   good};
  auto r = check_durability_log(log);
  ASSERT_EQ(r.problem_count, 1u);
  EXPECT_NE(r.problems[0].find("GOOD sent for command 7"), std::string::npos) << r.problems[0];
  // With a flush after the second write, it is kept.
  log.insert(log.end() - 1, {flush(K::flush_started, 101), flush(K::flush_done, 101)});
  r = check_durability_log(log);
  EXPECT_EQ(r.problem_count, 0u) << r.problems.front();
  EXPECT_EQ(r.images[1].blocks.at(0), 11u);
  EXPECT_EQ(r.images[1].blocks.at(1), 12u);
  // Not GOOD (CHECK CONDITION): nothing was promised.
  log.back() = command(K::command_done, 7, false, true);
  log.erase(log.end() - 3, log.end() - 1);
  EXPECT_EQ(check_durability_log(log).problem_count, 0u);
}

TEST(DurabilityChecker, AFlushCoversWritesAnotherReactorsFlushInFlightCoversToo) {
  // Two reactors' group commits: flush 1 (still running) and flush 2 both
  // started after write 1; an fdatasync covers every write done before it
  // started, so flush 2 finishing makes write 1 durable.
  auto ack = DurabilityEvent{K::ack, 1};
  ack.result = 512;
  ack.must_be_durable = true;
  std::vector<DurabilityEvent> log{store1(false),
                                   write_of(1, 0, 0, 5),
                                   flush(K::flush_started, 1),
                                   flush(K::flush_started, 2),
                                   flush(K::flush_done, 2),
                                   ack,
                                   flush(K::flush_done, 1)};
  auto r = check_durability_log(log);
  EXPECT_EQ(r.problem_count, 0u) << r.problems.front();
  // A failed flush loses what it covered, even if another one covering it
  // was to start later.
  log = {store1(false),
         write_of(1, 0, 0, 5),
         flush(K::flush_started, 1),
         flush(K::flush_done, 1, -5),
         flush(K::flush_started, 2),
         flush(K::flush_done, 2),
         ack};
  EXPECT_EQ(check_durability_log(log).problem_count, 1u);
}

TEST(DurabilityChecker, AWriteOfACommandAfterItsGoodIsAViolation) {
  std::vector<DurabilityEvent> log{store1(true), command(K::command_started, 5, false, false),
                                   command(K::command_done, 5, true, false), write_of(1, 5, 3, 9)};
  auto r = check_durability_log(log);
  ASSERT_EQ(r.problem_count, 1u);
  EXPECT_NE(r.problems[0].find("already answered"), std::string::npos) << r.problems[0];
}

TEST(DurabilityChecker, WritebackSyncOwesWritesAcknowledgedBeforeIt) {
  auto sync_req = DurabilityEvent{K::sync_requested, 40};
  sync_req.store = 1;
  sync_req.tag = 8;
  std::vector<DurabilityEvent> log{store1(true),
                                   command(K::command_started, 5, false, false),
                                   write_of(1, 5, 3, 9),
                                   command(K::command_done, 5, true, false),
                                   command(K::command_started, 8, false, false),
                                   sync_req,
                                   command(K::command_done, 8, true, false, true)};
  auto r = check_durability_log(log);
  EXPECT_EQ(r.problem_count, 2u);  // the sync's promise, and the image at its flush point
  log.insert(log.end() - 1, {flush(K::flush_started, 41), flush(K::flush_done, 41)});
  r = check_durability_log(log);
  EXPECT_EQ(r.problem_count, 0u) << r.problems.front();
  EXPECT_EQ(r.syncs, 1u);
  // A failed flush makes nothing durable.
  log[log.size() - 2].result = -5;
  EXPECT_GT(check_durability_log(log).problem_count, 0u);
}

TEST(DurabilityChecker, TheImageKeepsTheNewestDurableWriteAndZeroes) {
  auto zero = write_of(3, 0, 0, 0, true);
  zero.zeroes = true;
  zero.block_hashes.clear();
  std::vector<DurabilityEvent> log{store1(false), write_of(1, 0, 0, 21, true),
                                   write_of(2, 0, 1, 22, true), zero};
  auto r = check_durability_log(log);
  EXPECT_EQ(r.images[1].blocks.at(0), DurableImage::kZeroBlock);
  EXPECT_EQ(r.images[1].blocks.at(1), 22u);
  // An older write made durable after a newer one does not replace it.
  log = {store1(false), write_of(1, 0, 0, 31), write_of(2, 0, 0, 32, true),
         flush(K::flush_started, 9), flush(K::flush_done, 9)};
  // (write 1 was in the cache when the flush started, write 2 durable itself)
  r = check_durability_log(log);
  EXPECT_EQ(r.images[1].blocks.at(0), 32u);
}

TEST(MemoryBackendSeam, RecordsWritesZeroesAndFlushesTheCheckerAccepts) {
  for (auto policy : {WriteAckPolicy::writethrough, WriteAckPolicy::writeback}) {
    DurabilityLog log;
    MemoryBackend b(64 * 512, policy);
    b.set_durability_log(&log, 512);
    std::vector<std::uint8_t> data(1024, 0x5a);
    Result w, z, u, f;
    b.write(data.data(), data.size(), 0, false, &w);
    b.write_zeroes(4096, 1024, false, &z);
    b.unmap(8192, 512, &u);
    b.flush(&f);
    const auto r = check_durability_log(log.events());
    EXPECT_EQ(r.problem_count, 0u) << r.problems.front();
    ASSERT_EQ(r.images.count(1), 1u);
    const auto& img = r.images.at(1);
    EXPECT_EQ(img.name, "memory");
    EXPECT_EQ(img.blocks.at(1), block_hash(data.data(), 512));
    EXPECT_EQ(img.blocks.at(8), DurableImage::kZeroBlock);
    EXPECT_EQ(img.blocks.at(16), DurableImage::kZeroBlock);
    EXPECT_EQ(r.writes, 1u);
    EXPECT_EQ(r.zeroings, 2u);
  }
}

}  // namespace
}  // namespace ringtgt::storage
