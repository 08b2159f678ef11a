// ringtgt-durability-check: reads a durability log the daemon recorded
// ([testing] durability_log) and says whether a power cut at any point of it
// loses an acknowledged write; optionally holds the image rebuilt at its end
// against ringtgt-bench's verify table for the same LUN. See
// docs/durability-check.md.
#include <getopt.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <map>
#include <string>
#include <vector>

#include "block_format.hpp"
#include "ringtgt/storage/durability_check.hpp"
#include "verify_state.hpp"

namespace {

using ringtgt::storage::DurableImage;

struct BenchExpectation {
  std::string store;  // the LUN's file or device, as the log names it
  std::string state_file;
  unsigned sessions = 1;
};

[[noreturn]] void usage(const char* why) {
  if (why != nullptr) std::fprintf(stderr, "ringtgt-durability-check: %s\n", why);
  std::fprintf(stderr,
               "usage: ringtgt-durability-check LOG [--bench STORE=STATE_FILE[:SESSIONS]]...\n"
               "  LOG         the file of [testing] durability_log, after the daemon stopped\n"
               "  --bench     hold the durable image of STORE (the LUN's path) at the end of the\n"
               "              log against ringtgt-bench's --save-state table of that LUN\n"
               "              (SESSIONS: the bench's --sessions, default 1)\n"
               "exit status: 0 every promise kept, 1 violations, 2 usage or unreadable input\n");
  std::exit(2);
}

BenchExpectation parse_bench(const std::string& arg) {
  BenchExpectation b;
  const auto eq = arg.find('=');
  if (eq == std::string::npos || eq == 0) usage("--bench wants STORE=STATE_FILE[:SESSIONS]");
  b.store = arg.substr(0, eq);
  std::string rest = arg.substr(eq + 1);
  if (const auto colon = rest.rfind(':'); colon != std::string::npos) {
    b.sessions = static_cast<unsigned>(std::strtoul(rest.c_str() + colon + 1, nullptr, 10));
    rest.resize(colon);
    if (b.sessions == 0 || b.sessions > 4096) usage("--bench: SESSIONS must be 1..4096");
  }
  b.state_file = rest;
  return b;
}

// Whether the durable block is one the bench's verify mode accepts for lba:
// the last acknowledged generation (written by any of the sessions), or one
// of the unacknowledged ones after it; zeroes while nothing was acknowledged;
// anything where this run wrote nothing. Generations are tried one by one
// (a block holds only hashes): an unacknowledged range wider than
// kMaxTried is not held against the block.
constexpr std::uint32_t kMaxTried = 4096;
bool bench_accepts(const ringtgt::bench::BlockState& st, std::uint64_t lba, std::uint32_t bs,
                   unsigned sessions, std::uint64_t held, std::vector<unsigned char>& scratch) {
  using ringtgt::bench::kGenMask;
  using ringtgt::bench::kUnmapFlag;
  if (((st.acked | st.uncertain) & kUnmapFlag) && held == DurableImage::kZeroBlock) return true;
  const std::uint32_t acked = st.acked & kGenMask, uncertain = st.uncertain & kGenMask;
  if (acked == 0 && (uncertain == 0 || held == DurableImage::kZeroBlock)) return true;
  const std::uint32_t lo = acked != 0 ? acked : 1;
  const std::uint32_t hi = std::max(acked, uncertain);
  if (hi - lo > kMaxTried) return true;
  for (std::uint32_t gen = lo; gen <= hi; ++gen) {
    for (unsigned s = 0; s < sessions; ++s) {
      ringtgt::bench::fill_block(scratch.data(), bs, lba, gen, s);
      if (ringtgt::storage::block_hash(scratch.data(), bs) == held) return true;
    }
  }
  return false;
}

// Returns the number of blocks the bench expects otherwise.
std::uint64_t check_bench(const BenchExpectation& b,
                          const std::map<std::uint32_t, DurableImage>& images) {
  const DurableImage* img = nullptr;
  for (const auto& [id, i] : images) {
    if (i.name == b.store) img = &i;
  }
  if (img == nullptr) {
    std::fprintf(stderr, "ringtgt-durability-check: no store %s in the log\n", b.store.c_str());
    std::exit(2);
  }
  ringtgt::bench::VerifyState st;
  if (const std::string why = ringtgt::bench::read_verify_state(b.state_file, st); !why.empty()) {
    std::fprintf(stderr, "ringtgt-durability-check: %s\n", why.c_str());
    std::exit(2);
  }
  if (st.block_size != img->block_size) {
    std::fprintf(stderr, "ringtgt-durability-check: %s has %u-byte blocks, the store %u\n",
                 b.state_file.c_str(), st.block_size, img->block_size);
    std::exit(2);
  }
  std::vector<unsigned char> scratch(st.block_size);
  std::vector<unsigned char> zeroes(st.block_size, 0);
  const std::uint64_t zero_hash = ringtgt::storage::block_hash(zeroes.data(), st.block_size);
  std::uint64_t bad = 0, acked = 0;
  for (std::uint64_t i = 0; i < st.table.size(); ++i) {
    const std::uint64_t lba = st.first_lba + i;
    const auto& bs = st.table[i];
    acked += bs.acked != 0;
    auto it = img->blocks.find(lba);
    if (it == img->blocks.end()) {
      if (bs.acked == 0) continue;  // never durably written, never acknowledged
      if (++bad <= 20)
        std::printf(
            "  %s LBA %llu: generation %u was acknowledged, but no durable write holds it\n",
            b.store.c_str(), static_cast<unsigned long long>(lba), bs.acked);
      continue;
    }
    // A write of zeroes is a zero block too, whichever way it came.
    const std::uint64_t held = it->second == zero_hash ? DurableImage::kZeroBlock : it->second;
    if (bench_accepts(bs, lba, st.block_size, b.sessions, held, scratch)) continue;
    if (++bad <= 20)
      std::printf(
          "  %s LBA %llu: the durable image holds a block ringtgt-bench does not accept "
          "(acknowledged generation %u, unacknowledged up to %u)\n",
          b.store.c_str(), static_cast<unsigned long long>(lba), bs.acked, bs.uncertain);
  }
  std::printf("bench %s: %zu blocks, %llu acknowledged, %llu not as ringtgt-bench expects\n",
              b.store.c_str(), st.table.size(), static_cast<unsigned long long>(acked),
              static_cast<unsigned long long>(bad));
  return bad;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<BenchExpectation> benches;
  static const option longopts[] = {{"bench", required_argument, nullptr, 'b'},
                                    {"help", no_argument, nullptr, 'h'},
                                    {nullptr, 0, nullptr, 0}};
  int c;
  while ((c = getopt_long(argc, argv, "h", longopts, nullptr)) != -1) {
    if (c == 'b') {
      benches.push_back(parse_bench(optarg));
    } else {
      usage(nullptr);
    }
  }
  if (argc - optind != 1) usage("one LOG file, please");
  std::vector<ringtgt::storage::DurabilityEvent> log;
  try {
    log = ringtgt::storage::read_durability_log(argv[optind]);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ringtgt-durability-check: %s\n", e.what());
    return 2;
  }
  const auto r = ringtgt::storage::check_durability_log(log);
  for (const auto& [id, img] : r.images) {
    const auto bad = r.problems_by_store.find(id);
    std::printf(
        "store %u: %s (%s%s, %u-byte blocks): %zu blocks durable at the end, %llu "
        "violations\n",
        id, img.name.c_str(), img.writeback ? "writeback" : "writethrough",
        img.direct ? ", O_DIRECT" : "", img.block_size, img.blocks.size(),
        static_cast<unsigned long long>(bad == r.problems_by_store.end() ? 0 : bad->second));
  }
  std::printf(
      "%llu events: %llu writes, %llu unmaps/zeroings, %llu flushes, %llu GOOD for "
      "medium-changing commands, %llu durability promises, %llu SYNCHRONIZE CACHE, %llu image "
      "points checked\n",
      static_cast<unsigned long long>(r.events), static_cast<unsigned long long>(r.writes),
      static_cast<unsigned long long>(r.zeroings), static_cast<unsigned long long>(r.flushes),
      static_cast<unsigned long long>(r.commands_good),
      static_cast<unsigned long long>(r.durable_promises), static_cast<unsigned long long>(r.syncs),
      static_cast<unsigned long long>(r.image_points));
  for (const auto& p : r.problems) std::printf("VIOLATION %s\n", p.c_str());
  if (r.problem_count > r.problems.size()) {
    std::printf("... and %llu more violations\n",
                static_cast<unsigned long long>(r.problem_count - r.problems.size()));
  }
  std::uint64_t bench_bad = 0;
  for (const auto& b : benches) bench_bad += check_bench(b, r.images);
  const bool ok = r.problem_count == 0 && bench_bad == 0;
  std::printf("%s\n", ok ? "OK: every acknowledged write survives a power cut at every point"
                         : "FAILED: a power cut can lose acknowledged writes");
  return ok ? 0 : 1;
}
