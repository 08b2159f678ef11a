// The device side of fault injection: an I/O engine, put between a file
// backend and its reactor, that answers reads, writes and syncs as a failing
// disk would (EIO, ENOSPC, a short transfer, a failed fdatasync), by the
// LUN's FaultPlan. Beneath the backend, so that what the backend itself must
// do about them is what a test sees: continue a short transfer, fail the
// writes a failed sync covered and every later durable write (fsync-gate),
// map errno to sense with the failing block.
#pragma once

#include <memory>

#include "ringtgt/reactor/io_engine.hpp"
#include "ringtgt/storage/fault_plan.hpp"

namespace ringtgt::storage {

class FaultInjectingEngine final : public reactor::IoEngine {
 public:
  // thread_engine: the reactor of the thread this engine serves.
  FaultInjectingEngine(reactor::IoEngine& thread_engine, std::shared_ptr<FaultPlan> plan)
      : real_(thread_engine), plan_(std::move(plan)) {}

  void read(int fd, void* buf, std::size_t len, std::uint64_t offset, reactor::IoOp* op) override;
  void write(int fd, const void* buf, std::size_t len, std::uint64_t offset, int rw_flags,
             reactor::IoOp* op) override;
  void fsync(int fd, bool datasync, reactor::IoOp* op) override;
  void write_durable(int fd, const void* buf, std::size_t len, std::uint64_t offset,
                     reactor::IoOp* op) override;

  // Not faulted: passed to the thread's engine.
  void fallocate(int fd, int mode, std::uint64_t offset, std::uint64_t len,
                 reactor::IoOp* op) override {
    real_.fallocate(fd, mode, offset, len, op);
  }
  void fallocate_durable(int fd, int mode, std::uint64_t offset, std::uint64_t len,
                         reactor::IoOp* op) override {
    real_.fallocate_durable(fd, mode, offset, len, op);
  }
  void start_timer(std::chrono::nanoseconds after, reactor::TimerOp* op) override {
    real_.start_timer(after, op);
  }
  void recv(int fd, void* buf, std::size_t len, int flags, reactor::IoOp* op) override {
    real_.recv(fd, buf, len, flags, op);
  }
  void sendmsg(int fd, const msghdr* msg, int flags, reactor::IoOp* op) override {
    real_.sendmsg(fd, msg, flags, op);
  }

 private:
  reactor::IoEngine& real_;
  std::shared_ptr<FaultPlan> plan_;
};

}  // namespace ringtgt::storage
