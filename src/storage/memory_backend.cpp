#include "ringtgt/storage/memory_backend.hpp"

#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace ringtgt::storage {

const char* to_string(WriteAckPolicy p) {
  return p == WriteAckPolicy::writeback ? "writeback" : "writethrough";
}

void Backend::grow_to(std::uint64_t bytes) {
  throw std::runtime_error(describe() + " cannot be resized");
}

MemoryBackend::MemoryBackend(std::uint64_t size_bytes, WriteAckPolicy policy)
    : data_(size_bytes), policy_(policy) {}

bool MemoryBackend::failing(std::uint64_t offset, std::uint64_t len) const {
  return err_ != 0 && offset < err_offset_ + err_len_ && err_offset_ < offset + len;
}

void MemoryBackend::inject_error(std::uint64_t offset, std::uint64_t len, int err) {
  err_offset_ = offset;
  err_len_ = len;
  err_ = err;
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
  if (fua) ++fua_writes_;
  op->on_complete(static_cast<int>(len));
}

void MemoryBackend::flush(IoOp* op) {
  ++flushes_;
  op->on_complete(0);
}

}  // namespace ringtgt::storage
