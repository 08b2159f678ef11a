#include "group_commit.hpp"

#include <spdlog/spdlog.h>

#include <cerrno>
#include <cstring>

namespace ringtgt::storage {

void GroupCommit::Queue::push(DurabilityWaiter* w) {
  w->next_waiter = nullptr;
  if (tail == nullptr) {
    head = tail = w;
  } else {
    tail->next_waiter = w;
    tail = w;
  }
}

DurabilityWaiter* GroupCommit::Queue::take_all() {
  DurabilityWaiter* list = head;
  head = tail = nullptr;
  return list;
}

void GroupCommit::complete_all(DurabilityWaiter* list, int result) {
  while (list != nullptr) {
    DurabilityWaiter* w = list;
    list = list->next_waiter;  // read first: on_durable may reuse w
    w->next_waiter = nullptr;
    w->on_durable(result);
  }
}

void GroupCommit::wait_for_flush(DurabilityWaiter* w) {
  if (const int lost = lost_errno_.load(std::memory_order_acquire); lost != 0) {
    return w->on_durable(-lost);
  }
  next_.push(w);
  if (!flushing_) start_flush();
}

void GroupCommit::start_flush() {
  flushing_ = true;
  covered_ = next_;
  next_ = Queue{};
  ++flushes_;
  if (log_ != nullptr) {
    flush_id_ = log_->next_id();
    DurabilityEvent e{DurabilityEvent::Kind::flush_started, 0};
    e.flush_id = flush_id_;
    e.store = store_;
    log_->record(e);  // before the submission: the flush starts after this
  }
  flush_op_.owner = this;
  auto* engine = engine_ != nullptr ? engine_ : reactor::IoEngine::current();
  engine->fsync(fd_, true, &flush_op_);
}

void GroupCommit::flush_done(int result) {
  if (log_ != nullptr) {
    DurabilityEvent e{DurabilityEvent::Kind::flush_done, 0};
    e.flush_id = flush_id_;
    e.store = store_;
    e.result = result;
    log_->record(e);
  }
  if (result < 0) {
    int expected = 0;
    if (lost_errno_.compare_exchange_strong(expected, -result)) {
      spdlog::error(
          "{}: fdatasync failed ({}): the writes it covered fail, and so will every durable "
          "write and flush of it until it is opened again (data may be lost)",
          describe_, std::strerror(-result));
    }
  }
  const int lost = lost_errno_.load(std::memory_order_acquire);
  DurabilityWaiter* done = covered_.take_all();
  flushing_ = false;
  // The next flush goes out before the covered waiters complete: they may
  // submit more writes, which then queue behind it.
  if (!next_.empty()) {
    if (lost != 0) {
      complete_all(next_.take_all(), -lost);
    } else {
      start_flush();
    }
  }
  complete_all(done, lost != 0 ? -lost : 0);
}

}  // namespace ringtgt::storage
