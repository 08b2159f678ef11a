// Asynchronous I/O submission as the storage and net layers see it.
#pragma once

#include <linux/time_types.h>
#include <sys/socket.h>

#include <chrono>
#include <cstddef>
#include <cstdint>

namespace ringtgt::reactor {

class ForeignCompletions;

// An operation in flight. The caller owns it (embedded in a task or a
// connection), so submitting an I/O allocates nothing. on_complete gets the
// io_uring result: bytes moved (>= 0) or -errno. It runs on the thread that
// submitted the operation, and may run before the submitting call returns
// (synchronous engines do that).
class IoOp {
 public:
  virtual void on_complete(int result) = 0;

  // Set by IoEngine::write_durable: the byte count reported on success.
  std::uint32_t durable_len = 0;
  // Set by IoEngine::fallocate_durable: the file to sync once it succeeded.
  int durable_fd = -1;
  // Used by ForeignCompletions while the op waits to be handed back to its thread.
  IoOp* foreign_next = nullptr;
  int foreign_result = 0;

 protected:
  ~IoOp() = default;
};

// A one-shot timer as an operation: on_complete runs once the time has
// passed (with io_uring's -ETIME, or 0 from an engine without a clock). The
// kernel reads the deadline from here, so arming one allocates nothing.
class TimerOp : public IoOp {
 public:
  __kernel_timespec deadline{};

 protected:
  ~TimerOp() = default;
};

// What a backend or a connection needs from the thread it runs on.
class IoEngine {
 public:
  virtual ~IoEngine() = default;

  virtual void read(int fd, void* buf, std::size_t len, std::uint64_t offset, IoOp* op) = 0;
  // rw_flags are preadv2/pwritev2 RWF_* flags (RWF_DSYNC for a durable write).
  virtual void write(int fd, const void* buf, std::size_t len, std::uint64_t offset, int rw_flags,
                     IoOp* op) = 0;
  virtual void fsync(int fd, bool datasync, IoOp* op) = 0;
  // A write that completes only once it is durable. The default is a write
  // with RWF_DSYNC; a reactor instead links a plain write to an fdatasync so
  // that concurrent durable writes to one file are not serialised behind
  // each other's syncs (the kernel runs buffered RWF_DSYNC writes of a file
  // one at a time, while concurrent fdatasyncs share journal commits).
  virtual void write_durable(int fd, const void* buf, std::size_t len, std::uint64_t offset,
                             IoOp* op);
  // fallocate(2) as an operation (FALLOC_FL_* mode): completes with 0 or
  // -errno. The default runs the syscall inline; a reactor queues it.
  virtual void fallocate(int fd, int mode, std::uint64_t offset, std::uint64_t len, IoOp* op);
  // fallocate followed by an fsync: completes once the change is durable
  // (a punched hole or zeroed range survives a power cut). The default runs
  // both syscalls inline; a reactor links them on its ring.
  virtual void fallocate_durable(int fd, int mode, std::uint64_t offset, std::uint64_t len,
                                 IoOp* op);
  // Completes op after `after` without blocking the thread. The default
  // (engines of unit tests, which have no loop) completes it at once.
  virtual void start_timer(std::chrono::nanoseconds after, TimerOp* op);
  virtual void recv(int fd, void* buf, std::size_t len, int flags, IoOp* op) = 0;
  // msg and everything it points to must stay valid until op completes.
  virtual void sendmsg(int fd, const msghdr* msg, int flags, IoOp* op) = 0;

  // Whether the loop was asked to stop: background work (a resync) ends
  // instead of issuing more, so that the reactor can drain and return.
  virtual bool stopping() const { return false; }
  // Where a library that completes I/O on its own threads hands completions
  // back to this engine's thread (foreign_completions.hpp); nullptr when the
  // engine has no loop to run them on.
  virtual ForeignCompletions* foreign_completions() { return nullptr; }

  // The engine of the calling thread: its reactor, or whatever a test set.
  static IoEngine* current();
  static void set_current(IoEngine* engine);
};

}  // namespace ringtgt::reactor
