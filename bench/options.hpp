// ringtgt-bench's command line: the options, the workload modes and chaos
// events they name, and their parser (bench/README.md lists them).
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>

namespace ringtgt::bench {

inline constexpr const char* kDefaultInitiator = "iqn.2025-01.com.jacobgade:ringtgt-bench";
inline constexpr std::uint64_t kMaxBs = 1024 * 1024;

std::uint64_t now_ns();

// splitmix64: small, fast, good enough to pick offsets.
struct Rng {
  std::uint64_t s;
  std::uint64_t next() {
    std::uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  std::uint64_t below(std::uint64_t n) { return n ? next() % n : 0; }
};

enum class Mode { kRandRead, kRandWrite, kRead, kWrite, kRandRw, kRw };

struct ModeName {
  Mode mode;
  const char* name;
};
inline constexpr ModeName kModes[] = {
    {Mode::kRandRead, "randread"}, {Mode::kRandWrite, "randwrite"}, {Mode::kRead, "read"},
    {Mode::kWrite, "write"},       {Mode::kRandRw, "randrw"},       {Mode::kRw, "rw"},
};

const char* mode_name(Mode m);
bool mode_random(Mode m);

// The chaos driver's events (--chaos) and how often each is picked.
enum class Chaos { kAbortTask, kAbortTaskSet, kLuReset, kTargetReset, kDrop, kCount };
inline constexpr const char* kChaosNames[] = {"abort_task", "abort_task_set", "lu_reset",
                                              "target_reset", "drop"};
inline constexpr int kChaosWeights[] = {30, 15, 15, 10, 30};

struct Options {
  std::string url;
  std::string initiator = kDefaultInitiator;
  int sessions = 1;
  int qd = 16;
  std::uint64_t bs = 4096;
  Mode mode = Mode::kRandRead;
  int rwmixread = 50;
  double runtime_s = 0;   // 0 = not given
  std::uint64_t ios = 0;  // 0 = not given
  std::uint64_t offset = 0;
  std::uint64_t range = 0;  // 0 = to the end of the LUN
  bool verify = false;
  bool verify_only = false;
  bool fua = false;  // WRITE(16) with FUA: durable before GOOD under writeback too
  std::string load_state;
  std::string save_state;
  double timeout_s = 10;
  bool json = false;
  std::uint64_t seed = 0;
  bool seed_given = false;
  bool quiet = false;
  // Chaos (bench/README.md "Chaos mode").
  bool reconnect = false;         // a dropped session logs in again with its ISID
  double relogin_timeout_s = 30;  // how long a dropped session may take to log in again
  double chaos_rate = 0;          // chaos events per second (0 = none)
  unsigned chaos_mask = ~0u;      // which events (--chaos-events), bit per Chaos value
  int caw_pct = 0;                // shares of the writes done as COMPARE AND WRITE,
  int unmap_pct = 0;              // UNMAP, and two overlapping WRITEs at once
  int overlap_pct = 0;
};

void usage(FILE* f);
// Exits with a message on bad arguments.
Options parse_options(int argc, char** argv);

}  // namespace ringtgt::bench
