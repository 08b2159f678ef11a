#include "ringtgt/storage/mirrored_backend.hpp"

#include <spdlog/spdlog.h>

#include <array>
#include <bit>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <optional>
#include <stdexcept>

#include "activity_log.hpp"
#include "dirty_bitmap.hpp"
#include "quorum_wait.hpp"
#include "resync_job.hpp"

namespace ringtgt::storage {

namespace {
std::string error_text(int error) {
  return std::strerror(error < 0 ? -error : EIO);
}

std::uint64_t nanoseconds_since(std::chrono::steady_clock::time_point t) {
  return static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t)
          .count());
}
}  // namespace

// One write, flush, unmap or zeroing on every in-sync copy.
//
// It is answered once ack_quorum in-sync copies hold it, if the copies still
// writing it all come after every copy that holds it (may_answer_early);
// else once every copy has answered. The order matters because reads, and
// the resync of a crash's hot regions, take the first in-sync copy as their
// source: an answered write is on that copy, and on every copy before the
// ones still writing it, so neither can miss it while one of those holders
// is in sync. A fan-out answered early lives on until its last copy is done:
// it keeps its range claim (overlapping writes still reach every copy in the
// same order, and the resync cannot copy the region meanwhile), its regions
// hot, and a private copy of the data, since the caller's buffer is reused
// once the caller hears. That copy is made only when an early answer is
// possible (more in-sync copies than ack_quorum): a memcpy and a buffer per
// write. Allocated per I/O: a mirrored write costs N submissions anyway.
struct MirroredBackend::Fanout {
  enum class Kind : std::uint8_t { write, flush, unmap, zeroes };

  struct Child final : IoOp {
    Fanout* parent = nullptr;
    unsigned index = 0;
    // An in-sync copy's answer counts towards ack_quorum; a resyncing
    // copy is written to but not counted (it is not a copy yet).
    bool counts = false;
    void on_complete(int result) override { parent->child_done(index, result); }
  };
  // Completed by RangeOrder when a held write may start.
  struct Resume final : IoOp {
    Fanout* parent = nullptr;
    void on_complete(int) override { parent->owner->start(parent); }
  };
  // Completed on the fan-out's own thread by the quorum wait: 0 once the
  // quorum is back, kQuorumLostError when its time is up.
  struct Parked final : IoOp {
    Fanout* parent = nullptr;
    void on_complete(int result) override {
      if (result < 0) {
        parent->done_mask = 0;
        return parent->owner->finish(parent);
      }
      parent->owner->restart_after_wait(parent);
    }
  };
  // Completed on the fan-out's thread once the state file records the
  // copies it skipped or lost as out of sync (0), or could not be written.
  struct Recorded final : IoOp {
    Fanout* parent = nullptr;
    void on_complete(int result) override {
      if (result < 0) parent->not_logged = true;
      parent->owner->finish(parent);
    }
  };
  // Fires on the next turn of the fan-out's loop after its last copy is
  // done, when it was answered early: frees it there, and with it the
  // reference to the owner, which may be the LU's last. Never from inside
  // a copy's completion, whose store the LU's end would destroy under it.
  struct Release final : reactor::TimerOp {
    Fanout* parent = nullptr;
    void on_complete(int) override { delete parent; }
  };
  // Completed by the activity log once the write's regions are durably hot
  // (0), or the file could not be written (-EIO).
  struct Logged final : IoOp {
    Fanout* parent = nullptr;
    void on_complete(int result) override {
      if (result < 0) {
        parent->not_logged = true;
        return parent->owner->finish(parent);
      }
      parent->owner->start_on_copies(parent);
    }
  };

  Fanout(MirroredBackend* o, Kind k, IoOp* c, std::uint64_t off = 0, std::size_t l = 0)
      : owner(o), kind(k), caller(c), len(l), offset(off) {
    resume.parent = this;
    logged.parent = this;
    recorded.parent = this;
    parked.parent = this;
    release.parent = this;
    for (unsigned i = 0; i < children.size(); ++i) {
      children[i].parent = this;
      children[i].index = i;
    }
  }

  const char* verb() const {
    switch (kind) {
      case Kind::write:
        return "write";
      case Kind::flush:
        return "flush";
      case Kind::unmap:
        return "unmap";
      case Kind::zeroes:
        return "write zeroes";
    }
    return "I/O";
  }

  bool succeeded(int result) const {
    if (kind == Kind::write) return result >= 0 && static_cast<std::uint64_t>(result) == len;
    return result >= 0;
  }

  void submit(unsigned i) {
    Backend& b = *owner->copies_[i].backend;
    switch (kind) {
      case Kind::write:
        return b.write(buf, len, offset, fua, &children[i]);
      case Kind::flush:
        return b.flush(&children[i]);
      case Kind::unmap:
        return b.unmap(offset, len, &children[i], more_follow);
      case Kind::zeroes:
        return b.write_zeroes(offset, len, fua, &children[i]);
    }
  }

  // Copy i does not hold what this operation wrote: its bitmap says so
  // (while the range claim keeps a resync from copying these regions).
  void missed_by(unsigned i) {
    missed_copies |= 1u << i;
    if (kind == Kind::flush) {
      // Which earlier writes the failed flush left unstable is unknown.
      owner->mark_all_dirty(i);
    } else {
      owner->mark_dirty(i, offset, len);
    }
  }

  void child_done(unsigned i, int result) {
    // Not a member of this fan-out: finish may free it (and the LUN).
    MirroredBackend* const o = owner;
    const bool counts = children[i].counts;
    pending_mask &= ~(1u << i);
    if (answered)
      owner->counters_->copies[i]->writes_behind.fetch_sub(1, std::memory_order_seq_cst);
    if (succeeded(result)) {
      if (counts) done_mask |= 1u << i;
      auto& copy = *owner->counters_->copies[i];
      if (kind != Kind::flush) copy.writes.fetch_add(1, std::memory_order_relaxed);
      if (kind == Kind::write) copy.record_write_latency(nanoseconds_since(started));
    } else if (result == -EOPNOTSUPP && (kind == Kind::zeroes || kind == Kind::unmap)) {
      // The store cannot do it this way; the caller falls back (writes
      // zeroes), unless the in-sync copies did it: then a resyncing copy
      // gets the range from them later.
      if (counts) {
        ++unsupported;
      } else {
        missed_by(i);
      }
    } else {
      missed_by(i);
      owner->mark_out_of_sync(i, verb(), result < 0 ? result : -EIO);
    }
    // Done with the store before the caller hears of it.
    o->leave(i);
    if (--pending == 0) return o->finish(this);
    if (o->may_answer_early(*this)) o->answer_early(this);
  }

  MirroredBackend* owner;
  Kind kind;
  IoOp* caller;
  const void* buf = nullptr;
  std::size_t len = 0;
  std::uint64_t offset = 0;
  bool fua = false;
  bool more_follow = false;
  bool claimed = false;     // holds claim in owner->order_
  bool not_logged = false;  // the activity log could not be written: not started
  std::chrono::steady_clock::time_point started;  // submitted to the copies
  RangeOrder::Claim claim;
  Resume resume;
  Logged logged;
  Parked parked;
  Recorded recorded;
  Release release;
  // The data the copies write when an early answer is possible (the
  // caller's buffer is reused once the caller hears); buf points into it.
  std::unique_ptr<std::byte, decltype(&std::free)> own_data{nullptr, &std::free};
  std::shared_ptr<void> keep;  // the owner, from the early answer to the end
  bool answered = false;       // the caller heard (early)
  bool submitting = false;     // start_on_copies is still submitting
  // A flush that waits, with a claim of the whole LUN, for the writes
  // answered early before it (writeback: their copies must have them first).
  bool barrier = false;
  std::uint32_t counting_mask = 0;  // bit i: copy i was in sync when submitted
  std::uint32_t done_mask = 0;      // ... and holds it (counts for ack_quorum)
  // Bit i: copy i has not answered yet; once answered early, the copies
  // counted in their writes_behind.
  std::uint32_t pending_mask = 0;
  std::uint32_t missed_copies = 0;  // bit i: copy i does not hold it
  bool record_waited = false;       // finish waited for the state file once
  // Under on_quorum_loss = "wait": until when it may wait for the quorum
  // (set the first time it has to).
  std::optional<std::chrono::steady_clock::time_point> wait_until;
  std::array<Child, kMaxCopies> children;
  // Completions come on the submitting thread (the Backend contract), so
  // plain counters do.
  unsigned pending = 0;
  unsigned unsupported = 0;
  // The in-sync copies that hold it.
  unsigned ok() const { return static_cast<unsigned>(std::popcount(done_mask)); }
};

// A read from the first in-sync copy, and when it fails, the repair: under a
// range claim (so no write to those blocks lands in between), the blocks are
// read from the next in-sync copy into the caller's buffer and written back,
// durably, to the copy that failed. When the first copy is still writing
// writes answered early, the read first waits, under the same claim, for
// those that overlap it.
struct MirroredBackend::ReadRepair final : IoOp {
  enum class Step : std::uint8_t { behind, first_read, claim, good_read, write_back };

  ReadRepair(MirroredBackend* o, void* b, std::size_t l, std::uint64_t off, IoOp* c)
      : owner(o), buf(b), len(l), offset(off), caller(c) {}

  void on_complete(int result) override {
    switch (step) {
      case Step::behind:
        return behind_done();
      case Step::first_read:
        return first_read_done(result);
      case Step::claim:
        return read_from_next(-1);
      case Step::good_read:
        return good_read_done(result);
      case Step::write_back:
        return write_back_done(result);
    }
  }

  bool whole(int result) const { return result >= 0 && static_cast<std::uint64_t>(result) == len; }

  void after_writes_behind() {
    step = Step::behind;
    claim = {offset, len, this, reactor::IoEngine::current()};
    claimed = true;
    if (owner->order_.admit(claim)) behind_done();
  }

  // No write that overlaps the range is in flight now.
  void behind_done() {
    if (owner->in_sync(static_cast<std::size_t>(bad))) {
      step = Step::first_read;
      return owner->copies_[bad].backend->read(buf, len, offset, this);
    }
    // The first copy failed a write it was behind on: its blocks are stale,
    // another copy serves them, and its resync (not a repair) mends it.
    no_repair = true;
    first_error = -EIO;
    read_from_next(-1);
  }

  void first_read_done(int result) {
    if (whole(result)) return end(result);
    first_error = result < 0 ? result : -EIO;
    if (other_in_sync(-1) < 0) return end(first_error);
    if (claimed) return read_from_next(-1);
    step = Step::claim;
    claim = {offset, len, this, reactor::IoEngine::current()};
    claimed = true;
    if (owner->order_.admit(claim)) read_from_next(-1);
  }

  // The next in-sync copy after `after` that is not the one that failed.
  int other_in_sync(int after) const {
    for (int i = owner->next_in_sync(after); i >= 0; i = owner->next_in_sync(i)) {
      if (i != bad) return i;
    }
    return -1;
  }

  void read_from_next(int after) {
    source = other_in_sync(after);
    if (source < 0) return end(first_error);
    owner->enter(source);
    if (!owner->in_sync(source)) {  // left the set meanwhile (a replacement)
      owner->leave(source);
      return read_from_next(source);
    }
    step = Step::good_read;
    owner->copies_[source].backend->read(buf, len, offset, this);
  }

  void good_read_done(int result) {
    owner->leave(source);
    if (!whole(result)) return read_from_next(source);
    if (no_repair) return end(result);
    step = Step::write_back;
    owner->copies_[bad].backend->write(buf, len, offset, true, this);
  }

  void write_back_done(int result) {
    if (whole(result)) {
      owner->counters_->read_repairs.fetch_add(1, std::memory_order_relaxed);
      spdlog::warn(
          "{}: read repair: {} bytes at byte {} failed on copy {} ({}), read from copy {} "
          "and written back",
          owner->options_.lun_label, len, offset, owner->copies_[bad].name, error_text(first_error),
          owner->copies_[source].name);
    } else {
      owner->mark_out_of_sync(bad, "read repair write", result < 0 ? result : -EIO);
    }
    end(static_cast<int>(len));  // the caller got good data either way
  }

  void end(int result) {
    if (claimed) owner->order_.release(claim);
    owner->leave(bad);
    IoOp* c = caller;
    delete this;
    c->on_complete(result);
  }

  MirroredBackend* owner;
  void* buf;
  std::size_t len;
  std::uint64_t offset;
  IoOp* caller;
  Step step = Step::first_read;
  int bad = -1;     // the copy whose read failed
  int source = -1;  // the copy read now
  int first_error = 0;
  bool claimed = false;
  bool no_repair = false;  // bad is out of sync: nothing to write back
  RangeOrder::Claim claim;
};

namespace {
bool every_copy_can_unmap(const std::vector<MirrorCopy>& copies) {
  for (const auto& c : copies) {
    if (!c.backend->can_unmap()) return false;
  }
  return !copies.empty();
}

// The newest live mirror of each state file, and the lock of every chain
// of them (hand_over_to). Recursive: a pass-on runs down the chain.
std::recursive_mutex chain_mu;
std::map<std::string, MirroredBackend*>& newest_by_state_file() {
  static std::map<std::string, MirroredBackend*> m;
  return m;
}
}  // namespace

MirroredBackend::MirroredBackend(std::vector<MirrorCopy> copies, MirrorOptions options)
    : copies_(std::move(copies)),
      options_(std::move(options)),
      size_bytes_(copies_.empty() ? 0 : copies_[0].backend->size_bytes()),
      ack_policy_(copies_.empty() ? WriteAckPolicy{} : copies_[0].backend->ack_policy()),
      can_unmap_(every_copy_can_unmap(copies_)),
      in_flight_(std::make_unique<InFlight[]>(copies_.size())),
      replacing_(std::make_unique<std::atomic<bool>[]>(copies_.size())),
      counters_(std::make_shared<metrics::MirrorCounters>()),
      in_sync_count_(copies_.size()),
      resync_running_(std::make_unique<std::atomic<bool>[]>(copies_.size())),
      connections_when_out_(std::make_unique<std::atomic<std::uint64_t>[]>(copies_.size())),
      left_on_connection_(std::make_unique<std::atomic<bool>[]>(copies_.size())),
      recorded_out_(std::make_unique<std::atomic<bool>[]>(copies_.size())) {
  if (copies_.empty() || copies_.size() > kMaxCopies)
    throw std::invalid_argument("a mirrored LUN has 1.." + std::to_string(kMaxCopies) + " copies");
  if (options_.ack_quorum < 1 || options_.ack_quorum > copies_.size())
    throw std::invalid_argument("ack_quorum must be 1.." + std::to_string(copies_.size()));
  for (const auto& c : copies_) {
    if (c.backend->size_bytes() < copies_[0].backend->size_bytes()) {
      throw std::invalid_argument("copy " + c.name + " (" + c.backend->describe() + ") is " +
                                  std::to_string(c.backend->size_bytes()) +
                                  " bytes, smaller than the primary");
    }
    counters_->copies.push_back(
        std::make_unique<metrics::MirrorCounters::Copy>(c.name, c.failure_domain));
    bitmaps_.push_back(
        std::make_unique<DirtyBitmap>(copies_[0].backend->size_bytes(), options_.region_size));
  }
  for (std::size_t i = 0; i < copies_.size(); ++i) {
    replacing_[i].store(false);
    left_on_connection_[i].store(false);
    recorded_out_[i].store(true);
    resync_running_[i].store(false);
    connections_when_out_[i].store(copies_[i].backend->connections());
  }
  MirroredBackend* live = nullptr;  // the LU a reload replaces, still serving
  if (!options_.state_path.empty()) {
    std::lock_guard lock(chain_mu);
    auto& newest = newest_by_state_file()[options_.state_path];
    live = std::exchange(newest, this);
    predecessor_ = live;
  }
  try {
    open_state(live != nullptr);
  } catch (...) {
    // Not built: the live LU (if any) keeps the file, untouched.
    std::lock_guard lock(chain_mu);
    if (live != nullptr) {
      newest_by_state_file()[options_.state_path] = live;
    } else if (!options_.state_path.empty()) {
      newest_by_state_file().erase(options_.state_path);
    }
    throw;
  }
  counters_->ack_quorum = options_.ack_quorum;
  counters_->redundancy = options_.redundancy;
  counters_->redundancy_warning = options_.redundancy_warning;
  if (options_.on_quorum_loss == QuorumLossAction::wait)
    quorum_wait_ = std::make_unique<QuorumWait>(options_.lun_label, kQuorumLostError,
                                                &counters_->writes_waiting_for_quorum);
  if (live != nullptr) {
    std::lock_guard lock(chain_mu);
    live->hand_over_to(*this);
  }
}

void MirroredBackend::open_state(bool handing_over) {
  if (!options_.state_path.empty()) {
    al_ = std::make_unique<ActivityLog>(
        options_.state_path, copies_[0].backend->size_bytes(), options_.region_size,
        [this](std::vector<ActivityLog::CopyRecord>& out) {
          for (std::size_t i = 0; i < copies_.size(); ++i)
            out.push_back({copies_[i].name, copy_state(i) == CopyState::in_sync,
                           bitmaps_[i]->words(), copies_[i].location});
        },
        [this](const std::vector<ActivityLog::CopyRecord>& written) {
          // In copy order, as the snapshot wrote them.
          for (std::size_t i = 0; i < written.size() && i < copies_.size(); ++i) {
            if (!written[i].in_sync) recorded_out_[i].store(true, std::memory_order_seq_cst);
          }
        });
    recover(handing_over);
  }
}

MirroredBackend::~MirroredBackend() {
  leave_the_chain();
  // Stopped cleanly: no write is in flight, so no region is hot (a retired
  // log clears nothing: another LU's writes may be in flight).
  if (al_) al_->clear_hot();
}

std::vector<std::size_t> MirroredBackend::stop_resyncs() {
  std::vector<std::size_t> stopped;
  for (std::size_t i = 0; i < copies_.size(); ++i) {
    CopyState was = CopyState::resyncing;
    if (counters_->copies[i]->state.compare_exchange_strong(was, CopyState::out_of_sync,
                                                            std::memory_order_acq_rel)) {
      stopped.push_back(i);
      persist_state();
    }
  }
  return stopped;
}

bool MirroredBackend::resyncs_stopped() const {
  for (std::size_t i = 0; i < copies_.size(); ++i) {
    if (resync_running_[i].load(std::memory_order_acquire)) return false;
  }
  return true;
}

std::vector<std::size_t> MirroredBackend::take_resync_at_start() {
  return std::exchange(resync_at_start_, {});
}

void MirroredBackend::hand_over_to(MirroredBackend& next) {
  successor_copy_.assign(copies_.size(), -1);
  for (std::size_t i = 0; i < copies_.size(); ++i) {
    for (std::size_t j = 0; j < next.copies_.size(); ++j) {
      if (next.copies_[j].name == copies_[i].name &&
          next.copies_[j].location == copies_[i].location)
        successor_copy_[i] = static_cast<int>(j);
    }
  }
  successor_.store(&next, std::memory_order_release);
  if (al_ && next.al_) al_->retire_into(*next.al_);
  // What the file may not say yet: a copy that left after it was written.
  for (std::size_t i = 0; i < copies_.size(); ++i) {
    if (copy_state(i) == CopyState::in_sync) continue;
    for (std::uint64_t r = bitmaps_[i]->next_dirty(0); r < bitmaps_[i]->regions();
         r = bitmaps_[i]->next_dirty(r + 1))
      pass_on_missed(i, r * options_.region_size, bitmaps_[i]->region_bytes(r));
    pass_on_out_of_sync(i, -EIO);
  }
}

void MirroredBackend::pass_on_missed(std::size_t i, std::uint64_t offset, std::uint64_t len) {
  if (successor_.load(std::memory_order_acquire) == nullptr) return;
  std::lock_guard lock(chain_mu);
  MirroredBackend* next = successor_.load(std::memory_order_acquire);
  if (next == nullptr || successor_copy_[i] < 0) return;
  next->mark_dirty(static_cast<std::size_t>(successor_copy_[i]), offset, len);
}

void MirroredBackend::pass_on_out_of_sync(std::size_t i, int error) {
  if (successor_.load(std::memory_order_acquire) == nullptr) return;
  std::lock_guard lock(chain_mu);
  MirroredBackend* next = successor_.load(std::memory_order_acquire);
  if (next == nullptr || successor_copy_[i] < 0) return;
  next->mark_out_of_sync(static_cast<std::size_t>(successor_copy_[i]),
                         "it missed a write of the LU a reload replaced", error);
}

void MirroredBackend::leave_the_chain() {
  if (options_.state_path.empty()) return;
  std::lock_guard lock(chain_mu);
  MirroredBackend* next = successor_.load(std::memory_order_acquire);
  if (predecessor_ != nullptr && next != nullptr) {
    // Both neighbours live: the older one hands over to the newer.
    next->predecessor_ = predecessor_;
    predecessor_->hand_over_to(*next);
  } else if (predecessor_ != nullptr) {
    // This replacement was dropped (a reload that failed): the LU it was
    // to replace keeps the file, and what this one's log still has queued
    // goes there.
    predecessor_->successor_.store(nullptr, std::memory_order_release);
    if (predecessor_->al_) predecessor_->al_->unretire();
    if (al_ && predecessor_->al_) al_->retire_into(*predecessor_->al_);
    newest_by_state_file()[options_.state_path] = predecessor_;
  } else if (next != nullptr) {
    next->predecessor_ = nullptr;
  } else {
    newest_by_state_file().erase(options_.state_path);
  }
}

void MirroredBackend::out_of_sync_at_start(std::size_t i, const char* why) {
  if (copy_state(i) == CopyState::out_of_sync) return;
  set_state(i, CopyState::out_of_sync);
  counters_->copies[i]->in_sync.store(false, std::memory_order_release);
  in_sync_count_.fetch_sub(1, std::memory_order_acq_rel);
  spdlog::warn("copy {} of {} out of sync at start: {} ({} bytes to resync)", copies_[i].name,
               options_.lun_label, why, dirty_bytes(i));
}

void MirroredBackend::recover(bool handing_over) {
  const auto record = al_->load();
  if (!record) {
    // A first start: the copies are taken to be equal (docs/replication.md).
    spdlog::info("{}: no mirror state in {} yet: every copy counts as in sync", options_.lun_label,
                 al_->path().string());
    persist_state();
    return;
  }
  // Another resync_region_size (a reload or restart that changed it) is
  // another grid: the file's regions are mapped onto this one, each dirty
  // or hot region of the file covering every region here it overlaps.
  // Another LUN size is another LUN: its copies are synced in full.
  const bool same_size = record->size_bytes == copies_[0].backend->size_bytes();
  auto record_of = [&record](const std::string& name) -> const ActivityLog::CopyRecord* {
    for (const auto& r : record->copies) {
      if (r.name == name) return &r;
    }
    return nullptr;
  };
  // The store at a copy's name is not the one the file describes: its path
  // or URL changed in the config since (a new disk, a re-pointed copy).
  auto moved = [this, &record_of](std::size_t i) {
    const ActivityLog::CopyRecord* c = record_of(copies_[i].name);
    return c != nullptr && !c->location.empty() && !copies_[i].location.empty() &&
           c->location != copies_[i].location;
  };
  // Another copy that holds the data as the file knew it, to fill a moved primary from.
  auto other_known_in_sync = [&](std::size_t i) {
    for (std::size_t j = 0; j < copies_.size(); ++j) {
      const ActivityLog::CopyRecord* c = record_of(copies_[j].name);
      if (j != i && c != nullptr && c->in_sync && !moved(j)) return true;
    }
    return false;
  };
  for (std::size_t i = 0; i < copies_.size(); ++i) {
    const ActivityLog::CopyRecord* c = record_of(copies_[i].name);
    if (same_size && moved(i)) {
      if (i != 0 || other_known_in_sync(i)) {
        mark_all_dirty(i);
        const std::string why = "its store moved from " + c->location + " to " +
                                copies_[i].location + ": a new store, a full sync";
        out_of_sync_at_start(i, why.c_str());
        continue;
      }
      spdlog::warn(
          "{}: the primary moved from {} to {}, and no other copy is known to be in "
          "sync: it is served as it is, the source of the others",
          options_.lun_label, c->location, copies_[i].location);
    }
    if (i == 0 && (c == nullptr || !same_size)) continue;  // the source of full syncs
    if (c == nullptr || !same_size) {
      mark_all_dirty(i);
      out_of_sync_at_start(i, c == nullptr ? "a copy the state file does not know: a full sync"
                                           : "the LUN's size changed: a full sync");
      continue;
    }
    if (c->in_sync) continue;
    bitmaps_[i]->mark_regions(c->dirty, record->region_size);
    publish_dirty(i);
    out_of_sync_at_start(i, "it was out of sync when ringtgt stopped");
  }
  // Regions with writes in flight when ringtgt stopped without a clean stop
  // (kill -9, a crash): the copies still in sync may differ there. The first
  // in-sync copy is the source; the others get those regions from it.
  const int source = next_in_sync(-1);
  if (handing_over) {
    // A live LU's writes: they go on there, and stay hot here.
    if (same_size) al_->restore_hot(record->hot, record->region_size);
    for (std::size_t i = 0; i < copies_.size(); ++i) {
      if (copy_state(i) == CopyState::out_of_sync && source >= 0) resync_at_start_.push_back(i);
    }
    al_->persist();
    return;
  }
  std::uint64_t hot = 0;
  for (std::size_t w = 0; same_size && w < record->hot.size(); ++w)
    hot += static_cast<std::uint64_t>(std::popcount(record->hot[w]));
  for (std::size_t i = 0; hot != 0 && i < copies_.size(); ++i) {
    if (static_cast<int>(i) != source) bitmaps_[i]->mark_regions(record->hot, record->region_size);
  }
  if (hot != 0) {
    spdlog::warn(
        "{}: ringtgt did not stop cleanly: {} region(s) had writes in flight; copy {} "
        "is their source",
        options_.lun_label, hot, source < 0 ? "none" : copies_[source].name);
    for (std::size_t i = 0; i < copies_.size(); ++i) {
      if (static_cast<int>(i) == source) continue;
      publish_dirty(i);
      out_of_sync_at_start(i, "regions with writes in flight at a crash");
    }
  }
  for (std::size_t i = 0; i < copies_.size(); ++i) {
    if (copy_state(i) == CopyState::out_of_sync && source >= 0) resync_at_start_.push_back(i);
  }
  // The hot regions are dirty bits now: the file no longer needs them.
  al_->clear_hot();
}

void MirroredBackend::persist_state() {
  if (al_) al_->persist_soon(reactor::IoEngine::current());
}

bool MirroredBackend::waits_for_record(const Fanout& f) const {
  if (!al_ || f.missed_copies == 0) return false;
  for (std::size_t i = 0; i < copies_.size(); ++i) {
    if ((f.missed_copies >> i & 1u) && !recorded_out_[i].load(std::memory_order_seq_cst))
      return true;
  }
  return false;
}

void MirroredBackend::maybe_clear_hot() {
  if (!al_ || !al_->wants_clear()) return;
  if (clearing_.exchange(true, std::memory_order_acq_rel)) return;
  // Only with no write in flight or waiting: then no hot region is needed.
  // The claim of the whole LUN holds later writes back until the file says
  // nothing is hot (they then mark their regions again).
  clear_claim_ = {0, size_bytes(), nullptr, nullptr};
  if (!order_.try_admit(clear_claim_)) {
    clearing_.store(false, std::memory_order_release);
    return;
  }
  al_->clear_hot(reactor::IoEngine::current(), [this] {
    order_.release(clear_claim_);
    clearing_.store(false, std::memory_order_release);
  });
}

bool MirroredBackend::in_sync(std::size_t i) const {
  return counters_->copies[i]->in_sync.load(std::memory_order_acquire);
}

int MirroredBackend::next_in_sync(int after) const {
  for (std::size_t i = static_cast<std::size_t>(after + 1); i < copies_.size(); ++i) {
    if (in_sync(i)) return static_cast<int>(i);
  }
  return -1;
}

std::string MirroredBackend::quorum_loss_answer() const {
  switch (options_.on_quorum_loss) {
    case QuorumLossAction::read_only:
      return "DATA PROTECT (on_quorum_loss = \"read_only\")";
    case QuorumLossAction::wait:
      return fmt::format(
          "held until it is back, for at most {} ms each, then ABORTED COMMAND "
          "(on_quorum_loss = \"wait\")",
          std::chrono::duration_cast<std::chrono::milliseconds>(options_.quorum_wait).count());
    case QuorumLossAction::fail:
      break;
  }
  return "ABORTED COMMAND (on_quorum_loss = \"fail\")";
}

int MirroredBackend::quorum_error() const {
  return options_.on_quorum_loss == QuorumLossAction::read_only ? kQuorumReadOnlyError
                                                                : kQuorumLostError;
}

MirroredBackend::CopyState MirroredBackend::copy_state(std::size_t i) const {
  return counters_->copies[i]->state.load(std::memory_order_acquire);
}

std::uint64_t MirroredBackend::dirty_bytes(std::size_t i) const {
  return bitmaps_[i]->dirty_bytes();
}

void MirroredBackend::publish_dirty(std::size_t i) {
  counters_->copies[i]->dirty_bytes.store(bitmaps_[i]->dirty_bytes(), std::memory_order_relaxed);
}

void MirroredBackend::mark_dirty(std::size_t i, std::uint64_t offset, std::uint64_t len) {
  bitmaps_[i]->mark(offset, len);
  publish_dirty(i);
  pass_on_missed(i, offset, len);
}

void MirroredBackend::mark_all_dirty(std::size_t i) {
  bitmaps_[i]->mark_all();
  publish_dirty(i);
  pass_on_missed(i, 0, size_bytes());
}

void MirroredBackend::set_state(std::size_t i, CopyState s) {
  counters_->copies[i]->state.store(s, std::memory_order_release);
}

void MirroredBackend::mark_out_of_sync(std::size_t i, const char* what, int error) {
  auto& state = counters_->copies[i]->state;
  CopyState was = state.load(std::memory_order_acquire);
  // Before the copy is seen out of sync: a write that skips it from then on
  // waits for the file to say so (waits_for_record).
  if (was == CopyState::in_sync) recorded_out_[i].store(false, std::memory_order_seq_cst);
  do {
    if (was == CopyState::out_of_sync) return;
    // seq_cst, like in_sync below: see enter().
  } while (!state.compare_exchange_weak(was, CopyState::out_of_sync, std::memory_order_seq_cst));
  // Before this LU's file write below, which is its successor's file then.
  pass_on_out_of_sync(i, error);
  connections_when_out_[i].store(copies_[i].backend->connections(), std::memory_order_release);
  left_on_connection_[i].store(error == -ENOTCONN || error == -ETIMEDOUT,
                               std::memory_order_release);
  // error 0: taken out on request (what says by whom), not by a failure.
  const std::string why =
      error == 0 ? std::string(what) : fmt::format("{} failed: {}", what, error_text(error));
  if (was == CopyState::resyncing) {
    spdlog::error("copy {} of {}: resync stopped: {} ({} bytes still dirty)", copies_[i].name,
                  options_.lun_label, why, dirty_bytes(i));
    return;
  }
  counters_->copies[i]->in_sync.store(false, std::memory_order_seq_cst);
  const std::size_t left = in_sync_count_.fetch_sub(1, std::memory_order_acq_rel) - 1;
  spdlog::error(
      "copy {} of {} out of sync: {} ({} of {} copies in sync, ack_quorum {}; the writes it "
      "misses are tracked: ringtgtctl copy resync, or a remote copy's reconnect, brings it "
      "back)",
      copies_[i].name, options_.lun_label, why, left, copies_.size(), options_.ack_quorum);
  persist_state();  // a restart must not take it for in sync (waits_for_record)
  if (left + 1 == options_.ack_quorum) {
    counters_->quorum_losses.fetch_add(1, std::memory_order_relaxed);
    spdlog::error(
        "{} lost its write quorum ({} of {} copies in sync, ack_quorum {}): writes now "
        "get {}; reads go on{}",
        options_.lun_label, left, copies_.size(), options_.ack_quorum, quorum_loss_answer(),
        left == 0 ? " nowhere: no copy is left" : "");
  }
}

std::vector<std::size_t> MirroredBackend::check_connections() {
  std::vector<std::size_t> reconnected;
  for (std::size_t i = 0; i < copies_.size(); ++i) {
    const Backend& b = *copies_[i].backend;
    const bool up = b.connected();
    counters_->copies[i]->connected.store(up, std::memory_order_relaxed);
    const CopyState s = copy_state(i);
    if (!up && s != CopyState::out_of_sync) {
      // Also with no write in flight: a copy that cannot be written is not
      // counted for the quorum, and its return must bring a resync.
      mark_out_of_sync(i, "its connection", -ENOTCONN);
    } else if (up && s == CopyState::out_of_sync &&
               (b.connections() > connections_when_out_[i].load(std::memory_order_acquire) ||
                left_on_connection_[i].exchange(false, std::memory_order_acq_rel))) {
      reconnected.push_back(i);
    }
  }
  return reconnected;
}

void MirroredBackend::enter(std::size_t i) {
  in_flight_[i].n.fetch_add(1, std::memory_order_seq_cst);
}

void MirroredBackend::leave(std::size_t i) {
  in_flight_[i].n.fetch_sub(1, std::memory_order_release);
}

int MirroredBackend::enter_next_in_sync(int after) {
  for (int i = next_in_sync(after); i >= 0; i = next_in_sync(i)) {
    const auto c = static_cast<std::size_t>(i);
    enter(c);
    if (counters_->copies[c]->in_sync.load(std::memory_order_seq_cst)) return i;
    leave(c);
  }
  return -1;
}

void MirroredBackend::read(void* buf, std::size_t len, std::uint64_t offset, IoOp* op) {
  const int first = enter_next_in_sync(-1);
  if (first < 0) return op->on_complete(-EIO);
  auto* r = new ReadRepair(this, buf, len, offset, op);
  r->bad = r->source = first;
  if (counters_->copies[first]->writes_behind.load(std::memory_order_seq_cst) > 0)
    return r->after_writes_behind();
  copies_[first].backend->read(buf, len, offset, r);
}

void MirroredBackend::start(Fanout* f) {
  if (in_sync_count() < options_.ack_quorum) {
    if (waits_for_quorum(f)) return;
    if (in_sync_count() < options_.ack_quorum) {
      f->done_mask = 0;
      return finish(f);
    }
  }
  // Durably hot before any copy is touched: a crash from here on resyncs it.
  if (al_ && f->kind != Fanout::Kind::flush) {
    switch (al_->make_hot(f->offset, f->len, &f->logged, reactor::IoEngine::current())) {
      case ActivityLog::Hot::hot:
        break;
      case ActivityLog::Hot::failed:
        f->not_logged = true;
        return finish(f);
      case ActivityLog::Hot::later:
        return;  // f->logged goes on
    }
  }
  start_on_copies(f);
}

bool MirroredBackend::waits_for_quorum(Fanout* f) {
  if (!quorum_wait_) return false;
  const auto now = std::chrono::steady_clock::now();
  if (!f->wait_until) f->wait_until = now + options_.quorum_wait;
  if (*f->wait_until <= now) return false;
  // A waiting write holds no range claim: the resync that brings the
  // quorum back must be able to copy its regions meanwhile.
  if (f->claimed) {
    order_.release(f->claim);
    f->claimed = false;
  }
  switch (quorum_wait_->park(&f->parked, *f->wait_until,
                             [this] { return in_sync_count() < options_.ack_quorum; })) {
    case QuorumWait::Park::parked:
      return true;
    case QuorumWait::Park::back:
      restart_after_wait(f);
      return true;
    case QuorumWait::Park::cannot_wait:
      break;
  }
  return false;
}

void MirroredBackend::restart_after_wait(Fanout* f) {
  if (f->kind == Fanout::Kind::flush && !f->barrier) return start(f);
  start_in_order(f);
}

void MirroredBackend::start_on_copies(Fanout* f) {
  if (f->kind == Fanout::Kind::write && !f->own_data && in_sync_count() > options_.ack_quorum &&
      !owner_.expired())
    keep_private_data(f);
  f->started = std::chrono::steady_clock::now();
  f->pending = 1;  // held while submitting: children may complete inline
  f->submitting = true;
  for (unsigned i = 0; i < copies_.size(); ++i) {
    enter(i);
    const CopyState s = counters_->copies[i]->state.load(std::memory_order_seq_cst);
    if (s == CopyState::out_of_sync) {
      leave(i);
      // Marked while f holds its range claim: a resync copies the region
      // only after f is done, and its last check sees the mark.
      if (f->kind != Fanout::Kind::flush) {
        f->missed_by(i);
      } else {
        f->missed_copies |= 1u << i;
      }
      continue;
    }
    f->children[i].counts = s == CopyState::in_sync;
    if (f->children[i].counts) f->counting_mask |= 1u << i;
    f->pending_mask |= 1u << i;
    ++f->pending;
    f->submit(i);
  }
  f->submitting = false;
  if (--f->pending == 0) return finish(f);
  if (may_answer_early(*f)) answer_early(f);
}

void MirroredBackend::keep_private_data(Fanout* f) {
  constexpr std::size_t kAlign = 4096;  // O_DIRECT copies write from it
  const std::size_t size = (f->len + kAlign - 1) / kAlign * kAlign;
  auto* data = static_cast<std::byte*>(std::aligned_alloc(kAlign, size == 0 ? kAlign : size));
  if (data == nullptr) return;  // then answered once every copy has it
  std::memcpy(data, f->buf, f->len);
  f->own_data.reset(data);
  f->buf = data;
}

bool MirroredBackend::may_answer_early(const Fanout& f) const {
  // Writes and flushes only: a copy behind on an unmap or zeroing could still
  // answer that it cannot do it, and the caller's fallback (writing zeroes)
  // must then reach every copy.
  if (f.kind == Fanout::Kind::unmap || f.kind == Fanout::Kind::zeroes) return false;
  if (f.answered || f.submitting || f.not_logged) return false;
  if (f.ok() < options_.ack_quorum) return false;
  if (f.kind == Fanout::Kind::write && !f.own_data) return false;
  if (early_answers_held_.load(std::memory_order_seq_cst)) return false;
  // The in-sync copies still writing come after every one that holds it.
  const std::uint32_t writing = f.pending_mask & f.counting_mask;
  if (writing != 0 &&
      static_cast<unsigned>(std::countr_zero(writing)) < std::bit_width(f.done_mask))
    return false;
  const std::uint64_t bytes = f.kind == Fanout::Kind::write ? f.len : 0;
  if (behind_bytes_.load(std::memory_order_relaxed) + bytes > options_.max_behind_bytes)
    return false;
  // A copy it skipped or lost must be recorded out of sync first (finish waits for that).
  return !waits_for_record(f);
}

void MirroredBackend::answer_early(Fanout* f) {
  f->keep = owner_.lock();
  if (!f->keep) return;  // the LU is going: answered once every copy is done
  f->answered = true;
  for (std::size_t i = 0; i < copies_.size(); ++i) {
    // Before the caller hears: a read it sends next must see the write behind.
    if (f->pending_mask >> i & 1u)
      counters_->copies[i]->writes_behind.fetch_add(1, std::memory_order_seq_cst);
  }
  behind_ios_.fetch_add(1, std::memory_order_seq_cst);
  const bool is_write = f->kind == Fanout::Kind::write;
  if (is_write) behind_bytes_.fetch_add(f->len, std::memory_order_relaxed);
  if (f->kind != Fanout::Kind::flush) count_acknowledged(*f);
  f->caller->on_complete(is_write ? static_cast<int>(f->len) : 0);
}

void MirroredBackend::finish_behind(Fanout* f) {
  if (f->kind == Fanout::Kind::write) behind_bytes_.fetch_sub(f->len, std::memory_order_relaxed);
  behind_ios_.fetch_sub(1, std::memory_order_seq_cst);
  if (f->claimed) {
    order_.release(f->claim);
    f->claimed = false;
  }
  maybe_clear_hot();
  if (reactor::IoEngine* engine = reactor::IoEngine::current()) {
    return engine->start_timer(std::chrono::nanoseconds(0), &f->release);
  }
  delete f;
}

std::string MirroredBackend::begin_resync(std::size_t i) {
  if (replacing_[i].load(std::memory_order_acquire))
    return "copy " + copies_[i].name + " is being replaced";
  if (resync_running_[i].load(std::memory_order_acquire))
    return "a resync of copy " + copies_[i].name + " is running or still stopping";
  CopyState was = CopyState::out_of_sync;
  if (!counters_->copies[i]->state.compare_exchange_strong(was, CopyState::resyncing,
                                                           std::memory_order_acq_rel)) {
    return "copy " + copies_[i].name + " is " + metrics::MirrorCounters::to_string(was) +
           ", not out_of_sync";
  }
  if (in_sync_count() == 0) {
    set_state(i, CopyState::out_of_sync);
    return "no copy of " + options_.lun_label + " is in sync to resync from";
  }
  resync_running_[i].store(true, std::memory_order_release);
  counters_->copies[i]->resync_done.store(0, std::memory_order_relaxed);
  return {};
}

std::string MirroredBackend::begin_replace(std::size_t i) {
  if (replacing_[i].exchange(true, std::memory_order_acq_rel))
    return "a replacement of copy " + copies_[i].name + " is under way";
  if (in_sync(i) && in_sync_count() == 1) {
    replacing_[i].store(false, std::memory_order_release);
    return "copy " + copies_[i].name + " is the last copy of " + options_.lun_label +
           " in sync: there is nothing to fill a new store from";
  }
  mark_out_of_sync(i, "its store is being replaced (ringtgtctl copy replace)", 0);
  return {};
}

bool MirroredBackend::replace_drained(std::size_t i) const {
  return in_flight_[i].n.load(std::memory_order_seq_cst) == 0 &&
         !resync_running_[i].load(std::memory_order_acquire);
}

std::unique_ptr<Backend> MirroredBackend::finish_replace(std::size_t i,
                                                         std::unique_ptr<Backend> store,
                                                         std::string location) {
  // Out of sync since begin_replace, so no reactor reads copies_[i] now.
  std::unique_ptr<Backend> old = std::move(copies_[i].backend);
  copies_[i].backend = std::move(store);
  copies_[i].location = std::move(location);
  // A remote store's first connection counts as a reconnection: it resyncs.
  connections_when_out_[i].store(0, std::memory_order_release);
  mark_all_dirty(i);
  spdlog::warn("copy {} of {}: store replaced by {}: every region is dirty ({} bytes, a full sync)",
               copies_[i].name, options_.lun_label, copies_[i].backend->describe(), dirty_bytes(i));
  persist_state();
  replacing_[i].store(false, std::memory_order_release);
  return old;
}

void MirroredBackend::abandon_replace(std::size_t i) {
  replacing_[i].store(false, std::memory_order_release);
}

void MirroredBackend::run_resync(std::size_t i, std::shared_ptr<void> keep_alive) {
  (new ResyncJob(*this, i, std::move(keep_alive)))->start();
}

bool MirroredBackend::rejoin(std::size_t i) {
  // Readable before the state says in_sync (its data is complete now), so
  // that a failure racing with this finds a consistent copy to take out.
  counters_->copies[i]->in_sync.store(true, std::memory_order_release);
  const std::size_t now = in_sync_count_.fetch_add(1, std::memory_order_acq_rel) + 1;
  CopyState was = CopyState::resyncing;
  if (!counters_->copies[i]->state.compare_exchange_strong(was, CopyState::in_sync,
                                                           std::memory_order_acq_rel)) {
    // A flush failed on it meanwhile (flushes hold no range claim).
    counters_->copies[i]->in_sync.store(false, std::memory_order_release);
    in_sync_count_.fetch_sub(1, std::memory_order_acq_rel);
    return false;
  }
  spdlog::info("copy {} of {} is in sync again ({} of {} copies in sync, ack_quorum {})",
               copies_[i].name, options_.lun_label, now, copies_.size(), options_.ack_quorum);
  persist_state();
  if (quorum_wait_ && now >= options_.ack_quorum) quorum_wait_->release_all();
  return true;
}

void MirroredBackend::finish(Fanout* f) {
  if (f->answered) return finish_behind(f);
  if (!f->record_waited && waits_for_record(*f)) {
    f->record_waited = true;
    if (al_->after_next_write(&f->recorded, reactor::IoEngine::current())) return;
    if (!al_->persist()) f->not_logged = true;
  }
  int result;
  if (f->not_logged) {
    result = -EIO;
  } else if (f->ok() + f->unsupported < options_.ack_quorum) {
    result = quorum_error();
  } else if (f->unsupported != 0) {
    result = -EOPNOTSUPP;
  } else {
    result = f->kind == Fanout::Kind::write ? static_cast<int>(f->len) : 0;
    if (f->kind != Fanout::Kind::flush) count_acknowledged(*f);
  }
  if (f->claimed) order_.release(f->claim);
  IoOp* caller = f->caller;
  delete f;
  maybe_clear_hot();
  caller->on_complete(result);
}

void MirroredBackend::count_acknowledged(const Fanout& f) {
  // ok() counts the in-sync copies that hold it; a resyncing copy that was
  // written too is not a whole copy yet.
  auto& n =
      f.ok() == copies_.size() ? counters_->writes_on_all_copies : counters_->writes_at_quorum_only;
  n.fetch_add(1, std::memory_order_relaxed);
}

void MirroredBackend::start_in_order(Fanout* f) {
  f->claim = {f->offset, f->len, &f->resume, reactor::IoEngine::current()};
  f->claimed = true;
  if (order_.admit(f->claim)) start(f);
}

void MirroredBackend::write(const void* buf, std::size_t len, std::uint64_t offset, bool fua,
                            IoOp* op) {
  auto* f = new Fanout(this, Fanout::Kind::write, op, offset, len);
  f->buf = buf;
  f->fua = fua;
  start_in_order(f);
}

void MirroredBackend::flush(IoOp* op) {
  // A flush makes durable the writes answered before it. Without writes
  // answered early, those completed on every copy, so it needs no range.
  // With some, under writeback (where a write's completion is not durable),
  // it waits for them to reach their copies first: behind a claim of the
  // whole LUN. Under writethrough they are durable where they completed.
  auto* f = new Fanout(this, Fanout::Kind::flush, op);
  if (ack_policy_ == WriteAckPolicy::writeback && behind_ios_.load(std::memory_order_seq_cst) > 0) {
    f->barrier = true;
    f->offset = 0;
    f->len = size_bytes();
    return start_in_order(f);
  }
  start(f);
}

void MirroredBackend::unmap(std::uint64_t offset, std::uint64_t len, IoOp* op, bool more_follow) {
  auto* f = new Fanout(this, Fanout::Kind::unmap, op, offset, len);
  f->more_follow = more_follow;
  start_in_order(f);
}

void MirroredBackend::write_zeroes(std::uint64_t offset, std::uint64_t len, bool fua, IoOp* op) {
  auto* f = new Fanout(this, Fanout::Kind::zeroes, op, offset, len);
  f->fua = fua;
  start_in_order(f);
}

Backend::Extent MirroredBackend::extent_at(std::uint64_t offset, std::uint64_t max_len) {
  const int i = enter_next_in_sync(-1);
  // No copy in sync: no store to ask; every block counts as mapped.
  if (i < 0) return {true, max_len};
  const auto c = static_cast<std::size_t>(i);
  const Extent e = copies_[c].backend->extent_at(offset, max_len);
  leave(c);
  return e;
}

void MirroredBackend::grow_to(std::uint64_t bytes) {
  // Copies first: the LUN's size is the primary's, so it grows last.
  for (std::size_t i = copies_.size(); i-- > 0;) copies_[i].backend->grow_to(bytes);
  size_bytes_.store(copies_[0].backend->size_bytes(), std::memory_order_release);
}

std::string MirroredBackend::describe() const {
  std::string out = copies_[0].backend->describe() + " mirrored to";
  for (std::size_t i = 1; i < copies_.size(); ++i) {
    out += (i == 1 ? " " : ", ") + copies_[i].name + " (" + copies_[i].backend->describe() + ")";
  }
  return out;
}

}  // namespace ringtgt::storage
