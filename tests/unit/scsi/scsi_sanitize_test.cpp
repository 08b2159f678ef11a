// SANITIZE: allow_sanitize, the service actions and their checks, the
// commands a sanitize in progress turns away (with its progress), failure
// mode, and the state file a restart resumes from.
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <memory>
#include <string>

#include "ringtgt/scsi/cdb.hpp"
#include "ringtgt/scsi/logical_unit.hpp"
#include "ringtgt/storage/memory_backend.hpp"
#include "scsi_test_support.hpp"

namespace ringtgt::scsi {
namespace {

using namespace ringtgt::scsi::testing;
namespace fs = std::filesystem;

constexpr std::uint64_t kBlocks = 4096;  // 2 MiB: an OVERWRITE pass is two chunks

struct Lu {
  explicit Lu(bool allow = true, bool thin = false, std::string state_path = {},
              bool read_only = false) {
    auto b = std::make_unique<QueuedBackend>(512 * kBlocks);
    backend = b.get();
    backend->queued = false;
    LunParams params;
    params.allow_sanitize = allow;
    params.thin_provisioned = thin;
    params.read_only = read_only;
    params.sanitize_state_path = std::move(state_path);
    params.device_name = "test,lun,0";
    lu = std::make_unique<LogicalUnit>(0, params, std::move(b));
  }
  Task& run(Bytes cdb, const Bytes* out = nullptr, std::uint32_t room = 512) {
    return run_task([this](Task& x) { lu->execute(x); }, task, owner, buffer, cdb, room, out);
  }
  QueuedBackend* backend;
  std::unique_ptr<LogicalUnit> lu;
  CountingOwner owner;
  Task task;
  Bytes buffer;
};

Bytes sanitize_cdb(std::uint8_t action, std::uint16_t plen = 0, bool immed = false,
                   bool ause = false) {
  Bytes c(10, 0);
  c[0] = 0x48;
  c[1] = static_cast<std::uint8_t>((immed ? 0x80 : 0) | (ause ? 0x20 : 0) | action);
  put_be16(&c[7], plen);
  return c;
}

// OVERWRITE's parameter list: passes (and INVERT), then the pattern.
Bytes overwrite_params(std::uint8_t passes, const Bytes& pattern, bool invert = false) {
  Bytes p(4 + pattern.size(), 0);
  p[0] = static_cast<std::uint8_t>((invert ? 0x80 : 0) | passes);
  put_be16(&p[2], static_cast<std::uint16_t>(pattern.size()));
  std::copy(pattern.begin(), pattern.end(), p.begin() + 4);
  return p;
}

const Bytes kTur(6, 0);

TEST(Sanitize, RefusedAndUnreportedUnlessAllowed) {
  Lu l(false);
  Bytes none;
  expect_sense(l.run(sanitize_cdb(0x02), &none), 0x05, 0x20, 0x00);
  // REPORT SUPPORTED OPERATION CODES, one command: SUPPORT 001b (not supported).
  Bytes rsoc{0xa3, 0x0c, 0x02, 0x48, 0, 0x02, 0, 0, 0x01, 0, 0, 0};
  ASSERT_EQ(l.run(rsoc).status, Status::good);
  EXPECT_EQ(l.buffer[1] & 0x07, 0x01);
  Lu a;
  ASSERT_EQ(a.run(rsoc).status, Status::good);
  EXPECT_EQ(a.buffer[1] & 0x07, 0x03);
  rsoc[5] = 0x03;  // CRYPTOGRAPHIC ERASE is not offered
  ASSERT_EQ(a.run(rsoc).status, Status::good);
  EXPECT_EQ(a.buffer[1] & 0x07, 0x01);
}

TEST(Sanitize, OverwriteRepeatsThePatternOverEveryBlock) {
  Lu l;
  Bytes p = overwrite_params(1, {1, 2, 3});
  ASSERT_EQ(l.run(sanitize_cdb(0x01, static_cast<std::uint16_t>(p.size())), &p).status,
            Status::good);
  const std::uint8_t* d = l.backend->mem.data();
  for (std::uint64_t block : {std::uint64_t{0}, kBlocks / 2, kBlocks - 1}) {
    EXPECT_EQ(d[block * 512], 1);
    EXPECT_EQ(d[block * 512 + 1], 2);
    EXPECT_EQ(d[block * 512 + 2], 3);
    EXPECT_EQ(d[block * 512 + 3], 1);
    EXPECT_EQ(d[block * 512 + 511], 2);  // 511 % 3 == 1: the pattern restarts per block
  }
  // Two passes with INVERT: the second writes the inverted pattern.
  Bytes q = overwrite_params(2, {0x0f}, true);
  ASSERT_EQ(l.run(sanitize_cdb(0x01, static_cast<std::uint16_t>(q.size())), &q).status,
            Status::good);
  EXPECT_EQ(d[0], 0xf0);
  EXPECT_EQ(d[kBlocks * 512 - 1], 0xf0);
  EXPECT_GE(l.backend->mem.flush_count(), 2u);
}

TEST(Sanitize, BlockEraseDeallocatesAThinLuAndZeroesAFullOne) {
  for (bool thin : {true, false}) {
    Lu l(true, thin);
    Bytes ones(512, 0xaa);
    ASSERT_EQ(l.run(cdb10(0x2a, 0, 7, 1), &ones).status, Status::good);
    Bytes none;
    ASSERT_EQ(l.run(sanitize_cdb(0x02), &none).status, Status::good);
    EXPECT_EQ(l.backend->mem.data()[7 * 512], 0) << thin;
    EXPECT_EQ(l.backend->mem.unmap_count(), thin ? 1u : 0u);
    EXPECT_EQ(l.backend->mem.write_zeroes_count(), thin ? 0u : 1u);
  }
}

TEST(Sanitize, FieldChecks) {
  Lu l;
  Bytes p(512 + 8, 0);
  p[0] = 1;
  put_be16(&p[2], 512);
  for (std::uint16_t plen : {0, 1, 4, 512 + 5}) {
    expect_sense(l.run(sanitize_cdb(0x01, plen), &p), 0x05, 0x24, 0x00);
  }
  Bytes bad = overwrite_params(0, {1});  // OVERWRITE COUNT 0
  expect_sense(l.run(sanitize_cdb(0x01, 5), &bad), 0x05, 0x26, 0x00);
  Bytes empty = overwrite_params(1, {});
  empty.push_back(0);
  expect_sense(l.run(sanitize_cdb(0x01, 5), &empty), 0x05, 0x26, 0x00);
  Bytes test = overwrite_params(1, {1});
  test[0] |= 0x20;  // TEST
  expect_sense(l.run(sanitize_cdb(0x01, 5), &test), 0x05, 0x26, 0x00);
  Bytes eight(8, 0);
  expect_sense(l.run(sanitize_cdb(0x02, 8), &eight), 0x05, 0x24, 0x00);  // BLOCK ERASE
  expect_sense(l.run(sanitize_cdb(0x1f, 8), &eight), 0x05, 0x24, 0x00);  // EXIT FAILURE MODE
  Bytes none;
  for (std::uint8_t sa : {0x00, 0x03, 0x04, 0x10, 0x1e}) {
    Task& t = l.run(sanitize_cdb(sa), &none);
    expect_sense(t, 0x05, 0x24, 0x00);
    EXPECT_EQ(t.sense[15], 0xc8 | 4) << int(sa);  // SKSV, C/D, BPV, bit 4 of
    EXPECT_EQ(get_be16(&t.sense[16]), 1);         // byte 1: SERVICE ACTION
  }
  Bytes reserved = sanitize_cdb(0x02);
  reserved[4] = 1;
  expect_sense(l.run(reserved, &none), 0x05, 0x24, 0x00);
  reserved = sanitize_cdb(0x02);
  reserved[1] |= 0x40;
  expect_sense(l.run(reserved, &none), 0x05, 0x24, 0x00);
  // Nothing was written by any of them.
  EXPECT_EQ(l.backend->mem.data()[0], 0);

  Lu ro(true, false, {}, true);
  expect_sense(ro.run(sanitize_cdb(0x02), &none), 0x07, 0x27, 0x00);
}

// While it runs: NOT READY, SANITIZE IN PROGRESS with progress, except
// INQUIRY, REPORT LUNS and REQUEST SENSE.
TEST(Sanitize, CommandsMeanwhileHearItIsInProgress) {
  Lu l;
  l.backend->queued = true;
  Bytes p = overwrite_params(1, {0x5a});
  Task& t = l.run(sanitize_cdb(0x01, 5, true), &p);  // IMMED: GOOD at once
  EXPECT_EQ(t.status, Status::good);
  EXPECT_TRUE(l.lu->sanitizing());

  Task& tur = l.run(kTur);
  expect_sense(tur, 0x02, 0x04, 0x1b);
  EXPECT_EQ(tur.sense[15], 0x80);  // SKSV: PROGRESS INDICATION
  EXPECT_EQ(get_be16(&tur.sense[16]), 0);
  Bytes one(512, 1);
  expect_sense(l.run(cdb10(0x2a, 0, 0, 1), &one), 0x02, 0x04, 0x1b);
  Bytes none;
  expect_sense(l.run(sanitize_cdb(0x02), &none), 0x02, 0x04, 0x1b);
  EXPECT_EQ(l.run({0x12, 0, 0, 0, 36, 0}).status, Status::good);  // INQUIRY

  ASSERT_TRUE(l.backend->step());  // the first of two chunks: half done
  Task& rs = l.run({0x03, 0, 0, 0, 18, 0});
  ASSERT_EQ(rs.status, Status::good);
  EXPECT_EQ(l.buffer[2], 0x02);
  EXPECT_EQ(l.buffer[12], 0x04);
  EXPECT_EQ(l.buffer[13], 0x1b);
  EXPECT_EQ(l.buffer[15], 0x80);
  EXPECT_EQ(get_be16(&l.buffer[16]), 0x8000);

  while (l.backend->step()) {
  }
  EXPECT_FALSE(l.lu->sanitizing());
  EXPECT_EQ(l.run(kTur).status, Status::good);
  EXPECT_EQ(l.backend->mem.data()[kBlocks * 512 - 1], 0x5a);
}

// IMMED 0: the SANITIZE itself completes when the sanitize does.
TEST(Sanitize, WithoutImmedTheCommandEndsWithTheSanitize) {
  Lu l;
  l.backend->queued = true;
  Bytes p = overwrite_params(1, {0x5a});
  Task t;
  Bytes cdb = sanitize_cdb(0x01, 5);
  std::copy(cdb.begin(), cdb.end(), t.cdb.begin());
  CountingOwner owner;
  t.owner = &owner;
  t.buffer = p.data();
  t.buffer_len = static_cast<std::uint32_t>(p.size());
  t.direction = DataDirection::to_device;
  l.lu->execute(t);
  EXPECT_EQ(owner.completions, 0);
  while (l.backend->step()) {
  }
  EXPECT_EQ(owner.completions, 1);
  EXPECT_EQ(t.status, Status::good);
}

class StateDir : public ::testing::Test {
 protected:
  void SetUp() override {
    dir = fs::temp_directory_path() / ("ringtgt-sanitize-" + std::to_string(::getpid()));
    fs::create_directories(dir);
    path = (dir / "sanitize.state").string();
  }
  void TearDown() override { fs::remove_all(dir); }
  fs::path dir;
  std::string path;
};

// A restart mid-sanitize (the LU gone with its operations unfinished): the
// next LU over the same state file runs it again on its first command.
TEST_F(StateDir, ARestartRunsTheSanitizeAgain) {
  {
    Lu l(true, false, path);
    l.backend->queued = true;
    Bytes p = overwrite_params(1, {0x77});
    ASSERT_EQ(l.run(sanitize_cdb(0x01, 5, true), &p).status, Status::good);
    ASSERT_TRUE(fs::exists(path));
    l.backend->queue.clear();  // the crash: nothing more completes
  }
  Lu again(true, false, path);
  EXPECT_TRUE(again.lu->sanitizing());
  again.backend->queued = true;
  expect_sense(again.run(kTur), 0x02, 0x04, 0x1b);  // starts it on this thread
  while (again.backend->step()) {
  }
  EXPECT_FALSE(again.lu->sanitizing());
  EXPECT_FALSE(fs::exists(path));
  EXPECT_EQ(again.backend->mem.data()[0], 0x77);
  EXPECT_EQ(again.backend->mem.data()[kBlocks * 512 - 1], 0x77);
  EXPECT_EQ(again.run(kTur).status, Status::good);
}

// A failed sanitize: failure mode (MEDIUM ERROR, SANITIZE COMMAND FAILED) for
// every command but the few, across a restart; EXIT FAILURE MODE ends it only
// when the failed one had AUSE set; a successful sanitize always does.
TEST_F(StateDir, FailureModeLastsUntilExitedOrSanitized) {
  Bytes p = overwrite_params(1, {0x11});
  Bytes none;
  {
    Lu l(true, false, path);
    l.backend->mem.inject_error(512 * 100, 512, EIO);
    Task& t = l.run(sanitize_cdb(0x01, 5, false, false), &p);
    expect_sense(t, 0x03, 0x31, 0x03);
    expect_sense(l.run(kTur), 0x03, 0x31, 0x03);
    EXPECT_EQ(l.run({0x12, 0, 0, 0, 36, 0}).status, Status::good);
    ASSERT_EQ(l.run({0x03, 0, 0, 0, 18, 0}).status, Status::good);
    EXPECT_EQ(l.buffer[2], 0x03);
    EXPECT_EQ(l.buffer[12], 0x31);
    // AUSE was 0: EXIT FAILURE MODE is refused.
    expect_sense(l.run(sanitize_cdb(0x1f), &none), 0x05, 0x24, 0x00);
  }
  {
    Lu l(true, false, path);  // after a restart: still in failure mode
    expect_sense(l.run(kTur), 0x03, 0x31, 0x03);
    ASSERT_EQ(l.run(sanitize_cdb(0x02), &none).status, Status::good);  // BLOCK ERASE succeeds
    EXPECT_EQ(l.run(kTur).status, Status::good);
    EXPECT_FALSE(fs::exists(path));
  }
  {
    Lu l(true, false, path);
    l.backend->mem.inject_error(0, 512, EIO);
    expect_sense(l.run(sanitize_cdb(0x01, 5, false, true), &p), 0x03, 0x31, 0x03);  // AUSE
    ASSERT_EQ(l.run(sanitize_cdb(0x1f), &none).status, Status::good);
    EXPECT_EQ(l.run(kTur).status, Status::good);
    EXPECT_FALSE(fs::exists(path));
  }
}

}  // namespace
}  // namespace ringtgt::scsi
