#include "ringtgt/iscsi/pdu.hpp"

#include <gtest/gtest.h>

#include <array>

namespace ringtgt::iscsi {
namespace {

using Bytes = std::array<std::uint8_t, kBhsSize>;

TEST(Pdu, LoginResponseBytes) {
  // T=1, CSG=operational (1), NSG=full feature (3).
  Bhs b = Bhs::make(Opcode::login_response, 0x80 | 1 << 2 | 3);
  b.bytes[2] = 0x00;  // Version-max
  b.bytes[3] = 0x00;  // Version-active
  b.set_data_segment_length(0x000123);
  b.set_isid(0x400001370000);
  b.set_tsih(0x0001);
  b.set_itt(0x11223344);
  b.set_stat_sn(0x01020304);
  b.set_exp_cmd_sn(0x0a0b0c0d);
  b.set_max_cmd_sn(0x0a0b0c2d);
  b.set_login_status(LoginStatus::authentication_failed);
  const Bytes expected = {
      0x23, 0x87, 0x00, 0x00, 0x00, 0x00, 0x01, 0x23,  // opcode, flags, versions, DSL
      0x40, 0x00, 0x01, 0x37, 0x00, 0x00, 0x00, 0x01,  // ISID, TSIH
      0x11, 0x22, 0x33, 0x44, 0x00, 0x00, 0x00, 0x00,  // ITT, reserved
      0x01, 0x02, 0x03, 0x04, 0x0a, 0x0b, 0x0c, 0x0d,  // StatSN, ExpCmdSN
      0x0a, 0x0b, 0x0c, 0x2d, 0x02, 0x01, 0x00, 0x00,  // MaxCmdSN, status class/detail
      0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
  };
  EXPECT_EQ(b.bytes, expected);
  EXPECT_EQ(b.opcode(), Opcode::login_response);
  EXPECT_TRUE(b.login_transit());
  EXPECT_FALSE(b.login_continue());
  EXPECT_EQ(b.login_csg(), LoginStage::operational);
  EXPECT_EQ(b.login_nsg(), LoginStage::full_feature);
  EXPECT_EQ(b.isid(), 0x400001370000u);
  EXPECT_EQ(b.tsih(), 0x0001);
  EXPECT_EQ(b.login_status(), LoginStatus::authentication_failed);
  EXPECT_EQ(b.stat_sn(), 0x01020304u);
  EXPECT_EQ(b.exp_cmd_sn(), 0x0a0b0c0du);
  EXPECT_EQ(b.max_cmd_sn(), 0x0a0b0c2du);
}

TEST(Pdu, ScsiResponseBytes) {
  Bhs b = Bhs::make(Opcode::scsi_response, 0x80 | 0x02);  // F, U (residual underflow)
  b.bytes[2] = 0x00;                                      // Response: command completed
  b.bytes[3] = 0x02;                                      // Status: CHECK CONDITION
  b.set_data_segment_length(20);                          // 2-byte SenseLength + 18 sense
  b.set_itt(0xdeadbeef);
  b.set_stat_sn(7);
  b.set_exp_cmd_sn(8);
  b.set_max_cmd_sn(40);
  b.set_data_sn(3);  // ExpDataSN
  b.set_residual(512);
  const Bytes expected = {
      0x21, 0x82, 0x00, 0x02, 0x00, 0x00, 0x00, 0x14,  //
      0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // reserved
      0xde, 0xad, 0xbe, 0xef, 0x00, 0x00, 0x00, 0x00,  // ITT, SNACK tag
      0x00, 0x00, 0x00, 0x07, 0x00, 0x00, 0x00, 0x08,  // StatSN, ExpCmdSN
      0x00, 0x00, 0x00, 0x28, 0x00, 0x00, 0x00, 0x03,  // MaxCmdSN, ExpDataSN
      0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00,  // bidi residual, residual count
  };
  EXPECT_EQ(b.bytes, expected);
  EXPECT_EQ(b.residual(), 512u);
  EXPECT_EQ(b.data_sn(), 3u);
}

TEST(Pdu, R2tBytes) {
  Bhs b = Bhs::make(Opcode::r2t);
  b.set_lun_field(0x0001000000000000);
  b.set_itt(0x00000010);
  b.set_ttt(0x00000005);
  b.set_stat_sn(9);
  b.set_exp_cmd_sn(10);
  b.set_max_cmd_sn(42);
  b.set_data_sn(1);  // R2TSN
  b.set_buffer_offset(0x00010000);
  b.set_desired_length(0x00040000);
  const Bytes expected = {
      0x31, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  //
      0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // LUN 1
      0x00, 0x00, 0x00, 0x10, 0x00, 0x00, 0x00, 0x05,  // ITT, TTT
      0x00, 0x00, 0x00, 0x09, 0x00, 0x00, 0x00, 0x0a,  // StatSN, ExpCmdSN
      0x00, 0x00, 0x00, 0x2a, 0x00, 0x00, 0x00, 0x01,  // MaxCmdSN, R2TSN
      0x00, 0x01, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00,  // Buffer Offset, Desired Length
  };
  EXPECT_EQ(b.bytes, expected);
  EXPECT_EQ(b.ttt(), 5u);
  EXPECT_EQ(b.buffer_offset(), 0x10000u);
  EXPECT_EQ(b.desired_length(), 0x40000u);
}

TEST(Pdu, ParseScsiCommand) {
  const std::uint8_t raw[kBhsSize] = {
      0x41, 0xa1, 0x00, 0x00,  // immediate SCSI Command; F, W, ATTR=simple
      0x02, 0x00, 0x02, 0x00,  // TotalAHSLength 2 words, DataSegmentLength 512
      0x00, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // LUN 3
      0x12, 0x34, 0x56, 0x78,                          // ITT
      0x00, 0x00, 0x10, 0x00,                          // EDTL 4096
      0x00, 0x00, 0xab, 0xcd,                          // CmdSN
      0x80, 0x00, 0x00, 0x42,                          // ExpStatSN
      0x2a, 0x00, 0x00, 0x00, 0x10, 0x00, 0x00, 0x00,  // CDB: WRITE(10) LBA 0x1000
      0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  //   8 blocks
  };
  Bhs b(raw);
  EXPECT_EQ(b.opcode(), Opcode::scsi_command);
  EXPECT_TRUE(b.immediate());
  EXPECT_EQ(b.flags(), 0xa1);
  EXPECT_TRUE(b.final_bit());
  EXPECT_EQ(b.total_ahs_length(), 8u);
  EXPECT_EQ(b.data_segment_length(), 512u);
  EXPECT_EQ(b.lun_field(), 0x0003000000000000u);
  EXPECT_EQ(b.itt(), 0x12345678u);
  EXPECT_EQ(b.edtl(), 4096u);
  EXPECT_EQ(b.cmd_sn(), 0xabcdu);
  EXPECT_EQ(b.exp_stat_sn(), 0x80000042u);
  const std::uint8_t cdb[16] = {0x2a, 0, 0, 0, 0x10, 0, 0, 0, 0x08};
  EXPECT_EQ(std::memcmp(b.cdb(), cdb, 16), 0);

  b.set_immediate(false);
  EXPECT_FALSE(b.immediate());
  EXPECT_EQ(b.bytes[0], 0x01);
  EXPECT_EQ(b.opcode(), Opcode::scsi_command);
  b.set_immediate(true);
  EXPECT_EQ(b.bytes[0], 0x41);
}

TEST(Pdu, OpcodeIgnoresReservedBits) {
  std::uint8_t raw[kBhsSize] = {0xc6};  // reserved bit 7, immediate, logout request
  Bhs b(raw);
  EXPECT_EQ(b.opcode(), Opcode::logout_request);
  EXPECT_TRUE(b.immediate());
}

TEST(Pdu, ParseLoginRequest) {
  const std::uint8_t raw[kBhsSize] = {
      0x43, 0xc1, 0x00, 0x00,              // immediate Login; T, C, CSG=0, NSG=1; versions 0
      0x00, 0x00, 0x01, 0x00,              // DataSegmentLength 256
      0x00, 0x02, 0x3d, 0x00, 0x00, 0x01,  // ISID
      0x00, 0x00,                          // TSIH 0
      0x00, 0x00, 0x00, 0x01,              // ITT
      0x00, 0x07, 0x00, 0x00,              // CID 7
      0x00, 0x00, 0x00, 0x05,              // CmdSN
      0x00, 0x00, 0x00, 0x00,              // ExpStatSN
  };
  Bhs b(raw);
  EXPECT_EQ(b.opcode(), Opcode::login_request);
  EXPECT_TRUE(b.immediate());
  EXPECT_TRUE(b.login_transit());
  EXPECT_TRUE(b.login_continue());
  EXPECT_EQ(b.login_csg(), LoginStage::security);
  EXPECT_EQ(b.login_nsg(), LoginStage::operational);
  EXPECT_EQ(b.version_max(), 0);
  EXPECT_EQ(b.version_min(), 0);
  EXPECT_EQ(b.data_segment_length(), 256u);
  EXPECT_EQ(b.isid(), 0x00023d000001u);
  EXPECT_EQ(b.tsih(), 0);
  EXPECT_EQ(b.itt(), 1u);
  EXPECT_EQ(b.cid(), 7);
  EXPECT_EQ(b.cmd_sn(), 5u);
  EXPECT_EQ(b.exp_stat_sn(), 0u);
}

TEST(Pdu, ByteOrderHelpers) {
  std::uint8_t p[8] = {};
  put_be24(p, 0xabcdef);
  EXPECT_EQ(p[0], 0xab);
  EXPECT_EQ(p[2], 0xef);
  EXPECT_EQ(get_be24(p), 0xabcdefu);
  put_be64(p, 0x0102030405060708);
  EXPECT_EQ(p[0], 0x01);
  EXPECT_EQ(p[7], 0x08);
  EXPECT_EQ(get_be64(p), 0x0102030405060708u);
  Bhs b;
  b.set_data_segment_length(0xffffff);
  EXPECT_EQ(b.data_segment_length(), 0xffffffu);
  EXPECT_EQ(b.bytes[4], 0);  // TotalAHSLength untouched
}

TEST(Pdu, Padding) {
  EXPECT_EQ(padded(0), 0u);
  EXPECT_EQ(padded(1), 4u);
  EXPECT_EQ(padded(4), 4u);
  EXPECT_EQ(padded(5), 8u);
  EXPECT_EQ(padded(0xfffffd), 0x1000000u);
}

TEST(Pdu, SerialNumberArithmetic) {
  EXPECT_TRUE(sn_lt(1, 2));
  EXPECT_FALSE(sn_lt(2, 1));
  EXPECT_FALSE(sn_lt(5, 5));
  EXPECT_TRUE(sn_le(5, 5));
  EXPECT_TRUE(sn_lt(0xffffffff, 0));  // wraps
  EXPECT_FALSE(sn_lt(0, 0xffffffff));
  EXPECT_TRUE(sn_le(0xfffffff0, 0x10));
  EXPECT_FALSE(sn_le(0x10, 0xfffffff0));
  EXPECT_TRUE(sn_lt(0, 0x7fffffff));  // the farthest "ahead" still ahead
  EXPECT_FALSE(sn_lt(0x7fffffff, 0));
  EXPECT_TRUE(sn_lt(0x80000001, 0));  // more than 2^31 ahead is behind
  EXPECT_FALSE(sn_lt(0, 0x80000001));
}

}  // namespace
}  // namespace ringtgt::iscsi
