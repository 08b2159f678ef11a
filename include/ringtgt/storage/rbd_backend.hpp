// A Ceph RBD image driven through librbd's asynchronous C API.
#pragma once

#include <rados/librados.h>
#include <rbd/librbd.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "ringtgt/storage/backend.hpp"

namespace ringtgt::storage {

struct RbdBackendOptions {
  std::string pool;
  std::string rados_namespace;  // empty: the default namespace
  std::string image;
  std::string conf;              // ceph.conf; empty: librados's default search
  std::string client = "admin";  // cephx id, without "client."
  std::string keyring;           // empty: what ceph.conf says
  // Seconds an operation, a monitor request or the connection may take before
  // it fails with -ETIMEDOUT (rados_osd_op_timeout, rados_mon_op_timeout,
  // client_mount_timeout): a cluster that is away cannot hang a command.
  unsigned op_timeout_s = 20;
  WriteAckPolicy policy = WriteAckPolicy::writethrough;
  bool read_only = false;
  // The size the LUN needs: a smaller image is refused. 0: any size.
  std::uint64_t min_size = 0;
  // The LUN's store series on /metrics, when they exist already (a LUN that
  // waited for its image goes on counting in them); null: new ones.
  std::shared_ptr<metrics::StoreCounters> counters;
};

// Ceph acknowledges a write once every replica of its placement group has it
// durably, so:
// - writethrough: librbd's cache is off; a write completes once the cluster
//   has it durably, and FUA and SYNCHRONIZE CACHE need nothing more (flush is
//   still passed to librbd, which answers it at once);
// - writeback: librbd's cache is on; a write may complete from the gateway's
//   memory, SYNCHRONIZE CACHE and FUA become rbd_aio_flush.
// unmap is rbd_aio_discard (partial objects are zeroed, not skipped),
// write_zeroes rbd_aio_write_zeroes. librbd completes on its own threads; the
// completion is handed back to the reactor that started the I/O through its
// ForeignCompletions, so the IoOp contract holds. The constructor connects
// and opens the image (blocking, bounded by op_timeout_s): call it on the
// control plane or a thread of its own, never on a reactor. grow_to
// (rbd_resize) is the control plane's too. The destructor closes the image
// (rbd_close waits for librbd's writeback): where the last reference drops on
// a reactor, the close moves to a thread of its own, which
// wait_for_background_closes waits for before the process exits.
class RbdBackend final : public Backend {
 public:
  // Throws std::runtime_error saying what failed (connect, pool, image, size).
  explicit RbdBackend(const RbdBackendOptions& options);
  ~RbdBackend() override;
  RbdBackend(const RbdBackend&) = delete;
  RbdBackend& operator=(const RbdBackend&) = delete;

  std::uint64_t size_bytes() const override { return size_.load(std::memory_order_relaxed); }
  void grow_to(std::uint64_t bytes) override;
  WriteAckPolicy ack_policy() const override { return policy_; }
  void read(void* buf, std::size_t len, std::uint64_t offset, IoOp* op) override;
  void write(const void* buf, std::size_t len, std::uint64_t offset, bool fua, IoOp* op) override;
  void flush(IoOp* op) override;
  bool can_unmap() const override { return true; }
  void unmap(std::uint64_t offset, std::uint64_t len, IoOp* op, bool more_follow = false) override;
  void write_zeroes(std::uint64_t offset, std::uint64_t len, bool fua, IoOp* op) override;
  bool can_compare_and_write() const override { return true; }
  void compare_and_write(const void* compare, const void* data, std::size_t len,
                         std::uint64_t offset, bool fua, std::uint64_t* mismatch_offset,
                         IoOp* op) override;
  std::string describe() const override { return spec_; }
  std::string state() const override {
    return cluster_unreachable() ? "cluster unreachable (NOT READY)" : "ready";
  }
  std::shared_ptr<const metrics::StoreCounters> store_counters() const override {
    return counters_;
  }

  // Whether the last operation found the cluster away (timed out, not
  // connected): what the log says on each change and /metrics reports.
  bool cluster_unreachable() const {
    return counters_->unreachable.load(std::memory_order_relaxed);
  }

  // Waits for the images closed off a reactor (see the class comment):
  // the daemon calls it once every LUN is gone, before it exits.
  static void wait_for_background_closes();

 private:
  struct Request;
  friend struct Request;
  enum class Kind : std::uint8_t { read, write, flush, discard, write_zeroes, compare_and_write };
  // Starts one librbd operation for op; issue gets the completion to pass.
  template <typename Issue>
  void start(Kind kind, std::size_t len, bool flush_after, IoOp* op, Issue&& issue);
  // reached_cluster: a success that proves the cluster answers (a flush with
  // nothing to write completes in librbd alone).
  void note_result(int result, bool reached_cluster);

  std::string spec_;
  rados_t cluster_ = nullptr;
  rados_ioctx_t ioctx_ = nullptr;
  rbd_image_t image_ = nullptr;
  std::atomic<std::uint64_t> size_{0};
  std::uint64_t object_size_ = 4 << 20;
  WriteAckPolicy policy_;
  unsigned op_timeout_s_;
  std::shared_ptr<metrics::StoreCounters> counters_;
};

}  // namespace ringtgt::storage
