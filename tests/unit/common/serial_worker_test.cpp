#include "ringtgt/common/serial_worker.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

namespace ringtgt::common {
namespace {

TEST(SerialWorker, RunsJobsInOrderOffThePostingThread) {
  std::vector<int> seen;
  std::atomic<bool> on_poster{false};
  const auto poster = std::this_thread::get_id();
  {
    SerialWorker w;
    for (int i = 0; i < 200; ++i) {
      w.post([&, i] {
        if (std::this_thread::get_id() == poster) on_poster = true;
        seen.push_back(i);  // one job at a time: no lock needed
      });
    }
  }  // the destructor runs what is still queued
  ASSERT_EQ(seen.size(), 200u);
  for (int i = 0; i < 200; ++i) EXPECT_EQ(seen[i], i);
  EXPECT_FALSE(on_poster);
}

TEST(SerialWorker, StartsAgainAfterItWentIdle) {
  SerialWorker w;
  std::mutex m;
  std::condition_variable cv;
  int done = 0;
  for (int round = 0; round < 3; ++round) {
    w.post([&] {
      std::lock_guard lock(m);
      ++done;
      cv.notify_all();
    });
    std::unique_lock lock(m);
    ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(10), [&] { return done == round + 1; }));
  }
}

TEST(SerialWorker, NoTwoJobsOverlap) {
  std::atomic<int> inside{0};
  std::atomic<int> overlaps{0};
  {
    SerialWorker w;
    std::vector<std::thread> posters;
    for (int t = 0; t < 4; ++t) {
      posters.emplace_back([&] {
        for (int i = 0; i < 50; ++i) {
          w.post([&] {
            if (inside.fetch_add(1) != 0) ++overlaps;
            std::this_thread::yield();
            inside.fetch_sub(1);
          });
        }
      });
    }
    for (auto& p : posters) p.join();
  }
  EXPECT_EQ(overlaps.load(), 0);
}

}  // namespace
}  // namespace ringtgt::common
