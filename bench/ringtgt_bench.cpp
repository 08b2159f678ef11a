// ringtgt-bench: a load generator and data verifier for iSCSI targets, built on
// libiscsi's asynchronous API (no kernel initiator needed).
//
// One thread. Each session is its own iscsi_context (own TCP connection and
// iSCSI session) to the same target LUN and keeps --qd commands in flight; one
// poll() loop services every session. See bench/README.md for the options, the
// verify rules and the output format.
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "bench.hpp"

namespace ringtgt::bench {

namespace {
volatile sig_atomic_t g_interrupted = 0;
}  // namespace

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

void Bench::top_up(Session& s) {
  for (auto& io : s.ios) {
    if (stopping_ || s.state != SessState::kReady) return;
    if (o_.ios && issued_ >= o_.ios) return;
    if (io.busy) continue;
    if (!issue(s, io)) return;
  }
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

namespace {
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
