#include "ringtgt/storage/fault_injecting_engine.hpp"

namespace ringtgt::storage {

using Action = DeviceFault::Action;

void FaultInjectingEngine::read(int fd, void* buf, std::size_t len, std::uint64_t offset,
                                reactor::IoOp* op) {
  const DeviceFault f = plan_->at_device(FaultPlan::Io::read, offset, len);
  if (f.action == Action::fail) return op->on_complete(-f.error);
  if (f.action == Action::move_only) len = f.bytes;
  real_.read(fd, buf, len, offset, op);
}

void FaultInjectingEngine::write(int fd, const void* buf, std::size_t len, std::uint64_t offset,
                                 int rw_flags, reactor::IoOp* op) {
  const DeviceFault f = plan_->at_device(FaultPlan::Io::write, offset, len);
  if (f.action == Action::fail) return op->on_complete(-f.error);
  if (f.action == Action::move_only) len = f.bytes;
  real_.write(fd, buf, len, offset, rw_flags, op);
}

void FaultInjectingEngine::write_durable(int fd, const void* buf, std::size_t len,
                                         std::uint64_t offset, reactor::IoOp* op) {
  // Not faulted: a file backend writes through Transfer and group commit
  // (read, write, fsync above) and uses this only on a 65th thread.
  real_.write_durable(fd, buf, len, offset, op);
}

void FaultInjectingEngine::fsync(int fd, bool datasync, reactor::IoOp* op) {
  const DeviceFault f = plan_->at_device(FaultPlan::Io::sync, 0, 0);
  // Not submitted at all: as after a real failed sync, what it should have
  // written may never reach the disk.
  if (f.action == Action::fail) return op->on_complete(-f.error);
  real_.fsync(fd, datasync, op);
}

}  // namespace ringtgt::storage
