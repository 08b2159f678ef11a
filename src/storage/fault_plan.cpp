#include "ringtgt/storage/fault_plan.hpp"

#include <cerrno>

namespace ringtgt::storage {

std::optional<FaultKind> fault_kind_from_string(const std::string& s) {
  for (std::size_t k = 0; k < metrics::kFaultKinds; ++k) {
    auto kind = static_cast<FaultKind>(k);
    if (s == metrics::to_string(kind)) return kind;
  }
  return std::nullopt;
}

std::uint64_t FaultPlan::add(FaultRule r) {
  std::lock_guard lock(mu_);
  r.id = next_id_++;
  r.fired = 0;
  rules_.push_back(r);
  armed_.store(true, std::memory_order_release);
  return r.id;
}

bool FaultPlan::remove(std::uint64_t id) {
  std::lock_guard lock(mu_);
  const auto before = rules_.size();
  std::erase_if(rules_, [id](const FaultRule& r) { return r.id == id; });
  armed_.store(!rules_.empty(), std::memory_order_release);
  return rules_.size() != before;
}

void FaultPlan::clear() {
  std::lock_guard lock(mu_);
  rules_.clear();
  armed_.store(false, std::memory_order_release);
}

std::vector<FaultRule> FaultPlan::rules() const {
  std::lock_guard lock(mu_);
  return rules_;
}

bool FaultPlan::hits(const FaultRule& r, Io io, std::uint64_t at, std::uint64_t len) const {
  switch (r.kind) {
    case FaultKind::flush_failure:
      return io == Io::sync;
    case FaultKind::enospc:
      return io == Io::write && r.overlaps(at, len);
    case FaultKind::delay:
      // A sync covers every block written: a delay of writes to the whole LUN hits it.
      if (io == Io::sync) return r.length == 0 && r.writes;
      [[fallthrough]];
    default:
      if (io == Io::sync) return false;
      return (io == Io::read ? r.reads : r.writes) && r.overlaps(at, len);
  }
}

void FaultPlan::fire(std::size_t i) {
  FaultRule& r = rules_[i];
  ++r.fired;
  counters_->count(r.kind);
  if (r.count != 0 && r.fired >= r.count) {
    rules_.erase(rules_.begin() + static_cast<std::ptrdiff_t>(i));
    armed_.store(!rules_.empty(), std::memory_order_release);
  }
}

namespace {
// How much of a transfer a short completion moves: about half, in whole
// blocks; nothing shorter than one block.
std::uint64_t short_length(std::uint64_t len, std::uint64_t block) {
  return len / 2 / block * block;
}
}  // namespace

DeviceFault FaultPlan::at_device(Io io, std::uint64_t at, std::uint64_t len) {
  if (!armed_.load(std::memory_order_acquire)) return {};
  std::lock_guard lock(mu_);
  for (std::size_t i = 0; i < rules_.size(); ++i) {
    const FaultRule& r = rules_[i];
    if (r.kind == FaultKind::delay || !hits(r, io, at, len)) continue;
    switch (r.kind) {
      case FaultKind::eio:
        if (r.length != 0 && r.offset > at) {
          // The blocks before the bad range are read or written; the
          // kernel then asks again from the bad block, which fails.
          return {DeviceFault::Action::move_only, 0, r.offset - at};
        }
        fire(i);
        return {DeviceFault::Action::fail, EIO, 0};
      case FaultKind::enospc:
        fire(i);
        return {DeviceFault::Action::fail, ENOSPC, 0};
      case FaultKind::flush_failure:
        fire(i);
        return {DeviceFault::Action::fail, EIO, 0};
      case FaultKind::short_transfer: {
        const std::uint64_t part = short_length(len, block_size_);
        if (part == 0) continue;  // one block: nothing shorter to return
        fire(i);
        return {DeviceFault::Action::move_only, 0, part};
      }
      case FaultKind::delay:
        break;
    }
  }
  return {};
}

std::chrono::milliseconds FaultPlan::delay_for(Io io, std::uint64_t at, std::uint64_t len) {
  if (!armed_.load(std::memory_order_acquire)) return {};
  std::lock_guard lock(mu_);
  for (std::size_t i = 0; i < rules_.size(); ++i) {
    if (rules_[i].kind != FaultKind::delay || !hits(rules_[i], io, at, len)) continue;
    const auto delay = rules_[i].delay;
    fire(i);
    return delay;
  }
  return {};
}

}  // namespace ringtgt::storage
