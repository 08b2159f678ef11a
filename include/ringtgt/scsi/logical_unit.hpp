// A logical unit: SPC/SBC command execution over a storage backend.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
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
};

class LogicalUnit {
 public:
  LogicalUnit(std::uint64_t lun, LunParams params, std::unique_ptr<storage::Backend> backend);

  std::uint64_t lun() const { return lun_; }
  std::uint64_t block_count() const { return block_count_; }
  const LunParams& params() const { return params_; }
  storage::Backend& backend() { return *backend_; }

  // Executes task and then calls task.complete() exactly once, maybe before
  // returning. Errors are reported as status and sense, never thrown.
  void execute(Task& task);

 private:
  std::uint64_t lun_;
  LunParams params_;
  std::unique_ptr<storage::Backend> backend_;
  std::uint64_t block_count_;
};

// The logical units of one target, by LUN number. Answers what no single LU
// can: REPORT LUNS, and commands addressed to a LUN that does not exist.
class LunMap {
 public:
  void add(std::shared_ptr<LogicalUnit> lu);
  std::shared_ptr<LogicalUnit> find(std::uint64_t lun) const;
  std::vector<std::uint64_t> luns() const;

  void execute(Task& task);

 private:
  std::map<std::uint64_t, std::shared_ptr<LogicalUnit>> units_;
};

}  // namespace ringtgt::scsi
