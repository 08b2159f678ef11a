// iSCSI PDU basic header segment (RFC 7143 §11): layout, opcodes, field access.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "ringtgt/scsi/cdb.hpp"

namespace ringtgt::iscsi {

// Header fields are big-endian; the byte-order helpers live in scsi (the lower
// layer), which needs them for CDBs and parameter data too.
using scsi::get_be16;
using scsi::get_be24;
using scsi::get_be32;
using scsi::get_be64;
using scsi::put_be16;
using scsi::put_be24;
using scsi::put_be32;
using scsi::put_be64;

inline constexpr std::size_t kBhsSize = 48;
inline constexpr std::size_t kDigestSize = 4;
inline constexpr std::uint32_t kReservedTag = 0xffffffff;

enum class Opcode : std::uint8_t {
  // initiator to target
  nop_out = 0x00,
  scsi_command = 0x01,
  task_mgmt_request = 0x02,
  login_request = 0x03,
  text_request = 0x04,
  data_out = 0x05,
  logout_request = 0x06,
  snack_request = 0x10,
  // target to initiator
  nop_in = 0x20,
  scsi_response = 0x21,
  task_mgmt_response = 0x22,
  login_response = 0x23,
  text_response = 0x24,
  data_in = 0x25,
  logout_response = 0x26,
  r2t = 0x31,
  async_message = 0x32,
  reject = 0x3f,
};

// Reject reasons (§11.17.1).
enum class RejectReason : std::uint8_t {
  data_digest_error = 0x02,
  snack_reject = 0x03,
  protocol_error = 0x04,
  command_not_supported = 0x05,
  immediate_command_reject = 0x06,
  task_in_progress = 0x07,
  invalid_data_ack = 0x08,
  invalid_pdu_field = 0x09,
  long_operation_reject = 0x0a,
  waiting_for_logout = 0x0c,
};

// Task management functions (§11.5.1) and responses (§11.6.1).
enum class TmfFunction : std::uint8_t {
  abort_task = 1,
  abort_task_set = 2,
  clear_aca = 3,
  clear_task_set = 4,
  logical_unit_reset = 5,
  target_warm_reset = 6,
  target_cold_reset = 7,
  task_reassign = 8,
};
enum class TmfResponse : std::uint8_t {
  complete = 0,
  task_does_not_exist = 1,
  lun_does_not_exist = 2,
  task_still_allegiant = 3,
  reassignment_not_supported = 4,
  not_supported = 5,
  authorization_failed = 6,
  rejected = 255,
};

// Login status class and detail (§11.13.5), as one 16-bit value.
enum class LoginStatus : std::uint16_t {
  success = 0x0000,
  target_moved_temporarily = 0x0101,
  initiator_error = 0x0200,
  authentication_failed = 0x0201,
  authorization_failure = 0x0202,
  target_not_found = 0x0203,
  target_removed = 0x0204,
  unsupported_version = 0x0205,
  too_many_connections = 0x0206,
  missing_parameter = 0x0207,
  cant_include_in_session = 0x0208,
  session_type_not_supported = 0x0209,
  session_does_not_exist = 0x020a,
  invalid_during_login = 0x020b,
  target_error = 0x0300,
  service_unavailable = 0x0301,
  out_of_resources = 0x0302,
};

// Login stages (CSG/NSG).
enum class LoginStage : std::uint8_t {
  security = 0,
  operational = 1,
  full_feature = 3,
};

// Serial number arithmetic (RFC 1982, 32 bits) for CmdSN, StatSN, DataSN.
inline bool sn_lt(std::uint32_t a, std::uint32_t b) {
  return a != b && static_cast<std::int32_t>(a - b) < 0;
}
inline bool sn_le(std::uint32_t a, std::uint32_t b) {
  return a == b || sn_lt(a, b);
}

// Pads a data segment length to the 4-byte boundary it occupies on the wire.
inline constexpr std::uint32_t padded(std::uint32_t len) {
  return (len + 3) & ~3u;
}

// A basic header segment with named field access. The names follow RFC 7143;
// a field that means different things per opcode has one accessor per meaning.
class Bhs {
 public:
  std::array<std::uint8_t, kBhsSize> bytes{};

  Bhs() = default;
  explicit Bhs(const std::uint8_t* p) { std::memcpy(bytes.data(), p, kBhsSize); }
  static Bhs make(Opcode op, std::uint8_t flags = 0x80) {
    Bhs b;
    b.bytes[0] = static_cast<std::uint8_t>(op);
    b.bytes[1] = flags;
    return b;
  }

  Opcode opcode() const { return static_cast<Opcode>(bytes[0] & 0x3f); }
  bool immediate() const { return bytes[0] & 0x40; }
  void set_immediate(bool v) { bytes[0] = (bytes[0] & 0xbf) | (v ? 0x40 : 0); }
  std::uint8_t flags() const { return bytes[1]; }
  void set_flags(std::uint8_t f) { bytes[1] = f; }
  bool final_bit() const { return bytes[1] & 0x80; }
  std::uint32_t total_ahs_length() const { return bytes[4] * 4u; }  // in bytes
  std::uint32_t data_segment_length() const { return get_be24(&bytes[5]); }
  void set_data_segment_length(std::uint32_t n) { put_be24(&bytes[5], n); }
  std::uint64_t lun_field() const { return get_be64(&bytes[8]); }
  void set_lun_field(std::uint64_t v) { put_be64(&bytes[8], v); }
  std::uint32_t itt() const { return get_be32(&bytes[16]); }
  void set_itt(std::uint32_t v) { put_be32(&bytes[16], v); }

  std::uint32_t u32(std::size_t off) const { return get_be32(&bytes[off]); }
  void set_u32(std::size_t off, std::uint32_t v) { put_be32(&bytes[off], v); }
  std::uint16_t u16(std::size_t off) const { return get_be16(&bytes[off]); }
  void set_u16(std::size_t off, std::uint16_t v) { put_be16(&bytes[off], v); }

  // Fields at 20..47 by their names (meaning depends on the opcode).
  std::uint32_t ttt() const { return u32(20); }  // target transfer tag
  void set_ttt(std::uint32_t v) { set_u32(20, v); }
  std::uint32_t edtl() const { return u32(20); }          // SCSI Command
  std::uint32_t ref_task_tag() const { return u32(20); }  // TMF request
  std::uint32_t cmd_sn() const { return u32(24); }        // initiator PDUs
  std::uint32_t exp_stat_sn() const { return u32(28); }
  void set_stat_sn(std::uint32_t v) { set_u32(24, v); }  // target PDUs
  std::uint32_t stat_sn() const { return u32(24); }
  void set_exp_cmd_sn(std::uint32_t v) { set_u32(28, v); }
  std::uint32_t exp_cmd_sn() const { return u32(28); }
  void set_max_cmd_sn(std::uint32_t v) { set_u32(32, v); }
  std::uint32_t max_cmd_sn() const { return u32(32); }
  std::uint32_t data_sn() const { return u32(36); }  // Data-In/Out; R2TSN in R2T
  void set_data_sn(std::uint32_t v) { set_u32(36, v); }
  std::uint32_t buffer_offset() const { return u32(40); }
  void set_buffer_offset(std::uint32_t v) { set_u32(40, v); }
  void set_residual(std::uint32_t v) { set_u32(44, v); }  // SCSI Response, Data-In
  std::uint32_t residual() const { return u32(44); }
  void set_desired_length(std::uint32_t v) { set_u32(44, v); }  // R2T
  std::uint32_t desired_length() const { return u32(44); }
  const std::uint8_t* cdb() const { return &bytes[32]; }  // SCSI Command

  // Login request/response.
  bool login_transit() const { return bytes[1] & 0x80; }
  bool login_continue() const { return bytes[1] & 0x40; }
  LoginStage login_csg() const { return static_cast<LoginStage>((bytes[1] >> 2) & 3); }
  LoginStage login_nsg() const { return static_cast<LoginStage>(bytes[1] & 3); }
  std::uint8_t version_max() const { return bytes[2]; }
  std::uint8_t version_min() const { return bytes[3]; }
  std::uint64_t isid() const {
    return std::uint64_t{get_be16(&bytes[8])} << 32 | get_be32(&bytes[10]);
  }
  void set_isid(std::uint64_t v) {
    put_be16(&bytes[8], static_cast<std::uint16_t>(v >> 32));
    put_be32(&bytes[10], static_cast<std::uint32_t>(v));
  }
  std::uint16_t tsih() const { return u16(14); }
  void set_tsih(std::uint16_t v) { set_u16(14, v); }
  std::uint16_t cid() const { return u16(20); }
  void set_login_status(LoginStatus s) { set_u16(36, static_cast<std::uint16_t>(s)); }
  LoginStatus login_status() const { return static_cast<LoginStatus>(u16(36)); }
};

}  // namespace ringtgt::iscsi
