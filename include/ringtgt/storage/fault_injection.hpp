// Fault injection for tests ([testing] fault_injection = true): the backend
// a LUN gets instead of its own, wrapping it. It holds the LUN's FaultPlan
// (what the admin socket's fault.* methods arm) and delays completions the
// plan says are slow, on a reactor timer; the device faults (EIO, ENOSPC,
// short transfers, failed syncs) come from a FaultInjectingEngine beneath
// the wrapped backend (fault_injecting_engine.hpp), where the backend has to
// handle them. Nothing of it exists in a daemon without that setting.
#pragma once

#include <memory>
#include <string>

#include "ringtgt/storage/backend.hpp"
#include "ringtgt/storage/fault_plan.hpp"

namespace ringtgt::storage {

class FaultInjectingBackend final : public Backend {
 public:
  FaultInjectingBackend(std::unique_ptr<Backend> inner, std::shared_ptr<FaultPlan> plan)
      : inner_(std::move(inner)), plan_(std::move(plan)) {}

  FaultPlan& plan() { return *plan_; }
  const FaultPlan& plan() const { return *plan_; }
  const Backend& inner() const { return *inner_; }

  std::uint64_t size_bytes() const override { return inner_->size_bytes(); }
  WriteAckPolicy ack_policy() const override { return inner_->ack_policy(); }
  void read(void* buf, std::size_t len, std::uint64_t offset, IoOp* op) override;
  void write(const void* buf, std::size_t len, std::uint64_t offset, bool fua, IoOp* op) override;
  void flush(IoOp* op) override;
  bool can_unmap() const override { return inner_->can_unmap(); }
  void unmap(std::uint64_t offset, std::uint64_t len, IoOp* op, bool more_follow = false) override {
    inner_->unmap(offset, len, op, more_follow);
  }
  void write_zeroes(std::uint64_t offset, std::uint64_t len, bool fua, IoOp* op) override {
    inner_->write_zeroes(offset, len, fua, op);
  }
  Extent extent_at(std::uint64_t offset, std::uint64_t max_len) override {
    return inner_->extent_at(offset, max_len);
  }
  void grow_to(std::uint64_t bytes) override { inner_->grow_to(bytes); }
  std::string describe() const override { return inner_->describe() + " (fault injection)"; }

 private:
  // The caller's op if the plan leaves this I/O alone, else one that holds
  // its completion back by the plan's delay.
  IoOp* maybe_delayed(FaultPlan::Io io, std::uint64_t offset, std::uint64_t len, IoOp* op);

  std::unique_ptr<Backend> inner_;
  std::shared_ptr<FaultPlan> plan_;
};

}  // namespace ringtgt::storage
