// A file or block device driven through the calling thread's io_uring ring.
#pragma once

#include <array>
#include <atomic>
#include <memory>
#include <optional>
#include <string>

#include "ringtgt/storage/backend.hpp"
#include "ringtgt/storage/durability_log.hpp"
#include "ringtgt/storage/io_alignment.hpp"

namespace ringtgt::storage {

struct FileBackendOptions {
  std::string path;
  // Create a missing file, sparse, of this size; grow a smaller regular file to it.
  std::optional<std::uint64_t> create_size;
  bool read_only = false;
  // O_DIRECT: buffers must be aligned (the pools align to 4096). Unset: on for
  // a block device, off for a file.
  std::optional<bool> direct_io;
  WriteAckPolicy policy = WriteAckPolicy::writethrough;
  // The LUN's block size: refused when smaller than the device's logical
  // block size or direct-I/O alignment. 0: not checked.
  std::uint32_t block_size = 0;
  // Tests only: the recording seam (nullptr: off), and a deliberately broken
  // acknowledgement order (durable writes acked from the page cache, with no
  // flush) that the checker must catch.
  DurabilityLog* durability_log = nullptr;
  bool broken_ack_before_flush_for_tests = false;
};

// Reads and writes run on IoEngine::current() through a Transfer, which
// carries on after a short transfer. How a write is made durable, when the
// policy asks for it (writethrough, or FUA under writeback):
// - O_DIRECT (block devices by default, or direct_io = true): the write
//   carries RWF_DSYNC, one SQE that the kernel completes once the device has
//   it (a FUA write, or write + cache flush where the device has no FUA);
// - page cache: a plain write, then group commit (group_commit.hpp): the
//   write is acknowledged when an fdatasync that started after it completed
//   has finished, and concurrent writes share that fdatasync.
// flush (SYNCHRONIZE CACHE) joins the same group commit. Without durability a
// write is a plain write.
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
  bool direct_io() const { return direct_io_; }
  const IoAlignment& alignment() const { return alignment_; }
  // Set once a flush failed: from then on every durable write and flush fails
  // (see GroupCommit), until the store is opened again.
  int durability_lost_errno() const { return lost_errno_.load(std::memory_order_relaxed); }

  // The fdatasyncs the calling thread's group commit issued, for tests.
  std::uint64_t group_commit_flushes();

 private:
  struct Lane;
  // The calling thread's lane; nullptr when more threads than kMaxLanes use the store.
  Lane* lane();
  static constexpr unsigned kMaxLanes = 64;

  std::string path_;
  int fd_ = -1;
  std::atomic<std::uint64_t> size_{0};
  bool block_device_ = false;
  bool can_unmap_ = false;  // probed at open
  bool direct_io_ = false;
  IoAlignment alignment_;
  WriteAckPolicy policy_;
  DurabilityLog* log_ = nullptr;
  std::uint32_t store_ = 0;       // in the log
  std::uint32_t block_size_ = 0;  // the LUN's, for the log's block hashes
  bool broken_ack_order_ = false;
  // An unmap or zeroing with the log on: recorded as a write of zeroes.
  void recorded_fallocate(int mode, std::uint64_t offset, std::uint64_t len, bool durable,
                          IoOp* op);
  std::atomic<int> lost_errno_{0};
  // One lane per reactor thread that uses the store, claimed on its first
  // I/O: lane_owner_[i] is the engine of lanes_[i], which only that thread touches.
  std::array<std::atomic<reactor::IoEngine*>, kMaxLanes> lane_owner_{};
  std::array<std::unique_ptr<Lane>, kMaxLanes> lanes_;
};

}  // namespace ringtgt::storage
