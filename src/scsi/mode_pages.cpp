// MODE SENSE(6)/(10) and the mode pages we report (SPC-4 6.11, 6.12, 7.5;
// SBC-3 6.4). Changeable (MODE SELECT, mode_select.cpp): the control page's
// D_SENSE and SWP. Nothing is saved: saved values are the defaults. The
// write-cache setting (WCE) comes from the LUN's configured write-ack policy
// and is not changeable.
#include <cstring>

#include "commands.hpp"
#include "ringtgt/scsi/cdb.hpp"

namespace ringtgt::scsi::detail {

namespace {

constexpr std::uint8_t kPageCaching = 0x08;
constexpr std::uint8_t kPageControl = 0x0a;
constexpr std::uint8_t kPageInformationalExceptions = 0x1c;
constexpr std::uint8_t kAllPages = 0x3f;

constexpr std::uint8_t kModeSense10 = 0x5a;

std::size_t caching_page(LogicalUnit& lu, PageControl pc, std::uint8_t* out) {
  out[0] = kPageCaching;
  out[1] = 0x12;
  if (pc != changeable && lu.backend().write_cache_enabled()) out[2] = 0x04;  // WCE; RCD 0
  return 2 + 0x12;
}

std::size_t control_page(LogicalUnit& lu, PageControl pc, std::uint8_t* out) {
  out[0] = kPageControl;
  out[1] = 0x0a;
  if (pc == changeable) {
    out[2] = 0x04;  // D_SENSE
    out[4] = 0x08;  // SWP
    return 2 + 0x0a;
  }
  // TST 0 (one task set), QErr 0, TAS 0. Queue algorithm modifier 1: simple
  // tasks may run and complete in any order, which is what the reactors do.
  // D_SENSE and SWP default to 0 (fixed-format sense, writable).
  out[3] = 0x10;
  if (pc == current) {
    if (lu.descriptor_sense()) out[2] |= 0x04;
    if (lu.software_write_protect()) out[4] |= 0x08;
  }
  return 2 + 0x0a;
}

std::size_t informational_exceptions_page(PageControl pc, std::uint8_t* out) {
  out[0] = kPageInformationalExceptions;
  out[1] = 0x0a;
  if (pc != changeable) out[2] = 0x08;  // DEXCPT: no exception reporting
  return 2 + 0x0a;
}

}  // namespace

std::size_t mode_page(LogicalUnit& lu, std::uint8_t page, PageControl pc, std::uint8_t* out) {
  switch (page) {
    case kPageCaching:
      return caching_page(lu, pc, out);
    case kPageControl:
      return control_page(lu, pc, out);
    case kPageInformationalExceptions:
      return informational_exceptions_page(pc, out);
    default:
      return 0;
  }
}

void mode_sense(LogicalUnit& lu, Task& task) {
  const auto& c = task.cdb;
  const bool ten = c[0] == kModeSense10;
  const bool dbd = c[1] & 0x08;
  const bool llbaa = ten && (c[1] & 0x10);
  // Nothing is ever saved, so the saved values are the defaults.
  auto pc = static_cast<PageControl>(c[2] >> 6);
  if (pc == saved) pc = default_values;
  const std::uint8_t page = c[2] & 0x3f;
  const std::uint8_t subpage = c[3];
  const std::uint32_t alloc = ten ? get_be16(&c[7]) : c[4];
  task.transfer_length = alloc;

  // We have no subpages; 0xff (all subpages) returns the page itself.
  const bool known_page = page == kPageCaching || page == kPageControl ||
                          page == kPageInformationalExceptions || page == kAllPages;
  if (!known_page || (subpage != 0x00 && subpage != 0xff)) {
    task.fail(sense::invalid_field_in_cdb);
    return task.complete();
  }

  std::uint8_t out[128] = {};
  const std::size_t header = ten ? 8 : 4;
  std::size_t pos = header;

  const std::uint8_t device_specific = (lu.write_protected() ? 0x80 : 0x00) | 0x10;  // WP, DPOFUA
  std::size_t descriptor = 0;
  if (!dbd) {
    const std::uint64_t blocks = lu.block_count();
    const std::uint32_t bs = lu.params().block_size;
    if (llbaa) {
      put_be64(&out[pos], blocks);
      put_be32(&out[pos + 12], bs);
      descriptor = 16;
    } else {
      put_be32(&out[pos], blocks > 0xffffffffu ? 0xffffffffu : static_cast<std::uint32_t>(blocks));
      put_be32(&out[pos + 4], bs & 0x00ffffffu);  // byte 4 is the density code, 0
      descriptor = 8;
    }
    pos += descriptor;
  }

  if (page == kPageCaching || page == kAllPages) pos += caching_page(lu, pc, &out[pos]);
  if (page == kPageControl || page == kAllPages) pos += control_page(lu, pc, &out[pos]);
  if (page == kPageInformationalExceptions || page == kAllPages) {
    pos += informational_exceptions_page(pc, &out[pos]);
  }

  if (ten) {
    put_be16(&out[0], static_cast<std::uint16_t>(pos - 2));
    out[3] = device_specific;
    if (descriptor == 16) out[4] = 0x01;  // LONGLBA
    put_be16(&out[6], static_cast<std::uint16_t>(descriptor));
  } else {
    out[0] = static_cast<std::uint8_t>(pos - 1);
    out[2] = device_specific;
    out[3] = static_cast<std::uint8_t>(descriptor);
  }
  finish_data_in(task, out, pos, alloc);
}

}  // namespace ringtgt::scsi::detail
