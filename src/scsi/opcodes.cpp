// REPORT SUPPORTED OPERATION CODES (SPC-4 6.35): the commands a logical unit
// executes, with the CDB bits it examines, as the command table lists them.
#include <cstring>

#include "command_table.hpp"
#include "commands.hpp"
#include "ringtgt/scsi/cdb.hpp"

namespace ringtgt::scsi::detail {

namespace {

constexpr std::size_t kTimeoutsLength = 12;

// Command timeouts descriptor (SPC-4 6.35.4): nothing we run takes long.
void put_timeouts(std::uint8_t* out) {
  put_be16(&out[0], 0x000a);
  put_be32(&out[4], 1);   // nominal command processing timeout, seconds
  put_be32(&out[8], 30);  // recommended command timeout, seconds
}

// Whether this LU reports row: the commands it runs, each service action on its own.
bool reported(const Command& row, bool reservations, bool thin, bool sanitize) {
  return row.service_action != kOtherServiceActions && offered(row, reservations, thin, sanitize);
}

// The reported row of opcode (and, with_sa, of service action sa when the opcode has them).
const Command* find_op(std::uint8_t opcode, bool with_sa, std::uint16_t sa, bool reservations,
                       bool thin, bool sanitize) {
  for (const Command& row : commands()) {
    if (row.opcode != opcode || !reported(row, reservations, thin, sanitize)) continue;
    if (row.service_action == kNoServiceAction || !with_sa ||
        row.service_action == static_cast<std::int16_t>(sa))
      return &row;
  }
  return nullptr;
}

}  // namespace

void report_supported_opcodes(Task& task, bool spc2_reservations, bool thin, bool sanitize) {
  const auto& c = task.cdb;
  const bool rctd = c[2] & 0x80;
  const std::uint8_t options = c[2] & 0x07;
  const std::uint8_t req_op = c[3];
  const std::uint16_t req_sa = get_be16(&c[4]);
  const std::uint32_t alloc = get_be32(&c[6]);
  task.transfer_length = alloc;

  std::uint8_t out[4 + kMaxCommandRows * (8 + kTimeoutsLength)] = {};
  std::size_t pos = 0;
  if (options == 0) {
    pos = 4;
    for (const Command& op : commands()) {
      if (!reported(op, spc2_reservations, thin, sanitize)) continue;
      const bool has_sa = op.service_action != kNoServiceAction;
      std::uint8_t* d = &out[pos];
      d[0] = op.opcode;
      put_be16(&d[2], has_sa ? static_cast<std::uint16_t>(op.service_action) : 0);
      d[5] = (rctd ? 0x02 : 0x00) | (has_sa ? 0x01 : 0x00);  // CTDP, SERVACTV
      put_be16(&d[6], op.cdb_length);
      pos += 8;
      if (rctd) {
        put_timeouts(&out[pos]);
        pos += kTimeoutsLength;
      }
    }
    put_be32(&out[0], static_cast<std::uint32_t>(pos - 4));
    return finish_data_in(task, out, pos, alloc);
  }

  const Command* op = nullptr;
  switch (options) {
    case 1:  // opcode only: invalid for a command that has service actions
      if (has_service_actions(req_op)) {
        task.fail_cdb_field(2, 2);
        return task.complete();
      }
      op = find_op(req_op, false, 0, spc2_reservations, thin, sanitize);
      break;
    case 2:  // opcode and service action: invalid for one that has none
      if (!has_service_actions(req_op) &&
          find_op(req_op, false, 0, spc2_reservations, thin, sanitize) != nullptr) {
        task.fail_cdb_field(2, 2);
        return task.complete();
      }
      op = find_op(req_op, true, req_sa, spc2_reservations, thin, sanitize);
      break;
    case 3:  // either
      op = has_service_actions(req_op)
               ? find_op(req_op, true, req_sa, spc2_reservations, thin, sanitize)
               : find_op(req_op, false, 0, spc2_reservations, thin, sanitize);
      break;
    default:
      task.fail_cdb_field(2, 2);
      return task.complete();
  }

  if (op == nullptr) {
    out[1] = 0x01;  // SUPPORT 001b: not supported; CDB SIZE 0
    pos = 4;
  } else {
    out[1] = (rctd ? 0x80 : 0x00) | 0x03;  // CTDP, SUPPORT 011b: as the standard says
    put_be16(&out[2], op->cdb_length);
    std::memcpy(&out[4], op->usage.data(), op->cdb_length);
    pos = 4 + op->cdb_length;
    if (rctd) {
      put_timeouts(&out[pos]);
      pos += kTimeoutsLength;
    }
  }
  finish_data_in(task, out, pos, alloc);
}

}  // namespace ringtgt::scsi::detail
