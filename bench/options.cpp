#include "options.hpp"

#include <getopt.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cinttypes>
#include <cstdlib>
#include <cstring>
#include <optional>

namespace ringtgt::bench {

std::uint64_t now_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1000000000ull +
         static_cast<std::uint64_t>(ts.tv_nsec);
}

const char* mode_name(Mode m) {
  for (const auto& e : kModes)
    if (e.mode == m) return e.name;
  return "?";
}

bool mode_random(Mode m) {
  return m == Mode::kRandRead || m == Mode::kRandWrite || m == Mode::kRandRw;
}

void usage(FILE* f) {
  std::fprintf(
      f,
      "usage: ringtgt-bench --url iscsi://HOST[:PORT]/TARGET-IQN/LUN [options]\n"
      "\n"
      "workload:\n"
      "  --rw MODE            randread|randwrite|read|write|randrw|rw (default randread)\n"
      "  --rwmixread PCT      share of reads in randrw/rw, 0..100 (default 50)\n"
      "  --bs BYTES           I/O size, 512..1M, multiple of the LUN block size (default 4k)\n"
      "  --qd N               commands in flight per session, 1..4096 (default 16)\n"
      "  --sessions N         sessions, each its own TCP connection, 1..256 (default 1)\n"
      "  --runtime SECONDS    run time (default 10 unless --ios is given)\n"
      "  --ios COUNT          stop after COUNT I/Os in total\n"
      "  --offset BYTES       first byte of the LUN used (default 0)\n"
      "  --range BYTES        bytes of the LUN used from --offset (default: to the end)\n"
      "  --seed N             random seed (default: time based)\n"
      "  --fua                writes carry FUA (forced unit access)\n"
      "verification:\n"
      "  --verify             write self-describing blocks, check every block read\n"
      "  --verify-only        read every block of the range once and check it (implies\n"
      "                       --verify; runs until done, --runtime still bounds it)\n"
      "  --load-state FILE    start from a generation table saved by --save-state: reads\n"
      "                       must then find the last acknowledged write of each block\n"
      "  --save-state FILE    save the generation table at the end (also after errors)\n"
      "connection:\n"
      "  --initiator-name IQN (default %s)\n"
      "  --timeout SECONDS    a command outstanding this long is an error and its session\n"
      "                       is dropped; also bounds the drain at the end (default 10)\n"
      "output:\n"
      "chaos (needs --verify):\n"
      "  --caw-pct PCT        share of writes done as READ + COMPARE AND WRITE of one block\n"
      "  --unmap-pct PCT      share of writes done as UNMAP (the LUN must be thin)\n"
      "  --overlap-pct PCT    share of writes done as two overlapping WRITEs at once\n"
      "  --reconnect          a dropped session logs in again with the same ISID\n"
      "                       (reinstatement); I/O errors then do not fail the run\n"
      "  --relogin-timeout S  a session that cannot log in again within S fails the run (30)\n"
      "  --chaos RATE         RATE events per second: ABORT TASK, ABORT TASK SET, LOGICAL\n"
      "                       UNIT RESET, TARGET WARM RESET, connection drop (implies\n"
      "                       --reconnect; the events follow --seed)\n"
      "  --chaos-events LIST  only these: abort_task,abort_task_set,lu_reset,target_reset,drop\n"
      "  --json               one JSON object on stdout (the table goes to stderr)\n"
      "  --quiet              no per-error detail lines\n"
      "\n"
      "URL: ':' inside the target name may be written %%3A. Sizes take K/M/G suffixes\n"
      "(powers of 1024). Exit status: 0 ok, 1 I/O errors or verify failures, 2 usage.\n",
      kDefaultInitiator);
}

[[noreturn]] void usage_error(const char* fmt, const char* arg) {
  std::fprintf(stderr, "ringtgt-bench: ");
  std::fprintf(stderr, fmt, arg);
  std::fprintf(stderr, "\n(see ringtgt-bench --help)\n");
  std::exit(2);
}

std::optional<std::uint64_t> parse_size(const char* s) {
  if (!s || !*s) return std::nullopt;
  errno = 0;
  char* end = nullptr;
  unsigned long long v = std::strtoull(s, &end, 10);
  if (errno || end == s || s[0] == '-') return std::nullopt;
  std::uint64_t mul = 1;
  if (*end) {
    switch (*end) {
      case 'k':
      case 'K':
        mul = 1ull << 10;
        break;
      case 'm':
      case 'M':
        mul = 1ull << 20;
        break;
      case 'g':
      case 'G':
        mul = 1ull << 30;
        break;
      case 't':
      case 'T':
        mul = 1ull << 40;
        break;
      default:
        return std::nullopt;
    }
    end++;
    if (*end == 'i' && end[1] == 'B')
      end += 2;
    else if (*end == 'B' || *end == 'b')
      end++;
    if (*end) return std::nullopt;
  }
  if (v > UINT64_MAX / mul) return std::nullopt;
  return v * mul;
}

std::optional<double> parse_seconds(const char* s) {
  if (!s || !*s) return std::nullopt;
  char* end = nullptr;
  double v = std::strtod(s, &end);
  if (end == s || *end || !(v > 0) || v > 1e7) return std::nullopt;
  return v;
}

long parse_int(const char* s, long lo, long hi, const char* what) {
  char* end = nullptr;
  errno = 0;
  long v = std::strtol(s, &end, 10);
  if (errno || end == s || *end || v < lo || v > hi) {
    std::fprintf(stderr, "ringtgt-bench: %s must be an integer in %ld..%ld, got '%s'\n", what, lo,
                 hi, s);
    std::exit(2);
  }
  return v;
}

// --chaos-events abort_task,drop,...: the events chaos may pick.
unsigned parse_chaos_events(const char* list) {
  unsigned mask = 0;
  std::string all = list;
  std::size_t pos = 0;
  while (pos <= all.size()) {
    std::size_t comma = all.find(',', pos);
    std::string name =
        all.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    bool found = false;
    for (int i = 0; i < static_cast<int>(Chaos::kCount); i++) {
      if (name == kChaosNames[i]) {
        mask |= 1u << i;
        found = true;
      }
    }
    if (!found)
      usage_error(
          "--chaos-events takes abort_task,abort_task_set,lu_reset,target_reset,drop; got '%s'",
          name.c_str());
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  return mask;
}

Options parse_options(int argc, char** argv) {
  enum {
    kUrl = 1000,
    kSessions,
    kQd,
    kBs,
    kRw,
    kMix,
    kRuntime,
    kIos,
    kOffset,
    kRange,
    kVerify,
    kVerifyOnly,
    kFua,
    kLoad,
    kSave,
    kJson,
    kInit,
    kTimeout,
    kSeed,
    kQuiet,
    kReconnect,
    kReloginTimeout,
    kChaos,
    kCawPct,
    kUnmapPct,
    kOverlapPct,
    kChaosEvents,
    kHelp
  };
  static const option longopts[] = {
      {"url", required_argument, nullptr, kUrl},
      {"sessions", required_argument, nullptr, kSessions},
      {"qd", required_argument, nullptr, kQd},
      {"iodepth", required_argument, nullptr, kQd},
      {"bs", required_argument, nullptr, kBs},
      {"rw", required_argument, nullptr, kRw},
      {"rwmixread", required_argument, nullptr, kMix},
      {"runtime", required_argument, nullptr, kRuntime},
      {"ios", required_argument, nullptr, kIos},
      {"offset", required_argument, nullptr, kOffset},
      {"range", required_argument, nullptr, kRange},
      {"verify", no_argument, nullptr, kVerify},
      {"verify-only", no_argument, nullptr, kVerifyOnly},
      {"fua", no_argument, nullptr, kFua},
      {"load-state", required_argument, nullptr, kLoad},
      {"save-state", required_argument, nullptr, kSave},
      {"json", no_argument, nullptr, kJson},
      {"initiator-name", required_argument, nullptr, kInit},
      {"timeout", required_argument, nullptr, kTimeout},
      {"seed", required_argument, nullptr, kSeed},
      {"quiet", no_argument, nullptr, kQuiet},
      {"reconnect", no_argument, nullptr, kReconnect},
      {"relogin-timeout", required_argument, nullptr, kReloginTimeout},
      {"chaos", required_argument, nullptr, kChaos},
      {"caw-pct", required_argument, nullptr, kCawPct},
      {"unmap-pct", required_argument, nullptr, kUnmapPct},
      {"overlap-pct", required_argument, nullptr, kOverlapPct},
      {"chaos-events", required_argument, nullptr, kChaosEvents},
      {"help", no_argument, nullptr, kHelp},
      {nullptr, 0, nullptr, 0},
  };
  Options o;
  opterr = 0;
  int c;
  while ((c = getopt_long(argc, argv, "h", longopts, nullptr)) != -1) {
    switch (c) {
      case kUrl:
        o.url = optarg;
        break;
      case kSessions:
        o.sessions = static_cast<int>(parse_int(optarg, 1, 256, "--sessions"));
        break;
      case kQd:
        o.qd = static_cast<int>(parse_int(optarg, 1, 4096, "--qd"));
        break;
      case kBs: {
        auto v = parse_size(optarg);
        if (!v || *v < 512 || *v > kMaxBs || *v % 512)
          usage_error("--bs must be 512..1M and a multiple of 512, got '%s'", optarg);
        o.bs = *v;
        break;
      }
      case kRw: {
        bool found = false;
        for (const auto& e : kModes) {
          if (std::strcmp(optarg, e.name) == 0) {
            o.mode = e.mode;
            found = true;
          }
        }
        if (!found)
          usage_error("--rw must be randread|randwrite|read|write|randrw|rw, got '%s'", optarg);
        break;
      }
      case kMix:
        o.rwmixread = static_cast<int>(parse_int(optarg, 0, 100, "--rwmixread"));
        break;
      case kRuntime: {
        auto v = parse_seconds(optarg);
        if (!v) usage_error("--runtime must be a positive number of seconds, got '%s'", optarg);
        o.runtime_s = *v;
        break;
      }
      case kIos: {
        auto v = parse_size(optarg);
        if (!v || *v == 0) usage_error("--ios must be a positive count, got '%s'", optarg);
        o.ios = *v;
        break;
      }
      case kOffset: {
        auto v = parse_size(optarg);
        if (!v) usage_error("--offset must be a byte count, got '%s'", optarg);
        o.offset = *v;
        break;
      }
      case kRange: {
        auto v = parse_size(optarg);
        if (!v || *v == 0) usage_error("--range must be a positive byte count, got '%s'", optarg);
        o.range = *v;
        break;
      }
      case kVerify:
        o.verify = true;
        break;
      case kVerifyOnly:
        o.verify_only = true;
        o.verify = true;
        break;
      case kFua:
        o.fua = true;
        break;
      case kLoad:
        o.load_state = optarg;
        break;
      case kSave:
        o.save_state = optarg;
        break;
      case kJson:
        o.json = true;
        break;
      case kInit:
        o.initiator = optarg;
        break;
      case kTimeout: {
        auto v = parse_seconds(optarg);
        if (!v) usage_error("--timeout must be a positive number of seconds, got '%s'", optarg);
        o.timeout_s = *v;
        break;
      }
      case kSeed: {
        auto v = parse_size(optarg);
        if (!v) usage_error("--seed must be an unsigned integer, got '%s'", optarg);
        o.seed = *v;
        o.seed_given = true;
        break;
      }
      case kQuiet:
        o.quiet = true;
        break;
      case kReconnect:
        o.reconnect = true;
        break;
      case kReloginTimeout: {
        auto v = parse_seconds(optarg);
        if (!v)
          usage_error("--relogin-timeout must be a positive number of seconds, got '%s'", optarg);
        o.relogin_timeout_s = *v;
        break;
      }
      case kChaos: {
        auto v = parse_seconds(optarg);
        if (!v) usage_error("--chaos must be a positive rate per second, got '%s'", optarg);
        o.chaos_rate = *v;
        o.reconnect = true;
        break;
      }
      case kCawPct:
        o.caw_pct = static_cast<int>(parse_int(optarg, 0, 100, "--caw-pct"));
        break;
      case kUnmapPct:
        o.unmap_pct = static_cast<int>(parse_int(optarg, 0, 100, "--unmap-pct"));
        break;
      case kOverlapPct:
        o.overlap_pct = static_cast<int>(parse_int(optarg, 0, 100, "--overlap-pct"));
        break;
      case kChaosEvents:
        o.chaos_mask = parse_chaos_events(optarg);
        break;
      case kHelp:
      case 'h':
        usage(stdout);
        std::exit(0);
      default:
        usage_error("unknown or incomplete option '%s'", argv[optind - 1]);
    }
  }
  if (optind < argc) usage_error("unexpected argument '%s'", argv[optind]);
  if (o.url.empty()) usage_error("%s", "--url is required");
  if ((!o.load_state.empty() || !o.save_state.empty()) && !o.verify)
    usage_error("%s", "--load-state/--save-state need --verify or --verify-only");
  if ((o.reconnect || o.caw_pct || o.unmap_pct || o.overlap_pct) && !o.verify)
    usage_error("%s", "--chaos, --reconnect and the --*-pct ops need --verify");
  if (o.caw_pct + o.unmap_pct + o.overlap_pct > 100)
    usage_error("%s", "--caw-pct + --unmap-pct + --overlap-pct must not exceed 100");
  if (o.runtime_s == 0 && o.ios == 0 && !o.verify_only) o.runtime_s = 10;
  if (!o.seed_given) o.seed = now_ns() ^ (static_cast<std::uint64_t>(getpid()) << 32);
  return o;
}

}  // namespace ringtgt::bench
