// What the SCSI unit tests share: CDB builders and running one task to its
// single completion.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <deque>
#include <functional>
#include <string>
#include <vector>

#include "ringtgt/scsi/cdb.hpp"
#include "ringtgt/scsi/task.hpp"
#include "ringtgt/storage/memory_backend.hpp"

namespace ringtgt::scsi::testing {

using Bytes = std::vector<std::uint8_t>;

struct CountingOwner : TaskOwner {
  int completions = 0;
  void task_complete(Task&) override { ++completions; }
};

// Prepares task for cdb with a Data-In buffer of room bytes (or the Data-Out
// bytes in data_out), runs execute(task) and checks it completed exactly
// once, synchronously.
template <typename Execute>
Task& run_task(Execute&& execute, Task& task, CountingOwner& owner, Bytes& buffer, const Bytes& cdb,
               std::uint32_t room, const Bytes* data_out, std::uint64_t lun = 0) {
  task = Task{};
  owner.completions = 0;
  std::copy(cdb.begin(), cdb.end(), task.cdb.begin());
  task.lun = lun;
  task.owner = &owner;
  if (data_out != nullptr) {
    buffer = *data_out;
    task.direction = DataDirection::to_device;
  } else {
    buffer.assign(room, 0xee);
    task.direction = DataDirection::from_device;
  }
  task.buffer = buffer.data();
  task.buffer_len = static_cast<std::uint32_t>(buffer.size());
  execute(task);
  EXPECT_EQ(owner.completions, 1);
  return task;
}

inline Bytes cdb10(std::uint8_t opcode, std::uint8_t flags, std::uint32_t lba,
                   std::uint16_t blocks) {
  Bytes c(10, 0);
  c[0] = opcode;
  c[1] = flags;
  put_be32(&c[2], lba);
  put_be16(&c[7], blocks);
  return c;
}

inline Bytes cdb12(std::uint8_t opcode, std::uint8_t flags, std::uint32_t lba,
                   std::uint32_t blocks) {
  Bytes c(12, 0);
  c[0] = opcode;
  c[1] = flags;
  put_be32(&c[2], lba);
  put_be32(&c[6], blocks);
  return c;
}

inline Bytes cdb16(std::uint8_t opcode, std::uint8_t flags, std::uint64_t lba,
                   std::uint32_t blocks) {
  Bytes c(16, 0);
  c[0] = opcode;
  c[1] = flags;
  put_be64(&c[2], lba);
  put_be32(&c[10], blocks);
  return c;
}

// CHECK CONDITION with fixed-format sense key/ASC/ASCQ.
inline void expect_sense(const Task& t, std::uint8_t key, std::uint8_t asc, std::uint8_t ascq) {
  ASSERT_EQ(t.status, Status::check_condition);
  EXPECT_EQ(t.sense[2] & 0x0f, key);
  EXPECT_EQ(t.sense[12], asc);
  EXPECT_EQ(t.sense[13], ascq);
}

// A memory backend whose operations, while `queued`, wait in a queue until
// the test runs them, as a disk on io_uring completes them later.
class QueuedBackend final : public storage::Backend {
 public:
  explicit QueuedBackend(std::uint64_t size) : mem(size) {}
  std::uint64_t size_bytes() const override { return mem.size_bytes(); }
  storage::WriteAckPolicy ack_policy() const override { return mem.ack_policy(); }
  void read(void* buf, std::size_t len, std::uint64_t off, storage::IoOp* op) override {
    defer([=, this] { mem.read(buf, len, off, op); });
  }
  void write(const void* buf, std::size_t len, std::uint64_t off, bool fua,
             storage::IoOp* op) override {
    defer([=, this] { mem.write(buf, len, off, fua, op); });
  }
  void flush(storage::IoOp* op) override {
    defer([=, this] { mem.flush(op); });
  }
  bool can_unmap() const override { return true; }
  void unmap(std::uint64_t off, std::uint64_t len, storage::IoOp* op, bool more) override {
    defer([=, this] { mem.unmap(off, len, op, more); });
  }
  void write_zeroes(std::uint64_t off, std::uint64_t len, bool fua, storage::IoOp* op) override {
    defer([=, this] { mem.write_zeroes(off, len, fua, op); });
  }
  std::string describe() const override { return "queued"; }

  // Runs the oldest operation; false when none waits.
  bool step() {
    if (queue.empty()) return false;
    auto f = std::move(queue.front());
    queue.pop_front();
    f();
    return true;
  }
  void defer(std::function<void()> f) {
    if (queued) return queue.push_back(std::move(f));
    f();
  }

  storage::MemoryBackend mem;
  bool queued = true;
  std::deque<std::function<void()>> queue;
};

}  // namespace ringtgt::scsi::testing
