#include "ringtgt/storage/range_order.hpp"

#include <algorithm>

#include "ringtgt/reactor/foreign_completions.hpp"

namespace ringtgt::storage {

bool RangeOrder::blocked(const Claim& c, std::size_t waiting_before) const {
  for (const Claim* a : active_) {
    if (overlaps(*a, c)) return true;
  }
  // An older waiting claim that overlaps goes first: overlapping writes keep
  // the order they arrived in, not only an order.
  for (std::size_t i = 0; i < waiting_before; ++i) {
    if (overlaps(*waiting_[i], c)) return true;
  }
  return false;
}

bool RangeOrder::admit(Claim& c) {
  std::lock_guard lock(mu_);
  if (!blocked(c, waiting_.size())) {
    active_.push_back(&c);
    return true;
  }
  waiting_.push_back(&c);
  // Counted as in flight on its thread, so its reactor does not stop while
  // the claim waits to be handed back there.
  if (auto* fc = c.home != nullptr ? c.home->foreign_completions() : nullptr) fc->expect();
  return false;
}

bool RangeOrder::try_admit(Claim& c) {
  std::lock_guard lock(mu_);
  if (blocked(c, waiting_.size())) return false;
  active_.push_back(&c);
  return true;
}

void RangeOrder::release(Claim& c) {
  std::vector<Claim*> ready;
  {
    std::lock_guard lock(mu_);
    active_.erase(std::find(active_.begin(), active_.end(), &c));
    for (std::size_t i = 0; i < waiting_.size();) {
      Claim* w = waiting_[i];
      if (blocked(*w, i)) {
        ++i;
        continue;
      }
      waiting_.erase(waiting_.begin() + static_cast<std::ptrdiff_t>(i));
      active_.push_back(w);
      ready.push_back(w);
    }
  }
  for (Claim* w : ready) {
    if (auto* fc = w->home != nullptr ? w->home->foreign_completions() : nullptr) {
      fc->complete(w->resume, 0);
    } else {
      w->resume->on_complete(0);
    }
  }
}

std::size_t RangeOrder::in_flight() const {
  std::lock_guard lock(mu_);
  return active_.size();
}

std::size_t RangeOrder::waiting() const {
  std::lock_guard lock(mu_);
  return waiting_.size();
}

}  // namespace ringtgt::storage
