// A mirrored LUN (docs/replication.md): the primary and its copies, each a
// backend of its own on the same reactor ring, written in parallel and
// acknowledged once ack_quorum of them hold the write durably.
//
// - Writes, zeroings, unmaps and flushes go to every in-sync copy at once.
//   Writes and flushes are answered once ack_quorum in-sync copies hold them, when the
//   copies still writing come after every copy that holds them (the order of
//   copies is the order reads and a crash's resync take their source in;
//   the LUN factory puts local copies before remote ones). The copies behind
//   go on writing from a private copy of the data; a read of a copy with such
//   a write in flight waits for the writes that overlap it. Otherwise (a
//   copy earlier in the order is the slow one, too much is already behind,
//   or no owner is set) the caller hears once every copy has answered.
// - A copy whose I/O fails (or that ringtgtctl copy fail takes out) leaves
//   the in-sync set at once, logged with its name and why. From then on
//   every write, zeroing and unmap it misses marks the regions it touches in
//   the copy's dirty-region bitmap, and a resync (ringtgtctl copy resync)
//   copies only those regions from an in-sync copy while the LUN serves I/O
//   (resync_job.hpp). The copy rejoins the in-sync set when none is dirty.
// - While fewer than ack_quorum copies are in sync, writes and flushes are
//   answered with the quorum-loss policy's error (kQuorumLostError or
//   kQuorumReadOnlyError) and touch no copy; reads go on.
// - Overlapping writes start in arrival order, one after the other
//   (RangeOrder), so that every copy applies them in the same order.
// - Reads come from the first in-sync copy (the primary while it is in
//   sync). A read that fails there is read from the next in-sync copy and
//   the good data written back to the failing one: read repair.
#pragma once

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "ringtgt/metrics/mirror_counters.hpp"
#include "ringtgt/storage/backend.hpp"
#include "ringtgt/storage/range_order.hpp"

namespace ringtgt::storage {

// What writes get below quorum (the SCSI layer maps them to sense, see
// scsi::sense::for_io_error): fail answers ABORTED COMMAND, which Linux
// retries and then fails upward; read_only answers DATA PROTECT; wait holds
// them until the quorum is back or quorum_wait has passed, and then answers
// as fail does.
enum class QuorumLossAction { fail, wait, read_only };
inline constexpr int kQuorumLostError = -ENOLINK;
inline constexpr int kQuorumReadOnlyError = -EROFS;

struct MirrorCopy {
  std::string name;  // "primary" for the LUN's own path
  std::string failure_domain;
  std::unique_ptr<Backend> backend;
  // Where the store is (its path or URL), kept in the state file: a copy
  // whose location changed between two runs is a new store (a full sync).
  // Empty: not known (unit tests), never compared.
  std::string location;
};

struct MirrorOptions {
  std::string lun_label;  // "target T LUN n", for log lines
  std::uint32_t ack_quorum = 1;
  QuorumLossAction on_quorum_loss = QuorumLossAction::fail;
  // How long a write waits for the quorum under QuorumLossAction::wait.
  std::chrono::nanoseconds quorum_wait = std::chrono::seconds(20);
  std::uint64_t region_size = std::uint64_t{1} << 20;    // of the dirty-region bitmaps
  std::uint64_t resync_rate = std::uint64_t{100} << 20;  // bytes per second; 0: unpaced
  // At most this much data of writes answered before every copy held them
  // may still be in flight; beyond it, writes wait for every copy again
  // (back-pressure from a slow copy instead of unbounded memory).
  std::uint64_t max_behind_bytes = std::uint64_t{64} << 20;
  // The activity log and bitmaps, durable across restarts (activity_log.hpp);
  // empty: kept in memory only (unit tests).
  std::string state_path;
  // What the LUN survives (lun/redundancy.hpp), for ringtgtctl and /metrics.
  std::string redundancy;
  bool redundancy_warning = false;  // copies meant to protect each other share a domain
};

class ActivityLog;
class DirtyBitmap;
class QuorumWait;
class ResyncJob;

class MirroredBackend final : public Backend {
 public:
  // At most this many copies, the primary included (the config allows 1 + 7).
  static constexpr std::size_t kMaxCopies = 8;

  // copies[0] is the primary; every copy at least as large as it (the LUN
  // factory checks, naming the copy). Throws std::invalid_argument otherwise.
  MirroredBackend(std::vector<MirrorCopy> copies, MirrorOptions options);
  ~MirroredBackend() override;

  // Kept here, not read from the primary's store: a replaced primary's store
  // is swapped while reactors ask (copy replace).
  std::uint64_t size_bytes() const override { return size_bytes_.load(std::memory_order_acquire); }
  WriteAckPolicy ack_policy() const override { return ack_policy_; }
  void read(void* buf, std::size_t len, std::uint64_t offset, IoOp* op) override;
  void write(const void* buf, std::size_t len, std::uint64_t offset, bool fua, IoOp* op) override;
  void flush(IoOp* op) override;
  bool can_unmap() const override { return can_unmap_; }
  void unmap(std::uint64_t offset, std::uint64_t len, IoOp* op, bool more_follow = false) override;
  void write_zeroes(std::uint64_t offset, std::uint64_t len, bool fua, IoOp* op) override;
  Extent extent_at(std::uint64_t offset, std::uint64_t max_len) override;
  void grow_to(std::uint64_t bytes) override;
  std::string describe() const override;

  // The logical unit that owns this backend. An I/O answered before its
  // slowest copy holds a reference to it until that copy is done: the task
  // that held the LU is gone by then. Without an owner every I/O is answered
  // once every copy has answered.
  void set_owner(std::weak_ptr<void> owner) { owner_ = std::move(owner); }
  // Before another MirroredBackend takes these copies over (a reload that
  // replaces or removes the LU): held, writes are answered once every copy
  // has answered, and once nothing_behind() every write answered so far is
  // on every copy it went to. The new LU's writes to the same blocks cannot
  // then reach a copy before an older write still behind there.
  void hold_early_answers(bool hold) { early_answers_held_.store(hold); }
  bool nothing_behind() const { return behind_ios_.load(std::memory_order_seq_cst) == 0; }

  // --- the copies, for the admin socket, metrics and tests ---
  std::size_t copy_count() const { return copies_.size(); }
  const std::string& copy_name(std::size_t i) const { return copies_[i].name; }
  const std::string& copy_location(std::size_t i) const { return copies_[i].location; }
  // Control plane only: a replacement swaps it there (copy replace).
  Backend& copy_backend(std::size_t i) { return *copies_[i].backend; }
  bool in_sync(std::size_t i) const;
  std::size_t in_sync_count() const { return in_sync_count_.load(std::memory_order_acquire); }
  std::uint32_t ack_quorum() const { return options_.ack_quorum; }
  std::shared_ptr<const metrics::MirrorCounters> mirror_counters() const override {
    return counters_;
  }
  // Takes copy i out of the in-sync set, or stops its resync (once; later
  // calls do nothing), and logs "copy NAME of LUN out of sync: WHAT failed:
  // strerror(-error)" (error 0: "... out of sync: WHAT", a request). The
  // writes it misses from now on mark its bitmap.
  void mark_out_of_sync(std::size_t i, const char* what, int error);
  using CopyState = metrics::MirrorCounters::State;
  CopyState copy_state(std::size_t i) const;
  std::uint64_t dirty_bytes(std::size_t i) const;
  std::uint64_t region_size() const { return options_.region_size; }
  // Records in copy i's bitmap that it misses [offset, offset + len).
  void mark_dirty(std::size_t i, std::uint64_t offset, std::uint64_t len);

  // --- resynchronisation (ringtgtctl copy resync) ---
  // Any thread: moves copy i from out_of_sync to resyncing, so that writes
  // go to it from now on; an empty string, or why it cannot.
  std::string begin_resync(std::size_t i);
  // On a reactor thread, after begin_resync: copies copy i's dirty regions
  // from an in-sync copy at the resync rate until none is left, then puts
  // it back in the in-sync set. keep_alive (the logical unit) is held until
  // the resync ends, so a LUN removal cannot free the backend under it.
  void run_resync(std::size_t i, std::shared_ptr<void> keep_alive);
  // --- remote copies (a store that connects: Backend::connected) ---
  // Control plane, every fraction of a second: refreshes each copy's
  // connected flag (shown as the state connecting), takes a copy whose
  // store is not connected out of the in-sync set, and returns the copies
  // out of sync whose store connected again since they left it: those to
  // resync (the caller starts it as ringtgtctl copy resync does).
  std::vector<std::size_t> check_connections();
  // The copies the state file found out of sync when this LU was opened
  // (after a crash: those the hot regions may differ on; after a reload: a
  // copy added, moved or out of sync), to resync as soon as it serves; the
  // first call takes them, later ones return none (control plane only).
  std::vector<std::size_t> take_resync_at_start();
  // Before a reload hands this LU's copies to its replacement: every
  // resync stops (the copy is out of sync again with its bitmap, and the
  // replacement resumes it): the copies whose resync it stopped.
  // resyncs_stopped: true once no resync job runs any more.
  std::vector<std::size_t> stop_resyncs();
  bool resyncs_stopped() const;

  // --- replacing a copy's store (ringtgtctl copy replace) ---
  // A copy's store is swapped for a new one (a new disk or volume, a remote
  // LUN created afresh), which then gets a full sync. All on the control
  // plane: begin_replace, then (polled) replace_drained, then finish_replace;
  // the old store is destroyed by the caller once every reactor has gone
  // round its loop (a completion of it may still be returning).
  // Takes copy i out of the in-sync set for the replacement; an empty
  // string, or why not (the last copy in sync, a replacement under way).
  std::string begin_replace(std::size_t i);
  // True once no I/O is in flight on copy i's store and no resync job of it
  // runs: the store may be swapped.
  bool replace_drained(std::size_t i) const;
  // Once drained: store (at location) is copy i's from now on, every region
  // of it dirty (a full sync, by run_resync after begin_resync, or when a
  // remote store connects). Returns the old store.
  std::unique_ptr<Backend> finish_replace(std::size_t i, std::unique_ptr<Backend> store,
                                          std::string location);
  // Gives a replacement up (its I/O did not drain): copy i stays out of sync
  // on its old store, its bitmap as it is.
  void abandon_replace(std::size_t i);

 private:
  struct Fanout;
  struct ReadRepair;
  friend struct Fanout;
  friend struct ReadRepair;
  friend class ResyncJob;

  // --- a reload's replacement of this LU (same state file) ---
  // The LU a reload replaces still serves while its replacement opens, and
  // until its last command ends. The replacement takes the state file over
  // (hand_over_to): the old one's hot regions are writes in flight, not a
  // crash's, and become the new one's; the old one writes the file no more
  // (its activity log retired into the new one's); and what it still learns
  // (a copy failing, regions it misses) is passed on, so that the new one
  // does not count a copy in sync that missed a write of the old.
  void hand_over_to(MirroredBackend& next);
  // Passes on to the successor, if any, that copy i missed [offset,
  // offset + len) or left the in-sync set.
  void pass_on_missed(std::size_t i, std::uint64_t offset, std::uint64_t len);
  void pass_on_out_of_sync(std::size_t i, int error);
  // This LU's destruction in the chain of LUs over one state file.
  void leave_the_chain();

  void set_state(std::size_t i, CopyState s);
  void mark_all_dirty(std::size_t i);
  // Called by a resync that found nothing dirty under a claim of the whole
  // LUN: copy i is back in the in-sync set; false when it failed meanwhile.
  bool rejoin(std::size_t i);
  void publish_dirty(std::size_t i);
  // Reads the state file: copies out of sync, their bitmaps, and the hot
  // regions of a crash marked dirty on every copy but the first in sync
  // (taken over as hot instead when handing_over: a live LU has them).
  void recover(bool handing_over);
  // The activity log over the state file (if any), and recover.
  void open_state(bool handing_over);
  void out_of_sync_at_start(std::size_t i, const char* why);
  // Writes the state file (a state changed): on the log's writer thread when
  // called on a reactor, now otherwise; no-op without one.
  void persist_state();
  // True when f skipped or lost a copy whose leaving the file does not record
  // yet (recorded_out_).
  bool waits_for_record(const Fanout& f) const;
  // Forgets the hot regions when enough piled up and no write is in flight.
  void maybe_clear_hot();

  int quorum_error() const;
  // Starts f on every in-sync copy, or answers it with the quorum error
  // when too few are left. f holds its range claim already, if it has one.
  // Its regions are made hot in the activity log first, which may finish
  // later on the log's writer thread (start_on_copies goes on from there).
  void start(Fanout* f);
  void start_on_copies(Fanout* f);
  // Starts f once no earlier overlapping write is in flight (RangeOrder).
  void start_in_order(Fanout* f);
  void finish(Fanout* f);
  // Whether f may be answered now, before the copies still writing it: see
  // the comment at the top of this file.
  bool may_answer_early(const Fanout& f) const;
  // Points f's data at a private, aligned copy of the caller's, so that it
  // can be answered before every copy is done with it.
  void keep_private_data(Fanout* f);
  // Answers f's caller; f goes on until its last copy is done (finish).
  void answer_early(Fanout* f);
  // The end of a fan-out answered early: its last copy is done.
  void finish_behind(Fanout* f);
  // Below quorum under QuorumLossAction::wait: true when f now waits for
  // the quorum (start(f) runs again once it is back, or f is answered when
  // its time is up); false when it does not wait (another policy, its time
  // is up, the thread cannot wait, or the quorum came back meanwhile).
  bool waits_for_quorum(Fanout* f);
  // A fan-out that waited for the quorum goes on: claims its range again.
  void restart_after_wait(Fanout* f);
  // What writes get below quorum, for the log line.
  std::string quorum_loss_answer() const;
  // Counts a write, zeroing or unmap answered GOOD: on every copy or at quorum only.
  void count_acknowledged(const Fanout& f);
  // The first in-sync copy after `after` (-1: from the start); -1 when none.
  int next_in_sync(int after) const;
  // Copy i's store is about to be used by an I/O (or extent_at) on a reactor:
  // counted in flight until leave(i). A replacement waits for none. The
  // count goes up before the state is read (both sequentially consistent),
  // so a replacement that saw none in flight after taking the copy out of
  // sync cannot miss an I/O that saw the copy still usable.
  void enter(std::size_t i);
  void leave(std::size_t i);
  // The first in-sync copy after `after`, entered (leave it when done); -1
  // when none.
  int enter_next_in_sync(int after);

  std::vector<MirrorCopy> copies_;
  MirrorOptions options_;
  std::atomic<std::uint64_t> size_bytes_;
  const WriteAckPolicy ack_policy_;
  const bool can_unmap_;
  struct alignas(64) InFlight {
    std::atomic<std::uint64_t> n{0};
  };
  std::unique_ptr<InFlight[]> in_flight_;  // per copy: I/O on its store
  std::unique_ptr<std::atomic<bool>[]> replacing_;
  std::shared_ptr<metrics::MirrorCounters> counters_;
  std::atomic<std::size_t> in_sync_count_;
  RangeOrder order_;
  std::vector<std::unique_ptr<DirtyBitmap>> bitmaps_;  // one per copy
  // A resync job of the copy exists (it may still be stopping after the
  // copy left the resyncing state); a second one is not started meanwhile.
  std::unique_ptr<std::atomic<bool>[]> resync_running_;
  // Each copy's Backend::connections() when it last left the in-sync set or
  // its resync stopped: more now means it reconnected since.
  std::unique_ptr<std::atomic<std::uint64_t>[]> connections_when_out_;
  // The copy left the in-sync set because its store's connection failed
  // (ENOTCONN, ETIMEDOUT): it resyncs once connected, even when it connected
  // again before the failure reached the mirror (connections_when_out_ then
  // counts the new connection already).
  std::unique_ptr<std::atomic<bool>[]> left_on_connection_;
  // False from the moment copy i leaves the in-sync set until the state file
  // says it is out of sync. A write that skipped (or failed on) a copy is
  // not answered before then: after a crash, a copy the file still called in
  // sync could be the source of the hot regions' resync, and its stale data
  // would overwrite acknowledged writes. The file is written on the log's
  // writer thread, never on the reactor that saw the failure.
  std::unique_ptr<std::atomic<bool>[]> recorded_out_;
  // A lazy clear of the hot regions holds clear_claim_ while clearing_.
  std::atomic<bool> clearing_{false};
  RangeOrder::Claim clear_claim_;
  std::unique_ptr<ActivityLog> al_;
  std::weak_ptr<void> owner_;
  std::atomic<bool> early_answers_held_{false};
  // Fan-outs answered early with a copy still writing, and their data bytes.
  std::atomic<std::uint64_t> behind_ios_{0};
  std::atomic<std::uint64_t> behind_bytes_{0};
  std::unique_ptr<QuorumWait> quorum_wait_;  // only under QuorumLossAction::wait
  std::vector<std::size_t> resync_at_start_;
  // The chain of LUs over one state file (hand_over_to), under a global
  // lock: the LU this one replaced, if it still lives, and the one that
  // replaced it, with each copy's index there (-1: not there, or moved).
  MirroredBackend* predecessor_ = nullptr;
  std::atomic<MirroredBackend*> successor_{nullptr};
  std::vector<int> successor_copy_;
};

}  // namespace ringtgt::storage
