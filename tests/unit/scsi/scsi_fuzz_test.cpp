// Hostile CDBs: every opcode with random fields must complete exactly once,
// with a well-formed outcome, and never touch memory outside the buffer.
#include <gtest/gtest.h>

#include <memory>
#include <random>
#include <vector>

#include "ringtgt/scsi/logical_unit.hpp"
#include "ringtgt/storage/memory_backend.hpp"

namespace ringtgt::scsi {
namespace {

struct CountingOwner : TaskOwner {
  int completions = 0;
  void task_complete(Task&) override { ++completions; }
};

std::shared_ptr<LogicalUnit> make_lu(std::uint64_t lun, std::uint32_t bs, std::uint64_t bytes,
                                     bool read_only, storage::WriteAckPolicy policy) {
  LunParams params;
  params.block_size = bs;
  params.read_only = read_only;
  params.serial = std::string(300, 'x');  // longer than any field holds
  params.vendor = std::string("bad\x01\xffvendor-too-long");
  params.naa = ~0ull;
  auto backend = std::make_unique<storage::MemoryBackend>(bytes, policy);
  if (lun == 2) backend->inject_error(4096, 4096, 5);
  return std::make_shared<LogicalUnit>(lun, params, std::move(backend));
}

TEST(Fuzz, RandomCdbsForEveryOpcode) {
  LunMap map;
  map.add(make_lu(0, 512, 64 * 1024, false, storage::WriteAckPolicy::writethrough));
  map.add(make_lu(1, 4096, 256 * 1024, true, storage::WriteAckPolicy::writeback));
  map.add(make_lu(2, 512, 16 * 1024, false, storage::WriteAckPolicy::writeback));
  map.add(make_lu(3, 4096, 100, false, storage::WriteAckPolicy::writethrough));  // 0 blocks
  const std::uint64_t luns[] = {0, 1, 2, 3, 4, 300};
  const std::uint32_t buffer_lens[] = {0, 1, 3, 8, 18, 36, 255, 512, 1000, 4096, 70000};

  std::mt19937_64 rng(12345);
  CountingOwner owner;
  Nexus nexus{"iqn.initiator", "iqn.target", 1, {}};
  for (int opcode = 0; opcode < 256; ++opcode) {
    for (int i = 0; i < 300; ++i) {
      Task t;
      for (auto& b : t.cdb) b = static_cast<std::uint8_t>(rng());
      t.cdb[0] = static_cast<std::uint8_t>(opcode);
      // Small LBAs and lengths reach further into the commands than random ones.
      if (i % 2 == 0) {
        for (int k = 2; k < 16; ++k) {
          if (rng() % 4 != 0) t.cdb[k] = 0;
        }
        if (rng() % 2) t.cdb[1] &= 0x1f;
      }
      const std::uint32_t len = buffer_lens[rng() % std::size(buffer_lens)];
      std::vector<std::uint8_t> buffer(len, 0xa5);
      t.buffer = len == 0 && rng() % 2 ? nullptr : buffer.data();
      t.buffer_len = len;
      t.direction = static_cast<DataDirection>(rng() % 3);
      t.lun = luns[rng() % std::size(luns)];
      t.nexus = &nexus;
      t.owner = &owner;
      // Leftovers from a previous command must not matter.
      t.status = Status::busy;
      t.sense_len = 99;
      t.data_in_length = 12345678;

      owner.completions = 0;
      map.execute(t);
      ASSERT_EQ(owner.completions, 1) << "opcode " << opcode << " iteration " << i;
      ASSERT_TRUE(t.status == Status::good || t.status == Status::check_condition)
          << "opcode " << opcode;
      ASSERT_LE(t.data_in_length, len) << "opcode " << opcode;
      if (t.status == Status::good) {
        ASSERT_EQ(t.sense_len, 0);
      } else {
        ASSERT_EQ(t.sense_len, 18);
        ASSERT_EQ(t.data_in_length, 0u);
      }
    }
  }
}

}  // namespace
}  // namespace ringtgt::scsi
