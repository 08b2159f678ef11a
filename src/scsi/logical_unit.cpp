// LogicalUnit: command dispatch and the SBC block commands (READ, WRITE,
// SYNCHRONIZE CACHE, READ CAPACITY). Nothing here allocates: a READ or WRITE
// is one backend call with the Task itself as the IoOp.
#include "ringtgt/scsi/logical_unit.hpp"

#include <algorithm>
#include <array>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <utility>

#include "command_table.hpp"
#include "commands.hpp"
#include "ringtgt/scsi/cdb.hpp"
#include "ringtgt/scsi/durability_promise.hpp"
#include "ringtgt/storage/durability_log.hpp"
#include "task_set.hpp"

namespace ringtgt::scsi {

namespace {

// Opcodes the block commands tell apart by (the command table dispatches).
namespace op {
constexpr std::uint8_t read6 = 0x08;
constexpr std::uint8_t write6 = 0x0a;
constexpr std::uint8_t reserve6 = 0x16;
constexpr std::uint8_t read10 = 0x28;
constexpr std::uint8_t write10 = 0x2a;
constexpr std::uint8_t write_verify10 = 0x2e;
constexpr std::uint8_t verify10 = 0x2f;
constexpr std::uint8_t prefetch10 = 0x34;
constexpr std::uint8_t read_defect_data10 = 0x37;
constexpr std::uint8_t write_same10 = 0x41;
constexpr std::uint8_t write_verify16 = 0x8e;
constexpr std::uint8_t read12 = 0xa8;
constexpr std::uint8_t write12 = 0xaa;
constexpr std::uint8_t write_verify12 = 0xae;
constexpr std::uint8_t verify12 = 0xaf;
}  // namespace op

constexpr SenseCode kMiscompare{0x0e, 0x1d, 0x00};

using Cdb = std::array<std::uint8_t, 16>;

void good(Task& task) {
  task.status = Status::good;
  task.complete();
}

void reject(Task& task, SenseCode code) {
  task.fail(code);
  task.complete();
}

// What a LU whose store is not open yet still answers: what an initiator
// needs to find it and ask why it is not ready (SPC-4 5.11).
bool answers_before_ready(std::uint8_t opcode) {
  return opcode == 0x12 || opcode == 0xa0 || opcode == 0x03;  // INQUIRY, REPORT LUNS, REQUEST SENSE
}

// The fields READ and WRITE share across their four CDB sizes.
struct BlockRange {
  std::uint64_t lba = 0;
  std::uint32_t blocks = 0;
  bool fua = false;
  std::uint8_t protect = 0;  // RDPROTECT / WRPROTECT
};

BlockRange decode_rw(const Cdb& c) {
  BlockRange r;
  switch (c[0]) {
    case op::read6:
    case op::write6:
      r.lba = get_be24(&c[1]) & 0x1fffff;
      r.blocks = c[4] == 0 ? 256 : c[4];
      return r;
    case op::read10:
    case op::write10:
    case op::write_verify10:
    case op::verify10:
    case op::prefetch10:
      r.lba = get_be32(&c[2]);
      r.blocks = get_be16(&c[7]);
      break;
    case op::read12:
    case op::write12:
    case op::write_verify12:
    case op::verify12:
      r.lba = get_be32(&c[2]);
      r.blocks = get_be32(&c[6]);
      break;
    default:  // 16-byte forms
      r.lba = get_be64(&c[2]);
      r.blocks = get_be32(&c[10]);
      break;
  }
  r.fua = c[1] & 0x08;
  r.protect = c[1] >> 5;
  // WRITE AND VERIFY: bit 3 is reserved there; the verify asks for the data
  // on the medium, which is what FUA gives.
  if (c[0] == op::write_verify10 || c[0] == op::write_verify12 || c[0] == op::write_verify16) {
    r.fua = true;
  }
  return r;
}

bool in_range(const LogicalUnit& lu, std::uint64_t lba, std::uint64_t blocks) {
  return lba <= lu.block_count() && blocks <= lu.block_count() - lba;
}

// What the backend continuations need, kept in the task so that no state
// lives outside it while the I/O is in flight.
using IoState = BlockIoState;

void save_io(Task& task, const IoState& s) {
  task.command_state = s;
}

IoState& io_state(Task& task) {
  return std::get<BlockIoState>(task.command_state);
}

IoState load_io(Task& task) {
  return io_state(task);
}

// A failed or short transfer: the INFORMATION field gets the first block that
// did not make it.
std::uint64_t first_failed_lba(const IoState& s, int result) {
  if (result <= 0) return s.lba;
  return s.lba + static_cast<std::uint64_t>(result) / s.block_size;
}

void read_done(Task& task, int result) {
  const IoState s = load_io(task);
  if (result < 0 || static_cast<std::uint64_t>(result) != s.bytes) {
    task.fail(sense::for_io_error(result, sense::unrecovered_read_error), true,
              first_failed_lba(s, result));
  } else {
    task.status = Status::good;
    task.data_in_length = static_cast<std::uint32_t>(s.bytes);
  }
  task.complete();
}

// Rare paths (a READ whose Data-In ends inside a block, VERIFY with BYTCHK)
// read into a bounce buffer of whole blocks, aligned for O_DIRECT; its
// address is kept in the task's BlockIoState while the read is in flight.
constexpr std::size_t kBounceAlign = 4096;

std::uint8_t* bounce_alloc(std::uint64_t bytes) {
  const std::uint64_t rounded = (bytes + kBounceAlign - 1) / kBounceAlign * kBounceAlign;
  return static_cast<std::uint8_t*>(std::aligned_alloc(kBounceAlign, rounded));
}

std::uint8_t* bounce_of(Task& task) {
  return io_state(task).bounce;
}

void bounce_free(Task& task) {
  std::free(bounce_of(task));
  io_state(task).bounce = nullptr;
}

void start_bounce_read(LogicalUnit& lu, Task& task, const IoState& s, void (*done)(Task&, int)) {
  std::uint8_t* bounce = bounce_alloc(s.bytes);
  if (bounce == nullptr) return reject(task, sense::internal_target_failure);
  save_io(task, s);
  io_state(task).bounce = bounce;
  task.io_continuation = done;
  lu.backend().read(bounce, s.bytes, s.lba * s.block_size, &task);
}

// READ whose Data-In room ends inside a block: the whole blocks were read
// into the bounce buffer, and as many bytes as fit are passed on.
void partial_read_done(Task& task, int result) {
  const IoState s = load_io(task);
  if (result < 0 || static_cast<std::uint64_t>(result) != s.bytes) {
    task.fail(sense::for_io_error(result, sense::unrecovered_read_error), true,
              first_failed_lba(s, result));
  } else {
    const std::uint32_t n = std::min(task.transfer_length, task.buffer_len);
    std::memcpy(task.buffer, bounce_of(task), n);
    task.status = Status::good;
    task.data_in_length = n;
  }
  bounce_free(task);
  task.complete();
}

// VERIFY with BYTCHK: the medium was read into the bounce buffer; compare it
// with the Data-Out bytes (BYTCHK 01b: all of them; 11b: one block repeated).
void verify_done(Task& task, int result) {
  const IoState s = load_io(task);
  const std::uint8_t* medium = bounce_of(task);
  if (result < 0 || static_cast<std::uint64_t>(result) != s.bytes) {
    task.fail(sense::for_io_error(result, sense::unrecovered_read_error), true,
              first_failed_lba(s, result));
  } else {
    const bool one_block = ((task.cdb[1] >> 1) & 0x03) == 0x03;
    task.status = Status::good;
    for (std::uint64_t off = 0; off < s.bytes; off += s.block_size) {
      const std::uint8_t* want = task.buffer + (one_block ? 0 : off);
      if (std::memcmp(medium + off, want, s.block_size) == 0) continue;
      std::uint64_t i = 0;
      while (medium[off + i] == want[i]) ++i;
      // INFORMATION: offset of the first differing byte in the Data-Out
      // buffer (SBC-3 5.25).
      task.fail(kMiscompare, true, one_block ? i : off + i);
      break;
    }
  }
  bounce_free(task);
  task.complete();
}

void write_done(Task& task, int result) {
  const IoState s = load_io(task);
  if (result < 0 || static_cast<std::uint64_t>(result) != s.bytes) {
    task.fail(sense::for_io_error(result, sense::write_error), true, first_failed_lba(s, result));
  } else {
    task.status = Status::good;
  }
  task.complete();
}

void flush_done(Task& task, int result) {
  if (result < 0) {
    task.fail(sense::for_io_error(result, sense::write_error));
  } else {
    task.status = Status::good;
  }
  task.complete();
}

// What READ, WRITE, ORWRITE and VERIFY check before any I/O, in this order:
// protection fields (none supported), the Block Limits maximum, the range,
// and for a command that changes the medium, write protection (read_only or
// SWP). Returns false after rejecting the task.
bool rw_checks_pass(LogicalUnit& lu, Task& task, const BlockRange& r, bool changes_medium) {
  if (r.protect != 0 || r.blocks > lu.params().max_transfer_blocks()) {
    reject(task, sense::invalid_field_in_cdb);
  } else if (!in_range(lu, r.lba, r.blocks)) {
    reject(task, sense::lba_out_of_range);
  } else if (changes_medium && lu.write_protected()) {
    reject(task, lu.write_protected_sense());
  } else {
    return true;
  }
  return false;
}

void read_write(LogicalUnit& lu, Task& task, bool write) {
  const BlockRange r = decode_rw(task.cdb);
  const std::uint64_t bs = lu.params().block_size;
  const std::uint64_t want = std::uint64_t{r.blocks} * bs;
  task.transfer_length = static_cast<std::uint32_t>(std::min<std::uint64_t>(want, UINT32_MAX));

  if (!rw_checks_pass(lu, task, r, write)) return;
  if (r.blocks == 0) return good(task);
  // A write into blocks that a COMPARE AND WRITE, ORWRITE or WRITE ATOMIC is
  // reading and rewriting would break their atomicity, and a read of them
  // could see half of the new data: BUSY, and the initiator retries.
  if (lu.atomic_write_overlaps(r.lba, r.blocks)) {
    task.status = Status::busy;
    return task.complete();
  }

  // Whatever the initiator sent (or has room for); the transport reports
  // the difference from transfer_length as a residual. Writes store whole
  // blocks only; a read whose room ends inside a block still fills it.
  const std::uint64_t room = task.buffer != nullptr ? task.buffer_len : 0;
  const std::uint64_t bytes = std::min(want, room) / bs * bs;
  if (!write && std::min(want, room) % bs != 0) {
    const std::uint64_t whole = (std::min(want, room) + bs - 1) / bs * bs;
    return start_bounce_read(lu, task, {r.lba, whole, bs}, &partial_read_done);
  }
  if (bytes == 0) return good(task);

  save_io(task, {r.lba, bytes, bs});
  const std::uint64_t offset = r.lba * bs;  // lba <= block_count: cannot overflow
  // The backend may complete before returning: the task is not touched after.
  if (write) {
    task.io_continuation = &write_done;
    lu.backend().write(task.buffer, bytes, offset, r.fua, &task);
  } else {
    task.io_continuation = &read_done;
    lu.backend().read(task.buffer, bytes, offset, &task);
  }
}

// WRITE SAME state while in flight: WriteSameState.
std::uint64_t write_same_chunk_blocks(std::uint64_t bs) {
  return detail::write_same_chunk_bytes / bs;
}

void write_same_issue(Task& task);

void write_same_done(Task& task, int result) {
  auto& ws = std::get<WriteSameState>(task.command_state);
  const std::uint64_t lba = ws.next_lba;
  const std::uint64_t left = ws.blocks_left;
  const std::uint64_t bs = ws.block_size;
  const std::uint64_t chunk = std::min(left, write_same_chunk_blocks(bs));
  if (result < 0 || static_cast<std::uint64_t>(result) != chunk * bs) {
    std::free(ws.bounce);
    task.fail(sense::for_io_error(result, sense::write_error), true,
              first_failed_lba({lba, chunk * bs, bs}, result));
    return task.complete();
  }
  if (left == chunk) {
    std::free(ws.bounce);
    task.status = Status::good;
    return task.complete();
  }
  ws.next_lba = lba + chunk;
  ws.blocks_left = left - chunk;
  write_same_issue(task);
}

// One backend write per chunk. A backend that completes inline (the memory
// backend) recurses once per chunk: fine for RAM-sized LUs.
void write_same_issue(Task& task) {
  const auto& ws = std::get<WriteSameState>(task.command_state);
  const std::uint64_t bs = ws.block_size;
  const std::uint64_t chunk = std::min(ws.blocks_left, write_same_chunk_blocks(bs));
  task.io_continuation = &write_same_done;
  task.unit->backend().write(ws.bounce, chunk * bs, ws.next_lba * bs, false, &task);
}

// WRITE SAME(10/16): one Data-Out block (or zeros with NDOB) written to every
// block of the range. NUMBER OF LOGICAL BLOCKS 0 means "to the end of the
// medium" (WSNZ 0), and there is no length limit. UNMAP on a thin LU is one
// deallocation, zeroes one zeroing (provisioning.cpp); any other pattern is
// written chunk by chunk.
void write_same(LogicalUnit& lu, Task& task) {
  const auto& c = task.cdb;
  const bool ten = c[0] == op::write_same10;
  const std::uint64_t lba = ten ? get_be32(&c[2]) : get_be64(&c[2]);
  const std::uint32_t blocks = ten ? get_be16(&c[7]) : get_be32(&c[10]);
  const bool anchor = c[1] & 0x10;
  const bool unmap = c[1] & 0x08;
  const bool ndob = !ten && (c[1] & 0x01);
  const std::uint64_t bs = lu.params().block_size;
  task.transfer_length = ndob ? 0 : static_cast<std::uint32_t>(bs);

  // ANCHOR: there is no anchored state (ANC_SUP 0). UNMAP needs logical
  // block provisioning (LBPWS/LBPWS10): on a fully provisioned LU asking for
  // it is an error rather than a plain write.
  if ((c[1] >> 5) != 0 || anchor) return reject(task, sense::invalid_field_in_cdb);
  if (unmap && !lu.params().thin_provisioned) return reject(task, sense::invalid_field_in_cdb);
  if (!in_range(lu, lba, blocks)) return reject(task, sense::lba_out_of_range);
  if (lu.write_protected()) return reject(task, lu.write_protected_sense());
  const std::uint64_t room = task.buffer != nullptr ? task.buffer_len : 0;
  if (!ndob && room != bs) return reject(task, sense::invalid_field_in_cdb);
  // lba <= block_count here; 0 blocks at the very end writes nothing.
  const std::uint64_t total = blocks != 0 ? blocks : lu.block_count() - lba;
  if (total == 0) return good(task);
  // UNMAP on a thin LU deallocates whatever the Data-Out block holds, as
  // initiators expect (libiscsi's WriteSame*.UnmapUntilEnd sends 0xff with
  // UNMAP and reads back zeroes); SBC lets the device server deallocate.
  const bool zeroes =
      ndob || std::all_of(task.buffer, task.buffer + bs, [](std::uint8_t b) { return b == 0; });
  if (unmap || zeroes) return detail::write_same_zeroes(lu, task, lba, total, unmap);
  detail::write_same_pattern(lu, task, lba, total, task.buffer);
}

}  // namespace

void detail::write_same_pattern(LogicalUnit& lu, Task& task, std::uint64_t lba, std::uint64_t total,
                                const std::uint8_t* pattern) {
  const std::uint64_t bs = lu.params().block_size;
  const std::uint64_t chunk = std::min(total, write_same_chunk_blocks(bs));
  std::uint8_t* bounce = bounce_alloc(chunk * bs);
  if (bounce == nullptr) return reject(task, sense::internal_target_failure);
  for (std::uint64_t off = 0; off < chunk * bs; off += bs) {
    if (pattern == nullptr) {
      std::memset(bounce + off, 0, bs);
    } else {
      std::memcpy(bounce + off, pattern, bs);
    }
  }
  task.command_state = WriteSameState{lba, total, bs, bounce};
  write_same_issue(task);
}

namespace {

// COMPARE AND WRITE: a BlockIoState, bytes one half of the Data-Out, the medium
// read into its bounce buffer.
void caw_finish(Task& task) {
  bounce_free(task);
  task.unit->caw_unlock(io_state(task).lba);
  task.complete();
}

void caw_write_done(Task& task, int result) {
  const IoState s = load_io(task);
  if (result < 0 || static_cast<std::uint64_t>(result) != s.bytes) {
    task.fail(sense::for_io_error(result, sense::write_error), true, first_failed_lba(s, result));
  } else {
    task.status = Status::good;
  }
  caw_finish(task);
}

void caw_read_done(Task& task, int result) {
  const IoState s = load_io(task);
  if (result < 0 || static_cast<std::uint64_t>(result) != s.bytes) {
    task.fail(sense::for_io_error(result, sense::unrecovered_read_error), true,
              first_failed_lba(s, result));
    return caw_finish(task);
  }
  const std::uint8_t* medium = bounce_of(task);
  if (std::memcmp(medium, task.buffer, s.bytes) != 0) {
    std::uint64_t i = 0;
    while (medium[i] == task.buffer[i]) ++i;
    // INFORMATION: offset of the first differing byte (SBC-3 5.2).
    task.fail(kMiscompare, true, i);
    return caw_finish(task);
  }
  task.io_continuation = &caw_write_done;
  const bool fua = task.cdb[1] & 0x08;
  task.unit->backend().write(task.buffer + s.bytes, s.bytes, s.lba * s.block_size, fua, &task);
}

// The LU compares: the medium is read into a bounce buffer, compared, and
// written under the LU's range lock.
void caw_compare_here(Task& task) {
  const IoState s = load_io(task);
  std::uint8_t* bounce = bounce_alloc(s.bytes);
  if (bounce == nullptr) {
    task.fail(sense::internal_target_failure);
    return caw_finish(task);
  }
  io_state(task).bounce = bounce;
  task.io_continuation = &caw_read_done;
  task.unit->backend().read(bounce, s.bytes, s.lba * s.block_size, &task);
}

void caw_store_done(Task& task, int result) {
  const IoState s = load_io(task);
  const std::uint64_t mismatch = s.miscompare_offset;
  // A request the store cannot do itself (librbd: one crossing an object).
  if (result == -EOPNOTSUPP) return caw_compare_here(task);
  if (result == -EILSEQ) {
    // INFORMATION: offset of the first differing byte (SBC-3 5.2).
    const std::uint64_t start = s.lba * s.block_size;
    task.fail(kMiscompare, true, mismatch >= start ? mismatch - start : mismatch);
    return caw_finish(task);
  }
  caw_write_done(task, result);
}

// COMPARE AND WRITE: the Data-Out holds the verify blocks then the write
// blocks. Atomic against other COMPARE AND WRITEs of overlapping ranges (the
// LU's range lock; a second one meanwhile gets BUSY and is retried by the
// initiator), which is what its users (VMFS ATS, cluster locks) rely on.
void compare_and_write(LogicalUnit& lu, Task& task) {
  const auto& c = task.cdb;
  const std::uint64_t lba = get_be64(&c[2]);
  const std::uint32_t blocks = c[13];
  const std::uint64_t bs = lu.params().block_size;
  const std::uint64_t half = std::uint64_t{blocks} * bs;
  task.transfer_length = static_cast<std::uint32_t>(2 * half);

  if ((c[1] >> 5) != 0) return reject(task, sense::invalid_field_in_cdb);
  if (blocks > detail::max_compare_and_write_blocks) {
    return reject(task, sense::invalid_field_in_cdb);
  }
  if (!in_range(lu, lba, blocks)) return reject(task, sense::lba_out_of_range);
  if (lu.write_protected()) return reject(task, lu.write_protected_sense());
  const std::uint64_t room = task.buffer != nullptr ? task.buffer_len : 0;
  // Zero blocks compares and writes nothing; Data-Out sent with it means the
  // initiator meant another length (256 does not fit the one-byte field).
  if (blocks == 0) return room == 0 ? good(task) : reject(task, sense::invalid_field_in_cdb);
  // The Data-Out is the verify data and the write data, exactly: more or less
  // means the CDB's NUMBER OF LOGICAL BLOCKS is not what the initiator meant.
  if (room != 2 * half) return reject(task, sense::invalid_field_in_cdb);
  if (!lu.caw_lock(lba, blocks)) {
    task.status = Status::busy;
    return task.complete();
  }
  save_io(task, {lba, half, bs});
  if (lu.backend().can_compare_and_write()) {
    // The store compares and writes atomically against all its clients (a
    // second gateway on an RBD image too); the offset of a miscompare comes
    // back in the task's state.
    task.io_continuation = &caw_store_done;
    const bool fua = task.cdb[1] & 0x08;
    return lu.backend().compare_and_write(task.buffer, task.buffer + half, half, lba * bs, fua,
                                          &io_state(task).miscompare_offset, &task);
  }
  caw_compare_here(task);
}

// ORWRITE(16): a BlockIoState, the medium read into its bounce buffer, ORed with the Data-Out and
// written back. Holds the same range lock as COMPARE AND WRITE for the whole read-modify-write, so
// no other write lands in between.
void orwrite_read_done(Task& task, int result) {
  const IoState s = load_io(task);
  if (result < 0 || static_cast<std::uint64_t>(result) != s.bytes) {
    task.fail(sense::for_io_error(result, sense::unrecovered_read_error), true,
              first_failed_lba(s, result));
    return caw_finish(task);
  }
  std::uint8_t* medium = bounce_of(task);
  for (std::uint64_t i = 0; i < s.bytes; ++i) medium[i] |= task.buffer[i];
  task.io_continuation = &caw_write_done;  // the same ending as COMPARE AND WRITE
  const bool fua = task.cdb[1] & 0x08;
  task.unit->backend().write(medium, s.bytes, s.lba * s.block_size, fua, &task);
}

void orwrite(LogicalUnit& lu, Task& task) {
  const BlockRange r = decode_rw(task.cdb);
  const std::uint64_t bs = lu.params().block_size;
  const std::uint64_t want = std::uint64_t{r.blocks} * bs;
  task.transfer_length = static_cast<std::uint32_t>(std::min<std::uint64_t>(want, UINT32_MAX));

  if (!rw_checks_pass(lu, task, r, true)) return;
  if (r.blocks == 0) return good(task);
  // Whole blocks of what the initiator sent; the rest is a residual.
  const std::uint64_t room = task.buffer != nullptr ? task.buffer_len : 0;
  const std::uint64_t bytes = std::min(want, room) / bs * bs;
  if (bytes == 0) return good(task);
  const auto blocks = static_cast<std::uint32_t>(bytes / bs);
  if (!lu.caw_lock(r.lba, blocks)) {
    task.status = Status::busy;
    return task.complete();
  }
  std::uint8_t* bounce = bounce_alloc(bytes);
  if (bounce == nullptr) {
    lu.caw_unlock(r.lba);
    return reject(task, sense::internal_target_failure);
  }
  save_io(task, {r.lba, bytes, bs, bounce});
  task.io_continuation = &orwrite_read_done;
  lu.backend().read(bounce, bytes, r.lba * bs, &task);
}

// VERIFY(10/12/16). BYTCHK 00b checks the range only (the medium is a file
// or block device whose own checks run on every read); 01b compares the
// Data-Out blocks with the medium, 11b compares one Data-Out block with each.
void verify(LogicalUnit& lu, Task& task) {
  const BlockRange r = decode_rw(task.cdb);
  const std::uint64_t bs = lu.params().block_size;
  const std::uint8_t bytchk = (task.cdb[1] >> 1) & 0x03;
  const std::uint64_t out_blocks = bytchk == 0x01 ? r.blocks : bytchk == 0x03 ? 1 : 0;
  task.transfer_length =
      static_cast<std::uint32_t>(std::min<std::uint64_t>(out_blocks * bs, UINT32_MAX));

  if (bytchk == 0x02) return reject(task, sense::invalid_field_in_cdb);
  if (!rw_checks_pass(lu, task, r, false)) return;
  if (r.blocks == 0 || bytchk == 0) return good(task);

  const std::uint64_t room = task.buffer != nullptr ? task.buffer_len : 0;
  if (room < out_blocks * bs) return reject(task, sense::invalid_field_in_cdb);
  start_bounce_read(lu, task, {r.lba, std::uint64_t{r.blocks} * bs, bs}, &verify_done);
}

// LBA and block count of the commands that share the 10-byte layout (LBA at
// byte 2, 16-bit count at byte 7) and the 16-byte one (64-bit LBA at byte 2,
// 32-bit count at byte 10): PRE-FETCH and SYNCHRONIZE CACHE.
std::pair<std::uint64_t, std::uint64_t> lba_and_count_10_16(const Cdb& c) {
  if (c[0] < 0x80) return {get_be32(&c[2]), get_be16(&c[7])};
  return {get_be64(&c[2]), get_be32(&c[10])};
}

// PRE-FETCH(10/16): the range is checked; the host page cache does the rest,
// so GOOD (not CONDITION MET) is the answer.
void prefetch(LogicalUnit& lu, Task& task) {
  const auto [lba, blocks] = lba_and_count_10_16(task.cdb);
  if (!in_range(lu, lba, blocks)) return reject(task, sense::lba_out_of_range);
  good(task);
}

void synchronize_cache(LogicalUnit& lu, Task& task) {
  const auto [lba, blocks] = lba_and_count_10_16(task.cdb);
  // blocks == 0 means "to the end of the medium": only lba is checked then.
  if (!in_range(lu, lba, blocks)) return reject(task, sense::lba_out_of_range);
  // IMMED is honoured by simply not returning early: we answer when it is
  // durable, which is what IMMED=0 asks and is allowed for IMMED=1.
  task.io_continuation = &flush_done;
  lu.backend().flush(&task);
}

std::uint64_t last_lba(const LogicalUnit& lu) {
  return lu.block_count() == 0 ? 0 : lu.block_count() - 1;
}

void read_capacity10(LogicalUnit& lu, Task& task) {
  std::uint8_t out[8];
  const std::uint64_t last = last_lba(lu);
  put_be32(&out[0], last > 0xfffffffeu ? 0xffffffffu : static_cast<std::uint32_t>(last));
  put_be32(&out[4], lu.params().block_size);
  detail::finish_data_in(task, out, sizeof out, sizeof out);
}

void read_capacity16(LogicalUnit& lu, Task& task) {
  std::uint8_t out[32] = {};
  put_be64(&out[0], last_lba(lu));
  put_be32(&out[8], lu.params().block_size);
  // PROT_EN 0; LBPPBE from the configured physical block size, LOWEST
  // ALIGNED LBA 0. A thin LU reports LBPME, and LBPRZ where
  // detail::reports_lbprz says.
  out[13] = lu.params().physical_block_exponent & 0x0f;
  if (lu.params().thin_provisioned) out[14] = 0x80;
  if (detail::reports_lbprz(lu.params())) out[14] |= 0x40;
  detail::finish_data_in(task, out, sizeof out, get_be32(&task.cdb[10]));
}

// GET LBA STATUS: a fully provisioned LU has every block mapped, so one
// descriptor says so from the starting LBA to the end (or 2^32-1 of them).
void get_lba_status(LogicalUnit& lu, Task& task) {
  const std::uint64_t lba = get_be64(&task.cdb[2]);
  const std::uint32_t alloc = get_be32(&task.cdb[10]);
  task.transfer_length = alloc;
  if (lba >= lu.block_count()) return reject(task, sense::lba_out_of_range);
  if (lu.params().thin_provisioned) return detail::get_lba_status_thin(lu, task, lba, alloc);
  std::uint8_t out[24] = {};
  put_be32(&out[0], sizeof out - 4);  // PARAMETER DATA LENGTH
  put_be64(&out[8], lba);
  const std::uint64_t left = lu.block_count() - lba;
  put_be32(&out[16], left > 0xffffffffu ? 0xffffffffu : static_cast<std::uint32_t>(left));
  out[20] = 0x00;  // PROVISIONING STATUS: mapped
  detail::finish_data_in(task, out, sizeof out, alloc);
}

// READ DEFECT DATA(10/12): a file or volume has no defect lists to report;
// the header echoes the lists and format asked for, with length zero.
void read_defect_data(Task& task) {
  const auto& c = task.cdb;
  std::uint8_t out[8] = {};
  if (c[0] == op::read_defect_data10) {
    const std::uint32_t alloc = get_be16(&c[7]);
    out[1] = c[2] & 0x1f;  // PLISTV, GLISTV, DEFECT LIST FORMAT
    return detail::finish_data_in(task, out, 4, alloc);
  }
  const std::uint32_t alloc = get_be32(&c[6]);
  out[1] = c[1] & 0x1f;
  detail::finish_data_in(task, out, 8, alloc);
}

// Commands an SPC-2 reservation held by another I_T nexus does not block.
bool allowed_while_reserved(const Cdb& c) {
  const detail::Command* command = detail::find_command(c);
  return command != nullptr && command->allowed_while_reserved;
}

// REPORT SUPPORTED TASK MANAGEMENT FUNCTIONS (SPC-4 6.40): what the iSCSI
// layer answers with "function complete" — ABORT TASK, ABORT TASK SET,
// CLEAR TASK SET, LOGICAL UNIT RESET and TARGET (warm/cold) RESET; QUERY TASK
// and I_T NEXUS RESET are not offered. REPD asks for the extended form (no
// timeouts reported: TMFTMOV 0).
void report_supported_tmfs(Task& task) {
  const auto& c = task.cdb;
  const std::uint32_t alloc = get_be32(&c[6]);
  const bool repd = c[2] & 0x80;
  std::array<std::uint8_t, 16> d{};
  d[0] = 0x80 | 0x40 | 0x10 | 0x08 | 0x02;  // ATS, ATSS, CTSS, LURS, TRS
  d[3] = repd ? 0x0c : 0x00;                // ADDITIONAL DATA LENGTH
  detail::finish_data_in(task, d.data(), repd ? 16 : 4, alloc);
}

// A single-LU view for REPORT LUNS sent straight to a LogicalUnit rather
// than through its LunMap.
struct OneLun {
  std::uint64_t lun;
  const std::uint64_t* begin() const { return &lun; }
  const std::uint64_t* end() const { return &lun + 1; }
};

}  // namespace

LogicalUnit::LogicalUnit(std::uint64_t lun, LunParams params,
                         std::unique_ptr<storage::Backend> backend)
    : lun_(lun),
      params_(std::move(params)),
      backend_(std::move(backend)),
      block_count_(0),
      task_set_(std::make_unique<TaskSet>()) {
  const std::uint32_t bs = params_.block_size;
  if (bs < 512 || bs > 65536 || (bs & (bs - 1)) != 0) {
    throw std::invalid_argument("LUN " + std::to_string(lun) + ": block size " +
                                std::to_string(bs) + " is not a power of two in 512..65536");
  }
  if (!backend_) throw std::invalid_argument("LUN " + std::to_string(lun) + ": no backend");
  if (params_.thin_provisioned && !backend_->can_unmap() && !params_.read_only) {
    throw std::invalid_argument("LUN " + std::to_string(lun) +
                                ": thin provisioning needs a backend "
                                "that can unmap, and " +
                                backend_->describe() + " cannot");
  }
  block_count_ = backend_->size_bytes() / bs;
  // Generations never repeat across LUs, so a Nexus::LuView left by a removed
  // LU cannot pass for one of a new LU at the same address.
  static std::atomic<std::uint64_t> next_generation{1};
  state_generation_.store(next_generation.fetch_add(std::uint64_t{1} << 32));
  load_reservations();
  load_sanitize_state();
}

LogicalUnit::~LogicalUnit() = default;

void LogicalUnit::set_block_count(std::uint64_t blocks) {
  if (block_count_.exchange(blocks, std::memory_order_relaxed) == blocks) return;
  // Every nexus hears CAPACITY DATA HAS CHANGED (SBC-4 4.11) before its next
  // command, so initiators read the capacity again.
  post_unit_attention(0x2a, 0x09);
}

bool LogicalUnit::holds_reservation(const Nexus* nexus) const {
  static const Nexus none{};
  const Nexus& n = nexus != nullptr ? *nexus : none;
  return holder_session_ == n.session_id && holder_initiator_ == n.initiator_name;
}

bool LogicalUnit::reservation_conflict(const Task& task) {
  if (!reserved_.load(std::memory_order_acquire)) return false;
  if (allowed_while_reserved(task.cdb)) return false;
  std::lock_guard lock(state_mutex_);
  return reserved_.load(std::memory_order_relaxed) && !holds_reservation(task.nexus);
}

void LogicalUnit::reserve(Task& task) {
  const auto& c = task.cdb;
  // Third-party and extent reservations (obsolete since SPC-2) are not supported.
  const bool third_party = c[0] == op::reserve6 ? (c[1] & 0x11) != 0 : (c[1] & 0x13) != 0;
  if (third_party) return reject(task, sense::invalid_field_in_cdb);
  Status status = Status::good;
  {
    std::lock_guard lock(state_mutex_);
    if (auto s = spc2_meets_persistent(task)) {
      status = *s;
    } else if (reserved_.load(std::memory_order_relaxed) && !holds_reservation(task.nexus)) {
      status = Status::reservation_conflict;
    } else {
      holder_initiator_ = task.nexus != nullptr ? task.nexus->initiator_name : std::string{};
      holder_session_ = task.nexus != nullptr ? task.nexus->session_id : 0;
      reserved_.store(true, std::memory_order_release);
    }
  }
  task.status = status;
  task.complete();
}

void LogicalUnit::release(Task& task) {
  Status status = Status::good;
  {
    std::lock_guard lock(state_mutex_);
    if (auto s = spc2_meets_persistent(task)) {
      status = *s;
    } else if (reserved_.load(std::memory_order_relaxed) && holds_reservation(task.nexus)) {
      // From another nexus RELEASE is a no-op with GOOD status (SPC-2 7.17).
      reserved_.store(false, std::memory_order_release);
    }
  }
  task.status = status;
  task.complete();
}

bool LogicalUnit::caw_lock(std::uint64_t lba, std::uint32_t blocks) {
  std::lock_guard lock(caw_mutex_);
  for (const auto& [first, count] : caw_ranges_) {
    if (lba < first + count && first < lba + blocks) return false;
  }
  caw_ranges_.emplace_back(lba, blocks);
  caw_active_.fetch_add(1, std::memory_order_release);
  return true;
}

bool LogicalUnit::atomic_write_overlaps(std::uint64_t lba, std::uint32_t blocks) {
  if (caw_active_.load(std::memory_order_acquire) == 0) return false;
  std::lock_guard lock(caw_mutex_);
  for (const auto& [first, count] : caw_ranges_) {
    if (lba < first + count && first < lba + blocks) return true;
  }
  return false;
}

void LogicalUnit::caw_unlock(std::uint64_t lba) {
  std::lock_guard lock(caw_mutex_);
  for (auto it = caw_ranges_.begin(); it != caw_ranges_.end(); ++it) {
    if (it->first == lba) {
      caw_ranges_.erase(it);
      caw_active_.fetch_sub(1, std::memory_order_release);
      return;
    }
  }
}

void LogicalUnit::nexus_lost(const Nexus& nexus) {
  const std::string port = initiator_port_name(nexus);
  std::lock_guard lock(state_mutex_);
  if (reserved_.load(std::memory_order_relaxed) && holds_reservation(&nexus)) {
    reserved_.store(false, std::memory_order_release);
  }
  // Its registrations stay (they are persistent); its unit attentions go,
  // and a new nexus from the same port starts with 29h/00h.
  unit_attentions_.forget(port);
}

void LogicalUnit::reset() {
  {
    std::lock_guard lock(state_mutex_);
    reserved_.store(false, std::memory_order_release);
  }
  // Persistent reservations survive resets (SPC-4 5.12.1).
  post_unit_attention(sense::lu_reset_occurred.asc, sense::lu_reset_occurred.ascq);
}

void LogicalUnit::execute(Task& task) {
  task.reset_outcome();
  task.unit = this;
  if (stats_) {
    if ((task.counters = stats_->local()) != nullptr) {
      task.counters->started.add();
      task.started_ns = metrics::monotonic_ns();
    }
  }
  task.descriptor_sense = descriptor_sense();
  // Before unit attentions: a new nexus hears that a sanitize still runs
  // (libiscsi's Sanitize.Reset logs in again and expects just that).
  if (sanitize_state_.load(std::memory_order_acquire) != 0 && sanitize_blocks(task)) return;
  // Tests: the durability log hears of every medium-changing command.
  if (storage::durability_seam().log != nullptr)
    record_command_started(task, backend_->ack_policy());
  if (nexus_state_blocks(task)) return;  // unit attention or persistent reservation conflict
  if (params_.becoming_ready && !answers_before_ready(task.cdb[0]))
    return reject(task, sense::becoming_ready);
  if (reservation_conflict(task)) {
    task.status = Status::reservation_conflict;
    return task.complete();
  }
  const detail::Command* command = detail::find_command(task.cdb);
  if (command == nullptr || !detail::offered(*command, params_.spc2_reservations,
                                             params_.thin_provisioned, params_.allow_sanitize)) {
    if (command != nullptr && command->opcode == detail::kSanitizeOpcode) sanitize_refused(task);
    return reject(task, sense::invalid_opcode);
  }
  command->run(*this, task);
}

// --- the command table's handlers for the commands of this file ---

void detail::run_good(LogicalUnit&, Task& task) {
  good(task);
}

void detail::run_prevent_allow_medium_removal(LogicalUnit&, Task& task) {
  // Not removable (RMB 0): PREVENT is accepted and has nothing to lock.
  if ((task.cdb[4] & 0x03) > 0x01) return reject(task, sense::invalid_field_in_cdb);
  good(task);
}

void detail::run_read(LogicalUnit& lu, Task& task) {
  read_write(lu, task, false);
}

void detail::run_write(LogicalUnit& lu, Task& task) {
  read_write(lu, task, true);
}

void detail::run_verify(LogicalUnit& lu, Task& task) {
  verify(lu, task);
}

void detail::run_prefetch(LogicalUnit& lu, Task& task) {
  prefetch(lu, task);
}

void detail::run_synchronize_cache(LogicalUnit& lu, Task& task) {
  synchronize_cache(lu, task);
}

void detail::run_write_same(LogicalUnit& lu, Task& task) {
  write_same(lu, task);
}

void detail::run_compare_and_write(LogicalUnit& lu, Task& task) {
  compare_and_write(lu, task);
}

void detail::run_orwrite(LogicalUnit& lu, Task& task) {
  orwrite(lu, task);
}

void detail::run_read_capacity10(LogicalUnit& lu, Task& task) {
  read_capacity10(lu, task);
}

void detail::run_read_capacity16(LogicalUnit& lu, Task& task) {
  read_capacity16(lu, task);
}

void detail::run_get_lba_status(LogicalUnit& lu, Task& task) {
  get_lba_status(lu, task);
}

void detail::run_read_defect_data(LogicalUnit&, Task& task) {
  read_defect_data(task);
}

void detail::run_report_supported_tmfs(LogicalUnit&, Task& task) {
  report_supported_tmfs(task);
}

void detail::run_report_luns(LogicalUnit& lu, Task& task) {
  detail::report_luns(OneLun{lu.lun()}, task);
}

}  // namespace ringtgt::scsi
