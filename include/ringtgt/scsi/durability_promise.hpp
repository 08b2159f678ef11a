// What GOOD for a medium-changing command promises about durability, and its
// record in the durability log (storage/durability_log.hpp; tests only).
#pragma once

#include <array>
#include <cstdint>

#include "ringtgt/storage/write_ack_policy.hpp"

namespace ringtgt::scsi {

class Task;

enum class DurabilityPromise : std::uint8_t {
  none,           // changes no medium
  write,          // the medium changes; durable only after SYNCHRONIZE CACHE (writeback)
  durable_write,  // durable before GOOD: writethrough, FUA, WRITE AND VERIFY
  sync,           // SYNCHRONIZE CACHE: every write acknowledged before it is durable
};

// By operation code: every WRITE, WRITE AND VERIFY, WRITE SAME, UNMAP,
// COMPARE AND WRITE, ORWRITE, EXTENDED COPY and SYNCHRONIZE CACHE.
DurabilityPromise durability_promise(const std::array<std::uint8_t, 16>& cdb,
                                     storage::WriteAckPolicy policy);

// With the seam on (storage::durability_seam().log): the logical unit marks
// the task with its promise and records command_started when the command
// reaches it; the transport records command_done as it answers (good: GOOD
// is going out). No-ops otherwise.
void record_command_started(Task& task, storage::WriteAckPolicy policy);
void record_command_done(const Task& task, bool good);

}  // namespace ringtgt::scsi
