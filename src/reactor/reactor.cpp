#include "ringtgt/reactor/reactor.hpp"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>

namespace ringtgt::reactor {

namespace {

thread_local IoEngine* current_engine = nullptr;

// The reactor's own operations (wake-up read, tick timer) complete through
// these; they are not counted as work the loop must wait for at shutdown.
class InternalOp final : public IoOp {
 public:
  explicit InternalOp(std::function<void(int)> fn) : fn_(std::move(fn)) {}
  void on_complete(int result) override { fn_(result); }

 private:
  std::function<void(int)> fn_;
};

std::string io_uring_disabled_hint() {
  std::ifstream f("/proc/sys/kernel/io_uring_disabled");
  int v = 0;
  if (f >> v && v != 0)
    return " (kernel.io_uring_disabled=" + std::to_string(v) +
           "; set it to 0 with sysctl to run ringtgt)";
  return "";
}

int init_ring(io_uring& ring, unsigned entries, unsigned& flags_out, unsigned* features = nullptr) {
  // Prefer single-issuer deferred task running (6.1+), then cooperative
  // task running (5.19+), then plain rings.
  const unsigned candidates[] = {
      IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_R_DISABLED,
      IORING_SETUP_COOP_TASKRUN,
      0,
  };
  int rc = -EINVAL;
  for (unsigned flags : candidates) {
    io_uring_params p{};
    p.flags = flags;
    rc = io_uring_queue_init_params(entries, &ring, &p);
    if (rc == 0) {
      flags_out = flags;
      if (features) *features = p.features;
      return 0;
    }
    if (rc != -EINVAL) break;
  }
  return rc;
}

}  // namespace

IoEngine* IoEngine::current() {
  return current_engine;
}

void IoEngine::write_durable(int fd, const void* buf, std::size_t len, std::uint64_t offset,
                             IoOp* op) {
  write(fd, buf, len, offset, RWF_DSYNC, op);
}

void IoEngine::fallocate(int fd, int mode, std::uint64_t offset, std::uint64_t len, IoOp* op) {
  const int rc =
      ::fallocate(fd, mode, static_cast<off_t>(offset), static_cast<off_t>(len)) == 0 ? 0 : -errno;
  op->on_complete(rc);
}

void IoEngine::fallocate_durable(int fd, int mode, std::uint64_t offset, std::uint64_t len,
                                 IoOp* op) {
  int rc = ::fallocate(fd, mode, static_cast<off_t>(offset), static_cast<off_t>(len));
  if (rc == 0) rc = ::fsync(fd);
  op->on_complete(rc == 0 ? 0 : -errno);
}

void IoEngine::start_timer(std::chrono::nanoseconds, TimerOp* op) {
  op->on_complete(0);
}

namespace {
// user_data of the two halves of a write_durable: the op with a low bit set.
constexpr std::uintptr_t kDurableSyncTag = 1;
constexpr std::uintptr_t kDurableWriteTag = 2;
// The fallocate of a fallocate_durable: on success the loop queues the fsync.
constexpr std::uintptr_t kFallocateThenSyncTag = 4;
constexpr std::uintptr_t kTags = kDurableSyncTag | kDurableWriteTag | kFallocateThenSyncTag;
}  // namespace
void IoEngine::set_current(IoEngine* engine) {
  current_engine = engine;
}

Reactor::Reactor(unsigned index, unsigned ring_entries) : index_(index) {
  unsigned flags = 0, features = 0;
  int rc = init_ring(ring_, ring_entries, flags, &features);
  cqe_skip_ = features & IORING_FEAT_CQE_SKIP;
  if (rc < 0) {
    throw IoUringUnavailable("cannot create an io_uring ring: " + std::string(std::strerror(-rc)) +
                             io_uring_disabled_hint());
  }
  ring_flags_ = flags;
  wake_fd_ = ::eventfd(0, EFD_CLOEXEC);
  if (wake_fd_ < 0) {
    io_uring_queue_exit(&ring_);
    throw std::runtime_error(std::string("eventfd: ") + std::strerror(errno));
  }
  foreign_ = std::make_unique<ForeignCompletions>(wake_fd_);
  completions_.reserve(ring_entries);
  tick_ts_.tv_sec = 0;
  tick_ts_.tv_nsec = std::chrono::duration_cast<std::chrono::nanoseconds>(tick_interval).count();
}

Reactor::~Reactor() {
  io_uring_queue_exit(&ring_);
  if (wake_fd_ >= 0) ::close(wake_fd_);
}

std::string Reactor::probe_description() {
  io_uring probe_ring{};
  unsigned flags = 0;
  int rc = init_ring(probe_ring, 8, flags);
  if (rc < 0) {
    return "io_uring unavailable: " + std::string(std::strerror(-rc)) + io_uring_disabled_hint();
  }
  std::string s = "io_uring";
  if (flags & IORING_SETUP_DEFER_TASKRUN)
    s += " single-issuer defer-taskrun";
  else if (flags & IORING_SETUP_COOP_TASKRUN)
    s += " coop-taskrun";
  else
    s += " basic";
  io_uring_queue_exit(&probe_ring);
  return s;
}

io_uring_sqe* Reactor::next_sqe() {
  io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
  while (sqe == nullptr) {
    io_uring_submit(&ring_);
    sqe = io_uring_get_sqe(&ring_);
  }
  return sqe;
}

void Reactor::read(int fd, void* buf, std::size_t len, std::uint64_t offset, IoOp* op) {
  io_uring_sqe* sqe = next_sqe();
  io_uring_prep_read(sqe, fd, buf, static_cast<unsigned>(len), offset);
  io_uring_sqe_set_data(sqe, op);
  ++inflight_;
}

void Reactor::write(int fd, const void* buf, std::size_t len, std::uint64_t offset, int rw_flags,
                    IoOp* op) {
  io_uring_sqe* sqe = next_sqe();
  io_uring_prep_write(sqe, fd, buf, static_cast<unsigned>(len), offset);
  sqe->rw_flags = rw_flags;
  io_uring_sqe_set_data(sqe, op);
  ++inflight_;
}

void Reactor::fsync(int fd, bool datasync, IoOp* op) {
  io_uring_sqe* sqe = next_sqe();
  io_uring_prep_fsync(sqe, fd, datasync ? IORING_FSYNC_DATASYNC : 0);
  io_uring_sqe_set_data(sqe, op);
  ++inflight_;
}

void Reactor::write_durable(int fd, const void* buf, std::size_t len, std::uint64_t offset,
                            IoOp* op) {
  if (!cqe_skip_) return IoEngine::write_durable(fd, buf, len, offset, op);
  // A plain write linked to an fdatasync. The write posts a completion only
  // when it fails or comes up short, and then the kernel cancels the fsync
  // without posting its completion: op completes exactly once either way.
  io_uring_sqe* w = next_sqe();
  io_uring_prep_write(w, fd, buf, static_cast<unsigned>(len), offset);
  io_uring_sqe_set_data64(w, reinterpret_cast<std::uintptr_t>(op) | kDurableWriteTag);
  w->flags |= IOSQE_IO_LINK | IOSQE_CQE_SKIP_SUCCESS;
  io_uring_sqe* f = next_sqe();
  io_uring_prep_fsync(f, fd, IORING_FSYNC_DATASYNC);
  op->durable_len = static_cast<std::uint32_t>(len);
  io_uring_sqe_set_data64(f, reinterpret_cast<std::uintptr_t>(op) | kDurableSyncTag);
  ++inflight_;
}

void Reactor::fallocate(int fd, int mode, std::uint64_t offset, std::uint64_t len, IoOp* op) {
  io_uring_sqe* sqe = next_sqe();
  io_uring_prep_fallocate(sqe, fd, mode, offset, len);
  io_uring_sqe_set_data(sqe, op);
  ++inflight_;
}

void Reactor::fallocate_durable(int fd, int mode, std::uint64_t offset, std::uint64_t len,
                                IoOp* op) {
  // Not a linked pair as in write_durable: a fallocate that fails inside a
  // CQE_SKIP_SUCCESS link was seen to post no completion and let its fsync
  // run (6.18), which would acknowledge a deallocation that never happened.
  // So the fsync is queued from the fallocate's completion instead.
  io_uring_sqe* a = next_sqe();
  io_uring_prep_fallocate(a, fd, mode, offset, len);
  op->durable_fd = fd;
  io_uring_sqe_set_data64(a, reinterpret_cast<std::uintptr_t>(op) | kFallocateThenSyncTag);
  ++inflight_;
}

void Reactor::start_timer(std::chrono::nanoseconds after, TimerOp* op) {
  const auto secs = std::chrono::duration_cast<std::chrono::seconds>(after);
  op->deadline.tv_sec = secs.count();
  op->deadline.tv_nsec = (after - secs).count();
  io_uring_sqe* sqe = next_sqe();
  io_uring_prep_timeout(sqe, &op->deadline, 0, 0);
  io_uring_sqe_set_data(sqe, op);
  ++inflight_;  // a stopping reactor waits for it: its op's owner outlives it
}

void Reactor::recv(int fd, void* buf, std::size_t len, int flags, IoOp* op) {
  io_uring_sqe* sqe = next_sqe();
  io_uring_prep_recv(sqe, fd, buf, len, flags);
  io_uring_sqe_set_data(sqe, op);
  ++inflight_;
}

void Reactor::sendmsg(int fd, const msghdr* msg, int flags, IoOp* op) {
  io_uring_sqe* sqe = next_sqe();
  io_uring_prep_sendmsg(sqe, fd, msg, flags | MSG_NOSIGNAL);
  io_uring_sqe_set_data(sqe, op);
  ++inflight_;
}

void Reactor::post(std::function<void()> fn) {
  {
    std::lock_guard lock(posted_mu_);
    posted_.push_back(std::move(fn));
  }
  std::uint64_t one = 1;
  [[maybe_unused]] ssize_t n = ::write(wake_fd_, &one, sizeof one);
}

void Reactor::stop() {
  post([this] { stopping_.store(true); });
}

void Reactor::on_tick(std::function<void(Clock::time_point)> fn) {
  tick_handlers_.push_back(std::move(fn));
}

void Reactor::drain_posted() {
  std::vector<std::function<void()>> batch;
  {
    std::lock_guard lock(posted_mu_);
    batch.swap(posted_);
  }
  for (auto& fn : batch) fn();
}

void Reactor::run() {
  if (ring_flags_ & IORING_SETUP_R_DISABLED) {
    // Enabled here so that this thread becomes the ring's single issuer
    // (liburing 2.3 declares io_uring_enable_rings but does not export it).
    long rc =
        ::syscall(__NR_io_uring_register, ring_.ring_fd, IORING_REGISTER_ENABLE_RINGS, nullptr, 0);
    if (rc < 0)
      throw IoUringUnavailable("cannot enable the io_uring ring: " +
                               std::string(std::strerror(errno)));
  }
  IoEngine::set_current(this);

  InternalOp wake_op([this](int) {
    drain_posted();
    foreign_->drain();
    arm_wakeup();
  });
  InternalOp tick_op([this](int) {
    auto now = Clock::now();
    counters_.heartbeat.add();
    for (auto& fn : tick_handlers_) fn(now);
    arm_tick();
  });
  wake_op_ = &wake_op;
  tick_op_ = &tick_op;
  arm_wakeup();
  arm_tick();
  drain_posted();

  std::uint64_t busy_since = metrics::monotonic_ns();
  while (!(stopping_.load() && inflight_ == 0 && foreign_->outstanding() == 0)) {
    // Busy time: everything but the wait; counted per turn, not per I/O.
    std::uint64_t wait_start = metrics::monotonic_ns();
    counters_.busy_ns.add(wait_start - busy_since);
    int rc = io_uring_submit_and_wait(&ring_, 1);
    busy_since = metrics::monotonic_ns();
    if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) {
      spdlog::critical("reactor {}: io_uring_submit_and_wait: {}", index_, std::strerror(-rc));
      break;
    }
    io_uring_cqe* cqe;
    unsigned head;
    unsigned seen = 0;
    // Completions may submit more work; collect first so the CQ ring can advance.
    completions_.clear();
    io_uring_for_each_cqe(&ring_, head, cqe) {
      auto ud = static_cast<std::uintptr_t>(io_uring_cqe_get_data64(cqe));
      int res = cqe->res;
      IoOp* op = reinterpret_cast<IoOp*>(ud & ~kTags);
      if ((ud & kFallocateThenSyncTag) && res >= 0) {
        // A full fsync, not a datasync: a punched hole changes the block map.
        io_uring_sqe* f = next_sqe();
        io_uring_prep_fsync(f, op->durable_fd, 0);
        op->durable_len = 0;
        io_uring_sqe_set_data64(f, reinterpret_cast<std::uintptr_t>(op) | kDurableSyncTag);
        ++seen;
        continue;
      }
      if ((ud & kDurableSyncTag) && res == 0) res = static_cast<int>(op->durable_len);
      if ((ud & kDurableWriteTag) && res >= 0) res = -EIO;  // short write
      completions_.push_back({op, res});
      ++seen;
    }
    io_uring_cq_advance(&ring_, seen);
    for (auto [op, res] : completions_) {
      if (op != wake_op_ && op != tick_op_) --inflight_;
      op->on_complete(res);
    }
  }
  IoEngine::set_current(nullptr);
}

void Reactor::arm_wakeup() {
  io_uring_sqe* sqe = next_sqe();
  io_uring_prep_read(sqe, wake_fd_, &wake_buf_, sizeof wake_buf_, 0);
  io_uring_sqe_set_data(sqe, wake_op_);
}

void Reactor::arm_tick() {
  io_uring_sqe* sqe = next_sqe();
  io_uring_prep_timeout(sqe, &tick_ts_, 0, 0);
  io_uring_sqe_set_data(sqe, tick_op_);
}

}  // namespace ringtgt::reactor
