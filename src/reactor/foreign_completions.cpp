#include "ringtgt/reactor/foreign_completions.hpp"

#include <unistd.h>

namespace ringtgt::reactor {

void ForeignCompletions::complete(IoOp* op, int result) {
  op->foreign_result = result;
  IoOp* old = head_.load(std::memory_order_relaxed);
  do {
    op->foreign_next = old;
  } while (
      !head_.compare_exchange_weak(old, op, std::memory_order_release, std::memory_order_relaxed));
  // Only the push that found the queue empty wakes the owner: the drain that
  // this wake-up causes takes every op pushed after it, up to its exchange.
  if (old == nullptr) {
    std::uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(wake_fd_, &one, sizeof one);
  }
}

void ForeignCompletions::drain() {
  IoOp* list = head_.exchange(nullptr, std::memory_order_acquire);
  // The stack holds the newest first; reverse it so ops complete in order.
  IoOp* oldest_first = nullptr;
  while (list != nullptr) {
    IoOp* next = list->foreign_next;
    list->foreign_next = oldest_first;
    oldest_first = list;
    list = next;
  }
  while (oldest_first != nullptr) {
    IoOp* op = oldest_first;
    oldest_first = op->foreign_next;
    op->foreign_next = nullptr;
    --outstanding_;
    op->on_complete(op->foreign_result);
  }
}

}  // namespace ringtgt::reactor
