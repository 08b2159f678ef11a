// One thread, one io_uring ring: the engine a connection and its disk I/O run on.
#pragma once

#include <liburing.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "ringtgt/metrics/counters.hpp"
#include "ringtgt/reactor/foreign_completions.hpp"
#include "ringtgt/reactor/io_engine.hpp"

namespace ringtgt::reactor {

using Clock = std::chrono::steady_clock;

// Thrown by Reactor's constructor when io_uring cannot be used here, with a
// message a person can act on (kernel.io_uring_disabled, seccomp, old kernel).
struct IoUringUnavailable : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class Reactor final : public IoEngine {
 public:
  explicit Reactor(unsigned index, unsigned ring_entries = 1024);
  ~Reactor() override;
  Reactor(const Reactor&) = delete;
  Reactor& operator=(const Reactor&) = delete;

  unsigned index() const { return index_; }

  // Runs the loop on the calling thread until stop(); sets IoEngine::current().
  void run();
  // Thread-safe: asks run() to return once the ring has no more work the
  // caller waits for (in-flight ops are completed first).
  void stop();
  // Thread-safe: runs fn on this reactor's thread at its next loop turn.
  void post(std::function<void()> fn);
  // Reactor thread only: called about every tick_interval with the time now
  // (NOP pings, login time-outs).
  void on_tick(std::function<void(Clock::time_point)> fn);
  static constexpr std::chrono::milliseconds tick_interval{250};

  void read(int fd, void* buf, std::size_t len, std::uint64_t offset, IoOp* op) override;
  void write(int fd, const void* buf, std::size_t len, std::uint64_t offset, int rw_flags,
             IoOp* op) override;
  void fsync(int fd, bool datasync, IoOp* op) override;
  void write_durable(int fd, const void* buf, std::size_t len, std::uint64_t offset,
                     IoOp* op) override;
  void fallocate(int fd, int mode, std::uint64_t offset, std::uint64_t len, IoOp* op) override;
  void fallocate_durable(int fd, int mode, std::uint64_t offset, std::uint64_t len,
                         IoOp* op) override;
  void start_timer(std::chrono::nanoseconds after, TimerOp* op) override;
  void recv(int fd, void* buf, std::size_t len, int flags, IoOp* op) override;
  void sendmsg(int fd, const msghdr* msg, int flags, IoOp* op) override;
  bool stopping() const override { return stopping_.load(); }
  // Drained on the wake-up eventfd, like post(), without allocating.
  ForeignCompletions* foreign_completions() override { return foreign_.get(); }

  // Busy time of the loop and a heartbeat bumped on every tick: read by
  // /metrics and by the systemd watchdog (a reactor whose heartbeat stops is stuck).
  const metrics::WorkerCounters& counters() const { return counters_; }

  // What the kernel's io_uring offers, for the start-up log line.
  static std::string probe_description();

 private:
  io_uring_sqe* next_sqe();
  void drain_posted();
  void arm_wakeup();
  void arm_tick();

  unsigned index_;
  io_uring ring_{};
  int wake_fd_ = -1;
  std::uint64_t wake_buf_ = 0;
  std::atomic<bool> stopping_{false};
  std::mutex posted_mu_;
  std::vector<std::function<void()>> posted_;
  std::vector<std::function<void(Clock::time_point)>> tick_handlers_;
  unsigned inflight_ = 0;  // operations of callers, not the reactor's own
  unsigned ring_flags_ = 0;
  __kernel_timespec tick_ts_{};
  IoOp* wake_op_ = nullptr;
  bool cqe_skip_ = false;  // IOSQE_CQE_SKIP_SUCCESS available
  IoOp* tick_op_ = nullptr;
  std::vector<std::pair<IoOp*, int>> completions_;
  metrics::WorkerCounters counters_;
  std::unique_ptr<ForeignCompletions> foreign_;  // shares wake_fd_
};

}  // namespace ringtgt::reactor
