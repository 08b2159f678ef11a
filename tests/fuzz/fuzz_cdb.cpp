// libFuzzer target: one SCSI command (CDB + Data-Out) executed by a LunMap of
// memory-backed logical units, as the iSCSI layer would hand it over.
//
// Input: byte 0 selects LUN, direction and nexus; bytes 1..16 are the CDB;
// bytes 17..19 the expected transfer length (capped at 128 KiB, the largest a
// small target allows here); the rest is the Data-Out payload (for
// to_device). The outcome must be well formed and arrive exactly once.
#include <spdlog/spdlog.h>

#include <cstring>
#include <memory>
#include <vector>

#include "ringtgt/scsi/logical_unit.hpp"
#include "ringtgt/storage/memory_backend.hpp"

using namespace ringtgt;

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // Log lines cost more than the code under test; what they say is not checked here.
  spdlog::set_level(spdlog::level::off);
  return 0;
}

namespace {

struct Owner : scsi::TaskOwner {
  int completions = 0;
  void task_complete(scsi::Task&) override { ++completions; }
};

scsi::LunMap& lun_map() {
  static scsi::LunMap* map = [] {
    auto* m = new scsi::LunMap;
    const std::uint32_t block_sizes[] = {512, 4096, 512};
    for (std::uint64_t lun = 0; lun < 3; ++lun) {
      scsi::LunParams lp;
      lp.block_size = block_sizes[lun];
      lp.read_only = lun == 2;
      lp.serial = "FUZZ" + std::to_string(lun);
      lp.naa = 0x6001405000000010ull + lun;
      lp.spc2_reservations = true;
      auto backend = std::make_unique<storage::MemoryBackend>(
          lun == 1 ? 1024 * 1024 : 128 * 1024,
          lun == 1 ? storage::WriteAckPolicy::writeback : storage::WriteAckPolicy::writethrough);
      if (lun == 0) backend->inject_error(64 * 1024, 4096, 5);
      m->add(std::make_shared<scsi::LogicalUnit>(lun, lp, std::move(backend)));
    }
    m->set_allowed_initiators(2, {"iqn.2025-01.com.example:a"});
    return m;
  }();
  return *map;
}

constexpr std::uint32_t kMaxTransfer = 128 * 1024;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 20) return 0;
  static const scsi::Nexus nexuses[2] = {
      {"iqn.2025-01.com.example:a", "iqn.2025-01.com.example:t", 0x1, {}},
      {"iqn.2025-01.com.example:b", "iqn.2025-01.com.example:t", 0x2, {}},
  };
  const std::uint8_t sel = data[0];
  scsi::Task task;
  std::memcpy(task.cdb.data(), data + 1, 16);
  const std::uint64_t luns[] = {0, 1, 2, 7};
  task.lun = luns[sel & 3];
  task.direction = static_cast<scsi::DataDirection>((sel >> 2) % 3);
  task.nexus = &nexuses[(sel >> 4) & 1];
  std::uint32_t edtl = (std::uint32_t{data[17]} << 16 | std::uint32_t{data[18]} << 8 | data[19]) %
                       (kMaxTransfer + 1);
  task.expected_length = edtl;
  std::vector<std::uint8_t> buffer;
  if (task.direction == scsi::DataDirection::to_device) {
    // Data-Out: what the initiator sent, at most the expected length.
    std::size_t n = std::min<std::size_t>(size - 20, edtl);
    buffer.assign(data + 20, data + 20 + n);
  } else if (task.direction == scsi::DataDirection::from_device) {
    buffer.assign(edtl, 0xa5);
  }
  task.buffer = buffer.empty() ? nullptr : buffer.data();
  task.buffer_len = static_cast<std::uint32_t>(buffer.size());
  Owner owner;
  task.owner = &owner;
  lun_map().execute(task);
  if (owner.completions != 1) __builtin_trap();
  if (task.data_in_length > task.buffer_len) __builtin_trap();
  if (task.status == scsi::Status::check_condition) {
    if (task.sense_len == 0 || task.sense_len > task.sense.size()) __builtin_trap();
  } else if (task.sense_len != 0) {
    __builtin_trap();
  }
  return 0;
}
