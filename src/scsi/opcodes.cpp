// REPORT SUPPORTED OPERATION CODES (SPC-4 6.35): the commands a logical unit
// executes, with the CDB bits it examines. Keep the table in step with the
// dispatch in LogicalUnit::execute.
#include <cstring>

#include "ringtgt/scsi/cdb.hpp"
#include "ringtgt/scsi/commands.hpp"

namespace ringtgt::scsi::detail {

namespace {

struct OpInfo {
  std::uint8_t opcode;
  bool has_sa;
  std::uint16_t sa;
  std::uint8_t cdb_len;
  std::uint8_t usage[16];  // CDB usage data: byte 0 is the opcode
};

constexpr std::uint8_t FF = 0xff;

// clang-format off
constexpr OpInfo kOps[] = {
    {0x00, false, 0, 6, {0x00, 0, 0, 0, 0, 0}},                       // TEST UNIT READY
    {0x03, false, 0, 6, {0x03, 0x01, 0, 0, FF, 0}},                   // REQUEST SENSE
    {0x08, false, 0, 6, {0x08, 0x1f, FF, FF, FF, 0}},                 // READ(6)
    {0x0a, false, 0, 6, {0x0a, 0x1f, FF, FF, FF, 0}},                 // WRITE(6)
    {0x12, false, 0, 6, {0x12, 0x01, FF, FF, FF, 0}},                 // INQUIRY
    {0x15, false, 0, 6, {0x15, 0x11, 0, 0, FF, 0}},                   // MODE SELECT(6)
    {0x16, false, 0, 6, {0x16, 0, 0, 0, 0, 0}},                       // RESERVE(6)
    {0x17, false, 0, 6, {0x17, 0, 0, 0, 0, 0}},                       // RELEASE(6)
    {0x1a, false, 0, 6, {0x1a, 0x08, FF, FF, FF, 0}},                 // MODE SENSE(6)
    {0x1b, false, 0, 6, {0x1b, 0x01, 0, 0x0f, 0xf7, 0}},              // START STOP UNIT
    {0x1e, false, 0, 6, {0x1e, 0, 0, 0, 0x03, 0}},                    // PREVENT ALLOW MEDIUM REMOVAL
    {0x25, false, 0, 10, {0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0}},          // READ CAPACITY(10)
    {0x28, false, 0, 10, {0x28, 0xf8, FF, FF, FF, FF, 0, FF, FF, 0}}, // READ(10)
    {0x2a, false, 0, 10, {0x2a, 0xf8, FF, FF, FF, FF, 0, FF, FF, 0}}, // WRITE(10)
    {0x2e, false, 0, 10, {0x2e, 0xf2, FF, FF, FF, FF, 0, FF, FF, 0}}, // WRITE AND VERIFY(10)
    {0x2f, false, 0, 10, {0x2f, 0xf6, FF, FF, FF, FF, 0, FF, FF, 0}}, // VERIFY(10)
    {0x34, false, 0, 10, {0x34, 0x02, FF, FF, FF, FF, 0, FF, FF, 0}}, // PRE-FETCH(10)
    {0x35, false, 0, 10, {0x35, 0x02, FF, FF, FF, FF, 0, FF, FF, 0}}, // SYNCHRONIZE CACHE(10)
    {0x37, false, 0, 10, {0x37, 0, 0x1f, 0, 0, 0, 0, FF, FF, 0}},     // READ DEFECT DATA(10)
    {0x41, false, 0, 10, {0x41, 0xf8, FF, FF, FF, FF, 0, FF, FF, 0}}, // WRITE SAME(10)
    {0x42, false, 0, 10, {0x42, 0x01, 0, 0, 0, 0, 0, FF, FF, 0}},     // UNMAP
    {0x55, false, 0, 10, {0x55, 0x11, 0, 0, 0, 0, 0, FF, FF, 0}},     // MODE SELECT(10)
    {0x56, false, 0, 10, {0x56, 0, 0, 0, 0, 0, 0, 0, 0, 0}},          // RESERVE(10)
    {0x57, false, 0, 10, {0x57, 0, 0, 0, 0, 0, 0, 0, 0, 0}},          // RELEASE(10)
    {0x5a, false, 0, 10, {0x5a, 0x18, FF, FF, 0, 0, 0, FF, FF, 0}},   // MODE SENSE(10)
    {0x5e, true, 0, 10, {0x5e, 0x1f, 0, 0, 0, 0, 0, FF, FF, 0}},         // PERSISTENT RESERVE IN: READ KEYS
    {0x5e, true, 1, 10, {0x5e, 0x1f, 0, 0, 0, 0, 0, FF, FF, 0}},         // PERSISTENT RESERVE IN: READ RESERVATION
    {0x5e, true, 2, 10, {0x5e, 0x1f, 0, 0, 0, 0, 0, FF, FF, 0}},         // PERSISTENT RESERVE IN: REPORT CAPABILITIES
    {0x5e, true, 3, 10, {0x5e, 0x1f, 0, 0, 0, 0, 0, FF, FF, 0}},         // PERSISTENT RESERVE IN: READ FULL STATUS
    {0x5f, true, 0, 10, {0x5f, 0x1f, FF, 0, 0, FF, FF, FF, FF, 0}},      // PERSISTENT RESERVE OUT: REGISTER
    {0x5f, true, 1, 10, {0x5f, 0x1f, FF, 0, 0, FF, FF, FF, FF, 0}},      // PERSISTENT RESERVE OUT: RESERVE
    {0x5f, true, 2, 10, {0x5f, 0x1f, FF, 0, 0, FF, FF, FF, FF, 0}},      // PERSISTENT RESERVE OUT: RELEASE
    {0x5f, true, 3, 10, {0x5f, 0x1f, FF, 0, 0, FF, FF, FF, FF, 0}},      // PERSISTENT RESERVE OUT: CLEAR
    {0x5f, true, 4, 10, {0x5f, 0x1f, FF, 0, 0, FF, FF, FF, FF, 0}},      // PERSISTENT RESERVE OUT: PREEMPT
    {0x5f, true, 5, 10, {0x5f, 0x1f, FF, 0, 0, FF, FF, FF, FF, 0}},      // PERSISTENT RESERVE OUT: PREEMPT AND ABORT
    {0x5f, true, 6, 10, {0x5f, 0x1f, FF, 0, 0, FF, FF, FF, FF, 0}},      // PERSISTENT RESERVE OUT: REGISTER AND IGNORE EXISTING KEY
    {0x5f, true, 7, 10, {0x5f, 0x1f, FF, 0, 0, FF, FF, FF, FF, 0}},      // PERSISTENT RESERVE OUT: REGISTER AND MOVE
    {0x83, true, 0x00, 16, {0x83, 0x1f, 0, 0, 0, 0, 0, 0, 0, 0, FF, FF, FF, FF, 0, 0}},     // EXTENDED COPY (LID1)
    {0x84, true, 0x00, 16, {0x84, 0x1f, FF, 0, 0, 0, 0, 0, 0, 0, FF, FF, FF, FF, 0, 0}},    // RECEIVE COPY RESULTS: COPY STATUS
    {0x84, true, 0x03, 16, {0x84, 0x1f, 0, 0, 0, 0, 0, 0, 0, 0, FF, FF, FF, FF, 0, 0}},     // RECEIVE COPY RESULTS: OPERATING PARAMETERS
    {0x84, true, 0x04, 16, {0x84, 0x1f, FF, 0, 0, 0, 0, 0, 0, 0, FF, FF, FF, FF, 0, 0}},    // RECEIVE COPY RESULTS: FAILED SEGMENT DETAILS
    {0x88, false, 0, 16, {0x88, 0xf8, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, 0, 0}},  // READ(16)
    {0x89, false, 0, 16, {0x89, 0xf8, FF, FF, FF, FF, FF, FF, FF, FF, 0, 0, 0, FF, 0, 0}},  // COMPARE AND WRITE
    {0x8a, false, 0, 16, {0x8a, 0xf8, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, 0, 0}},  // WRITE(16)
    {0x8b, false, 0, 16, {0x8b, 0xf8, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, 0, 0}},  // ORWRITE(16)
    {0x8e, false, 0, 16, {0x8e, 0xf2, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, 0, 0}},  // WRITE AND VERIFY(16)
    {0x8f, false, 0, 16, {0x8f, 0xf6, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, 0, 0}},  // VERIFY(16)
    {0x90, false, 0, 16, {0x90, 0x02, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, 0, 0}},  // PRE-FETCH(16)
    {0x91, false, 0, 16, {0x91, 0x02, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, 0, 0}},  // SYNCHRONIZE CACHE(16)
    {0x93, false, 0, 16, {0x93, 0xf9, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, 0, 0}},  // WRITE SAME(16)
    {0x9e, true, 0x10, 16, {0x9e, 0x1f, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, 0, 0}}, // READ CAPACITY(16)
    {0x9e, true, 0x12, 16, {0x9e, 0x1f, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, 0, 0}}, // GET LBA STATUS
    {0xa0, false, 0, 12, {0xa0, 0, FF, 0, 0, 0, FF, FF, FF, FF, 0, 0}},                      // REPORT LUNS
    {0xa3, true, 0x0c, 12, {0xa3, 0x1f, 0x87, FF, FF, FF, FF, FF, FF, FF, 0, 0}},            // REPORT SUPPORTED OPERATION CODES
    {0xa3, true, 0x0d, 12, {0xa3, 0x1f, 0x80, 0, 0, 0, FF, FF, FF, FF, 0, 0}},              // REPORT SUPPORTED TASK MANAGEMENT FUNCTIONS
    {0xa8, false, 0, 12, {0xa8, 0xf8, FF, FF, FF, FF, FF, FF, FF, FF, 0, 0}},                // READ(12)
    {0xaa, false, 0, 12, {0xaa, 0xf8, FF, FF, FF, FF, FF, FF, FF, FF, 0, 0}},                // WRITE(12)
    {0xae, false, 0, 12, {0xae, 0xf2, FF, FF, FF, FF, FF, FF, FF, FF, 0, 0}},                // WRITE AND VERIFY(12)
    {0xaf, false, 0, 12, {0xaf, 0xf6, FF, FF, FF, FF, FF, FF, FF, FF, 0, 0}},                // VERIFY(12)
    {0xb7, false, 0, 12, {0xb7, 0x1f, 0, 0, 0, 0, FF, FF, FF, FF, 0, 0}},                    // READ DEFECT DATA(12)
};
// clang-format on

constexpr std::size_t kTimeoutsLength = 12;

// Command timeouts descriptor (SPC-4 6.35.4): nothing we run takes long.
void put_timeouts(std::uint8_t* out) {
  put_be16(&out[0], 0x000a);
  put_be32(&out[4], 1);   // nominal command processing timeout, seconds
  put_be32(&out[8], 30);  // recommended command timeout, seconds
}

bool is_reservation(std::uint8_t opcode) {
  return opcode == 0x16 || opcode == 0x17 || opcode == 0x56 || opcode == 0x57;
}

bool is_provisioning(std::uint8_t opcode) {
  return opcode == 0x42;
}

// Whether this LU runs op at all.
bool offered(const OpInfo& op, bool reservations, bool thin) {
  return (reservations || !is_reservation(op.opcode)) && (thin || !is_provisioning(op.opcode));
}

bool opcode_has_sa(std::uint8_t opcode) {
  for (const OpInfo& op : kOps) {
    if (op.opcode == opcode && op.has_sa) return true;
  }
  return false;
}

const OpInfo* find_op(std::uint8_t opcode, bool with_sa, std::uint16_t sa, bool reservations,
                      bool thin) {
  for (const OpInfo& op : kOps) {
    if (op.opcode != opcode) continue;
    if (!offered(op, reservations, thin)) return nullptr;
    if (!op.has_sa || !with_sa || op.sa == sa) return &op;
  }
  return nullptr;
}

}  // namespace

void report_supported_opcodes(Task& task, bool spc2_reservations, bool thin) {
  const auto& c = task.cdb;
  const bool rctd = c[2] & 0x80;
  const std::uint8_t options = c[2] & 0x07;
  const std::uint8_t req_op = c[3];
  const std::uint16_t req_sa = get_be16(&c[4]);
  const std::uint32_t alloc = get_be32(&c[6]);
  task.transfer_length = alloc;

  std::uint8_t out[4 + std::size(kOps) * (8 + kTimeoutsLength)] = {};
  std::size_t pos = 0;
  if (options == 0) {
    pos = 4;
    for (const OpInfo& op : kOps) {
      if (!offered(op, spc2_reservations, thin)) continue;
      std::uint8_t* d = &out[pos];
      d[0] = op.opcode;
      put_be16(&d[2], op.sa);
      d[5] = (rctd ? 0x02 : 0x00) | (op.has_sa ? 0x01 : 0x00);  // CTDP, SERVACTV
      put_be16(&d[6], op.cdb_len);
      pos += 8;
      if (rctd) {
        put_timeouts(&out[pos]);
        pos += kTimeoutsLength;
      }
    }
    put_be32(&out[0], static_cast<std::uint32_t>(pos - 4));
    return finish_data_in(task, out, pos, alloc);
  }

  const OpInfo* op = nullptr;
  switch (options) {
    case 1:  // opcode only: invalid for a command that has service actions
      if (opcode_has_sa(req_op)) {
        task.fail_cdb_field(2, 2);
        return task.complete();
      }
      op = find_op(req_op, false, 0, spc2_reservations, thin);
      break;
    case 2:  // opcode and service action: invalid for one that has none
      if (!opcode_has_sa(req_op) && find_op(req_op, false, 0, spc2_reservations, thin) != nullptr) {
        task.fail_cdb_field(2, 2);
        return task.complete();
      }
      op = find_op(req_op, true, req_sa, spc2_reservations, thin);
      break;
    case 3:  // either
      op = opcode_has_sa(req_op) ? find_op(req_op, true, req_sa, spc2_reservations, thin)
                                 : find_op(req_op, false, 0, spc2_reservations, thin);
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
    put_be16(&out[2], op->cdb_len);
    std::memcpy(&out[4], op->usage, op->cdb_len);
    pos = 4 + op->cdb_len;
    if (rctd) {
      put_timeouts(&out[pos]);
      pos += kTimeoutsLength;
    }
  }
  finish_data_in(task, out, pos, alloc);
}

}  // namespace ringtgt::scsi::detail
