#include "ringtgt/storage/memory_backend.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace ringtgt::storage {

void Backend::grow_to(std::uint64_t bytes) {
  throw std::runtime_error(describe() + " cannot be resized");
}

MemoryBackend::MemoryBackend(std::uint64_t size_bytes, WriteAckPolicy policy)
    : data_(size_bytes), policy_(policy), mapped_((size_bytes + kMapUnit - 1) / kMapUnit) {}

void MemoryBackend::set_mapped(std::uint64_t offset, std::uint64_t len, bool mapped) {
  if (len == 0) return;
  // Mapping: every unit touched. Deallocating: only units covered whole.
  std::uint64_t first = mapped ? offset / kMapUnit : (offset + kMapUnit - 1) / kMapUnit;
  std::uint64_t end = mapped ? (offset + len + kMapUnit - 1) / kMapUnit : (offset + len) / kMapUnit;
  if (!mapped && offset + len == data_.size()) end = mapped_.size();
  for (std::uint64_t u = first; u < end; ++u) mapped_[u] = mapped;
}

bool MemoryBackend::failing(std::uint64_t offset, std::uint64_t len) const {
  return err_ != 0 && offset < err_offset_ + err_len_ && err_offset_ < offset + len;
}

void MemoryBackend::inject_error(std::uint64_t offset, std::uint64_t len, int err) {
  err_offset_ = offset;
  err_len_ = len;
  err_ = err;
}

void MemoryBackend::set_durability_log(DurabilityLog* log, std::uint32_t block_size) {
  log_ = log;
  block_size_ = block_size;
  store_ = log->add_store(describe(), data_.size(), block_size,
                          policy_ == WriteAckPolicy::writeback, false);
}

// data null: zeroes.
void MemoryBackend::record_write(const void* data, std::uint64_t offset, std::uint64_t len,
                                 bool durable, IoOp* op) {
  DurabilityEvent w{DurabilityEvent::Kind::write_done, log_->next_id()};
  w.offset = offset;
  w.length = len;
  w.zeroes = data == nullptr;
  w.durable = durable;
  w.must_be_durable = durable;
  w.store = store_;
  w.tag = reinterpret_cast<std::uintptr_t>(op);
  DurabilityEvent ack = w;
  log_->record_write(std::move(w), data, block_size_);
  ack.kind = DurabilityEvent::Kind::ack;
  ack.result = 1;
  log_->record(ack);
}

void MemoryBackend::read(void* buf, std::size_t len, std::uint64_t offset, IoOp* op) {
  if (offset > data_.size() || len > data_.size() - offset) return op->on_complete(-EINVAL);
  if (failing(offset, len)) return op->on_complete(-err_);
  std::memcpy(buf, data_.data() + offset, len);
  op->on_complete(static_cast<int>(len));
}

void MemoryBackend::write(const void* buf, std::size_t len, std::uint64_t offset, bool fua,
                          IoOp* op) {
  if (offset > data_.size() || len > data_.size() - offset) return op->on_complete(-EINVAL);
  if (failing(offset, len)) return op->on_complete(-err_);
  std::memcpy(data_.data() + offset, buf, len);
  set_mapped(offset, len, true);
  if (fua) ++fua_writes_;
  if (log_ != nullptr) {
    record_write(buf, offset, len, policy_ == WriteAckPolicy::writethrough || fua, op);
  }
  op->on_complete(static_cast<int>(len));
}

void MemoryBackend::flush(IoOp* op) {
  ++flushes_;
  if (log_ != nullptr) {
    using K = DurabilityEvent::Kind;
    const std::uint64_t sync = log_->next_id(), flush = log_->next_id();
    for (K kind : {K::sync_requested, K::flush_started, K::flush_done, K::sync_ack}) {
      DurabilityEvent e{kind, sync};
      e.flush_id = flush;
      e.store = store_;
      e.tag = reinterpret_cast<std::uintptr_t>(op);
      log_->record(e);
    }
  }
  op->on_complete(0);
}

void MemoryBackend::unmap(std::uint64_t offset, std::uint64_t len, IoOp* op, bool more_follow) {
  if (!unmap_supported_) return op->on_complete(-EOPNOTSUPP);
  if (!in_bounds(offset, len)) return op->on_complete(-EINVAL);
  if (failing(offset, len)) return op->on_complete(-err_);
  ++unmaps_;
  if (!more_follow) ++final_unmaps_;
  std::memset(data_.data() + offset, 0, len);
  set_mapped(offset, len, false);
  if (log_ != nullptr)
    record_write(nullptr, offset, len, policy_ == WriteAckPolicy::writethrough, op);
  op->on_complete(0);
}

void MemoryBackend::write_zeroes(std::uint64_t offset, std::uint64_t len, bool fua, IoOp* op) {
  if (!in_bounds(offset, len)) return op->on_complete(-EINVAL);
  if (failing(offset, len)) return op->on_complete(-err_);
  ++zeroings_;
  std::memset(data_.data() + offset, 0, len);
  set_mapped(offset, len, true);
  if (fua) ++fua_writes_;
  if (log_ != nullptr) {
    record_write(nullptr, offset, len, policy_ == WriteAckPolicy::writethrough || fua, op);
  }
  op->on_complete(0);
}

Backend::Extent MemoryBackend::extent_at(std::uint64_t offset, std::uint64_t max_len) {
  std::uint64_t u = offset / kMapUnit;
  if (max_len == 0 || u >= mapped_.size()) return {true, max_len};
  const bool state = mapped_[u];
  std::uint64_t end = u + 1;
  while (end < mapped_.size() && mapped_[end] == state && (end * kMapUnit - offset) < max_len) {
    ++end;
  }
  const std::uint64_t bytes = std::min<std::uint64_t>(end * kMapUnit, data_.size()) - offset;
  return {state, std::min(bytes, max_len)};
}

}  // namespace ringtgt::storage
