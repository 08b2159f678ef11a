#include "ringtgt/reactor/buffer_pool.hpp"

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstdlib>
#include <limits>

namespace ringtgt::reactor {

namespace {
// Touched only when a pool allocates from or frees to the heap, not when it
// reuses a buffer: a warm pool costs no shared-memory traffic per I/O.
std::atomic<std::size_t> g_held{0};
std::size_t g_budget = std::numeric_limits<std::size_t>::max();
std::size_t g_retain_cap = std::numeric_limits<std::size_t>::max();

bool reserve(std::size_t bytes) {
  if (g_held.fetch_add(bytes, std::memory_order_relaxed) + bytes <= g_budget) return true;
  g_held.fetch_sub(bytes, std::memory_order_relaxed);
  return false;
}
void unreserve(std::size_t bytes) {
  g_held.fetch_sub(bytes, std::memory_order_relaxed);
}
}  // namespace

void BufferPool::set_memory_budget(std::size_t bytes, unsigned pools) {
  g_budget = bytes;
  g_retain_cap = bytes / 2 / std::max(1u, pools);
}

std::size_t BufferPool::memory_held() {
  return g_held.load(std::memory_order_relaxed);
}

std::size_t BufferPool::memory_budget() {
  return g_budget;
}

std::size_t BufferPool::retain_cap() const {
  return std::min(retain_limit_, g_retain_cap);
}

void BufferPool::set_retain_limit(std::size_t bytes) {
  retain_limit_ = bytes;
  if (retained_ > retain_cap()) trim();
}

void BufferPool::trim() {
  for (auto& list : free_) {
    for (auto* p : list) std::free(p);
    list.clear();
  }
  unreserve(retained_);
  retained_ = 0;
}

BufferPool::~BufferPool() {
  trim();
}

unsigned BufferPool::size_class(std::size_t size) {
  if (size <= kMinSize) return 0;
  return static_cast<unsigned>(std::bit_width(size - 1) - std::bit_width(kMinSize - 1));
}

std::uint8_t* BufferPool::acquire(std::size_t size) {
  if (size > kMaxSize) return nullptr;
  unsigned c = size_class(size);
  auto& list = free_[c];
  if (!list.empty()) {
    std::uint8_t* p = list.back();
    list.pop_back();
    retained_ -= kMinSize << c;
    return p;
  }
  std::size_t bytes = kMinSize << c;
  if (!reserve(bytes)) {
    // Kept buffers of other sizes may be what stands in the way.
    trim();
    if (!reserve(bytes)) return nullptr;
  }
  auto* p = static_cast<std::uint8_t*>(std::aligned_alloc(kAlignment, bytes));
  if (p == nullptr) unreserve(bytes);
  return p;
}

void BufferPool::release(std::uint8_t* buf, std::size_t size) {
  if (buf == nullptr) return;
  unsigned c = size_class(size);
  std::size_t bytes = kMinSize << c;
  if (retained_ + bytes > retain_cap()) {
    std::free(buf);
    unreserve(bytes);
    return;
  }
  free_[c].push_back(buf);
  retained_ += bytes;
}

BufferPool& BufferPool::local() {
  thread_local BufferPool pool;
  return pool;
}

}  // namespace ringtgt::reactor
