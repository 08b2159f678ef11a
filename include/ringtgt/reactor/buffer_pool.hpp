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
  static constexpr std::size_t kMaxSize = 16u << 20;
  static constexpr std::size_t kAlignment = 4096;

  ~BufferPool();

  // A buffer of at least size bytes (size <= kMaxSize), 4096-aligned; nullptr
  // when memory is exhausted.
  std::uint8_t* acquire(std::size_t size);
  void release(std::uint8_t* buf, std::size_t size);

  // Buffers kept per class before they are given back to the heap.
  void set_retain_limit(std::size_t bytes) { retain_limit_ = bytes; }
  std::size_t bytes_retained() const { return retained_; }

  static BufferPool& local();

 private:
  static unsigned size_class(std::size_t size);
  std::vector<std::uint8_t*> free_[13];  // 4 KiB .. 16 MiB
  std::size_t retained_ = 0;
  std::size_t retain_limit_ = 256u << 20;
};

}  // namespace ringtgt::reactor
