// Completions that arrive on a thread the reactor does not own (a storage
// library's callback threads, such as librbd's), handed back to the reactor
// thread that started the I/O so that IoOp::on_complete runs where the
// IoEngine contract says it does.
#pragma once

#include <atomic>
#include <cstdint>

#include "ringtgt/reactor/io_engine.hpp"

namespace ringtgt::reactor {

// A lock-free, allocation-free multi-producer queue of finished IoOps (linked
// through IoOp::foreign_next) and the eventfd its owner's ring reads: a push
// onto an empty queue writes the eventfd, the owner's next loop turn drains it.
class ForeignCompletions {
 public:
  // wake_fd: an eventfd the owner's ring keeps a read armed on.
  explicit ForeignCompletions(int wake_fd) : wake_fd_(wake_fd) {}
  ForeignCompletions(const ForeignCompletions&) = delete;
  ForeignCompletions& operator=(const ForeignCompletions&) = delete;

  // Owner thread, before handing op to the foreign library: counts it as in
  // flight, so the owner does not stop while the library still holds it.
  void expect() { ++outstanding_; }
  // Any thread, once per expect(): queues op's completion with result.
  void complete(IoOp* op, int result);
  // Owner thread: runs on_complete of every queued op, oldest first.
  void drain();
  // Owner thread: ops expected and not yet drained.
  unsigned outstanding() const { return outstanding_; }

 private:
  int wake_fd_;
  std::atomic<IoOp*> head_{nullptr};
  unsigned outstanding_ = 0;
};

}  // namespace ringtgt::reactor
