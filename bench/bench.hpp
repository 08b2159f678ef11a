// ringtgt-bench's engine: sessions (one libiscsi context each) keeping
// --qd commands in flight from one poll() loop, the verify table that checks
// every block read against what was acknowledged, and the chaos driver. The
// class's parts live in one file per concept: ringtgt_bench.cpp (sessions and
// I/O), verify_table.cpp, chaos.cpp, report.cpp.
#pragma once

#include <iscsi/iscsi.h>
#include <iscsi/scsi-lowlevel.h>
#include <poll.h>
#include <signal.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "block_format.hpp"
#include "histogram.hpp"
#include "options.hpp"
#include "verify_state.hpp"

namespace ringtgt::bench {

inline constexpr int kMaxDetailLines = 20;

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
  scsi_task* login_tur = nullptr;  // the TEST UNIT READY that ends a login
  int login_unit_attentions = 0;
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
  void on_tcp_connected(Session& s, int status);
  void on_login(Session& s, int status);
  void on_login_tur(Session& s, int status);
  void on_connect(Session& s, int status);
  void on_complete(Io& io, int status);
  void on_logout(Session& s) { s.state = SessState::kDone; }
  void on_tmf(Tmf& t, int status, void* data);

 private:
  bool connect_all();
  bool start_login(Session& s);
  void send_login_tur(Session& s);
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

// The command's name in messages.
const char* kind_name(Kind k);
// Whether the target's answer leaves the command's outcome unknown: no
// status came (cut off, cancelled, timed out), so it may still land.
bool outcome_unknown(const Io& io, int status);

}  // namespace ringtgt::bench
