// A logical unit: SPC/SBC command execution over a storage backend.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "ringtgt/common/serial_worker.hpp"
#include "ringtgt/scsi/persistent_reservations.hpp"
#include "ringtgt/scsi/sanitize.hpp"
#include "ringtgt/scsi/task.hpp"
#include "ringtgt/scsi/unit_attention.hpp"
#include "ringtgt/storage/backend.hpp"

namespace ringtgt::scsi {

struct LunParams {
  std::uint32_t block_size = 512;  // 512 or 4096
  // 2^n logical blocks per physical block (READ CAPACITY(16) LBPPBE).
  std::uint8_t physical_block_exponent = 0;
  std::uint32_t physical_block_size() const { return block_size << physical_block_exponent; }
  bool read_only = false;
  // Largest READ or WRITE taken (VPD Block Limits MAXIMUM TRANSFER LENGTH);
  // larger ones are refused with INVALID FIELD IN CDB.
  static constexpr std::uint32_t kDefaultMaxTransferBytes = 32u << 20;
  std::uint32_t max_transfer_bytes = kDefaultMaxTransferBytes;
  std::uint32_t max_transfer_blocks() const { return max_transfer_bytes / block_size; }
  // Identity reported by INQUIRY and its VPD pages; stable across restarts
  // because it is derived from the configuration, not from run time.
  std::string vendor = "RINGTGT";
  std::string product = "ringtgt disk";
  std::string revision = "0001";
  std::string serial;       // VPD 0x80 and the T10 vendor designator
  std::uint64_t naa = 0;    // VPD 0x83 NAA designator (NAA 6 form, 8 bytes)
  std::string device_name;  // e.g. the target IQN + ",lun,N", for logs
  // SPC-2 RESERVE/RELEASE(6/10). Off until the transport calls
  // LunMap::nexus_lost when a session ends and LogicalUnit::reset on LOGICAL
  // UNIT RESET / LunMap::reset_all on target resets: without those a
  // reservation left by a vanished initiator would lock the LU out for good.
  bool spc2_reservations = false;
  // --- unit attentions and persistent reservations ---
  // A new I_T nexus hears POWER ON, RESET, OR BUS DEVICE RESET OCCURRED
  // (29h/00h) on its first command (SPC-4 5.14). Off by default so that
  // tests of other commands need not clear it first; the daemon turns it on.
  bool power_on_unit_attention = false;
  // Where the registrations and reservation are kept while APTPL is on
  // (PERSISTENT RESERVE OUT with APTPL set). Empty: APTPL is accepted but
  // nothing survives a restart.
  std::string pr_state_path;
  // Thin provisioning (LBPME): UNMAP and WRITE SAME with UNMAP deallocate,
  // GET LBA STATUS reports what the backend holds. Needs a backend that can
  // unmap (the LogicalUnit constructor refuses otherwise), unless read_only:
  // then it only reports, and UNMAP gets DATA PROTECT.
  bool thin_provisioned = false;
  // SANITIZE (SBC-4 r22): offered (REPORT SUPPORTED OPERATION CODES) and run
  // only when set; otherwise INVALID COMMAND OPERATION CODE and a log line.
  bool allow_sanitize = false;
  // At most this many bytes a second for SANITIZE OVERWRITE (0: no limit);
  // it waits between chunks on a timer of the reactor's ring.
  std::uint64_t sanitize_bytes_per_second = 0;
  // Where a sanitize in progress, or the failure of one, is kept so that it
  // survives a restart (sanitize.cpp). Empty: it does not.
  std::string sanitize_state_path;
  // A LU whose store is not open yet (an RBD image missing or too small at
  // start, retried in the background and then put in this LU's place): every
  // command but INQUIRY, REPORT LUNS and REQUEST SENSE gets NOT READY, LOGICAL
  // UNIT IS IN PROCESS OF BECOMING READY (02h/04h/01h), which initiators retry.
  bool becoming_ready = false;
};

// The NAA designator (NAA 6, 8 bytes) VPD page 83h reports for a logical
// unit; EXTENDED COPY names its copy targets by it.
inline std::uint64_t naa_designator(const LunParams& params) {
  return (params.naa & 0x0fffffffffffffffull) | 0x6000000000000000ull;
}

class LogicalUnit;

// Finds a logical unit other than the one an EXTENDED COPY was sent to, for
// that copy to read or write: the LU whose NAA designator (VPD page 83h) is
// `designator`, if the initiator of `nexus` may use it; null otherwise. The
// copy holds what it returns until it ends, so the LU may leave its target
// (a live LUN removal) meanwhile. Called on the thread of the command.
using CopyTargetResolver =
    std::function<std::shared_ptr<LogicalUnit>(std::uint64_t designator, const Nexus& nexus)>;

class TaskSet;

// Shared (std::make_shared) by the LUN maps of the sessions that use it; a
// sanitize in progress holds it too, so that a LUN removed meanwhile stays
// until its last backend operation is done.
class LogicalUnit : public std::enable_shared_from_this<LogicalUnit> {
 public:
  LogicalUnit(std::uint64_t lun, LunParams params, std::unique_ptr<storage::Backend> backend);
  ~LogicalUnit();

  std::uint64_t lun() const { return lun_; }
  // Read by every reactor serving the LU while the control plane may resize it.
  std::uint64_t block_count() const { return block_count_.load(std::memory_order_relaxed); }
  // The LU now has this many blocks (its backend was grown first). Control plane only.
  // Every I_T nexus then gets CAPACITY DATA HAS CHANGED (2Ah/09h) once.
  void set_block_count(std::uint64_t blocks);
  const LunParams& params() const { return params_; }
  storage::Backend& backend() { return *backend_; }

  // Executes task and then calls task.complete() exactly once, maybe before
  // returning. Errors are reported as status and sense, never thrown.
  void execute(Task& task);

  // Per-worker counters for /metrics; set before the LU is shared. Without
  // them the LU counts nothing.
  void set_stats(std::shared_ptr<metrics::LunStats> stats) { stats_ = std::move(stats); }
  const std::shared_ptr<metrics::LunStats>& stats() const { return stats_; }

  // --- the task set (SAM-5 4.6; task_set.cpp) ---
  // The transport puts a task in when its command arrives (before its
  // Data-Out is in) and takes it out when it ends, both on the thread of the
  // task, which executes it only on this LU. No lock, no allocation.
  void enter_task_set(Task& task);
  void leave_task_set(Task& task);
  // ABORT TASK SET, CLEAR TASK SET, LOGICAL UNIT RESET, target resets,
  // PREEMPT AND ABORT: asks the owner of every task in the set that
  // `aborted` accepts (called on each task's thread), except keep, to abort it
  // (TaskOwner::task_aborted), on every reactor the LU's tasks run on; calls
  // done on the caller's thread once none that must be waited for is left in
  // the backend (a fencing node must not see a stale write land after it).
  // done is called exactly once, maybe before return.
  void abort_task_set(std::function<bool(const Task&)> aborted, const Task* keep,
                      std::function<void()> done);

  // Where EXTENDED COPY finds copy targets other than this LU; set by the
  // transport before the LU is shared. Without it a copy reaches this LU only.
  void set_copy_targets(CopyTargetResolver resolver) { copy_targets_ = std::move(resolver); }
  const CopyTargetResolver& copy_targets() const { return copy_targets_; }

  // For the transport. nexus_lost: the I_T nexus is gone (session closed or
  // reinstated): its SPC-2 reservation is released. reset: LOGICAL UNIT
  // RESET or a target reset: every reservation is released.
  void nexus_lost(const Nexus& nexus);
  void reset();

  // --- command handlers of the command table (command_table.cpp) that keep LU state ---
  // SPC-2 RESERVE/RELEASE(6/10), PERSISTENT RESERVE IN/OUT (lu_reservations.cpp).
  // Each completes the task.
  void reserve(Task& task);
  void release(Task& task);
  void persistent_reserve_in(Task& task);
  void persistent_reserve_out(Task& task);

  // --- SANITIZE (sanitize.cpp) ---
  // SANITIZE, every service action; REQUEST SENSE, which reports a
  // sanitize's progress or failure. Each completes the task.
  void sanitize(Task& task);
  void request_sense(Task& task);
  // Whether a sanitize runs (or waits to run again after a restart), and
  // how far it got, in 65536ths.
  bool sanitizing() const;
  std::uint16_t sanitize_progress() const {
    return sanitize_progress_.load(std::memory_order_relaxed);
  }
  void set_sanitize_progress(std::uint16_t p) {
    sanitize_progress_.store(p, std::memory_order_relaxed);
  }
  // Called by the SanitizeJob on its thread when it ends.
  void sanitize_done(bool ok);

  // --- mode parameters a MODE SELECT changes (mode_select.cpp) ---
  // MODE SELECT(6)/(10). Completes the task.
  void mode_select(Task& task);
  // Control mode page D_SENSE: sense data in descriptor format.
  bool descriptor_sense() const { return d_sense_.load(std::memory_order_relaxed); }
  // Medium-changing commands are refused: a read_only LUN, or the control
  // mode page's SWP set by MODE SELECT.
  bool write_protected() const { return params_.read_only || swp_.load(std::memory_order_relaxed); }
  bool software_write_protect() const { return swp_.load(std::memory_order_relaxed); }
  // The sense of a refused medium-changing command: WRITE PROTECTED (27h/00h)
  // for a read_only LUN, SOFTWARE WRITE PROTECTED (27h/02h) for SWP.
  SenseCode write_protected_sense() const;

  // Unit attention (SPC-4 5.14): establishes the condition UNIT ATTENTION
  // asc/ascq for every I_T nexus that has used this LU, except `except`
  // when given (the nexus whose command caused it). Each such nexus gets
  // CHECK CONDITION with it on its next command other than INQUIRY, REPORT
  // LUNS and REQUEST SENSE (which returns it as sense data), once; several
  // pending conditions come out one per command, the power on / reset family
  // (29h) first, the rest oldest first. A nexus that first arrives later
  // does not see it (it hears 29h/00h instead, see LunParams).
  // Thread-safe; costs one lock and bumps the LU's state generation, so the
  // next command of every nexus takes the slow path once. Used for:
  //   29h/03h LOGICAL UNIT RESET (reset()), 2Ah/03h-05h persistent
  //   reservations preempted/released (internally), and, for whoever adds
  //   them: 2Ah/09h CAPACITY DATA HAS CHANGED, 2Ah/01h MODE PARAMETERS
  //   CHANGED (pass the nexus whose MODE SELECT changed them as except).
  void post_unit_attention(std::uint8_t asc, std::uint8_t ascq, const Nexus* except = nullptr);

  // Whether a command of kind `access` from nexus (null: no nexus) would end
  // in RESERVATION CONFLICT: a persistent reservation it does not hold, or
  // an SPC-2 reservation of another I_T nexus. Leaves the nexus's unit
  // attentions alone: it is how EXTENDED COPY reads and writes a copy target
  // as that nexus, without being one of its commands to the LU.
  bool reservation_blocks(const Nexus* nexus, PrAccess access);

  // A copy of the persistent reservation state, for tests and admin views.
  PersistentReservations persistent_reservations();

  // For COMPARE AND WRITE, ORWRITE and WRITE ATOMIC: claims [lba, lba +
  // blocks) unless an in-flight one overlaps it; caw_unlock(lba) gives it back.
  bool caw_lock(std::uint64_t lba, std::uint32_t blocks);
  void caw_unlock(std::uint64_t lba);
  // Whether a plain read or write of [lba, lba + blocks) would touch a claimed
  // range. One atomic load while none is claimed, the usual case.
  bool atomic_write_overlaps(std::uint64_t lba, std::uint32_t blocks);

 private:
  bool holds_reservation(const Nexus* nexus) const;  // reservation_mutex_ held
  bool reservation_conflict(const Task& task);
  // SPC-4 5.12.3: RESERVE/RELEASE(6/10) while persistent reservations are in
  // use: the status to end the command with, or nullopt when SPC-2 rules
  // apply. state_mutex_ held.
  std::optional<Status> spc2_meets_persistent(const Task& task) const;

  // Unit attentions and persistent reservation conflicts of task's nexus
  // (unit_attention.cpp). Returns true after completing the task.
  bool nexus_state_blocks(Task& task);
  bool nexus_state_slow(Task& task);
  // The APTPL file and PREEMPT AND ABORT (lu_reservations.cpp).
  // Completes task (the PREEMPT AND ABORT of port `by`) once the tasks of
  // `nexuses` (initiator port names) are aborted and out of the backend.
  void abort_preempted(Task& task, const std::string& by, const std::vector<std::string>& nexuses);
  // PERSISTENT RESERVE OUT in two halves: the decision, which stores the
  // APTPL file (on state_writer_ when the LU has one), and the answer on the
  // task's own reactor.
  PrOutcome decide_reserve_out(const Task& task, const std::string& port, std::size_t have);
  void apply_reservations(PersistentReservations next, const PrOutcome& o);  // state_mutex_ held
  void finish_reserve_out(Task& task, const std::string& port, const PrOutcome& o);
  bool store_reservations(const PersistentReservations& next);
  void load_reservations();
  // SANITIZE (sanitize.cpp): whether a sanitize in progress or its failure
  // mode ends task here (it then completed it); a SANITIZE the LU does not
  // allow, logged; the state file, read at construction and kept while a
  // sanitize runs or after it failed.
  bool sanitize_blocks(Task& task);
  void sanitize_refused(const Task& task);
  void load_sanitize_state();
  bool store_sanitize_state(const detail::SanitizeSpec& spec);
  void clear_sanitize_state();
  void start_sanitize(detail::SanitizeSpec spec, Task& task, bool immed);

  std::uint64_t lun_;
  LunParams params_;
  std::unique_ptr<storage::Backend> backend_;
  std::atomic<std::uint64_t> block_count_;
  std::shared_ptr<metrics::LunStats> stats_;
  CopyTargetResolver copy_targets_;
  std::unique_ptr<TaskSet> task_set_;

  // SPC-2 RESERVE/RELEASE: shared by every nexus of the LU. reserved_ keeps
  // the lock off the path of commands while nothing is reserved.
  std::atomic<bool> reserved_{false};
  // Guards the SPC-2 holder, the unit attentions and the persistent
  // reservations. state_generation_ changes (under it) whenever a unit
  // attention is posted or the persistent reservations change: a nexus whose
  // Nexus::LuView holds the current value has nothing to learn.
  std::mutex state_mutex_;
  std::atomic<std::uint64_t> state_generation_{1};
  UnitAttentions unit_attentions_;
  PersistentReservations reservations_;
  std::string holder_initiator_;
  std::uint64_t holder_session_ = 0;

  std::atomic<std::uint32_t> caw_active_{0};  // claimed ranges, for the write path
  // Called after a MODE SELECT by `by` changed a mode parameter: MODE
  // PARAMETERS CHANGED (2Ah/01h) to every other I_T nexus of this LU.
  void mode_parameters_changed(const Nexus* by);
  std::atomic<bool> d_sense_{false};
  std::atomic<bool> swp_{false};

  // detail::SanitizeState; read by every command (one load), changed under
  // sanitize_mutex_. The job runs on the reactor thread that started it.
  std::atomic<std::uint8_t> sanitize_state_{0};
  std::atomic<std::uint16_t> sanitize_progress_{0};
  std::mutex sanitize_mutex_;
  std::unique_ptr<detail::SanitizeJob> sanitize_job_;
  detail::SanitizeSpec failed_sanitize_;  // in failure mode: the one that failed

  std::mutex caw_mutex_;
  std::vector<std::pair<std::uint64_t, std::uint32_t>> caw_ranges_;  // first LBA, blocks

  // The APTPL file's writes, off the reactors. Last: its jobs use the members
  // above, and its destructor waits for them.
  common::SerialWorker state_writer_;
};

// The logical units of one target, by LUN number. Answers what no single LU
// can: REPORT LUNS, and commands addressed to a LUN that does not exist.
class LunMap {
 public:
  void add(std::shared_ptr<LogicalUnit> lu);
  // Takes lun (and its mask) out of the map. Only on a map not yet shared: live changes
  // copy the map, change the copy and publish it (iscsi::TargetEntry::set_luns).
  void remove(std::uint64_t lun);
  // The initiators lun is masked to (empty: not masked).
  std::vector<std::string> allowed_initiators(std::uint64_t lun) const;
  std::shared_ptr<LogicalUnit> find(std::uint64_t lun) const;
  std::vector<std::uint64_t> luns() const;

  // A task whose command arrived for a LUN of this map (task.lun, task.nexus
  // set) enters that LU's task set; no LU (or a masked one): it enters none.
  void enter_task_set(Task& task) const;
  // Executes task on the LU whose task set it is in, or else the LU of
  // task.lun in this map (a LUN added since the command arrived).
  void execute(Task& task);

  // Fan-out of LogicalUnit::nexus_lost / reset to every LU of the target.
  void nexus_lost(const Nexus& nexus);
  void reset_all();

  // LUN masking: only these initiators see lun; to the others it does not exist (absent
  // from REPORT LUNS, peripheral qualifier 3 in INQUIRY, LOGICAL UNIT NOT SUPPORTED for
  // other commands). Empty: every initiator. Set up before the map is shared.
  void set_allowed_initiators(std::uint64_t lun, std::vector<std::string> initiators);
  // Whether the initiator of nexus (null: unknown, sees only unmasked LUNs) sees lun.
  bool visible(std::uint64_t lun, const Nexus* nexus) const;

 private:
  std::map<std::uint64_t, std::shared_ptr<LogicalUnit>> units_;
  std::map<std::uint64_t, std::vector<std::string>> masks_;  // masked LUNs only
};

}  // namespace ringtgt::scsi
