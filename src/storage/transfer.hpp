// One read, write or flush of a file backend, carried until it is really done.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "group_commit.hpp"
#include "ringtgt/reactor/io_engine.hpp"

namespace ringtgt::storage {

class TransferPool;

// The kernel may move fewer bytes than asked (a signal, a device limit, a
// file system at a boundary): that is not an error, so the rest is submitted
// again from where it stopped until every byte moved or an error came. A
// write that must be durable but went to the page cache then waits for group
// commit. Only then is the caller's operation completed, with the byte count
// (0 for a flush) or -errno.
class Transfer final : public reactor::IoOp, public DurabilityWaiter {
 public:
  enum class Kind : std::uint8_t { read, write, flush };

  struct Request {
    Kind kind;
    int fd;
    std::uint8_t* buf;
    std::size_t len;
    std::uint64_t offset;
    int rw_flags;             // RWF_DSYNC for a durable O_DIRECT write
    GroupCommit* then_flush;  // non-null: complete only once a flush covers it
    reactor::IoOp* caller;
    bool promise_durable = false;  // the caller will report it durable (for the log)
  };

  explicit Transfer(TransferPool& pool) : pool_(pool) {}
  void start(const Request& r);

  void on_complete(int result) override;
  void on_durable(int result) override;

 private:
  void submit_rest();
  void finish(int result);
  // result goes to the log, told to the caller.
  void finish(int result, int told);

  void record(DurabilityEvent::Kind kind, int result);

  TransferPool& pool_;
  Request r_{};
  std::size_t done_ = 0;
  std::uint64_t log_id_ = 0;
};

// Transfers of one reactor thread, reused: none is allocated per I/O once
// the pool is warm. Not thread-safe.
class TransferPool {
 public:
  explicit TransferPool(std::string describe) : describe_(std::move(describe)) {}
  // Tests: record every write and acknowledgement (the recording seam), as
  // store `store` whose blocks are block_size bytes.
  void set_log(DurabilityLog* log, std::uint32_t store, std::uint32_t block_size) {
    log_ = log;
    store_ = store;
    block_size_ = block_size;
  }
  DurabilityLog* log() const { return log_; }
  // The engine its transfers are submitted to (unset: the thread's own).
  void set_engine(reactor::IoEngine* engine) { engine_ = engine; }
  reactor::IoEngine* engine() const {
    return engine_ != nullptr ? engine_ : reactor::IoEngine::current();
  }
  std::uint32_t store() const { return store_; }
  std::uint32_t block_size() const { return block_size_; }
  Transfer* acquire();
  void release(Transfer* t) { free_.push_back(t); }
  const std::string& describe() const { return describe_; }  // for log lines

 private:
  std::string describe_;
  DurabilityLog* log_ = nullptr;
  reactor::IoEngine* engine_ = nullptr;
  std::uint32_t store_ = 0, block_size_ = 0;
  std::vector<std::unique_ptr<Transfer>> all_;
  std::vector<Transfer*> free_;
};

}  // namespace ringtgt::storage
