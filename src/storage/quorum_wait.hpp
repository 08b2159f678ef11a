// Where a mirrored LUN's writes wait while its in-sync copies are fewer than
// ack_quorum, under on_quorum_loss = "wait" (docs/replication.md): each
// waits until the quorum is back (a copy resynced and rejoined) or until its
// deadline, whichever comes first, and then goes on on the reactor thread it
// came from. A thread of its own answers the ones whose time is up, so a
// write that waits needs no timer of its reactor and nothing else to come
// along. Private to the storage layer.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "ringtgt/reactor/foreign_completions.hpp"
#include "ringtgt/reactor/io_engine.hpp"

namespace ringtgt::storage {

class QuorumWait {
 public:
  using Clock = std::chrono::steady_clock;
  // expired_error: what a write whose time is up completes with. label names
  // the LUN in log lines; *waiting (for /metrics) follows waiting().
  QuorumWait(std::string label, int expired_error, std::atomic<std::uint64_t>* waiting);
  // Nothing may wait by then (the LUN's commands are done before it goes).
  ~QuorumWait();
  QuorumWait(const QuorumWait&) = delete;
  QuorumWait& operator=(const QuorumWait&) = delete;

  enum class Park {
    parked,      // op completes later on this thread: 0 (go on) or expired_error
    back,        // the quorum is back already: go on now
    cannot_wait  // this thread has no loop to hand op back on: answer now
  };
  // On the reactor thread of op: holds op until release_all() or deadline.
  // still_lost is evaluated under the same lock release_all() takes, so a
  // quorum that comes back while op is being parked does not strand it.
  Park park(reactor::IoOp* op, Clock::time_point deadline, const std::function<bool()>& still_lost);
  // Any thread, once the quorum is back (after the in-sync count says so):
  // every waiting op goes on, on its own thread.
  void release_all();
  std::size_t waiting() const;

 private:
  struct Waiter {
    reactor::IoOp* op;
    reactor::ForeignCompletions* home;
    Clock::time_point deadline;
  };
  // The thread: answers the waiters whose deadline passed.
  void expire_loop();
  // With mu_ held: publishes the number waiting.
  void publish() { waiting_->store(waiters_.size(), std::memory_order_relaxed); }

  const std::string label_;
  const int expired_error_;
  std::atomic<std::uint64_t>* const waiting_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Waiter> waiters_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace ringtgt::storage
