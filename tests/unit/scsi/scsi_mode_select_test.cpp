// MODE SELECT(6)/(10): the control page's D_SENSE and SWP are changeable and
// take effect (descriptor-format sense, software write protect); everything
// else is refused with the sense SPC-4 gives; MODE SENSE reports changeable,
// default and saved values accordingly.
#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <vector>

#include "ringtgt/scsi/cdb.hpp"
#include "ringtgt/scsi/logical_unit.hpp"
#include "ringtgt/storage/memory_backend.hpp"
#include "scsi_test_support.hpp"

namespace ringtgt::scsi {
namespace {

using namespace ringtgt::scsi::testing;

class Lu {
 public:
  explicit Lu(bool read_only = false) {
    auto backend = std::make_unique<storage::MemoryBackend>(512 * 1024);
    mem = backend.get();
    LunParams params;
    params.read_only = read_only;
    lu = std::make_unique<LogicalUnit>(0, params, std::move(backend));
  }
  Task& run(Bytes cdb, std::uint32_t room = 4096, const Bytes* out = nullptr) {
    return run_task([this](Task& t) { lu->execute(t); }, task, owner, buffer, cdb, room, out);
  }
  // MODE SENSE(6), DBD, one page: the page bytes (header stripped).
  Bytes sense_page(std::uint8_t page, std::uint8_t pc) {
    Bytes c{0x1a, 0x08, static_cast<std::uint8_t>(pc << 6 | page), 0, 255, 0};
    Task& t = run(c, 255);
    EXPECT_EQ(t.status, Status::good);
    return Bytes(buffer.begin() + 4, buffer.begin() + t.data_in_length);
  }
  Task& select6(const Bytes& pages, std::uint8_t flags = 0x10) {
    Bytes params(4, 0);
    params.insert(params.end(), pages.begin(), pages.end());
    Bytes c{0x15, flags, 0, 0, static_cast<std::uint8_t>(params.size()), 0};
    return run(c, 0, &params);
  }
  Task& select10(const Bytes& body, std::uint8_t flags = 0x10) {
    Bytes params(8, 0);
    params.insert(params.end(), body.begin(), body.end());
    Bytes c(10, 0);
    c[0] = 0x55;
    c[1] = flags;
    put_be16(&c[7], static_cast<std::uint16_t>(params.size()));
    return run(c, 0, &params);
  }

  storage::MemoryBackend* mem;
  std::unique_ptr<LogicalUnit> lu;
  CountingOwner owner;
  Task task;
  Bytes buffer;
};

TEST(ModeSelect, ChangeableAndDefaultControlPage) {
  Lu l;
  const Bytes ch = l.sense_page(0x0a, 1);
  ASSERT_EQ(ch.size(), 12u);
  EXPECT_EQ(ch[2], 0x04);  // D_SENSE
  EXPECT_EQ(ch[4], 0x08);  // SWP
  EXPECT_EQ(ch[3], 0x00);
  const Bytes caching = l.sense_page(0x08, 1);
  for (std::size_t i = 2; i < caching.size(); ++i) EXPECT_EQ(caching[i], 0) << i;  // WCE fixed
  const Bytes def = l.sense_page(0x0a, 2);
  EXPECT_EQ(def[2] & 0x04, 0);
  EXPECT_EQ(def[4] & 0x08, 0);
  EXPECT_EQ(def[3], 0x10);
}

TEST(ModeSelect, SwpWriteProtectsUntilCleared) {
  Lu l;
  Bytes page = l.sense_page(0x0a, 0);
  page[4] |= 0x08;
  ASSERT_EQ(l.select6(page).status, Status::good);
  EXPECT_EQ(l.sense_page(0x0a, 0)[4] & 0x08, 0x08);
  EXPECT_EQ(l.sense_page(0x0a, 3)[4] & 0x08, 0x00);  // saved: the default, nothing saved
  // MODE SENSE header: WP set.
  Task& ms = l.run(Bytes{0x1a, 0x08, 0x0a, 0, 255, 0}, 255);
  ASSERT_EQ(ms.status, Status::good);
  EXPECT_EQ(l.buffer[2] & 0x80, 0x80);

  Bytes block(512, 0x42);
  expect_sense(l.run(cdb10(0x2a, 0, 0, 1), 0, &block), 0x07, 0x27, 0x02);
  expect_sense(l.run(cdb10(0x41, 0, 0, 1), 0, &block), 0x07, 0x27, 0x02);
  expect_sense(l.run(cdb16(0x8b, 0, 0, 1), 0, &block), 0x07, 0x27, 0x02);  // ORWRITE(16)
  EXPECT_EQ(l.mem->data()[0], 0);
  EXPECT_EQ(l.run(cdb10(0x28, 0, 0, 1), 512).status, Status::good);  // reads still work

  page[4] &= ~0x08;
  ASSERT_EQ(l.select6(page).status, Status::good);
  EXPECT_EQ(l.run(cdb10(0x2a, 0, 0, 1), 0, &block).status, Status::good);
  EXPECT_EQ(l.mem->data()[0], 0x42);
}

TEST(ModeSelect, DSenseSwitchesToDescriptorFormat) {
  Lu l;
  Bytes page = l.sense_page(0x0a, 0);
  page[2] |= 0x04;
  ASSERT_EQ(l.select10(page).status, Status::good);
  EXPECT_EQ(l.sense_page(0x0a, 0)[2] & 0x04, 0x04);

  Task& t = l.run(cdb16(0x88, 0, ~0ull, 1), 512);  // READ(16) past the end
  ASSERT_EQ(t.status, Status::check_condition);
  EXPECT_EQ(t.sense[0], 0x72);
  EXPECT_EQ(t.sense[1], 0x05);
  EXPECT_EQ(t.sense[2], 0x21);
  EXPECT_EQ(t.sense[3], 0x00);
  EXPECT_EQ(t.sense_len, 8);

  // The field pointer goes in a sense key specific descriptor.
  Bytes bad_sp{0x1a, 0, 0x0a, 0, 255, 0};
  Task& f = l.run(Bytes{0x15, 0x11, 0, 0, 12, 0}, 0, &bad_sp);  // SP=1
  ASSERT_EQ(f.status, Status::check_condition);
  EXPECT_EQ(f.sense[0], 0x72);
  EXPECT_EQ(f.sense[2], 0x24);
  ASSERT_EQ(f.sense_len, 16);
  EXPECT_EQ(f.sense[7], 8);
  EXPECT_EQ(f.sense[8], 0x02);
  EXPECT_EQ(f.sense[12], 0xc8);  // SKSV, C/D, BPV, bit 0
  EXPECT_EQ(get_be16(&f.sense[13]), 1);

  // With INFORMATION: an information descriptor with all 64 bits.
  l.mem->inject_error(0, 512, 5);
  Task& m = l.run(cdb10(0x28, 0, 0, 1), 512);
  ASSERT_EQ(m.sense_len, 20);
  EXPECT_EQ(m.sense[1], 0x03);
  EXPECT_EQ(m.sense[8], 0x00);
  EXPECT_EQ(m.sense[10], 0x80);

  page[2] &= ~0x04;
  ASSERT_EQ(l.select6(page).status, Status::good);
  EXPECT_EQ(l.run(cdb16(0x88, 0, ~0ull, 1), 512).sense[0], 0x70);
}

TEST(ModeSelect, Refusals) {
  Lu l;
  Bytes control = l.sense_page(0x0a, 0);
  // SP=1: nothing can be saved.
  Task& sp = l.select6(control, 0x11);
  expect_sense(sp, 0x05, 0x24, 0x00);
  EXPECT_EQ(get_be16(&sp.sense[16]), 1);
  // PF=0 with pages.
  expect_sense(l.select6(control, 0x00), 0x05, 0x24, 0x00);
  // A bit that is not changeable (QAM).
  Bytes qam = control;
  qam[3] = 0x00;
  expect_sense(l.select6(qam), 0x05, 0x26, 0x00);
  // WCE in the caching page is not changeable.
  Bytes caching = l.sense_page(0x08, 0);
  caching[2] |= 0x04;
  expect_sense(l.select6(caching), 0x05, 0x26, 0x00);
  // An unknown page, a wrong page length, a page cut short.
  expect_sense(l.select6(Bytes{0x19, 0x02, 0, 0}), 0x05, 0x26, 0x00);
  Bytes wrong_len = control;
  wrong_len[1] = 0x08;
  wrong_len.resize(10);
  expect_sense(l.select6(wrong_len), 0x05, 0x26, 0x00);
  Bytes cut(control.begin(), control.begin() + 6);
  expect_sense(l.select6(cut), 0x05, 0x1a, 0x00);
  // A block descriptor with another block size.
  Bytes bd(8, 0);
  put_be32(&bd[4], 4096);
  Bytes params{0, 0, 0, 8};
  params.insert(params.end(), bd.begin(), bd.end());
  expect_sense(
      l.run(Bytes{0x15, 0x10, 0, 0, static_cast<std::uint8_t>(params.size()), 0}, 0, &params), 0x05,
      0x26, 0x00);
  // A valid change in a list with a bad page changes nothing.
  Bytes both = control;
  both[4] |= 0x08;
  both.insert(both.end(), {0x19, 0x02, 0, 0});
  expect_sense(l.select6(both), 0x05, 0x26, 0x00);
  EXPECT_FALSE(l.lu->software_write_protect());
  // Zero-length parameter list: nothing to do.
  EXPECT_EQ(l.run(Bytes{0x15, 0x10, 0, 0, 0, 0}, 0).status, Status::good);
  // Sent back unchanged, with a matching block descriptor: fine.
  Bytes same{0, 0, 0, 8};
  Bytes same_bd(8, 0);
  put_be32(&same_bd[0], 1024);
  put_be32(&same_bd[4], 512);
  same.insert(same.end(), same_bd.begin(), same_bd.end());
  same.insert(same.end(), control.begin(), control.end());
  EXPECT_EQ(
      l.run(Bytes{0x15, 0x10, 0, 0, static_cast<std::uint8_t>(same.size()), 0}, 0, &same).status,
      Status::good);
}

TEST(ModeSelect, ReadOnlyLunKeepsItsOwnSense) {
  Lu l(true);
  Bytes block(512, 1);
  expect_sense(l.run(cdb10(0x2a, 0, 0, 1), 0, &block), 0x07, 0x27, 0x00);
}

}  // namespace
}  // namespace ringtgt::scsi
