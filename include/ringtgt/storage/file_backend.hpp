// A file or block device driven through the calling thread's io_uring ring.
#pragma once

#include <atomic>
#include <optional>
#include <string>

#include "ringtgt/storage/backend.hpp"

namespace ringtgt::storage {

struct FileBackendOptions {
  std::string path;
  // Create a missing file, sparse, of this size; grow a smaller regular file to it.
  std::optional<std::uint64_t> create_size;
  bool read_only = false;
  bool direct_io = false;  // O_DIRECT: buffers must be aligned (the pools align to 4096)
  WriteAckPolicy policy = WriteAckPolicy::writethrough;
};

// Every operation is one SQE on IoEngine::current(): writethrough writes carry
// RWF_DSYNC, so they complete only once durable; writeback writes carry it
// only when the initiator asked for FUA; flush is an fdatasync.
// unmap is fallocate(PUNCH_HOLE | KEEP_SIZE) and write_zeroes
// fallocate(ZERO_RANGE | KEEP_SIZE), linked to an fsync under writethrough.
// On a block device (Linux >= 4.9) the kernel turns the first into a
// zeroing WRITE ZEROES that may deallocate, the second into BLKZEROOUT.
class FileBackend final : public Backend {
 public:
  // Throws std::system_error naming the path when it cannot be opened or sized.
  explicit FileBackend(const FileBackendOptions& options);
  ~FileBackend() override;
  FileBackend(const FileBackend&) = delete;
  FileBackend& operator=(const FileBackend&) = delete;

  std::uint64_t size_bytes() const override { return size_.load(std::memory_order_relaxed); }
  void grow_to(std::uint64_t bytes) override;
  WriteAckPolicy ack_policy() const override { return policy_; }
  void read(void* buf, std::size_t len, std::uint64_t offset, IoOp* op) override;
  void write(const void* buf, std::size_t len, std::uint64_t offset, bool fua, IoOp* op) override;
  void flush(IoOp* op) override;
  bool can_unmap() const override { return can_unmap_; }
  void unmap(std::uint64_t offset, std::uint64_t len, IoOp* op, bool more_follow = false) override;
  void write_zeroes(std::uint64_t offset, std::uint64_t len, bool fua, IoOp* op) override;
  Extent extent_at(std::uint64_t offset, std::uint64_t max_len) override;
  std::string describe() const override { return path_; }

  bool is_block_device() const { return block_device_; }

 private:
  std::string path_;
  int fd_ = -1;
  std::atomic<std::uint64_t> size_{0};
  bool block_device_ = false;
  bool can_unmap_ = false;  // probed at open
  WriteAckPolicy policy_;
};

}  // namespace ringtgt::storage
