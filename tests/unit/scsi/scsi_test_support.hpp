// What the SCSI unit tests share: CDB builders and running one task to its
// single completion.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "ringtgt/scsi/cdb.hpp"
#include "ringtgt/scsi/task.hpp"

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

}  // namespace ringtgt::scsi::testing
