#include "ringtgt/reactor/buffer_pool.hpp"

#include <bit>
#include <cstdlib>

namespace ringtgt::reactor {

BufferPool::~BufferPool() {
  for (auto& list : free_)
    for (auto* p : list) std::free(p);
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
  return static_cast<std::uint8_t*>(std::aligned_alloc(kAlignment, kMinSize << c));
}

void BufferPool::release(std::uint8_t* buf, std::size_t size) {
  if (buf == nullptr) return;
  unsigned c = size_class(size);
  std::size_t bytes = kMinSize << c;
  if (retained_ + bytes > retain_limit_) {
    std::free(buf);
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
