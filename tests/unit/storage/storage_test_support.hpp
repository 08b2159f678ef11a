// What the file-backend tests share: an IoOp that records its result, and a
// fixture with a temporary folder and an engine made current for the test.
#pragma once

#include <gtest/gtest.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "ringtgt/reactor/io_engine.hpp"
#include "ringtgt/storage/file_backend.hpp"

namespace ringtgt::storage::testing {

struct Result final : reactor::IoOp {
  int value = 1234567;
  int calls = 0;
  void on_complete(int r) override {
    value = r;
    ++calls;
  }
};

// An engine that runs each operation at once with a plain syscall and
// records what it was asked.
struct RecordedOp {
  enum Kind { read, write, fsync } kind;
  int fd;
  std::size_t len;
  std::uint64_t offset;
  int rw_flags;
  bool datasync;
};

class RecordingEngine final : public reactor::IoEngine {
 public:
  void read(int fd, void* buf, std::size_t len, std::uint64_t offset, IoOp* op) override {
    ops.push_back({RecordedOp::read, fd, len, offset, 0, false});
    ssize_t n = ::pread(fd, buf, len, static_cast<off_t>(offset));
    op->on_complete(n < 0 ? -errno : static_cast<int>(n));
  }
  void write(int fd, const void* buf, std::size_t len, std::uint64_t offset, int rw_flags,
             IoOp* op) override {
    ops.push_back({RecordedOp::write, fd, len, offset, rw_flags, false});
    iovec iov{const_cast<void*>(buf), len};
    ssize_t n = ::pwritev2(fd, &iov, 1, static_cast<off_t>(offset), rw_flags);
    op->on_complete(n < 0 ? -errno : static_cast<int>(n));
  }
  void fsync(int fd, bool datasync, IoOp* op) override {
    ops.push_back({RecordedOp::fsync, fd, 0, 0, 0, datasync});
    int rc = datasync ? ::fdatasync(fd) : ::fsync(fd);
    op->on_complete(rc < 0 ? -errno : 0);
  }
  void recv(int, void*, std::size_t, int, IoOp* op) override { op->on_complete(-ENOTSUP); }
  void sendmsg(int, const msghdr*, int, IoOp* op) override { op->on_complete(-ENOTSUP); }

  std::vector<RecordedOp> ops;
};

// Each test gets its own folder under /tmp (removed after it) and runs its
// backends' operations through `engine`.
template <class Engine>
class FileBackendFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/ringtgt-fb-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir = tmpl;
    reactor::IoEngine::set_current(&engine);
  }
  void TearDown() override {
    reactor::IoEngine::set_current(nullptr);
    std::filesystem::remove_all(dir);
  }
  std::string path(const char* name) const { return dir + "/" + name; }
  // A LUN file "lun.img" created at size bytes.
  FileBackendOptions opts(WriteAckPolicy policy, std::uint64_t size = 1 << 20) const {
    FileBackendOptions o;
    o.path = path("lun.img");
    o.create_size = size;
    o.policy = policy;
    return o;
  }

  std::string dir;
  Engine engine;
};

}  // namespace ringtgt::storage::testing
