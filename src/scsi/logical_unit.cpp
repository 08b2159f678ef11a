// LogicalUnit: command dispatch and the SBC block commands (READ, WRITE,
// SYNCHRONIZE CACHE, READ CAPACITY). Nothing here allocates: a READ or WRITE
// is one backend call with the Task itself as the IoOp.
#include "ringtgt/scsi/logical_unit.hpp"

#include <algorithm>
#include <array>
#include <stdexcept>
#include <string>

#include "ringtgt/scsi/cdb.hpp"
#include "ringtgt/scsi/commands.hpp"

namespace ringtgt::scsi {

namespace {

namespace op {
constexpr std::uint8_t test_unit_ready = 0x00;
constexpr std::uint8_t request_sense = 0x03;
constexpr std::uint8_t read6 = 0x08;
constexpr std::uint8_t write6 = 0x0a;
constexpr std::uint8_t inquiry = 0x12;
constexpr std::uint8_t mode_sense6 = 0x1a;
constexpr std::uint8_t start_stop_unit = 0x1b;
constexpr std::uint8_t read_capacity10 = 0x25;
constexpr std::uint8_t read10 = 0x28;
constexpr std::uint8_t write10 = 0x2a;
constexpr std::uint8_t synchronize_cache10 = 0x35;
constexpr std::uint8_t mode_sense10 = 0x5a;
constexpr std::uint8_t read16 = 0x88;
constexpr std::uint8_t write16 = 0x8a;
constexpr std::uint8_t synchronize_cache16 = 0x91;
constexpr std::uint8_t service_action_in16 = 0x9e;
constexpr std::uint8_t report_luns = 0xa0;
constexpr std::uint8_t read12 = 0xa8;
constexpr std::uint8_t write12 = 0xaa;
}  // namespace op

constexpr std::uint8_t kReadCapacity16 = 0x10;  // service action of SERVICE ACTION IN(16)

using Cdb = std::array<std::uint8_t, 16>;

void good(Task& task) {
  task.status = Status::good;
  task.complete();
}

void reject(Task& task, SenseCode code) {
  task.fail(code);
  task.complete();
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
      r.lba = get_be32(&c[2]);
      r.blocks = get_be16(&c[7]);
      break;
    case op::read12:
    case op::write12:
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
  return r;
}

bool in_range(const LogicalUnit& lu, std::uint64_t lba, std::uint64_t blocks) {
  return lba <= lu.block_count() && blocks <= lu.block_count() - lba;
}

// What the backend continuations need, kept in the task so that no state
// lives outside it while the I/O is in flight.
struct IoState {
  std::uint64_t lba;
  std::uint64_t bytes;
  std::uint64_t block_size;
};

void save_io(Task& task, const IoState& s) {
  task.lu_scratch[0] = s.lba;
  task.lu_scratch[1] = s.bytes;
  task.lu_scratch[2] = s.block_size;
}

IoState load_io(const Task& task) {
  return {task.lu_scratch[0], task.lu_scratch[1], task.lu_scratch[2]};
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
    task.fail(sense::unrecovered_read_error, true, first_failed_lba(s, result));
  } else {
    task.status = Status::good;
    task.data_in_length = static_cast<std::uint32_t>(s.bytes);
  }
  task.complete();
}

void write_done(Task& task, int result) {
  const IoState s = load_io(task);
  if (result < 0 || static_cast<std::uint64_t>(result) != s.bytes) {
    task.fail(sense::write_error, true, first_failed_lba(s, result));
  } else {
    task.status = Status::good;
  }
  task.complete();
}

void flush_done(Task& task, int result) {
  if (result < 0) {
    task.fail(sense::write_error);
  } else {
    task.status = Status::good;
  }
  task.complete();
}

void read_write(LogicalUnit& lu, Task& task, bool write) {
  const BlockRange r = decode_rw(task.cdb);
  const std::uint64_t bs = lu.params().block_size;
  const std::uint64_t want = std::uint64_t{r.blocks} * bs;
  task.transfer_length = static_cast<std::uint32_t>(std::min<std::uint64_t>(want, UINT32_MAX));

  if (r.protect != 0) return reject(task, sense::invalid_field_in_cdb);
  if (r.blocks > detail::max_transfer_blocks(lu.params().block_size)) {
    return reject(task, sense::invalid_field_in_cdb);
  }
  if (!in_range(lu, r.lba, r.blocks)) return reject(task, sense::lba_out_of_range);
  if (write && lu.params().read_only) return reject(task, sense::write_protected);
  if (r.blocks == 0) return good(task);

  // Whatever the initiator sent (or has room for), in whole blocks; the
  // transport reports the difference from transfer_length as a residual.
  const std::uint64_t room = task.buffer != nullptr ? task.buffer_len : 0;
  const std::uint64_t bytes = std::min(want, room) / bs * bs;
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

void synchronize_cache(LogicalUnit& lu, Task& task) {
  const auto& c = task.cdb;
  std::uint64_t lba;
  std::uint64_t blocks;
  if (c[0] == op::synchronize_cache10) {
    lba = get_be32(&c[2]);
    blocks = get_be16(&c[7]);
  } else {
    lba = get_be64(&c[2]);
    blocks = get_be32(&c[10]);
  }
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
  // PROT_EN 0, LBPPBE 0 (one logical block per physical block), LBPME 0.
  detail::finish_data_in(task, out, sizeof out, get_be32(&task.cdb[10]));
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
    : lun_(lun), params_(std::move(params)), backend_(std::move(backend)), block_count_(0) {
  const std::uint32_t bs = params_.block_size;
  if (bs < 512 || bs > 65536 || (bs & (bs - 1)) != 0) {
    throw std::invalid_argument("LUN " + std::to_string(lun) + ": block size " +
                                std::to_string(bs) + " is not a power of two in 512..65536");
  }
  if (!backend_) throw std::invalid_argument("LUN " + std::to_string(lun) + ": no backend");
  block_count_ = backend_->size_bytes() / bs;
}

void LogicalUnit::execute(Task& task) {
  task.reset_outcome();
  task.lu_context = this;
  switch (task.cdb[0]) {
    case op::test_unit_ready:
    case op::start_stop_unit:  // nothing to spin up or eject
      return good(task);
    case op::request_sense:
      // Sense is returned with the failing command (autosense), so there is
      // never any pending.
      return detail::request_sense(task, sense::no_sense);
    case op::inquiry:
      return detail::inquiry(this, task);
    case op::mode_sense6:
    case op::mode_sense10:
      return detail::mode_sense(*this, task);
    case op::read_capacity10:
      return read_capacity10(*this, task);
    case op::service_action_in16:
      if ((task.cdb[1] & 0x1f) == kReadCapacity16) return read_capacity16(*this, task);
      task.transfer_length = get_be32(&task.cdb[10]);
      return reject(task, sense::invalid_field_in_cdb);
    case op::read6:
    case op::read10:
    case op::read12:
    case op::read16:
      return read_write(*this, task, false);
    case op::write6:
    case op::write10:
    case op::write12:
    case op::write16:
      return read_write(*this, task, true);
    case op::synchronize_cache10:
    case op::synchronize_cache16:
      return synchronize_cache(*this, task);
    case op::report_luns:
      return detail::report_luns(OneLun{lun_}, task);
    default:
      return reject(task, sense::invalid_opcode);
  }
}

}  // namespace ringtgt::scsi
