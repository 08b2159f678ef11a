#include "ringtgt/storage/file_backend.hpp"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <stdexcept>
#include <system_error>

namespace ringtgt::storage {

namespace {
[[noreturn]] void fail(const std::string& what, const std::string& path) {
  throw std::system_error(errno, std::generic_category(), what + " " + path);
}
}  // namespace

FileBackend::FileBackend(const FileBackendOptions& o) : path_(o.path), policy_(o.policy) {
  int flags = O_CLOEXEC | (o.read_only ? O_RDONLY : O_RDWR);
  if (o.direct_io) flags |= O_DIRECT;
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
}

FileBackend::~FileBackend() {
  if (fd_ >= 0) ::close(fd_);
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
  reactor::IoEngine::current()->read(fd_, buf, len, offset, op);
}

void FileBackend::write(const void* buf, std::size_t len, std::uint64_t offset, bool fua,
                        IoOp* op) {
  auto* engine = reactor::IoEngine::current();
  if (policy_ == WriteAckPolicy::writethrough || fua) {
    engine->write_durable(fd_, buf, len, offset, op);
  } else {
    engine->write(fd_, buf, len, offset, 0, op);
  }
}

void FileBackend::flush(IoOp* op) {
  reactor::IoEngine::current()->fsync(fd_, true, op);
}

}  // namespace ringtgt::storage
