// Per-thread pools of page-aligned I/O buffers, by power-of-two size class.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace ringtgt::reactor {

// Buffers for Data-Out and Data-In payloads. A freed buffer goes back to its
// class's free list, so a steady workload allocates nothing once warm. Not
// thread-safe: each reactor thread has its own (BufferPool::local()).
class BufferPool {
 public:
  static constexpr std::size_t kMinSize = 4096;
  static constexpr std::size_t kMaxSize = 32u << 20;
  static constexpr std::size_t kAlignment = 4096;

  ~BufferPool();

  // A buffer of at least size bytes (size <= kMaxSize), 4096-aligned; nullptr
  // when memory is exhausted.
  std::uint8_t* acquire(std::size_t size);
  void release(std::uint8_t* buf, std::size_t size);

  // Buffers kept per class before they are given back to the heap.
  // At most this many bytes kept for reuse; kept buffers over it are freed now.
  void set_retain_limit(std::size_t bytes);
  std::size_t bytes_retained() const { return retained_; }

  static BufferPool& local();

  // A process-wide cap on the bytes all pools hold (buffers in use plus those
  // kept for reuse), set once before the workers start: past it acquire()
  // returns nullptr. Each of `pools` pools keeps at most budget / 2 / pools
  // bytes for reuse, so at least half the budget is always there for buffers
  // in use whichever thread asks. Default: no cap.
  static void set_memory_budget(std::size_t bytes, unsigned pools);
  // Bytes all pools hold now (in use + kept), for metrics and tests.
  static std::size_t memory_held();
  // The cap set_memory_budget set (SIZE_MAX when none).
  static std::size_t memory_budget();

 private:
  static unsigned size_class(std::size_t size);
  std::size_t retain_cap() const;
  void trim();                           // gives every kept buffer back to the heap
  std::vector<std::uint8_t*> free_[14];  // 4 KiB .. 32 MiB
  std::size_t retained_ = 0;
  std::size_t retain_limit_ = 256u << 20;
};

}  // namespace ringtgt::reactor
