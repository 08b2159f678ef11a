// What the file-backend tests share: an IoOp that records its result, and a
// fixture with a temporary folder and an engine made current for the test.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <string>

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
