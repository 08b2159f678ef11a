// The command table (command_table.hpp): one row per command a logical unit
// knows. Rows of one opcode sit together, ordered by service action, and the
// opcodes ascend: REPORT SUPPORTED OPERATION CODES lists them in this order.
#include "command_table.hpp"

#include <algorithm>

#include "commands.hpp"
#include "ringtgt/scsi/cdb.hpp"

namespace ringtgt::scsi::detail {

namespace {

// A service action its opcode's rows do not list: INVALID FIELD IN CDB at the
// SERVICE ACTION field, with the allocation length (a 32-bit field at
// alloc_at) as the transfer length.
template <std::size_t alloc_at>
void unsupported_service_action(LogicalUnit&, Task& task) {
  task.transfer_length = get_be32(&task.cdb[alloc_at]);
  task.fail_cdb_field(1, 4);
  task.complete();
}

constexpr std::int16_t no_sa = kNoServiceAction;
constexpr std::int16_t other_sa = kOtherServiceActions;
constexpr std::uint8_t FF = 0xff;

using enum PrClass;
constexpr DataDirection in = DataDirection::from_device;
constexpr DataDirection out = DataDirection::to_device;
using enum Offered;

constexpr CommandHandler kPrIn = [](LogicalUnit& lu, Task& t) { lu.persistent_reserve_in(t); };
constexpr CommandHandler kPrOut = [](LogicalUnit& lu, Task& t) { lu.persistent_reserve_out(t); };
constexpr std::array<std::uint8_t, 16> kPrInUsage{0x5e, 0x1f, 0, 0, 0, 0, 0, FF, FF, 0};
constexpr std::array<std::uint8_t, 16> kPrOutUsage{0x5f, 0x1f, FF, 0, 0, FF, FF, FF, FF, 0};
constexpr CommandHandler kSanitize = [](LogicalUnit& lu, Task& t) { lu.sanitize(t); };
// IMMED, AUSE, SERVICE ACTION; PARAMETER LIST LENGTH.
constexpr std::array<std::uint8_t, 16> kSanitizeUsage{0x48, 0xbf, 0, 0, 0, 0, 0, FF, FF, 0};

// clang-format off
constexpr Command kCommands[] = {
  // opcode, service action, name, handler,
  //   CDB length, CDB usage data, persistent reservation class, allowed under an SPC-2 reservation, data, offered
  {0x00, no_sa, "TEST UNIT READY", &run_good,
     6, {0x00, 0, 0, 0, 0, 0}, unrestricted, false, DataDirection::none, always},
  {0x03, no_sa, "REQUEST SENSE", [](LogicalUnit& lu, Task& t) {
     // Sense is returned with the failing command (autosense), so only a unit
     // attention is ever pending, and nexus_state_blocks returned it; or a
     // sanitize's progress or failure (sanitize.cpp).
     lu.request_sense(t); },
     6, {0x03, 0x01, 0, 0, FF, 0}, unrestricted, true, in, always},
  {0x08, no_sa, "READ(6)", &run_read,
     6, {0x08, 0x1f, FF, FF, FF, 0}, read, false, in, always},
  {0x0a, no_sa, "WRITE(6)", &run_write,
     6, {0x0a, 0x1f, FF, FF, FF, 0}, write, false, out, always},
  {0x12, no_sa, "INQUIRY", [](LogicalUnit& lu, Task& t) { inquiry(&lu, t); },
     6, {0x12, 0x01, FF, FF, FF, 0}, unrestricted, true, in, always},
  {0x15, no_sa, "MODE SELECT(6)", [](LogicalUnit& lu, Task& t) { lu.mode_select(t); },
     6, {0x15, 0x11, 0, 0, FF, 0}, write, false, out, always},
  {0x16, no_sa, "RESERVE(6)", [](LogicalUnit& lu, Task& t) { lu.reserve(t); },
     6, {0x16, 0, 0, 0, 0, 0}, unrestricted, false, DataDirection::none, with_spc2_reservations},
  {0x17, no_sa, "RELEASE(6)", [](LogicalUnit& lu, Task& t) { lu.release(t); },
     6, {0x17, 0, 0, 0, 0, 0}, unrestricted, true, DataDirection::none, with_spc2_reservations},
  {0x1a, no_sa, "MODE SENSE(6)", &mode_sense,
     6, {0x1a, 0x08, FF, FF, FF, 0}, write, false, in, always},
  {0x1b, no_sa, "START STOP UNIT", &run_good,  // nothing to spin up or eject
     6, {0x1b, 0x01, 0, 0x0f, 0xf7, 0}, unrestricted, false, DataDirection::none, always},
  {0x1e, no_sa, "PREVENT ALLOW MEDIUM REMOVAL", &run_prevent_allow_medium_removal,
     6, {0x1e, 0, 0, 0, 0x03, 0}, medium_removal, false, DataDirection::none, always},
  {0x25, no_sa, "READ CAPACITY(10)", &run_read_capacity10,
     10, {0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0}, unrestricted, false, in, always},
  {0x28, no_sa, "READ(10)", &run_read,
     10, {0x28, 0xf8, FF, FF, FF, FF, 0, FF, FF, 0}, read, false, in, always},
  {0x2a, no_sa, "WRITE(10)", &run_write,
     10, {0x2a, 0xf8, FF, FF, FF, FF, 0, FF, FF, 0}, write, false, out, always},
  {0x2e, no_sa, "WRITE AND VERIFY(10)", &run_write,
     10, {0x2e, 0xf2, FF, FF, FF, FF, 0, FF, FF, 0}, write, false, out, always},
  {0x2f, no_sa, "VERIFY(10)", &run_verify,
     10, {0x2f, 0xf6, FF, FF, FF, FF, 0, FF, FF, 0}, read, false, out, always},
  {0x34, no_sa, "PRE-FETCH(10)", &run_prefetch,
     10, {0x34, 0x02, FF, FF, FF, FF, 0, FF, FF, 0}, read, false, DataDirection::none, always},
  {0x35, no_sa, "SYNCHRONIZE CACHE(10)", &run_synchronize_cache,
     10, {0x35, 0x02, FF, FF, FF, FF, 0, FF, FF, 0}, write, false, DataDirection::none, always},
  {0x37, no_sa, "READ DEFECT DATA(10)", &run_read_defect_data,
     10, {0x37, 0, 0x1f, 0, 0, 0, 0, FF, FF, 0}, read, false, in, always},
  {0x41, no_sa, "WRITE SAME(10)", &run_write_same,
     10, {0x41, 0xf8, FF, FF, FF, FF, 0, FF, FF, 0}, write, false, out, always},
  {0x42, no_sa, "UNMAP", &unmap,
     10, {0x42, 0x01, 0, 0, 0, 0, 0, FF, FF, 0}, write, false, out, when_thin},
  // LOG SENSE is not run, but SPC-4 lets it through a persistent reservation.
  // SANITIZE (SBC-4 r22 5.30): where allow_sanitize is set. CRYPTOGRAPHIC
  // ERASE (03h) is answered by the catch-all row: INVALID FIELD IN CDB.
  {0x48, 0x01, "SANITIZE: OVERWRITE", kSanitize, 10, kSanitizeUsage, write, false, out, when_sanitize_allowed},
  {0x48, 0x02, "SANITIZE: BLOCK ERASE", kSanitize, 10, kSanitizeUsage, write, false, DataDirection::none, when_sanitize_allowed},
  {0x48, 0x1f, "SANITIZE: EXIT FAILURE MODE", kSanitize, 10, kSanitizeUsage, write, false, DataDirection::none, when_sanitize_allowed},
  {0x48, other_sa, "SANITIZE", kSanitize, 10, {}, write, false, out, when_sanitize_allowed},
  {0x4d, no_sa, "LOG SENSE", nullptr,
     10, {}, unrestricted, false, in, never},
  {0x55, no_sa, "MODE SELECT(10)", [](LogicalUnit& lu, Task& t) { lu.mode_select(t); },
     10, {0x55, 0x11, 0, 0, 0, 0, 0, FF, FF, 0}, write, false, out, always},
  {0x56, no_sa, "RESERVE(10)", [](LogicalUnit& lu, Task& t) { lu.reserve(t); },
     10, {0x56, 0, 0, 0, 0, 0, 0, 0, 0, 0}, unrestricted, false, DataDirection::none, with_spc2_reservations},
  {0x57, no_sa, "RELEASE(10)", [](LogicalUnit& lu, Task& t) { lu.release(t); },
     10, {0x57, 0, 0, 0, 0, 0, 0, 0, 0, 0}, unrestricted, true, DataDirection::none, with_spc2_reservations},
  {0x5a, no_sa, "MODE SENSE(10)", &mode_sense,
     10, {0x5a, 0x18, FF, FF, 0, 0, 0, FF, FF, 0}, write, false, in, always},
  // PERSISTENT RESERVE IN/OUT check their service action and, for OUT, the key.
  {0x5e, 0, "PERSISTENT RESERVE IN: READ KEYS", kPrIn, 10, kPrInUsage, unrestricted, false, in, always},
  {0x5e, 1, "PERSISTENT RESERVE IN: READ RESERVATION", kPrIn, 10, kPrInUsage, unrestricted, false, in, always},
  {0x5e, 2, "PERSISTENT RESERVE IN: REPORT CAPABILITIES", kPrIn, 10, kPrInUsage, unrestricted, false, in, always},
  {0x5e, 3, "PERSISTENT RESERVE IN: READ FULL STATUS", kPrIn, 10, kPrInUsage, unrestricted, false, in, always},
  {0x5e, other_sa, "PERSISTENT RESERVE IN", kPrIn, 10, kPrInUsage, unrestricted, false, in, always},
  {0x5f, 0, "PERSISTENT RESERVE OUT: REGISTER", kPrOut, 10, kPrOutUsage, unrestricted, false, out, always},
  {0x5f, 1, "PERSISTENT RESERVE OUT: RESERVE", kPrOut, 10, kPrOutUsage, unrestricted, false, out, always},
  {0x5f, 2, "PERSISTENT RESERVE OUT: RELEASE", kPrOut, 10, kPrOutUsage, unrestricted, false, out, always},
  {0x5f, 3, "PERSISTENT RESERVE OUT: CLEAR", kPrOut, 10, kPrOutUsage, unrestricted, false, out, always},
  {0x5f, 4, "PERSISTENT RESERVE OUT: PREEMPT", kPrOut, 10, kPrOutUsage, unrestricted, false, out, always},
  {0x5f, 5, "PERSISTENT RESERVE OUT: PREEMPT AND ABORT", kPrOut, 10, kPrOutUsage, unrestricted, false, out, always},
  {0x5f, 6, "PERSISTENT RESERVE OUT: REGISTER AND IGNORE EXISTING KEY", kPrOut, 10, kPrOutUsage, unrestricted, false, out, always},
  {0x5f, 7, "PERSISTENT RESERVE OUT: REGISTER AND MOVE", kPrOut, 10, kPrOutUsage, unrestricted, false, out, always},
  {0x5f, other_sa, "PERSISTENT RESERVE OUT", kPrOut, 10, kPrOutUsage, unrestricted, false, out, always},
  // EXTENDED COPY and RECEIVE COPY RESULTS check their service action.
  {0x83, 0x00, "EXTENDED COPY (LID1)", &extended_copy,
     16, {0x83, 0x1f, 0, 0, 0, 0, 0, 0, 0, 0, FF, FF, FF, FF, 0, 0}, write, false, out, always},
  {0x83, other_sa, "EXTENDED COPY", &extended_copy,
     16, {}, write, false, out, always},
  {0x84, 0x00, "RECEIVE COPY RESULTS: COPY STATUS", &receive_copy_results,
     16, {0x84, 0x1f, FF, 0, 0, 0, 0, 0, 0, 0, FF, FF, FF, FF, 0, 0}, write, false, in, always},
  {0x84, 0x03, "RECEIVE COPY RESULTS: OPERATING PARAMETERS", &receive_copy_results,
     16, {0x84, 0x1f, 0, 0, 0, 0, 0, 0, 0, 0, FF, FF, FF, FF, 0, 0}, write, false, in, always},
  {0x84, 0x04, "RECEIVE COPY RESULTS: FAILED SEGMENT DETAILS", &receive_copy_results,
     16, {0x84, 0x1f, FF, 0, 0, 0, 0, 0, 0, 0, FF, FF, FF, FF, 0, 0}, write, false, in, always},
  {0x84, other_sa, "RECEIVE COPY RESULTS", &receive_copy_results,
     16, {}, write, false, in, always},
  {0x88, no_sa, "READ(16)", &run_read,
     16, {0x88, 0xf8, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, 0, 0}, read, false, in, always},
  {0x89, no_sa, "COMPARE AND WRITE", &run_compare_and_write,
     16, {0x89, 0xf8, FF, FF, FF, FF, FF, FF, FF, FF, 0, 0, 0, FF, 0, 0}, write, false, out, always},
  {0x8a, no_sa, "WRITE(16)", &run_write,
     16, {0x8a, 0xf8, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, 0, 0}, write, false, out, always},
  {0x8b, no_sa, "ORWRITE(16)", &run_orwrite,
     16, {0x8b, 0xf8, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, 0, 0}, write, false, out, always},
  {0x8e, no_sa, "WRITE AND VERIFY(16)", &run_write,
     16, {0x8e, 0xf2, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, 0, 0}, write, false, out, always},
  {0x8f, no_sa, "VERIFY(16)", &run_verify,
     16, {0x8f, 0xf6, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, 0, 0}, read, false, out, always},
  {0x90, no_sa, "PRE-FETCH(16)", &run_prefetch,
     16, {0x90, 0x02, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, 0, 0}, read, false, DataDirection::none, always},
  {0x91, no_sa, "SYNCHRONIZE CACHE(16)", &run_synchronize_cache,
     16, {0x91, 0x02, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, 0, 0}, write, false, DataDirection::none, always},
  {0x93, no_sa, "WRITE SAME(16)", &run_write_same,
     16, {0x93, 0xf9, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, 0, 0}, write, false, out, always},
  {0x9c, no_sa, "WRITE ATOMIC(16)", &run_write_atomic,
     16, {0x9c, 0xf8, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, 0, 0}, write, false, out, always},
  {0x9e, 0x10, "READ CAPACITY(16)", &run_read_capacity16,
     16, {0x9e, 0x1f, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, 0, 0}, unrestricted, false, in, always},
  {0x9e, 0x12, "GET LBA STATUS", &run_get_lba_status,
     16, {0x9e, 0x1f, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, 0, 0}, read, false, in, always},
  {0x9e, other_sa, "SERVICE ACTION IN(16)", &unsupported_service_action<10>,
     16, {}, read, false, in, always},
  {0xa0, no_sa, "REPORT LUNS", &run_report_luns,
     12, {0xa0, 0, FF, 0, 0, 0, FF, FF, FF, FF, 0, 0}, unrestricted, true, in, always},
  {0xa3, 0x0c, "REPORT SUPPORTED OPERATION CODES", [](LogicalUnit& lu, Task& t) {
     report_supported_opcodes(t, lu.params().spc2_reservations, lu.params().thin_provisioned,
                              lu.params().allow_sanitize); },
     12, {0xa3, 0x1f, 0x87, FF, FF, FF, FF, FF, FF, FF, 0, 0}, unrestricted, true, in, always},
  {0xa3, 0x0d, "REPORT SUPPORTED TASK MANAGEMENT FUNCTIONS", &run_report_supported_tmfs,
     12, {0xa3, 0x1f, 0x80, 0, 0, 0, FF, FF, FF, FF, 0, 0}, unrestricted, true, in, always},
  {0xa3, other_sa, "MAINTENANCE IN", &unsupported_service_action<6>,
     12, {}, unrestricted, false, in, always},
  {0xa8, no_sa, "READ(12)", &run_read,
     12, {0xa8, 0xf8, FF, FF, FF, FF, FF, FF, FF, FF, 0, 0}, read, false, in, always},
  {0xaa, no_sa, "WRITE(12)", &run_write,
     12, {0xaa, 0xf8, FF, FF, FF, FF, FF, FF, FF, FF, 0, 0}, write, false, out, always},
  {0xae, no_sa, "WRITE AND VERIFY(12)", &run_write,
     12, {0xae, 0xf2, FF, FF, FF, FF, FF, FF, FF, FF, 0, 0}, write, false, out, always},
  {0xaf, no_sa, "VERIFY(12)", &run_verify,
     12, {0xaf, 0xf6, FF, FF, FF, FF, FF, FF, FF, FF, 0, 0}, read, false, out, always},
  {0xb7, no_sa, "READ DEFECT DATA(12)", &run_read_defect_data,
     12, {0xb7, 0x1f, 0, 0, 0, 0, FF, FF, FF, FF, 0, 0}, read, false, in, always},
};
// clang-format on

constexpr std::size_t kRows = std::size(kCommands);
constexpr std::uint8_t kNoRow = 0xff;
static_assert(kRows < kNoRow, "the opcode index holds row numbers in a byte");
static_assert(kRows <= kMaxCommandRows, "raise kMaxCommandRows (RSOC's buffer)");

// Opcodes ascend, and the rows of an opcode are one run: its service actions in
// ascending order, then its kOtherServiceActions row; an opcode has service
// actions in every row or in none.
constexpr bool well_ordered() {
  for (std::size_t i = 1; i < kRows; ++i) {
    const Command& a = kCommands[i - 1];
    const Command& b = kCommands[i];
    if (a.opcode > b.opcode) return false;
    if (a.opcode != b.opcode) {
      if (b.service_action == other_sa) return false;
      continue;
    }
    if (a.service_action == no_sa || b.service_action == no_sa) return false;
    if (a.service_action == other_sa) return false;
    if (b.service_action != other_sa && b.service_action <= a.service_action) return false;
  }
  return true;
}
static_assert(well_ordered(), "command table rows out of order");

// Every offered row's CDB usage data starts with its opcode (catch-all rows report
// nothing). That each has a handler is checked by command_table_test.cpp: GCC's
// -fsanitize=undefined makes comparing a function's address with nullptr no
// constant expression, so the sanitizer build could not compile it here.
constexpr bool rows_complete() {
  for (const Command& c : kCommands) {
    if (c.service_action != other_sa && c.offered != never && c.usage[0] != c.opcode) return false;
    if (c.cdb_length != 6 && c.cdb_length != 10 && c.cdb_length != 12 && c.cdb_length != 16)
      return false;
  }
  return true;
}
static_assert(rows_complete(), "a command row lacks its CDB usage data");

// The first row of each opcode, so that finding a command costs one load.
constexpr std::array<std::uint8_t, 256> first_rows() {
  std::array<std::uint8_t, 256> first{};
  first.fill(kNoRow);
  for (std::size_t i = kRows; i-- > 0;) first[kCommands[i].opcode] = static_cast<std::uint8_t>(i);
  return first;
}
constexpr std::array<std::uint8_t, 256> kFirstRow = first_rows();

}  // namespace

std::span<const Command> commands() {
  return kCommands;
}

const Command* find_command(const std::array<std::uint8_t, 16>& cdb) {
  const std::uint8_t first = kFirstRow[cdb[0]];
  if (first == kNoRow) return nullptr;
  const Command* row = &kCommands[first];
  if (row->service_action == no_sa) return row;
  const std::int16_t sa = cdb[1] & 0x1f;
  for (; row != std::end(kCommands) && row->opcode == cdb[0]; ++row) {
    if (row->service_action == sa || row->service_action == other_sa) return row;
  }
  return nullptr;  // an opcode with service actions and no catch-all row
}

bool has_service_actions(std::uint8_t opcode) {
  const std::uint8_t first = kFirstRow[opcode];
  return first != kNoRow && kCommands[first].service_action != no_sa;
}

bool offered(const Command& c, bool spc2_reservations, bool thin_provisioned,
             bool sanitize_allowed) {
  switch (c.offered) {
    case always:
      return true;
    case with_spc2_reservations:
      return spc2_reservations;
    case when_thin:
      return thin_provisioned;
    case when_sanitize_allowed:
      return sanitize_allowed;
    case never:
      return false;
  }
  return false;
}

}  // namespace ringtgt::scsi::detail
