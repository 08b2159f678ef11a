#include "ringtgt/storage/unopened_backend.hpp"

#include <cerrno>

namespace ringtgt::storage {

UnopenedBackend::UnopenedBackend(std::string spec, WriteAckPolicy policy, std::string why,
                                 std::shared_ptr<metrics::StoreCounters> counters)
    : spec_(std::move(spec)),
      policy_(policy),
      why_(std::move(why)),
      counters_(std::move(counters)) {
  counters_->not_open.store(true, std::memory_order_relaxed);
}

void UnopenedBackend::read(void*, std::size_t, std::uint64_t, IoOp* op) {
  op->on_complete(-ETIMEDOUT);
}

void UnopenedBackend::write(const void*, std::size_t, std::uint64_t, bool, IoOp* op) {
  op->on_complete(-ETIMEDOUT);
}

void UnopenedBackend::flush(IoOp* op) {
  op->on_complete(-ETIMEDOUT);
}

void UnopenedBackend::unmap(std::uint64_t, std::uint64_t, IoOp* op, bool) {
  op->on_complete(-ETIMEDOUT);
}

std::string UnopenedBackend::state() const {
  std::lock_guard lock(mu_);
  return "not open (retrying): " + why_;
}

void UnopenedBackend::set_reason(std::string why) {
  std::lock_guard lock(mu_);
  why_ = std::move(why);
}

}  // namespace ringtgt::storage
