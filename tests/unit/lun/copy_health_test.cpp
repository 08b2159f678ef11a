#include "ringtgt/lun/copy_health.hpp"

#include <gtest/gtest.h>

#include <memory>

namespace ringtgt::lun {
namespace {

// A LUN's primary and two copies, every one in sync (the counters hold atomics:
// built in place).
struct ThreeCopies : metrics::MirrorCounters {
  explicit ThreeCopies(std::uint32_t quorum) {
    for (const char* n : {"primary", "disk2", "disk3"})
      copies.push_back(std::make_unique<metrics::MirrorCounters::Copy>(n, ""));
    ack_quorum = quorum;
  }
};

TEST(CopyHealth, NothingToSayWhileEveryCopyIsInSync) {
  EXPECT_EQ(degraded_copies(ThreeCopies(2)), std::nullopt);
}

TEST(CopyHealth, NamesTheCopiesOutOfSync) {
  ThreeCopies m(2);
  m.copies[2]->in_sync = false;
  EXPECT_EQ(degraded_copies(m), "1 of 3 copies out of sync (disk3)");
}

TEST(CopyHealth, SaysWhenWritesAreRefused) {
  ThreeCopies m(2);
  m.copies[1]->in_sync = false;
  m.copies[2]->in_sync = false;
  EXPECT_EQ(degraded_copies(m), "2 of 3 copies out of sync (disk2, disk3); below ack_quorum 2");
}

}  // namespace
}  // namespace ringtgt::lun
