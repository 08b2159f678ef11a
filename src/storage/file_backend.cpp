#include "ringtgt/storage/file_backend.hpp"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sys/sysmacros.h>

#include <algorithm>
#include <cerrno>
#include <fstream>
#include <stdexcept>
#include <string>
#include <system_error>

#include "group_commit.hpp"
#include "transfer.hpp"

namespace ringtgt::storage {

namespace {
[[noreturn]] void fail(const std::string& what, const std::string& path) {
  throw std::system_error(errno, std::generic_category(), what + " " + path);
}

constexpr int kPunch = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;
constexpr int kZero = FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE;

// A regular file deallocates when its file system punches holes. Probed by
// punching past the end of the file (KEEP_SIZE: no size change, no data
// touched): a file system without hole punching refuses the mode itself.
bool file_can_punch(int fd, std::uint64_t size) {
  const std::uint64_t past_end = (size + 4095) / 4096 * 4096;
  return ::fallocate(fd, kPunch, static_cast<off_t>(past_end), 4096) == 0;
}

// A block device: fallocate(PUNCH_HOLE) is a WRITE ZEROES that may unmap
// and never falls back to writing zeroes, so it works exactly when the
// device takes WRITE ZEROES (write_zeroes_max_bytes > 0; partitions share
// their disk's queue).
bool device_can_punch(const struct stat& st) {
  const std::string dev = "/sys/dev/block/" + std::to_string(major(st.st_rdev)) + ":" +
                          std::to_string(minor(st.st_rdev));
  for (const char* queue : {"/queue/write_zeroes_max_bytes", "/../queue/write_zeroes_max_bytes"}) {
    std::ifstream f(dev + queue);
    std::uint64_t max_bytes = 0;
    if (f >> max_bytes) return max_bytes > 0;
  }
  return false;
}
}  // namespace

struct FileBackend::Lane {
  Lane(int fd, std::atomic<int>& lost, const std::string& path)
      : group_commit(fd, lost, path), transfers(path) {}
  std::unique_ptr<reactor::IoEngine> test_engine;  // engine_for_tests; before its users
  GroupCommit group_commit;
  TransferPool transfers;
};

FileBackend::FileBackend(const FileBackendOptions& o)
    : path_(o.path),
      policy_(o.policy),
      log_(o.durability_log),
      broken_ack_order_(o.broken_ack_before_flush_for_tests),
      engine_for_tests_(o.engine_for_tests) {
  int flags = O_CLOEXEC | (o.read_only ? O_RDONLY : O_RDWR);
  if (o.create_size && !o.read_only) flags |= O_CREAT;
  fd_ = ::open(path_.c_str(), flags, 0600);
  if (fd_ < 0) fail("cannot open", path_);
  struct stat st {};
  if (::fstat(fd_, &st) != 0) fail("cannot stat", path_);
  if (S_ISBLK(st.st_mode)) {
    block_device_ = true;
    std::uint64_t bytes = 0;
    if (::ioctl(fd_, BLKGETSIZE64, &bytes) != 0) fail("cannot read the size of", path_);
    size_ = bytes;
  } else if (S_ISREG(st.st_mode)) {
    size_ = static_cast<std::uint64_t>(st.st_size);
    if (o.create_size && size_ < *o.create_size && !o.read_only) {
      if (::ftruncate(fd_, static_cast<off_t>(*o.create_size)) != 0) fail("cannot size", path_);
      size_ = *o.create_size;
    }
  } else {
    errno = EINVAL;
    fail("not a regular file or block device:", path_);
  }
  if (size_ == 0) {
    errno = EINVAL;
    fail("empty backing store (give the LUN a size):", path_);
  }
  // O_DIRECT is set after the open, once we know what the path is: block
  // devices default to it (see README, "direct_io").
  direct_io_ = o.direct_io.value_or(block_device_);
  if (direct_io_ && ::fcntl(fd_, F_SETFL, ::fcntl(fd_, F_GETFL) | O_DIRECT) != 0) {
    fail("cannot use direct I/O (O_DIRECT; set direct_io = false) on", path_);
  }
  alignment_ = probe_io_alignment(fd_, block_device_, path_);
  if (o.block_size != 0) check_block_size(alignment_, o.block_size, direct_io_, path_);
  if (!o.read_only) can_unmap_ = block_device_ ? device_can_punch(st) : file_can_punch(fd_, size_);
  if (log_ != nullptr) {
    block_size_ = o.block_size != 0 ? o.block_size : 512;
    store_ = log_->add_store(path_, size_, block_size_, policy_ == WriteAckPolicy::writeback,
                             direct_io_);
  }
}

FileBackend::~FileBackend() {
  if (fd_ >= 0) ::close(fd_);
}

FileBackend::Lane* FileBackend::lane() {
  auto* engine = reactor::IoEngine::current();
  for (unsigned i = 0; i < kMaxLanes; ++i) {
    reactor::IoEngine* owner = lane_owner_[i].load(std::memory_order_acquire);
    if (owner == engine) return lanes_[i].get();
    if (owner != nullptr) continue;
    // Only the thread whose engine owns slot i touches lanes_[i], so the
    // lane is made after the claim, by its owner.
    reactor::IoEngine* expected = nullptr;
    if (lane_owner_[i].compare_exchange_strong(expected, engine, std::memory_order_acq_rel)) {
      lanes_[i] = std::make_unique<Lane>(fd_, lost_errno_, path_);
      lanes_[i]->group_commit.set_log(log_, store_);
      lanes_[i]->transfers.set_log(log_, store_, block_size_);
      if (engine_for_tests_) {
        Lane& l = *lanes_[i];
        l.test_engine = engine_for_tests_(*engine);
        l.group_commit.set_engine(l.test_engine.get());
        l.transfers.set_engine(l.test_engine.get());
      }
      return lanes_[i].get();
    }
    if (expected == engine) return lanes_[i].get();  // cannot happen: only we claim for us
  }
  return nullptr;
}

std::uint64_t FileBackend::group_commit_flushes() {
  Lane* l = lane();
  return l != nullptr ? l->group_commit.flushes() : 0;
}

void FileBackend::grow_to(std::uint64_t bytes) {
  const std::uint64_t now = size_.load();
  if (bytes < now) {
    throw std::runtime_error(path_ + " is " + std::to_string(now) + " bytes; shrinking to " +
                             std::to_string(bytes) + " is not supported");
  }
  if (block_device_) {
    std::uint64_t dev = 0;
    if (::ioctl(fd_, BLKGETSIZE64, &dev) != 0) fail("cannot read the size of", path_);
    if (dev < bytes) {
      throw std::runtime_error("block device " + path_ + " is " + std::to_string(dev) +
                               " bytes, less than " + std::to_string(bytes) +
                               ": extend the volume first (lvextend)");
    }
  } else if (bytes > now && ::ftruncate(fd_, static_cast<off_t>(bytes)) != 0) {
    fail("cannot grow", path_);
  }
  size_ = bytes;
}

void FileBackend::read(void* buf, std::size_t len, std::uint64_t offset, IoOp* op) {
  Lane* l = lane();
  if (l == nullptr) return reactor::IoEngine::current()->read(fd_, buf, len, offset, op);
  l->transfers.acquire()->start(
      {Transfer::Kind::read, fd_, static_cast<std::uint8_t*>(buf), len, offset, 0, nullptr, op});
}

void FileBackend::write(const void* buf, std::size_t len, std::uint64_t offset, bool fua,
                        IoOp* op) {
  const bool durable = policy_ == WriteAckPolicy::writethrough || fua;
  auto* data = static_cast<std::uint8_t*>(const_cast<void*>(buf));
  Lane* l = lane();
  if (l == nullptr) {
    auto* engine = reactor::IoEngine::current();
    if (durable) return engine->write_durable(fd_, buf, len, offset, op);
    return engine->write(fd_, buf, len, offset, 0, op);
  }
  Transfer::Request r{Transfer::Kind::write, fd_, data, len, offset, 0, nullptr, op, durable};
  if (durable && broken_ack_order_) {
    // Tests of the checker: acknowledged from the page cache.
  } else if (durable && direct_io_) {
    r.rw_flags = RWF_DSYNC;  // one SQE: FUA (or write + flush) at the device
  } else if (durable) {
    r.then_flush = &l->group_commit;
  }
  l->transfers.acquire()->start(r);
}

void FileBackend::flush(IoOp* op) {
  Lane* l = lane();
  if (l == nullptr) return reactor::IoEngine::current()->fsync(fd_, true, op);
  l->transfers.acquire()->start(
      {Transfer::Kind::flush, fd_, nullptr, 0, 0, 0, &l->group_commit, op});
}

void FileBackend::unmap(std::uint64_t offset, std::uint64_t len, IoOp* op, bool more_follow) {
  if (!can_unmap_) return op->on_complete(-EOPNOTSUPP);
  const bool durable = policy_ == WriteAckPolicy::writethrough && !more_follow;
  if (log_ != nullptr) return recorded_fallocate(kPunch, offset, len, durable, op);
  auto* engine = reactor::IoEngine::current();
  if (durable) {
    engine->fallocate_durable(fd_, kPunch, offset, len, op);
  } else {
    engine->fallocate(fd_, kPunch, offset, len, op);
  }
}

void FileBackend::write_zeroes(std::uint64_t offset, std::uint64_t len, bool fua, IoOp* op) {
  const bool durable = policy_ == WriteAckPolicy::writethrough || fua;
  if (log_ != nullptr) return recorded_fallocate(kZero, offset, len, durable, op);
  auto* engine = reactor::IoEngine::current();
  if (durable) {
    engine->fallocate_durable(fd_, kZero, offset, len, op);
  } else {
    engine->fallocate(fd_, kZero, offset, len, op);
  }
}

namespace {
// An unmap or zeroing under the recording seam: a write of zeroes, and when
// durable the fsync linked to it, as a flush that started at submission
// (covering the writes already done) and ended with the completion. Tests
// only, so one allocation per call is fine.
struct RecordedFallocate final : reactor::IoOp {
  DurabilityLog* log;
  DurabilityEvent write;
  std::uint64_t flush_id = 0;  // 0: not durable
  IoOp* caller;

  RecordedFallocate(DurabilityLog* l, const DurabilityEvent& w, IoOp* c)
      : log(l), write(w), caller(c) {}
  void on_complete(int result) override {
    if (result >= 0) {
      write.durable = flush_id != 0;
      log->record(write);
    }
    if (flush_id != 0) {
      // A failed fallocate cancels the fsync linked to it: that flush never ran.
      DurabilityEvent done{DurabilityEvent::Kind::flush_done, 0};
      done.flush_id = flush_id;
      done.store = write.store;
      done.result = result < 0 ? -ECANCELED : 0;
      log->record(done);
    }
    DurabilityEvent ack = write;
    ack.kind = DurabilityEvent::Kind::ack;
    ack.result = result < 0 ? result : 1;
    log->record(ack);
    IoOp* c = caller;
    delete this;
    c->on_complete(result);
  }
};
}  // namespace

void FileBackend::recorded_fallocate(int mode, std::uint64_t offset, std::uint64_t len,
                                     bool durable, IoOp* op) {
  DurabilityEvent w{DurabilityEvent::Kind::write_done, log_->next_id()};
  w.offset = offset;
  w.length = len;
  w.zeroes = true;
  w.store = store_;
  w.must_be_durable = durable;
  w.tag = reinterpret_cast<std::uintptr_t>(op);
  auto* rec = new RecordedFallocate(log_, w, op);
  auto* engine = reactor::IoEngine::current();
  if (!durable) return engine->fallocate(fd_, mode, offset, len, rec);
  rec->flush_id = log_->next_id();
  DurabilityEvent start{DurabilityEvent::Kind::flush_started, 0};
  start.flush_id = rec->flush_id;
  start.store = store_;
  log_->record(start);
  engine->fallocate_durable(fd_, mode, offset, len, rec);
}

Backend::Extent FileBackend::extent_at(std::uint64_t offset, std::uint64_t max_len) {
  if (block_device_ || max_len == 0) return {true, max_len};
  const auto at = static_cast<off_t>(offset);
  const off_t data = ::lseek(fd_, at, SEEK_DATA);
  if (data < 0) {
    // ENXIO: no data from offset to the end of the file. Anything else: we
    // cannot tell, so it counts as mapped.
    return {errno != ENXIO, max_len};
  }
  if (data > at) return {false, std::min<std::uint64_t>(max_len, data - at)};
  const off_t hole = ::lseek(fd_, at, SEEK_HOLE);
  if (hole <= at) return {true, max_len};
  return {true, std::min<std::uint64_t>(max_len, hole - at)};
}

}  // namespace ringtgt::storage
