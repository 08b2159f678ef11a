#include "transfer.hpp"

#include <spdlog/spdlog.h>

#include <linux/fs.h>

#include <cerrno>

namespace ringtgt::storage {

Transfer* TransferPool::acquire() {
  if (free_.empty()) {
    all_.push_back(std::make_unique<Transfer>(*this));
    return all_.back().get();
  }
  Transfer* t = free_.back();
  free_.pop_back();
  return t;
}

void Transfer::record(DurabilityEvent::Kind kind, int result) {
  DurabilityLog* log = pool_.log();
  if (log == nullptr || r_.kind == Kind::read) return;
  if (r_.kind == Kind::flush) {
    // A flush has no write_done; its start and end are a sync's request and ack.
    DurabilityEvent e{kind == DurabilityEvent::Kind::ack ? DurabilityEvent::Kind::sync_ack
                                                         : DurabilityEvent::Kind::sync_requested,
                      log_id_};
    e.result = result;
    e.store = pool_.store();
    e.tag = reinterpret_cast<std::uintptr_t>(r_.caller);
    return log->record(e);
  }
  DurabilityEvent e{kind, log_id_};
  e.offset = r_.offset;
  e.length = r_.len;
  e.must_be_durable = r_.promise_durable;
  e.result = result;
  e.store = pool_.store();
  e.tag = reinterpret_cast<std::uintptr_t>(r_.caller);
  if (kind != DurabilityEvent::Kind::write_done) return log->record(e);
  e.durable = (r_.rw_flags & RWF_DSYNC) != 0;
  log->record_write(std::move(e), r_.buf, pool_.block_size());
}

void Transfer::start(const Request& r) {
  r_ = r;
  done_ = 0;
  if (pool_.log() != nullptr) log_id_ = pool_.log()->next_id();
  if (r_.kind == Kind::flush) record(DurabilityEvent::Kind::sync_requested, 0);
  if (r_.kind == Kind::flush) return r_.then_flush->wait_for_flush(this);
  submit_rest();
}

void Transfer::submit_rest() {
  auto* engine = pool_.engine();
  std::uint8_t* at = r_.buf + done_;
  const std::size_t rest = r_.len - done_;
  if (r_.kind == Kind::read) {
    engine->read(r_.fd, at, rest, r_.offset + done_, this);
  } else {
    engine->write(r_.fd, at, rest, r_.offset + done_, r_.rw_flags, this);
  }
}

void Transfer::on_complete(int result) {
  if (result == -EIO && done_ > 0) {
    // A bad block after some blocks moved (the kernel returned them short
    // first): the caller hears how far it got, which names the first bad
    // block in the sense data; the log records the failure.
    return finish(result, static_cast<int>(done_));
  }
  if (result < 0) return finish(result);
  if (result == 0) {
    // No progress (end of file, or a device that takes nothing): asking
    // again would spin. The caller sees how far it got.
    return finish(done_ > 0 ? static_cast<int>(done_) : -EIO);
  }
  done_ += static_cast<std::size_t>(result);
  if (done_ < r_.len) return submit_rest();
  record(DurabilityEvent::Kind::write_done, 0);
  if (r_.then_flush != nullptr) return r_.then_flush->wait_for_flush(this);
  finish(static_cast<int>(done_));
}

void Transfer::finish(int result) {
  finish(result, result);
}

void Transfer::on_durable(int result) {
  finish(result < 0 ? result : static_cast<int>(done_));
}

void Transfer::finish(int result, int told) {
  if (result == -EINVAL && r_.kind != Kind::flush) {
    // The logical unit keeps offsets and lengths in whole blocks, and the
    // buffers are aligned, so the kernel refusing one is our bug (or a
    // device whose alignment changed under us), not a bad medium.
    spdlog::error(
        "{}: {} of {} bytes at offset {} (buffer {}) refused with EINVAL: misaligned I/O, a bug",
        pool_.describe(), r_.kind == Kind::read ? "read" : "write", r_.len, r_.offset,
        static_cast<const void*>(r_.buf));
  }
  record(DurabilityEvent::Kind::ack, result);
  reactor::IoOp* caller = r_.caller;
  pool_.release(this);  // first: the caller may start another transfer at once
  caller->on_complete(told);
}

}  // namespace ringtgt::storage
