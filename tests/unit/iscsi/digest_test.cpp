#include "ringtgt/iscsi/digest.hpp"

#include <gtest/gtest.h>

#include <array>
#include <cstring>
#include <vector>

namespace ringtgt::iscsi {
namespace {

std::array<std::uint8_t, 4> wire(std::uint32_t digest) {
  std::array<std::uint8_t, 4> b{};
  store_digest(b.data(), digest);
  return b;
}

TEST(Crc32c, CheckValue) {
  const char* s = "123456789";
  EXPECT_EQ(crc32c(s, 9), 0xE3069283u);
}

TEST(Crc32c, EmptyIsZero) {
  EXPECT_EQ(crc32c(nullptr, 0), 0u);
}

// RFC 3720 Appendix B.4 (CRC examples), bytes as sent on the wire.
TEST(Crc32c, Rfc3720Zeros) {
  std::array<std::uint8_t, 32> buf{};
  std::uint32_t d = crc32c(buf.data(), buf.size());
  EXPECT_EQ(d, 0x8A9136AAu);
  EXPECT_EQ(wire(d), (std::array<std::uint8_t, 4>{0xaa, 0x36, 0x91, 0x8a}));
}

TEST(Crc32c, Rfc3720Ones) {
  std::array<std::uint8_t, 32> buf;
  buf.fill(0xff);
  EXPECT_EQ(wire(crc32c(buf.data(), buf.size())),
            (std::array<std::uint8_t, 4>{0x43, 0xab, 0xa8, 0x62}));
}

TEST(Crc32c, Rfc3720Incrementing) {
  std::array<std::uint8_t, 32> buf;
  for (std::size_t i = 0; i < buf.size(); ++i) buf[i] = static_cast<std::uint8_t>(i);
  EXPECT_EQ(wire(crc32c(buf.data(), buf.size())),
            (std::array<std::uint8_t, 4>{0x4e, 0x79, 0xdd, 0x46}));
}

TEST(Crc32c, Rfc3720Decrementing) {
  std::array<std::uint8_t, 32> buf;
  for (std::size_t i = 0; i < buf.size(); ++i) buf[i] = static_cast<std::uint8_t>(31 - i);
  EXPECT_EQ(wire(crc32c(buf.data(), buf.size())),
            (std::array<std::uint8_t, 4>{0x5c, 0xdb, 0x3f, 0x11}));
}

// RFC 3720 B.4: header digest of a SCSI READ(10) command BHS.
TEST(Crc32c, Rfc3720ReadCommandHeader) {
  const std::uint8_t bhs[48] = {
      0x01, 0xc0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
      0x00, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00,
      0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x18, 0x28, 0x00, 0x00, 0x00,
      0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
  };
  EXPECT_EQ(wire(crc32c(bhs, sizeof bhs)), (std::array<std::uint8_t, 4>{0x56, 0x3a, 0x96, 0xd9}));
}

TEST(Crc32c, LoadDigestInvertsStore) {
  std::uint8_t b[4];
  store_digest(b, 0x12345678);
  EXPECT_EQ(b[0], 0x78);
  EXPECT_EQ(b[3], 0x12);
  EXPECT_EQ(load_digest(b), 0x12345678u);
}

TEST(Crc32c, SplitUpdatesEqualOnePass) {
  std::vector<std::uint8_t> buf(1000);
  for (std::size_t i = 0; i < buf.size(); ++i) buf[i] = static_cast<std::uint8_t>(i * 7 + 3);
  const std::uint32_t whole = crc32c(buf.data(), buf.size());
  for (std::size_t cut1 : {0u, 1u, 3u, 48u, 499u}) {
    for (std::size_t cut2 : {500u, 777u, 1000u}) {
      Crc32c c;
      c.update(buf.data(), cut1);
      c.update(buf.data() + cut1, cut2 - cut1);
      c.update(buf.data() + cut2, buf.size() - cut2);
      EXPECT_EQ(c.value(), whole) << cut1 << "," << cut2;
    }
  }
  Crc32c bytewise;
  for (auto b : buf) bytewise.update(&b, 1);
  EXPECT_EQ(bytewise.value(), whole);
  bytewise.reset();
  EXPECT_EQ(bytewise.value(), 0u);
}

TEST(Crc32c, DataDigestCoversPadding) {
  const std::uint8_t data[5] = {1, 2, 3, 4, 5};
  const std::uint8_t padded[8] = {1, 2, 3, 4, 5, 0, 0, 0};
  EXPECT_EQ(data_digest(data, 5), crc32c(padded, 8));
  EXPECT_EQ(data_digest(data, 4), crc32c(data, 4));
  Crc32c c;
  c.update(data, 5);
  c.update_zeros(3);
  EXPECT_EQ(c.value(), crc32c(padded, 8));
}

}  // namespace
}  // namespace ringtgt::iscsi
