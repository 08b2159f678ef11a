// WRITE ATOMIC(16) (SBC-4 r22, 5.46 and 4.29): a write that other commands
// see whole or not at all. It claims its range with the LU's range lock (the
// one COMPARE AND WRITE and ORWRITE hold): while it is claimed, a READ or
// WRITE that overlaps it gets BUSY and is retried by the initiator, so none
// sees the old and the new data mixed. The data then goes to the backend as
// one write, to every copy the backend keeps.
#include <algorithm>
#include <cstdint>

#include "commands.hpp"
#include "ringtgt/scsi/cdb.hpp"

namespace ringtgt::scsi::detail {

namespace {

// While the write is in flight: a BlockIoState (LBA and bytes).
void write_atomic_done(Task& task, int result) {
  auto& lu = *task.unit;
  const auto& state = std::get<BlockIoState>(task.command_state);
  const std::uint64_t lba = state.lba;
  const std::uint64_t bytes = state.bytes;
  if (result < 0 || static_cast<std::uint64_t>(result) != bytes) {
    // The INFORMATION field names the write's first LBA: which blocks of it
    // the medium took is not known.
    task.fail(sense::for_io_error(result, sense::write_error), true, lba);
  } else {
    task.status = Status::good;
  }
  lu.caw_unlock(lba);
  task.complete();
}

void reject(Task& task, SenseCode code) {
  task.fail(code);
  task.complete();
}

}  // namespace

std::uint32_t max_atomic_transfer_blocks(std::uint32_t block_size) {
  // TRANSFER LENGTH is a 16-bit field.
  return std::min<std::uint32_t>(max_atomic_transfer_bytes / block_size, 0xffff);
}

// CDB (SBC-4 r22 table 123): WRPROTECT, DPO, FUA in byte 1; LBA in bytes
// 2-9; ATOMIC BOUNDARY 10-11; TRANSFER LENGTH 12-13; GROUP NUMBER 14.
void run_write_atomic(LogicalUnit& lu, Task& task) {
  const auto& c = task.cdb;
  const std::uint64_t lba = get_be64(&c[2]);
  const std::uint16_t boundary = get_be16(&c[10]);
  const std::uint32_t blocks = get_be16(&c[12]);
  const std::uint64_t bs = lu.params().block_size;
  const std::uint64_t bytes = std::uint64_t{blocks} * bs;
  const std::uint32_t max_blocks = max_atomic_transfer_blocks(lu.params().block_size);
  task.transfer_length = static_cast<std::uint32_t>(bytes);

  // No protection information; the limits of the Block Limits VPD page: a
  // length beyond MAXIMUM ATOMIC TRANSFER LENGTH (or, with an ATOMIC
  // BOUNDARY, beyond the same maximum with a boundary) is INVALID FIELD IN
  // CDB (SBC-4 r22 5.46.2). Any alignment and granularity is accepted
  // (ATOMIC ALIGNMENT and ATOMIC TRANSFER LENGTH GRANULARITY 0).
  if ((c[1] >> 5) != 0) return reject(task, sense::invalid_field_in_cdb);
  if (blocks > max_blocks || boundary > max_blocks) {
    return reject(task, sense::invalid_field_in_cdb);
  }
  if (lba > lu.block_count() || blocks > lu.block_count() - lba) {
    return reject(task, sense::lba_out_of_range);
  }
  if (lu.write_protected()) return reject(task, lu.write_protected_sense());
  if (blocks == 0) {
    task.status = Status::good;
    return task.complete();
  }
  // Only all of it can be written atomically: a Data-Out shorter than the
  // CDB's length is not what the initiator meant.
  const std::uint64_t room = task.buffer != nullptr ? task.buffer_len : 0;
  if (room < bytes) return reject(task, sense::invalid_field_in_cdb);
  if (!lu.caw_lock(lba, blocks)) {
    task.status = Status::busy;
    return task.complete();
  }
  task.command_state = BlockIoState{.lba = lba, .bytes = bytes};
  task.io_continuation = &write_atomic_done;
  const bool fua = c[1] & 0x08;
  lu.backend().write(task.buffer, bytes, lba * bs, fua, &task);
}

}  // namespace ringtgt::scsi::detail
