// Command handlers shared by LogicalUnit and LunMap. Private to the scsi
// layer: the transport uses logical_unit.hpp only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>

#include "ringtgt/scsi/logical_unit.hpp"
#include "ringtgt/scsi/lun_addressing.hpp"
#include "ringtgt/scsi/task.hpp"

namespace ringtgt::scsi::detail {

// VPD Block Limits OPTIMAL TRANSFER LENGTH (at most the LU's maximum).
inline constexpr std::uint32_t optimal_transfer_bytes = 1u << 20;
// WRITE SAME writes its pattern in chunks of this size (one bounce buffer).
inline constexpr std::uint32_t write_same_chunk_bytes = 8u << 20;

// MAXIMUM COMPARE AND WRITE LENGTH (VPD Block Limits), in blocks.
inline constexpr std::uint8_t max_compare_and_write_blocks = 64;

// WRITE ATOMIC(16) (write_atomic.cpp): MAXIMUM ATOMIC TRANSFER LENGTH (and the
// same with an atomic boundary, and MAXIMUM ATOMIC BOUNDARY SIZE) in VPD Block
// Limits is this many bytes in blocks. Within it the range lock makes any
// length atomic; 1 MiB is 256 blocks of 4 KiB, what libiscsi's tests write.
inline constexpr std::uint32_t max_atomic_transfer_bytes = 1u << 20;
std::uint32_t max_atomic_transfer_blocks(std::uint32_t block_size);

inline constexpr std::uint8_t kSanitizeOpcode = 0x48;

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

enum PageControl : std::uint8_t { current = 0, changeable = 1, default_values = 2, saved = 3 };
// Writes mode page `page` (no subpages) as MODE SENSE reports it for pc and
// returns its length, or 0 for a page we do not have. out has room for 64.
std::size_t mode_page(LogicalUnit& lu, std::uint8_t page, PageControl pc, std::uint8_t* out);

// REQUEST SENSE returning current as the sense data (as parameter data, with
// GOOD status), with a progress indication when given. Completes the task.
void request_sense(Task& task, SenseCode current,
                   std::optional<std::uint16_t> progress = std::nullopt);

// REPORT SUPPORTED OPERATION CODES (MAINTENANCE IN, service action 0Ch):
// the command table's rows this LU offers (RESERVE/RELEASE only when
// enabled, UNMAP only on a thin-provisioned LU, SANITIZE only where allowed).
// Completes the task.
void report_supported_opcodes(Task& task, bool spc2_reservations, bool thin_provisioned = false,
                              bool sanitize = false);

// --- the command table's handlers for the commands logical_unit.cpp runs ---
// Each runs one command (or a family sharing a CDB layout) and completes the task.
void run_good(LogicalUnit& lu, Task& task);  // nothing to do: GOOD
void run_prevent_allow_medium_removal(LogicalUnit& lu, Task& task);
void run_read(LogicalUnit& lu, Task& task);   // READ(6/10/12/16)
void run_write(LogicalUnit& lu, Task& task);  // WRITE and WRITE AND VERIFY
void run_verify(LogicalUnit& lu, Task& task);
void run_prefetch(LogicalUnit& lu, Task& task);
void run_synchronize_cache(LogicalUnit& lu, Task& task);
void run_write_same(LogicalUnit& lu, Task& task);
void run_compare_and_write(LogicalUnit& lu, Task& task);
void run_orwrite(LogicalUnit& lu, Task& task);
void run_write_atomic(LogicalUnit& lu, Task& task);  // write_atomic.cpp
void run_read_capacity10(LogicalUnit& lu, Task& task);
void run_read_capacity16(LogicalUnit& lu, Task& task);
void run_get_lba_status(LogicalUnit& lu, Task& task);
void run_read_defect_data(LogicalUnit& lu, Task& task);
void run_report_supported_tmfs(LogicalUnit& lu, Task& task);
void run_report_luns(LogicalUnit& lu, Task& task);  // sent to the LU itself, not its LunMap

// --- logical block provisioning (provisioning.cpp) ---

// UNMAP limits, as VPD Block Limits reports them and UNMAP enforces them.
inline constexpr std::uint32_t max_unmap_lba_count = 1u << 20;
inline constexpr std::uint32_t max_unmap_descriptors = 256;
inline std::uint32_t optimal_unmap_granularity(std::uint32_t block_size) {
  return block_size >= 4096 ? 1 : 4096 / block_size;
}

// LBPRZ (READ CAPACITY(16), VPD B2h): deallocated blocks read as zeroes,
// which is true of every thin LU here. It is claimed for 512-byte blocks
// only: QEMU 7.2's iscsi driver, seeing LBPRZ, asks GET LBA STATUS about a
// range of BDRV_REQUEST_MAX_BYTES (a multiple of 512, not of 4096) and
// aborts on its own alignment assertion for larger blocks. LBPRZ 0 merely
// promises nothing about what unmapped blocks read as.
inline bool reports_lbprz(const LunParams& params) {
  return params.thin_provisioned && params.block_size == 512;
}

// UNMAP on a thin-provisioned LU. Completes the task.
void unmap(LogicalUnit& lu, Task& task);

// WRITE SAME, range already checked, that deallocates (UNMAP on a thin LU:
// the blocks then read back as zeroes) or writes zeroes (NDOB, or a
// Data-Out block of zeroes: zeroed in place by the backend, falling back to
// write_same_pattern where it cannot). Completes the task.
void write_same_zeroes(LogicalUnit& lu, Task& task, std::uint64_t lba, std::uint64_t blocks,
                       bool unmap);
// WRITE SAME by writing the pattern (Data-Out block, or zeroes when
// pattern is null) block by block (logical_unit.cpp). Completes the task.
void write_same_pattern(LogicalUnit& lu, Task& task, std::uint64_t lba, std::uint64_t blocks,
                        const std::uint8_t* pattern);

// GET LBA STATUS on a thin LU, lba checked: mapped and deallocated extents
// from the backend. Completes the task.
void get_lba_status_thin(LogicalUnit& lu, Task& task, std::uint64_t lba, std::uint32_t alloc);

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
