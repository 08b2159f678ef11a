#include "quorum_wait.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cassert>

namespace ringtgt::storage {

QuorumWait::QuorumWait(std::string label, int expired_error, std::atomic<std::uint64_t>* waiting)
    : label_(std::move(label)),
      expired_error_(expired_error),
      waiting_(waiting),
      thread_([this] { expire_loop(); }) {}

QuorumWait::~QuorumWait() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    assert(waiters_.empty());
  }
  cv_.notify_all();
  thread_.join();
}

QuorumWait::Park QuorumWait::park(reactor::IoOp* op, Clock::time_point deadline,
                                  const std::function<bool()>& still_lost) {
  reactor::IoEngine* engine = reactor::IoEngine::current();
  reactor::ForeignCompletions* home = engine != nullptr ? engine->foreign_completions() : nullptr;
  if (home == nullptr) return Park::cannot_wait;
  {
    std::lock_guard lock(mu_);
    if (!still_lost()) return Park::back;
    // Counted before another thread can complete it: the reactor does not
    // stop while a write waits here.
    home->expect();
    waiters_.push_back({op, home, deadline});
    publish();
  }
  cv_.notify_all();  // the earliest deadline may have changed
  return Park::parked;
}

void QuorumWait::release_all() {
  std::vector<Waiter> go;
  {
    std::lock_guard lock(mu_);
    go.swap(waiters_);
    publish();
  }
  if (!go.empty()) {
    spdlog::info("{}: the write quorum is back; {} writes that waited for it go on", label_,
                 go.size());
  }
  for (const Waiter& w : go) w.home->complete(w.op, 0);
}

std::size_t QuorumWait::waiting() const {
  std::lock_guard lock(mu_);
  return waiters_.size();
}

void QuorumWait::expire_loop() {
  std::unique_lock lock(mu_);
  while (!stopping_) {
    if (waiters_.empty()) {
      cv_.wait(lock);
      continue;
    }
    // A copy: waiters_ changes while the lock is released in the wait.
    const Clock::time_point until =
        std::min_element(waiters_.begin(), waiters_.end(), [](const Waiter& a, const Waiter& b) {
          return a.deadline < b.deadline;
        })->deadline;
    if (cv_.wait_until(lock, until) != std::cv_status::timeout) continue;
    std::vector<Waiter> expired;
    const auto now = Clock::now();
    std::erase_if(waiters_, [&](const Waiter& w) {
      if (w.deadline > now) return false;
      expired.push_back(w);
      return true;
    });
    if (expired.empty()) continue;
    publish();
    lock.unlock();
    spdlog::warn(
        "{}: {} writes waited for the write quorum until their time was up "
        "(on_quorum_loss = \"wait\"): answered ABORTED COMMAND",
        label_, expired.size());
    for (const Waiter& w : expired) w.home->complete(w.op, expired_error_);
    lock.lock();
  }
}

}  // namespace ringtgt::storage
