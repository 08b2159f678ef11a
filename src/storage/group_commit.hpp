// Group commit: one fdatasync makes every write that completed before it durable.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

#include "ringtgt/reactor/io_engine.hpp"
#include "ringtgt/storage/durability_log.hpp"

namespace ringtgt::storage {

// A request that waits for durability: a buffered write whose data reached
// the page cache, or a SYNCHRONIZE CACHE. Intrusive (the caller owns it), so
// queueing allocates nothing.
class DurabilityWaiter {
 public:
  // 0 once a flush that started after wait_for_flush() finished; -errno if
  // it failed, or if any earlier flush of the file failed.
  virtual void on_durable(int result) = 0;
  DurabilityWaiter* next_waiter = nullptr;

 protected:
  ~DurabilityWaiter() = default;
};

// What one reactor thread does for one backing file: at most one fdatasync in
// flight; waiters that arrive while it runs wait for the next one, which
// covers all of them (a flush that started before a write completed may not
// include that write, so it never acknowledges it). A waiter arriving while
// no flush runs starts one at once: a lone write pays one write + one sync,
// as before, and under load the syncs are shared.
//
// A failed flush fails every waiter it covered, and sets `lost_errno`, shared by
// every reactor's GroupCommit of the file: after a failed fdatasync the kernel
// may have dropped the dirty pages it could not write and marked them clean, so
// a later fdatasync would succeed without writing them (PostgreSQL's
// "fsync-gate"). From then on every waiter fails without a flush, until the
// file is opened again.
class GroupCommit {
 public:
  // describe: the file or device, for the log line of a failed flush.
  GroupCommit(int fd, std::atomic<int>& lost_errno, const std::string& describe)
      : fd_(fd), lost_errno_(lost_errno), describe_(describe) {}
  // Tests: record each flush's start and end (the recording seam), as store `store`'s.
  void set_log(DurabilityLog* log, std::uint32_t store) {
    log_ = log;
    store_ = store;
  }
  // The engine its fdatasyncs go to (unset: the thread's own).
  void set_engine(reactor::IoEngine* engine) { engine_ = engine; }
  GroupCommit(const GroupCommit&) = delete;
  GroupCommit& operator=(const GroupCommit&) = delete;

  // On the owning reactor's thread. w->on_durable runs once, maybe before
  // this returns (synchronous engines).
  void wait_for_flush(DurabilityWaiter* w);

  bool flush_in_flight() const { return flushing_; }
  // fdatasyncs issued, for tests and metrics.
  std::uint64_t flushes() const { return flushes_; }

 private:
  struct Queue {
    DurabilityWaiter* head = nullptr;
    DurabilityWaiter* tail = nullptr;
    bool empty() const { return head == nullptr; }
    void push(DurabilityWaiter* w);
    DurabilityWaiter* take_all();
  };
  struct FlushOp final : reactor::IoOp {
    GroupCommit* owner = nullptr;
    void on_complete(int result) override { owner->flush_done(result); }
  };

  void start_flush();
  void flush_done(int result);
  static void complete_all(DurabilityWaiter* list, int result);

  int fd_;
  std::atomic<int>& lost_errno_;
  const std::string& describe_;
  Queue next_;     // completed after the flush in flight started: wait for the next one
  Queue covered_;  // covered by the flush in flight
  bool flushing_ = false;
  std::uint64_t flushes_ = 0;
  DurabilityLog* log_ = nullptr;
  reactor::IoEngine* engine_ = nullptr;
  std::uint32_t store_ = 0;
  std::uint64_t flush_id_ = 0;  // of the flush in flight, in the log
  FlushOp flush_op_;
};

}  // namespace ringtgt::storage
