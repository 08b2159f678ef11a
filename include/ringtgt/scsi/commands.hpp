// Command handlers shared by LogicalUnit and LunMap. Private to the scsi
// layer: the transport uses logical_unit.hpp only.
#pragma once

#include <cstddef>
#include <cstdint>

#include "ringtgt/scsi/logical_unit.hpp"
#include "ringtgt/scsi/lun_addressing.hpp"
#include "ringtgt/scsi/task.hpp"

namespace ringtgt::scsi::detail {

// Largest READ/WRITE accepted, as VPD Block Limits reports it.
inline constexpr std::uint32_t max_transfer_bytes = 8u << 20;
inline constexpr std::uint32_t optimal_transfer_bytes = 1u << 20;

inline std::uint32_t max_transfer_blocks(std::uint32_t block_size) {
  return max_transfer_bytes / block_size;
}

// MAXIMUM COMPARE AND WRITE LENGTH (VPD Block Limits), in blocks.
inline constexpr std::uint8_t max_compare_and_write_blocks = 64;

// The NAA designator (NAA 6, 8 bytes) VPD page 83h reports for a logical
// unit; EXTENDED COPY names its copy targets by it.
inline std::uint64_t naa_designator(const LunParams& params) {
  return (params.naa & 0x0fffffffffffffffull) | 0x6000000000000000ull;
}

// Peripheral qualifier + device type byte: a direct-access block device that
// is present, or "no logical unit here" (qualifier 3, type 1Fh).
inline constexpr std::uint8_t peripheral_disk = 0x00;
inline constexpr std::uint8_t peripheral_absent = 0x7f;

// Copies min(produced, alloc, room in the buffer) bytes of Data-In and ends
// with GOOD status; transfer_length becomes alloc.
void finish_data_in(Task& task, const std::uint8_t* data, std::size_t produced,
                    std::uint32_t alloc);

// INQUIRY for a present logical unit, or for an absent one (lu == nullptr).
// Completes the task.
void inquiry(const LogicalUnit* lu, Task& task);

// MODE SENSE(6) and (10). Completes the task.
void mode_sense(LogicalUnit& lu, Task& task);

// REQUEST SENSE returning current as the sense data (as parameter data, with
// GOOD status). Completes the task.
void request_sense(Task& task, SenseCode current);

// REPORT SUPPORTED OPERATION CODES (MAINTENANCE IN, service action 0Ch):
// every command LogicalUnit::execute accepts (RESERVE/RELEASE only when
// enabled). Completes the task.
void report_supported_opcodes(Task& task, bool spc2_reservations);

// EXTENDED COPY (LID1) and RECEIVE COPY RESULTS (extended_copy.cpp). Both
// complete the task, the copy asynchronously once its last write is done.
void extended_copy(LogicalUnit& lu, Task& task);
void receive_copy_results(LogicalUnit& lu, Task& task);
// The Third-party Copy VPD page (8Fh) with its header; out has room for 512
// bytes. Returns its length.
std::size_t third_party_copy_page(const LunParams& params, std::uint8_t* out);

// REPORT LUNS, in three steps so the LUN list can be any ascending range of
// LUN numbers without copying it. begin validates the CDB and returns false
// after failing and completing the task; put stores entry index if it fits;
// end writes the header and completes the task.
bool report_luns_begin(Task& task, bool& well_known_only);
void report_luns_put(Task& task, std::uint32_t index, std::uint64_t lun);
void report_luns_end(Task& task, std::uint32_t entries);

template <typename LunRange>
void report_luns(const LunRange& luns, Task& task) {
  bool well_known_only = false;
  if (!report_luns_begin(task, well_known_only)) return;
  std::uint32_t n = 0;
  // We have no well-known logical units, so that selection is empty.
  if (!well_known_only) {
    for (std::uint64_t lun : luns) {
      if (lun > max_addressable_lun) continue;
      report_luns_put(task, n++, lun);
    }
  }
  report_luns_end(task, n);
}

}  // namespace ringtgt::scsi::detail
