// ringtgt-bench's verify table (--save-state / --load-state): for each block
// of the span, the generation of its last acknowledged write and the highest
// unacknowledged one since. ringtgt-durability-check reads it too, to hold a
// rebuilt image against what the initiator was told.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace ringtgt::bench {

// An UNMAP leaves zeros: the generation of an acknowledged UNMAP carries
// kUnmapFlag in acked, and an unacknowledged one since sets it in uncertain.
// Generations themselves stay below 2^31.
inline constexpr std::uint32_t kUnmapFlag = 0x80000000u;
inline constexpr std::uint32_t kGenMask = 0x7fffffffu;

struct BlockState {
  std::uint32_t acked = 0;      // generation of the last acknowledged write, 0 = none
  std::uint32_t uncertain = 0;  // highest generation written since then without an ack
};

// The file: "RTGTVST1", u32 version 1, u32 block size, u64 first LBA, u64
// block count, u32 next generation, u32 zero, then per block u32 acked, u32
// uncertain. Host byte order (the file is for this machine's later runs).
struct VerifyState {
  std::uint32_t block_size = 0;
  std::uint64_t first_lba = 0;
  std::uint32_t next_gen = 1;
  std::vector<BlockState> table;  // one per block from first_lba
};

// Each returns an empty string, or why it failed (for one line on stderr).
std::string read_verify_state(const std::string& path, VerifyState& out);
std::string write_verify_state(const std::string& path, const VerifyState& s);

}  // namespace ringtgt::bench
