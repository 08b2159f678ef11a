// MODE SELECT(6)/(10) (SPC-4 6.9, 6.10): what an initiator may change in the
// mode pages mode_pages.cpp reports. Changeable: the control page's D_SENSE
// (sense data in descriptor format from then on) and SWP (software write
// protect: medium-changing commands fail with DATA PROTECT, 27h/02h; reads
// still work). Everything else must be sent back as it is reported; the
// caching page's WCE follows the LUN's write_ack and cannot be changed here.
// Pages are never saved: SP=1 is refused (INVALID FIELD IN CDB, as SPC-4
// says for a logical unit without saved pages) and MODE SENSE reports the
// defaults as the saved values. The settings last until the daemon restarts.
#include <cstring>

#include "commands.hpp"
#include "ringtgt/scsi/cdb.hpp"

namespace ringtgt::scsi {

namespace {

constexpr std::uint8_t kModeSelect10 = 0x55;
constexpr std::uint8_t kPageControl = 0x0a;
constexpr std::uint8_t kDSense = 0x04;  // control page byte 2
constexpr std::uint8_t kSwp = 0x08;     // control page byte 4

void fail_param(Task& task, SenseCode code) {
  task.fail(code);
  task.complete();
}

}  // namespace

SenseCode LogicalUnit::write_protected_sense() const {
  return params_.read_only ? sense::write_protected : sense::software_write_protected;
}

void LogicalUnit::mode_parameters_changed(const Nexus* by) {
  // SPC-4 6.9.1: every other I_T nexus learns of it by a unit attention.
  post_unit_attention(0x2a, 0x01, by);
}

void LogicalUnit::mode_select(Task& task) {
  const auto& c = task.cdb;
  const bool ten = c[0] == kModeSelect10;
  const bool pf = c[1] & 0x10;
  const bool sp = c[1] & 0x01;
  const std::uint32_t param_len = ten ? get_be16(&c[7]) : c[4];
  task.transfer_length = param_len;

  if (sp) {
    task.fail_cdb_field(1, 0);
    return task.complete();
  }
  if (param_len == 0) {
    task.status = Status::good;
    return task.complete();
  }
  // PF 0 would mean vendor-specific pages; we have only the SPC ones.
  if (!pf) {
    task.fail_cdb_field(1, 4);
    return task.complete();
  }
  const std::uint32_t room = task.buffer != nullptr ? task.buffer_len : 0;
  const std::size_t header = ten ? 8 : 4;
  if (param_len < header || room < param_len) {
    return fail_param(task, sense::parameter_list_length_error);
  }
  const std::uint8_t* p = task.buffer;
  const std::size_t bd_len = ten ? get_be16(&p[6]) : p[3];
  const bool long_lba = ten && (p[4] & 0x01);
  if (header + bd_len > param_len) return fail_param(task, sense::parameter_list_length_error);
  if (bd_len != 0) {
    // One block descriptor may come back: it must describe this LU as it is
    // (NUMBER OF BLOCKS 0 means "unchanged").
    if (bd_len != (long_lba ? 16u : 8u)) {
      return fail_param(task, sense::invalid_field_in_parameter_list);
    }
    const std::uint8_t* bd = p + header;
    const std::uint64_t blocks = long_lba ? get_be64(bd) : get_be32(bd);
    const std::uint32_t bs = long_lba ? get_be32(bd + 12) : get_be24(bd + 5);
    const std::uint64_t ours =
        long_lba ? block_count() : std::min<std::uint64_t>(block_count(), 0xffffffffu);
    if (bs != params().block_size || (blocks != 0 && blocks != ours)) {
      return fail_param(task, sense::invalid_field_in_parameter_list);
    }
  }

  // Check every page before changing anything.
  bool d_sense = descriptor_sense();
  bool swp = software_write_protect();
  std::size_t pos = header + bd_len;
  while (pos < param_len) {
    if (param_len - pos < 2) return fail_param(task, sense::parameter_list_length_error);
    const std::uint8_t* page = p + pos;
    const std::uint8_t code = page[0] & 0x3f;
    const bool spf = page[0] & 0x40;
    const std::size_t len = 2 + std::size_t{page[1]};
    if (len > param_len - pos) return fail_param(task, sense::parameter_list_length_error);
    std::uint8_t now[64] = {}, changeable[64] = {};
    const std::size_t ours = spf ? 0 : detail::mode_page(*this, code, detail::current, now);
    if (ours == 0 || ours != len) {
      return fail_param(task, sense::invalid_field_in_parameter_list);
    }
    detail::mode_page(*this, code, detail::changeable, changeable);
    // Byte 0 holds PS (reserved here) beside the page code; the rest must
    // match what we report except where a bit is changeable.
    for (std::size_t i = 1; i < len; ++i) {
      if (((page[i] ^ now[i]) & ~changeable[i]) != 0) {
        return fail_param(task, sense::invalid_field_in_parameter_list);
      }
    }
    if (code == kPageControl) {
      d_sense = page[2] & kDSense;
      swp = page[4] & kSwp;
    }
    pos += len;
  }

  const bool changed = d_sense != descriptor_sense() || swp != software_write_protect();
  d_sense_.store(d_sense, std::memory_order_relaxed);
  swp_.store(swp, std::memory_order_relaxed);
  task.status = Status::good;
  if (changed) mode_parameters_changed(task.nexus);
  task.complete();
}

}  // namespace ringtgt::scsi
