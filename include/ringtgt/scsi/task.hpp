// A SCSI command as the transport hands it to a logical unit, and its outcome.
#pragma once

#include <cerrno>

#include <array>
#include <cstdint>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "ringtgt/metrics/counters.hpp"
#include "ringtgt/reactor/io_engine.hpp"
#include "ringtgt/scsi/durability_promise.hpp"

namespace ringtgt::scsi {

enum class Status : std::uint8_t {
  good = 0x00,
  check_condition = 0x02,
  condition_met = 0x04,
  busy = 0x08,
  reservation_conflict = 0x18,
  task_set_full = 0x28,
  aca_active = 0x30,
  task_aborted = 0x40,
};

enum class DataDirection : std::uint8_t {
  none,
  from_device,  // Data-In: the initiator reads
  to_device,    // Data-Out: the initiator writes
};

// Sense key with additional sense code and qualifier.
struct SenseCode {
  std::uint8_t key, asc, ascq;
};

namespace sense {
inline constexpr SenseCode invalid_opcode{0x05, 0x20, 0x00};
inline constexpr SenseCode invalid_field_in_cdb{0x05, 0x24, 0x00};
inline constexpr SenseCode invalid_field_in_parameter_list{0x05, 0x26, 0x00};
inline constexpr SenseCode lba_out_of_range{0x05, 0x21, 0x00};
inline constexpr SenseCode lun_not_supported{0x05, 0x25, 0x00};
inline constexpr SenseCode parameter_list_length_error{0x05, 0x1a, 0x00};
inline constexpr SenseCode write_protected{0x07, 0x27, 0x00};
inline constexpr SenseCode software_write_protected{0x07, 0x27, 0x02};
inline constexpr SenseCode unrecovered_read_error{0x03, 0x11, 0x00};
inline constexpr SenseCode write_error{0x03, 0x0c, 0x00};
inline constexpr SenseCode internal_target_failure{0x04, 0x44, 0x00};
inline constexpr SenseCode power_on_reset{0x06, 0x29, 0x00};
inline constexpr SenseCode lu_reset_occurred{0x06, 0x29, 0x03};  // BUS DEVICE RESET FUNCTION
inline constexpr SenseCode no_sense{0x00, 0x00, 0x00};
// SANITIZE (SBC-4 4.33): NOT READY, LOGICAL UNIT NOT READY, SANITIZE IN
// PROGRESS while one runs; MEDIUM ERROR, SANITIZE COMMAND FAILED after one
// failed (failure mode).
inline constexpr SenseCode sanitize_in_progress{0x02, 0x04, 0x1b};
inline constexpr SenseCode sanitize_failed{0x03, 0x31, 0x03};
// ABORTED COMMAND: a command whose Data-Out was lost to a digest or DataSN
// error (RFC 7143 §11.4.7.2).
inline constexpr SenseCode protocol_service_crc_error{0x0b, 0x47, 0x05};
// DATA PROTECT: a thin-provisioned store ran out of space (SBC-4 4.7.3.7).
inline constexpr SenseCode space_allocation_failed_write_protect{0x07, 0x27, 0x07};

// NOT READY, LOGICAL UNIT IS IN PROCESS OF BECOMING READY: a store that is
// away for now (a Ceph cluster that did not answer in time); initiators retry.
inline constexpr SenseCode becoming_ready{0x02, 0x04, 0x01};

// A mirrored LUN below its write quorum (storage/mirrored_backend.hpp):
// on_quorum_loss = "fail" answers ABORTED COMMAND, LOGICAL UNIT FAILURE,
// which Linux's SCSI midlayer retries (scsi_check_sense: NEEDS_RETRY, up to
// sd's 5 retries) and then fails upward as an I/O error; "read_only" answers
// DATA PROTECT, WRITE PROTECTED, which it fails at once (docs/replication.md).
inline constexpr SenseCode quorum_lost{0x0b, 0x3e, 0x01};

// The sense for a failed backend operation (result: -errno, or a short byte
// count): ENOSPC is a thin store out of space, ETIMEDOUT and EAGAIN a store
// that is away for now (retryable), EINVAL a misaligned request
// (our bug, logged by the backend: not the medium's fault), ENOLINK and
// EROFS a mirrored LUN below its write quorum, anything else the medium
// error given.
constexpr SenseCode for_io_error(int result, SenseCode medium) {
  if (result == -ENOLINK) return quorum_lost;
  if (result == -EROFS) return write_protected;
  if (result == -ENOSPC) return space_allocation_failed_write_protect;
  if (result == -ETIMEDOUT || result == -EAGAIN) return becoming_ready;
  if (result == -EINVAL) return internal_target_failure;
  return medium;
}
}  // namespace sense

// What an EXTENDED COPY left on its I_T nexus for RECEIVE COPY RESULTS (COPY
// STATUS) to report: one per logical unit and LIST IDENTIFIER.
struct HeldCopyStatus {
  const void* lu = nullptr;
  std::uint8_t list_id = 0;
  bool in_progress = false;
  bool failed = false;
  std::uint16_t segments_processed = 0;
  std::uint32_t bytes_copied = 0;
  // FAILED SEGMENT DETAILS (LIST ID USAGE 00b only): the failed command's
  // status and sense data, until read in full.
  bool hold_details = false;
  Status command_status = Status::good;
  std::uint8_t sense_len = 0;
  std::array<std::uint8_t, 32> sense{};
};

// Who sent the command: what reservations, masking and unit attentions key on.
struct Nexus {
  std::string initiator_name;
  std::string target_name;
  std::uint64_t session_id = 0;  // ISID << 16 | TSIH
  // What this nexus last learned from each logical unit it used: the LU's
  // state generation then (unit attentions and persistent reservations) and
  // its standing under the persistent reservation, so that a command finds
  // nothing changed without a lock. Only the thread that runs the nexus's
  // commands touches it.
  struct LuView {
    const void* lu = nullptr;
    std::uint64_t generation = 0;  // 0: look again
    std::uint8_t pr_type = 0;      // 0: no persistent reservation
    bool pr_registered = false;
    bool pr_holder = false;
  };
  mutable std::vector<LuView> lu_views;
  // Copy statuses held for RECEIVE COPY RESULTS (a few; the oldest finished
  // ones make room). They go with the nexus; same thread rule as lu_views.
  mutable std::vector<HeldCopyStatus> copy_statuses{};
};

class Task;
class LogicalUnit;
namespace detail {
struct CopyJob;
}

// What a command keeps between its backend operations, by kind of command: each piece
// has a name and a type, and lives in the Task (nothing is allocated per I/O).
// A transfer of whole blocks: READ and VERIFY through a bounce buffer, WRITE ATOMIC,
// COMPARE AND WRITE, ORWRITE.
struct BlockIoState {
  std::uint64_t lba = 0;
  std::uint64_t bytes = 0;  // COMPARE AND WRITE: one half of the Data-Out
  std::uint64_t block_size = 0;
  std::uint8_t* bounce = nullptr;  // the medium read into a buffer of the LU's own
  // Where a store's own COMPARE AND WRITE found the first difference (a byte offset).
  std::uint64_t miscompare_offset = 0;
};
// WRITE SAME of a pattern, written chunk by chunk.
struct WriteSameState {
  std::uint64_t next_lba = 0;
  std::uint64_t blocks_left = 0;  // this chunk included
  std::uint64_t block_size = 0;
  std::uint8_t* bounce = nullptr;  // one chunk of the pattern
};
// UNMAP, one block descriptor at a time; the descriptors stay in the Data-Out buffer,
// which the transport keeps until the task completes.
struct UnmapState {
  std::uint64_t next = 0;   // the descriptor being unmapped
  std::uint64_t count = 0;  // descriptors in the list
  std::uint64_t block_size = 0;
  std::uint64_t last = 0;  // the last one with blocks to unmap (its unmap makes all durable)
};
// WRITE SAME of zeroes, or with UNMAP: one zeroing or deallocation of the range.
struct ZeroRangeState {
  std::uint64_t lba = 0;
  std::uint64_t blocks = 0;
};
// EXTENDED COPY: the copy in flight, which the task owns until it completes.
struct CopyState {
  detail::CopyJob* job = nullptr;
};
using CommandState = std::variant<std::monostate, BlockIoState, WriteSameState, UnmapState,
                                  ZeroRangeState, CopyState>;

class TaskOwner {
 public:
  // Called exactly once per execute(), on the thread the task runs on.
  virtual void task_complete(Task& task) = 0;
  // The logical unit aborted task, which is in its task set (ABORT TASK SET,
  // CLEAR TASK SET, a reset, PREEMPT AND ABORT; SAM-5 7.1), on the thread of
  // the task. The transport ends it without status. Returns whether the
  // abort must wait for it to leave the task set: it may still touch the
  // medium (it is in the backend and not only_waiting()).
  virtual bool task_aborted(Task& task) { return false; }

 protected:
  ~TaskOwner() = default;
};

// Filled in by the transport, executed by a LogicalUnit, returned through
// owner->task_complete(). A Task is also the IoOp of its single backend
// operation in flight, so executing a command allocates nothing.
class Task : public reactor::IoOp {
 public:
  // --- set by the transport ---
  std::array<std::uint8_t, 16> cdb{};
  std::uint64_t lun = 0;              // LUN number (flat or peripheral addressing decoded)
  std::uint32_t expected_length = 0;  // the initiator's expected data transfer length
  DataDirection direction = DataDirection::none;
  // to_device: the Data-Out bytes received (buffer_len of them);
  // from_device: room for buffer_len bytes of Data-In.
  std::uint8_t* buffer = nullptr;
  std::uint32_t buffer_len = 0;
  const Nexus* nexus = nullptr;
  TaskOwner* owner = nullptr;

  // --- set by the logical unit ---
  // Build sense data in descriptor format (the LU's D_SENSE) rather than fixed.
  bool descriptor_sense = false;
  Status status = Status::good;
  std::array<std::uint8_t, 32> sense{};  // sense data, fixed or descriptor format
  std::uint8_t sense_len = 0;
  std::uint32_t data_in_length = 0;   // bytes of buffer holding Data-In
  std::uint32_t transfer_length = 0;  // bytes the CDB asks to move (residual reference)
  // A PREEMPT AND ABORT whose only work left is to wait for the tasks it
  // aborted: it touches the medium no more, so an abort that meets it does
  // not wait for it (two such could otherwise wait for each other).
  bool awaiting_aborts = false;
  // A SANITIZE without IMMED whose only work left is to wait for the LU's
  // sanitize operation, which an abort does not stop (SBC-4 r22 4.11.1): an
  // abort ends the command without waiting for the operation.
  bool waits_for_background_operation = false;
  // Set by the logical unit only while the durability log records (tests):
  // what GOOD for this command promises, for the transport's record of it.
  DurabilityPromise durability_promise = DurabilityPromise::none;

  // --- the logical unit's continuation for its backend operation ---
  void (*io_continuation)(Task&, int result) = nullptr;
  LogicalUnit* unit = nullptr;  // the logical unit executing it
  CommandState command_state;

  // --- the task set it is in (LogicalUnit::enter_task_set; null: none) ---
  // Only the thread of the task touches these.
  LogicalUnit* task_set_lu = nullptr;
  Task* task_set_prev = nullptr;
  Task* task_set_next = nullptr;
  bool task_set_awaited = false;  // an abort waits for it to leave

  // --- metrics: the executing worker's block of the LU (null: not counted) ---
  metrics::LunCounters* counters = nullptr;
  std::uint64_t started_ns = 0;

  void on_complete(int result) override { io_continuation(*this, result); }
  // Touches the medium no more, only waits (for aborts it started, or for an
  // operation an abort does not stop): task management need not wait for it.
  bool only_waiting() const { return awaiting_aborts || waits_for_background_operation; }

  // Resets the outcome fields so a pooled Task can be reused.
  void reset_outcome() {
    descriptor_sense = false;
    status = Status::good;
    sense_len = 0;
    data_in_length = 0;
    transfer_length = 0;
    awaiting_aborts = false;
    waits_for_background_operation = false;
    durability_promise = DurabilityPromise::none;
    io_continuation = nullptr;
    unit = nullptr;
    command_state = std::monostate{};
    counters = nullptr;
  }
  // CHECK CONDITION with fixed-format sense data; info is put in the
  // INFORMATION field when has_info (the failing LBA of a MEDIUM ERROR).
  void fail(SenseCode code, bool has_info = false, std::uint64_t info = 0);
  // ILLEGAL REQUEST, INVALID FIELD IN CDB with the sense-key specific field
  // pointer (SPC-4 4.5.2.4.2) naming CDB byte `byte` (and bit `bit` when
  // bit >= 0). Initiators use it to tell "service action not supported"
  // (a pointer at the SERVICE ACTION field) from any other bad field.
  void fail_cdb_field(std::uint16_t byte, int bit = -1);
  // CHECK CONDITION with a progress indication (SPC-4 4.5.2.4.4) in the
  // sense-key specific field: progress/65536 of the operation is done.
  void fail_with_progress(SenseCode code, std::uint16_t progress);
  void complete() {
    if (counters) count_completion();
    owner->task_complete(*this);
  }

 private:
  void count_completion();
};

}  // namespace ringtgt::scsi
