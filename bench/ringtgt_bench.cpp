// ringtgt-bench: a load generator and data verifier for iSCSI targets, built on
// libiscsi's asynchronous API (no kernel initiator needed).
//
// One thread. Each session is its own iscsi_context (own TCP connection and
// iSCSI session) to the same target LUN and keeps --qd commands in flight; one
// poll() loop services every session. See bench/README.md for the options, the
// verify rules and the output format.
#include <getopt.h>
#include <iscsi/iscsi.h>
#include <iscsi/scsi-lowlevel.h>
#include <poll.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cmath>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "block_format.hpp"
#include "histogram.hpp"
#include "verify_state.hpp"

namespace ringtgt::bench {
namespace {

constexpr const char* kDefaultInitiator = "iqn.2025-01.com.jacobgade:ringtgt-bench";
constexpr std::uint64_t kMaxBs = 1024 * 1024;
constexpr int kMaxDetailLines = 20;

volatile sig_atomic_t g_interrupted = 0;

std::uint64_t now_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1000000000ull +
         static_cast<std::uint64_t>(ts.tv_nsec);
}

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
constexpr ModeName kModes[] = {
    {Mode::kRandRead, "randread"}, {Mode::kRandWrite, "randwrite"}, {Mode::kRead, "read"},
    {Mode::kWrite, "write"},       {Mode::kRandRw, "randrw"},       {Mode::kRw, "rw"},
};

const char* mode_name(Mode m) {
  for (const auto& e : kModes)
    if (e.mode == m) return e.name;
  return "?";
}

bool mode_random(Mode m) {
  return m == Mode::kRandRead || m == Mode::kRandWrite || m == Mode::kRandRw;
}

// The chaos driver's events (--chaos) and how often each is picked.
enum class Chaos { kAbortTask, kAbortTaskSet, kLuReset, kTargetReset, kDrop, kCount };
constexpr const char* kChaosNames[] = {"abort_task", "abort_task_set", "lu_reset", "target_reset",
                                       "drop"};
constexpr int kChaosWeights[] = {30, 15, 15, 10, 30};

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

// ---------------------------------------------------------------------------

struct OpStats {
  std::uint64_t ios = 0;
  std::uint64_t bytes = 0;
  std::uint64_t errors = 0;
  Histogram lat;  // nanoseconds
};

struct Session;

// What one command slot is doing. A COMPARE AND WRITE is a READ of the block
// first (kCawRead), then the COMPARE AND WRITE with what was read (kCaw).
enum class Kind { kRead, kWrite, kCawRead, kCaw, kUnmap };

struct Io {
  Session* session = nullptr;
  bool busy = false;
  bool write = false;      // counted as a write (WRITE, COMPARE AND WRITE, UNMAP)
  bool completed = false;  // answered, waiting for its overlap partner
  bool timed_out = false;
  Kind kind = Kind::kRead;
  int status = 0;
  std::uint64_t lba = 0;
  std::uint32_t nblocks = 0;
  std::uint32_t gen = 0;
  std::uint64_t issue_seq = 0;  // order of issue over all sessions (fences compare it)
  std::uint64_t start_ns = 0;
  Io* partner = nullptr;  // the other WRITE of an overlapping pair
  bool pair_first = false;
  scsi_task* task = nullptr;
  std::unique_ptr<unsigned char[]> buf;  // write payload
  unmap_list unmap{};
};

// Blocks of a write whose outcome is unknown (cut off, timed out, cancelled):
// it may still land, so nobody touches them until a fence (its session logged
// in again, or a task management answer that covers it).
struct Held {
  std::uint64_t lba;
  std::uint32_t nblocks;
  std::uint64_t issue_seq;
};

struct Tmf;

enum class SessState { kConnecting, kReady, kLoggingOut, kDone, kDead, kReconnecting };

struct Session {
  int id = 0;
  iscsi_context* ctx = nullptr;
  SessState state = SessState::kConnecting;
  int inflight = 0;
  std::vector<Io> ios;
  std::uint64_t seq_slot = 0;  // sequential cursor, in bs-sized slots
  Rng rng{};
  class Bench* bench = nullptr;
  std::uint32_t isid_rnd = 0;  // kept: logging in again with it reinstates the session
  std::vector<Held> held;
  std::vector<std::unique_ptr<Tmf>> tmfs;  // task management requests awaiting an answer
  std::uint64_t reconnect_at = 0;          // next login attempt (kReconnecting)
  std::uint64_t relogin_deadline = 0;
  std::uint64_t login_started = 0;
  bool first_login = true;
};

struct Tmf {
  Session* session;
  Chaos what;
  std::uint64_t sent_seq;   // commands issued before it are covered
  std::uint64_t abort_seq;  // ABORT TASK: the one command
  // libiscsi sends a task management request (immediate) ahead of commands it
  // has queued but not yet sent, so its answer covers the earlier commands
  // only when nothing was waiting to go out.
  bool fences;
  std::uint64_t sent_ns;
};

class Bench {
 public:
  explicit Bench(Options o) : o_(std::move(o)) {}
  int run();

  // libiscsi callbacks land here.
  void on_connect(Session& s, int status);
  void on_complete(Io& io, int status);
  void on_logout(Session& s) { s.state = SessState::kDone; }
  void on_tmf(Tmf& t, int status, void* data);

 private:
  bool connect_all();
  bool start_login(Session& s);
  void schedule_reconnect(Session& s);
  void service_reconnects(std::uint64_t now);
  void release_held(Session& s, std::uint64_t before_seq, std::uint64_t only_seq);
  void chaos_event();
  bool tmf_stuck(Session& s, std::uint64_t now, std::uint64_t limit);
  std::uint64_t chaos_gap_ns();
  void drop_reset_victims();
  bool send_tmf(Session& s, Chaos what);
  void drop_others_after_reset(const Session& sender, std::uint64_t sent_seq);
  bool account(Io& io, int status);
  void settle_write(Io& io, bool ok);
  void settle_pair(Io& a, Io& b);
  void set_block(std::uint64_t lba, const std::uint32_t* gens, const int* results, int n);
  bool start_caw(Session& s, Io& io, const unsigned char* current);
  void finish(Io& io);
  bool pick_write_kind(Session& s, Io& io);
  bool issue_pair(Session& s, Io& a);
  bool a_sent(Session& s, Io& a);
  bool submit(Session& s, Io& io);
  bool next_generation(std::uint32_t* gen);
  void fill(Io& io, unsigned char* out);
  bool read_capacity();
  bool setup_range();
  bool load_state();
  bool save_state();
  void pump(int max_wait_ms);
  void kill_session(Session& s, const char* why);
  void sweep_dead(Session& s);
  void top_up(Session& s);
  bool issue(Session& s, Io& io);
  bool pick(Session& s, bool* is_write, std::uint64_t* lba, std::uint32_t* nblocks);
  bool try_lock(std::uint64_t lba, std::uint32_t n);
  void unlock(std::uint64_t lba, std::uint32_t n);
  void verify_read(const Io& io, const unsigned char* data);
  void verify_failure(std::uint64_t lba, const char* fmt, ...)
      __attribute__((format(printf, 3, 4)));
  void detail(const char* fmt, ...) __attribute__((format(printf, 2, 3)));
  void check_timeouts(std::uint64_t now);
  void finish_sessions();
  void report(double elapsed_s);
  int inflight_total() const;
  bool any_alive() const;
  bool any_relogging() const;

  Options o_;
  std::string portal_;
  std::string target_;
  int lun_ = 0;
  std::string user_, passwd_;
  std::vector<std::unique_ptr<Session>> sessions_;

  std::uint32_t lbs_ = 0;         // LUN logical block size
  std::uint64_t lun_blocks_ = 0;  // LUN capacity in blocks
  std::uint64_t first_lba_ = 0;
  std::uint64_t nblocks_ = 0;  // blocks in the range
  std::uint32_t bs_blocks_ = 0;
  std::uint64_t slots_ = 0;  // bs-sized aligned positions in the range

  // Verify state, indexed by lba - first_lba_.
  std::vector<BlockState> table_;
  std::vector<std::uint8_t> locked_;
  std::uint32_t next_gen_ = 1;
  std::uint64_t verify_cursor_ = 0;  // --verify-only: next block to read (relative)

  bool stopping_ = false;
  std::uint64_t issued_ = 0;
  OpStats rd_, wr_;
  std::uint64_t scsi_errors_ = 0;
  std::uint64_t transport_errors_ = 0;
  std::uint64_t timeouts_ = 0;
  std::uint64_t connect_errors_ = 0;
  std::uint64_t blocks_checked_ = 0;
  std::uint64_t verify_failures_ = 0;
  std::uint64_t uncertain_writes_ = 0;
  int details_ = 0;
  int failure_lines_ = 0;  // verify failures have their own budget: errors do not hide them
  std::uint64_t issue_seq_ = 0;
  std::uint64_t chaos_sent_[static_cast<int>(Chaos::kCount)] = {};
  std::uint64_t chaos_done_[static_cast<int>(Chaos::kCount)] = {};
  std::uint64_t next_chaos_ns_ = 0;
  Rng chaos_rng_{};
  std::uint64_t relogins_ = 0;
  std::uint64_t relogin_failures_ = 0;
  std::uint64_t tmf_timeouts_ = 0;
  std::uint64_t held_releases_ = 0;
  std::uint64_t caw_ = 0, unmaps_ = 0, overlaps_ = 0;
  std::vector<Session*> reset_victims_;  // sessions whose commands a reset ended
  int pending_connects_ = 0;
  bool capacity_done_ = false;
  bool capacity_ok_ = false;
  std::vector<pollfd> pfds_;
  std::vector<Session*> pfd_sessions_;
};

void connect_cb(iscsi_context*, int status, void*, void* priv) {
  auto* s = static_cast<Session*>(priv);
  s->bench->on_connect(*s, status);
}

void io_cb(iscsi_context*, int status, void*, void* priv) {
  auto* io = static_cast<Io*>(priv);
  io->session->bench->on_complete(*io, status);
}

void logout_cb(iscsi_context*, int, void*, void* priv) {
  auto* s = static_cast<Session*>(priv);
  s->bench->on_logout(*s);
}

void Bench::detail(const char* fmt, ...) {
  if (o_.quiet) return;
  if (details_ > kMaxDetailLines) return;
  if (details_++ == kMaxDetailLines) {
    std::fprintf(stderr, "ringtgt-bench: (further error details suppressed)\n");
    return;
  }
  va_list ap;
  va_start(ap, fmt);
  std::fprintf(stderr, "ringtgt-bench: ");
  std::vfprintf(stderr, fmt, ap);
  std::fprintf(stderr, "\n");
  va_end(ap);
}

int Bench::inflight_total() const {
  int n = 0;
  for (const auto& s : sessions_) n += s->inflight;
  return n;
}

// Alive: ready, or (with --reconnect) on its way back in.
bool Bench::any_alive() const {
  for (const auto& s : sessions_)
    if (s->state == SessState::kReady || s->state == SessState::kReconnecting ||
        (s->state == SessState::kConnecting && !s->first_login))
      return true;
  return false;
}

bool Bench::any_relogging() const {
  for (const auto& s : sessions_)
    if (s->state == SessState::kReconnecting ||
        (s->state == SessState::kConnecting && !s->first_login))
      return true;
  return false;
}

// One round of poll() over every live session, then iscsi_service for each.
void Bench::pump(int max_wait_ms) {
  pfds_.clear();
  pfd_sessions_.clear();
  for (auto& sp : sessions_) {
    Session& s = *sp;
    if (!s.ctx || s.state == SessState::kDead || s.state == SessState::kDone ||
        s.state == SessState::kReconnecting)
      continue;
    pfds_.push_back({iscsi_get_fd(s.ctx), static_cast<short>(iscsi_which_events(s.ctx)), 0});
    pfd_sessions_.push_back(&s);
  }
  if (pfds_.empty()) {
    if (max_wait_ms > 0) poll(nullptr, 0, std::min(max_wait_ms, 10));
    return;
  }
  int n = poll(pfds_.data(), pfds_.size(), max_wait_ms);
  if (n < 0) {
    if (errno == EINTR) return;
    std::perror("ringtgt-bench: poll");
    return;
  }
  for (std::size_t i = 0; i < pfds_.size(); i++) {
    Session& s = *pfd_sessions_[i];
    if (s.state == SessState::kDead || !s.ctx) continue;
    if (iscsi_service(s.ctx, pfds_[i].revents) < 0) {
      kill_session(s, iscsi_get_error(s.ctx));
    }
  }
}

void Bench::on_connect(Session& s, int status) {
  if (s.first_login) pending_connects_--;
  if (status == SCSI_STATUS_GOOD) {
    s.state = SessState::kReady;
    if (!s.first_login) {
      // The same initiator name and ISID logged in again: the target ended
      // the old session's commands first (RFC 7143 6.3.5), so what they
      // would have written has landed or never will.
      relogins_++;
      release_held(s, UINT64_MAX, 0);
    }
    s.first_login = false;
    s.relogin_deadline = 0;
    return;
  }
  if (!s.first_login) {
    // Retried from the main loop (the context is freed there, not inside its callback).
    s.state = SessState::kReconnecting;
    s.reconnect_at = now_ns() + 100000000ull;
    return;
  }
  connect_errors_++;
  std::fprintf(stderr, "ringtgt-bench: session %d: login to %s %s LUN %d failed: %s\n", s.id,
               portal_.c_str(), target_.c_str(), lun_, iscsi_get_error(s.ctx));
  s.state = SessState::kDead;
}

// Tears a session down: every command still in flight completes as an error.
// With --reconnect the session then logs in again with its ISID.
void Bench::kill_session(Session& s, const char* why) {
  if ((s.state == SessState::kDead || s.state == SessState::kReconnecting) && !s.ctx) return;
  const SessState prev = s.state;
  if (prev == SessState::kConnecting && s.first_login) {
    pending_connects_--;
    connect_errors_++;
  }
  if (prev == SessState::kReady || (prev == SessState::kConnecting && s.first_login)) {
    std::string msg = why && *why ? why : "connection lost";
    while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
    if (!o_.reconnect || !o_.quiet)
      std::fprintf(stderr, "ringtgt-bench: session %d dropped: %s\n", s.id, msg.c_str());
  }
  s.state = SessState::kDead;
  if (s.ctx) {
    iscsi_context* ctx = s.ctx;
    // Callbacks of commands in flight run inside destroy with SCSI_STATUS_CANCELLED;
    // those of task management requests do not run at all.
    iscsi_destroy_context(ctx);
    s.ctx = nullptr;
  }
  s.tmfs.clear();
  sweep_dead(s);
  bool comes_back = prev == SessState::kReady || prev == SessState::kReconnecting ||
                    (prev == SessState::kConnecting && !s.first_login);
  if (o_.reconnect && comes_back) schedule_reconnect(s);
}

void Bench::schedule_reconnect(Session& s) {
  std::uint64_t now = now_ns();
  if (s.relogin_deadline == 0)
    s.relogin_deadline = now + static_cast<std::uint64_t>(o_.relogin_timeout_s * 1e9);
  s.state = SessState::kReconnecting;
  s.reconnect_at = now + 20000000ull;
}

// Starts the login of sessions whose turn has come; a relogin that takes
// longer than --timeout is cut and tried again until --relogin-timeout.
void Bench::service_reconnects(std::uint64_t now) {
  auto login_limit = static_cast<std::uint64_t>(o_.timeout_s * 1e9);
  for (auto& sp : sessions_) {
    Session& s = *sp;
    if (s.state == SessState::kConnecting && !s.first_login && now - s.login_started > login_limit)
      kill_session(s, "relogin timed out");
    if (s.state != SessState::kReconnecting || now < s.reconnect_at) continue;
    if (s.ctx) {
      iscsi_destroy_context(s.ctx);
      s.ctx = nullptr;
    }
    if (now > s.relogin_deadline) {
      relogin_failures_++;
      std::fprintf(stderr, "ringtgt-bench: session %d could not log in again within %.1f s\n", s.id,
                   o_.relogin_timeout_s);
      s.state = SessState::kDead;
      continue;
    }
    if (!start_login(s)) {
      s.state = SessState::kReconnecting;
      s.reconnect_at = now + 100000000ull;
    }
  }
}

// Releases the held blocks a fence covers: those of commands issued before
// before_seq, or (only_seq != 0) of that one command.
void Bench::release_held(Session& s, std::uint64_t before_seq, std::uint64_t only_seq) {
  auto covered = [&](const Held& h) {
    return only_seq ? h.issue_seq == only_seq : h.issue_seq < before_seq;
  };
  for (const Held& h : s.held) {
    if (!covered(h)) continue;
    unlock(h.lba, h.nblocks);
    held_releases_++;
  }
  s.held.erase(std::remove_if(s.held.begin(), s.held.end(), covered), s.held.end());
}

// Anything libiscsi did not call back for is completed here as an error.
void Bench::sweep_dead(Session& s) {
  for (auto& io : s.ios) {
    if (io.busy) on_complete(io, SCSI_STATUS_CANCELLED);
  }
}

void Bench::verify_failure(std::uint64_t lba, const char* fmt, ...) {
  verify_failures_++;
  if (failure_lines_ > kMaxDetailLines) return;
  if (failure_lines_++ == kMaxDetailLines) {
    std::fprintf(stderr, "ringtgt-bench: (further error details suppressed)\n");
    return;
  }
  va_list ap;
  va_start(ap, fmt);
  std::fprintf(stderr, "ringtgt-bench: VERIFY FAILED at LBA %" PRIu64 ": ", lba);
  std::vfprintf(stderr, fmt, ap);
  std::fprintf(stderr, "\n");
  va_end(ap);
}

void Bench::verify_read(const Io& io, const unsigned char* data) {
  for (std::uint32_t i = 0; i < io.nblocks; i++) {
    std::uint64_t lba = io.lba + i;
    const BlockState& st = table_[lba - first_lba_];
    BlockInfo b = inspect_block(data + static_cast<std::size_t>(i) * lbs_, lbs_, lba);
    blocks_checked_++;
    const std::uint32_t acked = st.acked & kGenMask, uncertain = st.uncertain & kGenMask;
    const bool acked_unmap = st.acked & kUnmapFlag;
    const bool known = st.acked != 0 || st.uncertain != 0;
    switch (b.kind) {
      case BlockKind::kZero:
        if (acked != 0 && !acked_unmap && !(st.uncertain & kUnmapFlag))
          verify_failure(lba, "reads as zeros, but generation %u was acknowledged", acked);
        break;
      case BlockKind::kValid:
        if (!known) break;  // written before this run's table: any well-formed block will do
        if (b.gen == acked && !acked_unmap) break;
        if (b.gen > acked && b.gen <= uncertain) break;  // an unacknowledged write landed
        if (b.gen < acked)
          verify_failure(lba,
                         "stale generation %" PRIu64 " (session %u): acknowledged %s %u is lost",
                         b.gen, b.session, acked_unmap ? "UNMAP" : "write", acked);
        else
          verify_failure(lba, "unexpected generation %" PRIu64 " (acknowledged %u, uncertain %u)",
                         b.gen, acked, uncertain);
        break;
      default:
        verify_failure(lba, "%s (block claims LBA %" PRIu64 " generation %" PRIu64 ")",
                       block_kind_name(b.kind), b.lba, b.gen);
        break;
    }
  }
}

const char* kind_name(Kind k) {
  switch (k) {
    case Kind::kRead:
      return "READ(16)";
    case Kind::kWrite:
      return "WRITE(16)";
    case Kind::kCawRead:
      return "READ(16) before COMPARE AND WRITE";
    case Kind::kCaw:
      return "COMPARE AND WRITE";
    case Kind::kUnmap:
      return "UNMAP";
  }
  return "?";
}

// Whether the target's answer leaves the command's outcome unknown: no
// status came (cut off, cancelled, timed out), so it may still land.
bool outcome_unknown(const Io& io, int status) {
  return io.timed_out || !io.task || status == SCSI_STATUS_CANCELLED ||
         status == SCSI_STATUS_ERROR || status == SCSI_STATUS_TIMEOUT;
}

// Counts the command's answer; true when it succeeded.
bool Bench::account(Io& io, int status) {
  std::uint64_t lat = now_ns() - io.start_ns;
  Session& s = *io.session;
  OpStats& st = io.write ? wr_ : rd_;
  scsi_task* task = io.task;
  std::uint64_t bytes = io.kind == Kind::kUnmap ? 0 : static_cast<std::uint64_t>(io.nblocks) * lbs_;
  bool reads = io.kind == Kind::kRead || io.kind == Kind::kCawRead;
  bool ok = status == SCSI_STATUS_GOOD && task;
  if (ok && reads && task->datain.size < 0) ok = false;
  const char* op = kind_name(io.kind);
  if (ok && reads && static_cast<std::uint64_t>(task->datain.size) < bytes) {
    st.errors++;
    transport_errors_++;
    detail("session %d: %s LBA %" PRIu64 ": short data (%d of %" PRIu64 " bytes)", s.id, op, io.lba,
           task->datain.size, bytes);
    return false;
  }
  if (ok) {
    st.ios++;
    st.bytes += bytes;
    st.lat.record(lat);
    return true;
  }
  st.errors++;
  if (io.timed_out) {
    timeouts_++;
    detail("session %d: %s LBA %" PRIu64 " x%u: no response within %.1f s", s.id, op, io.lba,
           io.nblocks, o_.timeout_s);
  } else if (outcome_unknown(io, status)) {
    transport_errors_++;
    detail("session %d: %s LBA %" PRIu64 " x%u: %s", s.id, op, io.lba, io.nblocks,
           status == SCSI_STATUS_CANCELLED ? "cancelled (connection lost or aborted)"
                                           : (s.ctx ? iscsi_get_error(s.ctx) : "transport error"));
  } else {
    scsi_errors_++;
    if (status == SCSI_STATUS_CHECK_CONDITION && io.kind == Kind::kCaw &&
        task->sense.key == SCSI_SENSE_MISCOMPARE)
      verify_failure(io.lba, "COMPARE AND WRITE miscompares with the block just read under lock");
    else if (status == SCSI_STATUS_CHECK_CONDITION)
      detail("session %d: %s LBA %" PRIu64 " x%u: CHECK CONDITION %s (0x%x) ASC/ASCQ 0x%04x %s",
             s.id, op, io.lba, io.nblocks, scsi_sense_key_str(task->sense.key), task->sense.key,
             task->sense.ascq, scsi_sense_ascq_str(task->sense.ascq));
    else
      detail("session %d: %s LBA %" PRIu64 " x%u: SCSI status 0x%x", s.id, op, io.lba, io.nblocks,
             status);
  }
  return false;
}

// The table entry of one block after the writes that covered it answered:
// gens[i] with results[i] (1 acknowledged, 0 failed with a status, -1 unknown).
// Once any is acknowledged the block holds one of them (two overlapping
// WRITEs land in either order); otherwise each may have landed.
void Bench::set_block(std::uint64_t lba, const std::uint32_t* gens, const int* results, int n) {
  BlockState& b = table_[lba - first_lba_];
  std::uint32_t lo = gens[0], hi = gens[0], flags = 0;
  bool any_acked = false;
  for (int i = 0; i < n; i++) {
    if ((gens[i] & kGenMask) < (lo & kGenMask)) lo = gens[i];
    if ((gens[i] & kGenMask) > (hi & kGenMask)) hi = gens[i];
    flags |= gens[i] & kUnmapFlag;
    any_acked |= results[i] == 1;
  }
  if (any_acked) {
    b.acked = lo;
    b.uncertain = (hi & kGenMask) > (lo & kGenMask) ? hi : 0;
    return;
  }
  uncertain_writes_++;
  std::uint32_t top = std::max(b.uncertain & kGenMask, hi & kGenMask);
  b.uncertain = top | flags | (b.uncertain & kUnmapFlag);
}

int write_result(const Io& io, bool ok, int status) {
  if (ok) return 1;
  return outcome_unknown(io, status) ? -1 : 0;
}

// A single write-like command answered: record it, then free or hold its blocks.
void Bench::settle_write(Io& io, bool ok) {
  if (!o_.verify) return;
  int result = write_result(io, ok, io.status);
  std::uint32_t gen = io.gen | (io.kind == Kind::kUnmap ? kUnmapFlag : 0);
  for (std::uint32_t i = 0; i < io.nblocks; i++) set_block(io.lba + i, &gen, &result, 1);
  if (result == -1)
    io.session->held.push_back({io.lba, io.nblocks, io.issue_seq});
  else
    unlock(io.lba, io.nblocks);
}

// Both WRITEs of an overlapping pair answered.
void Bench::settle_pair(Io& a, Io& b) {
  const int ra = write_result(a, a.status == SCSI_STATUS_GOOD && a.task, a.status);
  const int rb = write_result(b, b.status == SCSI_STATUS_GOOD && b.task, b.status);
  const std::uint64_t end = b.lba + b.nblocks;
  for (std::uint64_t lba = a.lba; lba < end; lba++) {
    std::uint32_t gens[2];
    int results[2], n = 0;
    if (lba < a.lba + a.nblocks) gens[n] = a.gen, results[n++] = ra;
    if (lba >= b.lba) gens[n] = b.gen, results[n++] = rb;
    set_block(lba, gens, results, n);
  }
  auto span = static_cast<std::uint32_t>(end - a.lba);
  if (ra == -1 || rb == -1)
    a.session->held.push_back({a.lba, span, std::max(a.issue_seq, b.issue_seq)});
  else
    unlock(a.lba, span);
}

void Bench::finish(Io& io) {
  if (io.task) scsi_free_scsi_task(io.task);
  io.task = nullptr;
  io.busy = false;
  io.completed = false;
  io.timed_out = false;
  io.partner = nullptr;
  io.session->inflight--;
}

void Bench::on_complete(Io& io, int status) {
  if (!io.busy || io.completed) return;
  io.status = status;
  const bool ok = account(io, status);
  switch (io.kind) {
    case Kind::kRead:
      if (ok && o_.verify) verify_read(io, io.task->datain.data);
      if (o_.verify) unlock(io.lba, io.nblocks);
      break;
    case Kind::kCawRead:
      if (ok) {
        verify_read(io, io.task->datain.data);
        if (start_caw(*io.session, io, io.task->datain.data)) return;
      }
      unlock(io.lba, io.nblocks);
      break;
    case Kind::kWrite:
    case Kind::kCaw:
    case Kind::kUnmap:
      if (io.partner) {
        io.completed = true;
        Io& other = *io.partner;
        if (!other.completed) return;  // settled when the other one answers
        settle_pair(io.pair_first ? io : other, io.pair_first ? other : io);
        finish(other);
        break;
      }
      settle_write(io, ok);
      break;
  }
  finish(io);
}

bool Bench::try_lock(std::uint64_t lba, std::uint32_t n) {
  std::uint64_t rel = lba - first_lba_;
  for (std::uint32_t i = 0; i < n; i++)
    if (locked_[rel + i]) return false;
  for (std::uint32_t i = 0; i < n; i++) locked_[rel + i] = 1;
  return true;
}

void Bench::unlock(std::uint64_t lba, std::uint32_t n) {
  std::uint64_t rel = lba - first_lba_;
  for (std::uint32_t i = 0; i < n; i++) locked_[rel + i] = 0;
}

// Chooses the next I/O of session s; false when none can be issued now.
bool Bench::pick(Session& s, bool* is_write, std::uint64_t* lba, std::uint32_t* nblocks) {
  if (o_.verify_only) {
    if (verify_cursor_ >= nblocks_) return false;
    *is_write = false;
    *lba = first_lba_ + verify_cursor_;
    *nblocks =
        static_cast<std::uint32_t>(std::min<std::uint64_t>(bs_blocks_, nblocks_ - verify_cursor_));
    if (!try_lock(*lba, *nblocks)) return false;
    verify_cursor_ += *nblocks;
    return true;
  }
  switch (o_.mode) {
    case Mode::kRandRead:
    case Mode::kRead:
      *is_write = false;
      break;
    case Mode::kRandWrite:
    case Mode::kWrite:
      *is_write = true;
      break;
    case Mode::kRandRw:
    case Mode::kRw:
      *is_write = static_cast<int>(s.rng.below(100)) >= o_.rwmixread;
      break;
  }
  *nblocks = bs_blocks_;
  // Under --verify two commands never touch the same block at once, so every
  // read has exactly one acceptable answer (unless a write failed).
  for (int attempt = 0; attempt < 8; attempt++) {
    std::uint64_t slot;
    if (mode_random(o_.mode)) {
      slot = s.rng.below(slots_);
    } else {
      slot = s.seq_slot;
    }
    *lba = first_lba_ + slot * bs_blocks_;
    if (!o_.verify || try_lock(*lba, *nblocks)) {
      if (!mode_random(o_.mode)) s.seq_slot = (s.seq_slot + 1) % slots_;
      return true;
    }
    if (!mode_random(o_.mode)) return false;  // wait for the block ahead to complete
  }
  return false;
}

// Sends the command io describes; false when libiscsi cannot queue it.
bool Bench::submit(Session& s, Io& io) {
  std::uint32_t len = io.nblocks * lbs_;
  io.start_ns = now_ns();
  io.issue_seq = ++issue_seq_;
  switch (io.kind) {
    case Kind::kWrite:
      io.task = iscsi_write16_task(s.ctx, lun_, io.lba, io.buf.get(), len, static_cast<int>(lbs_),
                                   0, 0, o_.fua ? 1 : 0, 0, 0, io_cb, &io);
      break;
    case Kind::kRead:
    case Kind::kCawRead:
      io.task = iscsi_read16_task(s.ctx, lun_, io.lba, len, static_cast<int>(lbs_), 0, 0, 0, 0, 0,
                                  io_cb, &io);
      break;
    case Kind::kCaw:
      io.task = iscsi_compareandwrite_task(s.ctx, lun_, io.lba, io.buf.get(), 2 * len,
                                           static_cast<int>(lbs_), 0, 0, 0, 0, 0, io_cb, &io);
      break;
    case Kind::kUnmap:
      io.unmap = {io.lba, io.nblocks};
      io.task = iscsi_unmap_task(s.ctx, lun_, 0, 0, &io.unmap, 1, io_cb, &io);
      break;
  }
  return io.task != nullptr;
}

bool Bench::next_generation(std::uint32_t* gen) {
  if (next_gen_ >= kGenMask) {
    std::fprintf(stderr, "ringtgt-bench: generation counter exhausted\n");
    stopping_ = true;
    return false;
  }
  *gen = next_gen_++;
  return true;
}

void Bench::fill(Io& io, unsigned char* out) {
  for (std::uint32_t i = 0; i < io.nblocks; i++)
    fill_block(out + static_cast<std::size_t>(i) * lbs_, lbs_, io.lba + i, io.gen,
               static_cast<std::uint32_t>(io.session->id));
}

// The second step of a COMPARE AND WRITE: compare with the block just read
// (it is locked, so nothing else changed it) and write a new generation.
bool Bench::start_caw(Session& s, Io& io, const unsigned char* current) {
  if (stopping_ || s.state != SessState::kReady || !s.ctx) return false;
  std::uint32_t gen = 0;
  if (!next_generation(&gen)) return false;
  std::memmove(io.buf.get(), current, lbs_);
  scsi_free_scsi_task(io.task);
  io.task = nullptr;
  io.kind = Kind::kCaw;
  io.write = true;
  io.gen = gen;
  fill(io, io.buf.get() + lbs_);
  if (!submit(s, io)) return false;
  caw_++;
  return true;
}

// Chooses what a verified write becomes: a WRITE, a COMPARE AND WRITE of its
// first block, an UNMAP, or (false) the first of an overlapping pair.
bool Bench::pick_write_kind(Session& s, Io& io) {
  int roll = static_cast<int>(s.rng.below(100));
  io.kind = Kind::kWrite;
  if (roll < o_.caw_pct) {
    io.kind = Kind::kCawRead;
    io.write = false;
    unlock(io.lba + 1, io.nblocks - 1);
    io.nblocks = 1;
  } else if (roll < o_.caw_pct + o_.unmap_pct) {
    io.kind = Kind::kUnmap;
  } else if (roll < o_.caw_pct + o_.unmap_pct + o_.overlap_pct) {
    return false;
  }
  return true;
}

// Two WRITEs at once over [lba, lba+n) and [lba+n/2, lba+n/2+n): the target
// may run them in either order, so the overlap holds one or the other.
bool Bench::issue_pair(Session& s, Io& a) {
  const std::uint32_t half = a.nblocks / 2;
  Io* b = nullptr;
  for (auto& io : s.ios)
    if (!io.busy && &io != &a) b = &io;
  bool room = half > 0 && b && a.lba + a.nblocks + half <= first_lba_ + nblocks_ &&
              try_lock(a.lba + a.nblocks, half);
  if (!room) return false;
  b->kind = Kind::kWrite;
  b->write = true;
  b->lba = a.lba + half;
  b->nblocks = a.nblocks;
  b->timed_out = false;
  if (!next_generation(&a.gen) || !next_generation(&b->gen)) {
    unlock(a.lba, a.nblocks + half);
    return true;  // nothing sent; the caller stops
  }
  fill(a, a.buf.get());
  fill(*b, b->buf.get());
  if (!submit(s, a)) {
    unlock(a.lba, a.nblocks + half);
    return true;
  }
  a.busy = true;
  s.inflight++;
  issued_++;
  if (!submit(s, *b)) {
    unlock(a.lba + a.nblocks, half);  // a alone: an ordinary WRITE
    return true;
  }
  b->busy = true;
  s.inflight++;
  issued_++;
  a.partner = b;
  b->partner = &a;
  a.pair_first = true;
  b->pair_first = false;
  overlaps_++;
  return true;
}

bool Bench::issue(Session& s, Io& io) {
  bool is_write = false;
  std::uint64_t lba = 0;
  std::uint32_t nblocks = 0;
  if (!pick(s, &is_write, &lba, &nblocks)) return false;
  io.write = is_write;
  io.lba = lba;
  io.nblocks = nblocks;
  io.timed_out = false;
  io.partner = nullptr;
  io.kind = is_write ? Kind::kWrite : Kind::kRead;
  if (is_write && o_.verify && !pick_write_kind(s, io)) {
    if (issue_pair(s, io)) return a_sent(s, io);
    io.kind = Kind::kWrite;  // no room for the second: a plain WRITE
  }
  if ((io.kind == Kind::kWrite || io.kind == Kind::kUnmap) && o_.verify) {
    if (!next_generation(&io.gen)) {
      unlock(lba, nblocks);
      return false;
    }
    if (io.kind == Kind::kWrite) fill(io, io.buf.get());
    if (io.kind == Kind::kUnmap) unmaps_++;
  }
  if (!submit(s, io)) {
    if (o_.verify) unlock(io.lba, io.nblocks);
    (is_write ? wr_ : rd_).errors++;
    transport_errors_++;
    detail("session %d: cannot queue command: %s", s.id, iscsi_get_error(s.ctx));
    kill_session(s, "cannot queue a command");
    return false;
  }
  io.busy = true;
  s.inflight++;
  issued_++;
  return true;
}

// After issue_pair: whether its first WRITE went out (else the session is broken).
bool Bench::a_sent(Session& s, Io& a) {
  if (a.busy) return true;
  if (!stopping_) kill_session(s, "cannot queue a command");
  return false;
}

// --- chaos ------------------------------------------------------------------

void tmf_cb(iscsi_context*, int status, void* data, void* priv) {
  auto* t = static_cast<Tmf*>(priv);
  t->session->bench->on_tmf(*t, status, data);
}

// One random event on one random ready session.
void Bench::chaos_event() {
  int weights[static_cast<int>(Chaos::kCount)];
  int total = 0;
  for (int i = 0; i < static_cast<int>(Chaos::kCount); i++) {
    weights[i] = (o_.chaos_mask >> i) & 1 ? kChaosWeights[i] : 0;
    total += weights[i];
  }
  if (total == 0) return;
  int roll = static_cast<int>(chaos_rng_.below(static_cast<std::uint64_t>(total)));
  int what = 0;
  while (roll >= weights[what]) roll -= weights[what++];
  auto first = chaos_rng_.below(sessions_.size());
  for (std::size_t i = 0; i < sessions_.size(); i++) {
    Session& s = *sessions_[(first + i) % sessions_.size()];
    if (s.state != SessState::kReady || !s.ctx) continue;
    auto ev = static_cast<Chaos>(what);
    if (ev == Chaos::kDrop) {
      chaos_sent_[what]++;
      chaos_done_[what]++;
      kill_session(s, "chaos: connection dropped");
      return;
    }
    if (send_tmf(s, ev)) chaos_sent_[what]++;
    return;
  }
}

bool Bench::send_tmf(Session& s, Chaos what) {
  auto t = std::make_unique<Tmf>(
      Tmf{&s, what, issue_seq_ + 1, 0, iscsi_out_queue_length(s.ctx) == 0, now_ns()});
  int rc = -1;
  switch (what) {
    case Chaos::kAbortTask: {
      std::vector<Io*> cands;
      for (auto& io : s.ios)
        if (io.busy && !io.completed && io.task) cands.push_back(&io);
      if (cands.empty()) return false;
      Io& victim = *cands[chaos_rng_.below(cands.size())];
      t->abort_seq = victim.issue_seq;
      Tmf* raw = t.get();
      s.tmfs.push_back(std::move(t));
      // libiscsi cancels the task locally: its callback may run right here.
      if (iscsi_task_mgmt_abort_task_async(s.ctx, victim.task, tmf_cb, raw) != 0) s.tmfs.pop_back();
      return true;
    }
    case Chaos::kAbortTaskSet:
      rc = iscsi_task_mgmt_abort_task_set_async(s.ctx, static_cast<std::uint32_t>(lun_), tmf_cb,
                                                t.get());
      break;
    case Chaos::kLuReset:
      rc =
          iscsi_task_mgmt_lun_reset_async(s.ctx, static_cast<std::uint32_t>(lun_), tmf_cb, t.get());
      break;
    case Chaos::kTargetReset:
      rc = iscsi_task_mgmt_target_warm_reset_async(s.ctx, tmf_cb, t.get());
      break;
    default:
      return false;
  }
  if (rc != 0) return false;
  s.tmfs.push_back(std::move(t));
  return true;
}

// The answer to a task management request: "function complete" (or "task
// does not exist") means the commands it covers are gone from the target, so
// their blocks are free again. A reset also ended the other sessions'
// commands, which get no answer: those sessions are dropped and log in again.
void Bench::on_tmf(Tmf& t, int status, void* data) {
  Session& s = *t.session;
  auto what = static_cast<int>(t.what);
  std::uint32_t response =
      status == SCSI_STATUS_GOOD && data ? *static_cast<std::uint32_t*>(data) : 0xffffffffu;
  if (response == ISCSI_TMR_FUNC_COMPLETE || response == ISCSI_TMR_TASK_DOES_NOT_EXIST) {
    chaos_done_[what]++;
    // Without a fence, the blocks of commands that may have gone out after it
    // wait for a relogin.
    if (t.fences && t.what == Chaos::kAbortTask)
      release_held(s, 0, t.abort_seq);
    else if (t.fences)
      release_held(s, t.sent_seq, 0);
  } else {
    detail("session %d: %s answered %s %u", s.id, kChaosNames[what],
           status == SCSI_STATUS_GOOD ? "response" : "status",
           status == SCSI_STATUS_GOOD ? response : static_cast<std::uint32_t>(status));
  }
  Chaos kind = t.what;
  std::uint64_t sent = t.sent_seq;
  s.tmfs.erase(std::remove_if(s.tmfs.begin(), s.tmfs.end(),
                              [&](const std::unique_ptr<Tmf>& p) { return p.get() == &t; }),
               s.tmfs.end());
  if (kind == Chaos::kLuReset || kind == Chaos::kTargetReset) drop_others_after_reset(s, sent);
}

void Bench::drop_others_after_reset(const Session& sender, std::uint64_t sent_seq) {
  for (auto& sp : sessions_) {
    Session& o = *sp;
    if (&o == &sender || o.state != SessState::kReady) continue;
    bool ended = false;
    for (auto& io : o.ios) ended |= io.busy && !io.completed && io.issue_seq < sent_seq;
    if (ended) reset_victims_.push_back(&o);
  }
}

void Bench::top_up(Session& s) {
  for (auto& io : s.ios) {
    if (stopping_ || s.state != SessState::kReady) return;
    if (o_.ios && issued_ >= o_.ios) return;
    if (io.busy) continue;
    if (!issue(s, io)) return;
  }
}

// A task management request unanswered after --timeout: the target hangs in
// it (it answers once the commands it ends are gone, which takes no longer
// than the commands themselves). Counted as a failure; the session is dropped.
bool Bench::tmf_stuck(Session& s, std::uint64_t now, std::uint64_t limit) {
  for (const auto& t : s.tmfs) {
    if (now <= t->sent_ns || now - t->sent_ns <= limit) continue;
    tmf_timeouts_++;
    std::fprintf(stderr, "ringtgt-bench: session %d: %s unanswered after %.1f s\n", s.id,
                 kChaosNames[static_cast<int>(t->what)], o_.timeout_s);
    kill_session(s, "task management request timed out");
    return true;
  }
  return false;
}

void Bench::check_timeouts(std::uint64_t now) {
  auto limit = static_cast<std::uint64_t>(o_.timeout_s * 1e9);
  for (auto& sp : sessions_) {
    Session& s = *sp;
    if (s.state != SessState::kReady) continue;
    if (tmf_stuck(s, now, limit)) continue;
    if (s.inflight == 0) continue;
    bool stuck = false;
    for (auto& io : s.ios) {
      if (io.busy && now > io.start_ns && now - io.start_ns > limit) {
        io.timed_out = true;
        stuck = true;
      }
    }
    if (stuck) kill_session(s, "command timed out");
  }
}

// Starts a login of s with its ISID (the same one every time: a second login
// reinstates the session).
bool Bench::start_login(Session& s) {
  s.ctx = iscsi_create_context(o_.initiator.c_str());
  if (!s.ctx) {
    std::fprintf(stderr, "ringtgt-bench: cannot create an iSCSI context\n");
    return false;
  }
  iscsi_set_targetname(s.ctx, target_.c_str());
  iscsi_set_session_type(s.ctx, ISCSI_SESSION_NORMAL);
  iscsi_set_header_digest(s.ctx, ISCSI_HEADER_DIGEST_NONE_CRC32C);
  iscsi_set_noautoreconnect(s.ctx, 1);
  // A distinct ISID per session: each is its own I_T nexus.
  iscsi_set_isid_random(s.ctx, s.isid_rnd, static_cast<std::uint32_t>(s.id));
  if (!user_.empty()) iscsi_set_initiator_username_pwd(s.ctx, user_.c_str(), passwd_.c_str());
  s.state = SessState::kConnecting;
  s.login_started = now_ns();
  if (iscsi_full_connect_async(s.ctx, portal_.c_str(), lun_, connect_cb, &s) != 0) {
    if (s.first_login)
      std::fprintf(stderr, "ringtgt-bench: session %d: connect to %s failed: %s\n", s.id,
                   portal_.c_str(), iscsi_get_error(s.ctx));
    iscsi_destroy_context(s.ctx);
    s.ctx = nullptr;
    return false;
  }
  return true;
}

bool Bench::connect_all() {
  for (int i = 0; i < o_.sessions; i++) {
    auto s = std::make_unique<Session>();
    s->id = i;
    s->bench = this;
    s->rng.s = o_.seed + 0x1000193ull * static_cast<std::uint64_t>(i + 1);
    s->isid_rnd = static_cast<std::uint32_t>(s->rng.next() & 0xffffff);
    s->ios.resize(static_cast<std::size_t>(o_.qd));
    for (auto& io : s->ios) {
      io.session = s.get();
      io.buf.reset(new unsigned char[o_.bs]);
      // Incompressible payload for plain writes (verify fills blocks per write).
      Rng r{s->rng.next()};
      for (std::uint64_t off = 0; off + 8 <= o_.bs; off += 8) {
        std::uint64_t w = r.next();
        std::memcpy(io.buf.get() + off, &w, 8);
      }
    }
    if (!start_login(*s)) {
      connect_errors_++;
      s->state = SessState::kDead;
    } else {
      pending_connects_++;
    }
    sessions_.push_back(std::move(s));
  }
  std::uint64_t deadline = now_ns() + static_cast<std::uint64_t>(o_.timeout_s * 1e9);
  while (pending_connects_ > 0 && !g_interrupted) {
    std::uint64_t now = now_ns();
    if (now >= deadline) break;
    pump(static_cast<int>(std::min<std::uint64_t>((deadline - now) / 1000000 + 1, 100)));
  }
  for (auto& s : sessions_) {
    if (s->state == SessState::kConnecting) kill_session(*s, "login timed out");
  }
  return connect_errors_ == 0 && !g_interrupted;
}

void readcap_cb(iscsi_context*, int status, void* data, void* priv);

struct ReadCapCtx {
  Bench* bench;
  bool done = false;
  int status = 0;
  scsi_task* task = nullptr;
};

void readcap_cb(iscsi_context*, int status, void* data, void* priv) {
  auto* c = static_cast<ReadCapCtx*>(priv);
  c->done = true;
  c->status = status;
  c->task = static_cast<scsi_task*>(data);
}

bool Bench::read_capacity() {
  Session& s = *sessions_.front();
  ReadCapCtx c{this};
  scsi_task* task = iscsi_readcapacity16_task(s.ctx, lun_, readcap_cb, &c);
  if (!task) {
    std::fprintf(stderr, "ringtgt-bench: READ CAPACITY(16): %s\n", iscsi_get_error(s.ctx));
    return false;
  }
  std::uint64_t deadline = now_ns() + static_cast<std::uint64_t>(o_.timeout_s * 1e9);
  while (!c.done && s.state == SessState::kReady && now_ns() < deadline && !g_interrupted)
    pump(100);
  if (!c.done) {
    kill_session(s, "READ CAPACITY(16) got no answer");  // calls back, then task is ours
    if (!c.done) scsi_free_scsi_task(task);
    return false;
  }
  bool ok = false;
  if (c.status == SCSI_STATUS_GOOD) {
    auto* rc = static_cast<scsi_readcapacity16*>(scsi_datain_unmarshall(task));
    if (rc) {
      lbs_ = rc->block_length;
      lun_blocks_ = rc->returned_lba + 1;
      ok = lbs_ >= 512 && lbs_ <= 65536;
      if (!ok) std::fprintf(stderr, "ringtgt-bench: odd block length %u\n", lbs_);
    } else {
      std::fprintf(stderr, "ringtgt-bench: READ CAPACITY(16): cannot decode the answer\n");
    }
  } else {
    std::fprintf(stderr, "ringtgt-bench: READ CAPACITY(16) failed: %s\n",
                 s.ctx ? iscsi_get_error(s.ctx) : "session lost");
  }
  scsi_free_scsi_task(task);
  return ok;
}

bool Bench::setup_range() {
  std::uint64_t lun_bytes = lun_blocks_ * lbs_;
  if (o_.bs % lbs_) {
    std::fprintf(stderr,
                 "ringtgt-bench: --bs %" PRIu64 " is not a multiple of the LUN block size %u\n",
                 o_.bs, lbs_);
    return false;
  }
  if (o_.offset % lbs_ || o_.range % lbs_) {
    std::fprintf(stderr,
                 "ringtgt-bench: --offset and --range must be multiples of the block size %u\n",
                 lbs_);
    return false;
  }
  if (o_.offset >= lun_bytes) {
    std::fprintf(stderr,
                 "ringtgt-bench: --offset %" PRIu64 " is beyond the LUN (%" PRIu64 " bytes)\n",
                 o_.offset, lun_bytes);
    return false;
  }
  std::uint64_t range = o_.range ? o_.range : lun_bytes - o_.offset;
  if (range > lun_bytes - o_.offset) {
    std::fprintf(stderr, "ringtgt-bench: --offset + --range exceed the LUN (%" PRIu64 " bytes)\n",
                 lun_bytes);
    return false;
  }
  first_lba_ = o_.offset / lbs_;
  nblocks_ = range / lbs_;
  bs_blocks_ = static_cast<std::uint32_t>(o_.bs / lbs_);
  slots_ = nblocks_ / bs_blocks_;
  if (slots_ == 0 && !o_.verify_only) {
    std::fprintf(stderr, "ringtgt-bench: the range (%" PRIu64 " bytes) is smaller than --bs\n",
                 range);
    return false;
  }
  if (o_.verify) {
    constexpr std::uint64_t kMaxTableBlocks = 256ull << 20;  // 2.25 GiB of tables
    if (nblocks_ > kMaxTableBlocks) {
      std::fprintf(stderr,
                   "ringtgt-bench: --verify keeps 9 bytes per block; %" PRIu64
                   " blocks is too many, limit the span with --range\n",
                   nblocks_);
      return false;
    }
    table_.assign(nblocks_, BlockState{});
    locked_.assign(nblocks_, 0);
  }
  if (o_.caw_pct && o_.bs < 2ull * lbs_)  // a COMPARE AND WRITE carries two blocks
    for (auto& s : sessions_)
      for (auto& io : s->ios) io.buf.reset(new unsigned char[2ull * lbs_]);
  // Sequential sessions start spread over the range.
  for (auto& s : sessions_)
    s->seq_slot = slots_ ? slots_ * static_cast<std::uint64_t>(s->id) / sessions_.size() : 0;
  return true;
}

bool Bench::load_state() {
  VerifyState st;
  std::string why = read_verify_state(o_.load_state, st);
  if (why.empty() &&
      (st.block_size != lbs_ || st.first_lba != first_lba_ || st.table.size() != nblocks_)) {
    char line[256];
    std::snprintf(line, sizeof line,
                  "%s was saved for block size %u, LBAs %" PRIu64
                  "+%zu; this run uses block size "
                  "%u, LBAs %" PRIu64 "+%" PRIu64 " (use the same --offset/--range)",
                  o_.load_state.c_str(), st.block_size, st.first_lba, st.table.size(), lbs_,
                  first_lba_, nblocks_);
    why = line;
  }
  if (!why.empty()) {
    std::fprintf(stderr, "ringtgt-bench: --load-state %s\n", why.c_str());
    return false;
  }
  table_ = std::move(st.table);
  next_gen_ = std::max<std::uint32_t>(st.next_gen, 1);
  return true;
}

bool Bench::save_state() {
  const std::string why =
      write_verify_state(o_.save_state, VerifyState{lbs_, first_lba_, next_gen_, table_});
  if (!why.empty()) std::fprintf(stderr, "ringtgt-bench: --save-state %s\n", why.c_str());
  return why.empty();
}

// Logs every idle session out (bounded), then frees every context.
void Bench::finish_sessions() {
  int waiting = 0;
  for (auto& sp : sessions_) {
    Session& s = *sp;
    if (s.state == SessState::kReady && s.inflight == 0 && s.ctx) {
      if (iscsi_logout_async(s.ctx, logout_cb, &s) == 0) {
        s.state = SessState::kLoggingOut;
        waiting++;
      }
    }
  }
  std::uint64_t deadline = now_ns() + 2000000000ull;
  while (waiting > 0 && now_ns() < deadline) {
    pump(50);
    waiting = 0;
    for (auto& s : sessions_)
      if (s->state == SessState::kLoggingOut) waiting++;
  }
  for (auto& sp : sessions_) {
    Session& s = *sp;
    if (s.ctx) {
      s.state = SessState::kDone;  // no "dropped" message for a finished session
      iscsi_context* ctx = s.ctx;
      iscsi_destroy_context(ctx);
      s.ctx = nullptr;
      sweep_dead(s);
    }
  }
}

int Bench::run() {
  iscsi_context* pctx = iscsi_create_context(o_.initiator.c_str());
  if (!pctx) {
    std::fprintf(stderr, "ringtgt-bench: cannot create an iSCSI context\n");
    return 1;
  }
  iscsi_url* url = iscsi_parse_full_url(pctx, o_.url.c_str());
  if (!url) {
    std::fprintf(stderr, "ringtgt-bench: bad --url '%s': %s\n", o_.url.c_str(),
                 iscsi_get_error(pctx));
    iscsi_destroy_context(pctx);
    return 2;
  }
  portal_ = url->portal;
  target_ = url->target;
  lun_ = url->lun;
  user_ = url->user;
  passwd_ = url->passwd;
  iscsi_destroy_url(url);
  iscsi_destroy_context(pctx);

  bool ok = connect_all() && read_capacity();
  int setup_rc = 1;
  if (ok && !setup_range()) {
    ok = false;
    setup_rc = 2;
  }
  if (ok && !o_.load_state.empty() && !load_state()) {
    ok = false;
    setup_rc = 2;
  }
  if (!ok) {
    finish_sessions();
    return setup_rc;
  }

  std::uint64_t start = now_ns();
  std::uint64_t end =
      o_.runtime_s > 0 ? start + static_cast<std::uint64_t>(o_.runtime_s * 1e9) : UINT64_MAX;
  std::uint64_t timeout_ns = static_cast<std::uint64_t>(o_.timeout_s * 1e9);
  std::uint64_t stop_at = 0;
  std::uint64_t next_scan = start + 100000000ull;
  const auto relogin_ns = static_cast<std::uint64_t>(o_.relogin_timeout_s * 1e9);
  chaos_rng_.s = o_.seed ^ 0xC4A05C4A05ull;
  next_chaos_ns_ = start + (o_.chaos_rate > 0 ? chaos_gap_ns() : 0);
  if (o_.chaos_rate > 0 || o_.reconnect)
    std::fprintf(stderr, "ringtgt-bench: seed %" PRIu64 " (chaos %.2f/s; replay with --seed)\n",
                 o_.seed, o_.chaos_rate);
  for (;;) {
    std::uint64_t now = now_ns();
    if (!stopping_) {
      bool done = now >= end || g_interrupted || (o_.ios && issued_ >= o_.ios) ||
                  (o_.verify_only && verify_cursor_ >= nblocks_) || !any_alive();
      if (done) {
        stopping_ = true;
        stop_at = now;
      }
    }
    if (!stopping_ && o_.chaos_rate > 0 && now >= next_chaos_ns_) {
      chaos_event();
      next_chaos_ns_ = now + chaos_gap_ns();
    }
    if (o_.reconnect) service_reconnects(now);
    if (!stopping_)
      for (auto& s : sessions_) top_up(*s);
    if (stopping_) {
      // Sessions on their way back in finish logging in (or run out of time).
      if (inflight_total() == 0 && !any_relogging()) break;
      if (now - stop_at > timeout_ns + (o_.reconnect ? relogin_ns : 0)) {
        // The target stopped answering: give up on what is still in flight.
        for (auto& s : sessions_) {
          if (s->inflight == 0) continue;
          for (auto& io : s->ios)
            if (io.busy) io.timed_out = true;
          kill_session(*s, "no answer while draining");
        }
        break;
      }
    }
    if (now >= next_scan) {
      check_timeouts(now_ns());
      next_scan = now + 100000000ull;
    }
    int wait_ms = 100;
    if (!stopping_ && end != UINT64_MAX)
      wait_ms =
          static_cast<int>(std::min<std::uint64_t>(end > now ? (end - now) / 1000000 + 1 : 0, 100));
    if (o_.chaos_rate > 0 && !stopping_)
      wait_ms = static_cast<int>(
          std::min<std::uint64_t>(static_cast<std::uint64_t>(wait_ms),
                                  next_chaos_ns_ > now ? (next_chaos_ns_ - now) / 1000000 + 1 : 0));
    pump(wait_ms);
    drop_reset_victims();
  }
  double elapsed = static_cast<double>(now_ns() - start) / 1e9;
  finish_sessions();
  if (!o_.save_state.empty()) save_state();
  report(elapsed);
  std::uint64_t errors = rd_.errors + wr_.errors + connect_errors_;
  // Under --reconnect I/O errors are the chaos itself; what must not happen
  // is a wrong block, a failed first login, or a session that cannot come back.
  if (o_.reconnect)
    return (verify_failures_ || connect_errors_ || relogin_failures_ || tmf_timeouts_) ? 1 : 0;
  return (errors || verify_failures_) ? 1 : 0;
}

// Exponentially distributed gaps: events at --chaos per second on average.
std::uint64_t Bench::chaos_gap_ns() {
  double u = static_cast<double>(chaos_rng_.next() >> 11) / 9007199254740992.0;
  return static_cast<std::uint64_t>(-std::log1p(-u) / o_.chaos_rate * 1e9);
}

void Bench::drop_reset_victims() {
  std::vector<Session*> victims;
  victims.swap(reset_victims_);
  for (Session* v : victims)
    if (v->state == SessState::kReady)
      kill_session(*v, "chaos: a reset from another session ended its commands");
}

nlohmann::json op_json(const OpStats& s, double elapsed) {
  auto us = [](double ns) { return std::round(ns / 100.0) / 10.0; };
  return {
      {"ios", s.ios},
      {"bytes", s.bytes},
      {"iops", elapsed > 0 ? std::round(static_cast<double>(s.ios) / elapsed * 10) / 10 : 0.0},
      {"mib_s", elapsed > 0
                    ? std::round(static_cast<double>(s.bytes) / 1048576.0 / elapsed * 100) / 100
                    : 0.0},
      {"errors", s.errors},
      {"lat_us",
       {{"min", us(static_cast<double>(s.lat.min()))},
        {"mean", us(s.lat.mean())},
        {"p50", us(s.lat.percentile(0.50))},
        {"p99", us(s.lat.percentile(0.99))},
        {"p99_9", us(s.lat.percentile(0.999))},
        {"max", us(static_cast<double>(s.lat.max()))}}},
  };
}

void Bench::report(double elapsed) {
  OpStats tot;
  tot.ios = rd_.ios + wr_.ios;
  tot.bytes = rd_.bytes + wr_.bytes;
  tot.errors = rd_.errors + wr_.errors;
  tot.lat.merge(rd_.lat);
  tot.lat.merge(wr_.lat);
  std::uint64_t errors = tot.errors + connect_errors_;

  FILE* out = o_.json ? stderr : stdout;
  std::fprintf(out,
               "ringtgt-bench: %s bs=%" PRIu64 " qd=%d sessions=%d%s, LUN %u x %" PRIu64
               " blocks, range %" PRIu64 "+%" PRIu64 " blocks, %.2f s\n",
               o_.verify_only ? "verify-only" : mode_name(o_.mode), o_.bs, o_.qd, o_.sessions,
               o_.verify ? " verify" : "", lbs_, lun_blocks_, first_lba_, nblocks_, elapsed);
  std::fprintf(out, "%-6s %10s %11s %9s %10s %10s %10s %10s %7s\n", "op", "ios", "IOPS", "MiB/s",
               "p50 us", "p99 us", "p99.9 us", "max us", "errors");
  auto row = [&](const char* name, const OpStats& s) {
    double iops = elapsed > 0 ? static_cast<double>(s.ios) / elapsed : 0;
    double mib = elapsed > 0 ? static_cast<double>(s.bytes) / 1048576.0 / elapsed : 0;
    std::fprintf(out, "%-6s %10" PRIu64 " %11.1f %9.2f %10.1f %10.1f %10.1f %10.1f %7" PRIu64 "\n",
                 name, s.ios, iops, mib, s.lat.percentile(0.5) / 1000,
                 s.lat.percentile(0.99) / 1000, s.lat.percentile(0.999) / 1000,
                 static_cast<double>(s.lat.max()) / 1000, s.errors);
  };
  row("read", rd_);
  row("write", wr_);
  row("total", tot);
  std::fprintf(out,
               "errors: %" PRIu64 " (scsi %" PRIu64 ", transport %" PRIu64 ", timeout %" PRIu64
               ", connect %" PRIu64 ")\n",
               errors, scsi_errors_, transport_errors_, timeouts_, connect_errors_);
  if (o_.verify)
    std::fprintf(out,
                 "verify: %" PRIu64 " blocks checked, %" PRIu64 " failures, %" PRIu64
                 " unacknowledged writes\n",
                 blocks_checked_, verify_failures_, uncertain_writes_);
  if (o_.reconnect || caw_ || unmaps_ || overlaps_) {
    std::fprintf(out,
                 "ops: compare-and-write %" PRIu64 ", unmap %" PRIu64 ", overlapping pairs %" PRIu64
                 "\n",
                 caw_, unmaps_, overlaps_);
    std::fprintf(out, "chaos: seed %" PRIu64, o_.seed);
    for (int i = 0; i < static_cast<int>(Chaos::kCount); i++)
      std::fprintf(out, ", %s %" PRIu64 "/%" PRIu64, kChaosNames[i], chaos_done_[i],
                   chaos_sent_[i]);
    std::fprintf(out,
                 "; relogins %" PRIu64 " (failed %" PRIu64 "), held ranges released %" PRIu64
                 ", task management timeouts %" PRIu64 "\n",
                 relogins_, relogin_failures_, held_releases_, tmf_timeouts_);
  }

  if (!o_.json) return;
  nlohmann::json j = {
      {"tool", "ringtgt-bench"},
      {"config",
       {{"url", o_.url},
        {"rw", o_.verify_only ? "verify-only" : mode_name(o_.mode)},
        {"rwmixread", o_.rwmixread},
        {"bs", o_.bs},
        {"qd", o_.qd},
        {"sessions", o_.sessions},
        {"runtime_s", o_.runtime_s},
        {"ios_limit", o_.ios},
        {"offset", first_lba_ * lbs_},
        {"range", nblocks_ * lbs_},
        {"verify", o_.verify},
        {"seed", o_.seed},
        {"lun_block_size", lbs_},
        {"lun_blocks", lun_blocks_}}},
      {"elapsed_s", std::round(elapsed * 1000) / 1000},
      {"read", op_json(rd_, elapsed)},
      {"write", op_json(wr_, elapsed)},
      {"total", op_json(tot, elapsed)},
      {"iops", op_json(tot, elapsed)["iops"]},
      {"mib_s", op_json(tot, elapsed)["mib_s"]},
      {"errors", errors},
      {"error_detail",
       {{"scsi", scsi_errors_},
        {"transport", transport_errors_},
        {"timeout", timeouts_},
        {"connect", connect_errors_}}},
      {"verify",
       {{"enabled", o_.verify},
        {"blocks_checked", blocks_checked_},
        {"failures", verify_failures_},
        {"unacknowledged_writes", uncertain_writes_}}},
      {"verify_failures", verify_failures_},
      {"relogins", relogins_},
      {"relogin_failures", relogin_failures_},
      {"tmf_timeouts", tmf_timeouts_},
  };
  for (int i = 0; i < static_cast<int>(Chaos::kCount); i++)
    j["chaos"][kChaosNames[i]] = {{"sent", chaos_sent_[i]}, {"done", chaos_done_[i]}};
  std::printf("%s\n", j.dump(2).c_str());
}

void on_signal(int) {
  g_interrupted = 1;
}

}  // namespace
}  // namespace ringtgt::bench

int main(int argc, char** argv) {
  using namespace ringtgt::bench;
  Options o = parse_options(argc, argv);
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);
  Bench b(std::move(o));
  return b.run();
}
