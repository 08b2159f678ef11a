// A logical unit: SPC/SBC command execution over a storage backend.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "ringtgt/scsi/task.hpp"
#include "ringtgt/storage/backend.hpp"

namespace ringtgt::scsi {

struct LunParams {
  std::uint32_t block_size = 512;  // 512 or 4096
  bool read_only = false;
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
};

class LogicalUnit {
 public:
  LogicalUnit(std::uint64_t lun, LunParams params, std::unique_ptr<storage::Backend> backend);

  std::uint64_t lun() const { return lun_; }
  // Read by every reactor serving the LU while the control plane may resize it.
  std::uint64_t block_count() const { return block_count_.load(std::memory_order_relaxed); }
  // The LU now has this many blocks (its backend was grown first). Control plane only.
  // The capacity-changed unit attention (2Ah/09h) belongs here once UAs are queued.
  void set_block_count(std::uint64_t blocks);
  const LunParams& params() const { return params_; }
  storage::Backend& backend() { return *backend_; }

  // Executes task and then calls task.complete() exactly once, maybe before
  // returning. Errors are reported as status and sense, never thrown.
  void execute(Task& task);

  // For the transport. nexus_lost: the I_T nexus is gone (session closed or
  // reinstated): its SPC-2 reservation is released. reset: LOGICAL UNIT
  // RESET or a target reset: every reservation is released.
  void nexus_lost(const Nexus& nexus);
  void reset();

  // For COMPARE AND WRITE: claims [lba, lba + blocks) unless an in-flight
  // COMPARE AND WRITE overlaps it; caw_unlock(lba) gives it back.
  bool caw_lock(std::uint64_t lba, std::uint32_t blocks);
  void caw_unlock(std::uint64_t lba);

 private:
  bool holds_reservation(const Nexus* nexus) const;  // reservation_mutex_ held
  bool reservation_conflict(const Task& task);
  void reserve(Task& task);
  void release(Task& task);

  std::uint64_t lun_;
  LunParams params_;
  std::unique_ptr<storage::Backend> backend_;
  std::atomic<std::uint64_t> block_count_;

  // SPC-2 RESERVE/RELEASE: shared by every nexus of the LU. reserved_ keeps
  // the lock off the path of commands while nothing is reserved.
  std::atomic<bool> reserved_{false};
  // Bumped by every reset; a nexus that has not seen the current value gets
  // one UNIT ATTENTION (29h/03h) before its next command runs.
  std::atomic<std::uint32_t> reset_epoch_{0};
  bool unit_attention_pending(Task& task);
  std::mutex reservation_mutex_;
  std::string holder_initiator_;
  std::uint64_t holder_session_ = 0;

  std::mutex caw_mutex_;
  std::vector<std::pair<std::uint64_t, std::uint32_t>> caw_ranges_;  // first LBA, blocks
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
