// Completions from threads the reactor does not own (librbd's callbacks) come
// back on the reactor thread, in order, and stop() waits for them.
#include "ringtgt/reactor/foreign_completions.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <thread>
#include <vector>

#include "ringtgt/reactor/reactor.hpp"

namespace ringtgt::reactor {
namespace {

using namespace std::chrono_literals;

// Records where and with what it completed.
struct RecordingOp final : IoOp {
  std::thread::id thread;
  int result = 1;
  std::atomic<bool> done{false};
  std::vector<int>* order = nullptr;
  int id = 0;
  void on_complete(int r) override {
    thread = std::this_thread::get_id();
    result = r;
    if (order) order->push_back(id);
    done.store(true);
  }
};

struct Running {
  std::unique_ptr<Reactor> reactor;
  std::thread thread;
  std::atomic<bool> returned{false};
  Running() {
    try {
      reactor = std::make_unique<Reactor>(0, 64);
    } catch (const IoUringUnavailable&) {
      return;
    }
    thread = std::thread([this] {
      reactor->run();
      returned.store(true);
    });
  }
  ~Running() {
    if (thread.joinable()) {
      reactor->stop();
      thread.join();
    }
  }
  // Runs fn on the reactor thread and waits for it.
  void call(std::function<void()> fn) {
    std::promise<void> done;
    reactor->post([&] {
      fn();
      done.set_value();
    });
    ASSERT_EQ(done.get_future().wait_for(5s), std::future_status::ready);
  }
};

TEST(ForeignCompletions, AForeignThreadsCompletionRunsOnTheReactorInOrder) {
  Running rt;
  if (!rt.reactor) GTEST_SKIP() << "io_uring unavailable";
  constexpr int kOps = 100;
  std::vector<RecordingOp> ops(kOps);
  std::vector<int> order;  // touched only on the reactor thread
  ForeignCompletions* home = nullptr;
  rt.call([&] {
    home = IoEngine::current()->foreign_completions();
    for (int i = 0; i < kOps; ++i) {
      ops[i].order = &order;
      ops[i].id = i;
      home->expect();
    }
  });
  ASSERT_NE(home, nullptr);
  // One foreign thread completes them all, in order, with its own results.
  std::thread foreign([&] {
    for (int i = 0; i < kOps; ++i) home->complete(&ops[i], i * 10);
  });
  foreign.join();
  for (auto& op : ops) {
    for (int i = 0; i < 500 && !op.done.load(); ++i) std::this_thread::sleep_for(10ms);
    ASSERT_TRUE(op.done.load());
  }
  for (int i = 0; i < kOps; ++i) {
    EXPECT_EQ(ops[i].thread, rt.thread.get_id());
    EXPECT_EQ(ops[i].result, i * 10);
  }
  rt.call([&] {
    std::vector<int> want(kOps);
    for (int i = 0; i < kOps; ++i) want[i] = i;
    EXPECT_EQ(order, want);
    EXPECT_EQ(home->outstanding(), 0u);
  });
}

TEST(ForeignCompletions, StopWaitsForExpectedCompletions) {
  Running rt;
  if (!rt.reactor) GTEST_SKIP() << "io_uring unavailable";
  RecordingOp op;
  ForeignCompletions* home = nullptr;
  rt.call([&] {
    home = IoEngine::current()->foreign_completions();
    home->expect();
  });
  rt.reactor->stop();
  std::this_thread::sleep_for(300ms);
  EXPECT_FALSE(rt.returned.load()) << "run() returned with a foreign completion outstanding";
  home->complete(&op, 7);
  rt.thread.join();
  EXPECT_TRUE(rt.returned.load());
  EXPECT_TRUE(op.done.load());
  EXPECT_EQ(op.result, 7);
}

TEST(ForeignCompletions, AnEngineWithoutALoopHasNone) {
  struct Bare final : IoEngine {
    void read(int, void*, std::size_t, std::uint64_t, IoOp*) override {}
    void write(int, const void*, std::size_t, std::uint64_t, int, IoOp*) override {}
    void fsync(int, bool, IoOp*) override {}
    void recv(int, void*, std::size_t, int, IoOp*) override {}
    void sendmsg(int, const msghdr*, int, IoOp*) override {}
  } bare;
  EXPECT_EQ(bare.foreign_completions(), nullptr);
}

}  // namespace
}  // namespace ringtgt::reactor
