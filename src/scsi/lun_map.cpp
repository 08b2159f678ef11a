#include <algorithm>
#include <cstring>
#include <ranges>

#include "commands.hpp"
#include "ringtgt/scsi/cdb.hpp"
#include "ringtgt/scsi/logical_unit.hpp"
#include "ringtgt/scsi/lun_addressing.hpp"

namespace ringtgt::scsi {

namespace {
constexpr std::uint8_t kInquiry = 0x12;
constexpr std::uint8_t kRequestSense = 0x03;
constexpr std::uint8_t kReportLuns = 0xa0;
}  // namespace

std::optional<std::array<std::uint8_t, 8>> encode_lun(std::uint64_t lun) {
  if (lun > max_addressable_lun) return std::nullopt;
  std::array<std::uint8_t, 8> out{};
  if (lun < 256) {
    out[1] = static_cast<std::uint8_t>(lun);  // peripheral device addressing, bus 0
  } else {
    out[0] = static_cast<std::uint8_t>(0x40 | (lun >> 8));  // flat space addressing
    out[1] = static_cast<std::uint8_t>(lun);
  }
  return out;
}

std::optional<std::uint64_t> decode_lun(const std::uint8_t* field) {
  for (int i = 2; i < 8; ++i) {
    if (field[i] != 0) return std::nullopt;
  }
  switch (field[0] >> 6) {
    case 0:  // peripheral device addressing: byte 0 low bits are the bus
      if ((field[0] & 0x3f) != 0) return std::nullopt;
      return field[1];
    case 1:  // flat space addressing
      return std::uint64_t{field[0] & 0x3fu} << 8 | field[1];
    default:
      return std::nullopt;
  }
}

namespace detail {

bool report_luns_begin(Task& task, bool& well_known_only) {
  const auto& c = task.cdb;
  task.transfer_length = get_be32(&c[6]);
  switch (c[2]) {
    case 0x00:  // all but well-known logical units
    case 0x02:  // all
      well_known_only = false;
      break;
    case 0x01:
      well_known_only = true;
      break;
    default:
      task.fail(sense::invalid_field_in_cdb);
      task.complete();
      return false;
  }
  return true;
}

namespace {
std::uint32_t report_luns_room(const Task& task) {
  const std::uint32_t room = task.buffer != nullptr ? task.buffer_len : 0;
  return std::min(room, task.transfer_length);
}
}  // namespace

void report_luns_put(Task& task, std::uint32_t index, std::uint64_t lun) {
  const auto entry = encode_lun(lun);
  if (!entry) return;
  const std::uint64_t offset = 8 + std::uint64_t{index} * 8;
  const std::uint32_t room = report_luns_room(task);
  if (offset >= room) return;
  const std::size_t n = std::min<std::uint64_t>(8, room - offset);
  std::memcpy(task.buffer + offset, entry->data(), n);
}

void report_luns_end(Task& task, std::uint32_t entries) {
  std::uint8_t header[8] = {};
  put_be32(header, entries * 8);
  const std::uint32_t room = report_luns_room(task);
  const std::size_t n = std::min<std::uint32_t>(8, room);
  if (n > 0) std::memcpy(task.buffer, header, n);
  const std::uint64_t produced = 8 + std::uint64_t{entries} * 8;
  task.status = Status::good;
  task.data_in_length = static_cast<std::uint32_t>(std::min<std::uint64_t>(produced, room));
  task.complete();
}

}  // namespace detail

void LunMap::add(std::shared_ptr<LogicalUnit> lu) {
  if (!lu) return;
  const std::uint64_t lun = lu->lun();
  units_[lun] = std::move(lu);
}

void LunMap::remove(std::uint64_t lun) {
  units_.erase(lun);
  masks_.erase(lun);
}

std::vector<std::string> LunMap::allowed_initiators(std::uint64_t lun) const {
  auto it = masks_.find(lun);
  return it == masks_.end() ? std::vector<std::string>{} : it->second;
}

std::shared_ptr<LogicalUnit> LunMap::find(std::uint64_t lun) const {
  auto it = units_.find(lun);
  return it == units_.end() ? nullptr : it->second;
}

std::vector<std::uint64_t> LunMap::luns() const {
  std::vector<std::uint64_t> out;
  out.reserve(units_.size());
  for (const auto& [lun, lu] : units_) out.push_back(lun);
  return out;
}

void LunMap::nexus_lost(const Nexus& nexus) {
  for (auto& [lun, lu] : units_) lu->nexus_lost(nexus);
}

void LunMap::reset_all() {
  for (auto& [lun, lu] : units_) lu->reset();
}

void LunMap::set_allowed_initiators(std::uint64_t lun, std::vector<std::string> initiators) {
  if (initiators.empty()) {
    masks_.erase(lun);
  } else {
    masks_[lun] = std::move(initiators);
  }
}

bool LunMap::visible(std::uint64_t lun, const Nexus* nexus) const {
  auto it = masks_.find(lun);
  if (it == masks_.end()) return true;
  if (nexus == nullptr) return false;
  return std::find(it->second.begin(), it->second.end(), nexus->initiator_name) != it->second.end();
}

void LunMap::enter_task_set(Task& task) const {
  if (auto it = units_.find(task.lun);
      it != units_.end() && (masks_.empty() || visible(task.lun, task.nexus))) {
    it->second->enter_task_set(task);
  }
}

void LunMap::execute(Task& task) {
  const std::uint8_t opcode = task.cdb[0];
  if (opcode == kReportLuns) {
    task.reset_outcome();
    std::vector<std::uint64_t> seen;
    for (const auto& [lun, lu] : units_) {
      if (visible(lun, task.nexus)) seen.push_back(lun);
    }
    return detail::report_luns(seen, task);
  }
  // A command runs on the LU it arrived for, even if a live change of the
  // LUN map since then took it out: the transport keeps that map alive.
  if (task.task_set_lu != nullptr) return task.task_set_lu->execute(task);
  // Not find(): a shared_ptr copy per command would be an atomic increment
  // on the hot path. The map outlives the tasks it executes.
  if (auto it = units_.find(task.lun);
      it != units_.end() && (masks_.empty() || visible(task.lun, task.nexus))) {
    return it->second->execute(task);
  }

  task.reset_outcome();
  switch (opcode) {
    case kInquiry:
      return detail::inquiry(nullptr, task);
    case kRequestSense:
      return detail::request_sense(task, sense::lun_not_supported);
    default:
      task.fail(sense::lun_not_supported);
      return task.complete();
  }
}

}  // namespace ringtgt::scsi
