// The SCSI commands a logical unit knows, one row each: LogicalUnit::execute
// dispatches from it, REPORT SUPPORTED OPERATION CODES reports it, and the
// persistent (SPC-4) and SPC-2 reservation checks classify commands by it.
// Adding a command is one row in command_table.cpp plus its handler.
// Private to the scsi layer: the transport uses logical_unit.hpp only.
#pragma once

#include <array>
#include <cstdint>
#include <span>

#include "ringtgt/scsi/logical_unit.hpp"
#include "ringtgt/scsi/task.hpp"

namespace ringtgt::scsi::detail {

// Runs the command and completes the task (maybe later, from a backend completion).
using CommandHandler = void (*)(LogicalUnit& lu, Task& task);

// Which logical units run the command.
enum class Offered : std::uint8_t {
  always,
  with_spc2_reservations,  // RESERVE/RELEASE: LunParams::spc2_reservations
  when_thin,               // UNMAP: a thin-provisioned LU
  when_sanitize_allowed,   // SANITIZE: LunParams::allow_sanitize
  // Never run (INVALID COMMAND OPERATION CODE, not reported), but classified: a
  // reservation lets it through to that answer.
  never,
};

// What a persistent reservation held by another I_T nexus makes of the command
// (SPC-4 5.13.1, table 66): let through, or blocked as a read or as a write
// depending on the reservation type.
enum class PrClass : std::uint8_t {
  unrestricted,
  read,
  write,
  medium_removal,  // PREVENT ALLOW MEDIUM REMOVAL: PREVENT is a write, ALLOW unrestricted
};

// Service action column: a command without one, or the row that answers the
// service actions of its opcode that no other row lists (not reported by RSOC).
inline constexpr std::int16_t kNoServiceAction = -1;
inline constexpr std::int16_t kOtherServiceActions = -2;

struct Command {
  std::uint8_t opcode;
  std::int16_t service_action;  // 0..31 (CDB byte 1, bits 4-0), or one of the two above
  const char* name;
  CommandHandler run;
  std::uint8_t cdb_length;
  std::array<std::uint8_t, 16> usage;  // RSOC's CDB USAGE DATA: byte 0 is the opcode
  PrClass pr;
  bool allowed_while_reserved;  // an SPC-2 reservation of another I_T nexus lets it through
  DataDirection direction;      // which way its data moves, if at all (VERIFY: with BYTCHK)
  Offered offered;
};

// Every row, by opcode and then service action (RSOC's order); at most
// kMaxCommandRows of them (RSOC's buffer).
inline constexpr std::size_t kMaxCommandRows = 128;
// Every row, by opcode and then service action (RSOC's order).
std::span<const Command> commands();

// The row of the command in cdb (its service action's, else its opcode's
// kOtherServiceActions row), or null for an opcode the table does not have.
// O(1) for an opcode without service actions: it runs for every command.
const Command* find_command(const std::array<std::uint8_t, 16>& cdb);

// Whether an opcode's rows are per service action.
bool has_service_actions(std::uint8_t opcode);

// Whether lu's parameters make it run the command.
bool offered(const Command& c, bool spc2_reservations, bool thin_provisioned,
             bool sanitize_allowed = false);

}  // namespace ringtgt::scsi::detail
