// The checker of a durability log (durability_log.hpp): replays it with a
// power cut after every event and says which acknowledged writes such a cut
// would lose.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

#include "ringtgt/storage/durability_log.hpp"

namespace ringtgt::storage {

// What a store holds after a power cut at the end of the log: for each block
// that a durable write covered, the hash of its content (kZeroBlock: reads
// as zeroes). Blocks not listed hold what they held before the log began.
struct DurableImage {
  static constexpr std::uint64_t kZeroBlock = 0;
  std::string name;
  std::uint64_t size = 0;
  std::uint32_t block_size = 0;
  bool writeback = false;
  bool direct = false;
  std::unordered_map<std::uint64_t, std::uint64_t> blocks;
};

struct DurabilityReport {
  std::vector<std::string> problems;  // one line each; empty: every promise kept
  std::uint64_t problem_count = 0;    // problems holds at most the first 200
  std::map<std::uint32_t, std::uint64_t> problems_by_store;  // violations by store
  std::map<std::uint32_t, DurableImage> images;              // by store
  // What was checked, for the summary.
  std::uint64_t events = 0, writes = 0, zeroings = 0, flushes = 0, commands_good = 0,
                durable_promises = 0, syncs = 0, image_points = 0;
};

// Replays the log with a power cut after every event:
// - a write acknowledged with a durability promise (writethrough, FUA, or
//   WRITE AND VERIFY: the ack's or the write's must_be_durable) must be
//   durable when it is acknowledged: written with RWF_DSYNC, or covered by a
//   flush of its store that started after its write_done and succeeded;
//   for a command, every write it caused must be, when GOOD goes out
//   (command_done); a write of a command after its GOOD is a violation too;
// - every write acknowledged before a SYNCHRONIZE CACHE reached the backend
//   must be durable when that SYNCHRONIZE CACHE is acknowledged (writeback);
// - at every flush point the image rebuilt from the durable writes (per-block
//   hashes; unmap and write zeroes as zeroes) holds, for every block, the
//   latest acknowledged-durable write of it or a later one.
// Durability only grows along the log, so checking each acknowledgement
// against what was durable at that moment covers every cut point at once.
// A failed flush makes nothing durable, and no later flush brings back what
// it covered.
DurabilityReport check_durability_log(const std::vector<DurabilityEvent>& log);

// The problems only.
std::vector<std::string> check_durability(const std::vector<DurabilityEvent>& log);

}  // namespace ringtgt::storage
