#include "ringtgt/scsi/durability_promise.hpp"

#include <cstdint>

#include "ringtgt/scsi/task.hpp"
#include "ringtgt/storage/durability_log.hpp"

namespace ringtgt::scsi {

namespace {
bool fua_bit(const std::array<std::uint8_t, 16>& cdb) {
  return (cdb[1] & 0x08) != 0;
}
}  // namespace

DurabilityPromise durability_promise(const std::array<std::uint8_t, 16>& cdb,
                                     storage::WriteAckPolicy policy) {
  const bool writethrough = policy == storage::WriteAckPolicy::writethrough;
  const auto by_policy = [&](bool fua) {
    return writethrough || fua ? DurabilityPromise::durable_write : DurabilityPromise::write;
  };
  switch (cdb[0]) {
    case 0x0a:  // WRITE(6): no FUA bit
    case 0x41:  // WRITE SAME(10)
    case 0x93:  // WRITE SAME(16): no FUA bit either
    case 0x42:  // UNMAP
    case 0x83:  // EXTENDED COPY: the copy's writes follow the destination's policy
      return by_policy(false);
    case 0x2a:  // WRITE(10)
    case 0xaa:  // WRITE(12)
    case 0x8a:  // WRITE(16)
    case 0x89:  // COMPARE AND WRITE
    case 0x8b:  // ORWRITE(16)
      return by_policy(fua_bit(cdb));
    case 0x2e:  // WRITE AND VERIFY(10/12/16): verified on the medium, so durable
    case 0xae:
    case 0x8e:
      return DurabilityPromise::durable_write;
    case 0x35:  // SYNCHRONIZE CACHE(10/16)
    case 0x91:
      return DurabilityPromise::sync;
    default:
      return DurabilityPromise::none;
  }
}

void record_command_started(Task& task, storage::WriteAckPolicy policy) {
  storage::DurabilityLog* log = storage::durability_seam().log;
  if (log == nullptr) return;
  task.durability_promise = durability_promise(task.cdb, policy);
  if (task.durability_promise == DurabilityPromise::none) return;
  storage::DurabilityEvent e{storage::DurabilityEvent::Kind::command_started, 0};
  e.tag = reinterpret_cast<std::uintptr_t>(static_cast<const reactor::IoOp*>(&task));
  log->record(e);
}

void record_command_done(const Task& task, bool good) {
  storage::DurabilityLog* log = storage::durability_seam().log;
  if (log == nullptr || task.durability_promise == DurabilityPromise::none) return;
  storage::DurabilityEvent e{storage::DurabilityEvent::Kind::command_done, 0};
  e.tag = reinterpret_cast<std::uintptr_t>(static_cast<const reactor::IoOp*>(&task));
  e.result = good ? 1 : 0;
  e.must_be_durable = task.durability_promise == DurabilityPromise::durable_write;
  e.sync = task.durability_promise == DurabilityPromise::sync;
  log->record(e);
}

}  // namespace ringtgt::scsi
