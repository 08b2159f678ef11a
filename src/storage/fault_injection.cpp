#include "ringtgt/storage/fault_injection.hpp"

namespace ringtgt::storage {

namespace {
// One slow I/O: the inner backend's completion is kept, a timer is armed on
// the thread's engine, and only when it fires does the caller hear the
// result. Allocated per delayed I/O: test-only, and rare even there.
class DelayedCompletion final : public reactor::TimerOp {
 public:
  DelayedCompletion(IoOp* caller, std::chrono::milliseconds delay)
      : caller_(caller), delay_(delay) {}

  void on_complete(int result) override {
    if (!timer_armed_) {
      result_ = result;
      timer_armed_ = true;
      return reactor::IoEngine::current()->start_timer(delay_, this);
    }
    IoOp* caller = caller_;
    const int r = result_;
    delete this;
    caller->on_complete(r);
  }

 private:
  ~DelayedCompletion() = default;
  IoOp* caller_;
  std::chrono::milliseconds delay_;
  bool timer_armed_ = false;
  int result_ = 0;
};
}  // namespace

IoOp* FaultInjectingBackend::maybe_delayed(FaultPlan::Io io, std::uint64_t offset,
                                           std::uint64_t len, IoOp* op) {
  const auto delay = plan_->delay_for(io, offset, len);
  if (delay.count() == 0) return op;
  return new DelayedCompletion(op, delay);
}

void FaultInjectingBackend::read(void* buf, std::size_t len, std::uint64_t offset, IoOp* op) {
  inner_->read(buf, len, offset, maybe_delayed(FaultPlan::Io::read, offset, len, op));
}

void FaultInjectingBackend::write(const void* buf, std::size_t len, std::uint64_t offset, bool fua,
                                  IoOp* op) {
  inner_->write(buf, len, offset, fua, maybe_delayed(FaultPlan::Io::write, offset, len, op));
}

void FaultInjectingBackend::flush(IoOp* op) {
  inner_->flush(maybe_delayed(FaultPlan::Io::sync, 0, 0, op));
}

}  // namespace ringtgt::storage
