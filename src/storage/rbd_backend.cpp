#include "ringtgt/storage/rbd_backend.hpp"

#include <spdlog/spdlog.h>

#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <thread>

#include "ringtgt/metrics/counters.hpp"
#include "ringtgt/reactor/foreign_completions.hpp"

namespace ringtgt::storage {

namespace {

std::string errno_text(int rc) {
  return std::strerror(rc < 0 ? -rc : rc);
}

// What librbd answers while the cluster is away: the store is not ready now,
// and the command may be retried (sense::for_io_error makes it NOT READY).
bool cluster_away(int result) {
  return result == -ETIMEDOUT || result == -ENOTCONN || result == -ESHUTDOWN || result == -EAGAIN;
}

void set_option(rados_t cluster, const char* key, const std::string& value) {
  int rc = rados_conf_set(cluster, key, value.c_str());
  if (rc < 0)
    throw std::runtime_error(std::string("librados option ") + key + ": " + errno_text(rc));
}

// Closes an image and its cluster connection: rbd_close waits for the I/O
// and the writeback librbd still holds (bounded by op_timeout_s).
void close_image(rados_t cluster, rados_ioctx_t ioctx, rbd_image_t image) {
  if (image) rbd_close(image);
  if (ioctx) rados_ioctx_destroy(ioctx);
  rados_shutdown(cluster);
}

// The closes handed off a reactor, still running.
struct BackgroundCloses {
  std::mutex mu;
  std::condition_variable idle;
  unsigned running = 0;
};

BackgroundCloses& background_closes() {
  static BackgroundCloses closes;
  return closes;
}

}  // namespace

// One librbd operation: handed to librbd as the completion's argument, queued
// back to the reactor that started it (it is the IoOp ForeignCompletions
// carries), then completes the caller's op on that reactor.
struct RbdBackend::Request final : reactor::IoOp {
  RbdBackend* self;
  IoOp* op;
  reactor::ForeignCompletions* home;
  Kind kind;
  std::size_t len;
  bool flush_after;  // a FUA write under writeback: rbd_aio_flush once written
  std::uint64_t* mismatch_offset = nullptr;
  std::uint64_t started_ns = metrics::monotonic_ns();

  Request(RbdBackend* s, IoOp* o, reactor::ForeignCompletions* h, Kind k, std::size_t l, bool f)
      : self(s), op(o), home(h), kind(k), len(l), flush_after(f) {}

  static void librbd_done(rbd_completion_t c, void* arg) {
    auto* r = static_cast<Request*>(arg);
    const auto rv = rbd_aio_get_return_value(c);
    rbd_aio_release(c);
    r->home->complete(r, rv < 0 ? static_cast<int>(rv) : 0);
  }

  // A FUA write under writeback, written: the same request goes on as an
  // rbd_aio_flush, from the reactor (librbd's own threads are left alone).
  int flush_again() {
    rbd_completion_t c = nullptr;
    int rc = rbd_aio_create_completion(this, &Request::librbd_done, &c);
    if (rc == 0) {
      rc = rbd_aio_flush(self->image_, c);
      if (rc < 0) rbd_aio_release(c);
    }
    if (rc == 0) home->expect();
    return rc;
  }

  // On the reactor that started it.
  void on_complete(int result) override {
    if (result == 0 && flush_after) {
      flush_after = false;
      result = flush_again();
      if (result == 0) return;
    }
    self->counters_->record(metrics::monotonic_ns() - started_ns, result, cluster_away(result));
    self->note_result(result, kind != Kind::flush);
    const bool moves_data =
        kind == Kind::read || kind == Kind::write || kind == Kind::compare_and_write;
    // Every way of finding the cluster away reads as -ETIMEDOUT (retryable).
    if (cluster_away(result)) result = -ETIMEDOUT;
    if (result == 0 && moves_data) result = static_cast<int>(len);
    IoOp* caller = op;
    delete this;
    caller->on_complete(result);
  }
};

template <typename Issue>
void RbdBackend::start(Kind kind, std::size_t len, bool flush_after, IoOp* op, Issue&& issue) {
  reactor::IoEngine* engine = reactor::IoEngine::current();
  reactor::ForeignCompletions* home = engine ? engine->foreign_completions() : nullptr;
  if (home == nullptr) {
    spdlog::error("{}: I/O from a thread without a reactor loop", spec_);
    return op->on_complete(-EOPNOTSUPP);
  }
  auto* r = new Request(this, op, home, kind, len, flush_after);
  rbd_completion_t c = nullptr;
  int rc = rbd_aio_create_completion(r, &Request::librbd_done, &c);
  if (rc == 0) {
    rc = static_cast<int>(issue(c));
    if (rc < 0) rbd_aio_release(c);
  }
  if (rc < 0) {
    spdlog::error("{}: librbd refused an operation: {}", spec_, errno_text(rc));
    delete r;
    return op->on_complete(rc);
  }
  // After issuing is early enough: completions queued meanwhile wait for
  // this thread's next drain.
  home->expect();
}

void RbdBackend::note_result(int result, bool reached_cluster) {
  if (cluster_away(result)) {
    if (!counters_->unreachable.exchange(true, std::memory_order_relaxed)) {
      spdlog::warn(
          "{}: the Ceph cluster did not answer ({}; op_timeout {} s): commands get NOT READY "
          "(retryable) until it does; librados keeps reconnecting",
          spec_, errno_text(result), op_timeout_s_);
    }
  } else if (result >= 0 && reached_cluster &&
             counters_->unreachable.exchange(false, std::memory_order_relaxed)) {
    spdlog::warn("{}: the Ceph cluster answers again", spec_);
  } else if (result < 0 && result != -EILSEQ) {
    spdlog::error("{}: librbd operation failed: {}", spec_, errno_text(result));
  }
}

RbdBackend::RbdBackend(const RbdBackendOptions& o)
    : spec_("rbd:" + o.pool + "/" + (o.rados_namespace.empty() ? "" : o.rados_namespace + "/") +
            o.image),
      policy_(o.policy),
      op_timeout_s_(o.op_timeout_s),
      counters_(o.counters ? o.counters : std::make_shared<metrics::StoreCounters>()) {
  auto fail = [this](const std::string& what, int rc) {
    throw std::runtime_error(spec_ + ": " + what + ": " + errno_text(rc));
  };
  int rc = rados_create2(&cluster_, "ceph", ("client." + o.client).c_str(), 0);
  if (rc < 0) fail("cannot create a librados handle for client." + o.client, rc);
  try {
    rc = rados_conf_read_file(cluster_, o.conf.empty() ? nullptr : o.conf.c_str());
    if (rc < 0) fail("cannot read " + (o.conf.empty() ? std::string("ceph.conf") : o.conf), rc);
    if (!o.keyring.empty()) set_option(cluster_, "keyring", o.keyring);
    const std::string timeout = std::to_string(o.op_timeout_s);
    set_option(cluster_, "rados_osd_op_timeout", timeout);
    set_option(cluster_, "rados_mon_op_timeout", timeout);
    set_option(cluster_, "client_mount_timeout", timeout);
    // Whether a write may complete from the gateway's memory is write_ack's
    // choice alone. Until the first flush librbd would write through anyway.
    set_option(cluster_, "rbd_cache", o.policy == WriteAckPolicy::writeback ? "true" : "false");
    // A discard must leave zeroes behind, partial objects included.
    set_option(cluster_, "rbd_skip_partial_discard", "false");
    // No admin socket per LUN under /var/run/ceph.
    set_option(cluster_, "admin_socket", "");
    rc = rados_connect(cluster_);
    if (rc < 0) fail("cannot connect to the Ceph cluster as client." + o.client, rc);
    rc = rados_ioctx_create(cluster_, o.pool.c_str(), &ioctx_);
    if (rc < 0) fail("cannot open pool " + o.pool, rc);
    rados_ioctx_set_namespace(ioctx_, o.rados_namespace.c_str());
    rc = o.read_only ? rbd_open_read_only(ioctx_, o.image.c_str(), &image_, nullptr)
                     : rbd_open(ioctx_, o.image.c_str(), &image_, nullptr);
    if (rc < 0) fail("cannot open image " + o.image, rc);
    std::uint64_t size = 0;
    rc = rbd_get_size(image_, &size);
    if (rc < 0) fail("cannot read the image size", rc);
    if (size < o.min_size) {
      throw std::runtime_error(spec_ + ": the image is " + std::to_string(size) +
                               " bytes, smaller than the LUN's size " + std::to_string(o.min_size) +
                               " (rbd resize it first)");
    }
    size_.store(size);
    rbd_image_info_t info{};
    rc = rbd_stat(image_, &info, sizeof info);
    if (rc < 0) fail("cannot read the image's layout", rc);
    object_size_ = info.obj_size;
  } catch (...) {
    close_image(cluster_, ioctx_, image_);
    throw;
  }
  counters_->not_open.store(false, std::memory_order_relaxed);
}

RbdBackend::~RbdBackend() {
  if (reactor::IoEngine::current() == nullptr) {
    close_image(cluster_, ioctx_, image_);
    return;
  }
  // The last reference dropped on a reactor (a session that outlived a LUN
  // removal): rbd_close may wait for the cluster, which no reactor may do.
  BackgroundCloses& closes = background_closes();
  {
    std::lock_guard lock(closes.mu);
    ++closes.running;
  }
  std::thread([cluster = cluster_, ioctx = ioctx_, image = image_, &closes] {
    close_image(cluster, ioctx, image);
    std::lock_guard lock(closes.mu);
    if (--closes.running == 0) closes.idle.notify_all();
  }).detach();
}

void RbdBackend::wait_for_background_closes() {
  BackgroundCloses& closes = background_closes();
  std::unique_lock lock(closes.mu);
  closes.idle.wait(lock, [&] { return closes.running == 0; });
}

void RbdBackend::grow_to(std::uint64_t bytes) {
  if (bytes <= size_bytes()) return;
  int rc = rbd_resize(image_, bytes);
  if (rc < 0) {
    throw std::runtime_error(spec_ + ": cannot resize the image to " + std::to_string(bytes) +
                             " bytes: " + errno_text(rc));
  }
  size_.store(bytes, std::memory_order_relaxed);
}

void RbdBackend::read(void* buf, std::size_t len, std::uint64_t offset, IoOp* op) {
  start(Kind::read, len, false, op, [&](rbd_completion_t c) {
    return rbd_aio_read(image_, offset, len, static_cast<char*>(buf), c);
  });
}

void RbdBackend::write(const void* buf, std::size_t len, std::uint64_t offset, bool fua, IoOp* op) {
  const bool flush_after = fua && policy_ == WriteAckPolicy::writeback;
  start(Kind::write, len, flush_after, op, [&](rbd_completion_t c) {
    return rbd_aio_write(image_, offset, len, static_cast<const char*>(buf), c);
  });
}

void RbdBackend::flush(IoOp* op) {
  start(Kind::flush, 0, false, op, [&](rbd_completion_t c) { return rbd_aio_flush(image_, c); });
}

void RbdBackend::unmap(std::uint64_t offset, std::uint64_t len, IoOp* op, bool) {
  // Under writethrough a completed discard is durable: nothing to batch.
  start(Kind::discard, len, false, op,
        [&](rbd_completion_t c) { return rbd_aio_discard(image_, offset, len, c); });
}

void RbdBackend::write_zeroes(std::uint64_t offset, std::uint64_t len, bool fua, IoOp* op) {
  const bool flush_after = fua && policy_ == WriteAckPolicy::writeback;
  start(Kind::write_zeroes, len, flush_after, op, [&](rbd_completion_t c) {
    return rbd_aio_write_zeroes(image_, offset, len, c, RBD_WRITE_ZEROES_FLAG_THICK_PROVISION, 0);
  });
}

void RbdBackend::compare_and_write(const void* compare, const void* data, std::size_t len,
                                   std::uint64_t offset, bool fua, std::uint64_t* mismatch_offset,
                                   IoOp* op) {
  // librbd (16.2) compares and writes within one 512-byte sector of one
  // object only, and answers anything larger EINVAL: the caller then does it.
  constexpr std::uint64_t kSector = 512;
  if (offset % kSector + len > kSector ||
      offset / object_size_ != (offset + len - 1) / object_size_)
    return op->on_complete(-EOPNOTSUPP);
  const bool flush_after = fua && policy_ == WriteAckPolicy::writeback;
  start(Kind::compare_and_write, len, flush_after, op, [&](rbd_completion_t c) {
    // librbd reports a miscompare as -EILSEQ with the image offset of the
    // first differing byte; the caller wants it relative to offset.
    return rbd_aio_compare_and_write(image_, offset, len, static_cast<const char*>(compare),
                                     static_cast<const char*>(data), c, mismatch_offset, 0);
  });
}

}  // namespace ringtgt::storage
